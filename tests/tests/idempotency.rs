//! `Idempotency-Key` on creating writes, with real processes (issue #12): a retry after a
//! lost answer, sent to any node of the zone, returns the first result and creates nothing.

use std::time::Duration;

use serde_json::Value;
use xchg_tests::{Zone, example_listing, post_with_key};

/// Submits `body` through node `node` with `key` as its `Idempotency-Key`; the status and answer.
async fn submit(zone: &Zone, node: usize, key: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let url = format!("{}/v1/listings", zone.nodes[node].api_url);
    post_with_key(&url, &zone.tokens().provider, key, body).await
}

/// The search for the listings titled "sent twice", as node `node` answers it.
async fn sent_twice(zone: &Zone, node: usize, token: &str) -> anyhow::Result<Value> {
    let (_, found) = zone
        .get(node, "/v1/listings?q=sent%20twice", Some(token))
        .await?;
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_submission_with_its_key_creates_one_listing_whichever_node_it_reaches()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    let body = example_listing("sent twice");
    let key = "7f9c1c2e-0b7a-4d51-9a8e-3c2d1b0a9f8e";

    let (code, first) = submit(&zone, follower, key, &body).await?;
    assert_eq!(code, 201, "{first}");
    let (code, again) = submit(&zone, leader, key, &body).await?;
    assert_eq!(code, 201, "{again}");
    assert_eq!(
        again["id"], first["id"],
        "the retry answers the first listing"
    );
    let found = sent_twice(&zone, leader, &tokens.regulator).await?;
    assert_eq!(found["total"], 1, "one listing, not two: {found}");

    // The same key with another body is refused; a malformed key is refused.
    let (code, other) = submit(&zone, leader, key, &example_listing("another")).await?;
    assert_eq!(code, 409, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused", "{other}");
    let (code, bad) = submit(&zone, leader, "no spaces please", &body).await?;
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_idempotency_key", "{bad}");

    // Without a key, the same body is a new listing, as before.
    let (code, _) = zone
        .post(leader, "/v1/listings", &tokens.provider, &body)
        .await?;
    assert_eq!(code, 201);
    let found = sent_twice(&zone, leader, &tokens.regulator).await?;
    assert_eq!(found["total"], 2, "{found}");
    Ok(())
}
