//! Demands and matchmaking (交易撮合, issue #16) through the API of a 3-node zone: a buyer posts
//! what it needs, the exchange matches listings with scores and reasons, a broker posts for the
//! buyer under an entrustment and proposes a listing, the buyer accepts one and is shown the
//! application to send; every step is in the audit chain, and every refusal names its rule.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_tests::{Zone, example_listing, party_application};

const ELECTION: Duration = Duration::from_secs(30);
const DAY_MS: u64 = 86_400_000;

fn priced(title: &str, amount: &str) -> Value {
    let mut listing = example_listing(title);
    listing["pricing"] = json!({"model": "fixed", "amount": amount, "currency": "CNY"});
    listing
}

fn demand(deadline_ms: u64) -> Value {
    json!({
        "title": "企业信用评价数据",
        "description": "贷前审查需要的企业信用数据",
        "category": "credit",
        "scenario": "企业贷款授信审查",
        "delivery_modes": ["api"],
        "budget": {"max": "20000", "currency": "CNY"},
        "deadline": xchg_protocol::Timestamp::now().plus_millis(deadline_ms),
    })
}

fn status_code(answer: &(u16, Value)) -> (u16, String) {
    (
        answer.0,
        answer.1["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_posts_a_demand_a_broker_proposes_and_the_buyer_accepts_a_match()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let tokens = zone.tokens().clone();
    let within = zone
        .approve_new(0, &tokens, &priced("一万元", "10000"))
        .await?;
    let over = zone
        .approve_new(0, &tokens, &priced("五万元", "50000"))
        .await?;
    let per_call = zone
        .approve_new(0, &tokens, &example_listing("按次"))
        .await?;
    let mut health = priced("医疗", "100");
    health["category"] = "healthcare".into();
    let other_category = zone.approve_new(0, &tokens, &health).await?;
    let mut elsewhere = priced("别的场景", "100");
    elsewhere["scenarios"] = json!(["气象预报"]);
    let other_scenario = zone.approve_new(0, &tokens, &elsewhere).await?;

    let posted = zone
        .post(0, "/v1/demands", &tokens.buyer, &demand(7 * DAY_MS))
        .await?;
    ensure!(
        posted.0 == 201 && posted.1["state"] == "open",
        "post: {posted:?}"
    );
    let id = posted.1["id"].as_u64().context("a demand number")?;
    let (_, held) = zone
        .get(1, &format!("/v1/demands/{id}"), Some(&tokens.provider))
        .await?;
    let buyer = held["buyer"].as_str().context("the buyer")?.to_owned();

    // The exchange's matches: within the budget first, per call next; the one over budget and
    // the other category are not matches.
    let (status, found) = zone
        .get(
            1,
            &format!("/v1/demands/{id}/matches"),
            Some(&tokens.provider),
        )
        .await?;
    ensure!(status == 200, "matches: {found}");
    let ranked: Vec<(&str, u64)> = found["matches"]
        .as_array()
        .context("matches")?
        .iter()
        .map(|m| {
            (
                m["listing_id"].as_str().unwrap_or(""),
                m["score"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [(within.as_str(), 90), (per_call.as_str(), 80)],
        "{found}"
    );
    let reasons = found["matches"][0]["reasons"].to_string();
    assert!(
        reasons.contains("offers the scenario") && reasons.contains("within the budget"),
        "{reasons}"
    );
    assert!(!found.to_string().contains(&over) && !found.to_string().contains(&other_category));

    // A broker, entrusted by the buyer, posts for it and proposes a listing.
    let operator = &tokens.operator;
    let applied = zone
        .post(
            0,
            "/v1/parties",
            operator,
            &party_application("henan-data-broker", &["data_broker"]),
        )
        .await?;
    ensure!(applied.0 == 201, "{applied:?}");
    let admitted = zone
        .post(
            1,
            "/v1/parties/henan-data-broker/admit",
            operator,
            &json!({}),
        )
        .await?;
    ensure!(admitted.0 == 200, "{admitted:?}");
    let token = zone
        .post(
            2,
            "/v1/tokens",
            &tokens.admin,
            &json!({"role": "buyer", "party": "henan-data-broker", "label": "broker"}),
        )
        .await?;
    let broker = token.1["token"]
        .as_str()
        .context("broker token")?
        .to_owned();
    let mut for_buyer = demand(7 * DAY_MS);
    for_buyer["buyer"] = buyer.clone().into();
    let refused = zone.post(0, "/v1/demands", &broker, &for_buyer).await?;
    assert_eq!(
        status_code(&refused),
        (403, "not_entrusted".into()),
        "{refused:?}"
    );
    let grant = json!({
        "broker": "henan-data-broker",
        "scope": ["post_demand"],
        "expires_at": xchg_protocol::Timestamp::now().plus_millis(DAY_MS),
    });
    let granted = zone
        .post(1, "/v1/entrustments", &tokens.buyer, &grant)
        .await?;
    ensure!(granted.0 == 201, "entrust: {granted:?}");
    let brokered = zone.post(2, "/v1/demands", &broker, &for_buyer).await?;
    ensure!(brokered.0 == 201, "brokered: {brokered:?}");
    let second = brokered.1["id"].as_u64().context("second demand")?;
    let (_, view) = zone
        .get(0, &format!("/v1/demands/{second}"), Some(&tokens.buyer))
        .await?;
    assert_eq!(
        (view["buyer"].as_str(), view["broker"].as_str()),
        (Some(buyer.as_str()), Some("henan-data-broker"))
    );

    let proposals = format!("/v1/demands/{id}/proposals");
    let proposal = json!({"listing_id": per_call, "note": "按次计费更灵活"});
    let proposed = zone.post(1, &proposals, &broker, &proposal).await?;
    ensure!(proposed.0 == 201, "propose: {proposed:?}");
    let proposal_id = proposed.1["id"].as_u64().context("proposal")?;
    let again = zone.post(2, &proposals, &broker, &proposal).await?;
    assert_eq!(status_code(&again), (409, "conflict".into()), "{again:?}");
    let not_broker = zone
        .post(0, &proposals, &tokens.provider, &proposal)
        .await?;
    assert_eq!(status_code(&not_broker).0, 403, "{not_broker:?}");
    let regulator = zone
        .post(0, &proposals, &tokens.regulator, &proposal)
        .await?;
    assert_eq!(status_code(&regulator).0, 403, "{regulator:?}");
    let (_, found) = zone
        .get(0, &format!("/v1/demands/{id}/matches"), Some(&tokens.buyer))
        .await?;
    let top = &found["matches"][0];
    assert_eq!(
        (top["listing_id"].as_str(), top["score"].as_u64()),
        (Some(per_call.as_str()), Some(90)),
        "the proposal raises it: {found}"
    );
    assert_eq!(top["proposed_by"], json!(["henan-data-broker"]));

    // Acceptance: only the buyer, only a match.
    let accept = format!("/v1/demands/{id}/accept");
    let by_broker = zone
        .post(0, &accept, &broker, &json!({"listing_id": per_call}))
        .await?;
    assert_eq!(status_code(&by_broker).0, 403, "{by_broker:?}");
    let over_budget = zone
        .post(0, &accept, &tokens.buyer, &json!({"listing_id": over}))
        .await?;
    assert_eq!(
        status_code(&over_budget),
        (409, "conflict".into()),
        "{over_budget:?}"
    );
    // Nor a listing of another category no one proposed, nor one whose scenario the
    // application that follows would be refused for (a user found both accepted).
    for (listing, why) in [
        (&other_category, "in category healthcare"),
        (&other_scenario, "does not offer the scenario"),
    ] {
        let refused = zone
            .post(0, &accept, &tokens.buyer, &json!({"listing_id": listing}))
            .await?;
        assert_eq!(
            status_code(&refused),
            (409, "conflict".into()),
            "{refused:?}"
        );
        assert!(refused.1.to_string().contains(why), "{refused:?}");
    }
    // A proposal that proposes another listing is named as the field to blame.
    let mismatched = zone
        .post(
            0,
            &accept,
            &tokens.buyer,
            &json!({"listing_id": within, "proposal": proposal_id}),
        )
        .await?;
    assert_eq!(
        (mismatched.0, mismatched.1["error"]["field"].as_str()),
        (422, Some("proposal")),
        "{mismatched:?}"
    );
    let accepted = zone
        .post(
            1,
            &accept,
            &tokens.buyer,
            &json!({"listing_id": per_call, "proposal": proposal_id}),
        )
        .await?;
    ensure!(accepted.0 == 200, "accept: {accepted:?}");
    let a = &accepted.1;
    assert_eq!(a["demand"]["state"], "accepted");
    assert_eq!(a["demand"]["accepted"]["score"], 90);
    assert_eq!(a["demand"]["accepted"]["proposal"], proposal_id);
    assert_eq!(
        a["next"]["body"],
        json!({"listing_id": per_call, "scenario": "企业贷款授信审查", "delivery_mode": "api"})
    );
    let twice = zone
        .post(2, &accept, &tokens.buyer, &json!({"listing_id": within}))
        .await?;
    assert_eq!(
        status_code(&twice),
        (409, "illegal_transition".into()),
        "{twice:?}"
    );
    let late = zone
        .post(1, &proposals, &broker, &json!({"listing_id": within}))
        .await?;
    assert_eq!(
        status_code(&late),
        (409, "illegal_transition".into()),
        "{late:?}"
    );

    // The buyer withdraws the broker's demand; nothing is open any more.
    let withdrawn = zone
        .post(
            0,
            &format!("/v1/demands/{second}/withdraw"),
            &tokens.buyer,
            &json!({}),
        )
        .await?;
    ensure!(
        withdrawn.0 == 200 && withdrawn.1["state"] == "withdrawn",
        "{withdrawn:?}"
    );
    let (_, open) = zone
        .get(2, "/v1/demands?open=true", Some(&tokens.provider))
        .await?;
    assert_eq!(open["items"], json!([]), "{open}");
    let (_, found) = zone
        .get(
            2,
            "/v1/demands?q=%E4%BF%A1%E7%94%A8",
            Some(&tokens.provider),
        )
        .await?;
    assert_eq!(found["items"].as_array().map(Vec::len), Some(2), "{found}");

    // Refusals of a new demand.
    let mut past = demand(0);
    past["deadline"] = serde_json::to_value(xchg_protocol::Timestamp(1))?;
    let answer = zone.post(0, "/v1/demands", &tokens.buyer, &past).await?;
    assert_eq!(
        (answer.0, answer.1["error"]["field"].as_str()),
        (400, Some("deadline")),
        "{answer:?}"
    );
    let by_provider = zone
        .post(0, "/v1/demands", &tokens.provider, &demand(DAY_MS))
        .await?;
    assert_eq!(status_code(&by_provider).0, 403, "{by_provider:?}");

    // Every step is in the audit chain.
    let (_, audit) = zone
        .get(0, "/v1/audit?limit=1000", Some(&tokens.regulator))
        .await?;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .context("audit")?
        .iter()
        .filter(|r| r["result"] == "ok")
        .filter_map(|r| r["action"].as_str())
        .filter(|a| a.contains("demand"))
        .collect();
    assert_eq!(
        actions,
        [
            "post_demand",
            "post_demand",
            "propose_to_demand",
            "accept_demand_match",
            "withdraw_demand"
        ]
    );
    Ok(())
}
