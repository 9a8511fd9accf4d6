//! Scenario applications and authorisations through the API of a 3-node zone (issue #14): a
//! buyer applies on one node, an operator authorises on another, usage is counted through a
//! third. Every refusal is answered with its rule, and a refused use is recorded: two
//! scenarios, a scenario not offered, file delivery of an important product, personal
//! information over raw API, an expired authorisation (on a zone driven by a manual clock),
//! usage over the limit, a suspended, a revoked authorisation, a delisted product, a buyer
//! reading another's authorisation. Concurrent usage spread over the three nodes never passes
//! the limit.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_tests::{Zone, example_listing, party_application};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);

/// The scenarios the test listings offer.
const LENDING: &str = "企业贷款授信审查";
const SUPPLY_CHAIN: &str = "供应链金融";

/// A running single-zone layout of three nodes.
async fn zone() -> anyhow::Result<Zone> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    Ok(zone)
}

/// Expects `answer` to be `status` `code`; its message, for more checks.
fn refused(answer: &(u16, Value), status: u16, code: &str) -> anyhow::Result<String> {
    let (s, body) = answer;
    ensure!(
        *s == status && body["error"]["code"] == code,
        "expected {status} {code}, got {s} {body}"
    );
    Ok(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// A listing of the zone's demo provider offering both test scenarios, changed by `edit`,
/// submitted on node 0 and approved on node 1; its id.
async fn listed(zone: &Zone, edit: impl FnOnce(&mut Value)) -> anyhow::Result<String> {
    let mut listing = example_listing("for scenario applications");
    listing["scenarios"] = json!([LENDING, SUPPLY_CHAIN]);
    edit(&mut listing);
    let t = zone.tokens();
    let (status, body) = zone.post(0, "/v1/listings", &t.provider, &listing).await?;
    ensure!(status == 201, "submit: {status} {body}");
    let id = body["id"].as_str().context("no listing id")?.to_owned();
    let approve = format!("/v1/listings/{id}/approve");
    let answer = zone.post(1, &approve, &t.operator, &json!({})).await?;
    ensure!(answer.0 == 200, "approve: {answer:?}");
    Ok(id)
}

/// An application for `listing` and `scenario` by `mode`, 30 days and `limit` calls.
fn application(listing: &str, scenario: Value, mode: &str, limit: u64) -> Value {
    json!({
        "listing_id": listing,
        "scenario": scenario,
        "purpose": "授信前核验企业登记状态",
        "delivery_mode": mode,
        "duration_days": 30,
        "usage_limit": limit,
    })
}

/// The zone's demo buyer applies on node 0 and the operator approves on node 1 as asked; the
/// authorisation's id.
async fn authorised(zone: &Zone, listing: &str, limit: u64) -> anyhow::Result<u64> {
    let t = zone.tokens();
    let body = application(listing, json!(LENDING), "api", limit);
    let (status, answer) = zone.post(0, "/v1/applications", &t.buyer, &body).await?;
    ensure!(status == 201, "apply: {status} {answer}");
    let id = answer["id"].as_u64().context("no application id")?;
    let approve = format!("/v1/applications/{id}/approve");
    let (status, answer) = zone.post(1, &approve, &t.operator, &json!({})).await?;
    ensure!(status == 200, "approve: {status} {answer}");
    answer["authorization_id"]
        .as_u64()
        .context("no authorization id")
}

/// Reports `calls` on authorisation `id` through node `i` with the buyer's token.
async fn use_it(zone: &Zone, i: usize, id: u64, calls: u64) -> anyhow::Result<(u16, Value)> {
    let path = format!("/v1/authorizations/{id}/usage");
    zone.post(i, &path, &zone.tokens().buyer, &json!({"calls": calls}))
        .await
}

/// Authorisation `id` as the regulator reads it on node `i`.
async fn authorization(zone: &Zone, i: usize, id: u64) -> anyhow::Result<Value> {
    let path = format!("/v1/authorizations/{id}");
    let (status, body) = zone.get(i, &path, Some(&zone.tokens().regulator)).await?;
    ensure!(status == 200, "read authorization: {status} {body}");
    Ok(body)
}

/// The applications the regulator sees.
async fn every_application(zone: &Zone) -> anyhow::Result<Vec<Value>> {
    let (status, body) = zone
        .get(2, "/v1/applications", Some(&zone.tokens().regulator))
        .await?;
    ensure!(status == 200, "list: {status} {body}");
    Ok(body["items"].as_array().cloned().unwrap_or_default())
}

/// The results of the audit records of `action`, as node `i` reads them.
async fn audit_results(zone: &Zone, i: usize, action: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = zone
        .get(i, "/v1/audit?limit=1000", Some(&zone.tokens().admin))
        .await?;
    ensure!(status == 200, "audit: {status} {body}");
    Ok(body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == action)
        .map(|r| r["result"].as_str().unwrap_or_default().to_owned())
        .collect())
}

/// Expects the audit records of `action` node `i` reads to be `count` refusals with `code`.
async fn refusals_audited(
    zone: &Zone,
    i: usize,
    action: &str,
    code: &str,
    count: usize,
) -> anyhow::Result<()> {
    let results = audit_results(zone, i, action).await?;
    let refused = format!("refused:{code}: ");
    ensure!(
        results.len() == count && results.iter().all(|r| r.starts_with(&refused)),
        "{count} {action} refused with {code} in the audit chain: {results:?}"
    );
    Ok(())
}

/// Has `party` apply and be admitted as a processor, and gives it a buyer token.
async fn another_buyer(zone: &Zone, party: &str) -> anyhow::Result<String> {
    let t = zone.tokens();
    let answer = zone
        .post(
            0,
            "/v1/parties",
            &t.operator,
            &party_application(party, &["processor"]),
        )
        .await?;
    ensure!(answer.0 == 201, "apply {party}: {answer:?}");
    let admit = format!("/v1/parties/{party}/admit");
    let answer = zone.post(1, &admit, &t.operator, &json!({})).await?;
    ensure!(answer.0 == 200, "admit {party}: {answer:?}");
    let body = json!({"role": "buyer", "party": party, "label": "test"});
    let (status, body) = zone.post(2, "/v1/tokens", &t.admin, &body).await?;
    ensure!(status == 201, "token for {party}: {status} {body}");
    Ok(body["token"].as_str().context("no token")?.to_owned())
}

#[tokio::test]
async fn a_buyer_applies_on_one_node_is_authorised_on_another_and_uses_through_a_third()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let t = zone.tokens().clone();
    let listing = listed(&zone, |_| {}).await?;

    let body = application(&listing, json!(LENDING), "api", 1000);
    let (status, applied) = zone.post(0, "/v1/applications", &t.buyer, &body).await?;
    ensure!(status == 201, "apply: {status} {applied}");
    ensure!(
        applied["state"] == "submitted" && applied["precedents"] == json!([]),
        "a first application has no precedent: {applied}"
    );
    let id = applied["id"].as_u64().context("id")?;

    let pending = format!("/v1/applications?state=submitted&listing_id={listing}");
    let (status, page) = zone.get(1, &pending, Some(&t.operator)).await?;
    ensure!(
        status == 200 && page["items"][0]["id"] == id,
        "operator's list: {page}"
    );

    let narrowed = json!({"duration_days": 7, "usage_limit": 100, "delivery_mode": "verification"});
    let approve = format!("/v1/applications/{id}/approve");
    let (status, approval) = zone.post(1, &approve, &t.operator, &narrowed).await?;
    ensure!(status == 200, "approve: {status} {approval}");
    let granted = &approval["authorization"];
    ensure!(
        approval["state"] == "approved"
            && granted["scenario"] == LENDING
            && granted["delivery_mode"] == "verification"
            && granted["usage_limit"] == 100
            && granted["used"] == 0
            && granted["state"] == "active",
        "granted as narrowed: {approval}"
    );
    let authorization_id = approval["authorization_id"].as_u64().context("auth id")?;

    let (status, count) = use_it(&zone, 2, authorization_id, 30).await?;
    ensure!(
        status == 200 && count["used"] == 30 && count["remaining"] == 70,
        "usage: {status} {count}"
    );
    let path = format!("/v1/authorizations/{authorization_id}");
    let (status, own) = zone.get(0, &path, Some(&t.buyer)).await?;
    ensure!(
        status == 200 && own["used"] == 30,
        "the buyer reads its own: {own}"
    );
    let (status, provider) = zone.get(1, &path, Some(&t.provider)).await?;
    ensure!(status == 200, "the provider reads it too: {provider}");

    // A usage report by the provider's delivery system counts against the same limit.
    let usage = format!("/v1/authorizations/{authorization_id}/usage");
    let (status, count) = zone
        .post(0, &usage, &t.provider, &json!({"calls": 5}))
        .await?;
    ensure!(
        status == 200 && count["used"] == 35,
        "provider usage: {count}"
    );

    // Another buyer applying for the same listing and scenario sees the earlier decision.
    let other = another_buyer(&zone, "luohe-food-processing").await?;
    let body = application(&listing, json!(LENDING), "api", 500);
    let (status, second) = zone.post(2, "/v1/applications", &other, &body).await?;
    ensure!(status == 201, "second application: {status} {second}");
    let precedent = &second["precedents"][0];
    ensure!(
        precedent["decision"] == "approved"
            && precedent["delivery_mode"] == "verification"
            && precedent["duration_days"] == 7
            && precedent["usage_limit"] == 100
            && precedent.get("buyer").is_none(),
        "the earlier decision and its terms, not who applied: {second}"
    );
    let second_id = second["id"].as_u64().context("id")?;
    let reject = format!("/v1/applications/{second_id}/reject");
    let reason = json!({"reason": "用途与场景不符"});
    let (status, rejected) = zone.post(0, &reject, &t.operator, &reason).await?;
    ensure!(
        status == 200 && rejected["state"] == "rejected",
        "reject: {rejected}"
    );
    let again = format!("/v1/applications/{second_id}/approve");
    let answer = zone.post(1, &again, &t.operator, &json!({})).await?;
    refused(&answer, 409, "illegal_transition")?;

    // Each buyer lists its own; the regulator all.
    let (_, mine) = zone.get(1, "/v1/applications", Some(&t.buyer)).await?;
    let (_, theirs) = zone.get(1, "/v1/applications", Some(&other)).await?;
    ensure!(
        mine["items"].as_array().map(Vec::len) == Some(1)
            && mine["items"][0]["id"] == id
            && theirs["items"].as_array().map(Vec::len) == Some(1)
            && theirs["items"][0]["state"] == "rejected",
        "own lists: {mine} {theirs}"
    );
    ensure!(
        every_application(&zone).await?.len() == 2,
        "the regulator sees both"
    );
    let (status, detail) = zone
        .get(2, &format!("/v1/applications/{id}"), Some(&t.regulator))
        .await?;
    ensure!(
        status == 200 && detail["precedents"][0]["reason"] == "用途与场景不符",
        "the first application shows the later rejection: {detail}"
    );

    let approvals = audit_results(&zone, 2, "approve_application").await?;
    let uses = audit_results(&zone, 0, "record_usage").await?;
    ensure!(
        approvals.len() == 2
            && approvals[0] == "ok"
            && approvals[1].starts_with("refused:illegal_transition")
            && uses == ["ok", "ok"],
        "every decision and use in the audit chain: {approvals:?} {uses:?}"
    );
    Ok(())
}

#[tokio::test]
async fn only_a_buyer_token_applies_and_a_refusal_names_that_role_alone() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let body = application(&listing, json!(LENDING), "api", 10);
    let t = zone.tokens().clone();
    // An admin token passes most role checks, but an application is in a buyer party's name.
    for (role, token) in [
        ("admin", &t.admin),
        ("operator", &t.operator),
        ("regulator", &t.regulator),
        ("provider", &t.provider),
    ] {
        let answer = zone.post(1, "/v1/applications", token, &body).await?;
        let why = refused(&answer, 403, "forbidden")?;
        ensure!(
            why.ends_with(&format!(
                "{role} token cannot do this; it needs one of: buyer"
            )),
            "names the buyer role alone: {why}"
        );
    }
    ensure!(
        every_application(&zone).await?.is_empty(),
        "nothing written"
    );
    Ok(())
}

#[tokio::test]
async fn an_application_naming_two_scenarios_is_refused() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let buyer = zone.tokens().buyer.clone();
    for two in [
        json!([LENDING, SUPPLY_CHAIN]),
        json!(format!("{LENDING}、{SUPPLY_CHAIN}")),
        json!(format!("{LENDING} {SUPPLY_CHAIN}")),
    ] {
        let body = application(&listing, two, "api", 10);
        let answer = zone.post(1, "/v1/applications", &buyer, &body).await?;
        let why = refused(&answer, 422, "one_scenario")?;
        ensure!(why.contains("一场景一申请"), "names the rule: {why}");
        ensure!(answer.1["error"]["field"] == "scenario", "{answer:?}");
    }
    ensure!(
        every_application(&zone).await?.is_empty(),
        "nothing written"
    );
    refusals_audited(&zone, 2, "submit_application", "one_scenario", 3).await
}

#[tokio::test]
async fn a_scenario_the_listing_does_not_offer_is_refused() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let body = application(&listing, json!("个人消费信贷"), "api", 10);
    let answer = zone
        .post(2, "/v1/applications", &zone.tokens().buyer, &body)
        .await?;
    let why = refused(&answer, 422, "scenario_not_offered")?;
    ensure!(
        why.contains(LENDING) && why.contains(SUPPLY_CHAIN),
        "lists what is offered: {why}"
    );
    ensure!(
        every_application(&zone).await?.is_empty(),
        "nothing written"
    );
    refusals_audited(&zone, 0, "submit_application", "scenario_not_offered", 1).await
}

#[tokio::test]
async fn file_delivery_of_an_important_product_is_refused() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |l| {
        l["classification"] = json!("important");
        l["delivery_modes"] = json!(["file", "sandbox"]);
    })
    .await?;
    let buyer = zone.tokens().buyer.clone();
    let body = application(&listing, json!(LENDING), "file", 10);
    let answer = zone.post(0, "/v1/applications", &buyer, &body).await?;
    let why = refused(&answer, 422, "in_domain_only")?;
    ensure!(
        why.contains("in-domain delivery rule") && why.contains("important"),
        "names the rule and why: {why}"
    );
    ensure!(
        every_application(&zone).await?.is_empty(),
        "nothing written"
    );
    refusals_audited(&zone, 1, "submit_application", "in_domain_only", 1).await?;

    // The same product in its sandbox is applied for, and cannot be narrowed to files.
    let body = application(&listing, json!(LENDING), "sandbox", 10);
    let (status, applied) = zone.post(0, "/v1/applications", &buyer, &body).await?;
    ensure!(status == 201, "sandbox: {status} {applied}");
    let approve = format!("/v1/applications/{}/approve", applied["id"]);
    let to_file = json!({"delivery_mode": "file"});
    let answer = zone
        .post(1, &approve, &zone.tokens().operator, &to_file)
        .await?;
    refused(&answer, 422, "in_domain_only")?;
    ensure!(answer.1["error"]["field"] == "delivery_mode", "{answer:?}");
    refusals_audited(&zone, 2, "approve_application", "in_domain_only", 1).await
}

#[tokio::test]
async fn a_refused_approval_names_the_term_it_blames() -> anyhow::Result<()> {
    let zone = zone().await?;
    // Delivered by file or API (the example's modes); asked by API, 30 days, 10 calls.
    let listing = listed(&zone, |_| {}).await?;
    let body = application(&listing, json!(LENDING), "api", 10);
    let buyer = zone.tokens().buyer.clone();
    let (status, applied) = zone.post(0, "/v1/applications", &buyer, &body).await?;
    ensure!(status == 201, "apply: {status} {applied}");
    let approve = format!("/v1/applications/{}/approve", applied["id"]);
    for (terms, field) in [
        (json!({"duration_days": 31}), "duration_days"),
        (json!({"usage_limit": 11}), "usage_limit"),
        (json!({"delivery_mode": "sandbox"}), "delivery_mode"),
    ] {
        let answer = zone
            .post(1, &approve, &zone.tokens().operator, &terms)
            .await?;
        refused(&answer, 422, "invalid")?;
        ensure!(
            answer.1["error"]["field"] == field,
            "{terms} blames {field}: {answer:?}"
        );
    }
    refusals_audited(&zone, 2, "approve_application", "invalid", 3).await
}

#[tokio::test]
async fn personal_information_over_raw_api_is_refused() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |l| {
        l["contains_personal_info"] = json!(true);
        l["delivery_modes"] = json!(["api", "privacy_computing"]);
    })
    .await?;
    let body = application(&listing, json!(LENDING), "api", 10);
    let answer = zone
        .post(1, "/v1/applications", &zone.tokens().buyer, &body)
        .await?;
    let why = refused(&answer, 422, "in_domain_only")?;
    ensure!(why.contains("personal information"), "{why}");
    ensure!(answer.1["error"]["field"] == "delivery_mode", "{answer:?}");
    ensure!(
        every_application(&zone).await?.is_empty(),
        "nothing written"
    );
    refusals_audited(&zone, 2, "submit_application", "in_domain_only", 1).await
}

#[tokio::test]
async fn usage_over_the_limit_is_refused_and_recorded() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let id = authorised(&zone, &listing, 10).await?;
    let (status, count) = use_it(&zone, 0, id, 8).await?;
    ensure!(status == 200 && count["remaining"] == 2, "{count}");
    let answer = use_it(&zone, 1, id, 3).await?;
    let why = refused(&answer, 403, "usage_limit_exceeded")?;
    ensure!(why.contains("10"), "says the limit: {why}");
    let a = authorization(&zone, 2, id).await?;
    ensure!(
        a["used"] == 8 && a["refused"] == 1,
        "none of the calls counted, the refusal recorded: {a}"
    );
    let (status, count) = use_it(&zone, 2, id, 2).await?;
    ensure!(
        status == 200 && count["remaining"] == 0,
        "the rest fits: {count}"
    );
    let results = audit_results(&zone, 0, "record_usage").await?;
    ensure!(
        results.len() == 3 && results[1].starts_with("refused:usage_limit_exceeded"),
        "{results:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_number_that_is_nothing_is_404_writing_nothing_and_a_listing_id_that_is_none_400()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let t = zone.tokens();
    for (path, body) in [
        ("/v1/applications/999/approve", json!({})),
        ("/v1/applications/999/reject", json!({"reason": "no"})),
        ("/v1/authorizations/999/suspend", json!({"reason": "no"})),
        ("/v1/authorizations/999/revoke", json!({"reason": "no"})),
    ] {
        let (status, answer) = zone.post(1, path, &t.operator, &body).await?;
        ensure!(
            status == 404 && answer["error"]["code"] == "not_found",
            "{path}: {status} {answer}"
        );
    }
    // A listing_id filter that is no listing id is refused, as on certificates.
    for list in ["/v1/applications", "/v1/authorizations", "/v1/certificates"] {
        let path = format!("{list}?listing_id=bad");
        let (status, answer) = zone.get(0, &path, Some(&t.regulator)).await?;
        ensure!(
            status == 400 && answer["error"]["field"] == "listing_id",
            "{path}: {status} {answer}"
        );
    }
    for action in [
        "approve_application",
        "reject_application",
        "suspend_authorization",
    ] {
        let recorded = audit_results(&zone, 0, action).await?;
        ensure!(recorded.is_empty(), "{action} recorded: {recorded:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_usage_report_sent_again_under_its_key_answers_what_it_counted_then() -> anyhow::Result<()>
{
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let id = authorised(&zone, &listing, 1000).await?;
    let url = |i: usize| format!("{}/v1/authorizations/{id}/usage", zone.nodes[i].api_url);
    let buyer = &zone.tokens().buyer;
    let calls = json!({"calls": 20});
    let (status, first) = xchg_tests::post_with_key(&url(0), buyer, "batch-1", &calls).await?;
    ensure!(status == 200 && first["used"] == 20, "{status} {first}");
    let (status, other) = use_it(&zone, 1, id, 100).await?;
    ensure!(status == 200 && other["used"] == 120, "{status} {other}");
    // The retry, to another node: counted once, and answered as the first time.
    let (status, again) = xchg_tests::post_with_key(&url(2), buyer, "batch-1", &calls).await?;
    ensure!(
        status == 200 && again["used"] == 20 && again["remaining"] == 980,
        "the first answer again: {status} {again}"
    );
    let a = authorization(&zone, 0, id).await?;
    ensure!(a["used"] == 120, "counted once: {a}");
    Ok(())
}

/// An operator's `change` (`suspend` or `revoke`) of a fresh authorisation on node 1; every
/// use afterwards, on any node, is refused with `code` and recorded. The zone and the
/// authorisation, for more.
async fn every_use_refused_after(change: &str, code: &str) -> anyhow::Result<(Zone, u64)> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let id = authorised(&zone, &listing, 100).await?;
    ensure!(use_it(&zone, 0, id, 1).await?.0 == 200, "a use before");
    let path = format!("/v1/authorizations/{id}/{change}");
    let reason = json!({"reason": "合规检查"});
    let (status, a) = zone
        .post(1, &path, &zone.tokens().operator, &reason)
        .await?;
    ensure!(
        status == 200 && a["reason"] == "合规检查",
        "{change}: {status} {a}"
    );
    for i in 0..3 {
        refused(&use_it(&zone, i, id, 1).await?, 403, code)?;
    }
    let a = authorization(&zone, 2, id).await?;
    ensure!(a["used"] == 1 && a["refused"] == 3, "{a}");
    ensure!(
        a["last_refusal"]
            .as_str()
            .is_some_and(|r| r.starts_with(code)),
        "{a}"
    );
    let results = audit_results(&zone, 0, "record_usage").await?;
    let refusal = format!("refused:{code}");
    ensure!(
        results.len() == 4 && results[1..].iter().all(|r| r.starts_with(&refusal)),
        "every refused use is in the audit chain: {results:?}"
    );
    Ok((zone, id))
}

/// The operator lifts the suspension of authorisation `id`, on node 2.
async fn reinstate(zone: &Zone, id: u64) -> anyhow::Result<(u16, Value)> {
    let path = format!("/v1/authorizations/{id}/reinstate");
    let reason = json!({"reason": "整改完成"});
    zone.post(2, &path, &zone.tokens().operator, &reason).await
}

#[tokio::test]
async fn a_suspended_authorisation_refuses_every_use_until_reinstated() -> anyhow::Result<()> {
    let (zone, id) = every_use_refused_after("suspend", "authorization_suspended").await?;
    let (status, a) = reinstate(&zone, id).await?;
    ensure!(status == 200 && a["state"] == "active", "{status} {a}");
    let (status, count) = use_it(&zone, 1, id, 1).await?;
    ensure!(status == 200 && count["used"] == 2, "{status} {count}");
    refused(&reinstate(&zone, id).await?, 409, "illegal_transition")?;
    Ok(())
}

#[tokio::test]
async fn a_revoked_authorisation_refuses_every_use_for_good() -> anyhow::Result<()> {
    let (zone, id) = every_use_refused_after("revoke", "authorization_revoked").await?;
    let why = refused(&reinstate(&zone, id).await?, 409, "illegal_transition")?;
    ensure!(why.contains("revoked"), "{why}");
    refused(
        &use_it(&zone, 2, id, 1).await?,
        403,
        "authorization_revoked",
    )?;
    Ok(())
}

#[tokio::test]
async fn a_delisted_products_authorisation_refuses_every_use() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let id = authorised(&zone, &listing, 100).await?;
    let delist = format!("/v1/listings/{listing}/delist");
    let reason = json!({"reason": "停止提供"});
    let answer = zone
        .post(2, &delist, &zone.tokens().operator, &reason)
        .await?;
    ensure!(answer.0 == 200, "delist: {answer:?}");
    let why = refused(&use_it(&zone, 0, id, 1).await?, 403, "listing_not_listed")?;
    ensure!(why.contains("delisted"), "{why}");
    let a = authorization(&zone, 1, id).await?;
    ensure!(a["used"] == 0 && a["refused"] == 1, "{a}");
    refusals_audited(&zone, 2, "record_usage", "listing_not_listed", 1).await
}

#[tokio::test]
async fn a_buyer_cannot_read_another_buyers_authorisation() -> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let id = authorised(&zone, &listing, 100).await?;
    let other = another_buyer(&zone, "luohe-food-processing").await?;
    let path = format!("/v1/authorizations/{id}");
    let why = refused(&zone.get(1, &path, Some(&other)).await?, 403, "forbidden")?;
    ensure!(why.contains("its own"), "{why}");
    // Nor count usage on it, nor see its application.
    let usage = format!("{path}/usage");
    let answer = zone.post(2, &usage, &other, &json!({"calls": 1})).await?;
    refused(&answer, 403, "forbidden")?;
    let (status, list) = zone.get(0, "/v1/applications", Some(&other)).await?;
    ensure!(status == 200 && list["items"] == json!([]), "{list}");
    ensure!(
        authorization(&zone, 0, id).await?["used"] == 0,
        "nothing counted"
    );
    // A refused read is answered, not written to the zone's log.
    refusals_audited(&zone, 0, "read_authorization", "forbidden", 0).await?;
    refusals_audited(&zone, 1, "record_usage", "forbidden", 1).await
}

/// The numbers of the authorisations `token` lists on node `i` with `query`.
async fn listed_authorizations(
    zone: &Zone,
    i: usize,
    token: &str,
    query: &str,
) -> anyhow::Result<Vec<u64>> {
    let (status, page) = zone
        .get(i, &format!("/v1/authorizations{query}"), Some(token))
        .await?;
    ensure!(status == 200, "list {query}: {status} {page}");
    Ok(page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_u64())
        .collect())
}

#[tokio::test]
async fn authorisations_are_listed_by_number_each_party_seeing_only_its_own() -> anyhow::Result<()>
{
    // The dashboard reads the authorisations of a page of applications in one request.
    let zone = zone().await?;
    let t = zone.tokens().clone();
    let listing = listed(&zone, |_| {}).await?;
    let first = authorised(&zone, &listing, 100).await?;
    let second = authorised(&zone, &listing, 10).await?;
    ensure!(use_it(&zone, 2, second, 4).await?.0 == 200, "used");
    let both = format!("?ids={first},{second}");
    for token in [&t.buyer, &t.provider, &t.regulator, &t.operator] {
        let ids = listed_authorizations(&zone, 0, token, &both).await?;
        ensure!(
            ids == [second, first],
            "newest first, to its parties and staff: {ids:?}"
        );
    }
    let (_, page) = zone
        .get(
            1,
            &format!("/v1/authorizations?ids={second}"),
            Some(&t.buyer),
        )
        .await?;
    let a = &page["items"][0];
    ensure!(
        a["used"] == 4
            && a["usage_limit"] == 10
            && a["remaining"] == 6
            && a["expires_at"].is_string(),
        "usage against the limit and the expiry, as one authorisation shows them: {page}"
    );
    let other = another_buyer(&zone, "luohe-food-processing").await?;
    let ids = listed_authorizations(&zone, 1, &other, &both).await?;
    ensure!(ids.is_empty(), "another buyer sees none of them: {ids:?}");
    let ids = listed_authorizations(&zone, 2, &t.regulator, "?limit=1").await?;
    ensure!(ids == [second], "a page: {ids:?}");
    for bad in ["?ids=1,,2", "?ids=", "?ids=x"] {
        let answer = zone
            .get(0, &format!("/v1/authorizations{bad}"), Some(&t.buyer))
            .await?;
        let why = refused(&answer, 400, "invalid_field")?;
        ensure!(answer.1["error"]["field"] == "ids", "{bad}: {why}");
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_usage_spread_over_three_nodes_never_passes_the_limit() -> anyhow::Result<()> {
    const LIMIT: u64 = 50;
    const CALLS: usize = 200;
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let id = authorised(&zone, &listing, LIMIT).await?;
    // Every report in flight at once, a third to each node.
    let http = reqwest::Client::new();
    let mut reports = tokio::task::JoinSet::new();
    for n in 0..CALLS {
        let request = http
            .post(format!(
                "{}/v1/authorizations/{id}/usage",
                zone.nodes[n % 3].api_url
            ))
            .bearer_auth(&zone.tokens().buyer)
            .json(&json!({"calls": 1}));
        reports.spawn(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        });
    }
    let mut counted = 0;
    while let Some(answer) = reports.join_next().await {
        let (status, body) = answer??;
        match status {
            200 => {
                counted += 1;
                let used = body["used"].as_u64().context("used")?;
                ensure!(used <= LIMIT, "used {used} past the limit: {body}");
            }
            _ => {
                refused(&(status, body), 403, "usage_limit_exceeded")?;
            }
        }
    }
    ensure!(
        counted == LIMIT,
        "{counted} of {CALLS} counted, not {LIMIT}"
    );
    for i in 0..3 {
        let a = authorization(&zone, i, id).await?;
        ensure!(
            a["used"] == LIMIT && a["refused"] == (CALLS as u64 - LIMIT),
            "node {i}: {a}"
        );
    }
    Ok(())
}

mod on_a_manual_clock {
    //! Expiry, on an in-process zone whose clock the test moves (no waiting for days).

    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::{Context as _, ensure};
    use reqwest::Method;
    use serde_json::json;
    use xchg_federation_config::layout::LayoutKind;
    use xchg_node::clock::{Clock, ManualClock};
    use xchg_node::node::StartOptions;
    use xchg_protocol::Timestamp;
    use xchg_tests::example_listing;
    use xchg_tests::in_process::Federation;

    const DAY: Duration = Duration::from_secs(24 * 3_600);

    /// POSTs `body` to node `node` of the zone with `token`.
    async fn post(
        fed: &Federation,
        node: usize,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        fed.call(0, node, Method::POST, path, token, Some(body))
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_authorisation_refuses_every_use_by_the_zones_time() -> anyhow::Result<()> {
        let clock = ManualClock::new(Timestamp::now());
        let options = StartOptions {
            clock: Arc::new(clock.clone()),
            ..StartOptions::default()
        };
        let fed = Federation::start_with(LayoutKind::SingleZone, 3, options, |_, _| {}).await?;
        let t = fed.zone_tokens(0).clone();
        let mut listing = example_listing("expiring");
        listing["scenarios"] = json!([super::LENDING]);
        let listing = fed.approve_new(0, listing).await?;
        let body = super::application(&listing, json!(super::LENDING), "api", 100);
        let (status, applied) = post(&fed, 0, "/v1/applications", &t.buyer, body).await?;
        ensure!(status == 201, "apply: {status} {applied}");
        let approve = format!("/v1/applications/{}/approve", applied["id"]);
        let narrowed = json!({"duration_days": 2});
        let (status, approval) = post(&fed, 1, &approve, &t.operator, narrowed).await?;
        ensure!(status == 200, "approve: {status} {approval}");
        let id = approval["authorization_id"].as_u64().context("id")?;
        let expected_end = clock.now().plus_millis(2 * DAY.as_millis() as u64);
        ensure!(
            approval["authorization"]["expires_at"] == serde_json::to_value(expected_end)?,
            "two days from the approval, by the zone's clock: {approval}"
        );
        let usage = format!("/v1/authorizations/{id}/usage");
        let one = || json!({"calls": 1});

        clock.advance(DAY);
        let (status, count) = post(&fed, 2, &usage, &t.buyer, one()).await?;
        ensure!(
            status == 200 && count["used"] == 1,
            "a day in: {status} {count}"
        );

        clock.advance(DAY);
        for node in 0..3 {
            let answer = post(&fed, node, &usage, &t.buyer, one()).await?;
            super::refused(&answer, 403, "authorization_expired")?;
        }
        let path = format!("/v1/authorizations/{id}");
        let (_, a) = fed.get(0, 1, &path, &t.regulator).await?;
        ensure!(a["used"] == 1 && a["refused"] == 3, "recorded: {a}");
        let (_, audit) = fed.get(0, 2, "/v1/audit?limit=1000", &t.admin).await?;
        let expired: Vec<&serde_json::Value> = audit["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["action"] == "record_usage")
            .filter(|r| {
                r["result"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("refused:authorization_expired: "))
            })
            .collect();
        ensure!(expired.len() == 3, "every expired use audited: {audit}");
        fed.shutdown().await;
        Ok(())
    }
}

#[tokio::test]
async fn the_cli_submits_approves_and_lists_applications_with_tokens_from_env_or_file()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let listing = listed(&zone, |_| {}).await?;
    let t = zone.tokens().clone();
    let node = zone.nodes[2].api_url.clone();
    let files = tempfile::tempdir()?;
    let operator = files.path().join("operator.token");
    xchg_federation_config::write_secret(&operator, format!("{}\n", t.operator).as_bytes())?;
    let xchg = |args: &[&str], token: (&str, &str)| {
        std::process::Command::new(xchg_tests::xchg_binary())
            .args(args)
            .args(["--node", &node])
            .env_remove("XCHG_TOKEN")
            .env_remove("XCHG_TOKEN_FILE")
            .env(token.0, token.1)
            .output()
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let submit = [
        "application",
        "submit",
        "--listing",
        &listing,
        "--scenario",
        LENDING,
        "--purpose",
        "授信前核验",
        "--mode",
        "api",
        "--days",
        "30",
        "--limit",
        "100",
    ];
    let out = xchg(&submit, ("XCHG_TOKEN", &t.buyer))?;
    ensure!(out.status.success(), "submit: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(stdout.starts_with("application 1  submitted"), "{stdout}");

    let operator = operator.to_str().unwrap_or_default();
    let approve = ["application", "approve", "1", "--limit", "5"];
    let out = xchg(&approve, ("XCHG_TOKEN_FILE", operator))?;
    ensure!(out.status.success(), "approve: {}", text(&out));
    ensure!(
        text(&out).contains("authorization 1  5 calls by api"),
        "{}",
        text(&out)
    );

    // A refusal is the API's code and message.
    let out = xchg(&approve, ("XCHG_TOKEN_FILE", operator))?;
    ensure!(
        !out.status.success() && text(&out).contains("409 illegal_transition"),
        "{}",
        text(&out)
    );

    let list = ["application", "list", "--state", "approved", "--json"];
    let out = xchg(&list, ("XCHG_TOKEN", &t.regulator))?;
    ensure!(out.status.success(), "list: {}", text(&out));
    let page: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        page["items"][0]["id"] == 1 && page["items"][0]["listing_id"] == listing.as_str(),
        "{page}"
    );
    Ok(())
}
