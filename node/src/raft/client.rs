//! The zone's client side: proposing writes ([`Proposer`]) and the read barrier of linearizable
//! reads ([`read_barrier`]), for the API and the federation alike.
//!
//! Proposing writes: concurrent client writes are gathered into batches, one Raft entry each.
//!
//! Every write waits in a queue; a batching task takes whatever is queued (up to
//! [`MAX_BATCH`] commands and [`MAX_BATCH_BYTES`]) and proposes it as one [`Batch`], with at
//! most [`IN_FLIGHT`] batches under way.
//! While a batch is in flight new writes accumulate, so under load one entry — one log append
//! and fsync per node, one replication round, one state-machine transaction — carries many
//! writes, and a lone client still goes straight through. On a follower the batch is forwarded
//! to the leader whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::transport::{
    Credential, ForwardError, TransportError, ZoneRequest, ZoneResponse, ZoneTransport,
};
use super::{NodeId, Raft, leader_node};
use crate::catalog::{
    Batch, BatchResponse, CatalogCommand, CommandResponse, MAX_BATCH_BYTES, cbor_len,
};
use crate::metrics::Metrics;

/// Most commands in one entry.
pub const MAX_BATCH: usize = 256;
/// Most batches this node's API has under way at once (batches forwarded to a leader by its
/// followers are proposed by the transport, not counted here). One: on the two-core machine
/// of `bench/RESULTS.md` each
/// entry costs every node a log fsync, a replication round and a state-machine transaction,
/// so fewer, fuller entries beat more entries in parallel (2, 3 and 4 in flight were measured
/// slower at 16 and 64 clients; a lone client is not slowed by it).
pub const IN_FLIGHT: usize = 1;

/// How long a batch proposed on this node (as leader) may take to be committed and applied.
pub const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// How long a write or a linearizable read waits for a leader to answer.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);

/// How long a follower waits for the leader to answer one forwarded request.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a write or a read barrier did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// Whether the write may still have been applied.
    pub kind: ClientErrorKind,
    /// What happened, for people.
    pub message: String,
}

/// The two ways a zone request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// Nothing was done: no leader answered, or the node is stopping or catching up.
    Unavailable,
    /// A write reached the leader but its fate is unknown: read it back before retrying.
    OutcomeUnknown,
}

impl ClientError {
    fn unavailable(message: &str) -> ClientError {
        ClientError {
            kind: ClientErrorKind::Unavailable,
            message: message.to_owned(),
        }
    }

    fn outcome_unknown(message: &str) -> ClientError {
        ClientError {
            kind: ClientErrorKind::OutcomeUnknown,
            message: message.to_owned(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Reply = oneshot::Sender<Result<(CommandResponse, u64), ClientError>>;

/// One queued write: the command, on whose authority, and where its answer goes.
type Queued = (CatalogCommand, Credential, Reply);

/// The handle handlers use; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Queued>,
    metrics: Arc<Metrics>,
}

/// What proposing needs.
struct Core {
    raft: Raft,
    transport: Arc<dyn ZoneTransport>,
}

/// The fate of a forwarded batch.
enum Forwarded {
    /// Applied by the leader.
    Done((BatchResponse, u64)),
    /// Certainly not proposed; try again (towards this leader, if known).
    Retry(Option<NodeId>),
    /// Sent, but whether it was applied is unknown.
    Unknown(String),
}

impl Proposer {
    /// Starts the batching task (inside a Tokio runtime). It ends when every handle is dropped.
    pub fn start(raft: Raft, transport: Arc<dyn ZoneTransport>, metrics: Arc<Metrics>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(Arc::new(Core { raft, transport }), rx));
        Proposer { queue, metrics }
    }

    /// Queues `cmd`, proposed by this node on its own authority (a recognition, a published
    /// envelope), and waits for its response.
    ///
    /// # Errors
    /// As for its batch: 503 without a leader, 504 when the outcome is unknown.
    pub async fn propose(
        &self,
        cmd: CatalogCommand,
    ) -> Result<(CommandResponse, u64), ClientError> {
        self.propose_as(cmd, Credential::Node).await
    }

    /// Queues `cmd`, asked for on `credential`'s authority, and waits for its response.
    ///
    /// # Errors
    /// As for its batch: 503 without a leader, 504 when the outcome is unknown.
    pub async fn propose_as(
        &self,
        cmd: CatalogCommand,
        credential: Credential,
    ) -> Result<(CommandResponse, u64), ClientError> {
        let started = Instant::now();
        let (reply, wait) = oneshot::channel();
        self.queue
            .send((cmd, credential, reply))
            .map_err(|_| ClientError::unavailable("the node is shutting down"))?;
        let result = wait
            .await
            .map_err(|_| ClientError::unavailable("the node is shutting down"))?;
        self.metrics.observe_write(started.elapsed());
        result
    }
}

async fn batch_loop(core: Arc<Core>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A command that did not fit the previous batch's bytes; it starts the next one.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(c) => c,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Whatever arrived while we waited for a slot joins this batch, within its bounds.
        let mut bytes = cbor_len(&first.0);
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    let size = cbor_len(&p.0);
                    if bytes + size > MAX_BATCH_BYTES {
                        carried = Some(p);
                        break;
                    }
                    bytes += size;
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        let core = core.clone();
        tokio::spawn(async move {
            let mut commands = Vec::with_capacity(pending.len());
            let mut credentials = Vec::with_capacity(pending.len());
            let mut replies = Vec::with_capacity(pending.len());
            for (cmd, credential, reply) in pending {
                commands.push(cmd);
                credentials.push(credential);
                replies.push(reply);
            }
            match core.propose_batch(Batch(commands), credentials).await {
                Ok((responses, index)) => {
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok((response, index)));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

impl Core {
    /// Proposes `batch` on this node if it leads, else through the leader.
    ///
    /// A batch is retried only when it certainly was not proposed (no leader yet, the node
    /// asked was not the leader, the leader could not be connected to). If a forwarded batch
    /// times out after it was sent, it may have been applied: its writers get
    /// `outcome_unknown` rather than a blind retry that could apply it twice.
    async fn propose_batch(
        &self,
        batch: Batch,
        credentials: Vec<Credential>,
    ) -> Result<(BatchResponse, u64), ClientError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut hint: Option<NodeId> = None;
        loop {
            let written = tokio::time::timeout(COMMIT_WAIT, self.raft.client_write(batch.clone()));
            let Ok(written) = written.await else {
                // Proposed, not committed in time (a leader that lost its majority keeps
                // waiting): the writers learn so, and the batches behind this one go on.
                return Err(ClientError::outcome_unknown(&format!(
                    "the zone did not commit the write within {COMMIT_WAIT:?}"
                )));
            };
            let leader = match written {
                Ok(r) => return Ok((r.data, r.log_id.index)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    f.leader_id.or(hint)
                }
                Err(e) => {
                    return Err(ClientError::unavailable(&format!(
                        "Raft cannot take writes: {e}"
                    )));
                }
            };
            match self.forward(leader, &batch, &credentials).await {
                Forwarded::Done(r) => return Ok(r),
                Forwarded::Retry(next) => hint = next,
                Forwarded::Unknown(msg) => return Err(ClientError::outcome_unknown(&msg)),
            }
            if Instant::now() >= deadline {
                return Err(ClientError::unavailable(
                    "no Raft leader is available in this zone; retry shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward(
        &self,
        leader: Option<NodeId>,
        batch: &Batch,
        credentials: &[Credential],
    ) -> Forwarded {
        let Some((id, node)) = leader_node(&self.raft, leader) else {
            return Forwarded::Retry(None);
        };
        match self
            .transport
            .call(
                id,
                &node,
                ZoneRequest::ForwardWrite(batch.clone(), credentials.to_vec()),
                FORWARD_TIMEOUT,
            )
            .await
        {
            Ok(ZoneResponse::ForwardWrite(Ok(r))) => Forwarded::Done(r),
            Ok(ZoneResponse::ForwardWrite(Err(ForwardError::NotLeader { leader }))) => {
                Forwarded::Retry(leader)
            }
            Ok(ZoneResponse::ForwardWrite(Err(ForwardError::Unavailable(msg)))) => {
                Forwarded::Unknown(msg)
            }
            Ok(_) => Forwarded::Unknown("unexpected answer from the leader".into()),
            Err(TransportError::Unreachable(_)) => Forwarded::Retry(None),
            Err(e) => Forwarded::Unknown(format!(
                "forwarding to the leader failed after sending: {e}"
            )),
        }
    }
}

/// Waits until this node's replica reflects every write committed before the call: the read
/// index, from this node if it leads or from the leader otherwise, then this node's apply
/// catching up to it. Gives up after [`LEADER_WAIT`].
///
/// # Errors
/// Unavailable when no leader confirms a read point, or this node does not catch up, in time.
pub async fn read_barrier(
    raft: &Raft,
    transport: &Arc<dyn ZoneTransport>,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + LEADER_WAIT;
    let mut hint = None;
    let index = loop {
        let attempt = match raft.ensure_linearizable().await {
            Ok(log_id) => break log_id.map_or(0, |l| l.index),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                forward_read_index(raft, transport, f.leader_id.or(hint)).await
            }
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        };
        match attempt {
            Ok(i) => break i,
            Err(ForwardError::NotLeader { leader }) => hint = leader,
            Err(ForwardError::Unavailable(_)) => {}
        }
        if Instant::now() >= deadline {
            return Err(ClientError::unavailable(
                "no Raft leader confirmed a read point; retry, or pass ?consistency=local",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    raft.wait(Some(remaining))
        .applied_index_at_least(Some(index), "linearizable read")
        .await
        .map_err(|_| {
            ClientError::unavailable("this node is catching up; retry, or read from another node")
        })?;
    Ok(())
}

async fn forward_read_index(
    raft: &Raft,
    transport: &Arc<dyn ZoneTransport>,
    leader: Option<NodeId>,
) -> Result<u64, ForwardError> {
    let Some((id, node)) = leader_node(raft, leader) else {
        return Err(ForwardError::Unavailable("leader unknown".into()));
    };
    match transport
        .call(id, &node, ZoneRequest::ReadIndex, FORWARD_TIMEOUT)
        .await
    {
        Ok(ZoneResponse::ReadIndex(r)) => r,
        Ok(_) => Err(ForwardError::Unavailable(
            "unexpected answer from leader".into(),
        )),
        Err(e) => Err(ForwardError::Unavailable(e.to_string())),
    }
}
