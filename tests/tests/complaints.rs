//! Supervision (监管, issue #16) through the API of a 3-node zone: the regulator reads every
//! record of its zone; a complaint (投诉举报) is filed by a buyer (with an `Idempotency-Key`,
//! retried through another node), taken up, acted on and closed by the regulator, each step
//! on another node, with every note in its history; a listing under complaint is suspended
//! (new applications refused `listing_suspended`) and the suspension lifted. Every refusal
//! has its kind: a complaint action by a non-regulator, an illegal transition, a target that
//! does not exist, a target kind that is not one. And across exchanges (in one process): a
//! suspension reaches a recognising exchange as a delisting naming the complaint.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_federation_config::layout::LayoutKind;
use xchg_node::federation::Tuning;
use xchg_tests::in_process::Federation;
use xchg_tests::{Zone, example_listing, post_with_key};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// How long a write may take to reach every member.
const SPREAD: Duration = Duration::from_secs(20);

/// Expects `answer` to be `status` `code`.
fn refused(answer: &(u16, Value), status: u16, code: &str) -> anyhow::Result<()> {
    let (s, body) = answer;
    ensure!(
        *s == status && body["error"]["code"] == code,
        "expected {status} {code}, got {s} {body}"
    );
    Ok(())
}

fn ok(answer: &(u16, Value), status: u16) -> anyhow::Result<Value> {
    ensure!(answer.0 == status, "expected {status}, got {answer:?}");
    Ok(answer.1.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_regulator_reads_its_zone_and_takes_a_complaint_from_filing_to_resolution()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let t = zone.tokens().clone();

    // A listing with a certificate and an authorisation: records of every kind.
    let id = zone
        .approve_new(0, &t, &example_listing("under complaint"))
        .await?;
    let (_, listing) = zone
        .get(1, &format!("/v1/listings/{id}"), Some(&t.regulator))
        .await?;
    let scenario = listing["scenarios"][0]
        .as_str()
        .context("a scenario")?
        .to_owned();
    let provider = listing["provider"]["id"]
        .as_str()
        .context("a provider")?
        .to_owned();
    let number = zone.certify(0, &t, &id).await?;
    let authorization = zone.authorise(0, &t, &id, &scenario, 10).await?;

    // 1. The regulator reads every record of its zone.
    for path in [
        "/v1/listings".to_owned(),
        format!("/v1/listings/{id}"),
        "/v1/applications".to_owned(),
        "/v1/applications/1".to_owned(),
        "/v1/authorizations".to_owned(),
        format!("/v1/authorizations/{authorization}"),
        "/v1/registrations/1".to_owned(),
        "/v1/certificates".to_owned(),
        format!("/v1/certificates/{number}"),
        "/v1/parties".to_owned(),
        format!("/v1/parties/{provider}"),
        "/v1/entrustments".to_owned(),
        "/v1/audit".to_owned(),
        "/v1/recognitions".to_owned(),
        "/v1/federation/verdicts".to_owned(),
        "/v1/complaints".to_owned(),
    ] {
        let (s, v) = zone.get(2, &path, Some(&t.regulator)).await?;
        ensure!(s == 200, "the regulator reads {path}: {s} {v}");
    }
    let (_, apps) = zone.get(2, "/v1/applications", Some(&t.regulator)).await?;
    ensure!(apps["items"].as_array().map(Vec::len) == Some(1), "{apps}");
    let (_, party) = zone
        .get(2, &format!("/v1/parties/{provider}"), Some(&t.regulator))
        .await?;
    ensure!(
        party["contact"].is_object(),
        "the regulator sees contacts: {party}"
    );

    // 2. A buyer files a complaint, with a key; the retry through another node answers it.
    let complaint = json!({
        "target": {"kind": "listing", "id": id},
        "category": "quality",
        "text": "交付数据与目录描述不符",
    });
    let key = "complaint-1";
    let url = |i: usize| format!("{}/v1/complaints", zone.nodes[i].api_url);
    let first = post_with_key(&url(0), &t.buyer, key, &complaint).await?;
    let filed = ok(&first, 201)?;
    ensure!(filed["state"] == "received", "{filed}");
    let again = post_with_key(&url(1), &t.buyer, key, &complaint).await?;
    ensure!(
        again.1["id"] == filed["id"],
        "a retry files nothing new: {again:?}"
    );
    let other = json!({"target": {"kind": "party", "id": provider}, "text": "另一投诉"});
    refused(
        &post_with_key(&url(1), &t.buyer, key, &other).await?,
        409,
        "idempotency_key_reused",
    )?;
    let c = filed["id"].as_u64().context("complaint id")?;

    // Against a party too; a target that does not exist, or of an unknown kind, is refused.
    let party_complaint = ok(
        &zone.post(1, "/v1/complaints", &t.provider, &other).await?,
        201,
    )?;
    let absent = json!({"target": {"kind": "listing", "id": format!("sha256:{}", "0".repeat(64))}, "text": "无"});
    refused(
        &zone.post(0, "/v1/complaints", &t.buyer, &absent).await?,
        404,
        "not_found",
    )?;
    // An order is named by its number; this zone has none yet.
    let order = json!({"target": {"kind": "order", "id": "1"}, "text": "订单"});
    refused(
        &zone.post(0, "/v1/complaints", &t.buyer, &order).await?,
        404,
        "not_found",
    )?;
    let unknown = json!({"target": {"kind": "contract", "id": "1"}, "text": "合同"});
    let (s, _) = zone.post(0, "/v1/complaints", &t.buyer, &unknown).await?;
    ensure!(s == 400, "an unknown kind: {s}");
    let blank = json!({"target": {"kind": "party", "id": provider}, "text": "   "});
    refused(
        &zone.post(0, "/v1/complaints", &t.buyer, &blank).await?,
        400,
        "invalid_field",
    )?;

    // A complainant sees its own complaints only; the regulator and operators see all.
    let (_, own) = zone.get(2, "/v1/complaints", Some(&t.buyer)).await?;
    ensure!(own["items"].as_array().map(Vec::len) == Some(1), "{own}");
    refused(
        &zone
            .get(2, &format!("/v1/complaints/{c}"), Some(&t.provider))
            .await?,
        403,
        "forbidden",
    )?;
    for token in [&t.regulator, &t.operator] {
        let (_, all) = zone.get(2, "/v1/complaints", Some(token)).await?;
        ensure!(all["items"].as_array().map(Vec::len) == Some(2), "{all}");
    }

    // Only the regulator acts on a complaint.
    let note = |n: &str| json!({"note": n});
    let on = |what: &str| format!("/v1/complaints/{c}/{what}");
    for token in [&t.operator, &t.buyer, &t.provider] {
        refused(
            &zone.post(1, &on("investigate"), token, &note("x")).await?,
            403,
            "forbidden",
        )?;
        refused(
            &zone
                .post(
                    1,
                    &on("resolve"),
                    token,
                    &json!({"outcome": "resolved", "note": "x"}),
                )
                .await?,
            403,
            "forbidden",
        )?;
        refused(
            &zone
                .post(1, &on("suspend-listing"), token, &note("x"))
                .await?,
            403,
            "forbidden",
        )?;
    }

    // 3. The regulator investigates (node 1) and suspends the listing (node 2).
    let v = ok(
        &zone
            .post(1, &on("investigate"), &t.regulator, &note("调取交付记录"))
            .await?,
        200,
    )?;
    ensure!(v["state"] == "investigating", "{v}");
    refused(
        &zone
            .post(0, &on("investigate"), &t.regulator, &note("again"))
            .await?,
        409,
        "illegal_transition",
    )?;
    let v = ok(
        &zone
            .post(
                2,
                &on("suspend-listing"),
                &t.regulator,
                &note("调查期间暂停"),
            )
            .await?,
        200,
    )?;
    ensure!(v["suspended_listing"] == id.as_str(), "{v}");
    zone.wait_for_state(&[0, 1, 2], &t.regulator, &id, "suspended", SPREAD)
        .await?;
    let application = json!({
        "listing_id": id,
        "scenario": scenario,
        "purpose": "授信前核验",
        "delivery_mode": "api",
        "duration_days": 30,
        "usage_limit": 5,
    });
    refused(
        &zone
            .post(0, "/v1/applications", &t.buyer, &application)
            .await?,
        409,
        "listing_suspended",
    )?;
    // The party complaint is not against a listing: nothing to suspend.
    let p = party_complaint["id"].as_u64().context("id")?;
    refused(
        &zone
            .post(
                0,
                &format!("/v1/complaints/{p}/suspend-listing"),
                &t.regulator,
                &note("x"),
            )
            .await?,
        409,
        "illegal_transition",
    )?;

    // Lifted, then resolved; closed, it takes no step.
    let v = ok(
        &zone
            .post(0, &on("lift-suspension"), &t.regulator, &note("整改完成"))
            .await?,
        200,
    )?;
    ensure!(v["suspended_listing"].is_null(), "{v}");
    zone.wait_for_state(&[0, 1, 2], &t.regulator, &id, "listed", SPREAD)
        .await?;
    ok(
        &zone
            .post(0, "/v1/applications", &t.buyer, &application)
            .await?,
        201,
    )?;
    let resolve = json!({"outcome": "resolved", "note": "提供方已更正数据"});
    let v = ok(
        &zone.post(2, &on("resolve"), &t.regulator, &resolve).await?,
        200,
    )?;
    ensure!(v["state"] == "resolved", "{v}");
    refused(
        &zone.post(1, &on("resolve"), &t.regulator, &resolve).await?,
        409,
        "illegal_transition",
    )?;
    let dismissed = json!({"outcome": "dismissed", "note": "不属实"});
    let v = ok(
        &zone
            .post(
                1,
                &format!("/v1/complaints/{p}/resolve"),
                &t.regulator,
                &dismissed,
            )
            .await?,
        200,
    )?;
    ensure!(v["state"] == "dismissed", "{v}");

    // The history keeps every step and note, as the complainant reads it.
    let v = ok(
        &zone
            .get(0, &format!("/v1/complaints/{c}"), Some(&t.buyer))
            .await?,
        200,
    )?;
    let steps: Vec<(String, String)> = v["history"]
        .as_array()
        .context("history")?
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap_or_default().to_owned(),
                s["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("file", ""),
        ("investigate", "调取交付记录"),
        ("suspend_listing", "调查期间暂停"),
        ("lift_suspension", "整改完成"),
        ("resolve", "提供方已更正数据"),
    ];
    ensure!(
        steps
            .iter()
            .map(|(a, n)| (a.as_str(), n.as_str()))
            .eq(expected),
        "{steps:?}"
    );

    // The zone's figures: the last 30 days, summed (the test may cross midnight).
    let stats = ok(
        &zone
            .get(1, "/v1/supervision/stats", Some(&t.regulator))
            .await?,
        200,
    )?;
    let periods = stats["periods"].as_array().context("periods")?;
    ensure!(periods.len() == 30, "{stats}");
    let sum = |path: &[&str]| -> u64 {
        periods
            .iter()
            .map(|p| path.iter().fold(p, |v, k| &v[*k]).as_u64().unwrap_or(0))
            .sum()
    };
    let last = periods.last().context("a period")?;
    ensure!(
        sum(&["listings", "entered", "listed"]) == 2,
        "approved, lifted: {stats}"
    );
    ensure!(sum(&["listings", "entered", "suspended"]) == 1, "{stats}");
    ensure!(last["listings"]["by_state"]["listed"] == 1, "{stats}");
    ensure!(sum(&["applications", "submitted"]) == 2, "{stats}");
    ensure!(sum(&["applications", "approved"]) == 1, "{stats}");
    ensure!(sum(&["authorizations", "granted"]) == 1, "{stats}");
    ensure!(last["authorizations"]["at_end"]["active"] == 1, "{stats}");
    ensure!(sum(&["complaints", "steps", "file"]) == 2, "{stats}");
    ensure!(
        last["complaints"]["at_end"] == json!({"resolved": 1, "dismissed": 1}),
        "{stats}"
    );
    refused(
        &zone.get(1, "/v1/supervision/stats", Some(&t.buyer)).await?,
        403,
        "forbidden",
    )?;
    refused(
        &zone
            .get(1, "/v1/supervision/stats?period=year", Some(&t.operator))
            .await?,
        400,
        "invalid_field",
    )?;

    // Every step, and the refused ones the state machine judged, are in the audit chain.
    let (_, audit) = zone
        .get(0, "/v1/audit?limit=1000", Some(&t.regulator))
        .await?;
    let records: Vec<(String, String)> = audit["items"]
        .as_array()
        .context("audit")?
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (action, result) in [
        ("file_complaint", "ok"),
        ("file_complaint", "refused:not_found"),
        ("investigate_complaint", "refused:illegal_transition"),
        ("suspend_listing", "ok"),
        ("lift_listing_suspension", "ok"),
        ("resolve_complaint", "ok"),
        ("dismiss_complaint", "ok"),
        ("submit_application", "refused:listing_suspended"),
    ] {
        ensure!(
            records
                .iter()
                .any(|(a, r)| a == action && r.starts_with(result)),
            "no {action} {result} in {records:?}"
        );
    }
    Ok(())
}

const XUCHANG: usize = 0;
const ZHENGZHOU: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_reaches_a_recognising_exchange_as_a_delisting_naming_the_complaint()
-> anyhow::Result<()> {
    let fed = Federation::start(LayoutKind::TwoExchanges, 1, Tuning::default(), |_, _| {}).await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("suspended under complaint"))
        .await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;

    let x = fed.zone_tokens(XUCHANG).clone();
    let complaint = json!({"target": {"kind": "listing", "id": id}, "text": "数据来源存疑"});
    let (s, v) = fed
        .post_keyed(XUCHANG, 0, "/v1/complaints", &x.buyer, &complaint)
        .await?;
    ensure!(s == 201, "{v}");
    let path = format!("/v1/complaints/{}/suspend-listing", v["id"]);
    let (s, v) = fed
        .post(
            XUCHANG,
            0,
            &path,
            &x.regulator,
            &json!({"note": "核查来源"}),
        )
        .await?;
    ensure!(s == 200, "{v}");

    // Zhengzhou drops it: its copy is delisted, the reason naming the complaint.
    fed.wait_for_state(ZHENGZHOU, 0, &id, "delisted").await?;
    let z = fed.zone_tokens(ZHENGZHOU).regulator.clone();
    let (_, detail) = fed
        .get(ZHENGZHOU, 0, &format!("/v1/listings/{id}"), &z)
        .await?;
    let last = detail["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    ensure!(last["action"] == "delist", "{detail}");
    let reason = last["detail"]["reason"]
        .as_str()
        .or_else(|| last["detail"].as_str())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        reason.contains("suspended under complaint 1: 核查来源"),
        "the reason names the complaint: {detail}"
    );
    fed.shutdown().await;
    Ok(())
}

/// The Xuchang layout's zones: the hub, and a county zone.
const HUB: usize = 0;
const COUNTY: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_sees_the_figures_of_every_zone_of_its_exchange_in_one_view() -> anyhow::Result<()>
{
    let fed = Federation::start(LayoutKind::Xuchang, 1, Tuning::default(), |_, _| {}).await?;
    let county = fed.zone_tokens(COUNTY).clone();
    let id = fed
        .approve_new(COUNTY, example_listing("县区监管统计"))
        .await?;
    let complaint = json!({"target": {"kind": "listing", "id": id}, "text": "价格与约定不符"});
    let (s, v) = fed
        .post_keyed(COUNTY, 0, "/v1/complaints", &county.buyer, &complaint)
        .await?;
    ensure!(s == 201, "{v}");
    let county_zone = fed.get(COUNTY, 0, "/v1/status", &county.regulator).await?.1["zone"]
        .as_str()
        .context("zone")?
        .to_owned();

    // The hub's regulator: every Xuchang zone, the county's figures as the county counts them,
    // and no zone of the outside exchange.
    let hub = fed.zone_tokens(HUB).regulator.clone();
    let view = xchg_tests::eventually(
        Duration::from_secs(60),
        "every Xuchang zone in the hub's view",
        || async {
            let (s, v) = fed
                .get(HUB, 0, "/v1/supervision/federation?period=month", &hub)
                .await
                .map_err(|e| e.to_string())?;
            if s != 200 {
                return Err(format!("{s} {v}"));
            }
            let zones = v["zones"].as_array().cloned().unwrap_or_default();
            let answered = zones.iter().filter(|z| z["stats"].is_object()).count();
            // The hub and its nine county and district zones.
            if answered == 10 {
                return Ok(Some(v));
            }
            // What the hub knows of its peers says why a zone is missing.
            let peers = fed
                .get(HUB, 0, "/v1/federation/peers", &hub)
                .await
                .map(|(_, p)| p["peers"].clone())
                .unwrap_or_default();
            Err(format!("{v}; the hub's peers: {peers}"))
        },
    )
    .await?;
    let zones = view["zones"].as_array().context("zones")?;
    ensure!(
        zones[0]["zone"] == "xuchang/municipal",
        "own zone first: {view}"
    );
    ensure!(
        zones.iter().all(|z| z["zone"]
            .as_str()
            .is_some_and(|id| id.starts_with("xuchang/"))),
        "only Xuchang's zones: {view}"
    );
    let entry = zones
        .iter()
        .find(|z| z["zone"] == county_zone.as_str())
        .context("the county")?;
    let sum = |path: &[&str]| -> u64 {
        entry["stats"]["periods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| path.iter().fold(p, |v, k| &v[*k]).as_u64().unwrap_or(0))
            .sum()
    };
    ensure!(sum(&["complaints", "steps", "file"]) == 1, "{entry}");
    ensure!(sum(&["listings", "entered", "listed"]) == 1, "{entry}");
    // The county's own answer to its regulator is the same.
    let (_, own) = fed
        .get(
            COUNTY,
            0,
            "/v1/supervision/stats?period=month",
            &county.regulator,
        )
        .await?;
    ensure!(own == entry["stats"], "{own} vs {entry}");
    // Only the zone's staff reads the view.
    let buyer = fed.zone_tokens(HUB).buyer.clone();
    let (s, _) = fed
        .get(HUB, 0, "/v1/supervision/federation", &buyer)
        .await?;
    ensure!(s == 403, "a buyer: {s}");
    fed.shutdown().await;
    Ok(())
}
