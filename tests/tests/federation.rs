//! Two exchanges as real processes (`xchg config generate --layout two-exchanges`, three nodes
//! per zone, libp2p on loopback): recognition within 5 s, delisting within 5 s, agreement
//! refusals recorded with reasons, the export firewall proven by canaries on every byte the
//! nodes publish or serve, and a publishing leader killed right after approval.

use std::time::{Duration, Instant};

use serde_json::Value;
use xchg_tests::{Zone, eventually, example_listing};

const XUCHANG: &str = "xuchang/municipal";
const ZHENGZHOU: &str = "zhengzhou/main";

fn listing(suffix: &str, category: &str, classification: &str) -> Value {
    let mut l = example_listing(suffix);
    l["category"] = category.into();
    l["classification"] = classification.into();
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_cross_exchanges_under_the_agreement_and_nothing_else_leaves() -> anyhow::Result<()>
{
    let mut fed = Zone::generate("two-exchanges", 3)?;
    let xu = fed.zone_nodes(XUCHANG);
    let zz = fed.zone_nodes(ZHENGZHOU);
    // Zhengzhou recognises only some categories from Xuchang.
    for &i in &zz {
        fed.edit_config(i, |text| {
            let at = text.find("[outside.agreement]").unwrap_or(text.len());
            let (head, tail) = text.split_at(at);
            format!(
                "{head}{}",
                tail.replacen(
                    "categories = [\"*\"]",
                    "categories = [\"credit\", \"transport\", \"finance\"]",
                    1
                )
            )
        })?;
    }
    let wire = fed.dir.path().join("wire");
    std::fs::create_dir_all(&wire)?;
    for i in 0..fed.nodes.len() {
        let capture = wire.join(format!("{}.bin", fed.nodes[i].name));
        let capture = capture.to_string_lossy().into_owned();
        fed.start_with(i, &["--capture-wire", &capture])?;
    }
    let xt = fed.zone_tokens(XUCHANG).clone();
    let zt = fed.zone_tokens(ZHENGZHOU).clone();
    let leader = fed.wait_for_leader(xu[0], Duration::from_secs(30)).await?;
    fed.wait_for_leader(zz[0], Duration::from_secs(30)).await?;

    // Warm-up: the gossip mesh forms; the first listing may take longer than the bound.
    let warm = fed
        .approve_new(leader, &xt, &listing("warm-up", "credit", "general"))
        .await?;
    fed.wait_for_state(
        &zz,
        &zt.regulator,
        &warm,
        "recognised",
        Duration::from_secs(60),
    )
    .await?;

    // A general listing: recognised on all three Zhengzhou nodes within 5 s.
    let general = fed
        .approve_new(leader, &xt, &listing("通用 general", "credit", "general"))
        .await?;
    let approved = Instant::now();
    fed.wait_for_state(
        &zz,
        &zt.regulator,
        &general,
        "recognised",
        Duration::from_secs(5),
    )
    .await?;
    eprintln!(
        "recognised on 3 nodes {:?} after approval",
        approved.elapsed()
    );
    let (_, detail) = fed
        .get(
            zz[1],
            &format!("/v1/listings/{general}"),
            Some(&zt.regulator),
        )
        .await?;
    let p = &detail["provenance"];
    assert_eq!(p["origin"], XUCHANG, "{detail}");
    assert_eq!(p["recognised"], true);
    assert_eq!(p["recognitions"][0]["agreement"], "outside:xuchang");
    assert_eq!(p["recognitions"][0]["delegation"]["zone"], XUCHANG);
    let (_, external) = fed
        .get(
            zz[2],
            "/v1/listings?origin=external&consistency=local",
            Some(&zt.regulator),
        )
        .await?;
    assert!(
        external["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|l| l["id"] == general)),
        "origin=external lists it: {external}"
    );

    // Its delisting follows within 5 s.
    let (s, v) = fed
        .post(
            leader,
            &format!("/v1/listings/{general}/delist"),
            &xt.operator,
            &serde_json::json!({"reason": "provider withdrew the product"}),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    fed.wait_for_state(
        &zz,
        &zt.regulator,
        &general,
        "delisted",
        Duration::from_secs(5),
    )
    .await?;

    // A category outside Zhengzhou's agreement: recorded as rejected with its reason, not listed.
    let health = fed
        .approve_new(
            leader,
            &xt,
            &listing("医疗 healthcare", "healthcare", "general"),
        )
        .await?;
    let rejection = eventually(
        Duration::from_secs(10),
        "the rejection is recorded",
        || async {
            let (_, page) = fed
                .get(
                    zz[0],
                    "/v1/recognitions?decision=rejected",
                    Some(&zt.regulator),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(page["items"]
                .as_array()
                .and_then(|items| items.iter().find(|r| r["listing_id"] == health.as_str()))
                .cloned())
        },
    )
    .await?;
    let reason = rejection["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("category healthcare"), "{rejection}");
    for &i in &zz {
        assert_eq!(fed.state_on(i, &zt.regulator, &health).await?, None);
    }

    // Canaries: what must never leave Xuchang.
    let canaries = [
        ("CANARY-IMPORTANT-7f3a", "credit", "important", false, "api"),
        ("CANARY-CORE-91bd", "credit", "core", false, "sandbox"),
        (
            "CANARY-PERSONAL-FILE-c44e",
            "credit",
            "general",
            true,
            "file",
        ),
    ];
    let mut kept = Vec::new();
    for (canary, category, classification, personal, mode) in canaries {
        let mut l = listing(canary, category, classification);
        l["description"] = format!("{canary} must never leave its zone").into();
        l["contains_personal_info"] = personal.into();
        l["delivery_modes"] = serde_json::json!([mode]);
        kept.push(fed.approve_new(leader, &xt, &l).await?);
    }
    // A listing approved after the canaries crosses: everything before it was handled.
    let after = fed
        .approve_new(
            leader,
            &xt,
            &listing("after the canaries", "transport", "public"),
        )
        .await?;
    fed.wait_for_state(
        &zz,
        &zt.regulator,
        &after,
        "recognised",
        Duration::from_secs(5),
    )
    .await?;
    for id in &kept {
        let (_, detail) = fed
            .get(leader, &format!("/v1/listings/{id}"), Some(&xt.regulator))
            .await?;
        let export = &detail["provenance"]["export"][0];
        assert_eq!(export["state"], "withheld", "{detail}");
        for &i in &zz {
            assert_eq!(fed.state_on(i, &zt.regulator, id).await?, None);
        }
    }
    let (_, found) = fed
        .get(
            zz[0],
            "/v1/listings?q=CANARY&consistency=local",
            Some(&zt.regulator),
        )
        .await?;
    assert_eq!(found["total"], 0, "{found}");

    // The leader of the publishing zone dies right after an approval: the listing still arrives.
    let last = fed
        .approve_new(leader, &xt, &listing("leader dies", "finance", "general"))
        .await?;
    fed.kill(leader);
    fed.wait_for_state(
        &zz,
        &zt.regulator,
        &last,
        "recognised",
        Duration::from_secs(30),
    )
    .await?;

    // Every byte published on gossip or served over request-response, by every node.
    let mut total = 0usize;
    let mut published_titles = 0usize;
    for entry in std::fs::read_dir(&wire)? {
        let records = xchg_node::gossip::swarm::read_capture(&entry?.path())?;
        for r in records {
            total += r.len();
            for (canary, ..) in canaries {
                assert!(
                    !r.windows(canary.len()).any(|w| w == canary.as_bytes()),
                    "{canary} left its zone"
                );
            }
            if r.windows(b"after the canaries".len())
                .any(|w| w == b"after the canaries")
            {
                published_titles += 1;
            }
        }
    }
    // The capture really saw the traffic.
    assert!(published_titles >= 1 && total > 0, "captured {total} bytes");
    Ok(())
}
