//! The federation service of one node: it owns the receiving side of the gossip transport,
//! publishes the zone's outbox while this node leads, answers and runs catch-up rounds.
//!
//! Every node judges every gossip message (the transport forwards only what was accepted), but
//! only the zone's leader proposes decisions to Raft, so a zone records each announcement once.
//! Announcements a leader missed (it was down, partitioned, or not yet leader) arrive through
//! catch-up, which the leader runs periodically.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{RwLock, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use xchg_federation_config::NodeConfig;
use xchg_protocol::{ContentId, Keypair, PublicKey, TrustStore};

use super::identity::{Identity, Registry};
use super::inbound::{Judgement, Proposal};
use super::limits::Budgets;
use super::verdicts::{Journal, LogBudget, Reason, Via};
use crate::api::metrics::Metrics;
use crate::api::propose::Proposer;
use crate::catalog::CatalogCommand;
use crate::gossip::{Broadcast, Event, Verdict, exchange_of_topic, topic_of};
use crate::raft::{NodeId, Raft};
use crate::store::{Db, Signals};

/// Timing of the federation service.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Time between catch-up rounds while leading.
    pub catchup_every: Duration,
    /// Time between outbox scans when nothing signals a change.
    pub outbox_poll: Duration,
    /// How long the leader waits after a change before signing, gathering a burst of approvals
    /// into one round (tests use it to kill a leader before it publishes).
    pub publish_delay: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            catchup_every: Duration::from_secs(5),
            outbox_poll: Duration::from_secs(2),
            publish_delay: Duration::ZERO,
        }
    }
}

/// Messages judged (and their decisions proposed) concurrently.
const JUDGE_CONCURRENCY: usize = 32;
/// Catch-up requests answered concurrently; more are answered "busy" at once.
const ANSWER_CONCURRENCY: usize = 4;

/// The federation service; shared by its tasks.
pub struct Federation {
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) key: Keypair,
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) db: Db,
    pub(crate) proposer: Proposer,
    pub(crate) net: Arc<dyn Broadcast>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tuning: Tuning,
    signals: Signals,
    /// The trust store and the revocation epoch it was built at.
    pub(super) trust: RwLock<(u64, TrustStore)>,
    pending: Mutex<HashSet<ContentId>>,
    /// Catch-up position per (peer, exchange): the last inventory position fully handled.
    pub(crate) cursors: Mutex<std::collections::HashMap<(String, String), u64>>,
    /// Round-robin position over peers for catch-up.
    pub(crate) next_peer: AtomicU64,
    /// This node's recent verdicts.
    pub(crate) journal: Journal,
    /// Gossip peers' answers to identity requests.
    pub(super) identities: Registry,
    /// How many agreement refusals are still recorded per signer and peer, and how many
    /// untrusted messages are still forgiven per unproven peer.
    pub(super) budgets: Mutex<Budgets>,
    /// Verdict lines still logged at INFO.
    pub(super) log_budget: Mutex<LogBudget>,
}

impl Federation {
    /// A service for the node described by `config`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<NodeConfig>,
        key: Keypair,
        id: NodeId,
        raft: Raft,
        db: Db,
        proposer: Proposer,
        net: Arc<dyn Broadcast>,
        metrics: Arc<Metrics>,
        signals: Signals,
        tuning: Tuning,
    ) -> Arc<Self> {
        let trust = config.trust_store();
        Arc::new(Federation {
            config,
            key,
            id,
            raft,
            db,
            proposer,
            net,
            metrics,
            tuning,
            signals,
            trust: RwLock::new((u64::MAX, trust)),
            pending: Mutex::new(HashSet::new()),
            cursors: Mutex::default(),
            next_peer: AtomicU64::new(0),
            journal: Journal::default(),
            identities: Registry::default(),
            budgets: Mutex::default(),
            log_budget: Mutex::default(),
        })
    }

    /// The topics this node subscribes to: its own exchange's and each agreement partner's.
    pub fn topics(&self) -> Vec<String> {
        std::iter::once(self.config.exchange.id.as_str())
            .chain(self.config.outside.iter().map(|o| o.id.as_str()))
            .map(topic_of)
            .collect()
    }

    /// The trust store: the config's roots plus the revocations in the replica.
    pub async fn trust(&self) -> TrustStore {
        let epoch = self.signals.revocations.load(Ordering::Acquire);
        {
            let cached = self.trust.read().await;
            if cached.0 == epoch {
                return cached.1.clone();
            }
        }
        let mut trust = self.config.trust_store();
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT exchange, key FROM revocations")
            .fetch_all(&self.db.read)
            .await
            .unwrap_or_default();
        for (exchange, key) in rows {
            if let (Ok(exchange), Ok(key)) = (exchange.parse(), PublicKey::from_base64(&key)) {
                trust.revoke(exchange, key);
            }
        }
        *self.trust.write().await = (epoch, trust.clone());
        trust
    }

    /// The federation transport.
    pub fn net(&self) -> &Arc<dyn Broadcast> {
        &self.net
    }

    /// Whether this node currently leads its zone.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    pub(crate) fn is_pending(&self, id: &ContentId) -> bool {
        self.pending.lock().is_ok_and(|p| p.contains(id))
    }

    /// Proposes `p` unless the same announcement is already being proposed, and waits for the
    /// outcome; true when the decision is recorded, false when it is not (yet).
    pub(crate) async fn propose_and_wait(&self, p: Proposal) -> bool {
        let id = p.content_id();
        let fresh = self.pending.lock().is_ok_and(|mut p| p.insert(id));
        if !fresh {
            // Another proposal of it is under way; it may still fail.
            return false;
        }
        let command = match p {
            Proposal::Recognize(r) => CatalogCommand::Recognize(Box::new(r)),
            Proposal::Refuse(r) => CatalogCommand::RecordRefusal(Box::new(r)),
        };
        let outcome = self.proposer.propose(command).await;
        let recorded = match outcome {
            Ok((Ok(applied), _)) => {
                tracing::debug!(announcement = %id, object = %applied.object_id, "recorded");
                true
            }
            Ok((Err(refusal), _)) => {
                tracing::warn!(announcement = %id, %refusal, "recognition refused");
                true
            }
            Err(e) => {
                tracing::info!(announcement = %id, error = %e.message, "not recorded");
                false
            }
        };
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
        recorded
    }

    pub(crate) fn signals_outbox(&self) -> Arc<tokio::sync::Notify> {
        self.signals.outbox.clone()
    }

    /// Handles one gossip message: judge, report the verdict, and propose when leading.
    async fn on_message(self: &Arc<Self>, message: crate::gossip::Message) {
        let source = message.reference.source.clone();
        if self.identities.is_due(&source.0, Instant::now())
            && !matches!(self.identity_of(&source.0), Identity::Member { .. })
        {
            // A peer not heard of recently: find out who it is, without holding this message.
            let this = self.clone();
            tokio::spawn(async move { this.prove(&[source]).await });
        }
        let source = &message.reference.source;
        let Some(exchange) = exchange_of_topic(&message.topic) else {
            let judgement = Judgement {
                reason: Reason::UnknownTopic,
                detail: None,
                content_id: None,
                proposal: None,
            };
            self.note(&judgement, &message.data, source, None, Via::Gossip);
            self.net.report(message.reference, Verdict::Ignore);
            return;
        };
        let exchange = exchange.to_owned();
        let leading = self.is_leader();
        let judgement = self
            .judge_with(&message.data, &exchange, source, leading)
            .await;
        self.note(
            &judgement,
            &message.data,
            source,
            Some(&exchange),
            Via::Gossip,
        );
        self.net.report(message.reference, judgement.verdict());
        if let Some(p) = judgement.proposal
            && leading
        {
            // Awaited, so the caller's permit bounds the proposals in flight too.
            self.propose_and_wait(p).await;
        }
    }

    /// Runs the service until `stop` turns true: subscribes, then serves events, publishes the
    /// outbox while leading and runs catch-up rounds.
    pub async fn run(
        self: Arc<Self>,
        mut events: mpsc::Receiver<Event>,
        stop: watch::Receiver<bool>,
    ) {
        for topic in self.topics() {
            if let Err(e) = self.net.subscribe(topic.clone()).await {
                tracing::error!(%topic, error = %e, "cannot subscribe");
            }
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().publish_loop(stop.clone()));
        tasks.spawn(self.clone().catchup_loop(stop.clone()));
        tasks.spawn(self.clone().identity_loop(stop.clone()));
        let judging = Arc::new(Semaphore::new(JUDGE_CONCURRENCY));
        let answering = Arc::new(Semaphore::new(ANSWER_CONCURRENCY));
        let mut stop_rx = stop.clone();
        loop {
            let event = tokio::select! {
                e = events.recv() => match e { Some(e) => e, None => break },
                _ = stop_rx.wait_for(|s| *s) => break,
            };
            match event {
                Event::Message(m) => {
                    let Ok(permit) = judging.clone().acquire_owned().await else {
                        break;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.on_message(m).await;
                        drop(permit);
                    });
                }
                Event::Request { peer, body, reply } => {
                    let Ok(permit) = answering.clone().try_acquire_owned() else {
                        let _ = reply.send(busy());
                        continue;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        let response = this.answer(&peer, &body).await;
                        let _ = reply.send(response);
                        drop(permit);
                    });
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The answer to a catch-up request while every answering slot is taken.
fn busy() -> Vec<u8> {
    xchg_protocol::catchup::Response::Error {
        message: "busy; retry later".into(),
    }
    .to_bytes()
    .unwrap_or_default()
}
