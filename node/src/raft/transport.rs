//! The zone transport: what zone members say to each other, and the trait that carries it.
//!
//! Two implementations carry [`ZoneRequest`]s: [`super::tls::TlsTransport`] (TCP + mutual TLS
//! 1.3, used by real nodes) and [`super::router::Router`] (in-process, with fault injection, used
//! by tests and simulations). Both deliver to a [`ZoneService`] on the receiving node.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::bootstrap::{Amnesia, Hello, hello};
use super::election::{PreVote, PreVoteAnswer, answer, standing};
use super::members::MemberKeys;
use super::{MemberNode, NodeId, Raft, TypeConfig};
pub use crate::catalog::cbor_len as encoded_len;
use crate::catalog::{Actor, Batch, BatchResponse, CatalogCommand, Refusal};
use crate::store::LogStore;

/// A request from one zone member to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum ZoneRequest {
    /// Raft log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft leader election.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Writes received by a follower, for the leader to authorise again and propose as one
    /// entry: each command with the credential of whoever asked for it.
    ForwardWrite(Batch, Vec<Credential>),
    /// A follower asks the leader for a linearizable read point.
    ReadIndex,
    /// An admin's membership change, for the leader to carry out.
    ChangeMembers(MembershipChange),
    /// Would the member vote for the sender if it campaigned now? ([`super::election`]).
    PreVote(PreVote),
    /// A starting member with an empty log asks whether the zone exists
    /// ([`super::bootstrap`]).
    Hello,
    /// The digest of the member's zone-wide settings ([`super::consistency`]).
    Policy,
}

/// On whose authority a forwarded command is proposed. The leader does not take the follower's
/// word for the command's actor: it resolves the caller's token itself, checks the role, and
/// writes the actor it found into the command ([`Authorize`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// The bearer token the caller presented to the follower's API (over the zone's mutual TLS
    /// only; never logged).
    Token(String),
    /// The forwarding member itself, for the commands a node proposes on its own
    /// (recognitions, published envelopes): they must name that member as their node.
    Node,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Node => f.write_str("Node"),
        }
    }
}

/// Resolves a forwarded command's credential on the leader (the API's token table, wired in by
/// the node): the actor and party of a token, or `None` for an unknown or revoked one.
pub trait Authorize: Send + Sync + 'static {
    /// The caller that `token` identifies, if any.
    fn caller<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<(Actor, Option<String>)>>;
}

/// A change of the zone's voting membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a node: as a learner first, then as a voter once it has caught up.
    Add {
        /// Its Raft id.
        id: NodeId,
        /// How to reach and authenticate it.
        node: MemberNode,
    },
    /// Remove a voter.
    Remove {
        /// Its Raft id.
        id: NodeId,
    },
}

/// Why a forwarded write or read could not be served by the node asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The node asked is not the leader; it names the leader it knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader the node knows, if any.
        leader: Option<NodeId>,
    },
    /// Raft could not serve the request (shutting down, no quorum, ...).
    #[error("{0}")]
    Unavailable(String),
}

/// Why a membership change was not carried out (or not completely).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MembershipError {
    /// The node asked is not the leader; it names the leader it knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader the node knows, if any.
        leader: Option<NodeId>,
    },
    /// The change is not allowed as asked; nothing was changed.
    #[error("{message}")]
    Refused {
        /// `not_found`, `conflict` or `last_member`.
        code: String,
        /// What to do instead.
        message: String,
    },
    /// Raft could not carry it out; the message says what the membership was left as.
    #[error("{0}")]
    Failed(String),
}

/// The voters' names of `membership`.
fn voter_names(membership: &openraft::Membership<NodeId, MemberNode>) -> Vec<String> {
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .filter(|(id, _)| voters.contains(id))
        .map(|(_, n)| n.name.clone())
        .collect()
}

/// The answer to a [`ZoneRequest`], variant by variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum ZoneResponse {
    /// Answer to `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to `InstallSnapshot`.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Answer to `ForwardWrite`: the state machine's responses and the entry's index.
    ForwardWrite(Result<(BatchResponse, u64), ForwardError>),
    /// Answer to `ReadIndex`: the index to have applied before reading.
    ReadIndex(Result<u64, ForwardError>),
    /// Answer to `ChangeMembers`: the voters' names afterwards.
    ChangeMembers(Result<Vec<String>, MembershipError>),
    /// Answer to `PreVote`.
    PreVote(PreVoteAnswer),
    /// Answer to `Hello`.
    Hello(Hello),
    /// Answer to `Policy`.
    Policy([u8; 32]),
}

/// Why a request did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (refused, partitioned, TLS rejected).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The request was sent but no answer came in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke or the answer was malformed.
    #[error("network: {0}")]
    Network(String),
    /// The request is larger than a member accepts ([`MAX_FRAME`]); it was not sent.
    #[error("a request of {bytes} bytes exceeds the {limit}-byte frame limit")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// What a member accepts.
        limit: usize,
    },
}

/// The largest frame a member accepts, in either direction: 64 MiB. Nothing a member builds
/// comes near it: a log entry holds at most [`crate::catalog::MAX_BATCH_BYTES`] of commands
/// (or one command, itself bounded by the API's body limit, at most 16 MiB), and replication
/// sends at most [`crate::store::REPLICATION_BUDGET_BYTES`] of entries, or one entry, per AppendEntries.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The slowest transfer rate a replication RPC is given time for, in bytes per second: an
/// AppendEntries may take the heartbeat interval plus its size at this rate
/// ([`super::runtime::stretch_timeout`]), so 4 MiB gets 2 s more. Heartbeats keep the
/// heartbeat interval.
pub const REPLICATION_MIN_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;

/// The frame format this release writes: every request and answer between members is
/// `{"v": 1, "body": <request or answer>}` in CBOR. Format 0, the bare request or answer of the
/// first release, is still read, and a request in format 0 is answered in format 0, so a member
/// upgraded before its leader keeps serving it. A frame in a newer format is refused naming it.
pub const FRAME_FORMAT: u16 = 1;

/// How long a node to be added has to answer before the zone's membership is touched.
pub const PROBE_WAIT: Duration = Duration::from_secs(10);
/// How often it is asked meanwhile.
const PROBE_RETRY: Duration = Duration::from_millis(250);

#[derive(Serialize)]
struct FrameOut<'a, T> {
    v: u16,
    body: &'a T,
}

#[derive(Deserialize)]
struct FrameIn<T> {
    v: u16,
    body: Option<T>,
}

/// Encodes `body` as a frame in `format` (0 or [`FRAME_FORMAT`]).
///
/// # Errors
/// If `body` cannot be encoded.
pub fn encode_frame<T: Serialize>(body: &T, format: u16) -> Result<Vec<u8>, String> {
    let bytes = if format == 0 {
        cbor4ii::serde::to_vec(Vec::new(), body)
    } else {
        cbor4ii::serde::to_vec(Vec::new(), &FrameOut { v: format, body })
    };
    bytes.map_err(|e| e.to_string())
}

/// Decodes a frame of any format this release reads; the body and the frame's format.
///
/// # Errors
/// A frame that is not CBOR of a `T` in format 0 or 1, or one in a newer format.
pub fn decode_frame<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(T, u16), String> {
    match cbor4ii::serde::from_slice::<FrameIn<T>>(bytes) {
        Ok(FrameIn { v, .. }) if v > FRAME_FORMAT => Err(format!(
            "a frame in format {v}: this release reads formats 0 to {FRAME_FORMAT} (upgrade it)"
        )),
        Ok(FrameIn {
            v,
            body: Some(body),
        }) if v == FRAME_FORMAT => Ok((body, v)),
        Ok(FrameIn { v, body }) => Err(format!(
            "a malformed frame marked format {v} ({})",
            if body.is_some() {
                "not a versioned format"
            } else {
                "no body"
            }
        )),
        // Format 0: the bare body, with no version around it.
        Err(versioned) => cbor4ii::serde::from_slice::<T>(bytes)
            .map(|body| (body, 0))
            .map_err(|bare| {
                format!("neither a versioned frame ({versioned}) nor a bare one ({bare})")
            }),
    }
}

/// A boxed future, so transports can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries requests to zone members.
pub trait ZoneTransport: Send + Sync + 'static {
    /// Sends `request` to `target` and waits at most `timeout` for the answer.
    fn call<'a>(
        &'a self,
        target: NodeId,
        node: &'a MemberNode,
        request: ZoneRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ZoneResponse, TransportError>>;

    /// As [`ZoneTransport::call`], to a node that is not a member yet: only `node` itself (its
    /// key, at its address) may answer, on a connection used for nothing else.
    fn probe<'a>(
        &'a self,
        target: NodeId,
        node: &'a MemberNode,
        request: ZoneRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ZoneResponse, TransportError>> {
        self.call(target, node, request, timeout)
    }
}

/// Serves requests arriving at this node, whatever transport brought them.
#[derive(Clone)]
pub struct ZoneService {
    raft: Raft,
    member_keys: Option<MemberKeys>,
    /// The log and the leader lease, to answer pre-votes; without them none is granted.
    pre_vote: Option<(LogStore, Duration)>,
    /// Set while this member lost its state and no leader has reached it: no votes.
    amnesia: Amnesia,
    /// Resolves the credentials of forwarded writes (set once the API exists; until then, and
    /// without it, forwarded writes are refused). Shared by every clone.
    authorize: Arc<std::sync::OnceLock<Arc<dyn Authorize>>>,
    /// The members of the config, for a node whose Raft knows no membership yet.
    configured: Arc<std::collections::BTreeMap<NodeId, MemberNode>>,
    /// The digest of this node's zone-wide settings ([`super::consistency`]).
    policy: [u8; 32],
    /// To ask a node to be added whether it answers, before the membership changes; without
    /// it, nodes are added unasked.
    transport: Option<Arc<dyn ZoneTransport>>,
}

/// Who sent a request, as its transport authenticated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The ed25519 key of the TLS peer's certificate.
    Key([u8; 32]),
    /// The sender's Raft id (the in-process router, which knows who sends).
    Id(NodeId),
}

impl ZoneService {
    /// Serves for `raft`.
    pub fn new(raft: Raft) -> Self {
        ZoneService {
            raft,
            member_keys: None,
            pre_vote: None,
            amnesia: Amnesia::default(),
            authorize: Arc::default(),
            configured: Arc::default(),
            policy: [0; 32],
            transport: None,
        }
    }

    /// Asks a node to be added over `transport` first ([`ZoneService::change_membership_as_leader`]).
    pub fn with_transport(mut self, transport: Arc<dyn ZoneTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Answers [`ZoneRequest::Policy`] with `digest`.
    pub fn with_policy(mut self, digest: [u8; 32]) -> Self {
        self.policy = digest;
        self
    }

    /// Knows the config's `members`, for the time before Raft knows a membership.
    pub fn with_configured(
        mut self,
        members: std::collections::BTreeMap<NodeId, MemberNode>,
    ) -> Self {
        self.configured = Arc::new(members);
        self
    }

    /// The name of the current member `peer` is, or `None` if it is none: not in the
    /// membership (removed), or its key is no longer allowed (revoked by its root). Checked on
    /// every request, so a removed or revoked member's open connection serves nothing more.
    pub fn member_name(&self, peer: &Peer) -> Option<String> {
        if let (Peer::Key(key), Some(keys)) = (peer, &self.member_keys)
            && !keys.contains(key)
        {
            return None;
        }
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let find = |(id, node): (&NodeId, &MemberNode)| {
            let matches = match peer {
                Peer::Key(key) => node.public_key.as_slice() == key.as_slice(),
                Peer::Id(from) => id == from,
            };
            matches.then(|| node.name.clone())
        };
        if membership.nodes().count() > 0 {
            membership.nodes().find_map(find)
        } else {
            self.configured.iter().find_map(find)
        }
    }

    /// Resolves forwarded writes' credentials with `authorize` from now on, in every clone.
    pub fn set_authorize(&self, authorize: Arc<dyn Authorize>) {
        let _ = self.authorize.set(authorize);
    }

    /// Refuses votes while `amnesia` is set ([`super::bootstrap`]).
    pub fn with_amnesia(mut self, amnesia: Amnesia) -> Self {
        self.amnesia = amnesia;
        self
    }

    /// Answers pre-votes from this node's `log` under the leader `lease`.
    pub fn with_pre_vote(mut self, log: LogStore, lease: Duration) -> Self {
        self.pre_vote = Some((log, lease));
        self
    }

    async fn answer_pre_vote(&self, ask: &PreVote) -> PreVoteAnswer {
        let Some((log, lease)) = &self.pre_vote else {
            return PreVoteAnswer::Refused;
        };
        // A restored member refuses the real vote until its guard is lifted; saying so at the
        // pre-vote keeps a candidate from raising its term for nothing at every retry.
        if self.amnesia.is_restored() {
            return PreVoteAnswer::Refused;
        }
        match standing(&self.raft, log).await {
            Ok(me) => {
                let a = answer(ask, &me, *lease);
                tracing::debug!(candidate = ask.candidate, term = ask.term, answer = ?a, "pre-vote");
                a
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot answer a pre-vote");
                PreVoteAnswer::Refused
            }
        }
    }

    /// Lets membership changes admit a new member's key on this node's transport at once.
    pub fn with_member_keys(mut self, keys: MemberKeys) -> Self {
        self.member_keys = Some(keys);
        self
    }

    /// Whether this member was fenced ([`Amnesia::check_entries`]): its transport then takes
    /// no connection, so its zone's leader sees it unreachable and backs off.
    pub fn fenced(&self) -> bool {
        // Fenced implies restored: one atomic load for every other member.
        self.amnesia.is_restored() && self.amnesia.fenced().is_some()
    }

    /// Handles one request from `peer`; `None` if `peer` is not a current member (the
    /// transport then drops the request and the connection).
    pub async fn handle(&self, request: ZoneRequest, peer: Peer) -> Option<ZoneResponse> {
        let Some(name) = self.member_name(&peer) else {
            // A node that left or was revoked is told so when it asks to campaign, and served
            // nothing else.
            if matches!(request, ZoneRequest::PreVote(_)) {
                let revoked = match (&peer, &self.member_keys) {
                    (Peer::Key(key), Some(keys)) => keys.is_revoked(key),
                    _ => false,
                };
                let answer = if revoked {
                    PreVoteAnswer::Revoked
                } else {
                    PreVoteAnswer::NotAMember
                };
                return Some(ZoneResponse::PreVote(answer));
            }
            tracing::warn!(
                ?peer,
                "a request from a node that is not a current member; dropped"
            );
            return None;
        };
        // A member restored from a backup that is not of its zone's history answers nothing.
        // Only a request Raft would take (its vote at least this member's) is judged: a deposed
        // leader's log may lack what the zone committed since. Nothing of it for a member not
        // restored (fenced implies restored): one atomic load per request.
        if self.amnesia.is_restored() && self.restored_member_refuses(&request) {
            return None;
        }
        Some(self.serve(request, &name).await)
    }

    /// Whether this restored member answers nothing to `request`: it is fenced, or `request`
    /// fences it ([`Amnesia::check_entries`]).
    fn restored_member_refuses(&self, request: &ZoneRequest) -> bool {
        let current = self.raft.metrics().borrow().vote;
        match request {
            ZoneRequest::AppendEntries(rpc) if rpc.vote >= current => self.amnesia.check_entries(
                rpc.prev_log_id
                    .iter()
                    .chain(rpc.entries.iter().map(|e| &e.log_id)),
            ),
            ZoneRequest::InstallSnapshot(rpc) if rpc.vote >= current => {
                self.amnesia.check_entries(rpc.meta.last_log_id.iter())
            }
            _ => self.fenced(),
        }
    }

    async fn serve(&self, request: ZoneRequest, peer: &str) -> ZoneResponse {
        match request {
            ZoneRequest::AppendEntries(rpc) => {
                ZoneResponse::AppendEntries(self.raft.append_entries(rpc).await)
            }
            ZoneRequest::Vote(rpc) => {
                if self.amnesia.guards(&self.raft, rpc.vote.leader_id().term) {
                    let m = self.raft.metrics().borrow().clone();
                    let refused = VoteResponse::new(m.vote, None, false);
                    return ZoneResponse::Vote(Ok(refused));
                }
                ZoneResponse::Vote(self.raft.vote(rpc).await)
            }
            ZoneRequest::InstallSnapshot(rpc) => {
                ZoneResponse::InstallSnapshot(self.raft.install_snapshot(rpc).await)
            }
            ZoneRequest::ForwardWrite(batch, credentials) => {
                ZoneResponse::ForwardWrite(self.forwarded_write(batch, credentials, peer).await)
            }
            ZoneRequest::ReadIndex => ZoneResponse::ReadIndex(self.read_index_as_leader().await),
            ZoneRequest::ChangeMembers(c) => {
                ZoneResponse::ChangeMembers(self.change_membership_as_leader(c).await)
            }
            ZoneRequest::PreVote(ask) => ZoneResponse::PreVote(self.answer_pre_vote(&ask).await),
            ZoneRequest::Hello => ZoneResponse::Hello(hello(&self.raft, &self.amnesia)),
            ZoneRequest::Policy => ZoneResponse::Policy(self.policy),
        }
    }

    /// Carries out a membership change if this node leads.
    ///
    /// Asks `node`, about to be added as member `id`, for the digest of its zone-wide settings
    /// over a connection that only its key may answer, again every [`PROBE_RETRY`] for up to
    /// [`PROBE_WAIT`] (it may just have been started). A node that is not running, not
    /// reachable at its `raft_addr` or holds another key would otherwise be made a voter the
    /// zone cannot reach (openraft counts a new learner as caught up while the log is short),
    /// and a few of them cost the zone its majority; one with other settings would judge what
    /// crosses the zone's border differently. A revoked key is refused outright.
    async fn answers_as_member(
        &self,
        id: NodeId,
        node: &MemberNode,
    ) -> Result<(), MembershipError> {
        let key = <[u8; 32]>::try_from(node.public_key.as_slice()).ok();
        if let (Some(keys), Some(key)) = (&self.member_keys, key)
            && keys.is_revoked(&key)
        {
            return Err(MembershipError::Refused {
                code: "conflict".into(),
                message: format!(
                    "{}'s key was revoked by its exchange's root: it cannot be a member",
                    node.name
                ),
            });
        }
        let Some(transport) = &self.transport else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        let answer = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let answer = transport
                .probe(id, node, ZoneRequest::Policy, left.max(PROBE_RETRY))
                .await;
            if answer.is_ok() || tokio::time::Instant::now() + PROBE_RETRY >= deadline {
                break answer;
            }
            tokio::time::sleep(PROBE_RETRY).await;
        };
        let failed = |why: String| {
            MembershipError::Failed(format!(
                "{} did not answer at {} ({why}); nothing changed. Start it first (xchg run \
                 --config ... --join), and check that the zone's leader reaches it there, that \
                 it holds the key given and that its config lists the zone's members",
                node.name, node.raft_addr
            ))
        };
        match answer {
            Ok(ZoneResponse::Policy(theirs)) if theirs == self.policy => Ok(()),
            Ok(ZoneResponse::Policy(_)) => Err(MembershipError::Refused {
                code: "policy_differs".into(),
                message: format!(
                    "{} has another export policy, sibling agreement, [[outside]] agreements \
                     or founding parties than this zone: a zone's members must share them; \
                     make its config the same as the members' and restart it",
                    node.name
                ),
            }),
            Ok(_) => Err(failed("an unexpected answer".into())),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Adding a member that is already a voter with the same record answers the voters at
    /// once; adding one that is a learner finishes the promotion. If a step fails after the
    /// learner was added, the learner is removed again, so a failed request leaves the
    /// membership as it was (or says precisely what it left).
    pub async fn change_membership_as_leader(
        &self,
        change: MembershipChange,
    ) -> Result<Vec<String>, MembershipError> {
        if let Err(e) = self.raft.ensure_linearizable().await {
            return match e {
                RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                    Err(MembershipError::NotLeader {
                        leader: f.leader_id,
                    })
                }
                e => Err(MembershipError::Failed(e.to_string())),
            };
        }
        let current = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<NodeId> = current.voter_ids().collect();
        let failed = |e: &dyn std::fmt::Display| MembershipError::Failed(e.to_string());
        match change {
            MembershipChange::Add { id, node } => {
                match current.get_node(&id) {
                    Some(existing) if *existing != node => {
                        return Err(MembershipError::Refused {
                            code: "conflict".into(),
                            message: format!(
                                "the zone has a member {} with another address or key; remove \
                                 it first",
                                existing.name
                            ),
                        });
                    }
                    Some(_) if voters.contains(&id) => return Ok(voter_names(&current)),
                    _ => {}
                }
                let was_learner = current.get_node(&id).is_some();
                self.answers_as_member(id, &node).await?;
                if let (Some(keys), Ok(key)) = (
                    &self.member_keys,
                    <[u8; 32]>::try_from(node.public_key.as_slice()),
                ) {
                    keys.insert(key);
                }
                // Blocking: returns once the learner has caught up with the leader's log.
                let promoted = match self.raft.add_learner(id, node, true).await {
                    Ok(_) => self
                        .raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| failed(&e)),
                    Err(e) => Err(failed(&e)),
                };
                match promoted {
                    Ok(changed) => changed
                        .membership
                        .map(|m| voter_names(&m))
                        .ok_or_else(|| failed(&"no membership in the answer")),
                    Err(MembershipError::Failed(why)) if !was_learner => {
                        Err(self.undo_learner(id, &why).await)
                    }
                    Err(e) => Err(e),
                }
            }
            MembershipChange::Remove { id } => {
                if current.get_node(&id).is_none() {
                    return Err(MembershipError::Refused {
                        code: "not_found".into(),
                        message: "no such member in the zone".into(),
                    });
                }
                if voters.len() == 1 && voters.contains(&id) {
                    return Err(MembershipError::Refused {
                        code: "last_member".into(),
                        message: "this is the zone's only voter; a zone cannot remove its last \
                                  member"
                            .into(),
                    });
                }
                let request = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                let changed = self
                    .raft
                    .change_membership(request, false)
                    .await
                    .map_err(|e| failed(&e))?;
                changed
                    .membership
                    .map(|m| voter_names(&m))
                    .ok_or_else(|| failed(&"no membership in the answer"))
            }
        }
    }

    /// Removes the learner `id` added for a promotion that failed with `why`; says what the
    /// membership was left as.
    async fn undo_learner(&self, id: NodeId, why: &str) -> MembershipError {
        let undone = self
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await;
        match undone {
            Ok(_) => MembershipError::Failed(format!(
                "{why}; the learner added for it was removed again, nothing changed"
            )),
            Err(e) => MembershipError::Failed(format!(
                "{why}; the node stays a learner (removing it again failed: {e}): repeat the \
                 request to finish, or remove it"
            )),
        }
    }

    /// Authorises each forwarded command again, proposes those allowed as one entry, and
    /// answers every command in order (a refused one with its refusal, not proposed).
    async fn forwarded_write(
        &self,
        batch: Batch,
        credentials: Vec<Credential>,
        peer: &str,
    ) -> Result<(BatchResponse, u64), ForwardError> {
        if credentials.len() != batch.0.len() {
            return Err(ForwardError::Unavailable(
                "a forwarded batch must carry one credential per command".into(),
            ));
        }
        // Only the leader judges forwarded commands. A member that is not (a former leader
        // just restarted, whose peers still send to it) sends the forwarder on before reading
        // tokens from a replica that may not hold them yet: refusing there answered a
        // client's good write `403 forbidden` during a leader change (found by xchg-sim
        // leader-churn seeds 150 and 160).
        let (id, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.id, m.current_leader)
        };
        if leader != Some(id) {
            return Err(ForwardError::NotLeader { leader });
        }
        if self.authorize.get().is_none() {
            return Err(ForwardError::Unavailable(
                "this member is starting: it cannot check forwarded tokens yet".into(),
            ));
        }
        let mut verdicts = Vec::with_capacity(batch.0.len());
        for (cmd, credential) in batch.0.into_iter().zip(credentials) {
            verdicts.push(self.authorise(cmd, &credential, peer).await);
        }
        let allowed: Vec<CatalogCommand> = verdicts
            .iter()
            .filter_map(|v| v.as_ref().ok().cloned())
            .collect();
        let (mut responses, index) = if allowed.is_empty() {
            (Vec::new().into_iter(), 0)
        } else {
            let (r, index) = self.write_as_leader(Batch(allowed)).await?;
            (r.into_iter(), index)
        };
        let answers = verdicts
            .into_iter()
            .map(|v| match v {
                Ok(_) => responses.next().unwrap_or_else(|| {
                    Err(Refusal::Invalid("no response from the catalog".into()))
                }),
                Err(refusal) => Err(refusal),
            })
            .collect();
        Ok((answers, index))
    }

    /// The command as the leader allows it on `credential`'s authority, with the actor it
    /// resolved; or why not.
    async fn authorise(
        &self,
        mut cmd: CatalogCommand,
        credential: &Credential,
        peer: &str,
    ) -> Result<CatalogCommand, Refusal> {
        match credential {
            Credential::Node => match cmd.proposing_node() {
                Some(node) if node == peer => Ok(cmd),
                Some(node) => Err(Refusal::Forbidden(format!(
                    "member {peer} forwarded a command in member {node}'s name"
                ))),
                None => Err(Refusal::Forbidden(format!(
                    "member {peer} forwarded a {} without its caller's token",
                    cmd.action()
                ))),
            },
            Credential::Token(token) => {
                let Some(authorize) = self.authorize.get() else {
                    return Err(Refusal::Forbidden(
                        "this leader cannot check forwarded tokens".into(),
                    ));
                };
                let Some((actor, party)) = authorize.caller(token).await else {
                    return Err(Refusal::Forbidden(
                        "the forwarded token is unknown or revoked".into(),
                    ));
                };
                cmd.authorise(actor, party.as_deref())?;
                Ok(cmd)
            }
        }
    }

    async fn write_as_leader(&self, cmd: Batch) -> Result<(BatchResponse, u64), ForwardError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok((resp.data, resp.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        }
    }

    async fn read_index_as_leader(&self) -> Result<u64, ForwardError> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_in_the_current_format_and_says_so() {
        let bytes = encode_frame(&ZoneRequest::Policy, FRAME_FORMAT).expect("encode");
        let (back, format): (ZoneRequest, u16) = decode_frame(&bytes).expect("decode");
        assert!(matches!(back, ZoneRequest::Policy));
        assert_eq!(format, FRAME_FORMAT);
    }

    /// Issue #13: a member of the previous release sends the bare request; it is read, and
    /// the answer goes back in its format.
    #[test]
    fn a_bare_frame_of_the_previous_release_is_read_as_format_0() {
        let bare = cbor4ii::serde::to_vec(Vec::new(), &ZoneRequest::Hello).expect("encode");
        let (back, format): (ZoneRequest, u16) = decode_frame(&bare).expect("decode");
        assert!(matches!(back, ZoneRequest::Hello));
        assert_eq!(format, 0);
        assert_eq!(encode_frame(&ZoneRequest::Hello, 0).expect("encode"), bare);
    }

    #[test]
    fn a_frame_from_a_newer_release_is_refused_naming_its_format() {
        let newer = encode_frame(&ZoneRequest::ReadIndex, FRAME_FORMAT + 1).expect("encode");
        let err = decode_frame::<ZoneRequest>(&newer).expect_err("newer");
        assert!(err.contains("format 2"), "{err}");
    }
}
