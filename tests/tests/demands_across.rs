//! Demands recognised across exchanges (issue #16, PROTOCOL.md 11.9): a buyer at Xuchang shares
//! a demand with the federation; Zhengzhou, whose agreement covers it, lists it among its
//! external demands with its provenance and ranks its own listings for it; a demand its buyer
//! keeps home never arrives, nor does one the agreement does not cover; proposing to it at
//! Zhengzhou has no route (that happens at its origin); its withdrawal arrives and it stops showing
//! open; a tampered one is refused; what a cut-off zone missed arrives by catch-up. Whole
//! federation in one process.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use xchg_federation_config::CategorySet;
use xchg_federation_config::layout::LayoutKind;
use xchg_federation_config::{load, read_key_file};
use xchg_node::federation::Tuning;
use xchg_node::gossip::{Broadcast, demand_topic_of};
use xchg_protocol::canonical::to_canonical;
use xchg_protocol::demand::{Demand, DemandBudget, DemandState, sign};
use xchg_protocol::{ContentId, DeliveryMode, Keypair, Timestamp};
use xchg_tests::in_process::Federation;
use xchg_tests::{eventually, example_listing};

/// Zone indices of the two-exchanges layout.
const XUCHANG: usize = 0;
const ZHENGZHOU: usize = 1;
const WAIT: Duration = Duration::from_secs(30);
const DAY_MS: u64 = 86_400_000;

/// A federation where Zhengzhou's agreement with Xuchang covers only the `credit` category.
async fn start() -> anyhow::Result<Federation> {
    let tuning = Tuning {
        catchup_every: Duration::from_secs(1),
        ..Tuning::default()
    };
    Federation::start(LayoutKind::TwoExchanges, 1, tuning, |zone, c| {
        if zone == "zhengzhou/main" {
            for o in &mut c.outside {
                o.agreement.categories = CategorySet::Only(BTreeSet::from(["credit".to_owned()]));
            }
        }
    })
    .await
}

fn demand(title: &str, category: &str, share: Option<&str>) -> Value {
    let mut d = json!({
        "title": title,
        "description": "贷前审查需要的企业信用数据",
        "category": category,
        "scenario": "企业贷款授信审查",
        "delivery_modes": ["api", "sandbox"],
        "budget": {"min": "1000", "max": "20000", "currency": "CNY"},
        "deadline": Timestamp::now().plus_millis(7 * DAY_MS),
    });
    if let Some(s) = share {
        d["share"] = s.into();
    }
    d
}

/// Posts `body` as Xuchang's buyer; the demand's number.
async fn post(fed: &Federation, body: &Value) -> anyhow::Result<u64> {
    let token = fed.zone_tokens(XUCHANG).buyer.clone();
    let (s, v) = fed
        .post_keyed(XUCHANG, 0, "/v1/demands", &token, body)
        .await?;
    anyhow::ensure!(s == 201, "post: {s} {v}");
    v["id"].as_u64().context("a demand number")
}

/// `path` on Zhengzhou's node as its provider.
async fn zhengzhou(fed: &Federation, path: &str) -> Result<Value, String> {
    as_zhengzhou(fed, path, &fed.zone_tokens(ZHENGZHOU).provider).await
}

/// Zhengzhou's verdicts of `kind`, as its regulator.
async fn verdicts(fed: &Federation, kind: &str) -> Result<Value, String> {
    let path = format!("/v1/federation/verdicts?kind={kind}");
    as_zhengzhou(fed, &path, &fed.zone_tokens(ZHENGZHOU).regulator).await
}

/// `path` on Zhengzhou's node with `token`.
async fn as_zhengzhou(fed: &Federation, path: &str, token: &str) -> Result<Value, String> {
    let (s, v) = fed
        .get(ZHENGZHOU, 0, path, token)
        .await
        .map_err(|e| e.to_string())?;
    if s != 200 {
        return Err(format!("{path}: {s} {v}"));
    }
    Ok(v)
}

/// The numbers of the external demands Zhengzhou lists for `query`.
async fn external(fed: &Federation, query: &str) -> Result<Vec<u64>, String> {
    let page = zhengzhou(fed, &format!("/v1/demands?origin=external{query}")).await?;
    Ok(page["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|d| d["number"].as_u64()).collect())
        .unwrap_or_default())
}

/// Waits until Zhengzhou lists Xuchang's demand `number` among its external demands.
async fn arrived(fed: &Federation, number: u64) -> anyhow::Result<()> {
    eventually(WAIT, "the shared demand at Zhengzhou", || async {
        let numbers = external(fed, "").await?;
        Ok(numbers.contains(&number).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_demand_is_recognised_at_the_partner_with_its_matches_and_follows_its_withdrawal()
-> anyhow::Result<()> {
    let fed = start().await?;
    // Zhengzhou's own listing: credit, delivered by API, for the demand's scenario.
    let mut listing = example_listing("郑州企业信用");
    listing["provider"]["id"] = fed.zone_party(ZHENGZHOU).id.as_str().into();
    listing["provider"]["name"] = fed.zone_party(ZHENGZHOU).name.as_str().into();
    let listing_id = fed.approve_new(ZHENGZHOU, listing).await?;

    let home = post(&fed, &demand("留在本所的需求", "credit", None)).await?;
    let explicit = post(&fed, &demand("明示留在本所", "credit", Some("exchange"))).await?;
    let uncovered = post(
        &fed,
        &demand("医疗数据需求", "healthcare", Some("federation")),
    )
    .await?;
    let shared = post(
        &fed,
        &demand("企业信用数据需求", "credit", Some("federation")),
    )
    .await?;
    let token = fed.zone_tokens(XUCHANG).buyer.clone();
    let (_, own) = fed
        .get(XUCHANG, 0, &format!("/v1/demands/{shared}"), &token)
        .await?;
    assert_eq!(own["share"], "federation", "{own}");
    let (_, kept) = fed
        .get(XUCHANG, 0, &format!("/v1/demands/{home}"), &token)
        .await?;
    assert!(kept.get("share").is_none(), "{kept}");
    arrived(&fed, shared).await?;
    // Published in order of their numbers: those before it would have arrived first.
    let numbers = external(&fed, "").await.map_err(anyhow::Error::msg)?;
    assert_eq!(
        numbers,
        [shared],
        "only the shared and covered one arrives, not {home} or {explicit} kept home, nor \
         {uncovered} of a category the agreement does not cover"
    );
    let refused = verdicts(&fed, "refused_by_agreement")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        refused["items"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| r["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("healthcare"))),
        "the uncovered demand {uncovered} is refused by the agreement: {refused}"
    );

    // Shown with its provenance, never its buyer.
    let zone = fed.layout.exchanges[0].zones[0].id.to_string();
    let path = format!("/v1/demands/external/{zone}/{shared}");
    let held = zhengzhou(&fed, &path).await.map_err(anyhow::Error::msg)?;
    assert_eq!(held["origin"], json!({"exchange": "xuchang", "zone": zone}));
    assert_eq!(held["state"], "open");
    assert_eq!(held["budget"]["min"], "1000");
    assert!(held.get("buyer").is_none(), "{held}");
    let page = zhengzhou(&fed, &format!("/v1/demands?origin={zone}&open=true"))
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(page["items"][0]["number"], shared, "{page}");
    let local = zhengzhou(&fed, "/v1/demands")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(local["items"], json!([]), "not one of Zhengzhou's own");

    // Zhengzhou's catalog matched for it, with reasons.
    let found = zhengzhou(&fed, &format!("{path}/matches"))
        .await
        .map_err(anyhow::Error::msg)?;
    let first = &found["matches"][0];
    assert_eq!(first["listing_id"], listing_id.as_str(), "{found}");
    assert!(
        first["reasons"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r.as_str().unwrap_or_default().contains("api"))),
        "{found}"
    );

    // Proposals, acceptance and withdrawal happen at the origin: no route for them here.
    let operator = fed.zone_tokens(ZHENGZHOU).operator.clone();
    let (s, v) = fed
        .post(
            ZHENGZHOU,
            0,
            &format!("{path}/proposals"),
            &operator,
            &json!({"listing_id": listing_id}),
        )
        .await?;
    assert_eq!(s, 404, "{v}");

    // Withdrawn at Xuchang: no longer open at Zhengzhou.
    let buyer = fed.zone_tokens(XUCHANG).buyer.clone();
    let (s, v) = fed
        .post(
            XUCHANG,
            0,
            &format!("/v1/demands/{shared}/withdraw"),
            &buyer,
            &json!({}),
        )
        .await?;
    anyhow::ensure!(s == 200, "withdraw: {s} {v}");
    eventually(WAIT, "the withdrawal at Zhengzhou", || async {
        let held = zhengzhou(&fed, &path).await?;
        Ok((held["state"] == "withdrawn").then_some(()))
    })
    .await?;
    let open = external(&fed, "&open=true")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(open.is_empty(), "{open:?}");
    fed.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_demand_is_refused_and_never_shown() -> anyhow::Result<()> {
    let fed = start().await?;
    // A demand signed by Xuchang's node key under its delegation, then given a larger budget
    // after signing (its id recomputed, so only the signature can tell).
    let node = &fed.layout.exchanges[0].zones[0].nodes[0];
    let config = load(&fed.layout_dir().join(&node.config), Timestamp::now())?.config;
    let key = read_key_file(&config.node.key_file)?;
    let now = Timestamp::now();
    let genuine = Demand {
        zone: config.zone.id.clone(),
        number: 900_001,
        state: DemandState::Open,
        category: "credit".into(),
        title: "伪造的需求".into(),
        description: "预算被篡改".into(),
        scenario: "企业贷款授信审查".into(),
        delivery_modes: vec![DeliveryMode::Api],
        budget: DemandBudget {
            min: "0".into(),
            max: "100".into(),
            currency: "CNY".into(),
        },
        deadline: now.plus_millis(DAY_MS),
        posted_at: now,
        updated_at: now,
    };
    let mut tampered = sign(&genuine, &key, config.zone.delegation.clone());
    let mut claimed = genuine.clone();
    claimed.budget.max = "1000000".into();
    tampered.body = to_canonical(&claimed)?;
    tampered.id = ContentId::of(&tampered.body);

    let relay = Keypair::generate();
    let (client, _events) = fed.gossip.join(&relay.public());
    let topic = demand_topic_of("xuchang");
    client.subscribe(topic.clone()).await?;
    eventually(WAIT, "the tampered demand sent", || async {
        match client.publish(topic.clone(), tampered.to_bytes()).await {
            Ok(()) => Ok(Some(())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    let id = tampered.id.to_string();
    eventually(WAIT, "the tampered demand refused", || async {
        let page = verdicts(&fed, "bad_signature").await?;
        let named = page["items"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| r["content_id"] == id.as_str()));
        Ok(named.then_some(()))
    })
    .await?;
    // A genuine shared demand posted after it arrives; the tampered one never does.
    let shared = post(&fed, &demand("真实的需求", "credit", Some("federation"))).await?;
    arrived(&fed, shared).await?;
    let numbers = external(&fed, "").await.map_err(anyhow::Error::msg)?;
    assert_eq!(numbers, [shared]);
    let token = fed.zone_tokens(ZHENGZHOU).provider.clone();
    let (s, _) = fed
        .get(
            ZHENGZHOU,
            0,
            "/v1/demands/external/xuchang/main/900001",
            &token,
        )
        .await?;
    assert_eq!(s, 404);
    fed.shutdown().await;
    Ok(())
}

/// Waits until Xuchang's audit chain records that its leader published the latest state of
/// demand `number` (`expected` records of it in all).
async fn published_at_xuchang(
    fed: &Federation,
    number: u64,
    expected: usize,
) -> anyhow::Result<()> {
    let token = fed.zone_tokens(XUCHANG).regulator.clone();
    let object = format!("demand:{number} ");
    eventually(WAIT, "the demand published at Xuchang", || async {
        let (s, v) = fed
            .get(XUCHANG, 0, "/v1/audit?limit=1000", &token)
            .await
            .map_err(|e| e.to_string())?;
        if s != 200 {
            return Err(format!("audit: {s} {v}"));
        }
        let n = v["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|r| {
                    r["action"] == "record_demand_published"
                        && r["object_id"]
                            .as_str()
                            .is_some_and(|o| o.starts_with(&object))
                })
                .count()
        });
        Ok((n >= expected).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_and_its_withdrawal_missed_while_cut_off_arrive_by_catch_up() -> anyhow::Result<()>
{
    // Three nodes per zone, so Xuchang's publisher has its own zone's nodes to publish to while
    // every link to Zhengzhou is cut (gossip and catch-up alike; the in-process network never
    // replays a message): whatever reaches Zhengzhou after healing came by catch-up.
    let tuning = Tuning {
        catchup_every: Duration::from_secs(1),
        ..Tuning::default()
    };
    let fed = Federation::start(LayoutKind::TwoExchanges, 3, tuning, |_, _| {}).await?;
    let peers = |zone: usize| -> Vec<_> {
        fed.zones[zone]
            .iter()
            .map(|n| n.federation.net().local_peer())
            .collect()
    };
    for a in &peers(XUCHANG) {
        for b in &peers(ZHENGZHOU) {
            fed.gossip.cut(a, b);
        }
    }
    let kept = post(
        &fed,
        &demand("断网期间发布的需求", "credit", Some("federation")),
    )
    .await?;
    let gone = post(
        &fed,
        &demand("断网期间撤回的需求", "credit", Some("federation")),
    )
    .await?;
    published_at_xuchang(&fed, kept, 1).await?;
    published_at_xuchang(&fed, gone, 1).await?;
    let buyer = fed.zone_tokens(XUCHANG).buyer.clone();
    let (s, v) = fed
        .post(
            XUCHANG,
            0,
            &format!("/v1/demands/{gone}/withdraw"),
            &buyer,
            &json!({}),
        )
        .await?;
    anyhow::ensure!(s == 200, "withdraw: {s} {v}");
    published_at_xuchang(&fed, gone, 2).await?;
    // The cut held: Zhengzhou has none of it.
    let held = external(&fed, "").await.map_err(anyhow::Error::msg)?;
    assert!(held.is_empty(), "{held:?}");

    fed.gossip.heal_all();
    arrived(&fed, kept).await?;
    let zone = fed.layout.exchanges[0].zones[0].id.to_string();
    let path = format!("/v1/demands/external/{zone}/{gone}");
    let state = eventually(WAIT, "the withdrawn demand by catch-up", || async {
        match zhengzhou(&fed, &path).await {
            Ok(d) => Ok(Some(d["state"].clone())),
            Err(e) => Err(e),
        }
    })
    .await?;
    assert_eq!(state, "withdrawn", "only its latest state is served");
    let open = external(&fed, "&open=true")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(open, [kept]);
    fed.shutdown().await;
    Ok(())
}
