//! Valuation reports (数据资产评估, issue #16) through the API of a 3-node zone: a provider
//! values its listing by the cost, income and market approaches on one node, the comparables
//! drawn from the zone's catalog, every figure as worked out by hand below; the report is
//! versioned, read on another node by a regulator, and every refusal names its rule.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_tests::{Zone, eventually, example_listing, post_with_key};

const ELECTION: Duration = Duration::from_secs(30);
const REPLICATION: Duration = Duration::from_secs(10);

/// A listing of the zone's provider priced `amount` CNY once, updated `frequency`.
fn priced(title: &str, amount: &str, frequency: &str) -> Value {
    let mut listing = example_listing(title);
    listing["pricing"] = json!({"model": "fixed", "amount": amount, "currency": "CNY"});
    listing["update_frequency"] = frequency.into();
    listing
}

fn request() -> Value {
    json!({
        "approaches": {
            "cost": {
                "collection": "50000", "processing": "20000", "storage": "5000",
                "compliance": "5000", "profit_rate": "0.1", "depreciation_rate": "0.1",
                "weight": 2
            },
            "income": {"cash_flows": ["30000", "30000"], "discount_rate": "0.1", "weight": 5},
            "market": {"pricing_model": "fixed", "weight": 3}
        },
        "assumptions": ["持续经营", "现行定价不变"]
    })
}

fn code(answer: &(u16, Value)) -> (u16, String, String) {
    let e = &answer.1["error"];
    (
        answer.0,
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["field"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_values_its_listing_by_three_approaches_and_the_zone_keeps_every_version()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let tokens = zone.tokens().clone();
    let product = zone
        .approve_new(0, &tokens, &priced("估值对象", "12000", "daily"))
        .await?;
    zone.approve_new(0, &tokens, &priced("可比一", "10000", "daily"))
        .await?;
    zone.approve_new(0, &tokens, &priced("可比二", "20000", "weekly"))
        .await?;
    // Priced per call: no comparable for a fixed price.
    zone.approve_new(0, &tokens, &example_listing("按次计费"))
        .await?;

    let url = format!("{}/v1/listings/{product}/valuations", zone.nodes[1].api_url);
    let first = post_with_key(&url, &tokens.provider, "valuation-1", &request()).await?;
    ensure!(first.0 == 201, "value: {first:?}");
    let r = &first.1;
    // Worked by hand:
    // cost   = (50000 + 20000 + 5000 + 5000) × 1.1 × 0.9 = 79200.00
    // income = 30000 / 1.1 + 30000 / 1.21 = 27272.727273 + 24793.388430 = 52066.115702
    // market = comparable one: 10000, like the product in all (factors 1, similarity 1);
    //          comparable two: weekly, one rank below daily: 20000 × 1.05 = 21000,
    //          similarity 0.95; (10000 × 1 + 21000 × 0.95) / 1.95 = 15358.974359
    // value  = (2 × 79200 + 5 × 52066.115702 + 3 × 15358.974359) / 10 = 46480.750159
    assert_eq!(r["version"], 1, "{r}");
    assert_eq!(r["cost"]["value"], "79200.00", "{r}");
    assert_eq!(
        r["income"]["present_values"],
        json!(["27272.73", "24793.39"])
    );
    assert_eq!(r["income"]["value"], "52066.12");
    assert_eq!(r["market"]["value"], "15358.97", "{r}");
    let comparables = r["market"]["comparables"]
        .as_array()
        .context("comparables")?;
    assert_eq!(
        comparables.len(),
        2,
        "the per-call listing is not comparable: {r}"
    );
    assert_eq!(comparables[1]["adjustments"]["update_frequency"], "1.05");
    assert_eq!(comparables[1]["adjusted_price"], "21000.00");
    assert_eq!(comparables[1]["similarity"], "0.95");
    assert_eq!(r["value"], "46480.75");
    assert_eq!(
        r["weights"],
        json!({"cost": "0.2", "income": "0.5", "market": "0.3"})
    );
    assert_eq!(r["currency"], "CNY");
    assert_eq!(r["assumptions"][0], "持续经营");
    assert!(r["rounding"].as_str().unwrap_or_default().contains("0.01"));

    // The retry with the same key answers the first report and records nothing; the same key
    // with another body is refused.
    let again = post_with_key(&url, &tokens.provider, "valuation-1", &request()).await?;
    ensure!(again.0 == 201 && again.1 == first.1, "replay: {again:?}");
    let mut other = request();
    other["approaches"]["cost"]["weight"] = 1.into();
    let reused = post_with_key(&url, &tokens.provider, "valuation-1", &other).await?;
    assert_eq!(code(&reused).1, "idempotency_key_reused", "{reused:?}");

    // An operator's report, on another node, is version 2; a regulator reads both on a third.
    let operator = zone
        .post(
            2,
            &format!("/v1/listings/{product}/valuations"),
            &tokens.operator,
            &json!({"approaches": {"cost": {"collection": "1", "processing": "0",
                                            "storage": "0", "compliance": "0"}}}),
        )
        .await?;
    ensure!(
        operator.0 == 201 && operator.1["version"] == 2 && operator.1["value"] == "1.00",
        "operator: {operator:?}"
    );
    let latest = zone
        .get(
            0,
            &format!("/v1/listings/{product}/valuation"),
            Some(&tokens.regulator),
        )
        .await?;
    assert_eq!(latest.1["version"], 2, "{latest:?}");
    let v1 = zone
        .get(
            0,
            &format!("/v1/listings/{product}/valuation?version=1"),
            Some(&tokens.regulator),
        )
        .await?;
    assert_eq!(v1.1, first.1, "version 1 is kept as it was recorded");
    let history = zone
        .get(
            0,
            &format!("/v1/listings/{product}/valuations"),
            Some(&tokens.regulator),
        )
        .await?;
    let versions: Vec<_> = history
        .1
        .as_array()
        .context("history")?
        .iter()
        .map(|h| h["version"].clone())
        .collect();
    assert_eq!(versions, [json!(2), json!(1)], "{history:?}");
    // Every replica holds both, with the same figures.
    for node in 0..3 {
        eventually(REPLICATION, "both reports on every node", || async {
            let (_, v) = zone
                .get(
                    node,
                    &format!("/v1/listings/{product}/valuation?version=1&consistency=local"),
                    Some(&tokens.operator),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok((v["value"] == "46480.75").then_some(()))
        })
        .await?;
    }
    let (_, audit) = zone
        .get(0, "/v1/audit?limit=1000", Some(&tokens.regulator))
        .await?;
    let recorded = audit["items"]
        .as_array()
        .context("audit records")?
        .iter()
        .filter(|a| a["action"] == "record_valuation" && a["result"] == "ok")
        .count();
    assert_eq!(
        recorded, 2,
        "one audit record per report, none for the replay"
    );

    // Refusals, each naming its rule.
    let path = format!("/v1/listings/{product}/valuations");
    let buyer = zone.post(0, &path, &tokens.buyer, &request()).await?;
    assert_eq!(code(&buyer).0, 403, "{buyer:?}");
    let regulator = zone.post(0, &path, &tokens.regulator, &request()).await?;
    assert_eq!(code(&regulator).0, 403, "{regulator:?}");
    let reading = zone
        .get(
            0,
            &format!("/v1/listings/{product}/valuation"),
            Some(&tokens.buyer),
        )
        .await?;
    assert_eq!(reading.0, 403, "{reading:?}");
    let cost = |collection: &str| json!({"collection": collection, "processing": "0", "storage": "0", "compliance": "0"});
    let cases = [
        (json!({"approaches": {}}), 400, "approaches"),
        (
            json!({"approaches": {"cost": cost("-1")}}),
            400,
            "approaches.cost.collection",
        ),
        (
            json!({"approaches": {"cost": cost("1.00001")}}),
            400,
            "approaches.cost.collection",
        ),
        (
            json!({"approaches": {"income": {"cash_flows": ["1"], "discount_rate": "1.5"}}}),
            400,
            "approaches.income.discount_rate",
        ),
        (
            json!({"approaches": {"income": {"cash_flows": [], "discount_rate": "0.1"}}}),
            400,
            "approaches.income.cash_flows",
        ),
        (
            json!({"approaches": {"cost": {"collection": "1", "processing": "0", "storage": "0",
                                           "compliance": "0", "weight": 101}}}),
            400,
            "approaches.cost.weight",
        ),
        (
            json!({"approaches": {"market": {"pricing_model": "per_call"}}}),
            400,
            "approaches.market.units",
        ),
        (
            json!({"approaches": {"market": {"pricing_model": "fixed", "comparables": 21}}}),
            400,
            "approaches.market.comparables",
        ),
        (
            json!({"approaches": {"cost": cost("1")}, "assumptions": [" "]}),
            400,
            "assumptions[0]",
        ),
        // Nothing is priced per subscription: nothing to compare with.
        (
            json!({"approaches": {"market": {"pricing_model": "subscription", "units": 12}}}),
            409,
            "approaches.market",
        ),
    ];
    for (body, status, field) in cases {
        let answer = zone.post(0, &path, &tokens.provider, &body).await?;
        let (got, _, blamed) = code(&answer);
        assert_eq!(
            (got, blamed.as_str()),
            (status, field),
            "{body}: {answer:?}"
        );
    }
    let unknown = format!("/v1/listings/sha256:{}/valuations", "0".repeat(64));
    let missing = zone.post(0, &unknown, &tokens.provider, &request()).await?;
    assert_eq!(code(&missing).0, 404, "{missing:?}");
    // A path that is not a listing id names no listing, as for /v1/listings/{id} (it was a
    // 400 `bad_request` with no field, which the OpenAPI document did not state).
    let malformed = zone
        .post(
            0,
            "/v1/listings/abc/valuations",
            &tokens.provider,
            &request(),
        )
        .await?;
    assert_eq!(code(&malformed).0, 404, "{malformed:?}");
    assert!(
        malformed.1.to_string().contains("not_found"),
        "{malformed:?}"
    );
    // Nothing refused was recorded.
    let (_, history) = zone
        .get(
            0,
            &format!("/v1/listings/{product}/valuations"),
            Some(&tokens.operator),
        )
        .await?;
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    Ok(())
}
