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

/// The label values of every `xchg_http_requests_total` series in `text`, as `(route, method)`.
fn request_series(text: &str) -> Vec<(String, String)> {
    let label = |line: &str, name: &str| -> String {
        let start = format!("{name}=\"");
        line.split_once(&start)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v.to_owned())
            .unwrap_or_default()
    };
    text.lines()
        .filter(|l| l.starts_with("xchg_http_requests_total{"))
        .map(|l| (label(l, "route"), label(l, "method")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_become_metric_labels() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 1)?;
    zone.start_all()?;
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let api = zone.nodes[0].api_url.clone();
    let http = reqwest::Client::new();
    // The attack of issue #12: every request with its own long, made-up method, and as many
    // unknown paths, each of which used to add a series to /metrics for good.
    for i in 0..200 {
        let method = reqwest::Method::from_bytes(format!("X{i}{}", "M".repeat(2000)).as_bytes())?;
        let status = http
            .request(method, format!("{api}/v1/status"))
            .send()
            .await?
            .status();
        assert_eq!(status, 405, "a made-up method is not allowed");
        let status = http
            .get(format!("{api}/v1/no-such-route-{i}"))
            .send()
            .await?
            .status();
        assert_eq!(status, 404);
    }
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let series = request_series(&text);
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
    ];
    for (route, method) in &series {
        assert!(
            methods.contains(&method.as_str()),
            "method label {:.40}… is not one of the fixed set",
            method
        );
        assert!(
            route == "unmatched" || route.starts_with('/'),
            "route label {route:.40} is neither a route template nor `unmatched`"
        );
        assert!(
            !route.contains("no-such-route"),
            "an unknown path became a route label: {route}"
        );
    }
    assert!(
        series.len() <= 10,
        "{} request series after 400 odd requests:\n{:.2000}",
        series.len(),
        text
    );
    assert!(
        text.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        text.len()
    );
    Ok(())
}
