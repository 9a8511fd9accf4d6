//! openraft's network traits over a [`ZoneTransport`].

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::runtime::stretch_timeout;
use super::transport::{
    MAX_FRAME, REPLICATION_MIN_BYTES_PER_SEC, TransportError, ZoneRequest, ZoneResponse,
    ZoneTransport, encoded_len,
};
use super::{MemberNode, NodeId, TypeConfig};

/// Creates one client per replication target.
#[derive(Clone)]
pub struct ZoneNetwork {
    transport: Arc<dyn ZoneTransport>,
}

impl ZoneNetwork {
    /// Network over `transport`.
    pub fn new(transport: Arc<dyn ZoneTransport>) -> Self {
        ZoneNetwork { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for ZoneNetwork {
    type Network = ZoneClient;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> Self::Network {
        ZoneClient {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// Sends Raft RPCs to one member.
pub struct ZoneClient {
    transport: Arc<dyn ZoneTransport>,
    target: NodeId,
    node: MemberNode,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, MemberNode, RaftError<NodeId, E>>>;

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<NodeId, MemberNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "unexpected answer to {what}"
    ))))
}

fn transport_error<E: std::error::Error>(e: TransportError) -> RPCError<NodeId, MemberNode, E> {
    match e {
        // Unreachable makes openraft back off before retrying this peer.
        TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        TransportError::Timeout(_)
        | TransportError::Network(_)
        | TransportError::TooLarge { .. } => RPCError::Network(NetworkError::new(&e)),
    }
}

impl ZoneClient {
    async fn call(
        &self,
        request: ZoneRequest,
        option: &RPCOption,
    ) -> Result<ZoneResponse, TransportError> {
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        self.call_within(request, timeout).await
    }

    async fn call_within(
        &self,
        request: ZoneRequest,
        timeout: Duration,
    ) -> Result<ZoneResponse, TransportError> {
        self.transport
            .call(self.target, &self.node, request, timeout)
            .await
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<NodeId, E>,
    ) -> RPCError<NodeId, MemberNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

/// How long an AppendEntries of `bytes` may take: the heartbeat bound openraft gives it, plus
/// its size at [`REPLICATION_MIN_BYTES_PER_SEC`]. A heartbeat (no entries) keeps the bound.
pub fn replication_timeout(heartbeat: Duration, bytes: usize) -> Duration {
    let transfer_ms = (bytes as u64).saturating_mul(1000) / REPLICATION_MIN_BYTES_PER_SEC;
    heartbeat.max(Duration::from_millis(50)) + Duration::from_millis(transfer_ms)
}

/// The waits before each retry of a member found unreachable: half a second, then doubling up
/// to [`MAX_BACKOFF`], until an RPC to it succeeds again (openraft then drops the sequence).
/// openraft's own is half a second for ever, which logs a failed RPC twice a second for as long
/// as a member is down.
fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(Duration::from_millis(500)), |wait| {
        Some((*wait * 2).min(MAX_BACKOFF))
    })
}

/// The longest wait between retries of an unreachable member: how long a member back after
/// an outage may wait to be sent what it missed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl RaftNetwork<TypeConfig> for ZoneClient {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(unreachable_backoff())
    }

    /// Sends entries with a timeout sized to their bytes, and refuses to build a frame the
    /// follower would not accept: openraft then retries at once with fewer entries.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let entries = rpc.entries.len() as u64;
        let request = ZoneRequest::AppendEntries(rpc);
        let bytes = encoded_len(&request);
        if bytes > MAX_FRAME && entries > 1 {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            ));
        }
        let timeout = replication_timeout(option.hard_ttl(), bytes);
        stretch_timeout(timeout);
        match self
            .call_within(request, timeout)
            .await
            .map_err(transport_error)?
        {
            ZoneResponse::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            _ => Err(unexpected("append_entries")),
        }
    }

    /// Sends one chunk of a snapshot. The last chunk makes the follower install the whole
    /// catalog before it answers, which takes time in proportion to the snapshot, not to the
    /// chunk: its timeout is stretched by the whole size (openraft gives every chunk
    /// `install_snapshot_timeout`, and a follower whose install outlasted it was sent the
    /// snapshot again from the start, for ever).
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let carried = rpc.data.len() as u64;
        let bytes = if rpc.done {
            rpc.offset.saturating_add(carried)
        } else {
            carried
        };
        let timeout = replication_timeout(option.hard_ttl(), bytes as usize);
        stretch_timeout(timeout);
        match self
            .call_within(ZoneRequest::InstallSnapshot(rpc), timeout)
            .await
            .map_err(transport_error)?
        {
            ZoneResponse::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(unexpected("install_snapshot")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self
            .call(ZoneRequest::Vote(rpc), &option)
            .await
            .map_err(transport_error)?
        {
            ZoneResponse::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(unexpected("vote")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unreachable_member_is_retried_less_often_up_to_a_bound() {
        let waits: Vec<u64> = super::unreachable_backoff()
            .take(6)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 2000, 2000, 2000]);
    }
}
