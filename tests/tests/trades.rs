//! Trades through the API of a 3-node zone (issue #16): an admin sets the fee schedule, a
//! buyer orders from its authorisation on one node, the provider confirms and delivers through
//! others, an operator settles, the buyer disputes and the operator reverses by a new record;
//! the regulator reads it all. One test per refusal: an order without an active
//! authorisation, a delivery outside the authorised mode, over the limit, the same order sent
//! twice under one idempotency key, the same key with another body, the settlement of an
//! unconfirmed order.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_tests::{Zone, example_listing, post_with_key};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// The scenario of the example listing.
const LENDING: &str = "企业贷款授信审查";

/// A running 3-node zone with a listed, certified listing (per call, 0.50 CNY) and an
/// authorisation of the demo buyer for `limit` calls by API: the zone, the authorisation and
/// the certificate's number.
async fn trade_zone(limit: u64) -> anyhow::Result<(Zone, u64, String)> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let t = zone.tokens().clone();
    let listing = zone
        .approve_new(0, &t, &example_listing("for trades"))
        .await?;
    let certificate = zone.certify(1, &t, &listing).await?;
    let auth = zone.authorise(2, &t, &listing, LENDING, limit).await?;
    Ok((zone, auth, certificate))
}

/// Expects `answer` to be `status` `code`.
fn refused(answer: &(u16, Value), status: u16, code: &str) -> anyhow::Result<()> {
    let (s, body) = answer;
    ensure!(
        *s == status && body["error"]["code"] == code,
        "expected {status} {code}, got {s} {body}"
    );
    Ok(())
}

fn url(zone: &Zone, i: usize, path: &str) -> String {
    format!("{}{path}", zone.nodes[i].api_url)
}

/// The buyer orders `quantity` under `auth` through node `i` (no idempotency key).
async fn order(zone: &Zone, i: usize, auth: u64, quantity: u64) -> anyhow::Result<(u16, Value)> {
    let body = json!({"authorization_id": auth, "quantity": quantity});
    zone.post(i, "/v1/orders", &zone.tokens().buyer, &body)
        .await
}

/// A placed order of `quantity` under `auth`, confirmed by the provider; its number.
async fn confirmed(zone: &Zone, auth: u64, quantity: u64) -> anyhow::Result<u64> {
    let (status, body) = order(zone, 0, auth, quantity).await?;
    ensure!(status == 201, "order: {status} {body}");
    let id = body["id"].as_u64().context("no order id")?;
    let path = format!("/v1/orders/{id}/confirm");
    let (status, body) = zone
        .post(1, &path, &zone.tokens().provider, &json!({}))
        .await?;
    ensure!(
        status == 200 && body["state"] == "confirmed",
        "confirm: {status} {body}"
    );
    Ok(id)
}

/// The provider's delivery `body` for order `id` through node `i`.
async fn deliver(zone: &Zone, i: usize, id: u64, body: Value) -> anyhow::Result<(u16, Value)> {
    let path = format!("/v1/orders/{id}/deliveries");
    zone.post(i, &path, &zone.tokens().provider, &body).await
}

/// Order `id` as the regulator reads it on node `i`.
async fn read_order(zone: &Zone, i: usize, id: u64) -> anyhow::Result<Value> {
    let path = format!("/v1/orders/{id}");
    let (status, body) = zone.get(i, &path, Some(&zone.tokens().regulator)).await?;
    ensure!(status == 200, "read order: {status} {body}");
    Ok(body)
}

/// The zone's orders as the regulator lists them on node `i`.
async fn orders(zone: &Zone, i: usize) -> anyhow::Result<Vec<Value>> {
    let (status, body) = zone
        .get(i, "/v1/orders", Some(&zone.tokens().regulator))
        .await?;
    ensure!(status == 200, "list orders: {status} {body}");
    Ok(body["items"].as_array().cloned().unwrap_or_default())
}

/// PUTs the fee schedule `body` on node `i` with `token`.
async fn put(zone: &Zone, i: usize, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let bytes = serde_json::to_vec(body)?;
    let path = "/v1/zone/fee-schedule";
    let body = Some(("application/json", bytes));
    zone.send(i, reqwest::Method::PUT, path, Some(token), body)
        .await
}

/// PUTs the fee schedule `body` on node `i` with `token` and `key` as its `Idempotency-Key`.
async fn put_with_key(
    zone: &Zone,
    i: usize,
    token: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .put(url(zone, i, "/v1/zone/fee-schedule"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The calls counted on authorisation `id`.
async fn used(zone: &Zone, id: u64) -> anyhow::Result<Value> {
    let path = format!("/v1/authorizations/{id}");
    let (status, body) = zone.get(2, &path, Some(&zone.tokens().regulator)).await?;
    ensure!(status == 200, "read authorization: {status} {body}");
    Ok(body["used"].clone())
}

/// The results of the audit records of `action`, as node `i` reads them.
async fn audit_results(zone: &Zone, i: usize, action: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = zone
        .get(i, "/v1/audit?limit=1000", Some(&zone.tokens().regulator))
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

#[tokio::test]
async fn an_order_is_placed_confirmed_delivered_settled_disputed_and_reversed_across_three_nodes()
-> anyhow::Result<()> {
    let (zone, auth, certificate) = trade_zone(1000).await?;
    let t = zone.tokens().clone();
    // The admin sets the fee schedule: 5% fee, at least 1.00; 10% of the provider's revenue
    // to the operator, 5% to a broker.
    let schedule = json!({
        "platform_fee_bp": 500,
        "operator_share_bp": 1000,
        "broker_share_bp": 500,
        "minimum_fee": "1.00",
        "note": "2027 年费率",
    });
    refused(
        &put(&zone, 0, &t.operator, &schedule).await?,
        403,
        "forbidden",
    )?;
    let (status, body) = put(&zone, 2, &t.admin, &schedule).await?;
    ensure!(
        status == 200 && body["current"]["version"] == 1 && body["current"]["set_by"].is_string(),
        "set: {status} {body}"
    );
    // Sent again under one key, to two nodes: one version more, not two.
    let mut again = schedule.clone();
    again["minimum_fee"] = json!("1.50");
    let first = put_with_key(&zone, 0, &t.admin, "fees-2", &again).await?;
    let retry = put_with_key(&zone, 1, &t.admin, "fees-2", &again).await?;
    ensure!(
        first.0 == 200 && retry.0 == 200 && retry.1["current"]["version"] == 2,
        "{first:?} {retry:?}"
    );
    again["minimum_fee"] = json!("1.00");
    let (status, body) = put(&zone, 2, &t.admin, &again).await?;
    ensure!(
        status == 200 && body["current"]["version"] == 3,
        "{status} {body}"
    );
    let (status, body) = zone.get(0, "/v1/zone/fee-schedule", Some(&t.buyer)).await?;
    ensure!(
        status == 200
            && body["current"]["platform_fee_bp"] == 500
            && body["history"].as_array().map(Vec::len) == Some(3),
        "read on another node: {status} {body}"
    );

    // The buyer orders 200 calls on node 0.
    let (status, placed) = post_with_key(
        &url(&zone, 0, "/v1/orders"),
        &t.buyer,
        "order-1",
        &json!({
            "authorization_id": auth, "quantity": 200
        }),
    )
    .await?;
    ensure!(
        status == 201 && placed["state"] == "placed",
        "{status} {placed}"
    );
    let id = placed["id"].as_u64().context("order id")?;
    // The contract, as the regulator reads it on node 2.
    let o = read_order(&zone, 2, id).await?;
    ensure!(
        o["unit_price"] == "0.50"
            && o["total"] == "100.00"
            && o["quantity"] == 200
            && o["pricing_model"] == "per_call"
            && o["currency"] == "CNY"
            && o["delivery_mode"] == "api"
            && o["scenario"] == LENDING
            && o["authorization_id"] == auth
            && o["certificate_number"] == certificate.as_str()
            && o["content_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("sha256:"))
            && o["buyer"].is_string()
            && o["provider"].is_string()
            && o["provider"] != o["buyer"],
        "the contract: {o}"
    );
    // Not settled before it is confirmed and delivered.
    let settle = format!("/v1/orders/{id}/settlement");
    refused(
        &zone.post(0, &settle, &t.operator, &json!({})).await?,
        409,
        "illegal_transition",
    )?;
    // The provider confirms on node 1 and delivers through node 2, in two parts.
    let path = format!("/v1/orders/{id}/confirm");
    let (status, body) = zone.post(1, &path, &t.provider, &json!({})).await?;
    ensure!(
        status == 200 && body["state"] == "confirmed",
        "{status} {body}"
    );
    let (status, first) = deliver(&zone, 2, id, json!({"mode": "api", "calls": 150})).await?;
    ensure!(status == 201 && first["calls"] == 150, "{status} {first}");
    ensure!(read_order(&zone, 0, id).await?["state"] == "delivering");
    let (status, body) = deliver(
        &zone,
        0,
        id,
        json!({"mode": "api", "calls": 50, "note": "第二批"}),
    )
    .await?;
    ensure!(status == 201, "{status} {body}");
    let o = read_order(&zone, 1, id).await?;
    ensure!(
        o["state"] == "delivered"
            && o["delivered_calls"] == 200
            && o["deliveries"].as_array().map(Vec::len) == Some(2),
        "{o}"
    );
    ensure!(
        used(&zone, auth).await? == 200,
        "counted on the authorisation"
    );

    // The operator settles on node 1, with a key; the retry answers the same record.
    let (status, s) =
        post_with_key(&url(&zone, 1, &settle), &t.operator, "settle-1", &json!({})).await?;
    ensure!(status == 201, "settle: {status} {s}");
    // 100.00: fee 5% = 5.00; revenue 95.00; operator 10% = 9.50; no broker; provider 85.50.
    ensure!(
        s["amount"] == "100.00"
            && s["fees"] == "5.00"
            && s["split"] == json!({"provider": "85.50", "operator": "9.50", "broker": "0.00"})
            && s["fee_schedule_version"] == 3
            && s["kind"] == "settlement"
            && s["quantity"] == 200,
        "{s}"
    );
    let (status, again) =
        post_with_key(&url(&zone, 2, &settle), &t.operator, "settle-1", &json!({})).await?;
    ensure!(
        status == 201 && again == s,
        "the first answer again: {status} {again}"
    );
    refused(
        &zone.post(0, &settle, &t.operator, &json!({})).await?,
        409,
        "illegal_transition",
    )?;

    // The buyer disputes on node 2; the operator reverses on node 0 by a new record.
    let dispute = format!("/v1/orders/{id}/settlement/dispute");
    let (status, d) = zone
        .post(
            2,
            &dispute,
            &t.buyer,
            &json!({"reason": "调用量与对账单不符"}),
        )
        .await?;
    ensure!(
        status == 201 && d["settlement_id"] == s["id"],
        "{status} {d}"
    );
    let reversal = format!("/v1/orders/{id}/settlement/reversal");
    refused(
        &zone
            .post(0, &reversal, &t.buyer, &json!({"reason": "x"}))
            .await?,
        403,
        "forbidden",
    )?;
    let (status, r) = zone
        .post(0, &reversal, &t.operator, &json!({"reason": "核实后冲正"}))
        .await?;
    ensure!(
        status == 201
            && r["kind"] == "reversal"
            && r["reverses"] == s["id"]
            && r["amount"] == "100.00"
            && r["id"] != s["id"],
        "{status} {r}"
    );
    let o = read_order(&zone, 1, id).await?;
    ensure!(
        o["state"] == "reversed"
            && o["settlements"].as_array().map(Vec::len) == Some(2)
            && o["settlements"][0] == s
            && o["disputes"].as_array().map(Vec::len) == Some(1),
        "the first record stays as it was: {o}"
    );
    // The regulator lists the zone's orders; a buyer sees its own.
    let listed = orders(&zone, 2).await?;
    ensure!(listed.len() == 1 && listed[0]["id"] == id, "{listed:?}");
    for action in [
        "place_order",
        "confirm_order",
        "settle_order",
        "dispute_settlement",
        "reverse_settlement",
        "set_fee_schedule",
    ] {
        let results = audit_results(&zone, 0, action).await?;
        ensure!(results.iter().any(|r| r == "ok"), "{action}: {results:?}");
    }

    // The regulator's figures count the trade today: one order placed, confirmed, delivered
    // twice, settled, disputed and reversed, 100.00 CNY settled and 100.00 reversed.
    let today = xchg_protocol::Timestamp::now().to_string();
    let day = &today[..10];
    let (status, stats) = zone
        .get(
            1,
            &format!("/v1/supervision/stats?period=day&from={day}&to={day}"),
            Some(&t.regulator),
        )
        .await?;
    ensure!(status == 200, "stats: {status} {stats}");
    let figures = &stats["periods"][0]["orders"];
    ensure!(
        *figures
            == json!({
                "placed": 1, "confirmed": 1, "deliveries": 2, "settled": 1, "disputed": 1,
                "reversed": 1, "settled_amounts": {"CNY": "100.00"},
                "reversed_amounts": {"CNY": "100.00"},
            }),
        "the day's order figures: {figures}"
    );
    // A complaint names the order by its number; one that names no order is 404.
    let complaint =
        |order: String| json!({"target": {"kind": "order", "id": order}, "text": "对账单有误"});
    let (status, filed) = zone
        .post(2, "/v1/complaints", &t.buyer, &complaint(id.to_string()))
        .await?;
    ensure!(
        status == 201,
        "a complaint against the order: {status} {filed}"
    );
    refused(
        &zone
            .post(0, "/v1/complaints", &t.buyer, &complaint("987654".into()))
            .await?,
        404,
        "not_found",
    )?;
    refused(
        &zone
            .post(0, "/v1/complaints", &t.buyer, &complaint("07".into()))
            .await?,
        400,
        "invalid_field",
    )?;
    Ok(())
}

#[tokio::test]
async fn an_order_without_an_active_authorisation_is_refused_and_creates_nothing()
-> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let t = zone.tokens().clone();
    refused(&order(&zone, 0, 99, 1).await?, 404, "not_found")?;
    let suspend = format!("/v1/authorizations/{auth}/suspend");
    let answer = zone
        .post(1, &suspend, &t.operator, &json!({"reason": "核查中"}))
        .await?;
    ensure!(answer.0 == 200, "suspend: {answer:?}");
    refused(
        &order(&zone, 2, auth, 1).await?,
        403,
        "authorization_suspended",
    )?;
    let revoke = format!("/v1/authorizations/{auth}/revoke");
    let answer = zone
        .post(1, &revoke, &t.operator, &json!({"reason": "终止"}))
        .await?;
    ensure!(answer.0 == 200, "revoke: {answer:?}");
    refused(
        &order(&zone, 0, auth, 1).await?,
        403,
        "authorization_revoked",
    )?;
    ensure!(orders(&zone, 1).await?.is_empty(), "no order");
    // The unknown number wrote nothing; the two refusals are recorded.
    let results = audit_results(&zone, 2, "place_order").await?;
    ensure!(
        results.len() == 2 && results.iter().all(|r| r.starts_with("refused:")),
        "every refusal recorded: {results:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_delivery_outside_the_authorised_mode_is_refused() -> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let id = confirmed(&zone, auth, 10).await?;
    // The listing offers verification too, but the authorisation grants api only.
    refused(
        &deliver(&zone, 0, id, json!({"mode": "verification", "calls": 1})).await?,
        403,
        "delivery_mode_not_authorized",
    )?;
    let hash = "ab".repeat(32);
    refused(
        &deliver(
            &zone,
            2,
            id,
            json!({"mode": "file", "manifest_hashes": [hash]}),
        )
        .await?,
        403,
        "delivery_mode_not_authorized",
    )?;
    // A file manifest for an API delivery is malformed before anything is judged.
    refused(
        &deliver(
            &zone,
            1,
            id,
            json!({"mode": "api", "calls": 1, "manifest_hashes": [hash]}),
        )
        .await?,
        400,
        "invalid_field",
    )?;
    let o = read_order(&zone, 1, id).await?;
    ensure!(
        o["state"] == "confirmed" && o["deliveries"] == json!([]),
        "nothing delivered: {o}"
    );
    ensure!(used(&zone, auth).await? == 0);
    Ok(())
}

#[tokio::test]
async fn a_delivery_over_the_limit_is_refused_and_counts_nothing() -> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let t = zone.tokens().clone();
    // An order for more calls than the authorisation allows.
    refused(
        &order(&zone, 0, auth, 101).await?,
        403,
        "usage_limit_exceeded",
    )?;
    let id = confirmed(&zone, auth, 100).await?;
    // Usage counted outside the order leaves 90 calls.
    let usage = format!("/v1/authorizations/{auth}/usage");
    let answer = zone
        .post(2, &usage, &t.buyer, &json!({"calls": 10}))
        .await?;
    ensure!(answer.0 == 200, "usage: {answer:?}");
    refused(
        &deliver(&zone, 1, id, json!({"mode": "api", "calls": 95})).await?,
        403,
        "usage_limit_exceeded",
    )?;
    ensure!(used(&zone, auth).await? == 10, "none counted");
    let (status, body) = deliver(&zone, 0, id, json!({"mode": "api", "calls": 90})).await?;
    ensure!(status == 201, "{status} {body}");
    // Past the order's own quantity.
    refused(
        &deliver(&zone, 2, id, json!({"mode": "api", "calls": 11})).await?,
        409,
        "order_quantity_exceeded",
    )?;
    let o = read_order(&zone, 0, id).await?;
    ensure!(
        o["delivered_calls"] == 90 && o["state"] == "delivering",
        "{o}"
    );
    ensure!(used(&zone, auth).await? == 100);
    Ok(())
}

#[tokio::test]
async fn the_same_order_sent_twice_under_one_key_creates_one_and_answers_the_same()
-> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let buyer = &zone.tokens().buyer;
    let body = json!({"authorization_id": auth, "quantity": 5});
    let first = post_with_key(&url(&zone, 0, "/v1/orders"), buyer, "k-1", &body).await?;
    ensure!(first.0 == 201, "{first:?}");
    // The retry, to another node.
    let again = post_with_key(&url(&zone, 2, "/v1/orders"), buyer, "k-1", &body).await?;
    ensure!(again == first, "the first answer: {again:?} vs {first:?}");
    let listed = orders(&zone, 1).await?;
    ensure!(listed.len() == 1, "one order: {listed:?}");
    let results = audit_results(&zone, 1, "place_order").await?;
    ensure!(
        results.len() == 2 && results[1].starts_with("replayed"),
        "the retry recorded as replayed: {results:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_same_key_with_another_order_is_409_and_creates_nothing() -> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let buyer = &zone.tokens().buyer;
    let first = json!({"authorization_id": auth, "quantity": 5});
    let answer = post_with_key(&url(&zone, 0, "/v1/orders"), buyer, "k-2", &first).await?;
    ensure!(answer.0 == 201, "{answer:?}");
    let other = json!({"authorization_id": auth, "quantity": 6});
    let answer = post_with_key(&url(&zone, 1, "/v1/orders"), buyer, "k-2", &other).await?;
    refused(&answer, 409, "idempotency_key_reused")?;
    let listed = orders(&zone, 2).await?;
    ensure!(
        listed.len() == 1 && listed[0]["quantity"] == 5,
        "only the first: {listed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_settlement_of_an_unconfirmed_order_is_refused() -> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let t = zone.tokens().clone();
    let (status, body) = order(&zone, 0, auth, 5).await?;
    ensure!(status == 201, "{status} {body}");
    let id = body["id"].as_u64().context("order id")?;
    let settle = format!("/v1/orders/{id}/settlement");
    refused(
        &zone.post(1, &settle, &t.operator, &json!({})).await?,
        409,
        "illegal_transition",
    )?;
    // A number that is no order is 404, writing nothing.
    refused(
        &zone
            .post(2, "/v1/orders/77/settlement", &t.operator, &json!({}))
            .await?,
        404,
        "not_found",
    )?;
    // Nor delivered before it is confirmed, nor settled by anyone but an operator.
    refused(
        &deliver(&zone, 2, id, json!({"mode": "api", "calls": 1})).await?,
        409,
        "illegal_transition",
    )?;
    refused(
        &zone.post(1, &settle, &t.provider, &json!({})).await?,
        403,
        "forbidden",
    )?;
    let o = read_order(&zone, 2, id).await?;
    ensure!(
        o["state"] == "placed" && o["settlements"] == json!([]),
        "nothing settled: {o}"
    );
    let results = audit_results(&zone, 0, "settle_order").await?;
    ensure!(
        results.len() == 1 && results[0].starts_with("refused:illegal_transition"),
        "{results:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_broker_orders_for_its_buyer_only_under_an_entrustment_and_the_settlement_gives_it_its_share()
-> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(1000).await?;
    let t = zone.tokens().clone();
    let schedule = json!({
        "platform_fee_bp": 500, "operator_share_bp": 1000, "broker_share_bp": 500,
        "minimum_fee": "0",
    });
    let (status, body) = put(&zone, 1, &t.admin, &schedule).await?;
    ensure!(status == 200, "{status} {body}");
    // A brokerage admitted in the zone, with a buyer token of its own.
    let broker = "henan-data-broker";
    let operator = &t.operator;
    let application = xchg_tests::party_application(broker, &["data_broker"]);
    let answer = zone.post(0, "/v1/parties", operator, &application).await?;
    ensure!(answer.0 == 201, "apply: {answer:?}");
    let admit = format!("/v1/parties/{broker}/admit");
    let answer = zone.post(1, &admit, operator, &json!({})).await?;
    ensure!(answer.0 == 200, "admit: {answer:?}");
    let body = json!({"role": "buyer", "party": broker, "label": "broker"});
    let (status, created) = zone.post(2, "/v1/tokens", &t.admin, &body).await?;
    ensure!(status == 201, "token: {status} {created}");
    let broker_token = created["token"].as_str().context("token")?.to_owned();
    let path = format!("/v1/authorizations/{auth}");
    let (_, a) = zone.get(0, &path, Some(&t.regulator)).await?;
    let buyer = a["buyer"]
        .as_str()
        .context("the authorisation's buyer")?
        .to_owned();
    let for_buyer = json!({"authorization_id": auth, "quantity": 200, "buyer": buyer});
    // Not entrusted yet: refused, naming the field.
    let answer = zone
        .post(0, "/v1/orders", &broker_token, &for_buyer)
        .await?;
    refused(&answer, 403, "not_entrusted")?;
    ensure!(answer.1["error"]["field"] == "buyer", "{answer:?}");
    // The buyer entrusts the broker with placing orders.
    let grant = json!({
        "broker": broker,
        "scope": ["place_order"],
        "expires_at": xchg_protocol::Timestamp::now().plus_millis(86_400_000),
    });
    let answer = zone.post(1, "/v1/entrustments", &t.buyer, &grant).await?;
    ensure!(answer.0 == 201, "entrust: {answer:?}");
    let (status, placed) = zone
        .post(2, "/v1/orders", &broker_token, &for_buyer)
        .await?;
    ensure!(status == 201, "{status} {placed}");
    let id = placed["id"].as_u64().context("order id")?;
    let o = read_order(&zone, 0, id).await?;
    ensure!(o["broker"] == broker && o["buyer"] == buyer.as_str(), "{o}");
    let confirm = format!("/v1/orders/{id}/confirm");
    let answer = zone.post(1, &confirm, &t.provider, &json!({})).await?;
    ensure!(answer.0 == 200, "{answer:?}");
    let (status, body) = deliver(&zone, 2, id, json!({"mode": "api", "calls": 200})).await?;
    ensure!(status == 201, "{status} {body}");
    let settle = format!("/v1/orders/{id}/settlement");
    let (status, s) = zone.post(0, &settle, &t.operator, &json!({})).await?;
    // 100.00: fee 5.00; revenue 95.00: operator 10% 9.50, broker 5% 4.75, provider 80.75.
    ensure!(
        status == 201
            && s["fees"] == "5.00"
            && s["split"] == json!({"provider": "80.75", "operator": "9.50", "broker": "4.75"}),
        "{status} {s}"
    );
    Ok(())
}

#[tokio::test]
async fn a_party_reads_only_its_own_orders_and_the_regulator_all() -> anyhow::Result<()> {
    let (zone, auth, _) = trade_zone(100).await?;
    let t = zone.tokens().clone();
    let (status, body) = order(&zone, 0, auth, 5).await?;
    ensure!(status == 201, "{status} {body}");
    let id = body["id"].as_u64().context("order id")?;
    // Another buyer, admitted, with its own token.
    let other = "xuchang-insurer";
    let application = xchg_tests::party_application(other, &["processor"]);
    let answer = zone
        .post(0, "/v1/parties", &t.operator, &application)
        .await?;
    ensure!(answer.0 == 201, "apply: {answer:?}");
    let admit = format!("/v1/parties/{other}/admit");
    let answer = zone.post(1, &admit, &t.operator, &json!({})).await?;
    ensure!(answer.0 == 200, "admit: {answer:?}");
    let body = json!({"role": "buyer", "party": other, "label": "another buyer"});
    let (status, created) = zone.post(2, "/v1/tokens", &t.admin, &body).await?;
    ensure!(status == 201, "token: {status} {created}");
    let stranger = created["token"].as_str().context("token")?.to_owned();
    let path = format!("/v1/orders/{id}");
    refused(
        &zone.get(1, &path, Some(&stranger)).await?,
        403,
        "forbidden",
    )?;
    let (status, page) = zone.get(2, "/v1/orders", Some(&stranger)).await?;
    ensure!(
        status == 200 && page["items"] == json!([]),
        "{status} {page}"
    );
    // Nor may it order under the demo buyer's authorisation.
    let mine = json!({"authorization_id": auth, "quantity": 1});
    refused(
        &zone.post(0, "/v1/orders", &stranger, &mine).await?,
        403,
        "forbidden",
    )?;
    for token in [&t.buyer, &t.provider, &t.operator, &t.regulator] {
        let (status, o) = zone.get(0, &path, Some(token)).await?;
        ensure!(status == 200 && o["id"] == id, "{status} {o}");
        let (status, page) = zone.get(1, "/v1/orders", Some(token)).await?;
        ensure!(
            status == 200 && page["items"].as_array().map(Vec::len) == Some(1),
            "{status} {page}"
        );
    }
    Ok(())
}
