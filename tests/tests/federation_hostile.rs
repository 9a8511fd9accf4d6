//! A hostile libp2p peer joins the gossip between two exchanges (real node processes) and
//! publishes tampered, unsigned, wrongly delegated, expired, oversized and too deeply nested
//! announcements. None is recorded anywhere, the peer's gossip score drops below zero, and an
//! honest listing published meanwhile still crosses within 5 s. Then a node key is "stolen":
//! its exchange revokes it with a root-signed revocation, and a well-formed listing signed with
//! the stolen key afterwards is refused at the other exchange (`revoked_key`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xchg_federation_config::{load, read_key_file};
use xchg_node::gossip::swarm::{self, SwarmConfig};
use xchg_node::gossip::{Broadcast, topic_of};
use xchg_protocol::{
    Delegation, Envelope, Keypair, Listing, Revocation, Signature, SignedDelegation, Timestamp,
};
use xchg_tests::{Zone, eventually, example_listing};

const XUCHANG: &str = "xuchang/municipal";
const ZHENGZHOU: &str = "zhengzhou/main";

/// The bad messages, each with what a receiver must say about it (PROTOCOL.md 7.4).
fn hostile_messages(
    fed: &Zone,
    xu_node: usize,
) -> anyhow::Result<Vec<(&'static str, &'static str, Vec<u8>)>> {
    let config = load(&fed.nodes[xu_node].config, Timestamp::now())?.config;
    let key = read_key_file(&config.node.key_file)?;
    let root_path = fed.dir.path().join("layout/root/xuchang-root.key");
    let root = read_key_file(&root_path)?;
    let mut draft: xchg_protocol::ListingDraft =
        serde_json::from_value(example_listing("hostile"))?;
    draft.title = "hostile forged listing".into();
    let listing = Listing::first_version(draft, config.zone.id.clone(), Timestamp::now());
    let good = Envelope::listing(&listing, &key, config.zone.delegation.clone());

    let mut tampered = good.clone();
    if let Some(b) = tampered
        .body
        .iter_mut()
        .rev()
        .find(|b| b.is_ascii_lowercase())
    {
        *b = b.to_ascii_uppercase();
    }
    let mut unsigned = good.clone();
    unsigned.signature = Signature([0; 64]);

    // A delegation naming Xuchang's root but signed by some other key.
    let impostor = Keypair::generate();
    let mut wrong = config.zone.delegation.clone();
    wrong.signature = SignedDelegation::sign(wrong.delegation.clone(), &impostor).signature;
    let wrongly_delegated = Envelope::listing(&listing, &key, wrong);

    // A real root signature over a window that has ended.
    let now = Timestamp::now().0;
    let expired_delegation = SignedDelegation::sign(
        Delegation {
            not_before: Timestamp(now - 2 * 86_400_000),
            not_after: Timestamp(now - 86_400_000),
            ..config.zone.delegation.delegation.clone()
        },
        &root,
    );
    let expired = Envelope::listing(&listing, &key, expired_delegation);

    let oversized = vec![0x40; 300 * 1024];
    let mut deep = vec![0x81u8; 40];
    deep.push(0x00);

    Ok(vec![
        ("tampered", "bad_signature", tampered.to_bytes()),
        ("unsigned", "bad_signature", unsigned.to_bytes()),
        (
            "wrongly delegated",
            "bad_delegation_signature",
            wrongly_delegated.to_bytes(),
        ),
        ("expired", "delegation_expired", expired.to_bytes()),
        ("too deep", "too_deep", deep),
        // Last: its frame can break the gossip stream it travels on.
        ("oversized", "too_large", oversized),
    ])
}

/// Each bad message's name, kind and the content id it claims (`None` for raw bytes).
fn hostile_ids(
    messages: &[(&'static str, &'static str, Vec<u8>)],
) -> Vec<(&'static str, &'static str, Option<String>)> {
    messages
        .iter()
        .map(|(what, kind, bytes)| {
            let id = if raw(what) {
                None
            } else {
                xchg_protocol::canonical::from_canonical::<Envelope>(
                    bytes,
                    &xchg_protocol::Limits::default(),
                )
                .ok()
                .map(|e| e.id.to_string())
            };
            (*what, *kind, id)
        })
        .collect()
}

/// Whether the message is raw bytes (not a signed envelope), which a resend can vary.
fn raw(what: &str) -> bool {
    matches!(what, "oversized" | "too deep")
}

/// `bytes` as sent after `sent` earlier sends: the message itself the first time; a resend of a
/// raw message differs in its last byte, since the sender's gossip refuses to publish the same
/// bytes twice (its duplicate cache). Signed envelopes are sent once.
fn variant(bytes: &[u8], what: &str, sent: u8) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    if sent > 0 && raw(what) {
        bytes.push(sent);
    }
    bytes
}

/// How many announcements node `i` has judged for `reason`.
async fn verdicts(fed: &Zone, i: usize, reason: &str) -> anyhow::Result<f64> {
    let text = metrics_text(fed, i).await?;
    Ok(["accept", "reject", "ignore"]
        .iter()
        .map(|verdict| {
            let line =
                format!("xchg_gossip_verdicts_total{{verdict=\"{verdict}\",reason=\"{reason}\"}}");
            metric(&text, &line)
        })
        .sum())
}

/// Node `i`'s `/metrics` page.
async fn metrics_text(fed: &Zone, i: usize) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("{}/metrics", fed.nodes[i].api_url))
        .await?
        .text()
        .await?)
}

/// Whether `client` sees the node named `node` (by its identify agent) subscribe to `topic`.
async fn subscribed(client: &swarm::Client, node: &str, topic: &str) -> bool {
    client.peers().await.iter().any(|p| {
        p.agent
            .as_deref()
            .is_some_and(|a| a.split(' ').any(|word| word == node))
            && p.topics.iter().any(|t| t == topic)
    })
}

async fn peer_score(fed: &Zone, i: usize, token: &str, peer: &str) -> anyhow::Result<Option<f64>> {
    let (_, v) = fed.get(i, "/v1/federation/peers", Some(token)).await?;
    Ok(v["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == peer))
        .and_then(|p| p["score"].as_f64()))
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_refused_and_penalised_while_honest_listings_cross() -> anyhow::Result<()>
{
    let mut fed = Zone::generate("two-exchanges", 1)?;
    fed.start_all()?;
    let xu = fed.zone_nodes(XUCHANG)[0];
    let zz = fed.zone_nodes(ZHENGZHOU)[0];
    let xt = fed.zone_tokens(XUCHANG).clone();
    let zt = fed.zone_tokens(ZHENGZHOU).clone();
    fed.wait_for_leader(xu, Duration::from_secs(30)).await?;
    fed.wait_for_leader(zz, Duration::from_secs(30)).await?;
    let warm = fed
        .approve_new(xu, &xt, &example_listing("warm-up"))
        .await?;
    fed.wait_for_state(
        &[zz],
        &zt.regulator,
        &warm,
        "recognised",
        Duration::from_secs(60),
    )
    .await?;

    // The hostile peer: a fresh key, dialling both nodes, on Xuchang's topic.
    let layout = &fed.layout;
    let addrs: Vec<_> = layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| &z.nodes)
        .map(|n| n.p2p_addr.clone())
        .collect();
    let mut sc = SwarmConfig::new(Keypair::generate(), "hostile/0.0");
    sc.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    sc.bootstrap = addrs;
    let (hostile, _events) = swarm::spawn(sc).await?;
    let topic = topic_of("xuchang");
    hostile.subscribe(topic.clone()).await?;
    let me = hostile.local_peer().0;
    eventually(
        Duration::from_secs(20),
        "the hostile peer is connected",
        || async {
            let seen = peer_score(&fed, zz, &zt.admin, &me)
                .await
                .map_err(|e| e.to_string())?;
            Ok(seen.map(|_| ()))
        },
    )
    .await?;
    // Each bad message is sent straight to the Zhengzhou node (flood publishing reaches every
    // subscriber the sender knows of, and the others do not forward what they reject), once
    // the sender sees that node subscribe, and waited for until that node has judged it. Each
    // kind should count once against the peer's score: five rejects put it at -125, and past
    // -80 the node drops the peer's messages unread. The oversized message goes last, as its
    // frame can break the stream; it alone is sent again (varied) if no verdict comes.
    let zz_name = fed.nodes[zz].name.clone();
    let messages = hostile_messages(&fed, xu)?;
    for (what, reason, bytes) in messages.clone() {
        let judged = verdicts(&fed, zz, reason).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sent = 0u8;
        'sending: loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{zz_name} never judged the {what} message (sent {sent} times)"
            );
            eventually(
                Duration::from_secs(20),
                &format!("the hostile peer to see {zz_name} subscribe"),
                || async { Ok(subscribed(&hostile, &zz_name, &topic).await.then_some(())) },
            )
            .await?;
            if let Err(e) = hostile
                .publish_unchecked(topic.clone(), variant(&bytes, what, sent))
                .await
            {
                eprintln!("publishing the {what} message: {e}; again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            sent += 1;
            // A verdict comes within milliseconds; a raw message is taken as lost, and sent
            // again, only after a long silence (a copy judged twice would count twice).
            let resend = if raw(what) {
                (Instant::now() + Duration::from_secs(3)).min(deadline)
            } else {
                deadline
            };
            while Instant::now() < resend {
                if verdicts(&fed, zz, reason).await.is_ok_and(|n| n > judged) {
                    break 'sending;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // The attack goes on (a stream of fresh undecodable messages) while an honest listing
    // still crosses within 5 s.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (hostile, topic, flooding) = (hostile.clone(), topic.clone(), flooding.clone());
        tokio::spawn(async move {
            let mut sent = 0u32;
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            while flooding.load(Ordering::Relaxed) {
                pace.tick().await;
                let mut deep = vec![0x81u8; 40];
                deep.extend_from_slice(&sent.to_be_bytes());
                if hostile.publish_unchecked(topic.clone(), deep).await.is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    let honest = fed
        .approve_new(xu, &xt, &example_listing("honest, during the attack"))
        .await?;
    let approved = Instant::now();
    fed.wait_for_state(
        &[zz],
        &zt.regulator,
        &honest,
        "recognised",
        Duration::from_secs(5),
    )
    .await?;
    eprintln!(
        "honest listing recognised {:?} after approval",
        approved.elapsed()
    );
    flooding.store(false, Ordering::Relaxed);
    let sent = flood.await?;
    assert!(sent > 0, "the flood ran during the honest approval");

    // The peer is penalised: its score at the receiving node drops below zero.
    let score = eventually(Duration::from_secs(20), "a negative score", || async {
        let s = peer_score(&fed, zz, &zt.admin, &me)
            .await
            .map_err(|e| e.to_string())?;
        Ok(s.filter(|s| *s < 0.0))
    })
    .await?;
    eprintln!("hostile peer score at {}: {score}", fed.nodes[zz].name);

    // Every bad message was judged and none recorded: only the two honest listings crossed.
    let metrics = metrics_text(&fed, zz).await?;
    let rejected = metric(&metrics, "xchg_gossip_verdicts_total{verdict=\"reject\"");
    assert!(rejected >= 5.0, "rejections counted: {rejected}\n{metrics}");
    // Each is in the node's verdict journal, found by the id its sender knows: the envelope's
    // content id, or for bytes that are no envelope the SHA-256 of the message.
    for (what, kind, id) in hostile_ids(&messages) {
        let query = match &id {
            Some(id) => format!("content_id={id}"),
            None => format!("kind={kind}&peer={me}"),
        };
        let (s, page) = fed
            .get(
                zz,
                &format!("/v1/federation/verdicts?{query}"),
                Some(&zt.admin),
            )
            .await?;
        assert_eq!(s, 200, "{page}");
        let found = page["items"].as_array().cloned().unwrap_or_default();
        assert!(
            found
                .iter()
                .any(|v| v["kind"] == kind && v["peer"] == me.as_str()),
            "the {what} message is not in the verdict journal as {kind}: {page}"
        );
    }
    // Each kind of forgery was judged for what it is.
    for (verdict, reason) in [
        ("reject", "bad_signature"),
        ("reject", "bad_delegation_signature"),
        ("ignore", "delegation_expired"),
        ("reject", "too_large"),
        ("reject", "too_deep"),
    ] {
        let line =
            format!("xchg_gossip_verdicts_total{{verdict=\"{verdict}\",reason=\"{reason}\"}}");
        assert!(
            metric(&metrics, &line) >= 1.0,
            "no {reason} counted:\n{metrics}"
        );
    }
    let (_, recognitions) = fed
        .get(zz, "/v1/recognitions?limit=100", Some(&zt.regulator))
        .await?;
    let items = recognitions["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "{recognitions}");
    let (_, found) = fed
        .get(
            zz,
            "/v1/listings?q=forged&consistency=local",
            Some(&zt.regulator),
        )
        .await?;
    assert_eq!(found["total"], 0, "{found}");

    // The Xuchang node's key is stolen; its exchange revokes it (root-signed, offline) and the
    // revocation reaches Zhengzhou. Later announcements signed with the key are refused there,
    // however well formed.
    let config = load(&fed.nodes[xu].config, Timestamp::now())?.config;
    let stolen = read_key_file(&config.node.key_file)?;
    let root = read_key_file(&fed.dir.path().join("layout/root/xuchang-root.key"))?;
    let revocation = Envelope::revocation(
        &Revocation {
            exchange: "xuchang".parse()?,
            key: stolen.public(),
            reason: "node key stolen".into(),
            revoked_at: Timestamp::now(),
        },
        &root,
    );
    // Bytes are lowercase hex in JSON (PROTOCOL.md 2.10).
    let hex: String = revocation
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = serde_json::json!({ "envelope": hex });
    let (s, v) = fed
        .post(xu, "/v1/federation/revocations", &xt.admin, &body)
        .await?;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["key"], stolen.public().to_string().as_str(), "{v}");
    eventually(
        Duration::from_secs(10),
        "the revocation reaches Zhengzhou",
        || async {
            let (_, page) = fed
                .get(zz, "/v1/recognitions?decision=revoked", Some(&zt.regulator))
                .await
                .map_err(|e| e.to_string())?;
            Ok(page["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|r| r["reason"] == "node key stolen"))
                .then_some(()))
        },
    )
    .await?;
    let mut draft: xchg_protocol::ListingDraft =
        serde_json::from_value(example_listing("signed with a revoked key"))?;
    draft.title = "stolen key listing".into();
    let listing = Listing::first_version(draft, config.zone.id.clone(), Timestamp::now());
    let forged = Envelope::listing(&listing, &stolen, config.zone.delegation.clone());
    // The hostile peer is graylisted by now (its messages are dropped unseen), so the thief
    // uses a fresh peer.
    let mut sc = SwarmConfig::new(Keypair::generate(), "thief/0.0");
    sc.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    sc.bootstrap = vec![fed.layout.exchanges[1].zones[0].nodes[0].p2p_addr.clone()];
    let (thief, _thief_events) = swarm::spawn(sc).await?;
    thief.subscribe(topic.clone()).await?;
    let forged = forged.to_bytes();
    eventually(Duration::from_secs(30), "the thief publishes", || async {
        if !subscribed(&thief, &zz_name, &topic).await {
            let peers: Vec<String> = thief
                .peers()
                .await
                .into_iter()
                .map(|p| format!("{} {:?} {:?}", p.peer, p.agent, p.topics))
                .collect();
            return Err(format!(
                "the thief does not see {zz_name} subscribe; its peers: {peers:?}"
            ));
        }
        match thief.publish_unchecked(topic.clone(), forged.clone()).await {
            Ok(()) => Ok(Some(())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    eventually(
        Duration::from_secs(10),
        "the revoked key refused",
        || async {
            let text = metrics_text(&fed, zz).await.map_err(|e| e.to_string())?;
            let prefix = "xchg_gossip_verdicts_total{verdict=\"ignore\",reason=\"revoked_key\"}";
            Ok((metric(&text, prefix) >= 1.0).then_some(()))
        },
    )
    .await?;
    let id = listing.id().to_string();
    assert_eq!(fed.state_on(zz, &zt.regulator, &id).await?, None);
    thief.shutdown().await;
    hostile.shutdown().await;
    Ok(())
}
