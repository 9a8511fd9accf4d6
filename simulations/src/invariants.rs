//! The invariants of issue #15, one checker each, over the cluster's replicas and the run's
//! history. Every checker answers a [`Check`]: its name, whether it held, and what it found.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use xchg_node::catalog::tables::REPLICATED_TABLES;
use xchg_node::catalog::tables::listings;
use xchg_node::store::Db;
use xchg_protocol::ContentId;

use crate::cluster::Cluster;
use crate::linearizability::{self, Model, Operation, Verdict};
use crate::scenario::{Op, spare_key};
use crate::workload::{Outcome, Record, key_of, listing_body};

/// One invariant's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name.
    pub name: &'static str,
    /// Whether it held.
    pub held: bool,
    /// What was found (the first violation, or a count of what was checked).
    pub detail: String,
}

fn check(name: &'static str, problems: &[String], checked: impl std::fmt::Display) -> Check {
    Check {
        name,
        held: problems.is_empty(),
        detail: match problems.first() {
            Some(p) if problems.len() > 1 => format!("{p} (and {} more)", problems.len() - 1),
            Some(p) => p.clone(),
            None => format!("{checked}"),
        },
    }
}

/// A listing's state on node `db`'s replica (`None`: not held).
async fn state_on(db: &Db, id: &str) -> anyhow::Result<Option<String>> {
    let id: ContentId = id.parse()?;
    let mut conn = db.reader().await?;
    Ok(listings::owner_read(&mut conn, &id).await?.map(|o| o.state))
}

/// The state an acknowledged write leaves its listing in at least: the states allowed at the
/// end.
fn allowed_after(op: &Op) -> &'static [&'static str] {
    match op {
        Op::Submit { .. } => &["submitted", "listed", "rejected", "delisted"],
        Op::Approve { .. } => &["listed", "delisted"],
        Op::Delist { .. } => &["delisted"],
        Op::Read { .. } | Op::Revoke { .. } => &[],
    }
}

/// Invariant 1, No acknowledged write lost: every acknowledged write is on every live member of its zone.
pub async fn acknowledged_writes(
    cluster: &Cluster,
    history: &[Record],
    ids: &BTreeMap<u64, String>,
) -> Check {
    let mut problems = Vec::new();
    let mut checked = 0;
    for r in history {
        let (Outcome::Ok(_), zone) = (&r.outcome, zone_of(&r.op)) else {
            continue;
        };
        if matches!(r.op, Op::Read { .. } | Op::Revoke { .. }) {
            continue;
        }
        let Some(id) = ids.get(&key_of(&r.op)) else {
            continue;
        };
        for &i in &cluster.zones[zone].nodes {
            let Some(h) = &cluster.nodes[i].handle else {
                continue;
            };
            checked += 1;
            match state_on(&h.db, id).await {
                Ok(Some(s)) if allowed_after(&r.op).contains(&s.as_str()) => {}
                found => problems.push(format!(
                    "{} acknowledged {:?} of listing {id}; {} has {found:?}",
                    cluster.zones[zone].id, r.op, cluster.nodes[i].name
                )),
            }
        }
    }
    check(
        "no_acknowledged_write_lost",
        &problems,
        format_args!("{checked} (write, member) pairs"),
    )
}

fn zone_of(op: &Op) -> usize {
    match op {
        Op::Submit { zone, .. }
        | Op::Approve { zone, .. }
        | Op::Delist { zone, .. }
        | Op::Read { zone, .. }
        | Op::Revoke { zone, .. } => *zone,
    }
}

/// The applied position and a digest of every replicated table of `db`, read in one read
/// transaction (rows sorted, so the order they were restored in does not count).
pub async fn digest(db: &Db) -> anyhow::Result<(Vec<u8>, String)> {
    let mut conn = db.reader().await?;
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    let applied: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT value FROM sm_meta WHERE key = 'last_applied'")
            .fetch_optional(&mut *conn)
            .await?;
    let mut hash = Sha256::new();
    for table in REPLICATED_TABLES {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        let expr = columns
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let mut rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {expr} FROM {table}"))
            .fetch_all(&mut *conn)
            .await?;
        rows.sort();
        hash.update(table.as_bytes());
        for r in rows {
            hash.update(r.as_bytes());
            hash.update(b"\n");
        }
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok((applied.unwrap_or_default(), hex::encode(hash.finalize())))
}

/// Invariant 2, Zone agreement: members at the same applied position hold identical catalogs.
pub async fn zone_agreement(cluster: &Cluster) -> Check {
    let mut problems = Vec::new();
    let mut compared = 0;
    for zone in &cluster.zones {
        let mut seen: BTreeMap<Vec<u8>, (String, String)> = BTreeMap::new();
        let live = zone
            .nodes
            .iter()
            .filter(|&&i| cluster.nodes[i].handle.is_some())
            .count();
        let before = compared;
        for &i in &zone.nodes {
            let Some(h) = &cluster.nodes[i].handle else {
                continue;
            };
            match digest(&h.db).await {
                Ok((applied, d)) => match seen.get(&applied) {
                    Some((other, theirs)) if *theirs != d => problems.push(format!(
                        "{}: {} and {} differ at the same applied position",
                        zone.id, other, cluster.nodes[i].name
                    )),
                    Some(_) => compared += 1,
                    None => {
                        seen.insert(applied, (cluster.nodes[i].name.clone(), d));
                    }
                },
                Err(e) => problems.push(format!("{}: {e}", cluster.nodes[i].name)),
            }
        }
        if live > 1 && compared == before {
            problems.push(format!(
                "{}: no two members were at the same applied position",
                zone.id
            ));
        }
    }
    check(
        "zone_agreement",
        &problems,
        format_args!("{compared} members compared with a peer at the same position"),
    )
}

/// Who was seen leading each zone in each term.
#[derive(Debug, Default)]
pub struct Leaders {
    seen: BTreeMap<(usize, u64), BTreeSet<u64>>,
    samples: u64,
}

impl Leaders {
    /// Records every running node that says it leads its zone.
    pub fn sample(&mut self, cluster: &Cluster) {
        self.samples += 1;
        for n in &cluster.nodes {
            let Some(h) = &n.handle else { continue };
            let m = h.raft.metrics().borrow().clone();
            if m.current_leader == Some(h.id) {
                self.saw(n.zone, m.current_term, h.id);
            }
        }
    }

    /// Records that node `id` said it leads zone `zone` in `term`.
    pub fn saw(&mut self, zone: usize, term: u64, id: u64) {
        self.seen.entry((zone, term)).or_default().insert(id);
    }

    /// Invariant 3, At most one leader per zone per term.
    pub fn check(&self, cluster: &Cluster) -> Check {
        let problems: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|((zone, term), ids)| {
                format!(
                    "{} had leaders {ids:?} in term {term}",
                    cluster.zones[*zone].id
                )
            })
            .collect();
        check(
            "one_leader_per_term",
            &problems,
            format_args!(
                "{} samples, {} (zone, term) pairs",
                self.samples,
                self.seen.len()
            ),
        )
    }
}

/// Invariant 4, Export firewall: no `important` listing is held by any zone but its own, nor in any
/// gossip message (`messages`: every gossip message a listening peer saw).
pub async fn export_firewall(
    cluster: &Cluster,
    history: &[Record],
    ids: &BTreeMap<u64, String>,
    messages: &[Vec<u8>],
) -> Check {
    let mut problems = Vec::new();
    let sensitive: BTreeMap<&String, usize> = history
        .iter()
        .filter_map(|r| match r.op {
            Op::Submit {
                zone,
                key,
                sensitive: true,
                ..
            } => ids.get(&key).map(|id| (id, zone)),
            _ => None,
        })
        .collect();
    for (id, zone) in &sensitive {
        for n in cluster.nodes.iter().filter(|n| n.zone != *zone) {
            let Some(h) = &n.handle else { continue };
            if let Ok(Some(s)) = state_on(&h.db, id).await {
                problems.push(format!("{} holds important listing {id} ({s})", n.name));
            }
        }
    }
    for m in messages {
        if let Some(listing) = listing_in(m)
            && matches!(
                listing.classification,
                xchg_protocol::Classification::Important | xchg_protocol::Classification::Core
            )
        {
            problems.push(format!(
                "listing {} ({:?}) crossed a zone boundary in a gossip message",
                listing.id(),
                listing.classification
            ));
        }
    }
    check(
        "export_firewall",
        &problems,
        format_args!(
            "{} important listings, {} gossip messages",
            sensitive.len(),
            messages.len()
        ),
    )
}

/// The listing a gossip message carries, if it is a listing announcement that decodes.
fn listing_in(message: &[u8]) -> Option<xchg_protocol::Listing> {
    let limits = xchg_protocol::Limits::default();
    let envelope: xchg_protocol::Envelope =
        xchg_protocol::canonical::from_canonical(message, &limits).ok()?;
    if envelope.kind != xchg_protocol::AnnouncementKind::Listing {
        return None;
    }
    xchg_protocol::canonical::from_canonical(&envelope.body, &limits).ok()
}

/// Invariant 5, Recognition convergence: every listing listed at its origin (not important) is held as
/// recognised, or its refusal recorded, in every other zone; delisted ones are not held as
/// recognised anywhere.
pub async fn recognition(
    cluster: &Cluster,
    history: &[Record],
    ids: &BTreeMap<u64, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let origins: BTreeMap<u64, (usize, bool)> = history
        .iter()
        .filter_map(|r| match r.op {
            Op::Submit {
                zone,
                key,
                sensitive,
                ..
            } => Some((key, (zone, sensitive))),
            _ => None,
        })
        .collect();
    for (key, id) in ids {
        let Some(&(zone, sensitive)) = origins.get(key) else {
            continue;
        };
        if sensitive {
            continue;
        }
        let origin_leader = cluster
            .leader_of(zone)
            .and_then(|i| cluster.nodes[i].handle.as_ref());
        let Some(origin) = origin_leader else {
            problems.push(format!("{} has no leader", cluster.zones[zone].id));
            continue;
        };
        let at_origin = state_on(&origin.db, id).await.ok().flatten();
        for n in cluster.nodes.iter().filter(|n| n.zone != zone) {
            let Some(h) = &n.handle else { continue };
            let here = state_on(&h.db, id).await.ok().flatten();
            let fine = match at_origin.as_deref() {
                Some("listed") => {
                    here.as_deref() == Some("recognised") || refused_on(&h.db, id).await
                }
                Some("delisted") => here.as_deref() != Some("recognised"),
                _ => true,
            };
            if !fine {
                problems.push(format!(
                    "{id} is {at_origin:?} at its origin and {here:?} on {}",
                    n.name
                ));
            }
        }
    }
    problems
}

/// Revocations (part of invariant 5): every key revocation a zone acknowledged is recorded on
/// every running node (every layout's zones all trust every exchange).
pub async fn revocations(cluster: &Cluster, history: &[Record]) -> Vec<String> {
    let mut problems = Vec::new();
    for r in history {
        let (Op::Revoke { zone, key, .. }, Outcome::Ok(_)) = (&r.op, &r.outcome) else {
            continue;
        };
        let Some(exchange) = cluster.exchange_of(*zone) else {
            continue;
        };
        let revoked = spare_key(*key).public().to_base64();
        for n in &cluster.nodes {
            let Some(h) = &n.handle else { continue };
            let held = match h.db.reader().await {
                Ok(mut conn) => sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM revocations WHERE exchange = ? AND key = ?",
                )
                .bind(exchange.as_str())
                .bind(&revoked)
                .fetch_one(&mut *conn)
                .await
                .is_ok_and(|c| c > 0),
                Err(_) => false,
            };
            if !held {
                problems.push(format!(
                    "{} has not recorded {exchange}'s revocation of spare key {key}",
                    n.name
                ));
            }
        }
    }
    problems
}

/// Whether `db` recorded a refusal of a version of listing `id`.
async fn refused_on(db: &Db, id: &str) -> bool {
    let Ok(mut conn) = db.reader().await else {
        return false;
    };
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM recognitions WHERE listing_id = ? AND decision = 'rejected'",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .is_ok_and(|n| n > 0)
}

/// Invariant 6, Audit chain: every member's chain verifies, its Merkle tree (as stored, after any
/// snapshot installed) has the root recomputed from its records, and members at the same
/// applied position hold the same chain.
pub async fn audit_chains(cluster: &Cluster) -> Check {
    let mut problems = Vec::new();
    let mut verified = 0;
    for zone in &cluster.zones {
        let mut heads: BTreeMap<Vec<u8>, (String, Option<[u8; 32]>)> = BTreeMap::new();
        for &i in &zone.nodes {
            let Some(h) = &cluster.nodes[i].handle else {
                continue;
            };
            let name = &cluster.nodes[i].name;
            let records = match h.db.reader().await {
                Ok(mut conn) => xchg_node::audit::range(&mut conn, 1, u32::MAX)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let records = match records {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    continue;
                }
            };
            if let Some(seq) = xchg_node::audit::first_broken_link(&records, [0u8; 32]) {
                problems.push(format!("{name}: the audit chain breaks at record {seq}"));
            }
            let size = records.len() as u64;
            let recomputed = xchg_protocol::merkle::MemoryTree::new(
                records.iter().map(|r| r.content.leaf_hash()),
            )
            .root(size);
            let stored = match h.db.reader().await {
                Ok(mut conn) => {
                    let held = xchg_node::audit::tree_size(&mut conn).await;
                    match held {
                        Ok(held) if held == size => xchg_node::audit::root(&mut conn, size)
                            .await
                            .map_err(|e| e.to_string()),
                        Ok(held) => Err(format!("the tree holds {held} leaves of {size} records")),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(root) if root == recomputed => {}
                Ok(_) => problems.push(format!(
                    "{name}: the stored Merkle tree's root differs from its records'"
                )),
                Err(e) => problems.push(format!("{name}: the Merkle tree: {e}")),
            }
            verified += records.len();
            let applied = digest(&h.db).await.map(|d| d.0).unwrap_or_default();
            let head = records.last().map(|r| r.hash);
            match heads.get(&applied) {
                Some((other, theirs)) if *theirs != head => problems.push(format!(
                    "{}: {other} and {name} end their chains differently at the same position",
                    zone.id
                )),
                Some(_) => {}
                None => {
                    heads.insert(applied, (name.clone(), head));
                }
            }
        }
    }
    check(
        "audit_chain",
        &problems,
        format_args!("{verified} records verified"),
    )
}

/// How long a healed zone may take to accept the liveness write.
pub const LIVENESS_WAIT: Duration = Duration::from_secs(30);

/// Invariant 7, Liveness: after healing, every zone has a leader and takes a write.
pub async fn liveness(cluster: &Cluster, converged: bool) -> Check {
    let mut problems = Vec::new();
    if !converged {
        problems.push("the federation did not converge within the heal deadline".to_owned());
    }
    let http = reqwest::Client::new();
    for (z, zone) in cluster.zones.iter().enumerate() {
        let Some(url) = cluster.leader_of(z).and_then(|i| cluster.url(i)) else {
            problems.push(format!("{} has no leader", zone.id));
            continue;
        };
        let body = listing_body(
            1_000_000 + z as u64,
            (zone.provider.id.as_str(), &zone.provider.name),
            false,
            false,
        );
        // A zone is live if it takes the write within LIVENESS_WAIT: an answer that only says
        // "not now" (a timeout, 503, 504) is asked again, as a client would; a refusal is not.
        let deadline = tokio::time::Instant::now() + LIVENESS_WAIT;
        let mut asked_again = false;
        let problem = loop {
            let answer = http
                .post(format!("{url}/v1/listings"))
                .bearer_auth(&zone.tokens.provider)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let problem = match answer {
                Ok(r) if r.status().as_u16() == 201 => break None,
                // The attempt before was taken after all: the same listing already exists.
                Ok(r) if asked_again && r.status().as_u16() == 409 => break None,
                Ok(r) if ![503, 504].contains(&r.status().as_u16()) => {
                    break Some(format!("{} answered a write {}", zone.id, r.status()));
                }
                Ok(r) => format!("{} answered a write {}", zone.id, r.status()),
                Err(e) => format!("{}: {e} ({:?})", zone.id, std::error::Error::source(&e)),
            };
            if tokio::time::Instant::now() >= deadline {
                break Some(problem);
            }
            asked_again = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        problems.extend(problem);
    }
    Check {
        name: "liveness",
        held: problems.is_empty(),
        detail: problems
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{} zones took a write", cluster.zones.len())),
    }
}

/// The sequential specification of one listing as the API changes it.
pub struct ListingModel;

/// What a listing operation asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Submission.
    Submit,
    /// Approval.
    Approve,
    /// Delisting.
    Delist,
    /// A read.
    Read,
}

impl Model for ListingModel {
    type State = Option<&'static str>;
    type Input = Asked;
    type Output = Outcome;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Asked,
        output: Option<&Outcome>,
    ) -> Option<Self::State> {
        let (from, to) = match input {
            Asked::Submit => (None, Some("submitted")),
            Asked::Approve => (Some("submitted"), Some("listed")),
            Asked::Delist => (Some("listed"), Some("delisted")),
            Asked::Read => {
                return match output {
                    Some(Outcome::Ok(seen)) => (seen.as_deref() == *state).then_some(*state),
                    _ => Some(*state),
                };
            }
        };
        match output {
            Some(Outcome::Ok(_)) => (*state == from).then_some(to),
            Some(Outcome::Refused(_)) => (*state != from).then_some(*state),
            // Unknown: applied if the state allowed it, refused otherwise.
            _ => Some(if *state == from { to } else { *state }),
        }
    }
}

/// Invariant 8, Linearizable reads: the history of every listing has a linearization.
pub fn linearizable(history: &[Record]) -> Check {
    let ops: Vec<Operation<u64, Asked, Outcome>> = history
        .iter()
        .filter(|r| r.outcome != Outcome::NotSent)
        .filter_map(|r| {
            let input = match r.op {
                Op::Submit { .. } => Asked::Submit,
                Op::Approve { .. } => Asked::Approve,
                Op::Delist { .. } => Asked::Delist,
                Op::Read { .. } => Asked::Read,
                // Not an operation on a listing.
                Op::Revoke { .. } => return None,
            };
            Some(Operation {
                key: key_of(&r.op),
                input,
                invoked: r.invoked_us,
                completed: r.completed_us,
                output: (r.outcome != Outcome::Unknown).then(|| r.outcome.clone()),
            })
        })
        .collect();
    let n = ops.len();
    let (held, detail) = match linearizability::check(&ListingModel, &ops) {
        Verdict::Linearizable => (true, format!("{n} operations")),
        Verdict::Violated(v) => {
            // The key's operations, so a failed run's log shows the evidence on its own.
            let ops: Vec<String> = ops
                .iter()
                .filter(|o| o.key == v.key)
                .map(|o| {
                    let done = o
                        .completed
                        .map_or("never".to_owned(), |c| format!("{c} µs"));
                    format!("{:?} {} µs → {done}: {:?}", o.input, o.invoked, o.output)
                })
                .collect();
            (
                false,
                format!(
                    "listing key {} has no linearization ({} of {} operations placed): {}",
                    v.key,
                    v.placed,
                    v.operations,
                    ops.join("; ")
                ),
            )
        }
        Verdict::Unknown(k) => (false, format!("the search for listing key {k} gave up")),
    };
    Check {
        name: "linearizable",
        held,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: Op, invoked_us: u64, completed_us: Option<u64>, outcome: Outcome) -> Record {
        Record {
            op,
            invoked_us,
            completed_us,
            outcome,
        }
    }

    fn submit() -> Op {
        Op::Submit {
            zone: 0,
            node: 0,
            key: 1,
            large: false,
            sensitive: false,
        }
    }

    fn read() -> Op {
        Op::Read {
            zone: 0,
            node: 1,
            key: 1,
        }
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_approval_is_caught() {
        let approve = Op::Approve {
            zone: 0,
            node: 0,
            key: 1,
        };
        let ok = |s: &str| Outcome::Ok(Some(s.to_owned()));
        let mut history = vec![
            record(submit(), 0, Some(10), ok("id")),
            record(approve, 20, Some(30), Outcome::Ok(None)),
            record(read(), 40, Some(50), ok("listed")),
        ];
        assert!(linearizable(&history).held);
        history.push(record(read(), 60, Some(70), ok("submitted")));
        assert!(!linearizable(&history).held);
    }

    #[test]
    fn an_approval_of_unknown_outcome_may_be_seen_or_not() {
        let approve = Op::Approve {
            zone: 0,
            node: 0,
            key: 1,
        };
        let ok = |s: &str| Outcome::Ok(Some(s.to_owned()));
        for seen in ["submitted", "listed"] {
            let history = vec![
                record(submit(), 0, Some(10), ok("id")),
                record(approve.clone(), 20, None, Outcome::Unknown),
                record(read(), 40, Some(50), ok(seen)),
            ];
            assert!(linearizable(&history).held, "{seen}");
        }
        // A refusal on a submitted listing is not what the model allows.
        let history = vec![
            record(submit(), 0, Some(10), ok("id")),
            record(
                approve,
                20,
                Some(30),
                Outcome::Refused("illegal_transition".into()),
            ),
        ];
        assert!(!linearizable(&history).held);
    }
}
