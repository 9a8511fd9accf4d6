//! The federation driver: the async shell around the [`Core`]. One task owns the core; it feeds
//! it gossip messages and catch-up requests from the transport, catalog events (the outbox
//! signal, the revoked keys after each revocation epoch), this node's leadership, commands from
//! the rest of the node and the timers the core set, each with the [`Clock`]'s `now`. It carries
//! out the core's outputs: replica reads ([`super::replica`]), Raft proposals through the
//! proposer, gossip publishes, verdict reports, penalties and requests, and timers on the clock.
//! Nothing in here decides anything the core could.
//!
//! [`Federation`] is the handle the rest of the node holds: the transport, the verdict journal,
//! peers' identities ([`super::identity`]), and commands to the driver (a judgement for the
//! revocation route, a recorded envelope to publish).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use xchg_federation_config::NodeConfig;
use xchg_protocol::catchup::Response;
use xchg_protocol::{Keypair, TrustStore};

use super::core::{Core, Count, Input, Outcome, Output, Reply, Settings, Timer, Tuning};
use super::identity::Registry;
use super::judge::{Arrival, Judgement};
use super::replica;
use super::verdicts::{Journal, LogBudget, Reason, VerdictRecord, Via};
use crate::clock::Clock;
use crate::gossip::{
    Broadcast, Event, Peer, RequestError, Verdict, certificate_topic_of, topic_of,
};
use crate::metrics::Metrics;
use crate::raft::client::Proposer;
use crate::raft::{NodeId, Raft};
use crate::store::{Db, Signals};

/// What the federation service is built from.
pub struct Parts {
    /// The node's validated config.
    pub config: Arc<NodeConfig>,
    /// The node key announcements are signed with.
    pub key: Keypair,
    /// This node's Raft id (to know when it leads).
    pub id: NodeId,
    /// The zone's Raft (leadership and membership).
    pub raft: Raft,
    /// The replica, read on the core's behalf.
    pub db: Db,
    /// Where decisions are proposed.
    pub proposer: Proposer,
    /// The federation transport.
    pub net: Arc<dyn Broadcast>,
    /// Counters for verdicts, publishes and catch-up.
    pub metrics: Arc<Metrics>,
    /// Raised by the state machine when the outbox or the revocations change.
    pub signals: Signals,
    /// Timing and seed.
    pub tuning: Tuning,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
}

/// The federation service stopped: nothing more is judged.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the federation service has stopped")]
pub struct Stopped;

/// What the rest of the node asks of the driver.
enum Command {
    /// Judge an envelope with every check (proposing nothing) and send back the judgement.
    Judge {
        arrival: Arrival,
        reply: oneshot::Sender<Judgement>,
    },
    /// Publish a recorded envelope.
    Publish(Vec<u8>),
    /// What a peer has proven, as the identity checks found.
    Proven(Peer, bool),
}

/// The federation service as the rest of the node holds it; cheap to share.
pub struct Federation {
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) net: Arc<dyn Broadcast>,
    pub(super) id: NodeId,
    pub(super) raft: Raft,
    pub(super) clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// This node's recent verdicts.
    pub(crate) journal: Journal,
    /// Verdict lines still logged at INFO.
    log_budget: Mutex<LogBudget>,
    /// Gossip peers' answers to identity requests.
    pub(super) identities: Registry,
    /// The roots and revoked keys as the driver last read them (the core holds its own copy).
    pub(super) trust: RwLock<TrustStore>,
    /// The node key, which signs this zone's application messages (PROTOCOL.md 11).
    pub(super) key: Keypair,
    /// The tree heads held of other zones (PROTOCOL.md 12.7).
    pub(super) heads: super::heads::Held,
    /// The figures last answered to a peer (`super::figures`).
    pub(super) last_figures: super::figures::LastFigures,
    commands: mpsc::UnboundedSender<Command>,
}

impl Federation {
    /// The service of the node `parts` describe: the handle, and the driver to run
    /// ([`Driver::run`]).
    pub fn new(parts: Parts) -> (Arc<Self>, Driver) {
        let Parts {
            config,
            key,
            id,
            raft,
            db,
            proposer,
            net,
            metrics,
            signals,
            tuning,
            clock,
        } = parts;
        let seed = tuning.seed.unwrap_or_else(rand::random);
        tracing::debug!(seed, "federation core seeded");
        let settings = Settings::of(&config, key.clone(), tuning);
        let (commands, inbox) = mpsc::unbounded_channel();
        let heads = super::heads::Held::load(&config.node.data_dir);
        let handle = Arc::new(Federation {
            heads,
            trust: RwLock::new(settings.roots.clone()),
            config,
            net,
            id,
            raft,
            clock,
            metrics,
            journal: Journal::default(),
            log_budget: Mutex::default(),
            identities: Registry::default(),
            last_figures: super::figures::LastFigures::default(),
            key,
            commands,
        });
        let driver = Driver {
            handle: handle.clone(),
            core: Core::new(settings, seed),
            db,
            proposer,
            signals,
            inbox,
            timers: FuturesUnordered::new(),
            tasks: JoinSet::new(),
            judging: BTreeMap::new(),
            answering: BTreeMap::new(),
            next_reply: 0,
            revocation_epoch: None,
            leading: false,
        };
        (handle, driver)
    }

    /// The topics this node subscribes to: the announcement, certificate, tree-head and demand
    /// topics of its own exchange and of each agreement partner.
    pub fn topics(&self) -> Vec<String> {
        let exchanges = || {
            std::iter::once(self.config.exchange.id.as_str())
                .chain(self.config.outside.iter().map(|o| o.id.as_str()))
        };
        exchanges()
            .map(topic_of)
            .chain(exchanges().map(certificate_topic_of))
            .chain(exchanges().map(crate::gossip::tree_head_topic_of))
            .chain(exchanges().map(crate::gossip::demand_topic_of))
            .collect()
    }

    /// The federation transport.
    pub fn net(&self) -> &Arc<dyn Broadcast> {
        &self.net
    }

    /// Whether this node currently leads its zone.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The trust store as last read: the roots plus the revoked keys.
    pub fn trust(&self) -> TrustStore {
        self.trust
            .read()
            .map_or_else(|_| self.config.trust_store(), |t| t.clone())
    }

    /// Judges `data` received on the topic of `topic_exchange` from `from` with every check,
    /// as the zone's leader would; nothing is proposed or noted.
    ///
    /// # Errors
    /// [`Stopped`] once the driver has stopped.
    pub async fn judge(
        &self,
        data: &[u8],
        topic_exchange: &str,
        from: &Peer,
    ) -> Result<Judgement, Stopped> {
        let (reply, judgement) = oneshot::channel();
        let arrival = Arrival {
            data: data.to_vec(),
            exchange: topic_exchange.to_owned(),
            from: from.clone(),
        };
        self.commands
            .send(Command::Judge { arrival, reply })
            .map_err(|_| Stopped)?;
        judgement.await.map_err(|_| Stopped)
    }

    /// Counts, journals and logs a judgement the caller made through [`Federation::judge`]
    /// (the driver notes what the core judges itself).
    pub fn note(
        &self,
        judgement: &Judgement,
        data: &[u8],
        from: &Peer,
        exchange: Option<&str>,
        via: Via,
    ) {
        let record = judgement.record(data, from, exchange, via, self.clock.now());
        self.record(judgement.reason, record);
    }

    /// Publishes a recorded envelope on this exchange's topic, retrying while no peer listens.
    pub fn publish_envelope(&self, envelope: Vec<u8>) {
        // Stopped: the node is shutting down, and peers catch up from the record.
        let _ = self.commands.send(Command::Publish(envelope));
    }

    /// Tells the transport and the core whether `peer` has proven who it is.
    pub(super) fn set_proven(&self, peer: Peer, proven: bool) {
        self.net.set_proven(peer.clone(), proven);
        let _ = self.commands.send(Command::Proven(peer, proven));
    }

    /// Counts, journals and (for rejects and for ignores that depend on this node's trust
    /// store or clock) logs a verdict.
    pub(super) fn record(&self, reason: Reason, record: VerdictRecord) {
        let verdict = reason.verdict();
        self.metrics
            .gossip_verdict(verdict.as_str(), reason.as_str());
        if verdict == Verdict::Reject || reason.is_receivers_view() {
            let allowed = self
                .log_budget
                .lock()
                .ok()
                .and_then(|mut b| b.take(record.at.millis()));
            if let Some(held_back) = allowed {
                tracing::info!(
                    peer = %record.peer,
                    verdict = verdict.as_str(),
                    kind = reason.as_str(),
                    content_id = record.content_id.as_deref().unwrap_or("-"),
                    message_id = %record.message_id,
                    detail = record.detail.as_deref().unwrap_or(""),
                    held_back,
                    "announcement not accepted"
                );
            }
        }
        self.journal.record(record);
    }

    /// Connected peers outside this zone (its members share the replica: nothing to catch up
    /// from them).
    async fn peers_outside(&self) -> Vec<Peer> {
        let mine: HashSet<String> = self
            .members()
            .iter()
            .filter_map(super::identity::peer_id_of)
            .collect();
        self.net
            .peers()
            .await
            .into_iter()
            .filter(|p| !mine.contains(&p.peer))
            .map(|p| Peer(p.peer))
            .collect()
    }
}

/// The task that owns the core; see the module header.
pub struct Driver {
    handle: Arc<Federation>,
    core: Core,
    db: Db,
    proposer: Proposer,
    signals: Signals,
    inbox: mpsc::UnboundedReceiver<Command>,
    /// The core's timers, each resolving to itself.
    timers: FuturesUnordered<BoxFuture<'static, Timer>>,
    /// IO under way for the core, each resolving to the input that answers it.
    tasks: JoinSet<Input>,
    /// Judgements asked for through the handle.
    judging: BTreeMap<Reply, oneshot::Sender<Judgement>>,
    /// Catch-up requests being answered: who asked, and where the answer goes.
    answering: BTreeMap<Reply, (Peer, oneshot::Sender<Vec<u8>>)>,
    next_reply: u64,
    /// The revocation epoch the core's trust store was built at.
    revocation_epoch: Option<u64>,
    /// Whether the core was last told this node leads.
    leading: bool,
}

impl Driver {
    /// Runs the service until `stop` turns true: subscribes, then feeds the core and carries
    /// out what it says.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>, mut stop: watch::Receiver<bool>) {
        let net = self.handle.net.clone();
        for topic in self.handle.topics() {
            if let Err(e) = net.subscribe(topic.clone()).await {
                tracing::error!(%topic, error = %e, "cannot subscribe");
            }
        }
        let identities = tokio::spawn(self.handle.clone().identity_loop(stop.clone()));
        let forwarding = tokio::spawn(self.handle.clone().forward_loop(
            self.db.clone(),
            self.proposer.clone(),
            stop.clone(),
        ));
        let watching = tokio::spawn(
            self.handle
                .clone()
                .heads_loop(self.db.clone(), stop.clone()),
        );
        self.refresh().await;
        self.feed(Input::Start);
        let outbox = self.signals.outbox.clone();
        let mut raft = self.handle.raft.metrics();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(input) => self.feed(input),
                    Err(e) => tracing::error!(error = %e, "a federation task failed"),
                },
                Some(timer) = self.timers.next(), if !self.timers.is_empty() => {
                    self.feed(Input::Timer(timer));
                }
                Some(command) = self.inbox.recv() => self.command(command),
                () = outbox.notified() => self.feed(Input::OutboxChanged),
                // Leadership and revocations are read below, after any change.
                Ok(()) = raft.changed() => {}
                event = events.recv(), if self.core.takes_messages() => match event {
                    Some(event) => self.event(event),
                    None => break,
                },
            }
            self.refresh().await;
        }
        self.tasks.shutdown().await;
        let _ = identities.await;
        let _ = forwarding.await;
        let _ = watching.await;
    }

    /// Tells the core of a new revocation epoch (reading the revoked keys) or a change of
    /// leadership.
    async fn refresh(&mut self) {
        let epoch = self.signals.revocations.load(Ordering::Acquire);
        if self.revocation_epoch != Some(epoch) {
            self.revocation_epoch = Some(epoch);
            let keys = replica::revoked(&self.db).await;
            if let Ok(mut trust) = self.handle.trust.write() {
                *trust = self.core.settings().trust_with(&keys);
            }
            self.feed(Input::Revoked(keys));
        }
        let leading = self.handle.is_leader();
        if leading != self.leading {
            self.leading = leading;
            self.feed(Input::Leadership(leading));
        }
    }

    fn reply(&mut self) -> Reply {
        self.next_reply += 1;
        Reply(self.next_reply)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Judge { arrival, reply } => {
                let r = self.reply();
                self.judging.insert(r, reply);
                self.feed(Input::Judge { reply: r, arrival });
            }
            Command::Publish(envelope) => self.feed(Input::Publish { envelope }),
            Command::Proven(peer, proven) => self.feed(Input::Proven { peer, proven }),
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Message(m) => {
                let source = m.reference.source.clone();
                if self
                    .handle
                    .identities
                    .is_due(&source.0, self.handle.clock.now())
                    && !self.handle.is_member(&source.0)
                {
                    // A peer not heard of recently: find out who it is, without holding this
                    // message.
                    let handle = self.handle.clone();
                    tokio::spawn(async move { handle.prove(&[source], false).await });
                }
                self.feed(Input::Message {
                    message: m.reference,
                    topic: m.topic,
                    data: m.data,
                });
            }
            Event::Request { peer, body, reply } => {
                let r = self.reply();
                self.answering.insert(r, (peer, reply));
                self.feed(Input::Request { reply: r, body });
            }
        }
    }

    /// Hands `input` to the core and carries out what it says.
    fn feed(&mut self, input: Input) {
        let now = self.handle.clock.now();
        for output in self.core.handle(input, now) {
            self.carry_out(output);
        }
    }

    fn carry_out(&mut self, output: Output) {
        let handle = &self.handle;
        match output {
            Output::Report { message, verdict } => handle.net.report(message, verdict),
            Output::Noted { reason, record } => handle.record(reason, record),
            Output::Penalise { peer, offence } => handle.net.penalise(peer, offence),
            Output::Judged { reply, judgement } => {
                if let Some(asker) = self.judging.remove(&reply) {
                    let _ = asker.send(judgement);
                }
            }
            Output::Count(Count::Published(outcome)) => handle.metrics.published(outcome),
            Output::Count(Count::Catchup(outcome, n)) => handle.metrics.catchup(outcome, n),
            Output::Timer { after, timer } => {
                let sleep = handle.clock.sleep(after);
                self.timers.push(Box::pin(async move {
                    sleep.await;
                    timer
                }));
            }
            Output::Answer { reply, response } => {
                if let Some((_, asker)) = self.answering.remove(&reply) {
                    let _ = asker.send(response.to_bytes().unwrap_or_default());
                }
            }
            Output::Serve { reply, query } => {
                let Some((peer, asker)) = self.answering.remove(&reply) else {
                    return;
                };
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let response = replica::serve(&db, query).await.unwrap_or_else(|e| {
                        tracing::warn!(%peer, error = %e, "catch-up request failed");
                        Response::Error {
                            message: "internal error".into(),
                        }
                    });
                    let _ = asker.send(response.to_bytes().unwrap_or_default());
                    Input::Served { reply }
                });
            }
            Output::AnswerPrecedents {
                reply,
                zone,
                listing_id,
                scenario,
            } => {
                let Some((_, asker)) = self.answering.remove(&reply) else {
                    return;
                };
                let (handle, db) = (handle.clone(), self.db.clone());
                self.tasks.spawn(async move {
                    let response = handle
                        .answer_precedents(&db, &zone, &listing_id, &scenario)
                        .await;
                    let _ = asker.send(response.to_bytes().unwrap_or_default());
                    Input::Served { reply }
                });
            }
            Output::AnswerFigures {
                reply,
                zone,
                from,
                to,
                period,
            } => {
                let Some((peer, asker)) = self.answering.remove(&reply) else {
                    return;
                };
                let (handle, db) = (handle.clone(), self.db.clone());
                self.tasks.spawn(async move {
                    let asked = super::figures::FiguresAsked {
                        zone: &zone,
                        from: &from,
                        to: &to,
                        period: &period,
                    };
                    let response = handle.answer_figures(&db, &peer, &asked).await;
                    let _ = asker.send(response.to_bytes().unwrap_or_default());
                    Input::Served { reply }
                });
            }
            Output::HeadHeard { zone, size } => {
                if handle.wants_check(&zone, size) {
                    let handle = handle.clone();
                    tokio::spawn(async move { handle.check_zone(&zone).await });
                }
            }
            Output::AnswerTreeHead { reply, zone, from } => {
                let Some((_, asker)) = self.answering.remove(&reply) else {
                    return;
                };
                let (handle, db) = (handle.clone(), self.db.clone());
                self.tasks.spawn(async move {
                    let response = handle.answer_tree_head(&db, &zone, from).await;
                    let _ = asker.send(response.to_bytes().unwrap_or_default());
                    Input::Served { reply }
                });
            }
            Output::AnswerApplication { reply, request } => {
                let Some((peer, asker)) = self.answering.remove(&reply) else {
                    return;
                };
                let (handle, db, proposer) =
                    (handle.clone(), self.db.clone(), self.proposer.clone());
                self.tasks.spawn(async move {
                    let response = handle
                        .answer_application(&db, &proposer, &peer, request)
                        .await;
                    let _ = asker.send(response.to_bytes().unwrap_or_default());
                    Input::Served { reply }
                });
            }
            Output::LookUpDemand {
                ticket,
                zone,
                number,
            } => {
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let held = replica::demand_held(&db, &zone, number).await;
                    Input::DemandHeld { ticket, held }
                });
            }
            Output::LookUp {
                ticket,
                content_id,
                listing_id,
            } => {
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let facts = replica::facts(&db, &content_id, listing_id.as_ref()).await;
                    Input::Facts { ticket, facts }
                });
            }
            Output::Propose { ticket, command } => {
                let proposer = self.proposer.clone();
                self.tasks.spawn(async move {
                    let outcome = match proposer.propose(command).await {
                        Ok((Ok(applied), _)) => Outcome::Applied {
                            object_id: applied.object_id,
                        },
                        Ok((Err(refusal), _)) => Outcome::Refused(refusal.to_string()),
                        Err(e) => Outcome::Failed(e.message),
                    };
                    Input::Proposed { ticket, outcome }
                });
            }
            Output::ReadOutbox { ticket, limit } => {
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let entries = replica::pending_outbox(&db, limit)
                        .await
                        .map_err(|e| e.to_string());
                    Input::Outbox { ticket, entries }
                });
            }
            Output::Publish {
                ticket,
                topic,
                envelope,
            } => {
                let net = handle.net.clone();
                self.tasks.spawn(async move {
                    let result = net.publish(topic, envelope).await;
                    Input::Published { ticket, result }
                });
            }
            Output::ListPeers { ticket } => {
                let handle = handle.clone();
                self.tasks.spawn(async move {
                    let peers = handle.peers_outside().await;
                    Input::Peers { ticket, peers }
                });
            }
            Output::ReadSummaries { ticket } => {
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let summaries = replica::summaries(&db).await.map_err(|e| e.to_string());
                    Input::Summaries { ticket, summaries }
                });
            }
            Output::FindUndecided { ticket, ids } => {
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let ids = replica::undecided(&db, ids).await;
                    Input::Undecided { ticket, ids }
                });
            }
            Output::FindUnreceived { ticket, ids } => {
                let db = self.db.clone();
                self.tasks.spawn(async move {
                    let unreceived = replica::unreceived(&db, &ids).await;
                    Input::Unreceived { ticket, unreceived }
                });
            }
            Output::Request {
                ticket,
                peer,
                request,
            } => {
                let net = handle.net.clone();
                self.tasks.spawn(async move {
                    let response = match request.to_bytes() {
                        Ok(body) => net.request(peer, body).await,
                        Err(e) => Err(RequestError::BadResponse(e.to_string())),
                    };
                    Input::Response { ticket, response }
                });
            }
        }
    }
}
