//! The federation map shows only nodes whose identity is proven. A libp2p peer whose key
//! chains to no trusted root declares itself `municipal-9` of the hub's own zone, with an API
//! that answers as a leader of term 99; the hub must neither show it on the map nor send it a
//! single HTTP request, and lists it as an unverified peer instead. The outside exchange's node,
//! which proves its zone with its delegation, is on the map (real processes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use xchg_node::gossip::Broadcast;
use xchg_node::gossip::swarm::{self, SwarmConfig};
use xchg_protocol::Keypair;
use xchg_tests::{Zone, eventually};

const XUCHANG: &str = "xuchang/municipal";
const ZHENGZHOU: &str = "zhengzhou/main";

/// An HTTP server on 127.0.0.1 that answers every request with a status document of
/// `municipal-9`, leader of term 99, and counts the requests.
async fn lying_api() -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head).await;
                let body = serde_json::json!({
                    "node": "municipal-9", "zone": XUCHANG, "role": "leader",
                    "leader": "municipal-9", "term": 99, "commit_index": 1000,
                    "applied_index": 1000, "members": []
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok((port, hits))
}

/// Every node shown in the overview's zones, as (zone, name, reachable).
fn shown(overview: &Value) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for exchange in overview["exchanges"].as_array().into_iter().flatten() {
        for zone in exchange["zones"].as_array().into_iter().flatten() {
            for node in zone["nodes"].as_array().into_iter().flatten() {
                out.push((
                    zone["id"].as_str().unwrap_or_default().to_owned(),
                    node["name"].as_str().unwrap_or_default().to_owned(),
                    node["reachable"] == true,
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_lies_about_who_it_is_is_neither_shown_nor_asked() -> anyhow::Result<()> {
    let mut fed = Zone::generate("two-exchanges", 1)?;
    fed.start_all()?;
    let hub = fed.zone_nodes(XUCHANG)[0];
    let zz = fed.zone_nodes(ZHENGZHOU)[0];
    fed.wait_for_leader(hub, Duration::from_secs(30)).await?;
    fed.wait_for_leader(zz, Duration::from_secs(30)).await?;
    let admin = fed.zone_tokens(XUCHANG).admin.clone();
    let zz_name = fed.nodes[zz].name.clone();

    let (port, hits) = lying_api().await?;
    let agent = format!("xchg/0.1.0 {XUCHANG} municipal-9 http://127.0.0.1:{port}");
    let mut sc = SwarmConfig::new(Keypair::generate(), agent.clone());
    sc.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    sc.bootstrap = vec![fed.layout.exchanges[0].zones[0].nodes[0].p2p_addr.clone()];
    let (liar, _events) = swarm::spawn(sc).await?;
    let liar_id = liar.local_peer().0;

    // The hub has identified the liar (it knows its agent) ...
    eventually(Duration::from_secs(20), "the hub sees the liar", || async {
        let (_, v) = fed
            .get(hub, "/v1/federation/peers", Some(&admin))
            .await
            .map_err(|e| e.to_string())?;
        let found = v["peers"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["peer"] == liar_id.as_str() && p["agent"] == agent.as_str())
        });
        Ok(found.then_some(()))
    })
    .await?;
    // ... and the outside node, proven by its delegation, is on its map and reached.
    let overview = eventually(
        Duration::from_secs(30),
        "the Zhengzhou node on the hub's map",
        || async {
            let (s, v) = fed
                .get(hub, "/v1/federation/overview", Some(&admin))
                .await
                .map_err(|e| e.to_string())?;
            if s != 200 {
                return Err(format!("overview answered {s}: {v}"));
            }
            let reached = shown(&v)
                .iter()
                .any(|(zone, name, reachable)| zone == ZHENGZHOU && *name == zz_name && *reachable);
            Ok(reached.then_some(v))
        },
    )
    .await?;

    let nodes = shown(&overview);
    assert!(
        nodes.iter().all(|(_, name, _)| name != "municipal-9"),
        "the liar is on the map: {nodes:?}"
    );
    assert!(
        overview["gossip"]
            .as_array()
            .is_some_and(|links| links.iter().all(|l| l["node"] != "municipal-9")),
        "the liar is linked: {}",
        overview["gossip"]
    );
    let unverified = overview["unverified"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        unverified.iter().any(|u| u["peer"] == liar_id.as_str()),
        "the liar is not listed as unverified: {overview}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the hub asked the liar's API"
    );

    // The peer list says what each peer proved.
    let (_, peers) = fed.get(hub, "/v1/federation/peers", Some(&admin)).await?;
    let entry = |id: &str| {
        peers["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["peer"] == id).cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(entry(&liar_id)["identity"]["verified"], false, "{peers}");
    let zz_address = fed.layout.exchanges[1].zones[0].nodes[0]
        .p2p_addr
        .to_string();
    let zz_id = zz_address.rsplit("/p2p/").next().unwrap_or_default();
    let zz_peer = entry(zz_id);
    assert_eq!(zz_peer["identity"]["verified"], true, "{peers}");
    assert_eq!(zz_peer["identity"]["by"], "delegation", "{peers}");
    assert_eq!(zz_peer["identity"]["zone"], ZHENGZHOU, "{peers}");
    liar.shutdown().await;
    Ok(())
}
