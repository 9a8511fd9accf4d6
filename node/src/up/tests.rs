//! [`super::start`] on real nodes (loopback TCP, mutual TLS, libp2p, SQLite files) and the
//! data directory's checks.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use xchg_federation_config::layout::{LayoutKind, LayoutZone};

use super::{UpError, UpEvent, UpOptions, data_dir, start};

/// Longest any condition below is waited for.
const DEADLINE: Duration = Duration::from_secs(60);

/// A first port on 127.0.0.1 whose `count` ports are free right now. Like the fixtures of
/// `tests/`, the range is drawn from the process id and a counter, so parallel tests and test
/// processes pick different ranges; it stays below Linux's ephemeral ports (32768 up), so no
/// outgoing connection takes one of them in the meantime.
fn free_base_port(count: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..64 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
        let base = 20_000 + (n % 12_000) as u16;
        if ports_free(base, count) {
            return base;
        }
    }
    panic!("no {count} free consecutive ports on 127.0.0.1 between 20000 and 32767");
}

fn ports_free(base: u16, count: u16) -> bool {
    (base..base + count)
        .all(|p| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p))).is_ok())
}

/// A first run of `kind` with `per_zone` nodes per zone in `dir`, on free loopback ports.
fn first_run(dir: &Path, kind: LayoutKind, per_zone: usize, ports: u16) -> UpOptions {
    UpOptions {
        layout: Some(kind),
        nodes_per_zone: Some(per_zone),
        base_port: Some(free_base_port(ports)),
        host: Some(Ipv4Addr::LOCALHOST.into()),
        ..UpOptions::new(dir)
    }
}

/// An interrupt that never fires.
fn never() -> std::future::Pending<()> {
    std::future::pending()
}

/// Retries `attempt` every 100 ms until it gives a value; fails the test at [`DEADLINE`] with
/// the last reason.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let until = Instant::now() + DEADLINE;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < until,
                "timed out after {DEADLINE:?} waiting for {what}; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `request` and returns the JSON of a 2xx answer, or says what came instead.
async fn json(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// The example listing of the protocol's vectors, in the name of `zone`'s provider party.
fn listing_for(zone: &LayoutZone) -> Value {
    let mut listing = serde_json::to_value(xchg_protocol::vectors::credit_draft())
        .expect("a listing draft serialises");
    listing["provider"]["id"] = zone.provider_party.id.as_str().into();
    listing["provider"]["name"] = zone.provider_party.name.as_str().into();
    listing
}

/// Reads listing `id` from `api` as the zone's regulator, once it is there.
async fn read_listing(http: &reqwest::Client, api: &str, zone: &LayoutZone, id: &str) -> Value {
    eventually(&format!("listing {id} on {api}"), || {
        json(
            http.get(format!("{api}/v1/listings/{id}"))
                .bearer_auth(&zone.tokens.regulator),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_zone_starts_takes_a_listing_stops_with_its_ports_free_and_resumes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let options = first_run(&dir, LayoutKind::SingleZone, 3, 9);
    let base = options.base_port.expect("set above");
    let mut events = Vec::new();
    let running = start(options, |e| events.push(e), never())
        .await
        .expect("the zone starts");
    assert_eq!(running.nodes().len(), 3);
    assert_eq!(running.zones(), 1);
    assert!(events.contains(&UpEvent::NodeStarted {
        started: 3,
        total: 3
    }));
    assert_eq!(events.last(), Some(&UpEvent::Leaders { led: 1, zones: 1 }));
    let zone = running.hub().clone();
    let apis: Vec<String> = running.nodes().iter().map(|n| n.api_url.clone()).collect();
    assert_eq!(apis[0], format!("http://127.0.0.1:{base}"));
    assert_eq!(running.dashboard_url(), format!("{}/", apis[0]));
    assert_eq!(running.dashboard_token(), zone.tokens.regulator);

    // Written through the last node (a follower forwards it), read on every node.
    let http = reqwest::Client::new();
    let written = eventually("a listing accepted", || {
        json(
            http.post(format!("{}/v1/listings", apis[2]))
                .bearer_auth(&zone.tokens.provider)
                .json(&listing_for(&zone)),
        )
    })
    .await;
    let id = written["id"]
        .as_str()
        .expect("the answer names the listing");
    for api in &apis {
        let read = read_listing(&http, api, &zone, id).await;
        assert_eq!(read["title"], listing_for(&zone)["title"], "{read}");
    }

    running.stop().await.expect("every node stops");
    assert!(ports_free(base, 9), "a port of the zone is still bound");

    // The databases were closed and unlocked: the same directory starts again, with the data.
    let mut events = Vec::new();
    let again = start(UpOptions::new(&dir), |e| events.push(e), never())
        .await
        .expect("the zone starts again");
    assert_eq!(
        events.first(),
        Some(&UpEvent::Reusing {
            kind: LayoutKind::SingleZone
        })
    );
    let read = read_listing(&http, &apis[1], &zone, id).await;
    assert_eq!(read["id"], id, "{read}");
    again.stop().await.expect("every node stops");
    assert!(ports_free(base, 9), "a port of the zone is still bound");
}

#[tokio::test]
async fn an_interrupt_stops_the_start_before_any_node_runs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let options = first_run(&dir, LayoutKind::SingleZone, 1, 3);
    let base = options.base_port.expect("set above");
    let mut events = Vec::new();
    let starting = start(options, |e| events.push(e), std::future::ready(()));
    // A simulation may run it on another task.
    fn sendable<T: Send>(_: &T) {}
    sendable(&starting);
    let outcome = starting.await;
    assert!(
        matches!(outcome, Err(UpError::Interrupted)),
        "{:?}",
        outcome.err()
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, UpEvent::NodeStarted { .. })),
        "{events:?}"
    );
    assert!(ports_free(base, 3));
    // The layout was generated whole, for the next run.
    assert!(dir.join("layout.json").exists());
}

/// Generates a one-node single-zone layout in `dir` without starting it.
fn generated(dir: &Path) {
    let options = UpOptions {
        layout: Some(LayoutKind::SingleZone),
        nodes_per_zone: Some(1),
        base_port: Some(27_000),
        ..UpOptions::new(dir)
    };
    data_dir::load_or_generate(&options, &mut |_| {}).expect("generated");
}

#[test]
fn reusing_a_directory_refuses_new_addresses_another_layout_or_size() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    generated(&dir);
    let reuse = |options: UpOptions| data_dir::load_or_generate(&options, &mut |_| {});
    let moved = reuse(UpOptions {
        base_port: Some(28_000),
        ..UpOptions::new(&dir)
    });
    assert!(
        matches!(moved, Err(UpError::AddressesFixed { .. })),
        "{moved:?}"
    );
    let other = reuse(UpOptions {
        layout: Some(LayoutKind::TwoExchanges),
        ..UpOptions::new(&dir)
    });
    assert!(
        matches!(
            other,
            Err(UpError::OtherLayout {
                held: LayoutKind::SingleZone,
                asked: LayoutKind::TwoExchanges,
                ..
            })
        ),
        "{other:?}"
    );
    let bigger = reuse(UpOptions {
        nodes_per_zone: Some(3),
        ..UpOptions::new(&dir)
    });
    assert!(
        matches!(
            bigger,
            Err(UpError::OtherNodesPerZone {
                held: 1,
                asked: 3,
                ..
            })
        ),
        "{bigger:?}"
    );
    let same = reuse(UpOptions {
        layout: Some(LayoutKind::SingleZone),
        nodes_per_zone: Some(1),
        ..UpOptions::new(&dir)
    })
    .expect("the same layout is reused");
    assert_eq!(same.exchanges[0].zones[0].nodes.len(), 1);
}

#[test]
fn a_directory_with_files_but_no_layout_is_left_alone() {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("notes.txt"), "mine").expect("written");
    let refused = data_dir::load_or_generate(&UpOptions::new(tmp.path()), &mut |_| {});
    assert!(
        matches!(refused, Err(UpError::NoLayout { .. })),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).expect("still there"),
        "mine"
    );
}

#[test]
fn a_layout_json_without_zones_or_nodes_is_refused_not_a_panic() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    generated(&dir);
    let file = dir.join("layout.json");
    let mut layout: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("JSON");
    layout["exchanges"][0]["zones"][0]["nodes"] = Value::Array(vec![]);
    std::fs::write(&file, layout.to_string()).expect("written");
    let no_nodes = data_dir::load_or_generate(&UpOptions::new(&dir), &mut |_| {});
    assert!(
        matches!(&no_nodes, Err(UpError::IncompleteLayout { what, .. }) if what.contains("no nodes")),
        "{no_nodes:?}"
    );
    std::fs::write(&file, r#"{"exchanges": []}"#).expect("written");
    let empty = data_dir::load_or_generate(&UpOptions::new(&dir), &mut |_| {});
    assert!(
        matches!(empty, Err(UpError::IncompleteLayout { .. })),
        "{empty:?}"
    );
}
