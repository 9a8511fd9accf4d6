//! Applications across exchanges (issue #14, PROTOCOL.md 11): a buyer at Xuchang applies for a
//! product recognised from Zhengzhou while Zhengzhou's node is down; the application waits
//! `forwarding` and is sent again with backoff; once Zhengzhou is back it is recorded there
//! once, however often it was sent; Zhengzhou's operator approves it with narrowed terms, and
//! the signed decision is recorded on both sides, in both audit chains. The next buyer applying
//! for the same product and scenario at Xuchang sees that decision (scenario reuse). Real node
//! processes, one per exchange. And, in one process, what a lying sender gets: a tampered
//! request is refused and recorded, a second request under one application number is refused,
//! and the same request sent again is recorded once.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_federation_config::layout::LayoutKind;
use xchg_federation_config::{load, read_key_file};
use xchg_node::federation::Tuning;
use xchg_node::gossip::{Broadcast as _, Peer};
use xchg_protocol::application::{ApplicationRequest, SignedMessage};
use xchg_protocol::canonical::to_canonical;
use xchg_protocol::catchup::{ApplicationAnswer, Blob, Request, Response};
use xchg_protocol::{ContentId, DeliveryMode, Keypair, Timestamp};
use xchg_tests::in_process::Federation;
use xchg_tests::{Zone, eventually, example_listing};

const ELECTION: Duration = Duration::from_secs(30);
/// Node indices of the two-exchanges layout with one node per zone.
const XUCHANG: usize = 0;
const ZHENGZHOU: usize = 1;
const XUCHANG_ZONE: &str = "xuchang/municipal";
const ZHENGZHOU_ZONE: &str = "zhengzhou/main";
const LENDING: &str = "企业贷款授信审查";

/// The application of Xuchang's buyer for `listing`.
fn application(listing: &str) -> Value {
    json!({
        "listing_id": listing,
        "scenario": LENDING,
        "purpose": "授信前核验企业登记状态",
        "delivery_mode": "verification",
        "duration_days": 90,
        "usage_limit": 1000,
    })
}

/// Application `id` on node `i` as `token`.
async fn application_on(zone: &Zone, i: usize, token: &str, id: u64) -> anyhow::Result<Value> {
    let (s, v) = zone
        .get(i, &format!("/v1/applications/{id}"), Some(token))
        .await?;
    ensure!(s == 200, "GET application {id}: {s} {v}");
    Ok(v)
}

/// Waits until application `id` on node `i` is in `state`.
async fn wait_for(
    zone: &Zone,
    i: usize,
    token: &str,
    id: u64,
    state: &str,
) -> anyhow::Result<Value> {
    eventually(
        Duration::from_secs(60),
        &format!("application {id} {state} on {}", zone.nodes[i].name),
        || async {
            let v = application_on(zone, i, token, id)
                .await
                .map_err(|e| e.to_string())?;
            Ok((v["state"] == state).then_some(v))
        },
    )
    .await
}

/// The applications Zhengzhou holds from Xuchang.
async fn from_xuchang(zone: &Zone, token: &str) -> anyhow::Result<Vec<Value>> {
    let (s, v) = zone
        .get(ZHENGZHOU, "/v1/applications?limit=100", Some(token))
        .await?;
    ensure!(s == 200, "list: {s} {v}");
    Ok(v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["across"]["applicant_zone"] == XUCHANG_ZONE)
        .collect())
}

/// The audit records of node `i` with `action` (the chains of this test are short: one page).
async fn audited(zone: &Zone, i: usize, token: &str, action: &str) -> anyhow::Result<Vec<Value>> {
    let (s, v) = zone.get(i, "/v1/audit?limit=1000", Some(token)).await?;
    ensure!(s == 200, "audit: {s} {v}");
    Ok(v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["action"] == action)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_waits_while_the_origin_is_down_and_is_decided_there_once_it_is_back()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("two-exchanges", 1)?;
    zone.start_all()?;
    zone.wait_for_leader(XUCHANG, ELECTION).await?;
    zone.wait_for_leader(ZHENGZHOU, ELECTION).await?;
    let x = zone.zone_tokens(XUCHANG_ZONE).clone();
    let z = zone.zone_tokens(ZHENGZHOU_ZONE).clone();

    // A Zhengzhou product, recognised at Xuchang.
    let listing = zone
        .approve_new(ZHENGZHOU, &z, &example_listing("跨所场景申请"))
        .await?;
    zone.wait_for_state(
        &[XUCHANG],
        &x.regulator,
        &listing,
        "recognised",
        Duration::from_secs(60),
    )
    .await?;

    // The origin goes down; the application waits, and is tried again.
    zone.kill(ZHENGZHOU);
    let (s, v) = zone
        .post(
            XUCHANG,
            "/v1/applications",
            &x.buyer,
            &application(&listing),
        )
        .await?;
    ensure!(s == 201 && v["state"] == "forwarding", "apply: {s} {v}");
    let id = v["id"].as_u64().context("an application id")?;
    let forwarding = application_on(&zone, XUCHANG, &x.buyer, id).await?;
    assert_eq!(
        forwarding["across"]["origin_zone"], ZHENGZHOU_ZONE,
        "{forwarding}"
    );
    let request_id = forwarding["across"]["request_id"].clone();
    eventually(
        Duration::from_secs(30),
        "two failed sends logged",
        || async {
            let log = zone.log_of(XUCHANG);
            Ok((log.matches("application not forwarded yet").count() >= 2).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        application_on(&zone, XUCHANG, &x.buyer, id).await?["state"],
        "forwarding"
    );
    // Xuchang's own operator does not decide it.
    let (s, v) = zone
        .post(
            XUCHANG,
            &format!("/v1/applications/{id}/approve"),
            &x.operator,
            &json!({}),
        )
        .await?;
    ensure!(
        s == 409 && v["error"]["code"] == "illegal_transition",
        "{s} {v}"
    );

    // Back: recorded at the origin, once.
    zone.start(ZHENGZHOU)?;
    zone.wait_for_leader(ZHENGZHOU, ELECTION).await?;
    let acknowledged = wait_for(&zone, XUCHANG, &x.buyer, id, "submitted").await?;
    ensure!(
        acknowledged["across"]["forwarded_at"].is_string(),
        "{acknowledged}"
    );
    let held = from_xuchang(&zone, &z.operator).await?;
    ensure!(held.len() == 1, "one application from Xuchang: {held:?}");
    let there = &held[0];
    assert_eq!(there["across"]["request_id"], request_id, "{there}");
    assert_eq!(there["across"]["applicant_application"], id, "{there}");
    assert_eq!(there["state"], "submitted", "{there}");
    let origin_id = there["id"].as_u64().context("an id at the origin")?;

    // The origin's operator narrows the calls and approves.
    let (s, v) = zone
        .post(
            ZHENGZHOU,
            &format!("/v1/applications/{origin_id}/approve"),
            &z.operator,
            &json!({"usage_limit": 500, "duration_days": 60}),
        )
        .await?;
    ensure!(s == 200, "approve at the origin: {s} {v}");
    let origin_authorization = v["authorization_id"].as_u64().context("authorization")?;
    let approved = wait_for(&zone, XUCHANG, &x.buyer, id, "approved").await?;
    let decision_id = approved["across"]["decision_id"].clone();
    ensure!(decision_id.is_string(), "{approved}");
    assert_eq!(
        application_on(&zone, ZHENGZHOU, &z.operator, origin_id).await?["across"]["decision_id"],
        decision_id,
        "both sides hold the same decision"
    );
    assert_eq!(
        from_xuchang(&zone, &z.operator).await?.len(),
        1,
        "never recorded twice"
    );

    // The grant as the buyer sees it at Xuchang; its usage is counted at the origin.
    let auth = approved["authorization_id"]
        .as_u64()
        .context("authorization")?;
    let (s, grant) = zone
        .get(
            XUCHANG,
            &format!("/v1/authorizations/{auth}"),
            Some(&x.buyer),
        )
        .await?;
    ensure!(s == 200, "{s} {grant}");
    assert_eq!(grant["usage_limit"], 500, "{grant}");
    assert_eq!(grant["delivery_mode"], "verification", "{grant}");
    assert_eq!(
        grant["origin"],
        json!({"zone": "zhengzhou/main", "authorization": origin_authorization}),
        "where it is kept: {grant}"
    );
    let (s, v) = zone
        .post(
            XUCHANG,
            &format!("/v1/authorizations/{auth}/usage"),
            &x.buyer,
            &json!({"calls": 1}),
        )
        .await?;
    ensure!(
        s == 403
            && v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("counted there")),
        "{s} {v}"
    );
    let (s, v) = zone
        .post(
            ZHENGZHOU,
            &format!("/v1/authorizations/{origin_authorization}/usage"),
            &z.provider,
            &json!({"calls": 3}),
        )
        .await?;
    ensure!(s == 200 && v["used"] == 3, "usage at the origin: {s} {v}");

    // Both audit chains hold the messages' ids.
    let request = request_id.as_str().context("request id")?;
    let decision = decision_id.as_str().context("decision id")?;
    let received = audited(&zone, ZHENGZHOU, &z.regulator, "receive_application").await?;
    ensure!(
        received
            .iter()
            .any(|r| r["object_id"].as_str().is_some_and(|o| o.contains(request))),
        "origin's chain: {received:?}"
    );
    let decided = audited(&zone, XUCHANG, &x.regulator, "application_decided").await?;
    ensure!(
        decided.iter().any(|r| r["object_id"]
            .as_str()
            .is_some_and(|o| o.contains(decision))),
        "applicant's chain: {decided:?}"
    );

    // Scenario reuse: the next application for the same product and scenario sees the decision.
    let (s, v) = zone
        .post(
            XUCHANG,
            "/v1/applications",
            &x.buyer,
            &application(&listing),
        )
        .await?;
    ensure!(s == 201, "second application: {s} {v}");
    let second = v["id"].as_u64().context("the second application's id")?;
    let precedent = v["precedents"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["application_id"] == id))
        .with_context(|| format!("the earlier decision among the precedents: {v}"))?;
    assert_eq!(precedent["decision"], "approved", "{precedent}");
    assert_eq!(precedent["usage_limit"], 500, "{precedent}");
    assert_eq!(precedent["duration_days"], 60, "{precedent}");
    // And so does a buyer at the origin's exchange.
    let (s, v) = zone
        .post(
            ZHENGZHOU,
            "/v1/applications",
            &z.buyer,
            &application(&listing),
        )
        .await?;
    ensure!(
        s == 201 && v["state"] == "submitted",
        "origin's buyer: {s} {v}"
    );
    let precedent = v["precedents"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["application_id"] == origin_id))
        .with_context(|| format!("Xuchang's decision among the origin's precedents: {v}"))?;
    assert_eq!(precedent["usage_limit"], 500, "{precedent}");

    // The origin's decisions on its own buyers reach Xuchang's buyers too (PROTOCOL.md 11.8):
    // Zhengzhou rejects its buyer's application, and the open Xuchang application for the same
    // product and scenario shows that decision once its leader fetched the origin's list.
    let origin_own = v["id"].as_u64().context("the origin buyer's application")?;
    let reason = "用途超出场景范围 purpose outside the scenario";
    let (s, v) = zone
        .post(
            ZHENGZHOU,
            &format!("/v1/applications/{origin_own}/reject"),
            &z.operator,
            &json!({"reason": reason}),
        )
        .await?;
    ensure!(s == 200, "reject at the origin: {s} {v}");
    let detail = eventually(
        Duration::from_secs(60),
        "the origin's own decision among Xuchang's precedents",
        || async {
            let v = application_on(&zone, XUCHANG, &x.buyer, second)
                .await
                .map_err(|e| e.to_string())?;
            let found = v["precedents"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["decided_in"] == ZHENGZHOU_ZONE && p["application_id"] == origin_own)
            });
            if found {
                Ok(Some(v))
            } else {
                Err(v.to_string())
            }
        },
    )
    .await?;
    let shown = detail["precedents"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .find(|p| p["decided_in"] == ZHENGZHOU_ZONE && p["application_id"] == origin_own)
        })
        .context("found above")?;
    assert_eq!(shown["decision"], "rejected", "{shown}");
    assert_eq!(shown["reason"], reason, "{shown}");
    assert!(
        detail["precedents"].as_array().is_some_and(|p| !p
            .iter()
            .any(|p| p["decided_in"] == ZHENGZHOU_ZONE && p["application_id"] == origin_id)),
        "Xuchang's own application is shown once, as its own: {detail}"
    );
    // A buyer applying now sees it at once.
    let (s, v) = zone
        .post(
            XUCHANG,
            "/v1/applications",
            &x.buyer,
            &application(&listing),
        )
        .await?;
    ensure!(s == 201, "third application: {s} {v}");
    ensure!(
        v["precedents"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["decided_in"] == ZHENGZHOU_ZONE && p["application_id"] == origin_own)),
        "{v}"
    );
    // Both chains: the list's id is in Xuchang's.
    let recorded = audited(&zone, XUCHANG, &x.regulator, "record_precedents").await?;
    ensure!(
        !recorded.is_empty(),
        "Xuchang's chain holds the precedents it recorded"
    );
    Ok(())
}

/// What the origin answers `request` (a signed ApplicationRequest) sent by `client` to `peer`.
async fn ask(
    client: &xchg_node::gossip::memory::MemoryClient,
    peer: &Peer,
    request: Vec<u8>,
) -> anyhow::Result<ApplicationAnswer> {
    let body = Request::Application {
        request: Blob(request),
    }
    .to_bytes()?;
    let answer = client.request(peer.clone(), body).await?;
    match Response::from_bytes(&answer)? {
        Response::Application(a) => Ok(a),
        other => anyhow::bail!("answered {other:?}"),
    }
}

/// Application `number` of Xuchang's buyer for `listing_id` (version `content_id`) of
/// Zhengzhou, as Xuchang's node would send it: the request, that node's key and configuration,
/// and the peer of Zhengzhou's node.
fn xuchang_request(
    fed: &Federation,
    number: u64,
    listing_id: ContentId,
    content_id: ContentId,
) -> anyhow::Result<(
    ApplicationRequest,
    Keypair,
    xchg_federation_config::NodeConfig,
    Peer,
)> {
    let config_of = |zone: usize| -> anyhow::Result<xchg_federation_config::NodeConfig> {
        let node = &fed.layout.exchanges[zone].zones[0].nodes[0];
        Ok(load(&fed.layout_dir().join(&node.config), Timestamp::now())?.config)
    };
    let xuchang = config_of(XUCHANG)?;
    let key = read_key_file(&xuchang.node.key_file)?;
    let origin = config_of(ZHENGZHOU)?;
    let origin_peer = Peer(read_key_file(&origin.node.key_file)?.public().peer_id());
    let request = ApplicationRequest {
        applicant: xuchang.zone.id.clone(),
        application: number,
        origin: origin.zone.id.clone(),
        listing_id,
        content_id,
        buyer: fed.layout.exchanges[XUCHANG].zones[0]
            .buyer_party
            .as_ref()
            .context("a buyer party")?
            .id
            .clone(),
        scenario: LENDING.into(),
        purpose: "授信前核验".into(),
        delivery_mode: DeliveryMode::Verification,
        duration_days: 30,
        usage_limit: 10,
        issued_at: Timestamp::now(),
    };
    Ok((request, key, xuchang, origin_peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_origin_would_refuse_is_answered_without_a_write() -> anyhow::Result<()> {
    // Every proposal is a Raft entry and an audit record, and an applicant sends a refused
    // request again and again: what the origin's own state already refuses is answered from
    // it, not proposed.
    let fed = Federation::start(LayoutKind::TwoExchanges, 1, Tuning::default(), |_, _| {}).await?;
    let nowhere = ContentId::of(b"no listing of zhengzhou");
    let (client, _events) = fed.gossip.join(&Keypair::generate().public());
    for number in 1..=3 {
        let (request, key, xuchang, origin_peer) = xuchang_request(&fed, number, nowhere, nowhere)?;
        let signed = SignedMessage::request(&request, &key, xuchang.zone.delegation.clone());
        let answer = ask(&client, &origin_peer, signed.to_bytes()).await?;
        ensure!(
            matches!(&answer, ApplicationAnswer::Refused { kind, .. } if kind == "not_found"),
            "{answer:?}"
        );
    }
    let z = fed.zone_tokens(ZHENGZHOU).clone();
    let (s, chain) = fed
        .get(ZHENGZHOU, 0, "/v1/audit?limit=1000", &z.regulator)
        .await?;
    ensure!(s == 200, "{s} {chain}");
    let written: Vec<&Value> = chain["items"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|r| r["action"] == "receive_application")
                .collect()
        })
        .unwrap_or_default();
    ensure!(written.is_empty(), "nothing written: {written:?}");
    fed.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_second_request_under_one_application_number_is_refused_and_recorded()
-> anyhow::Result<()> {
    const X: usize = 0;
    const Z: usize = 1;
    let tuning = Tuning {
        catchup_every: Duration::from_secs(1),
        ..Tuning::default()
    };
    let fed = Federation::start(LayoutKind::TwoExchanges, 1, tuning, |_, _| {}).await?;
    let listing = fed
        .approve_new(Z, example_listing("伪造的跨所申请"))
        .await?;
    fed.wait_for_state(X, 0, &listing, "recognised").await?;
    let z = fed.zone_tokens(Z).clone();
    let (s, held) = fed
        .get(Z, 0, &format!("/v1/listings/{listing}"), &z.regulator)
        .await?;
    ensure!(s == 200, "{s} {held}");
    let content_id = held["content_id"].as_str().context("content id")?.parse()?;

    // A request as Xuchang's node would sign it, for application 900001.
    let (request, key, xuchang, origin_peer) =
        xuchang_request(&fed, 900_001, listing.parse()?, content_id)?;
    let genuine = SignedMessage::request(&request, &key, xuchang.zone.delegation.clone());
    let mut tampered = genuine.clone();
    let mut raised = request.clone();
    raised.usage_limit = 10_000;
    tampered.body = to_canonical(&raised)?;
    tampered.id = ContentId::of(&tampered.body);

    let (client, _events) = fed.gossip.join(&Keypair::generate().public());
    let answer = ask(&client, &origin_peer, tampered.to_bytes()).await?;
    ensure!(
        matches!(&answer, ApplicationAnswer::Refused { kind, .. } if kind == "bad_signature"),
        "{answer:?}"
    );
    let (s, journal) = fed
        .get(
            Z,
            0,
            "/v1/federation/verdicts?kind=bad_signature",
            &z.regulator,
        )
        .await?;
    ensure!(s == 200, "{s} {journal}");
    ensure!(
        journal["items"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| {
                r["via"] == "application" && r["content_id"] == tampered.id.to_string().as_str()
            })),
        "the refusal is recorded: {journal}"
    );

    // The genuine request is recorded; sent again, it is the same application.
    for _ in 0..3 {
        let answer = ask(&client, &origin_peer, genuine.to_bytes()).await?;
        ensure!(answer == ApplicationAnswer::Received {}, "{answer:?}");
    }
    // Another request under the same application number is refused.
    let mut other = request.clone();
    other.purpose = "另一个用途".into();
    let second = SignedMessage::request(&other, &key, xuchang.zone.delegation.clone());
    let answer = ask(&client, &origin_peer, second.to_bytes()).await?;
    ensure!(
        matches!(&answer, ApplicationAnswer::Refused { kind, .. } if kind == "conflict"),
        "{answer:?}"
    );
    let (s, page) = fed
        .get(Z, 0, "/v1/applications?limit=100", &z.operator)
        .await?;
    ensure!(s == 200, "{s} {page}");
    let recorded: Vec<&Value> = page["items"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|a| a["across"]["applicant_application"] == 900_001)
                .collect()
        })
        .unwrap_or_default();
    ensure!(recorded.len() == 1, "recorded once: {page}");
    assert_eq!(
        recorded[0]["across"]["request_id"],
        genuine.id.to_string().as_str()
    );
    fed.shutdown().await;
    Ok(())
}
