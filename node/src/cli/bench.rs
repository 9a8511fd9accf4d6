//! `xchg bench zone`: a load generator that starts a local 3-node zone (real processes, mutual
//! TLS, fsync-durable SQLite logs), submits listings at several concurrency levels and prints
//! committed listings per second, client latency percentiles, and the leader's own account of
//! where the time went (log appends and their fsyncs, entries per fsync).

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use xchg_federation_config::layout::{self, Layout, LayoutKind, LayoutOptions};
use xchg_protocol::Timestamp;

use super::args::BenchZoneArgs;

/// Child node processes, stopped with SIGTERM (then reaped) when dropped.
pub(crate) struct Nodes(pub(crate) Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Sums of the leader's counters, read from `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    fsyncs: f64,
    append_seconds: f64,
    writes: f64,
    write_seconds: f64,
    applies: f64,
    apply_seconds: f64,
    applied: f64,
}

/// CPU time and bytes sent to storage by one process so far, from `/proc` (Linux; zeros where
/// it cannot be read).
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    cpu_seconds: f64,
    disk_bytes: f64,
}

fn usage(pid: u32) -> Usage {
    // `/proc/<pid>/stat`: after the command name in parentheses come the fields from the
    // third on; utime and stime are the 14th and 15th, in clock ticks (100 per second).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0);
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let disk_bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    Usage {
        cpu_seconds: ticks / 100.0,
        disk_bytes,
    }
}

fn usages(pids: &[u32]) -> Vec<Usage> {
    pids.iter().map(|&p| usage(p)).collect()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn counters(http: &reqwest::Client, api: &str) -> anyhow::Result<Counters> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(Counters {
        fsyncs: metric(&text, "xchg_log_append_duration_seconds_count"),
        append_seconds: metric(&text, "xchg_log_append_duration_seconds_sum"),
        writes: metric(&text, "xchg_write_duration_seconds_count"),
        write_seconds: metric(&text, "xchg_write_duration_seconds_sum"),
        applies: metric(&text, "xchg_apply_batch_duration_seconds_count"),
        apply_seconds: metric(&text, "xchg_apply_batch_duration_seconds_sum"),
        applied: metric(&text, "xchg_applied_commands_total"),
    })
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Who submits: the zone's provider token and the party it is bound to.
#[derive(Clone)]
struct Submitter {
    token: String,
    party: xchg_federation_config::layout::LayoutParty,
}

/// The API's example listing (the protocol's credit-verification draft) with a distinct title,
/// in the name of the party the provider token is bound to (it lists for no other).
fn body(
    n: usize,
    client: usize,
    party: &xchg_federation_config::layout::LayoutParty,
) -> xchg_protocol::ListingDraft {
    let mut draft = xchg_protocol::vectors::credit_draft();
    draft.title = format!("压测数据产品 bench listing {client}-{n}");
    draft.provider.id = party.id.clone();
    draft.provider.name = party.name.clone();
    draft
}

/// One concurrency level's results.
struct Level {
    clients: usize,
    done: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    before: Counters,
    after: Counters,
    /// Per process of `pids` (the nodes, then this load generator), before and after.
    usage: Vec<(Usage, Usage)>,
}

async fn run_level(
    http: &reqwest::Client,
    targets: &[String],
    leader_api: &str,
    submitter: &Submitter,
    clients: usize,
    seconds: u64,
    pids: &[u32],
) -> anyhow::Result<Level> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, targets, submitter, stop, measuring) = (
            http.clone(),
            targets.to_vec(),
            submitter.clone(),
            stop.clone(),
            measuring.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = format!("{}/v1/listings", targets[(c + n) % targets.len()]);
                let started = Instant::now();
                let ok = match http
                    .post(url)
                    .bearer_auth(&submitter.token)
                    .json(&body(n, c, &submitter.party))
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16() == 201,
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = counters(http, leader_api).await?;
    let usage_before = usages(pids);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let usage_after = usages(pids);
    let after = counters(http, leader_api).await?;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, e) = r?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    Ok(Level {
        clients,
        done: latencies.len(),
        errors,
        elapsed,
        latencies,
        before,
        after,
        usage: usage_before.into_iter().zip(usage_after).collect(),
    })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn start_zone(
    dir: &Path,
    base_port: u16,
    snapshot_log_percent: Option<u64>,
) -> anyhow::Result<(Layout, Nodes)> {
    let out = dir.join("layout");
    let mut opts = LayoutOptions::new(out.clone(), LayoutKind::SingleZone);
    opts.base_port = base_port;
    if let Some(percent) = snapshot_log_percent {
        opts.raft.snapshot_log_percent = percent;
    }
    let layout = layout::generate(&opts, Timestamp::now()).context("generating the bench zone")?;
    let mut children = Vec::new();
    for node in &layout.exchanges[0].zones[0].nodes {
        children.push(spawn_node(
            &out.join(&node.config),
            &dir.join(format!("{}.log", node.name)),
        )?);
    }
    Ok((layout, Nodes(children)))
}

/// The API URL of whichever of `apis` says it leads its zone, polled until `deadline`.
pub(crate) async fn leader_among(
    http: &reqwest::Client,
    apis: &[String],
    deadline: Instant,
) -> Option<String> {
    loop {
        for api in apis {
            if let Ok(r) = http.get(format!("{api}/v1/status")).send().await
                && let Ok(s) = r.json::<Value>().await
                && s["role"] == "leader"
            {
                return Some(api.clone());
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `xchg run --config CONFIG` (this executable), logging warnings and the snapshots it
/// builds (with their timings) to `log`.
pub(crate) fn spawn_node(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Ok(Command::new(std::env::current_exe()?)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn,xchg_node::store::state_machine=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// Runs the zone benchmark and prints its table.
pub async fn zone(opts: BenchZoneArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir()?;
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let (layout, nodes) = start_zone(&dir, opts.base_port, opts.snapshot_log_percent)?;
    let zone = &layout.exchanges[0].zones[0];
    let apis: Vec<String> = zone.nodes.iter().map(|n| n.api_url.clone()).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let Some(leader_api) = leader_among(&http, &apis, deadline).await else {
        bail!(
            "the bench zone elected no leader within 60 s; logs in {}",
            dir.display()
        );
    };
    let targets = match opts.target.as_str() {
        "leader" => vec![leader_api.clone()],
        "all" => apis.clone(),
        other => bail!("--target must be leader or all, not {other:?}"),
    };
    // The leader first, then the followers, then this load generator.
    let mut pids: Vec<u32> = Vec::new();
    for (api, child) in apis.iter().zip(&nodes.0) {
        if *api == leader_api {
            pids.insert(0, child.id());
        } else {
            pids.push(child.id());
        }
    }
    pids.push(std::process::id());
    let mut levels = Vec::new();
    outln!(
        "xchg bench zone: 3 nodes on loopback, mutual TLS, SQLite WAL synchronous=FULL for the log; \
         {} s per level; requests to {}; raft.snapshot_log_percent {}",
        opts.seconds,
        opts.target,
        opts.snapshot_log_percent
            .map_or_else(|| "as generated".to_owned(), |p| p.to_string())
    );
    outln!(
        "{:>7} {:>10} {:>9} {:>9} {:>9} {:>7} | {:>9} {:>13} {:>9} {:>13} {:>8} {:>9}",
        "clients",
        "listings/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "fsyncs/s",
        "writes/fsync",
        "append ms",
        "writes/apply",
        "apply ms",
        "server ms"
    );
    for &clients in &opts.clients {
        let l = run_level(
            &http,
            &targets,
            &leader_api,
            &Submitter {
                token: zone.tokens.provider.clone(),
                party: zone.provider_party.clone(),
            },
            clients,
            opts.seconds,
            &pids,
        )
        .await?;
        let secs = l.elapsed.as_secs_f64();
        let fsyncs = l.after.fsyncs - l.before.fsyncs;
        let append_ms = if fsyncs > 0.0 {
            1000.0 * (l.after.append_seconds - l.before.append_seconds) / fsyncs
        } else {
            0.0
        };
        let applies = l.after.applies - l.before.applies;
        let per_apply = if applies > 0.0 {
            (l.after.applied - l.before.applied) / applies
        } else {
            0.0
        };
        let apply_ms = if applies > 0.0 {
            1000.0 * (l.after.apply_seconds - l.before.apply_seconds) / applies
        } else {
            0.0
        };
        let writes = l.after.writes - l.before.writes;
        let server_ms = if writes > 0.0 {
            1000.0 * (l.after.write_seconds - l.before.write_seconds) / writes
        } else {
            0.0
        };
        outln!(
            "{:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} | {:>9.0} {:>13.1} {:>9.2} {:>13.1} {:>8.2} {:>9.2}",
            l.clients,
            l.done as f64 / secs,
            ms(percentile(&l.latencies, 50.0)),
            ms(percentile(&l.latencies, 99.0)),
            ms(l.latencies.last().copied().unwrap_or_default()),
            l.errors,
            fsyncs / secs,
            if fsyncs > 0.0 {
                l.done as f64 / fsyncs
            } else {
                0.0
            },
            append_ms,
            per_apply,
            apply_ms,
            server_ms,
        );
        levels.push(l);
    }
    outln!(
        "fsyncs/s and append ms: the leader's Raft log appends (each one SQLite commit with fsync); \
         writes/fsync: client writes acknowledged per leader fsync; writes/apply and apply ms: the \
         leader's state-machine transactions; server ms: the leader's mean time from a write's \
         arrival to its applied response."
    );
    outln!();
    outln!(
        "{:>7} | {:>27} | {:>27}",
        "",
        "CPU µs per listing",
        "storage KiB per listing"
    );
    outln!(
        "{:>7} | {:>8} {:>8} {:>9} | {:>8} {:>8} {:>9}",
        "clients",
        "leader",
        "follower",
        "load gen",
        "leader",
        "follower",
        "load gen"
    );
    for l in &levels {
        let per = |i: usize, f: fn(&Usage) -> f64| {
            l.usage
                .get(i)
                .map_or(0.0, |(b, a)| (f(a) - f(b)) / l.done.max(1) as f64)
        };
        let followers = |f: fn(&Usage) -> f64| {
            let n = l.usage.len().saturating_sub(2).max(1);
            (1..=n).map(|i| per(i, f)).sum::<f64>() / n as f64
        };
        let cpu = |u: &Usage| u.cpu_seconds * 1e6;
        let disk = |u: &Usage| u.disk_bytes / 1024.0;
        let last = l.usage.len().saturating_sub(1);
        outln!(
            "{:>7} | {:>8.0} {:>8.0} {:>9.0} | {:>8.1} {:>8.1} {:>9.1}",
            l.clients,
            per(0, cpu),
            followers(cpu),
            per(last, cpu),
            per(0, disk),
            followers(disk),
            per(last, disk),
        );
    }
    outln!(
        "CPU: user+system time of each process during the measured seconds (follower: the mean of \
         the two); storage: bytes each process sent to the disk (/proc/<pid>/io write_bytes), \
         both divided by the listings committed."
    );
    if opts.dir.is_some() {
        outln!("zone directory kept: {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
