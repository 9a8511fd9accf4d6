//! A fresh 3-node zone started on a busy machine elects one leader within a few election
//! timeouts, and from then on every member takes writes (issue #12, item 10: a zone once had
//! no leader after 60 s, and once one member answered none of 50 submissions).
//!
//! `XCHG_ZONE_STARTS` sets how many fresh zones are started (default 3) and `XCHG_BUSY_THREADS`
//! how many threads spin on the CPU meanwhile (default 2, one per core here); each start's time to
//! an agreed leader and to the first acknowledged write is printed, with the median and maximum.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xchg_tests::{Zone, eventually, example_listing};

/// Submissions sent after the leader is agreed, spread over the three members.
const SUBMISSIONS: usize = 50;

/// The configured election timeout is 1–2 s; a zone of started members has this long to agree
/// on a leader (process start-up of a debug build on a loaded 2-core machine included).
const LEADER_WITHIN: Duration = Duration::from_secs(20);

/// Threads spinning on the CPU for as long as the value lives: the "machine under load".
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn spin(threads: usize) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The leader every member names, once all three name the same one and it says so itself.
async fn agreed_leader(zone: &Zone) -> Result<Option<String>, String> {
    let mut named = Vec::new();
    for i in 0..zone.nodes.len() {
        let (_, s) = zone
            .get(i, "/v1/status", None)
            .await
            .map_err(|e| format!("node {i}: {e}"))?;
        named.push((s["leader"].as_str().map(str::to_owned), s["role"].clone()));
    }
    let Some(Some(leader)) = named.first().map(|(l, _)| l.clone()) else {
        return Ok(None);
    };
    let all_agree = named.iter().all(|(l, _)| l.as_deref() == Some(&leader));
    let says_so = zone
        .nodes
        .iter()
        .zip(&named)
        .any(|(n, (_, role))| n.name == leader && role == "leader");
    Ok((all_agree && says_so).then_some(leader))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_zones_on_a_busy_machine_elect_a_leader_and_every_member_takes_writes()
-> anyhow::Result<()> {
    let starts: usize = std::env::var("XCHG_ZONE_STARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let busy: usize = std::env::var("XCHG_BUSY_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let _busy = Busy::spin(busy);
    let (mut to_leader, mut to_write) = (Vec::new(), Vec::new());
    for run in 1..=starts {
        let mut zone = Zone::generate("single-zone", 3)?;
        let started = Instant::now();
        zone.start_all()?;
        let leader = match eventually(LEADER_WITHIN, "one leader all members name", || {
            agreed_leader(&zone)
        })
        .await
        {
            Ok(l) => l,
            Err(e) => {
                let logs: Vec<String> = (0..3).map(|i| zone.log_of(i)).collect();
                anyhow::bail!("start {run}: {e}\n--- logs ---\n{}", logs.join("\n---\n"));
            }
        };
        let elected = started.elapsed();
        let provider = zone.tokens().provider.clone();
        let mut first_write = None;
        for n in 0..SUBMISSIONS {
            let member = n % 3;
            let (status, body) = zone
                .post(
                    member,
                    "/v1/listings",
                    &provider,
                    &example_listing(&format!("start {run} #{n}")),
                )
                .await?;
            anyhow::ensure!(
                status == 201,
                "start {run}: submission {n} on member {member} (leader {leader}) answered \
                 {status} {body}\n--- its log ---\n{}",
                zone.log_of(member)
            );
            first_write.get_or_insert_with(|| started.elapsed());
        }
        let written = first_write.unwrap_or_default();
        eprintln!(
            "start {run}: leader {leader} agreed after {elected:?}, first write after \
             {written:?}, {SUBMISSIONS} submissions over 3 members all 201"
        );
        to_leader.push(elected);
        to_write.push(written);
    }
    eprintln!(
        "{starts} fresh zones with {busy} busy threads: leader agreed median {:?} max {:?}; first \
         write median {:?} max {:?}",
        median(to_leader.clone()),
        to_leader.iter().max().copied().unwrap_or_default(),
        median(to_write.clone()),
        to_write.iter().max().copied().unwrap_or_default(),
    );
    Ok(())
}
