//! Applications across exchanges on the wire (PROTOCOL.md 11.7): the origin answering a
//! forwarded request, and the applicant's leader forwarding its zone's applications and asking
//! after their decisions.
//!
//! A request travels as the catch-up request `{"application": {"request": ...}}` to a node of
//! the listing's origin zone, or to a node of another zone of the origin's exchange, which
//! passes it on to a connected node of the origin zone (the generated layouts connect every
//! node to the other exchange's hub zone, and the hub zone to every zone of its exchange). The
//! answer is `received` (recorded, awaiting the operator), `decided` (the signed decision) or
//! `refused`. Sending the same request again is both the retry and the question "decided
//! yet?": its body, and so its id, never changes, and the origin records it once.
//!
//! When to send again is [`Schedule`]'s, with no IO: with backoff while the origin is
//! unreachable or refuses, at a slower pace while the origin's operator has not decided.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use xchg_protocol::application::{
    self as protocol, ApplicationRequest, SignedMessage, verify_decision, verify_request,
};
use xchg_protocol::canonical::from_canonical;
use xchg_protocol::catchup::{ApplicationAnswer, Blob, Request, Response};
use xchg_protocol::precedents::{self as precedents_protocol, Question};
use xchg_protocol::{ContentId, Domain, Timestamp, ZoneId};

use super::driver::Federation;
use super::identity::Identity;
use super::verdicts::{Reason, VerdictRecord, Via};
use crate::catalog::across::{self, ReceivedApplication, ReceivedDecision};
use crate::catalog::applications::ApplicationState;
use crate::catalog::precedents::{self, ReceivedPrecedents};
use crate::catalog::tables::applications::{self as table, AcrossRow};
use crate::catalog::{CatalogCommand, PEER_CHARS, Refusal};
use crate::gossip::{Peer, PeerInfo};
use crate::raft::client::Proposer;
use crate::store::Db;

/// Time between the leader's forwarding rounds.
pub const ROUND_EVERY: Duration = Duration::from_secs(1);
/// Most applications one round sends, at once.
pub const ROUND_MOST: usize = 16;
/// Most open applications one round reads.
const READ_MOST: u32 = 512;
/// The first wait after a failed send; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait after failed sends.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The first wait before asking an origin that acknowledged again; it doubles up to
/// [`MAX_POLL`].
pub const FIRST_POLL: Duration = Duration::from_secs(2);
/// The longest wait before asking an acknowledging origin again.
pub const MAX_POLL: Duration = Duration::from_secs(30);
/// Least time between two fetches of an origin's precedents for one listing and scenario.
pub const PRECEDENTS_EVERY: Duration = Duration::from_secs(10);
/// Most (origin, listing, scenario) fetch times the leader remembers; beyond, it forgets them
/// all (and fetches each again at most once more).
const PRECEDENTS_REMEMBERED: usize = 10_000;

/// When each open application is next sent, with no IO: the leader's, forgotten when it stops
/// leading (the next leader starts by sending each at once, which is harmless: the origin
/// answers a request it holds with what it holds).
#[derive(Debug, Default)]
pub struct Schedule {
    next: HashMap<u64, Next>,
    /// Where the next round reads on ([`Schedule::cursor`]).
    after: u64,
}

/// When one application is next due, and how many sends in a row were answered alike.
#[derive(Debug, Clone, Copy)]
struct Next {
    /// Whether those sends were acknowledged (else they failed).
    acknowledged: bool,
    times: u32,
    at: Timestamp,
    /// Sends so far, whatever their answers (which connected node the next one goes to).
    sends: usize,
}

/// How one send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The origin holds it, undecided.
    Acknowledged,
    /// The decision is recorded: nothing more to send.
    Settled,
    /// Not delivered or not answered usefully; why.
    Failed(String),
}

fn doubled(first: Duration, most: Duration, times: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(times.min(16)))
        .min(most)
}

impl Schedule {
    /// Whether application `id` is due at `now` (one never sent is).
    pub fn is_due(&self, id: u64, now: Timestamp) -> bool {
        self.next.get(&id).is_none_or(|n| n.at <= now)
    }

    /// Records how sending `id` at `now` went: the wait doubles while sends are answered
    /// alike, and starts afresh when the answer changes (PROTOCOL.md 11.7).
    pub fn sent(&mut self, id: u64, outcome: &Sent, now: Timestamp) {
        let (acknowledged, first, most) = match outcome {
            Sent::Settled => {
                self.next.remove(&id);
                return;
            }
            Sent::Acknowledged => (true, FIRST_POLL, MAX_POLL),
            Sent::Failed(_) => (false, FIRST_BACKOFF, MAX_BACKOFF),
        };
        let before = self.next.get(&id);
        let sends = before.map_or(0, |n| n.sends) + 1;
        let times = before
            .filter(|n| n.acknowledged == acknowledged)
            .map_or(0, |n| n.times);
        let at = now.plus_millis(millis(doubled(first, most, times)));
        self.next.insert(
            id,
            Next {
                acknowledged,
                times: times + 1,
                at,
                sends,
            },
        );
    }

    /// How many times application `id` was sent (the next send goes to the next connected
    /// node of its origin, [`peer_for`]).
    pub fn turn(&self, id: u64) -> usize {
        self.next.get(&id).map_or(0, |n| n.sends)
    }

    /// The id after which the next round reads the open applications.
    pub fn cursor(&self) -> u64 {
        self.after
    }

    /// Of `page` (the open applications with ids above [`Self::cursor`], in id order, at most
    /// `read_most`), those to send at `now`, at most [`ROUND_MOST`]. Forgets the applications
    /// in the page's range that it no longer shows (closed), and moves the cursor past what it
    /// looked at, back to the start after the last page: every open application is looked at
    /// in turn, however many wait ahead of it for their origins.
    pub fn due(
        &mut self,
        page: Vec<AcrossRow>,
        read_most: usize,
        now: Timestamp,
    ) -> Vec<AcrossRow> {
        let after = self.after;
        let last_page = page.len() < read_most;
        let upto = match page.last() {
            Some(r) if !last_page => r.id,
            _ => u64::MAX,
        };
        let shown: HashSet<u64> = page.iter().map(|r| r.id).collect();
        self.next
            .retain(|id, _| *id <= after || *id > upto || shown.contains(id));
        let due: Vec<AcrossRow> = page
            .into_iter()
            .filter(|r| self.is_due(r.id, now))
            .take(ROUND_MOST)
            .collect();
        self.after = match due.last() {
            // More may be due after it: the next round starts there.
            Some(r) if due.len() == ROUND_MOST => r.id,
            _ if last_page => 0,
            _ => upto,
        };
        due
    }

    /// Forgets everything (this node stopped leading).
    pub fn clear(&mut self) {
        self.next.clear();
        self.after = 0;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The peer to send a request for `origin` to on its `turn`-th send: the connected, proven
/// nodes of that zone in turn, else those of another zone of its exchange (which pass it on).
/// Taking them in turn keeps one node that cannot answer (cut off from its zone's leader, or
/// lying) from holding an application for ever.
fn peer_for(origin: &ZoneId, peers: &[(PeerInfo, Identity)], turn: usize) -> Option<Peer> {
    let of = |pred: &dyn Fn(&ZoneId) -> bool| -> Option<Peer> {
        let mut matching: Vec<&PeerInfo> = peers
            .iter()
            .filter_map(|(info, identity)| match identity {
                Identity::Delegated { zone } if pred(zone) => Some(info),
                _ => None,
            })
            .collect();
        // In a fixed order, whatever order the transport lists them in.
        matching.sort_by(|a, b| a.peer.cmp(&b.peer));
        let n = matching.len();
        (n > 0).then(|| Peer(matching[turn % n].peer.clone()))
    };
    of(&|z| z == origin).or_else(|| of(&|z| z.exchange() == origin.exchange()))
}

fn refused(kind: &str, message: impl Into<String>) -> Response {
    Response::Application(ApplicationAnswer::Refused {
        kind: kind.to_owned(),
        message: message.into(),
    })
}

impl Federation {
    fn sign(&self, domain: Domain, body: Vec<u8>) -> Vec<u8> {
        SignedMessage::seal(domain, body, &self.key, self.config.zone.delegation.clone()).to_bytes()
    }

    /// Records a refused application message in the verdict journal.
    fn note_application(
        &self,
        from: &Peer,
        bytes: &[u8],
        claimed: Option<ContentId>,
        kind: &'static str,
        detail: String,
    ) {
        self.record(
            Reason::Verification(kind),
            VerdictRecord {
                at: self.clock.now(),
                verdict: "reject",
                kind,
                content_id: claimed.map(|c| c.to_string()),
                message_id: ContentId::of(bytes).to_string(),
                peer: from.0.chars().take(PEER_CHARS).collect(),
                exchange: None,
                via: Via::Application,
                detail: Some(detail),
            },
        );
    }

    /// The origin's answer to a forwarded request `bytes` from `from` (PROTOCOL.md 11.7).
    pub(super) async fn answer_application(
        self: &Arc<Self>,
        db: &Db,
        proposer: &Proposer,
        from: &Peer,
        bytes: Vec<u8>,
    ) -> Response {
        let now = self.clock.now();
        let limits = protocol::limits();
        let verified = match verify_request(&bytes, &self.trust(), now, &limits) {
            Ok(v) => v,
            Err(e) => {
                let claimed = SignedMessage::from_bytes(&bytes, &limits)
                    .ok()
                    .map(|m| m.id);
                self.note_application(from, &bytes, claimed, e.kind(), e.to_string());
                return refused(e.kind(), e.to_string());
            }
        };
        let request = &verified.body;
        let own = &self.config.zone.id;
        if request.origin != *own {
            if request.origin.exchange() == self.config.exchange.id {
                return self.pass_on(&request.origin, bytes).await;
            }
            let why = format!(
                "addressed to {}, not to a zone of this exchange",
                request.origin
            );
            self.note_application(from, &bytes, Some(verified.id), "wrong_zone", why.clone());
            return refused("wrong_zone", why);
        }
        let applicant = request.applicant.to_string();
        match self.held(db, &applicant, request.application).await {
            Ok(Some(row)) => return self.answer_held(from, &bytes, &verified.id, &row),
            Ok(None) => {}
            Err(e) => return refused("unavailable", e),
        }
        // What this zone's state already refuses is answered without a write.
        let unrecordable = match db.reader().await {
            Ok(mut conn) => across::unrecordable(&mut conn, own, request, now).await,
            Err(e) => Err(e),
        };
        match unrecordable {
            Ok(None) => {}
            Ok(Some(refusal)) => return self.refuse(from, &bytes, verified.id, &refusal),
            Err(e) => return refused("unavailable", e.to_string()),
        }
        let command = CatalogCommand::ReceiveApplication(Box::new(ReceivedApplication {
            request: bytes.clone(),
            received_from: from.0.chars().take(PEER_CHARS).collect(),
            at: now,
            node: self.config.node.name.to_string(),
        }));
        match proposer.propose(command).await {
            Ok((Ok(_), index)) => {
                // The answer is read from this replica: wait until it applied the record.
                let applied = self
                    .raft
                    .wait(Some(Duration::from_secs(5)))
                    .applied_index_at_least(Some(index), "application recorded")
                    .await;
                if applied.is_err() {
                    return refused(
                        "unavailable",
                        "recorded; this node is catching up: ask again",
                    );
                }
                match self.held(db, &applicant, request.application).await {
                    Ok(Some(row)) => self.answer_held(from, &bytes, &verified.id, &row),
                    Ok(None) => refused("unavailable", "recorded, not yet readable: ask again"),
                    Err(e) => refused("unavailable", e),
                }
            }
            Ok((Err(refusal), _)) => self.refuse(from, &bytes, verified.id, &refusal),
            Err(e) => refused("unavailable", e.message),
        }
    }

    /// Refuses request `bytes` (id `id`) from `from` as the zone's rules do, and records it.
    fn refuse(&self, from: &Peer, bytes: &[u8], id: ContentId, refusal: &Refusal) -> Response {
        let kind = refusal.code();
        self.note_application(from, bytes, Some(id), kind, refusal.to_string());
        refused(kind, refusal.to_string())
    }

    async fn held(
        &self,
        db: &Db,
        applicant: &str,
        application: u64,
    ) -> Result<Option<AcrossRow>, String> {
        let mut conn = db.reader().await.map_err(|e| e.to_string())?;
        table::forwarded_by_read(&mut conn, applicant, application)
            .await
            .map_err(|e| e.to_string())
    }

    /// The answer for a request this zone holds as `row`.
    fn answer_held(&self, from: &Peer, bytes: &[u8], id: &ContentId, row: &AcrossRow) -> Response {
        if row.request_id.as_deref() != Some(id.to_string().as_str()) {
            let why = format!(
                "this application number was already forwarded as request {}",
                row.request_id.as_deref().unwrap_or("-")
            );
            self.note_application(from, bytes, Some(*id), "conflict", why.clone());
            return refused("conflict", why);
        }
        match &row.decision_body {
            Some(body) => Response::Application(ApplicationAnswer::Decided {
                decision: Blob(self.sign(Domain::ApplicationDecision, body.clone())),
            }),
            None => Response::Application(ApplicationAnswer::Received {}),
        }
    }

    /// Passes a request for `origin`, another zone of this exchange, on to a connected node of
    /// it, and answers what it answered.
    async fn pass_on(&self, origin: &ZoneId, bytes: Vec<u8>) -> Response {
        self.pass_on_request(
            origin,
            &Request::Application {
                request: Blob(bytes),
            },
        )
        .await
        .unwrap_or_else(|why| refused("origin_unreachable", why))
    }

    /// Sends `request` on to a connected node of `zone`, another zone of this exchange; its
    /// answer, or why there is none.
    async fn pass_on_request(&self, zone: &ZoneId, request: &Request) -> Result<Response, String> {
        let peers = self.peer_identities().await;
        let target = peers.iter().find_map(|(info, identity)| match identity {
            Identity::Delegated { zone: z } if z == zone => Some(Peer(info.peer.clone())),
            _ => None,
        });
        let peer = target.ok_or_else(|| format!("no node of {zone} is connected here"))?;
        let body = request.to_bytes().map_err(|e| e.to_string())?;
        let answer = self
            .net
            .request(peer, body)
            .await
            .map_err(|e| format!("{zone}: {e}"))?;
        Response::from_bytes(&answer).map_err(|e| format!("{zone} answered: {e}"))
    }

    /// The answer to a question for `zone`'s precedents on `listing_id` for `scenario`
    /// (PROTOCOL.md 11.8): this zone's list, signed by this node, or the question passed on to
    /// a node of `zone` when it is another zone of this exchange.
    pub(super) async fn answer_precedents(
        &self,
        db: &Db,
        zone: &ZoneId,
        listing_id: &ContentId,
        scenario: &str,
    ) -> Response {
        let error = |message: String| Response::Error { message };
        let own = &self.config.zone.id;
        if zone != own {
            if zone.exchange() != self.config.exchange.id {
                return error(format!("wrong_zone: {zone} is not a zone of this exchange"));
            }
            let request = Request::Precedents {
                zone: zone.clone(),
                listing_id: *listing_id,
                scenario: scenario.to_owned(),
            };
            return self
                .pass_on_request(zone, &request)
                .await
                .unwrap_or_else(|why| error(format!("origin_unreachable: {why}")));
        }
        let list = match db.reader().await {
            Ok(mut conn) => {
                precedents::own_list(&mut conn, own, listing_id, scenario, self.clock.now()).await
            }
            Err(e) => Err(e),
        };
        match list {
            Ok(Some(list)) => Response::Precedents {
                list: Blob(
                    precedents_protocol::sign(
                        &list,
                        &self.key,
                        self.config.zone.delegation.clone(),
                    )
                    .to_bytes(),
                ),
            },
            Ok(None) => error(format!("not_found: {listing_id} is not a listing of {own}")),
            Err(e) => error(format!("unavailable: {e}")),
        }
    }

    /// Fetches `origin`'s precedents for the listing and scenario of application `row` from
    /// a connected node of its exchange, verifies them against that question, and records them
    /// when they differ from those held; whether a new list was recorded.
    async fn refresh_precedents(
        &self,
        db: &Db,
        proposer: &Proposer,
        peers: &[(PeerInfo, Identity)],
        origin: &ZoneId,
        asked: &ApplicationRequest,
        turn: usize,
    ) -> Result<bool, String> {
        let peer = peer_for(origin, peers, turn)
            .ok_or_else(|| format!("no node of exchange {} is connected", origin.exchange()))?;
        let request = Request::Precedents {
            zone: origin.clone(),
            listing_id: asked.listing_id,
            scenario: asked.scenario.clone(),
        };
        let body = request.to_bytes().map_err(|e| e.to_string())?;
        let answer = self
            .net
            .request(peer.clone(), body)
            .await
            .map_err(|e| format!("{}: {e}", peer.0))?;
        let list = match Response::from_bytes(&answer) {
            Ok(Response::Precedents { list }) => list.0,
            Ok(Response::Error { message }) => return Err(message),
            Ok(_) => return Err("answered with something else".into()),
            Err(e) => return Err(format!("undecodable answer: {e}")),
        };
        let question = Question {
            zone: origin,
            listing_id: &asked.listing_id,
            scenario: &asked.scenario,
        };
        let limits = precedents_protocol::limits();
        let now = self.clock.now();
        let verified =
            match precedents_protocol::verify(&list, &question, &self.trust(), now, &limits) {
                Ok(v) => v,
                Err(e) => {
                    let claimed = SignedMessage::from_bytes(&list, &limits).ok().map(|m| m.id);
                    self.note_application(&peer, &list, claimed, e.kind(), e.to_string());
                    return Err(format!("the precedents failed verification: {e}"));
                }
            };
        let mut conn = db.reader().await.map_err(|e| e.to_string())?;
        if precedents::unchanged(&mut conn, &verified.body)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(false);
        }
        drop(conn);
        let command = CatalogCommand::RecordPrecedents(Box::new(ReceivedPrecedents {
            list,
            received_from: peer.0.chars().take(PEER_CHARS).collect(),
            at: now,
            node: self.config.node.name.to_string(),
        }));
        match proposer.propose(command).await {
            Ok((Ok(_), _)) => Ok(true),
            Ok((Err(refusal), _)) => Err(format!("not recorded: {refusal}")),
            Err(e) => Err(format!("not recorded: {}", e.message)),
        }
    }

    /// While this node leads, every [`ROUND_EVERY`]: sends the zone's applications awaiting
    /// another exchange that are due, and records what the origins answer.
    pub(super) async fn forward_loop(
        self: Arc<Self>,
        db: Db,
        proposer: Proposer,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut schedule = Schedule::default();
        // When each (origin, listing, scenario)'s precedents were last fetched.
        let mut fetched: HashMap<(String, ContentId, String), Timestamp> = HashMap::new();
        loop {
            tokio::select! {
                () = self.clock.sleep(ROUND_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if !self.is_leader() {
                schedule.clear();
                continue;
            }
            let page = match db.reader().await {
                Ok(mut conn) => {
                    table::awaiting_origin(&mut conn, schedule.cursor(), READ_MOST).await
                }
                Err(e) => Err(e),
            };
            let page = match page {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the applications awaiting other exchanges");
                    continue;
                }
            };
            let now = self.clock.now();
            let due = schedule.due(page, READ_MOST as usize, now);
            if due.is_empty() {
                continue;
            }
            let peers = self.peer_identities().await;
            let sends = due
                .iter()
                .map(|row| self.forward_one(&proposer, &peers, row, schedule.turn(row.id)));
            let outcomes = join_all(sends).await;
            for (row, outcome) in due.iter().zip(&outcomes) {
                if let Sent::Failed(why) = &outcome {
                    let origin = row.origin_zone.as_deref().unwrap_or("-");
                    if row.state == ApplicationState::Forwarding {
                        tracing::info!(
                            application = row.id,
                            origin,
                            why,
                            "application not forwarded yet; will retry"
                        );
                    } else {
                        tracing::info!(
                            application = row.id,
                            origin,
                            why,
                            "no answer from the origin on an application it holds; will ask again"
                        );
                    }
                }
                schedule.sent(row.id, outcome, now);
            }
            // The origin answers: its precedents for what was asked, now and then, all at once
            // (one origin node that never answers holds up none of the others).
            let mut asks = Vec::new();
            for (row, outcome) in due.iter().zip(&outcomes) {
                if !matches!(outcome, Sent::Acknowledged | Sent::Settled) {
                    continue;
                }
                let (Some(origin), Some(body)) = (&row.origin_zone, &row.request_body) else {
                    continue;
                };
                let (Ok(origin), Ok(asked)) = (
                    origin.parse::<ZoneId>(),
                    from_canonical::<ApplicationRequest>(body, &protocol::limits()),
                ) else {
                    continue;
                };
                let key = (origin.to_string(), asked.listing_id, asked.scenario.clone());
                let every = millis(PRECEDENTS_EVERY);
                if fetched
                    .get(&key)
                    .is_some_and(|at| now.0 < at.0.saturating_add(every))
                {
                    continue;
                }
                if fetched.len() >= PRECEDENTS_REMEMBERED {
                    fetched.clear();
                }
                fetched.insert(key, now);
                asks.push((row.id, origin, asked, schedule.turn(row.id)));
            }
            let (this, db, proposer, peers) = (&self, &db, &proposer, &peers);
            let refreshes = asks.iter().map(|(id, origin, asked, turn)| async move {
                let result = this
                    .refresh_precedents(db, proposer, peers, origin, asked, *turn)
                    .await;
                (*id, origin, result)
            });
            for (id, origin, result) in join_all(refreshes).await {
                match result {
                    Ok(true) => tracing::debug!(application = id, "precedents recorded"),
                    Ok(false) => {}
                    Err(why) => tracing::info!(
                        application = id,
                        origin = %origin,
                        why,
                        "precedents not fetched; will ask again"
                    ),
                }
            }
        }
    }

    /// Sends application `row` to its origin once and records the answer.
    async fn forward_one(
        &self,
        proposer: &Proposer,
        peers: &[(PeerInfo, Identity)],
        row: &AcrossRow,
        turn: usize,
    ) -> Sent {
        let (Some(origin), Some(body)) = (&row.origin_zone, &row.request_body) else {
            return Sent::Failed("no request recorded".into());
        };
        let Ok(origin) = origin.parse::<ZoneId>() else {
            return Sent::Failed(format!("origin {origin:?} is not a zone id"));
        };
        let now = self.clock.now();
        let limits = protocol::limits();
        let trust = self.trust();
        let signed = self.sign(Domain::ApplicationRequest, body.clone());
        // What the decision is checked against; this node's own signature verifies unless its
        // delegation did not cover the request's time (another member may then send it).
        let request = match verify_request(&signed, &trust, now, &limits) {
            Ok(r) => r,
            Err(e) => return Sent::Failed(format!("this node cannot sign the request: {e}")),
        };
        let Some(peer) = peer_for(&origin, peers, turn) else {
            return Sent::Failed(format!(
                "no node of exchange {} is connected",
                origin.exchange()
            ));
        };
        let message = match (Request::Application {
            request: Blob(signed),
        })
        .to_bytes()
        {
            Ok(m) => m,
            Err(e) => return Sent::Failed(e.to_string()),
        };
        let answer = match self.net.request(peer.clone(), message).await {
            Ok(a) => a,
            Err(e) => return Sent::Failed(format!("{}: {e}", peer.0)),
        };
        let command = match Response::from_bytes(&answer) {
            Ok(Response::Application(ApplicationAnswer::Received {})) => {
                if row.state != ApplicationState::Forwarding {
                    return Sent::Acknowledged;
                }
                CatalogCommand::ApplicationForwarded {
                    application_id: row.id,
                    at: now,
                    node: self.config.node.name.to_string(),
                }
            }
            Ok(Response::Application(ApplicationAnswer::Decided { decision })) => {
                if let Err(e) = verify_decision(&decision.0, &request, &trust, now, &limits) {
                    let claimed = SignedMessage::from_bytes(&decision.0, &limits)
                        .ok()
                        .map(|m| m.id);
                    self.note_application(&peer, &decision.0, claimed, e.kind(), e.to_string());
                    return Sent::Failed(format!(
                        "the decision from {} failed verification: {e}",
                        peer.0
                    ));
                }
                CatalogCommand::ApplicationDecided(Box::new(ReceivedDecision {
                    application_id: row.id,
                    decision: decision.0,
                    received_from: peer.0.chars().take(PEER_CHARS).collect(),
                    at: now,
                    node: self.config.node.name.to_string(),
                }))
            }
            Ok(Response::Application(ApplicationAnswer::Refused { kind, message })) => {
                return Sent::Failed(format!("refused ({kind}): {message}"));
            }
            Ok(Response::Error { message }) => return Sent::Failed(message),
            Ok(_) => return Sent::Failed("answered with something else".into()),
            Err(e) => return Sent::Failed(format!("undecodable answer: {e}")),
        };
        let settles = matches!(command, CatalogCommand::ApplicationDecided(_));
        match proposer.propose(command).await {
            Ok((Ok(_), _)) if settles => Sent::Settled,
            Ok((Ok(_), _)) => Sent::Acknowledged,
            Ok((Err(refusal), _)) => Sent::Failed(format!("not recorded: {refusal}")),
            Err(e) => Sent::Failed(format!("not recorded: {}", e.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_000_000);

    fn at(ms: u64) -> Timestamp {
        T0.plus_millis(ms)
    }

    #[test]
    fn an_application_never_sent_is_due_at_once() {
        assert!(Schedule::default().is_due(7, T0));
    }

    #[test]
    fn failures_back_off_doubling_up_to_a_minute() {
        let mut s = Schedule::default();
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            s.sent(7, &Sent::Failed("down".into()), now);
            let next = s.next[&7].at;
            waits.push(next.0 - now.0);
            assert!(!s.is_due(7, now.plus_millis(next.0 - now.0 - 1)));
            assert!(s.is_due(7, next));
            now = next;
        }
        assert_eq!(
            waits,
            [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
    }

    #[test]
    fn an_acknowledged_application_is_asked_after_at_a_slower_pace_and_a_settled_one_never() {
        let mut s = Schedule::default();
        s.sent(7, &Sent::Acknowledged, T0);
        assert!(!s.is_due(7, at(1999)));
        assert!(s.is_due(7, at(2000)));
        s.sent(7, &Sent::Settled, at(2000));
        assert!(s.next.is_empty());
    }

    /// Open applications `ids`, as the table reads them.
    fn rows(ids: std::ops::RangeInclusive<u64>) -> Vec<AcrossRow> {
        ids.map(|id| AcrossRow {
            id,
            state: ApplicationState::Submitted,
            origin_zone: Some("zhengzhou/main".into()),
            applicant_zone: None,
            request_id: None,
            request_body: None,
            decision_id: None,
            decision_body: None,
            authorization_id: None,
        })
        .collect()
    }

    /// What [`table::awaiting_origin`] reads of `open` after `after`, at most `most`.
    fn page(open: &[AcrossRow], after: u64, most: usize) -> Vec<AcrossRow> {
        open.iter()
            .filter(|r| r.id > after)
            .take(most)
            .cloned()
            .collect()
    }

    #[test]
    fn applications_beyond_one_read_are_sent_while_earlier_ones_wait_for_their_origin() {
        // More open applications than one round reads, the first ones all acknowledged just
        // now: the later ones must not wait until an operator elsewhere decides the first.
        let most = usize::try_from(READ_MOST).expect("small");
        let last = u64::from(READ_MOST) + 88;
        let open = rows(1..=last);
        let mut s = Schedule::default();
        for id in 1..=u64::from(READ_MOST) {
            s.sent(id, &Sent::Acknowledged, T0);
        }
        let mut sent = Vec::new();
        for _ in 0..12 {
            let due = s.due(page(&open, s.cursor(), most), most, T0);
            for r in due {
                s.sent(r.id, &Sent::Failed("down".into()), T0);
                sent.push(r.id);
            }
        }
        let later: Vec<u64> = (u64::from(READ_MOST) + 1..=last).collect();
        assert_eq!(sent, later, "each later one once, none of the waiting ones");
        assert_eq!(s.next.len(), open.len(), "nothing open is forgotten");
    }

    #[test]
    fn an_acknowledgement_after_failures_is_asked_after_again_from_two_seconds_and_back() {
        // PROTOCOL.md 11.7: each kind of answer has its own pace, starting afresh.
        let mut s = Schedule::default();
        for i in 0..6 {
            s.sent(7, &Sent::Failed("down".into()), at(i));
        }
        s.sent(7, &Sent::Acknowledged, at(10));
        assert!(s.is_due(7, at(10 + 2000)), "asked again after 2 s");
        for i in 0..6 {
            s.sent(7, &Sent::Acknowledged, at(20 + i));
        }
        s.sent(7, &Sent::Failed("refused".into()), at(40));
        assert!(s.is_due(7, at(40 + 1000)), "sent again after 1 s");
    }

    /// A connected peer `name` proven to speak for `zone`.
    fn proven_as(name: &str, zone: &str) -> (PeerInfo, Identity) {
        let info = PeerInfo {
            peer: name.into(),
            address: None,
            agent: None,
            score: None,
            topics: std::sync::Arc::from([]),
            last_message_ms: None,
            messages: 0,
            connected_since_ms: None,
        };
        let zone = zone.parse().expect("zone id");
        (info, Identity::Delegated { zone })
    }

    #[test]
    fn sends_again_go_to_each_connected_node_of_the_origin_in_turn() {
        // One node of the origin that cannot answer (partitioned from its zone's leader, or
        // lying that it holds the request) must not hold the application for ever.
        let origin: ZoneId = "zhengzhou/main".parse().expect("zone id");
        let peers = [
            proven_as("relay", "zhengzhou/erqi"),
            proven_as("a", "zhengzhou/main"),
            proven_as("b", "zhengzhou/main"),
        ];
        let tried: Vec<String> = (0..4)
            .filter_map(|turn| peer_for(&origin, &peers, turn))
            .map(|p| p.0)
            .collect();
        assert_eq!(tried, ["a", "b", "a", "b"]);
        let relays = [
            proven_as("r1", "zhengzhou/erqi"),
            proven_as("other", "beijing/main"),
            proven_as("r2", "zhengzhou/erqi"),
        ];
        let tried: Vec<String> = (0..2)
            .filter_map(|turn| peer_for(&origin, &relays, turn))
            .map(|p| p.0)
            .collect();
        assert_eq!(
            tried,
            ["r1", "r2"],
            "without one, each node of its exchange in turn"
        );
        assert_eq!(peer_for(&origin, &relays[1..2], 0), None);
    }

    #[test]
    fn closed_applications_are_forgotten() {
        let mut s = Schedule::default();
        s.sent(1, &Sent::Failed("x".into()), T0);
        s.sent(2, &Sent::Failed("x".into()), T0);
        s.due(rows(2..=2), 16, T0);
        assert_eq!(s.next.keys().copied().collect::<Vec<_>>(), [2]);
    }
}
