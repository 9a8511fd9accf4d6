//! Watching other zones' audit logs (PROTOCOL.md 12.7). A zone's leader publishes its signed
//! tree head on its exchange's tree-head topic when the log grows (and once a minute); a node
//! hearing a larger head of another zone asks that zone for the proof at once. And every
//! [`HEADS_EVERY`] a node asks one connected node of each other zone it can prove (a delegation from a trusted root) for its
//! zone's signed tree head and the consistency proof from the head it holds of that zone. A
//! head that verifies and is consistent replaces the one held; a head that verifies but is not
//! consistent with the one held (or of the same size with another root) is the zone's own
//! signed evidence that it rewrote its history: the zone is flagged, both heads and the proof
//! are kept, and the overview shows it (`GET /v1/federation/overview`, `audit_heads`).
//!
//! What is held is this node's own view, kept in [`HEADS_FILE`] in its data directory across
//! restarts. A head that does not verify (a peer's junk, not the zone's statement) is only
//! logged; a head smaller than the one held (a lagging node) is left for a later round.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use xchg_protocol::catchup::{Blob, MAX_PROOF_HASHES, Request, Response};
use xchg_protocol::merkle::{Hash, verify_consistency};
use xchg_protocol::tree_head::{self, TreeHead};
use xchg_protocol::{Timestamp, TrustStore, ZoneId};

use super::driver::Federation;
use super::identity::Identity;
use crate::audit;
use crate::gossip::Peer;
use crate::store::Db;

/// How often the other zones' heads are asked for.
pub const HEADS_EVERY: Duration = Duration::from_secs(5);
/// The file of a node's data directory holding the heads it holds of other zones (JSON).
pub const HEADS_FILE: &str = "zone-heads.json";
/// Most zones held (more are not asked about).
pub const MAX_ZONES: usize = 1024;

/// The head held of one zone, as the overview shows it. Hashes, keys and heads in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZoneHead {
    /// The zone.
    pub zone: String,
    /// Records in the held head.
    pub size: u64,
    /// Its root, 64 hex digits.
    pub root_hash: String,
    /// When the zone signed it.
    pub timestamp: Timestamp,
    /// The node key that signed it.
    pub signer: String,
    /// When a head of the zone was last checked here.
    pub checked_at: Timestamp,
    /// False once the zone signed a head that is not consistent with the one held: it rewrote
    /// its history. Stays false; the held head is then the last consistent one.
    pub consistent: bool,
    /// Why the zone is flagged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub problem: Option<String>,
    /// The held head (a SignedMessage, PROTOCOL.md 12.3), hex.
    pub signed_head: String,
    /// When flagged: the conflicting signed head and the proof it came with.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evidence: Option<Evidence>,
}

/// The zone's signed head that contradicts the one held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// The conflicting SignedMessage, hex.
    pub signed_head: String,
    /// Its size.
    pub size: u64,
    /// Its root, hex.
    pub root_hash: String,
    /// The consistency proof it came with, hex hashes.
    pub proof: Vec<String>,
}

/// The heads this node holds, by zone; when each zone was last asked; what this node last
/// published of its own zone.
#[derive(Debug, Default)]
pub struct Held(
    Mutex<BTreeMap<String, ZoneHead>>,
    Mutex<BTreeMap<String, Timestamp>>,
    Mutex<Option<(u64, Timestamp)>>,
    Mutex<Option<std::time::Instant>>,
);

/// Most often the heads held are written to [`HEADS_FILE`] while nothing is flagged and no zone
/// is new: every zone's head is checked every [`HEADS_EVERY`] and on every head heard, and a
/// synced file write for each (it was) stalls a busy node. A head lost to a crash in between is
/// asked for again, with a proof from the older one kept.
pub const KEEP_HEADS_AT_MOST_EVERY: Duration = Duration::from_secs(5);

impl Held {
    /// Reads [`HEADS_FILE`] in `dir` (nothing held when absent or unreadable).
    pub fn load(dir: &Path) -> Held {
        let held = std::fs::read(dir.join(HEADS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<ZoneHead>>(&b).ok())
            .unwrap_or_default();
        Held(
            Mutex::new(held.into_iter().map(|h| (h.zone.clone(), h)).collect()),
            Mutex::default(),
            Mutex::default(),
            Mutex::default(),
        )
    }

    /// Every zone held, by zone id.
    pub fn all(&self) -> Vec<ZoneHead> {
        self.0
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn get(&self, zone: &str) -> Option<ZoneHead> {
        self.0.lock().ok().and_then(|m| m.get(zone).cloned())
    }

    fn set(&self, dir: &Path, head: ZoneHead) {
        let all = {
            let Ok(mut m) = self.0.lock() else { return };
            if m.len() >= MAX_ZONES && !m.contains_key(&head.zone) {
                return;
            }
            let urgent = !head.consistent || !m.contains_key(&head.zone);
            m.insert(head.zone.clone(), head);
            let Ok(mut last) = self.3.lock() else { return };
            let due = last.is_none_or(|t| t.elapsed() >= KEEP_HEADS_AT_MOST_EVERY);
            if !urgent && !due {
                return;
            }
            *last = Some(std::time::Instant::now());
            m.values().cloned().collect::<Vec<_>>()
        };
        let written = serde_json::to_vec_pretty(&all)
            .map_err(std::io::Error::other)
            .and_then(|b| audit::write_private(&dir.join(HEADS_FILE), &b));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not keep the zones' tree heads");
        }
    }
}

/// Most often a heard head makes this node ask its zone (a flood of heads costs one request a
/// second per zone).
pub const ASK_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// A leader publishes its zone's head when it has grown, and at least this often.
pub const PUBLISH_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// The zone and size of a head heard on the tree-head topic of `exchange`, if it verifies
/// (PROTOCOL.md 12.3) and its zone is of that exchange; pure.
pub fn heard(
    data: &[u8],
    exchange: &str,
    trust: &TrustStore,
    now: Timestamp,
) -> Option<(ZoneId, u64)> {
    let limits = tree_head::limits();
    let signed = xchg_protocol::application::SignedMessage::from_bytes(data, &limits).ok()?;
    let claimed: TreeHead = xchg_protocol::canonical::from_canonical(&signed.body, &limits).ok()?;
    if claimed.zone.exchange().as_str() != exchange {
        return None;
    }
    let verified = tree_head::verify(data, &claimed.zone, trust, now, &limits).ok()?;
    Some((verified.body.zone, verified.body.size))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What checking one answer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The head does not verify, or the answer is malformed: nothing changes.
    Unverified(String),
    /// Smaller than the head held (a node behind its zone): nothing changes.
    Behind,
    /// The zone is already flagged: nothing changes.
    AlreadyFlagged,
    /// The new head to hold.
    Accepted(ZoneHead),
    /// The zone contradicted itself: hold this (flagged, with the evidence).
    Inconsistent(ZoneHead),
}

fn hex32(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Checks `head` (a signed head from a node of `zone`) and its consistency `proof` against
/// `held`, the head held of that zone; pure.
pub fn judge(
    held: Option<&ZoneHead>,
    zone: &ZoneId,
    head: &[u8],
    proof: &[Blob],
    trust: &TrustStore,
    now: Timestamp,
) -> Judged {
    let verified = match tree_head::verify(head, zone, trust, now, &tree_head::limits()) {
        Ok(v) => v,
        Err(e) => return Judged::Unverified(format!("{}: {e}", e.kind())),
    };
    if proof.len() > MAX_PROOF_HASHES {
        return Judged::Unverified(format!("a proof of {} hashes", proof.len()));
    }
    let Some(proof) = proof
        .iter()
        .map(|b| <Hash>::try_from(b.0.as_slice()).ok())
        .collect::<Option<Vec<Hash>>>()
    else {
        return Judged::Unverified("a proof hash that is not 32 bytes".into());
    };
    let new: &TreeHead = &verified.body;
    let fresh = ZoneHead {
        zone: zone.to_string(),
        size: new.size,
        root_hash: hex::encode(new.root_hash),
        timestamp: new.timestamp,
        signer: verified.signer.to_string(),
        checked_at: now,
        consistent: true,
        problem: None,
        signed_head: hex::encode(head),
        evidence: None,
    };
    let Some(held) = held else {
        return Judged::Accepted(fresh);
    };
    if !held.consistent {
        return Judged::AlreadyFlagged;
    }
    if new.size < held.size {
        return Judged::Behind;
    }
    let Some(old_root) = hex32(&held.root_hash) else {
        return Judged::Accepted(fresh);
    };
    let problem = if new.size == held.size {
        (new.root_hash != old_root).then(|| {
            format!(
                "two signed heads of {} records with different roots: {} held, {} now",
                new.size, held.root_hash, fresh.root_hash
            )
        })
    } else if verify_consistency(held.size, new.size, &old_root, &new.root_hash, &proof) {
        None
    } else {
        Some(format!(
            "the head of {} records (root {}) does not extend the held head of {} records \
             (root {}): the consistency proof fails",
            new.size, fresh.root_hash, held.size, held.root_hash
        ))
    };
    match problem {
        None => Judged::Accepted(fresh),
        Some(problem) => {
            let mut flagged = held.clone();
            flagged.consistent = false;
            flagged.checked_at = now;
            flagged.problem = Some(problem);
            flagged.evidence = Some(Evidence {
                signed_head: fresh.signed_head,
                size: fresh.size,
                root_hash: fresh.root_hash,
                proof: proof.iter().map(hex::encode).collect(),
            });
            Judged::Inconsistent(flagged)
        }
    }
}

impl Federation {
    /// The heads this node holds of other zones.
    pub fn zone_heads(&self) -> Vec<ZoneHead> {
        self.heads.all()
    }

    /// Whether a head of `size` heard for `zone` is worth asking that zone about now: another
    /// zone's, larger than the one held (or none held), and the zone not asked in the last
    /// [`ASK_AT_MOST_EVERY`]. Notes the ask.
    pub(super) fn wants_check(&self, zone: &ZoneId, size: u64) -> bool {
        if *zone == self.config.zone.id {
            return false;
        }
        if self
            .heads
            .get(zone.as_str())
            .is_some_and(|h| !h.consistent || h.size >= size)
        {
            return false;
        }
        let now = self.clock.now();
        let Ok(mut asked) = self.heads.1.lock() else {
            return false;
        };
        if asked
            .get(zone.as_str())
            .is_some_and(|at| now.0 < at.0.saturating_add(millis(ASK_AT_MOST_EVERY)))
        {
            return false;
        }
        if asked.len() >= MAX_ZONES && !asked.contains_key(zone.as_str()) {
            return false;
        }
        asked.insert(zone.to_string(), now);
        true
    }

    /// Asks a connected, proven node of `zone` for its head and checks it.
    pub(super) async fn check_zone(&self, zone: &ZoneId) {
        let peer = self
            .peer_identities()
            .await
            .into_iter()
            .find_map(|(info, identity)| match identity {
                Identity::Delegated { zone: z } if z == *zone => Some(Peer(info.peer)),
                _ => None,
            });
        if let Some(peer) = peer {
            self.watch_one(zone, peer).await;
        }
    }

    /// While this node leads its zone: publishes the zone's head on its exchange's tree-head
    /// topic when the log has grown since the last one published, or
    /// [`PUBLISH_AT_LEAST_EVERY`] after it.
    async fn publish_own_head(&self, db: &Db) {
        if !self.is_leader() {
            return;
        }
        let read = async {
            let mut conn = db.reader().await?;
            let size = audit::tree_size(&mut conn).await?;
            let root = audit::root(&mut conn, size).await?;
            Ok::<_, sqlx::Error>((size, root))
        };
        let (size, root_hash) = match read.await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the audit tree to publish its head");
                return;
            }
        };
        let now = self.clock.now();
        let due = self.heads.2.lock().is_ok_and(|last| match *last {
            None => true,
            Some((published, at)) => {
                published != size || now.0 >= at.0.saturating_add(millis(PUBLISH_AT_LEAST_EVERY))
            }
        });
        if !due {
            return;
        }
        let head = TreeHead {
            zone: self.config.zone.id.clone(),
            size,
            root_hash,
            timestamp: now,
        };
        let signed = audit::sign_and_keep(
            &self.config.node.data_dir,
            head,
            &self.key,
            self.config.zone.delegation.clone(),
        );
        let topic = crate::gossip::tree_head_topic_of(self.config.exchange.id.as_str());
        match self.net.publish(topic, signed.to_bytes()).await {
            Ok(()) => {
                if let Ok(mut last) = self.heads.2.lock() {
                    *last = Some((size, now));
                }
            }
            Err(e) => tracing::debug!(error = %e, "the zone's tree head was not published"),
        }
    }

    /// The answer to a question for this zone's tree head and the consistency proof from
    /// `from` (PROTOCOL.md 12.7): signed now by this node, from its replica.
    pub(super) async fn answer_tree_head(&self, db: &Db, zone: &ZoneId, from: u64) -> Response {
        let error = |message: String| Response::Error { message };
        let own = &self.config.zone.id;
        if zone != own {
            return error(format!("wrong_zone: this node is of {own}, not {zone}"));
        }
        let mut conn = match db.reader().await {
            Ok(c) => c,
            Err(e) => return error(format!("unavailable: {e}")),
        };
        let read = async {
            let size = audit::tree_size(&mut conn).await?;
            if from > size {
                return Ok(None);
            }
            let root_hash = audit::root(&mut conn, size).await?;
            let proof = audit::consistency_proof(&mut conn, from, size).await?;
            Ok::<_, sqlx::Error>(Some((size, root_hash, proof)))
        };
        let (size, root_hash, proof) = match read.await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return error(format!(
                    "behind: this node holds fewer than {from} records of its zone's log"
                ));
            }
            Err(e) => return error(format!("unavailable: {e}")),
        };
        let head = TreeHead {
            zone: own.clone(),
            size,
            root_hash,
            timestamp: self.clock.now(),
        };
        let signed = audit::sign_and_keep(
            &self.config.node.data_dir,
            head,
            &self.key,
            self.config.zone.delegation.clone(),
        );
        Response::TreeHead {
            head: Blob(signed.to_bytes()),
            proof: proof.into_iter().map(|h| Blob(h.to_vec())).collect(),
        }
    }

    /// Asks `peer`, a node of `zone`, for its head and checks it against the one held.
    async fn watch_one(&self, zone: &ZoneId, peer: Peer) {
        let held = self.heads.get(zone.as_str());
        let from = held.as_ref().map_or(0, |h| h.size);
        let request = Request::TreeHead {
            zone: zone.clone(),
            from,
        };
        let Ok(body) = request.to_bytes() else { return };
        let answer = match self.net.request(peer.clone(), body).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%zone, error = %e, "no tree head from the zone");
                return;
            }
        };
        let (head, proof) = match Response::from_bytes(&answer) {
            Ok(Response::TreeHead { head, proof }) => (head, proof),
            Ok(Response::Error { message }) => {
                tracing::debug!(%zone, message, "the zone did not give its tree head");
                return;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::info!(%zone, error = %e, "an undecodable tree-head answer");
                return;
            }
        };
        let now = self.clock.now();
        match judge(held.as_ref(), zone, &head.0, &proof, &self.trust(), now) {
            Judged::Accepted(h) => self.heads.set(&self.config.node.data_dir, h),
            Judged::Inconsistent(h) => {
                tracing::warn!(
                    %zone,
                    problem = h.problem.as_deref().unwrap_or_default(),
                    "a zone's signed audit heads are inconsistent: it rewrote its history"
                );
                self.heads.set(&self.config.node.data_dir, h);
            }
            Judged::Unverified(why) => {
                tracing::info!(%zone, %peer, why, "a tree head that does not verify");
            }
            Judged::Behind | Judged::AlreadyFlagged => {}
        }
    }

    /// Every [`HEADS_EVERY`]: while leading, publishes this zone's head
    /// ([`Federation::publish_own_head`]); asks one connected, proven node of each other zone
    /// for its head ([`Federation::watch_one`]), all at once.
    pub(super) async fn heads_loop(self: Arc<Self>, db: Db, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = self.clock.sleep(HEADS_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            self.publish_own_head(&db).await;
            let own = &self.config.zone.id;
            let mut zones: BTreeMap<ZoneId, Peer> = BTreeMap::new();
            for (info, identity) in self.peer_identities().await {
                if let Identity::Delegated { zone } = identity
                    && zone != *own
                    && zones.len() < MAX_ZONES
                {
                    zones.entry(zone).or_insert(Peer(info.peer));
                }
            }
            let this = &self;
            let asks = zones
                .into_iter()
                .map(|(zone, peer)| async move { this.watch_one(&zone, peer).await });
            futures::future::join_all(asks).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xchg_protocol::application_vectors as av;
    use xchg_protocol::merkle::{MemoryTree, leaf_hash};
    use xchg_protocol::vectors::NOW;

    const ZONE: &str = "zhengzhou/zhongyuan";

    fn trust() -> TrustStore {
        let mut t = TrustStore::default();
        t.trust("zhengzhou".parse().expect("id"), av::origin_root().public());
        t
    }

    fn tree(records: &[&str]) -> MemoryTree {
        MemoryTree::new(records.iter().map(|r| leaf_hash(r.as_bytes())))
    }

    /// A head of `tree` at `size`, signed with the zone's key material, and the proof from
    /// `from`.
    fn answer(tree: &MemoryTree, size: u64, from: u64) -> (Vec<u8>, Vec<Blob>) {
        let head = TreeHead {
            zone: ZONE.parse().expect("zone"),
            size,
            root_hash: tree.root(size),
            timestamp: Timestamp(NOW.0 - 1000),
        };
        let signed = tree_head::sign(&head, &av::origin_node(), av::origin_delegation(ZONE));
        let proof = tree
            .consistency(from, size)
            .into_iter()
            .map(|h| Blob(h.to_vec()))
            .collect();
        (signed.to_bytes(), proof)
    }

    fn check(held: Option<&ZoneHead>, answer: &(Vec<u8>, Vec<Blob>)) -> Judged {
        let zone: ZoneId = ZONE.parse().expect("zone");
        judge(held, &zone, &answer.0, &answer.1, &trust(), NOW)
    }

    fn accepted(j: Judged) -> ZoneHead {
        match j {
            Judged::Accepted(h) => h,
            other => panic!("not accepted: {other:?}"),
        }
    }

    #[test]
    fn the_heads_file_is_written_for_a_new_or_flagged_zone_at_once_and_else_at_most_every_5_s() {
        let dir = tempfile::tempdir().expect("dir");
        let sizes = || -> Vec<(u64, bool)> {
            let bytes = std::fs::read(dir.path().join(HEADS_FILE)).expect("the file");
            let held: Vec<ZoneHead> = serde_json::from_slice(&bytes).expect("json");
            held.iter().map(|h| (h.size, h.consistent)).collect()
        };
        let honest = tree(&["a", "b", "c", "d"]);
        let first = accepted(check(None, &answer(&honest, 2, 0)));
        let held = Held::default();
        held.set(dir.path(), first.clone());
        assert_eq!(sizes(), [(2, true)], "a new zone is written at once");
        let grown = accepted(check(Some(&first), &answer(&honest, 4, 2)));
        held.set(dir.path(), grown.clone());
        assert_eq!(
            sizes(),
            [(2, true)],
            "a grown head waits for the next write"
        );
        assert_eq!(
            held.get(ZONE).map(|h| h.size),
            Some(4),
            "held in memory meanwhile"
        );
        let flagged = ZoneHead {
            consistent: false,
            ..grown
        };
        held.set(dir.path(), flagged);
        assert_eq!(sizes(), [(4, false)], "a flag is written at once");
    }

    #[test]
    fn a_growing_log_is_accepted_and_a_rewritten_one_is_caught_with_its_evidence() {
        let honest = tree(&["a", "b", "c", "d", "e", "f", "g"]);
        let first = accepted(check(None, &answer(&honest, 3, 0)));
        assert_eq!(first.size, 3);
        let second = accepted(check(Some(&first), &answer(&honest, 7, 3)));
        assert_eq!((second.size, second.consistent), (7, true));
        assert_eq!(check(Some(&second), &answer(&honest, 5, 0)), Judged::Behind);

        // The zone rewrites record "b" and signs a head of the new log, with its key, and a
        // proof made from the new log: the proof cannot tie it to the held head.
        let forged = tree(&["a", "B", "c", "d", "e", "f", "g", "h"]);
        let Judged::Inconsistent(flagged) = check(Some(&second), &answer(&forged, 8, 7)) else {
            panic!("not caught")
        };
        assert!(!flagged.consistent);
        assert_eq!(flagged.size, 7, "the last consistent head stays held");
        let evidence = flagged.evidence.clone().expect("evidence");
        assert_eq!(evidence.size, 8);
        assert!(
            flagged
                .problem
                .as_deref()
                .unwrap_or_default()
                .contains("does not extend")
        );
        assert_eq!(
            check(Some(&flagged), &answer(&honest, 7, 7)),
            Judged::AlreadyFlagged
        );

        // Two heads of one size with different roots.
        let Judged::Inconsistent(same_size) = check(Some(&second), &answer(&forged, 7, 7)) else {
            panic!("not caught")
        };
        assert!(
            same_size
                .problem
                .unwrap_or_default()
                .contains("different roots")
        );
    }

    #[test]
    fn a_head_that_does_not_verify_changes_nothing() {
        let honest = tree(&["a", "b", "c"]);
        let held = accepted(check(None, &answer(&honest, 2, 0)));
        let (mut bytes, proof) = answer(&honest, 3, 2);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            check(Some(&held), &(bytes, proof.clone())),
            Judged::Unverified(_)
        ));
        let zone: ZoneId = "zhengzhou/erqi".parse().expect("zone");
        let (bytes, _) = answer(&honest, 3, 2);
        assert!(matches!(
            judge(Some(&held), &zone, &bytes, &proof, &trust(), NOW),
            Judged::Unverified(why) if why.starts_with("not_asked")
        ));
    }

    #[test]
    fn a_valid_head_on_its_exchanges_topic_is_forwarded_and_asked_about_and_others_are_rejected() {
        use crate::federation::core::{Input, Output};
        use crate::federation::testkit::{self, Kit};
        use crate::gossip::{Verdict, tree_head_topic_of};
        let kit = Kit::new();
        let mut core = kit.core(false);
        let at = Timestamp(testkit::NOW.0 - 1000);
        let mut deliver = |exchange: &str, data: Vec<u8>| {
            let input = Input::Message {
                message: testkit::reference(&data, "peer-1"),
                topic: tree_head_topic_of(exchange),
                data,
            };
            core.handle(input, testkit::NOW)
        };
        let out = deliver("zhengzhou", kit.partner_head(9, [1; 32], at));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::HeadHeard { zone, size: 9 }
            if zone.as_str() == "zhengzhou/main"))
        );
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Report {
                verdict: Verdict::Accept,
                ..
            }
        )));
        // On another exchange's topic, tampered, or by an untrusted root: rejected, not asked.
        let mut tampered = kit.partner_head(9, [1; 32], at);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        for (exchange, data) in [
            ("xuchang", kit.partner_head(9, [1; 32], at)),
            ("zhengzhou", tampered),
            ("zhengzhou", Kit::stranger().partner_head(9, [1; 32], at)),
        ] {
            let out = deliver(exchange, data);
            assert!(!out.iter().any(|o| matches!(o, Output::HeadHeard { .. })));
            assert!(out.iter().any(|o| matches!(
                o,
                Output::Report {
                    verdict: Verdict::Reject,
                    ..
                }
            )));
        }
    }
}
