//! The federation core: judging, publishing and catch-up as one state machine with no IO, in the
//! manner of iroh-gossip's `proto`. [`Core::handle`] takes one [`Input`] and the time and returns
//! the [`Output`]s for the driver to carry out; the driver answers the outputs that ask something
//! (a lookup, a proposal, a request) with inputs carrying the same [`Ticket`], and fires each
//! [`Output::Timer`] back as [`Input::Timer`]. Randomness comes from a generator seeded by the
//! driver, so one seed and one sequence of inputs give one sequence of outputs.
//!
//! What the core knows it holds itself, fed by the driver: the trust roots (from the config) and
//! the revoked keys ([`Input::Revoked`], after every apply that revoked one), whether this node
//! leads ([`Input::Leadership`]), which peers have proven who they are ([`Input::Proven`], from
//! the identity checks), and the announcements it is proposing. What only the replica
//! knows, it asks for: whether an announcement is decided and which version of a listing is held
//! ([`Output::LookUp`]), the pending outbox ([`Output::ReadOutbox`]), the zone's summaries and
//! undecided ids for catch-up. The replica is written by every leader's proposals and grows with
//! the catalog, so a copy in the core would have to mirror the state machine's apply; one indexed
//! lookup per verified envelope costs the leader what it did before the core existed.
//!
//! - [`super::judge`]: the receiving pipeline and the refusal budgets.
//! - [`super::publish`]: signing and publishing the outbox while leading.
//! - [`super::catchup`]: answering and asking catch-up, with its cursors.

use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use xchg_federation_config::{Agreement, ExportPolicy, NodeConfig};
use xchg_protocol::catchup::{ExchangeSummary, Response};
use xchg_protocol::{
    ContentId, ExchangeId, Keypair, PublicKey, SignedDelegation, Timestamp, TrustStore, ZoneId,
};

use super::catchup::{Catchup, Cx, Query};
use super::certify;
use super::judge::{Arrival, Done, Facts, For, Judge, Judgement, Origin, Proposal};
use super::publish::{OutboxEntry, Publisher};
use super::verdicts::{Reason, VerdictRecord, Via};
use crate::catalog::CatalogCommand;
use crate::gossip::{
    MessageRef, Offence, Peer, PublishError, RequestError, Verdict, exchange_of_certificate_topic,
    exchange_of_topic,
};

/// Timing of the federation service.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Time between catch-up rounds while leading (each wait drawn within ±20 % of it).
    pub catchup_every: Duration,
    /// Time between outbox scans when nothing signals a change.
    pub outbox_poll: Duration,
    /// How long the leader waits after a change before signing, gathering a burst of approvals
    /// into one round (tests use it to kill a leader before it publishes).
    pub publish_delay: Duration,
    /// Seed of the core's random generator (catch-up jitter); `None` draws one at start and
    /// logs it, so a run can be repeated.
    pub seed: Option<u64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            catchup_every: Duration::from_secs(5),
            outbox_poll: Duration::from_secs(2),
            publish_delay: Duration::ZERO,
            seed: None,
        }
    }
}

/// What the core is told about this node once, at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's exchange.
    pub exchange: ExchangeId,
    /// This node's zone.
    pub zone: ZoneId,
    /// This node's name, recorded with the decisions it proposes.
    pub node: String,
    /// The node key it signs announcements with.
    pub key: Keypair,
    /// The delegation of that key by the exchange's root; it goes into every envelope signed
    /// and answers identity requests.
    pub delegation: SignedDelegation,
    /// What it recognises from the other zones of its own exchange.
    pub sibling: Agreement,
    /// The outside exchanges under an agreement, with what it recognises from each.
    pub outside: Vec<(ExchangeId, Agreement)>,
    /// What may leave the zone (checked again before signing).
    pub export: ExportPolicy,
    /// The trusted roots (revoked keys come from the replica, [`Input::Revoked`]).
    pub roots: TrustStore,
    /// Timing.
    pub tuning: Tuning,
}

impl Settings {
    /// The settings of the node `config` describes, signing with `key`.
    pub fn of(config: &NodeConfig, key: Keypair, tuning: Tuning) -> Self {
        Settings {
            exchange: config.exchange.id.clone(),
            zone: config.zone.id.clone(),
            node: config.node.name.to_string(),
            key,
            delegation: config.zone.delegation.clone(),
            sibling: config.sibling_agreement.clone(),
            outside: config
                .outside
                .iter()
                .map(|o| (o.id.clone(), o.agreement.clone()))
                .collect(),
            export: config.export,
            roots: config.trust_store(),
            tuning,
        }
    }

    /// The agreement announcements carrying `exchange`'s authority are judged under, with its
    /// recorded name (`sibling` or `outside:<exchange>`); none for an exchange without one.
    pub fn agreement_with(&self, exchange: &ExchangeId) -> Option<(String, &Agreement)> {
        if *exchange == self.exchange {
            return Some(("sibling".to_owned(), &self.sibling));
        }
        self.outside
            .iter()
            .find(|(id, _)| id == exchange)
            .map(|(id, a)| (format!("outside:{id}"), a))
    }

    /// The trust store with the roots and the `revoked` keys.
    pub fn trust_with(&self, revoked: &[(ExchangeId, PublicKey)]) -> TrustStore {
        let mut trust = self.roots.clone();
        for (exchange, key) in revoked {
            trust.revoke(exchange.clone(), *key);
        }
        trust
    }

    /// The exchanges whose announcements this node follows: its own and each partner's.
    pub fn exchanges(&self) -> impl Iterator<Item = &ExchangeId> {
        std::iter::once(&self.exchange).chain(self.outside.iter().map(|(id, _)| id))
    }
}

/// Names one question the core asked the driver; the answer carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Names one question the driver asked the core (a judgement for the API, a catch-up request
/// from a peer); the core's answer carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reply(pub u64);

/// How a proposal to the zone's Raft ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; `object_id` is what the state machine names in its response.
    Applied {
        /// The applied command's object.
        object_id: String,
    },
    /// Applied, and refused by the state machine (it is decided all the same).
    Refused(String),
    /// Not committed (no leader, shutting down, outcome unknown): not recorded.
    Failed(String),
}

/// A pending outbox entry as the driver read it.
pub type Entries = Result<Vec<OutboxEntry>, String>;

/// Something that happened, for the core to act on.
#[derive(Debug)]
pub enum Input {
    /// The driver started: the first timers are set.
    Start,
    /// Whether this node now leads its zone.
    Leadership(bool),
    /// Every key revoked in the replica, with the exchange that revoked it (a catalog event:
    /// sent at start and after each apply that added one).
    Revoked(Vec<(ExchangeId, PublicKey)>),
    /// The outbox may hold new entries (a catalog event: an approval, delisting or rejection
    /// queued an announcement).
    OutboxChanged,
    /// A gossip message arrived.
    Message {
        /// What its verdict is reported on.
        message: MessageRef,
        /// The topic it arrived on.
        topic: String,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// Whether `peer` has proven who it is (a member of this zone, or a delegation of its key
    /// from a trusted root), as the identity checks last found.
    Proven {
        /// The peer.
        peer: Peer,
        /// Proven or not.
        proven: bool,
    },
    /// Judge an envelope with every check and hand the judgement back ([`Output::Judged`]);
    /// nothing is proposed.
    Judge {
        /// Carried back.
        reply: Reply,
        /// The envelope.
        arrival: Arrival,
    },
    /// Publish a recorded envelope on this exchange's topic (a revocation recorded through the
    /// API), retrying while no peer listens.
    Publish {
        /// The envelope.
        envelope: Vec<u8>,
    },
    /// The answer to [`Output::LookUp`].
    Facts {
        /// The lookup's ticket.
        ticket: Ticket,
        /// What the replica holds.
        facts: Facts,
    },
    /// The answer to [`Output::LookUpDemand`].
    DemandHeld {
        /// The lookup's ticket.
        ticket: Ticket,
        /// The `updated_at` of the state held and whether it is closed, if one is.
        held: Option<(Timestamp, bool)>,
    },
    /// The answer to [`Output::Propose`].
    Proposed {
        /// The proposal's ticket.
        ticket: Ticket,
        /// How it ended.
        outcome: Outcome,
    },
    /// The answer to [`Output::ReadOutbox`].
    Outbox {
        /// The read's ticket.
        ticket: Ticket,
        /// The pending entries in order, or why they could not be read.
        entries: Entries,
    },
    /// The answer to [`Output::Publish`].
    Published {
        /// The publish's ticket.
        ticket: Ticket,
        /// What the transport said.
        result: Result<(), PublishError>,
    },
    /// The answer to [`Output::ListPeers`]: connected peers outside this zone.
    Peers {
        /// The ticket.
        ticket: Ticket,
        /// The peers.
        peers: Vec<Peer>,
    },
    /// The answer to [`Output::ReadSummaries`].
    Summaries {
        /// The ticket.
        ticket: Ticket,
        /// Count and digest of the announcements held per exchange, or why they could not be
        /// read.
        summaries: Result<Vec<ExchangeSummary>, String>,
    },
    /// The answer to [`Output::FindUndecided`].
    Undecided {
        /// The ticket.
        ticket: Ticket,
        /// The ids asked about that the replica has no decision on, in the order asked.
        ids: Vec<ContentId>,
    },
    /// The answer to [`Output::FindUnreceived`].
    Unreceived {
        /// The ticket.
        ticket: Ticket,
        /// Whether each message asked about is unrecorded, in the order asked.
        unreceived: Vec<bool>,
    },
    /// The answer to [`Output::Request`].
    Response {
        /// The request's ticket.
        ticket: Ticket,
        /// The response body, or why there is none.
        response: Result<Vec<u8>, RequestError>,
    },
    /// A catch-up request from a peer.
    Request {
        /// Carried back in the answer.
        reply: Reply,
        /// The request body.
        body: Vec<u8>,
    },
    /// The answer to an [`Output::Serve`] is sent: its slot is free.
    Served {
        /// The request's reply.
        reply: Reply,
    },
    /// A timer set by [`Output::Timer`] fired.
    Timer(Timer),
}

/// Something for the driver to do.
#[derive(Debug)]
pub enum Output {
    /// Report a gossip message's verdict to the transport.
    Report {
        /// The message.
        message: MessageRef,
        /// Its verdict.
        verdict: Verdict,
    },
    /// Journal, count and log a verdict.
    Noted {
        /// Why it was given.
        reason: Reason,
        /// The journal's record of it.
        record: VerdictRecord,
    },
    /// Hold `offence` against `peer` in its gossip score.
    Penalise {
        /// The peer.
        peer: Peer,
        /// What it did.
        offence: Offence,
    },
    /// The judgement [`Input::Judge`] asked for.
    Judged {
        /// The asker's reply.
        reply: Reply,
        /// The judgement.
        judgement: Judgement,
    },
    /// Look up the state the replica holds of demand `number` of `zone`; answer with
    /// [`Input::DemandHeld`].
    LookUpDemand {
        /// Carried back.
        ticket: Ticket,
        /// The demand's origin zone.
        zone: String,
        /// Its number there.
        number: u64,
    },
    /// Look up what the replica holds of an announcement; answer with [`Input::Facts`].
    LookUp {
        /// Carried back.
        ticket: Ticket,
        /// Is a decision on it recorded?
        content_id: ContentId,
        /// Which copy of this listing is held?
        listing_id: Option<ContentId>,
    },
    /// Propose a command to the zone's Raft; answer with [`Input::Proposed`].
    Propose {
        /// Carried back.
        ticket: Ticket,
        /// The command.
        command: CatalogCommand,
    },
    /// Read up to `limit` pending outbox entries, oldest first; answer with [`Input::Outbox`].
    ReadOutbox {
        /// Carried back.
        ticket: Ticket,
        /// At most this many.
        limit: usize,
    },
    /// Publish `envelope` on `topic`; answer with [`Input::Published`].
    Publish {
        /// Carried back.
        ticket: Ticket,
        /// The gossip topic.
        topic: String,
        /// The envelope bytes.
        envelope: Vec<u8>,
    },
    /// List the connected peers outside this zone; answer with [`Input::Peers`].
    ListPeers {
        /// Carried back.
        ticket: Ticket,
    },
    /// Read the replica's per-exchange summaries; answer with [`Input::Summaries`].
    ReadSummaries {
        /// Carried back.
        ticket: Ticket,
    },
    /// Find which of `ids` the replica has no decision on; answer with [`Input::Undecided`].
    FindUndecided {
        /// Carried back.
        ticket: Ticket,
        /// The ids.
        ids: Vec<ContentId>,
    },
    /// Find which of the certificate-topic messages with these ids (SHA-256 of their bytes)
    /// the replica has recorded no decision on; answer with [`Input::Unreceived`].
    FindUnreceived {
        /// Carried back.
        ticket: Ticket,
        /// The message ids.
        ids: Vec<ContentId>,
    },
    /// Send a catch-up request; answer with [`Input::Response`].
    Request {
        /// Carried back.
        ticket: Ticket,
        /// To whom.
        peer: Peer,
        /// What.
        request: xchg_protocol::catchup::Request,
    },
    /// Answer a peer's catch-up request with `response`.
    Answer {
        /// The request's reply.
        reply: Reply,
        /// The response.
        response: Response,
    },
    /// Answer a peer's catch-up request from the replica, then send [`Input::Served`].
    Serve {
        /// The request's reply.
        reply: Reply,
        /// What to read (already bounded).
        query: Query,
    },
    /// Answer a question for a zone's precedents (PROTOCOL.md 11.8), then send
    /// [`Input::Served`].
    AnswerPrecedents {
        /// The request's reply.
        reply: Reply,
        /// The zone asked about.
        zone: xchg_protocol::ZoneId,
        /// Its listing.
        listing_id: ContentId,
        /// The scenario.
        scenario: String,
    },
    /// Answer a question for this zone's supervision figures (PROTOCOL.md 7.5), then send
    /// [`Input::Served`].
    AnswerFigures {
        /// The request's reply.
        reply: Reply,
        /// The zone asked about.
        zone: xchg_protocol::ZoneId,
        /// The first day, as asked (at most 16 bytes).
        from: String,
        /// The last day, as asked.
        to: String,
        /// The period, as asked.
        period: String,
    },
    /// A valid signed tree head of `zone` was heard on a tree-head topic (PROTOCOL.md 12.7):
    /// check it against the one held if it is larger.
    HeadHeard {
        /// The zone.
        zone: xchg_protocol::ZoneId,
        /// The head's size.
        size: u64,
    },
    /// Answer a question for the zone's signed tree head and a consistency proof
    /// (PROTOCOL.md 12.7), then send [`Input::Served`].
    AnswerTreeHead {
        /// The request's reply.
        reply: Reply,
        /// The zone asked about.
        zone: xchg_protocol::ZoneId,
        /// The size of the head the asker holds.
        from: u64,
    },
    /// Answer a forwarded application (PROTOCOL.md 11.7), then send [`Input::Served`].
    AnswerApplication {
        /// The request's reply.
        reply: Reply,
        /// The signed request (at most 16384 bytes, as decoded).
        request: Vec<u8>,
    },
    /// Fire `timer` back after `after`.
    Timer {
        /// How long from now.
        after: Duration,
        /// What fires.
        timer: Timer,
    },
    /// Count an event in the metrics.
    Count(Count),
}

/// A timer the core set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Scan the outbox (in case a change was not signalled).
    OutboxPoll,
    /// The delay before signing is over.
    PublishDelay,
    /// Publish the envelope of this ticket again.
    PublishRetry(Ticket),
    /// Start a catch-up round.
    CatchupRound,
    /// The catch-up round of this id has taken as long as a round may.
    RoundDeadline(u64),
}

/// An event the metrics count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// One outbox envelope's gossip publish ended: `published`, `duplicate` or `failed`.
    Published(&'static str),
    /// Catch-up: `round` or `failed` (one round), `fetched` (envelopes proposed).
    Catchup(&'static str, u64),
}

/// What the parts of the core share: the settings, this node's view, and the ticket counter.
#[derive(Debug)]
pub(super) struct Shared {
    pub settings: Settings,
    /// The roots plus the revoked keys.
    pub trust: TrustStore,
    /// Whether this node leads its zone.
    pub leading: bool,
    next_ticket: u64,
}

impl Shared {
    /// A fresh ticket.
    pub fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }
}

/// The federation core of one node.
#[derive(Debug)]
pub struct Core {
    shared: Shared,
    judge: Judge,
    publisher: Publisher,
    catchup: Catchup,
}

/// Judgements and proposals under way beyond which the driver reads no more gossip, so a
/// flood waits in the transport's bounded queue instead of in memory here.
pub const IN_FLIGHT: usize = 32;

impl Core {
    /// A core for `settings`, its randomness drawn from `seed`.
    pub fn new(settings: Settings, seed: u64) -> Self {
        let trust = settings.roots.clone();
        Core {
            shared: Shared {
                settings,
                trust,
                leading: false,
                next_ticket: 0,
            },
            judge: Judge::default(),
            publisher: Publisher::default(),
            catchup: Catchup::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// What the core was told at start.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Judgements and proposals under way.
    pub fn in_flight(&self) -> usize {
        self.judge.in_flight()
    }

    /// Whether the driver may hand in another gossip message now.
    pub fn takes_messages(&self) -> bool {
        self.in_flight() < IN_FLIGHT
    }

    /// Acts on `input` at `now`; what the driver must do.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        self.step(input, now, &mut out);
        out
    }

    fn step(&mut self, input: Input, now: Timestamp, out: &mut Vec<Output>) {
        let Core {
            shared,
            judge,
            publisher,
            catchup,
        } = self;
        match input {
            Input::Start => {
                publisher.start(shared, out);
                catchup.start(shared, out);
            }
            Input::Leadership(leading) => {
                let gained = leading && !shared.leading;
                shared.leading = leading;
                if gained {
                    // A new leader signs what its predecessor left pending at once.
                    publisher.trigger(shared, out);
                }
            }
            Input::Revoked(keys) => shared.trust = shared.settings.trust_with(&keys),
            Input::OutboxChanged => publisher.trigger(shared, out),
            Input::Proven { peer, proven } => judge.proven(peer, proven),
            Input::Message {
                message,
                topic,
                data,
            } => {
                let from = message.source.clone();
                if let Some(exchange) = crate::gossip::exchange_of_tree_head_topic(&topic) {
                    let heard = super::heads::heard(&data, exchange, &shared.trust, now);
                    let verdict = match heard {
                        Some((zone, size)) => {
                            out.push(Output::HeadHeard { zone, size });
                            Verdict::Accept
                        }
                        None => Verdict::Reject,
                    };
                    out.push(Output::Report { message, verdict });
                    return;
                }
                if let Some(exchange) = exchange_of_certificate_topic(&topic).map(str::to_owned) {
                    let leading = shared.leading;
                    let certified = certify::judge(&data, &exchange, &from, &shared.settings, now);
                    let judgement = judge.certificate(certified, &from, leading, now);
                    let done = Done {
                        origin: Origin::Gossip { message, leading },
                        judgement,
                        arrival: Arrival {
                            data,
                            exchange,
                            from,
                        },
                    };
                    finished(shared, judge, catchup, done, now, out);
                    return;
                }
                if let Some(exchange) =
                    crate::gossip::exchange_of_demand_topic(&topic).map(str::to_owned)
                {
                    let leading = shared.leading;
                    let judgement = super::demanded::judge(
                        &data,
                        &exchange,
                        &from,
                        &shared.settings,
                        &shared.trust,
                        now,
                    );
                    let done = Done {
                        origin: Origin::Gossip { message, leading },
                        judgement,
                        arrival: Arrival {
                            data,
                            exchange,
                            from,
                        },
                    };
                    // Only a leader proposes: it asks the replica first.
                    let done = if leading {
                        judge.look_up_demand(shared, done, out)
                    } else {
                        Some(done)
                    };
                    if let Some(done) = done {
                        finished(shared, judge, catchup, done, now, out);
                    }
                    return;
                }
                let Some(exchange) = exchange_of_topic(&topic).map(str::to_owned) else {
                    let judgement = Judgement {
                        reason: Reason::UnknownTopic,
                        detail: None,
                        content_id: None,
                        proposal: None,
                    };
                    let record = judgement.record(&data, &from, None, Via::Gossip, now);
                    out.push(Output::Noted {
                        reason: judgement.reason,
                        record,
                    });
                    out.push(Output::Report {
                        message,
                        verdict: Verdict::Ignore,
                    });
                    return;
                };
                let leading = shared.leading;
                let arrival = Arrival {
                    data,
                    exchange,
                    from,
                };
                let origin = Origin::Gossip { message, leading };
                if let Some(done) = judge.begin(shared, arrival, leading, origin, now, out) {
                    finished(shared, judge, catchup, done, now, out);
                }
            }
            Input::Judge { reply, arrival } => {
                if let Some(done) =
                    judge.begin(shared, arrival, true, Origin::Asked(reply), now, out)
                {
                    finished(shared, judge, catchup, done, now, out);
                }
            }
            Input::Publish { envelope } => publisher.publish(shared, envelope, out),
            Input::Facts { ticket, facts } => {
                if let Some(done) = judge.facts(shared, ticket, facts, now) {
                    finished(shared, judge, catchup, done, now, out);
                }
            }
            Input::DemandHeld { ticket, held } => {
                if let Some(done) = judge.demand_held(ticket, held) {
                    finished(shared, judge, catchup, done, now, out);
                }
            }
            Input::Proposed { ticket, outcome } => match judge.proposed(ticket, &outcome) {
                Some((For::Catchup { round, certified }, recorded)) => {
                    if recorded && certified {
                        catchup.rescan();
                    }
                    catchup.recorded(
                        round,
                        recorded,
                        &mut Cx {
                            shared,
                            judge,
                            now,
                            out,
                        },
                    );
                }
                Some((For::Certified, true)) => catchup.rescan(),
                Some((For::Gossip | For::Certified, _)) => {}
                None => publisher.proposed(ticket, outcome, shared, out),
            },
            Input::Outbox { ticket, entries } => {
                publisher.outbox(ticket, entries, shared, now, out)
            }
            Input::Published { ticket, result } => publisher.published(ticket, result, out),
            Input::Peers { ticket, peers } => catchup.peers(ticket, peers, shared, out),
            Input::Summaries { ticket, summaries } => {
                catchup.summaries(
                    ticket,
                    summaries,
                    &mut Cx {
                        shared,
                        judge,
                        now,
                        out,
                    },
                );
            }
            Input::Undecided { ticket, ids } => {
                catchup.undecided(
                    ticket,
                    ids,
                    &mut Cx {
                        shared,
                        judge,
                        now,
                        out,
                    },
                );
            }
            Input::Unreceived { ticket, unreceived } => {
                catchup.unreceived(
                    ticket,
                    &unreceived,
                    &mut Cx {
                        shared,
                        judge,
                        now,
                        out,
                    },
                );
            }
            Input::Response { ticket, response } => {
                catchup.response(
                    ticket,
                    response,
                    &mut Cx {
                        shared,
                        judge,
                        now,
                        out,
                    },
                );
            }
            Input::Request { reply, body } => catchup.serve(reply, &body, shared, out),
            Input::Served { reply } => catchup.served(reply),
            Input::Timer(timer) => match timer {
                Timer::OutboxPoll | Timer::PublishDelay | Timer::PublishRetry(_) => {
                    publisher.timer(timer, shared, out);
                }
                Timer::CatchupRound | Timer::RoundDeadline(_) => {
                    catchup.timer(timer, shared, out);
                }
            },
        }
    }
}

/// Acts on a finished judgement according to where the envelope came from.
fn finished(
    shared: &mut Shared,
    judge: &mut Judge,
    catchup: &mut Catchup,
    done: Done,
    now: Timestamp,
    out: &mut Vec<Output>,
) {
    match done.origin {
        Origin::Gossip {
            ref message,
            leading,
        } => {
            judge.note(&done, Via::Gossip, now, out);
            out.push(Output::Report {
                message: message.clone(),
                verdict: done.judgement.verdict(),
            });
            if let Some(proposal) = done.judgement.proposal
                && leading
            {
                let whose = match &proposal {
                    Proposal::Certificate(c) if c.is_valid() => For::Certified,
                    _ => For::Gossip,
                };
                judge.propose(shared, proposal, whose, out);
            }
        }
        Origin::Asked(reply) => out.push(Output::Judged {
            reply,
            judgement: done.judgement,
        }),
        Origin::Catchup(round) => catchup.judged(
            round,
            done,
            &mut Cx {
                shared,
                judge,
                now,
                out,
            },
        ),
    }
}
