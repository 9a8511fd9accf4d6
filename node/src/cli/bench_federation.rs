//! `xchg bench federation`: propagation latency from approval in one zone to recognition
//! committed in every other zone, over a whole generated federation (real processes, libp2p on
//! loopback).
//!
//! The listings are submitted first (not measured), then approved by several concurrent
//! approvers. The clock for a listing starts when its approval is acknowledged (committed and
//! applied in the origin zone). Watchers poll each other zone's `/v1/recognitions` (local
//! replica, newest first) and note when each listing first shows there, committed and applied:
//! the figures include up to one poll interval of observation delay, so they are upper bounds.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use xchg_federation_config::layout::{self, LayoutOptions, LayoutZone};
use xchg_protocol::Timestamp;

use super::args::{BenchFederationArgs, parse_layout};
use super::bench::{Nodes, leader_among, ms, percentile, spawn_node};

struct Bench {
    http: reqwest::Client,
}

impl Bench {
    async fn json(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn leader_of(&self, zone: &LayoutZone, deadline: Instant) -> anyhow::Result<String> {
        let apis: Vec<String> = zone.nodes.iter().map(|n| n.api_url.clone()).collect();
        leader_among(&self.http, &apis, deadline)
            .await
            .ok_or_else(|| anyhow::anyhow!("zone {} elected no leader in time", zone.id))
    }

    /// Submits listing `n` as `zone`'s provider, in the name of the party its token is bound to.
    async fn submit(&self, api: &str, zone: &LayoutZone, n: usize) -> anyhow::Result<String> {
        let token = &zone.tokens.provider;
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = format!("联邦传播压测 federation bench {n}");
        draft.provider.id = zone.provider_party.id.clone();
        draft.provider.name = zone.provider_party.name.clone();
        let (s, v) = self
            .json(
                self.http
                    .post(format!("{api}/v1/listings"))
                    .bearer_auth(token)
                    .json(&draft),
            )
            .await?;
        if s != 201 {
            bail!("submit answered {s}: {v}");
        }
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn approve(&self, api: &str, token: &str, id: &str) -> anyhow::Result<()> {
        let (s, v) = self
            .json(
                self.http
                    .post(format!("{api}/v1/listings/{id}/approve"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({})),
            )
            .await?;
        if s != 200 {
            bail!("approve answered {s}: {v}");
        }
        Ok(())
    }

    /// Recognised listing ids in `api`'s replica newer than `after` (a recognitions seq).
    async fn recognised_since(
        &self,
        api: &str,
        token: &str,
        after: i64,
    ) -> anyhow::Result<(Vec<String>, i64)> {
        let mut ids = Vec::new();
        let mut newest = after;
        let mut cursor: Option<String> = None;
        loop {
            let mut url =
                format!("{api}/v1/recognitions?decision=recognised&limit=20&consistency=local");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (_, page) = self.json(self.http.get(url).bearer_auth(token)).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let mut reached_old = false;
            for item in &items {
                let seq = item["seq"].as_i64().unwrap_or(0);
                if seq <= after {
                    reached_old = true;
                    break;
                }
                newest = newest.max(seq);
                if let Some(id) = item["listing_id"].as_str() {
                    ids.push(id.to_owned());
                }
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if reached_old || cursor.is_none() {
                return Ok((ids, newest));
            }
        }
    }
}

/// Runs the benchmark and prints its figures.
pub async fn federation(opts: BenchFederationArgs) -> anyhow::Result<ExitCode> {
    let kind = parse_layout(&opts.layout)?;
    let poll = Duration::from_millis(opts.poll_ms.max(1));
    let temp = tempfile::tempdir()?;
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("layout");
    let mut lo = LayoutOptions::new(out.clone(), kind);
    lo.base_port = opts.base_port;
    lo.nodes_per_zone = opts.nodes_per_zone;
    let layout = layout::generate(&lo, Timestamp::now()).context("generating the layout")?;
    let zones: Vec<&LayoutZone> = layout.exchanges.iter().flat_map(|e| &e.zones).collect();
    let Some(origin) = zones.iter().find(|z| z.id.as_str() == opts.origin).copied() else {
        bail!("the layout has no zone {}", opts.origin);
    };
    let mut children = Vec::new();
    for z in &zones {
        for n in &z.nodes {
            let log = format!("{}-{}.log", z.id.as_str().replace('/', "-"), n.name);
            children.push(spawn_node(&out.join(&n.config), &dir.join(log))?);
        }
    }
    let _nodes = Nodes(children);
    let bench = Arc::new(Bench {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(30))
            .build()?,
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut leaders = HashMap::new();
    for z in &zones {
        leaders.insert(z.id.to_string(), bench.leader_of(z, deadline).await?);
    }
    let origin_api = leaders[origin.id.as_str()].clone();
    let others: Vec<&LayoutZone> = zones
        .iter()
        .filter(|z| z.id != origin.id)
        .copied()
        .collect();
    outln!(
        "xchg bench federation: {} zones x {} node(s), {} listings approved in {} by {} approvers \
         ({}), watched in {} other zones every {} ms",
        zones.len(),
        opts.nodes_per_zone,
        opts.listings,
        origin.id,
        opts.approvers,
        if opts.rate > 0.0 {
            format!("{} approvals/s", opts.rate)
        } else {
            "unpaced".to_owned()
        },
        others.len(),
        poll.as_millis()
    );

    // Warm-up: one listing must reach every zone before measuring (the gossip mesh forms).
    let warm = bench.submit(&origin_api, origin, usize::MAX).await?;
    bench
        .approve(&origin_api, &origin.tokens.operator, &warm)
        .await?;
    let warm_deadline = Instant::now() + Duration::from_secs(90);
    let mut start_seq: HashMap<String, i64> = HashMap::new();
    for z in &others {
        loop {
            let (ids, newest) = bench
                .recognised_since(&leaders[z.id.as_str()], &z.tokens.regulator, 0)
                .await?;
            if ids.contains(&warm) {
                start_seq.insert(z.id.to_string(), newest);
                break;
            }
            if Instant::now() > warm_deadline {
                bail!("warm-up listing did not reach {} within 90 s", z.id);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    outln!(
        "warm-up listing reached every zone; submitting {} listings",
        opts.listings
    );

    let mut ids = Vec::with_capacity(opts.listings);
    for n in 0..opts.listings {
        ids.push(bench.submit(&origin_api, origin, n).await?);
    }
    let wanted: HashSet<String> = ids.iter().cloned().collect();

    // Watchers, one per other zone.
    let seen: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut watchers = tokio::task::JoinSet::new();
    for z in &others {
        let (bench, seen, stop, wanted) =
            (bench.clone(), seen.clone(), stop.clone(), wanted.clone());
        let api = leaders[z.id.as_str()].clone();
        let token = z.tokens.regulator.clone();
        let zone = z.id.to_string();
        let mut after = start_seq.get(&zone).copied().unwrap_or(0);
        watchers.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((new, newest)) = bench.recognised_since(&api, &token, after).await {
                    let now = Instant::now();
                    after = newest;
                    if let Ok(mut s) = seen.lock() {
                        for id in new.into_iter().filter(|id| wanted.contains(id)) {
                            s.entry((zone.clone(), id)).or_insert(now);
                        }
                    }
                }
                tokio::time::sleep(poll).await;
            }
        });
    }

    // Approvals.
    let approved: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let queue = Arc::new(Mutex::new(
        ids.iter().cloned().enumerate().collect::<Vec<_>>(),
    ));
    let started = Instant::now();
    let rate = opts.rate;
    let mut approvers = tokio::task::JoinSet::new();
    let ids_len = ids.len();
    for _ in 0..opts.approvers.max(1) {
        let (bench, approved, queue) = (bench.clone(), approved.clone(), queue.clone());
        let api = origin_api.clone();
        let token = origin.tokens.operator.clone();
        approvers.spawn(async move {
            loop {
                let Some((k, id)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return Ok::<(), anyhow::Error>(());
                };
                if rate > 0.0 {
                    // Slot k of a steady schedule (the queue pops from the end).
                    let slot = (ids_len - 1 - k) as f64 / rate;
                    tokio::time::sleep_until((started + Duration::from_secs_f64(slot)).into())
                        .await;
                }
                bench.approve(&api, &token, &id).await?;
                if let Ok(mut a) = approved.lock() {
                    a.insert(id, Instant::now());
                }
            }
        });
    }
    while let Some(r) = approvers.join_next().await {
        r??;
    }
    let approve_secs = started.elapsed().as_secs_f64();
    let expected = ids.len() * others.len();
    let wait_until = Instant::now() + Duration::from_secs(120);
    loop {
        let n = seen.lock().map(|s| s.len()).unwrap_or(0);
        if n >= expected || Instant::now() > wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while watchers.join_next().await.is_some() {}

    let approved = approved.lock().map(|a| a.clone()).unwrap_or_default();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut all = Vec::with_capacity(seen.len());
    outln!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "zone",
        "p50 ms",
        "p99 ms",
        "max ms",
        "arrived",
        "missing"
    );
    for z in &others {
        let mut lat: Vec<Duration> = ids
            .iter()
            .filter_map(|id| {
                let at = seen.get(&(z.id.to_string(), id.clone()))?;
                Some(at.saturating_duration_since(*approved.get(id)?))
            })
            .collect();
        lat.sort();
        outln!(
            "{:<24} {:>9.0} {:>9.0} {:>9.0} {:>9} {:>8}",
            z.id.as_str(),
            ms(percentile(&lat, 50.0)),
            ms(percentile(&lat, 99.0)),
            ms(lat.last().copied().unwrap_or_default()),
            lat.len(),
            ids.len() - lat.len()
        );
        all.extend(lat);
    }
    all.sort();
    outln!(
        "{:<24} {:>9.0} {:>9.0} {:>9.0} {:>9} {:>8}",
        "all zones",
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 99.0)),
        ms(all.last().copied().unwrap_or_default()),
        all.len(),
        expected - all.len()
    );
    outln!(
        "approvals: {} in {:.1} s ({:.0}/s); latency = first seen recognised (committed, applied, \
         polled every {} ms) minus approval acknowledged",
        ids.len(),
        approve_secs,
        ids.len() as f64 / approve_secs,
        poll.as_millis()
    );
    if opts.dir.is_some() {
        outln!("layout directory kept: {}", dir.display());
    }
    if all.len() < expected {
        bail!(
            "{} of {expected} recognitions never arrived",
            expected - all.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
