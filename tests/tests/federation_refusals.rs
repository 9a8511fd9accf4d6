//! What an agreement refuses costs the receiving zone little: a partner's key floods Zhengzhou
//! with well-signed listings of a category its agreement refuses. Only a bounded number of
//! refusals is recorded (a burst per signer, then one a second), each as a small record
//! without the envelope, and the peer that keeps delivering them loses gossip score. Whole
//! federation in one process (in-process Raft and gossip).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use xchg_federation_config::layout::LayoutKind;
use xchg_federation_config::{CategorySet, load, read_key_file};
use xchg_node::catalog::{CatalogCommand, cbor_len};
use xchg_node::federation::Proposal;
use xchg_node::federation::Tuning;
use xchg_node::gossip::{Broadcast, Peer, topic_of};
use xchg_protocol::{Envelope, Keypair, Listing, ListingDraft, Timestamp};
use xchg_tests::in_process::Federation;
use xchg_tests::{eventually, example_listing};

/// Zone indices of the two-exchanges layout.
const XUCHANG: usize = 0;
const ZHENGZHOU: usize = 1;
/// Refused listings the partner's key sends.
const FLOOD: usize = 400;

/// A federation where Zhengzhou recognises only `transport` listings from Xuchang.
async fn start() -> anyhow::Result<Federation> {
    Federation::start(LayoutKind::TwoExchanges, 1, Tuning::default(), |zone, c| {
        if zone == "zhengzhou/main" {
            for o in &mut c.outside {
                o.agreement.categories = CategorySet::Only(BTreeSet::from(["transport".into()]));
            }
        }
    })
    .await
}

/// `n` listings of category `credit`, each with a long description, signed by the Xuchang
/// node's key under its delegation.
fn refused_envelopes(fed: &Federation, n: usize) -> anyhow::Result<Vec<Envelope>> {
    let node = &fed.layout.exchanges[0].zones[0].nodes[0];
    let config = load(&fed.layout_dir().join(&node.config), Timestamp::now())?.config;
    let key = read_key_file(&config.node.key_file)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut draft: ListingDraft = serde_json::from_value(example_listing(&format!("{i}")))?;
        draft.category = "credit".into();
        draft.description = "信用".repeat(3_000);
        let listing = Listing::first_version(draft, config.zone.id.clone(), Timestamp::now());
        out.push(Envelope::listing(
            &listing,
            &key,
            config.zone.delegation.clone(),
        ));
    }
    Ok(out)
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many refusals Zhengzhou recorded (every page of `decision=rejected`).
async fn recorded_refusals(fed: &Federation) -> anyhow::Result<usize> {
    let token = fed.zone_tokens(ZHENGZHOU).regulator.clone();
    let mut count = 0;
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/recognitions?decision=rejected&limit=100{cursor}");
        let (s, page) = fed.get(ZHENGZHOU, 0, &path, &token).await?;
        anyhow::ensure!(s == 200, "recognitions: {s} {page}");
        count += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return Ok(count),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_announcements_is_recorded_only_up_to_its_rate_and_costs_the_peer()
-> anyhow::Result<()> {
    let fed = start().await?;
    let zz_token = fed.zone_tokens(ZHENGZHOU).admin.clone();
    // The xuchang listing that Zhengzhou's agreement accepts crosses: gossip works.
    let mut accepted = example_listing("transport");
    accepted["category"] = "transport".into();
    let id = fed.approve_new(XUCHANG, accepted).await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;

    // The flooding peer relays refused announcements signed by Xuchang's (valid) node key.
    let flooder = Keypair::generate();
    let (client, _events) = fed.gossip.join(&flooder.public());
    let topic = topic_of("xuchang");
    client.subscribe(topic.clone()).await?;
    let started = Instant::now();
    for envelope in refused_envelopes(&fed, FLOOD)? {
        client.publish(topic.clone(), envelope.to_bytes()).await?;
    }
    // Judging waits for each recorded refusal's Raft commit, so a loaded machine is slow here
    // (12 s alone, 38-60 s beside other builds): the deadline is for a wedge, not for speed.
    let judged = eventually(Duration::from_secs(240), "every refusal judged", || async {
        let url = format!("http://{}/metrics", fed.zones[ZHENGZHOU][0].api_addr);
        let text = reqwest::get(url)
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let n = ["refused_by_agreement", "refusal_rate_limited"]
            .iter()
            .map(|reason| {
                let line =
                    format!("xchg_gossip_verdicts_total{{verdict=\"ignore\",reason=\"{reason}\"}}");
                metric(&text, &line)
            })
            .sum::<f64>();
        if n >= FLOOD as f64 {
            Ok(Some(n))
        } else {
            Err(format!("{n} of {FLOOD} judged"))
        }
    })
    .await?;
    let elapsed = started.elapsed().as_secs();
    let recorded = recorded_refusals(&fed).await?;
    eprintln!("{judged} refusals judged in {elapsed} s, {recorded} recorded");
    // A burst of 100 per signing key, then one a second.
    let bound = 100 + elapsed as usize + 2;
    assert!(
        recorded <= bound,
        "{recorded} refusals recorded; at most {bound} expected"
    );
    assert!(recorded >= 100, "the burst is recorded: {recorded}");

    // The peer that kept relaying them has paid for it.
    let (_, peers) = fed
        .get(ZHENGZHOU, 0, "/v1/federation/peers", &zz_token)
        .await?;
    let me = Peer(flooder.public().peer_id());
    let score = peers["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == me.0.as_str()))
        .and_then(|p| p["score"].as_f64())
        .unwrap_or(0.0);
    assert!(score < 0.0, "the flooding peer's score is {score}: {peers}");
    fed.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_goes_through_raft_as_a_small_record_without_its_envelope() -> anyhow::Result<()>
{
    let fed = start().await?;
    let envelope = refused_envelopes(&fed, 1)?.remove(0);
    let bytes = envelope.to_bytes();
    assert!(
        bytes.len() > 8_000,
        "a large envelope: {} bytes",
        bytes.len()
    );
    let zz = &fed.zones[ZHENGZHOU][0];
    let judgement = zz
        .federation
        .judge(&bytes, "xuchang", &Peer("some-peer".into()))
        .await?;
    assert_eq!(judgement.reason.as_str(), "refused_by_agreement");
    let Some(Proposal::Refuse(refusal)) = judgement.proposal else {
        panic!("not a refusal record: {judgement:?}");
    };
    assert!(refusal.reason.contains("category credit"), "{refusal:?}");
    let size = cbor_len(&CatalogCommand::RecordRefusal(Box::new(refusal)));
    assert!(size < 1_024, "the Raft command takes {size} bytes");
    fed.shutdown().await;
    Ok(())
}
