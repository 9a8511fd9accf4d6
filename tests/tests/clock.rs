//! The node's clock (issue #13): a zone started on a clock of the test's stamps its commands
//! with that clock's time and forgets idempotency keys by it, so time-dependent behaviour can
//! be driven without waiting a day.

use std::time::Duration;

use serde_json::Value;
use xchg_federation_config::layout::LayoutKind;
use xchg_node::clock::{Clock, ManualClock};
use xchg_node::node::StartOptions;
use xchg_protocol::Timestamp;
use xchg_tests::in_process::Federation;
use xchg_tests::{example_listing, post_with_key};

const HOUR: Duration = Duration::from_secs(3_600);

/// Submits `body` through node 0 with `key` as its `Idempotency-Key`; the status and answer.
async fn submit(fed: &Federation, key: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let url = format!("http://{}/v1/listings", fed.zones[0][0].api_addr);
    post_with_key(&url, &fed.zone_tokens(0).provider, key, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_on_a_manual_clock_stamps_listings_with_its_time_and_expires_keys_by_it()
-> anyhow::Result<()> {
    // An hour ahead of the system clock, so a stamp taken from the system clock cannot pass.
    let clock = ManualClock::new(Timestamp::now().plus_millis(HOUR.as_millis() as u64));
    let options = StartOptions {
        clock: std::sync::Arc::new(clock.clone()),
        ..StartOptions::default()
    };
    let fed = Federation::start_with(LayoutKind::SingleZone, 3, options, |_, _| {}).await?;
    let body = example_listing("on the test's clock");
    let key = "a-key-used-for-a-day";

    let submitted_at = clock.now();
    let (code, first) = submit(&fed, key, &body).await?;
    assert_eq!(code, 201, "{first}");
    let id = first["id"].as_str().unwrap_or_default().to_owned();
    let regulator = fed.zone_tokens(0).regulator.clone();
    let (code, listing) = fed
        .get(0, 0, &format!("/v1/listings/{id}"), &regulator)
        .await?;
    assert_eq!(code, 200, "{listing}");
    assert_eq!(
        listing["created_at"],
        serde_json::to_value(submitted_at)?,
        "stamped with the node's clock: {listing}"
    );

    // 23 hours on, the key still answers the first listing.
    clock.advance(23 * HOUR);
    let (code, again) = submit(&fed, key, &body).await?;
    assert_eq!((code, &again["id"]), (201, &first["id"]), "{again}");

    // 25 hours after its first use the key is forgotten: the same request is a new listing.
    clock.advance(2 * HOUR);
    let (code, later) = submit(&fed, key, &body).await?;
    assert_eq!(code, 201, "{later}");
    assert_ne!(
        later["id"], first["id"],
        "the key expired by the node's clock"
    );
    fed.shutdown().await;
    Ok(())
}
