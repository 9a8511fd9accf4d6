//! One run: start the federation, play the schedule (faults and client operations) through the
//! chaos phase, heal, wait for convergence, check every invariant, and report.
//!
//! What is deterministic: the schedule and the workload (a pure function of the seed and
//! options, shown by its digest), the transports' fault draws per link (seeded), and the
//! federation cores' random choices (seeded). What is not: the interleaving of the nodes'
//! tasks on a multi-threaded runtime and the wall clock they stamp commands with, so two runs of
//! one seed play the same schedule but not byte for byte the same execution.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;
use xchg_federation_config::layout::LayoutKind;
use xchg_node::fault::Delay;
use xchg_node::gossip::{Broadcast as _, Event, Verdict, topic_of};
use xchg_protocol::Keypair;

use crate::cluster::Cluster;
use crate::invariants::{self, Check, Leaders};
use crate::scenario::{Fault, Op, Options, Schedule, spare_key};
use crate::svg;
use crate::workload::{Clients, Outcome, Record, listing_body};

/// How often the leaders are sampled (invariant 3).
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Client operations by outcome.
    pub operations: BTreeMap<String, u64>,
    /// Latency of acknowledged submissions, per zone: p50, p99 and max in ms.
    pub commit_latency_ms: BTreeMap<String, Latency>,
    /// How long after the faults ended the federation converged, in ms (`None`: not within the
    /// deadline).
    pub convergence_ms: Option<u64>,
    /// Gossip messages a listening peer saw (each once).
    pub gossip_messages: u64,
    /// Gossip messages that landed at a peer, over every peer (the in-process network floods:
    /// each peer is sent each message once, where gossipsub's mesh sends it a few times).
    pub gossip_deliveries: u64,
    /// From a listing's approval acknowledged at its origin to its recognition in another
    /// zone, over every (listing, zone) pair: p50, p99 and max in ms (`None`: none).
    pub recognition_latency_ms: Option<Latency>,
    /// Gossip deliveries per listing approved, every kind of message counted (`None`: none
    /// approved).
    pub messages_per_listing: Option<f64>,
}

/// The values behind the figures, for the charts.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Commit latency of each acknowledged submission, per zone, ms.
    pub commit: BTreeMap<String, Vec<u64>>,
    /// Propagation latency of each (listing, other zone) pair, ms.
    pub propagation: Vec<u64>,
}

/// A latency distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// How many.
    pub count: usize,
}

/// What `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The options, derived ones included.
    pub options: Options,
    /// SHA-256 of the schedule.
    pub schedule_digest: String,
    /// Faults scheduled.
    pub faults: usize,
    /// Operations scheduled.
    pub operations: usize,
    /// The figures.
    pub figures: Figures,
    /// One entry per invariant.
    pub invariants: Vec<Check>,
    /// The command that repeats this run.
    pub reproduce: String,
    /// The values the charts draw (not in `report.json`).
    #[serde(skip)]
    pub samples: Samples,
    /// Every client operation, in invocation order (written to `history.json`).
    #[serde(skip)]
    pub history: Vec<Record>,
    /// The schedule played (written to `schedule.json`).
    #[serde(skip)]
    pub schedule: Schedule,
}

impl Report {
    /// Whether every invariant held.
    pub fn held(&self) -> bool {
        self.invariants.iter().all(|c| c.held)
    }
}

/// The command line that repeats a run of `options`.
pub fn reproduce(options: &Options) -> String {
    if let (crate::scenario::Scenario::Scale, LayoutKind::Mesh { exchanges }) =
        (options.scenario, options.layout)
    {
        return format!(
            "cargo run -p xchg-simulations --release -- scale --exchanges {exchanges} --seed {} --duration {}s --nodes-per-zone {} --rate {}",
            options.seed,
            options.duration.as_secs(),
            options.nodes_per_zone,
            options.rate
        );
    }
    format!(
        "cargo run -p xchg-simulations --release -- {} --seed {} --duration {}s --layout {} --nodes-per-zone {} --rate {}",
        options.scenario.as_str(),
        options.seed,
        options.duration.as_secs(),
        options.layout,
        options.nodes_per_zone,
        options.rate
    )
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

/// Runs `options` and writes the report to `out`.
///
/// # Errors
/// If the federation cannot start or the report cannot be written; invariants that fail are
/// part of the report, not errors.
pub async fn run(options: &Options, out: &Path) -> anyhow::Result<Report> {
    let schedule = Schedule::generate(options);
    let digest = schedule.digest();
    println!(
        "xchg-sim {}: seed {}, {} s of chaos on {} ({} nodes per zone), {} faults, {} operations, schedule {}",
        options.scenario.as_str(),
        options.seed,
        options.duration.as_secs(),
        options.layout,
        options.nodes_per_zone,
        schedule.faults.len(),
        schedule.ops.len(),
        &digest[..16]
    );
    let mut cluster = Cluster::start(options.layout, options.nodes_per_zone, options.seed).await?;
    wait_for_leaders(&cluster, Duration::from_secs(60)).await?;
    println!(
        "  {} nodes running, every zone has a leader; chaos for {} s",
        cluster.nodes.len(),
        options.duration.as_secs()
    );
    let messages = listen(&cluster).await;
    let start = Instant::now();
    let start_wall_ms = xchg_protocol::Timestamp::now().0;
    let clients = Clients::new(start)?;
    let mut leaders = Leaders::default();
    let mut running: JoinSet<Record> = JoinSet::new();
    let mut crashed_leaders: Vec<(Instant, usize)> = Vec::new();
    let mut faults = schedule.faults.iter().peekable();
    let mut ops = schedule.ops.iter().peekable();
    loop {
        let next = match (faults.peek(), ops.peek()) {
            (None, None) => break,
            (Some(f), Some(o)) => f.at_ms.min(o.at_ms),
            (Some(f), None) => f.at_ms,
            (None, Some(o)) => o.at_ms,
        };
        let due = start + Duration::from_millis(next);
        while Instant::now() < due {
            leaders.sample(&cluster);
            for i in take_due(&mut crashed_leaders) {
                cluster.restart(i).await?;
            }
            tokio::time::sleep(SAMPLE_EVERY.min(due.saturating_duration_since(Instant::now())))
                .await;
        }
        if faults.peek().is_some_and(|f| f.at_ms == next) {
            if let Some(f) = faults.next() {
                apply(&mut cluster, &f.what, &mut crashed_leaders).await?;
            }
            continue;
        }
        if let Some(o) = ops.next() {
            let (url, token, body) = request_of(&cluster, &o.what);
            let clients = clients.clone();
            let op = o.what.clone();
            running.spawn(async move { clients.run(op, url, &token, body).await });
        }
    }
    while Instant::now() < start + options.duration {
        leaders.sample(&cluster);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }

    // Heal: every fault ends, every node runs.
    println!(
        "  healing: every fault ends; converging (at most {} s)",
        options.heal_deadline.as_secs()
    );
    let healed = Instant::now();
    cluster.heal_all();
    for i in 0..cluster.nodes.len() {
        cluster.restart(i).await?;
    }
    let mut history = Vec::new();
    while let Some(done) = running.join_next().await {
        if let Ok(r) = done {
            history.push(r);
        }
    }
    history.sort_by_key(|r| r.invoked_us);
    let ids = clients.ids();
    let converged = converge(
        &cluster,
        &mut leaders,
        &history,
        &ids,
        options.heal_deadline,
    )
    .await;
    let convergence_ms =
        converged.then(|| u64::try_from(healed.elapsed().as_millis()).unwrap_or(u64::MAX));

    match convergence_ms {
        Some(ms) => println!("  converged {ms} ms after the faults ended; checking invariants"),
        None => println!("  did not converge within the deadline; checking invariants"),
    }
    let seen = messages.lock().map(|m| m.clone()).unwrap_or_default();
    let mut checks = vec![
        invariants::acknowledged_writes(&cluster, &history, &ids).await,
        invariants::zone_agreement(&cluster).await,
        leaders.check(&cluster),
        invariants::export_firewall(&cluster, &history, &ids, &seen).await,
    ];
    let mut unrecognised = invariants::recognition(&cluster, &history, &ids).await;
    unrecognised.extend(invariants::revocations(&cluster, &history).await);
    let revoked = history
        .iter()
        .filter(|r| matches!((&r.op, &r.outcome), (Op::Revoke { .. }, Outcome::Ok(_))))
        .count();
    checks.push(Check {
        name: "recognition_convergence",
        held: unrecognised.is_empty(),
        detail: unrecognised
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{} listings, {revoked} key revocations", ids.len())),
    });
    checks.push(invariants::audit_chains(&cluster).await);
    checks.push(invariants::liveness(&cluster, converged).await);
    checks.push(invariants::linearizable(&history));

    let propagation = propagation(&cluster, &history, &ids, start_wall_ms).await;
    let (figures, samples) = figures(
        &cluster,
        &history,
        convergence_ms,
        (seen.len() as u64, cluster.gossip.deliveries()),
        propagation,
    );
    let report = Report {
        scenario: options.scenario.as_str().to_owned(),
        seed: options.seed,
        options: options.clone(),
        schedule_digest: digest,
        faults: schedule.faults.len(),
        operations: schedule.ops.len(),
        figures,
        invariants: checks,
        reproduce: reproduce(options),
        samples,
        history,
        schedule,
    };
    cluster.shutdown().await;
    write(&report, out)?;
    Ok(report)
}

fn take_due(crashed: &mut Vec<(Instant, usize)>) -> Vec<usize> {
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = crashed.drain(..).partition(|(at, _)| *at <= now);
    *crashed = later;
    due.into_iter().map(|(_, i)| i).collect()
}

async fn wait_for_leaders(cluster: &Cluster, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    while (0..cluster.zones.len()).any(|z| cluster.leader_of(z).is_none()) {
        anyhow::ensure!(
            Instant::now() < until,
            "not every zone elected a leader within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A peer on the gossip network that subscribes to every exchange's topic and keeps what it
/// sees (for the export firewall's check), judging nothing.
async fn listen(cluster: &Cluster) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (client, mut events) = cluster.gossip.join(&Keypair::generate().public());
    for e in &cluster.layout.exchanges {
        let _ = client.subscribe(topic_of(e.id.as_str())).await;
    }
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Message(m) = event {
                client.report(m.reference, Verdict::Ignore);
                if let Ok(mut all) = keep.lock() {
                    all.push(m.data);
                }
            }
        }
    });
    seen
}

/// The URL, token and body of `op`.
fn request_of(cluster: &Cluster, op: &Op) -> (Option<String>, String, Option<Value>) {
    let (zone, node) = match op {
        Op::Submit { zone, node, .. }
        | Op::Approve { zone, node, .. }
        | Op::Delist { zone, node, .. }
        | Op::Read { zone, node, .. }
        | Op::Revoke { zone, node, .. } => (*zone, *node),
    };
    let z = &cluster.zones[zone];
    let url = cluster.index(zone, node).and_then(|i| cluster.url(i));
    match op {
        Op::Submit {
            key,
            large,
            sensitive,
            ..
        } => (
            url,
            z.tokens.provider.clone(),
            Some(listing_body(
                *key,
                (z.provider.id.as_str(), &z.provider.name),
                *large,
                *sensitive,
            )),
        ),
        Op::Approve { .. } => (url, z.tokens.operator.clone(), Some(serde_json::json!({}))),
        Op::Delist { .. } => (
            url,
            z.tokens.operator.clone(),
            Some(serde_json::json!({"reason": "withdrawn in a simulation"})),
        ),
        Op::Read { .. } => (url, z.tokens.regulator.clone(), None),
        Op::Revoke { key, .. } => {
            match cluster.revocation(zone, &spare_key(*key).public()) {
                Ok(envelope) => (
                    url,
                    z.tokens.admin.clone(),
                    Some(serde_json::json!({"envelope": hex::encode(envelope)})),
                ),
                Err(e) => {
                    // Not sent (recorded as such), and said aloud.
                    eprintln!("xchg-sim: cannot sign the revocation of spare key {key}: {e}");
                    (None, z.tokens.admin.clone(), None)
                }
            }
        }
    }
}

async fn apply(
    cluster: &mut Cluster,
    fault: &Fault,
    crashed: &mut Vec<(Instant, usize)>,
) -> anyhow::Result<()> {
    match *fault {
        Fault::Loss { per_million } => cluster.set_link_faults(Some(per_million), None, None),
        Fault::Duplicate { per_million } => cluster.set_link_faults(None, Some(per_million), None),
        Fault::Delay {
            fixed_ms,
            tail_ms,
            tail_per_million,
        } => cluster.set_link_faults(
            None,
            None,
            Some(Delay {
                fixed: Duration::from_millis(fixed_ms),
                tail: Duration::from_millis(tail_ms),
                tail_per_million,
            }),
        ),
        Fault::IsolateMember { zone, node } => {
            if let Some(i) = cluster.index(zone, node) {
                cluster.zones[zone].router.isolate(cluster.nodes[i].id);
            }
        }
        Fault::CutZoneGossip { zone } => {
            for &i in &cluster.zones[zone].nodes {
                cluster.gossip.isolate(&cluster.nodes[i].peer);
            }
        }
        Fault::Crash { zone, node } => {
            if let Some(i) = cluster.index(zone, node) {
                cluster.crash(i).await;
            }
        }
        Fault::Restart { zone, node } => {
            if let Some(i) = cluster.index(zone, node) {
                cluster.restart(i).await?;
            }
        }
        Fault::KillLeader { zone, down_ms } => {
            if let Some(i) = cluster.leader_of(zone) {
                cluster.crash(i).await;
                crashed.push((Instant::now() + Duration::from_millis(down_ms), i));
            }
        }
        Fault::CutRaftOneWay { zone, from, to } => cluster.cut_raft_one_way(zone, from, to),
        Fault::CutGossipOneWay { from_zone, to_zone } => {
            cluster.cut_gossip_one_way(from_zone, to_zone);
        }
        Fault::Pause { zone, node } => {
            if let Some(i) = cluster.index(zone, node) {
                cluster.pause(i);
            }
        }
        Fault::Resume { zone, node } => {
            if let Some(i) = cluster.index(zone, node) {
                cluster.resume(i);
            }
        }
        Fault::Skew {
            exchange,
            offset_ms,
        } => cluster.set_skew(exchange, offset_ms),
        Fault::HealAll => cluster.heal_all(),
    }
    Ok(())
}

/// Waits, within `deadline`, until every zone has a leader, the members of each zone have
/// applied the same entries, and every listing has reached the other zones; whether it did.
async fn converge(
    cluster: &Cluster,
    leaders: &mut Leaders,
    history: &[Record],
    ids: &BTreeMap<u64, String>,
    deadline: Duration,
) -> bool {
    let until = Instant::now() + deadline;
    let mut quiet = 0;
    while Instant::now() < until {
        leaders.sample(cluster);
        let settled = (0..cluster.zones.len()).all(|z| cluster.leader_of(z).is_some())
            && cluster.same_applied();
        quiet = if settled { quiet + 1 } else { 0 };
        if quiet >= 3
            && invariants::recognition(cluster, history, ids)
                .await
                .is_empty()
            && invariants::revocations(cluster, history).await.is_empty()
            && cluster.same_applied()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// For every listing approved (and acknowledged) that may leave its zone, and every other
/// zone: how long after the approval's acknowledgement the zone recorded it recognised (0 when
/// it did before the client heard back), read from one running node of the zone.
async fn propagation(
    cluster: &Cluster,
    history: &[Record],
    ids: &BTreeMap<u64, String>,
    start_wall_ms: u64,
) -> Vec<u64> {
    let sensitive: std::collections::HashSet<u64> = history
        .iter()
        .filter_map(|r| match r.op {
            Op::Submit {
                key,
                sensitive: true,
                ..
            } => Some(key),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for r in history {
        let (Op::Approve { zone, key, .. }, Outcome::Ok(_), Some(done)) =
            (&r.op, &r.outcome, r.completed_us)
        else {
            continue;
        };
        let Some(id) = ids.get(key).filter(|_| !sensitive.contains(key)) else {
            continue;
        };
        let acknowledged = start_wall_ms + done / 1000;
        for (z, other) in cluster.zones.iter().enumerate() {
            if z == *zone {
                continue;
            }
            let Some(h) = other
                .nodes
                .iter()
                .find_map(|&i| cluster.nodes[i].handle.as_ref())
            else {
                continue;
            };
            let Ok(mut conn) = h.db.reader().await else {
                continue;
            };
            let at = sqlx::query_scalar::<_, Option<i64>>(
                "SELECT min(at) FROM recognitions WHERE listing_id = ? AND kind = 'listing' \
                 AND decision = 'recognised'",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await;
            if let Ok(Some(at)) = at {
                out.push(u64::try_from(at).unwrap_or(0).saturating_sub(acknowledged));
            }
        }
    }
    out
}

fn latency(mut v: Vec<u64>) -> Latency {
    v.sort_unstable();
    Latency {
        p50: percentile(&v, 50),
        p99: percentile(&v, 99),
        max: v.last().copied().unwrap_or(0),
        count: v.len(),
    }
}

fn figures(
    cluster: &Cluster,
    history: &[Record],
    convergence_ms: Option<u64>,
    (gossip_messages, gossip_deliveries): (u64, u64),
    propagation: Vec<u64>,
) -> (Figures, Samples) {
    let mut operations = BTreeMap::new();
    let mut commits: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in history {
        let kind = match &r.outcome {
            Outcome::Ok(_) => "ok".to_owned(),
            Outcome::Refused(code) => format!("refused:{code}"),
            Outcome::Unknown => "unknown".to_owned(),
            Outcome::NotSent => "not_sent".to_owned(),
        };
        *operations.entry(kind).or_insert(0) += 1;
        if let (Op::Submit { zone, .. }, Outcome::Ok(_), Some(done)) =
            (&r.op, &r.outcome, r.completed_us)
        {
            commits
                .entry(cluster.zones[*zone].id.clone())
                .or_default()
                .push(done.saturating_sub(r.invoked_us) / 1000);
        }
    }
    let commit_latency_ms = commits
        .iter()
        .map(|(zone, v)| (zone.clone(), latency(v.clone())))
        .collect();
    let approved = history
        .iter()
        .filter(|r| matches!((&r.op, &r.outcome), (Op::Approve { .. }, Outcome::Ok(_))))
        .count();
    let figures = Figures {
        operations,
        commit_latency_ms,
        convergence_ms,
        gossip_messages,
        gossip_deliveries,
        recognition_latency_ms: (!propagation.is_empty()).then(|| latency(propagation.clone())),
        messages_per_listing: (approved > 0).then(|| gossip_deliveries as f64 / approved as f64),
    };
    let samples = Samples {
        commit: commits,
        propagation,
    };
    (figures, samples)
}

/// Writes `report.json` and `report.md` into `out`.
fn write(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    // What a failure is read from: the operations with their times and results (listing
    // keys are the numbers the checkers name), and the schedule of faults.
    std::fs::write(
        out.join("history.json"),
        serde_json::to_vec(&report.history)?,
    )?;
    std::fs::write(
        out.join("schedule.json"),
        serde_json::to_vec(&report.schedule)?,
    )?;
    let mut md = format!(
        "# xchg-sim {} seed {}\n\nSchedule digest `{}`: {} faults, {} operations over {} s on `{}` ({} nodes per zone).\n\nReproduce: `{}`\n\n| invariant | held | detail |\n|---|---|---|\n",
        report.scenario,
        report.seed,
        report.schedule_digest,
        report.faults,
        report.operations,
        report.options.duration.as_secs(),
        report.options.layout,
        report.options.nodes_per_zone,
        report.reproduce
    );
    for c in &report.invariants {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            c.name,
            if c.held { "yes" } else { "**no**" },
            c.detail.replace('|', "/")
        ));
    }
    md.push_str(&format!(
        "\nConverged {} after the faults ended. Operations: {:?}.\n\n| zone | submissions | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n",
        report.figures.convergence_ms.map_or("not within the deadline".to_owned(), |ms| format!("{ms} ms")),
        report.figures.operations
    ));
    for (zone, l) in &report.figures.commit_latency_ms {
        md.push_str(&format!(
            "| {zone} | {} | {} | {} | {} |\n",
            l.count, l.p50, l.p99, l.max
        ));
    }
    if let Some(p) = &report.figures.recognition_latency_ms {
        md.push_str(&format!(
            "\nPropagation, approval acknowledged at the origin to recognised in another zone, over {} (listing, zone) pairs: p50 {} ms, p99 {} ms, max {} ms.\n",
            p.count, p.p50, p.p99, p.max
        ));
    }
    if let Some(m) = report.figures.messages_per_listing {
        md.push_str(&format!(
            "Gossip deliveries per listing approved (every kind of message): {m:.1}.\n"
        ));
    }
    md.push_str("\n![commit latency](commit-latency.svg)\n\n![propagation](propagation.svg)\n");
    std::fs::write(out.join("report.md"), md)?;
    let series: Vec<(String, Vec<u64>)> = report
        .samples
        .commit
        .iter()
        .map(|(zone, v)| (zone.clone(), v.clone()))
        .collect();
    let title = format!(
        "Commit latency of acknowledged submissions ({} seed {})",
        report.scenario, report.seed
    );
    std::fs::write(
        out.join("commit-latency.svg"),
        svg::cdf(&title, "ms from request to acknowledgement", &series),
    )?;
    let title = format!(
        "Cross-zone propagation ({} seed {})",
        report.scenario, report.seed
    );
    std::fs::write(
        out.join("propagation.svg"),
        svg::cdf(
            &title,
            "ms from approval acknowledged to recognised in another zone",
            &[(
                "(listing, zone) pairs".to_owned(),
                report.samples.propagation.clone(),
            )],
        ),
    )?;
    Ok(())
}

/// Where a run writes by default: `sim-out/SCENARIO-SEED/`.
pub fn default_out(options: &Options) -> PathBuf {
    PathBuf::from("sim-out").join(format!("{}-{}", options.scenario.as_str(), options.seed))
}
