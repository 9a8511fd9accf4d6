//! `/metrics` serves the Raft, write, apply and request metrics in Prometheus text.

use std::time::Duration;

use xchg_tests::{Zone, example_listing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_raft_state_write_latency_and_requests_by_route_and_status()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let provider = zone.tokens().provider.clone();
    let (status, body) = zone
        .post(
            leader,
            "/v1/listings",
            &provider,
            &example_listing("metrics"),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let text = reqwest::get(format!("{}/metrics", zone.nodes[leader].api_url))
        .await?
        .text()
        .await?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    assert_eq!(
        value("xchg_raft_is_leader"),
        Some(1.0),
        "the leader says so:\n{text}"
    );
    assert!(value("xchg_raft_term").is_some_and(|t| t >= 1.0), "{text}");
    for name in [
        "xchg_raft_applied_index",
        "xchg_raft_commit_index",
        "xchg_raft_last_log_index",
    ] {
        assert!(
            value(name).is_some_and(|v| v >= 2.0),
            "{name} counts the writes:\n{text}"
        );
    }
    assert!(
        value("xchg_write_duration_seconds_count").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        value("xchg_apply_batch_duration_seconds_count").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        value("xchg_log_append_duration_seconds_count").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    let submitted = text.lines().any(|l| {
        l.starts_with("xchg_http_requests_total{")
            && l.contains("route=\"/v1/listings\"")
            && l.contains("method=\"POST\"")
            && l.contains("status=\"201\"")
    });
    assert!(
        submitted,
        "requests are counted by route, method and status:\n{text}"
    );
    assert!(
        text.contains("xchg_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    Ok(())
}
