//! The party registry through the API of a 3-node zone (issue #14, participants): a party
//! applies on one node, is admitted on another and acts through a third; every refusal of the
//! registry is answered with its rule, writes nothing, and holds on every node: an invalid
//! credit code, a token for a party not admitted, a suspended party, a broker outside its
//! entrustment, an address applying too often.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use xchg_tests::{Zone, eventually, example_listing, party_application};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// How long a write may take to show on every node.
const REPLICATION: Duration = Duration::from_secs(10);

/// A running single-zone layout of three nodes.
async fn zone() -> anyhow::Result<Zone> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    Ok(zone)
}

/// Expects `answer` to be `status` `code`, blaming `field` when given; its message, for more
/// checks.
fn refused(
    answer: &(u16, Value),
    status: u16,
    code: &str,
    field: Option<&str>,
) -> anyhow::Result<String> {
    let (s, body) = answer;
    let error = &body["error"];
    ensure!(
        *s == status && error["code"] == code,
        "expected {status} {code}, got {s} {body}"
    );
    if let Some(field) = field {
        ensure!(error["field"] == field, "expected field {field}: {body}");
    }
    Ok(error["message"].as_str().unwrap_or_default().to_owned())
}

/// POSTs `body` to node `i` without a token.
async fn post_anonymous(
    zone: &Zone,
    i: usize,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let bytes = serde_json::to_vec(body)?;
    zone.send(
        i,
        Method::POST,
        path,
        None,
        Some(("application/json", bytes)),
    )
    .await
}

/// Has `party` of `kinds` apply on node 0 and admits it on node 1.
async fn admitted(zone: &Zone, party: &str, kinds: &[&str]) -> anyhow::Result<()> {
    let operator = &zone.tokens().operator;
    let answer = zone
        .post(0, "/v1/parties", operator, &party_application(party, kinds))
        .await?;
    ensure!(answer.0 == 201, "apply {party}: {answer:?}");
    let admit = format!("/v1/parties/{party}/admit");
    let answer = zone.post(1, &admit, operator, &json!({})).await?;
    ensure!(answer.0 == 200, "admit {party}: {answer:?}");
    Ok(())
}

/// Creates a `role` token bound to `party` on node 2; its text.
async fn token_for(zone: &Zone, role: &str, party: &str) -> anyhow::Result<String> {
    let body = json!({"role": role, "party": party, "label": "test"});
    let (status, body) = zone
        .post(2, "/v1/tokens", &zone.tokens().admin, &body)
        .await?;
    ensure!(status == 201, "token for {party}: {status} {body}");
    body["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the answer")
}

/// How many records the zone's audit chain holds, as node `i` reads it.
async fn audit_length(zone: &Zone, i: usize) -> anyhow::Result<usize> {
    let (status, body) = zone
        .get(i, "/v1/audit?limit=1000", Some(&zone.tokens().admin))
        .await?;
    ensure!(status == 200, "audit: {status} {body}");
    Ok(body["items"].as_array().map_or(0, Vec::len))
}

/// A listing of the first zone's demo provider, `examples/listing.json`'s party.
fn listing(suffix: &str) -> Value {
    example_listing(suffix)
}

#[tokio::test]
async fn a_party_applying_on_one_node_is_admitted_on_another_and_acts_through_a_third()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let application = party_application("yuzhou-ceramics", &["resource_holder"]);
    let answer = post_anonymous(&zone, 0, "/v1/parties", &application).await?;
    ensure!(
        answer.0 == 201 && answer.1 == json!({"id": "yuzhou-ceramics", "state": "applied"}),
        "apply: {answer:?}"
    );
    let operator = &zone.tokens().operator;
    let admit = zone
        .post(
            1,
            "/v1/parties/yuzhou-ceramics/admit",
            operator,
            &json!({"notes": "材料齐全"}),
        )
        .await?;
    ensure!(
        admit == (200, json!({"id": "yuzhou-ceramics", "state": "admitted"})),
        "{admit:?}"
    );
    let token = token_for(&zone, "provider", "yuzhou-ceramics").await?;
    let mut own = listing("钧瓷");
    own["provider"]["id"] = json!("yuzhou-ceramics");
    let (status, body) = zone.post(0, "/v1/listings", &token, &own).await?;
    ensure!(
        status == 201,
        "its token lists in its name: {status} {body}"
    );

    eventually(REPLICATION, "the admission on every node", || async {
        for i in 0..3 {
            let (s, v) = zone
                .get(
                    i,
                    "/v1/parties/yuzhou-ceramics?consistency=local",
                    Some(operator),
                )
                .await
                .map_err(|e| e.to_string())?;
            let actions: Vec<&str> = v["history"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["action"].as_str())
                .collect();
            if s != 200 || v["state"] != "admitted" || actions != ["apply", "admit"] {
                return Err(format!("node {i}: {s} {v}"));
            }
        }
        Ok(Some(()))
    })
    .await?;
    let (_, party) = zone
        .get(2, "/v1/parties/yuzhou-ceramics", Some(operator))
        .await?;
    let applicant = party["history"][0]["actor"].as_str().unwrap_or_default();
    ensure!(
        applicant.starts_with("anonymous via municipal-"),
        "an application without a token is the receiving member's to propose: {party}"
    );
    // Others see the party but not whom to reach; the zone's staff and the party itself do.
    let (_, seen) = zone
        .get(1, "/v1/parties/yuzhou-ceramics", Some(&zone.tokens().buyer))
        .await?;
    ensure!(
        seen.get("contact").is_none(),
        "a buyer sees no contact: {seen}"
    );
    let (_, own_view) = zone
        .get(1, "/v1/parties/yuzhou-ceramics", Some(&token))
        .await?;
    ensure!(own_view["contact"]["email"].is_string(), "{own_view}");
    let (_, admitted) = zone
        .get(
            2,
            "/v1/parties?state=admitted&kind=resource_holder",
            Some(operator),
        )
        .await?;
    let ids: Vec<&str> = admitted["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str())
        .collect();
    ensure!(
        ids == ["xuchang-big-data-bureau", "yuzhou-ceramics"],
        "the founding provider and the new party, by id: {admitted}"
    );
    Ok(())
}

#[tokio::test]
async fn a_credit_code_with_a_wrong_check_character_length_or_characters_is_400_and_writes_nothing()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let valid = party_application("yuzhou-ceramics", &["resource_holder"]);
    let code = valid["credit_code"].as_str().context("a code")?.to_owned();
    let last = code.chars().last().context("a last character")?;
    let wrong_check = format!("{}{}", &code[..17], if last == '0' { '1' } else { '0' });
    let before = audit_length(&zone, 0).await?;
    for (bad, says) in [
        (wrong_check.as_str(), "check character"),
        (&code[..17], "18 characters; this one has 17"),
        (&format!("{code}0"), "this one has 19"),
        (&code.to_lowercase(), "is not one of"),
        (&format!("{}I{}", &code[..8], &code[9..]), "is not one of"),
    ] {
        let mut body = valid.clone();
        body["credit_code"] = json!(bad);
        let answer = post_anonymous(&zone, 1, "/v1/parties", &body).await?;
        let message = refused(&answer, 400, "invalid_field", Some("credit_code"))?;
        ensure!(message.contains(says), "{bad}: {message}");
    }
    let (status, _) = zone
        .get(
            0,
            "/v1/parties/yuzhou-ceramics",
            Some(&zone.tokens().operator),
        )
        .await?;
    ensure!(status == 404, "no party was recorded");
    ensure!(
        audit_length(&zone, 0).await? == before,
        "a refused application costs no Raft entry"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_for_a_party_not_admitted_is_403_naming_party() -> anyhow::Result<()> {
    let zone = zone().await?;
    let admin = &zone.tokens().admin;
    let operator = &zone.tokens().operator;
    let token = |role: &str, party: &str| json!({"role": role, "party": party, "label": "t"});
    // Unknown to the registry.
    let answer = zone
        .post(0, "/v1/tokens", admin, &token("provider", "nobody-here"))
        .await?;
    let message = refused(&answer, 403, "party_not_admitted", Some("party"))?;
    ensure!(message.contains("not in this zone's registry"), "{message}");
    // Applied, not admitted yet.
    let application = party_application("changge-hr-market", &["processor"]);
    let answer = zone.post(1, "/v1/parties", operator, &application).await?;
    ensure!(answer.0 == 201, "{answer:?}");
    let answer = zone
        .post(2, "/v1/tokens", admin, &token("buyer", "changge-hr-market"))
        .await?;
    let message = refused(&answer, 403, "party_not_admitted", Some("party"))?;
    ensure!(message.contains("not admitted yet"), "{message}");
    // Refused.
    let refuse = json!({"reason": "材料不全"});
    let answer = zone
        .post(0, "/v1/parties/changge-hr-market/refuse", operator, &refuse)
        .await?;
    ensure!(answer.0 == 200, "{answer:?}");
    let answer = zone
        .post(
            1,
            "/v1/tokens",
            admin,
            &token("provider", "changge-hr-market"),
        )
        .await?;
    let message = refused(&answer, 403, "party_not_admitted", Some("party"))?;
    ensure!(message.contains("refused"), "{message}");
    // A buyer token names its party as a provider token does.
    let answer = zone
        .post(
            1,
            "/v1/tokens",
            admin,
            &json!({"role": "buyer", "label": "t"}),
        )
        .await?;
    refused(&answer, 400, "invalid_field", Some("party"))?;
    // The zone's own buyer token is bound to its founding buyer party and reads.
    let buyer_party = zone.layout.exchanges[0].zones[0]
        .buyer_party
        .clone()
        .context("the layout names a buyer party")?;
    let (status, body) = zone
        .get(
            2,
            &format!("/v1/parties/{}", buyer_party.id),
            Some(&zone.tokens().buyer),
        )
        .await?;
    ensure!(
        status == 200 && body["state"] == "admitted" && body["origin"] == "config",
        "{status} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_suspended_party_can_do_nothing_new_until_reinstated() -> anyhow::Result<()> {
    let zone = zone().await?;
    let tokens = zone.tokens().clone();
    let party = xchg_tests::FIRST_ZONE_PARTY.0;
    let (status, body) = zone
        .post(0, "/v1/listings", &tokens.provider, &listing("before"))
        .await?;
    ensure!(status == 201, "{status} {body}");
    let id = body["id"].as_str().context("an id")?.to_owned();
    admitted(&zone, "henan-data-broker", &["data_broker"]).await?;

    let suspend = json!({"reason": "涉嫌违规, 调查中"});
    let answer = zone
        .post(
            1,
            &format!("/v1/parties/{party}/suspend"),
            &tokens.operator,
            &suspend,
        )
        .await?;
    ensure!(
        answer == (200, json!({"id": party, "state": "suspended"})),
        "{answer:?}"
    );
    let before = audit_length(&zone, 0).await?;

    let submit = zone
        .post(2, "/v1/listings", &tokens.provider, &listing("while"))
        .await?;
    let message = refused(&submit, 403, "party_not_admitted", Some("provider.id"))?;
    ensure!(message.contains("suspended"), "{message}");
    let update = zone
        .send(
            0,
            Method::PUT,
            &format!("/v1/listings/{id}"),
            Some(&tokens.provider),
            Some(("application/json", serde_json::to_vec(&listing("v2"))?)),
        )
        .await?;
    refused(&update, 403, "party_not_admitted", Some("provider.id"))?;
    let new_token = json!({"role": "provider", "party": party, "label": "t"});
    let answer = zone
        .post(1, "/v1/tokens", &tokens.admin, &new_token)
        .await?;
    refused(&answer, 403, "party_not_admitted", Some("party"))?;
    let entrust = json!({
        "broker": "henan-data-broker",
        "scope": ["submit_listing"],
        "expires_at": xchg_protocol::Timestamp::now().plus_millis(86_400_000),
    });
    let answer = zone
        .post(2, "/v1/entrustments", &tokens.provider, &entrust)
        .await?;
    refused(&answer, 403, "party_not_admitted", None)?;
    ensure!(
        audit_length(&zone, 0).await? == before,
        "the refusals wrote nothing"
    );
    // Reading is not new: the suspended party's token still reads.
    let (status, _) = zone
        .get(0, &format!("/v1/listings/{id}"), Some(&tokens.provider))
        .await?;
    ensure!(status == 200, "a suspended party still reads");
    // A suspension is not an end: reinstated, it acts again.
    let reinstate = json!({"reason": "调查结束"});
    let answer = zone
        .post(
            2,
            &format!("/v1/parties/{party}/reinstate"),
            &tokens.operator,
            &reinstate,
        )
        .await?;
    ensure!(answer.0 == 200, "{answer:?}");
    let (status, body) = zone
        .post(0, "/v1/listings", &tokens.provider, &listing("after"))
        .await?;
    ensure!(status == 201, "reinstated, it lists again: {status} {body}");
    let (_, record) = zone
        .get(1, &format!("/v1/parties/{party}"), Some(&tokens.operator))
        .await?;
    let actions: Vec<&str> = record["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["action"].as_str())
        .collect();
    ensure!(actions == ["suspend", "reinstate"], "{record}");
    Ok(())
}

#[tokio::test]
async fn only_a_provider_or_buyer_token_entrusts_and_a_refusal_names_those_roles_alone()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let tokens = zone.tokens().clone();
    admitted(&zone, "henan-data-broker", &["data_broker"]).await?;
    let grant = json!({
        "broker": "henan-data-broker",
        "scope": ["submit_listing"],
        "expires_at": xchg_protocol::Timestamp::now().plus_millis(86_400_000),
    });
    // An admin token passes most role checks, but an entrustment is in a party's name.
    for (role, token) in [
        ("admin", &tokens.admin),
        ("operator", &tokens.operator),
        ("regulator", &tokens.regulator),
    ] {
        let answer = zone.post(1, "/v1/entrustments", token, &grant).await?;
        let why = refused(&answer, 403, "forbidden", None)?;
        ensure!(
            why.ends_with(&format!(
                "{role} token cannot do this; it needs one of: provider, buyer"
            )),
            "names the provider and buyer roles alone: {why}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_broker_acts_for_a_party_only_under_its_entrustment_and_both_are_recorded()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let tokens = zone.tokens().clone();
    let party = xchg_tests::FIRST_ZONE_PARTY.0;
    admitted(&zone, "henan-data-broker", &["data_broker"]).await?;
    let broker = token_for(&zone, "provider", "henan-data-broker").await?;
    let grant = |scope: &[&str], ms: u64| {
        json!({
            "broker": "henan-data-broker",
            "scope": scope,
            "expires_at": xchg_protocol::Timestamp::now().plus_millis(ms),
        })
    };
    let day = 86_400_000;

    // No entrustment yet.
    let answer = zone
        .post(0, "/v1/listings", &broker, &listing("none"))
        .await?;
    let message = refused(&answer, 403, "not_entrusted", Some("provider.id"))?;
    ensure!(message.contains("has not entrusted"), "{message}");
    // Wrong scope: updates only.
    let answer = zone
        .post(
            1,
            "/v1/entrustments",
            &tokens.provider,
            &grant(&["update_listing"], day),
        )
        .await?;
    ensure!(answer.0 == 201 && answer.1["id"] == 1, "{answer:?}");
    let answer = zone
        .post(2, "/v1/listings", &broker, &listing("scope"))
        .await?;
    let message = refused(&answer, 403, "not_entrusted", Some("provider.id"))?;
    ensure!(
        message.contains("covers update_listing, not submit_listing"),
        "{message}"
    );

    // Within a short entrustment, it lists in the party's name.
    let short = 8_000;
    let answer = zone
        .post(
            1,
            "/v1/entrustments",
            &tokens.provider,
            &grant(&["submit_listing"], short),
        )
        .await?;
    ensure!(answer.0 == 201, "{answer:?}");
    let expires_at = answer.1["expires_at"]
        .as_str()
        .context("an expiry")?
        .to_owned();
    let (status, body) = zone
        .post(2, "/v1/listings", &broker, &listing("brokered"))
        .await?;
    ensure!(status == 201, "under its entrustment: {status} {body}");
    let id = body["id"].as_str().context("an id")?.to_owned();
    let (_, view) = zone
        .get(0, &format!("/v1/listings/{id}"), Some(&tokens.buyer))
        .await?;
    ensure!(
        view["submitted_by"] == party,
        "the listing is the party's: {view}"
    );
    ensure!(
        view["history"][0]["detail"] == json!({"broker": "henan-data-broker", "entrustment": 2}),
        "its history names the broker and the entrustment: {view}"
    );
    let (_, audit) = zone
        .get(0, "/v1/audit?limit=1000", Some(&tokens.admin))
        .await?;
    let by_broker =
        audit["items"].as_array().into_iter().flatten().any(|r| {
            r["actor"] == format!("henan-data-broker for {party}") && r["object_id"] == id
        });
    ensure!(by_broker, "the audit chain records both: {audit}");

    // Another party (the zone's founding buyer) never entrusted this broker.
    let buyer_party = zone.layout.exchanges[0].zones[0]
        .buyer_party
        .clone()
        .context("a buyer party")?;
    let foreign = xchg_tests::for_party(listing("other party"), &buyer_party);
    let answer = zone.post(0, "/v1/listings", &broker, &foreign).await?;
    let message = refused(&answer, 403, "not_entrusted", Some("provider.id"))?;
    ensure!(
        message.contains(&format!("{} has not entrusted", buyer_party.id)),
        "{message}"
    );

    // Expired: the node's clock is the machine's, so wait until it has passed the expiry.
    let expiry =
        xchg_protocol::Timestamp::parse_rfc3339(&expires_at).map_err(anyhow::Error::msg)?;
    eventually(
        Duration::from_secs(30),
        "the entrustment's expiry",
        || async { Ok((xchg_protocol::Timestamp::now() > expiry).then_some(())) },
    )
    .await?;
    let answer = zone
        .post(1, "/v1/listings", &broker, &listing("expired"))
        .await?;
    let message = refused(&answer, 403, "not_entrusted", Some("provider.id"))?;
    ensure!(message.contains("expired"), "{message}");

    // The party reads its entrustments; the broker those it holds; not others'.
    let (status, list) = zone
        .get(2, "/v1/entrustments", Some(&tokens.provider))
        .await?;
    ensure!(
        status == 200 && list["items"].as_array().map(Vec::len) == Some(2),
        "{list}"
    );
    let (status, _) = zone
        .get(
            2,
            "/v1/entrustments?broker=henan-data-broker",
            Some(&broker),
        )
        .await?;
    ensure!(status == 200, "the broker reads what it holds");
    let (status, _) = zone
        .get(2, &format!("/v1/entrustments?party={party}"), Some(&broker))
        .await?;
    ensure!(
        status == 403,
        "a broker reads no other party's entrustments as that party"
    );
    Ok(())
}

#[tokio::test]
async fn an_address_applying_too_often_is_429_with_retry_after_and_staff_are_not_limited()
-> anyhow::Result<()> {
    let zone = zone().await?;
    for n in 0..5 {
        let body = party_application(&format!("applicant-{n}"), &["processor"]);
        let answer = post_anonymous(&zone, 0, "/v1/parties", &body).await?;
        ensure!(answer.0 == 201, "application {n}: {answer:?}");
    }
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v1/parties", zone.nodes[0].api_url))
        .json(&party_application("applicant-5", &["processor"]))
        .send()
        .await?;
    let status = response.status().as_u16();
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("a Retry-After header of seconds")?;
    let body: Value = response.json().await?;
    refused(&(status, body), 429, "rate_limited", None)?;
    ensure!(
        (1..=60).contains(&retry_after),
        "retry after {retry_after} s"
    );
    // Another node keeps its own count; an operator enters applications without limit.
    let body = party_application("applicant-6", &["processor"]);
    let answer = post_anonymous(&zone, 1, "/v1/parties", &body).await?;
    ensure!(answer.0 == 201, "{answer:?}");
    let body = party_application("applicant-7", &["processor"]);
    let answer = zone
        .post(0, "/v1/parties", &zone.tokens().operator, &body)
        .await?;
    ensure!(answer.0 == 201, "{answer:?}");
    Ok(())
}
