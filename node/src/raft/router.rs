//! An in-process zone transport with fault injection, for tests and simulations.
//!
//! Every node registers its [`ZoneService`]; each node gets a [`RouterTransport`] that knows
//! who is sending, so the router can fault links in either direction. The faults are those of
//! [`crate::fault`], shared with the in-process gossip network: isolation, one- and two-way
//! cuts, pauses, seeded loss and duplication, and delay with a tail. A request and its answer
//! each cross their link: a lost request or answer is a timeout for the caller, as on a real
//! network; a duplicated request is handled twice by its receiver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::transport::{
    BoxFuture, FRAME_FORMAT, MAX_FRAME, Peer, TransportError, ZoneRequest, ZoneResponse,
    ZoneService, ZoneTransport, decode_frame, encode_frame, encoded_len,
};
use super::{MemberNode, NodeId};
use crate::fault::{self, Delay, FaultModel};

/// The shared in-process network.
pub struct Router {
    services: Mutex<BTreeMap<NodeId, ZoneService>>,
    faults: Mutex<FaultModel<NodeId>>,
}

impl Router {
    /// A network with no faults; every fault draw derives from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Router {
            services: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(FaultModel::new(seed)),
        })
    }

    /// Makes `id` reachable through `service`.
    pub fn register(&self, id: NodeId, service: ZoneService) {
        if let Ok(mut s) = self.services.lock() {
            s.insert(id, service);
        }
    }

    /// Removes `id` (a stopped node).
    pub fn unregister(&self, id: NodeId) {
        if let Ok(mut s) = self.services.lock() {
            s.remove(&id);
        }
    }

    /// The transport `from` sends through.
    pub fn transport(self: &Arc<Self>, from: NodeId) -> Arc<RouterTransport> {
        Arc::new(RouterTransport {
            router: self.clone(),
            from,
        })
    }

    /// The fault model, to change: `router.faults().cut(&a, &b)`.
    pub fn faults(&self) -> MutexGuard<'_, FaultModel<NodeId>> {
        // Every change to the model is one field at a time, so a panicked holder left it whole.
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: NodeId) {
        self.faults().isolate(&id);
    }

    /// Restores the links of `id` (cut single links stay cut).
    pub fn heal(&self, id: NodeId) {
        self.faults().heal(&id);
    }

    /// Cuts the directed link `from → to`.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.faults().cut_one_way(&from, &to);
    }

    /// Clears every fault ([`FaultModel::heal_all`]).
    pub fn heal_all(&self) {
        self.faults().heal_all();
    }

    /// Delays every message by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.faults().set_delay(Delay::fixed(delay));
    }

    /// Loses each message with probability `per_million` / 1,000,000.
    pub fn set_loss_per_million(&self, per_million: u32) {
        self.faults().set_loss_per_million(per_million);
    }

    /// Waits out the fate of one message `from → to` ([`fault::cross`]): the number of copies to
    /// deliver (0 when lost), or the cut that stops it.
    async fn cross(&self, from: NodeId, to: NodeId) -> Result<u32, TransportError> {
        fault::cross(|| {
            let mut faults = self.faults();
            (faults.fate(&from, &to), faults.resumes())
        })
        .await
        .ok_or_else(|| TransportError::Unreachable(format!("link {from} -> {to} is cut")))
    }
}

/// One node's view of the [`Router`].
pub struct RouterTransport {
    router: Arc<Router>,
    from: NodeId,
}

impl ZoneTransport for RouterTransport {
    fn call<'a>(
        &'a self,
        target: NodeId,
        _node: &'a MemberNode,
        request: ZoneRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ZoneResponse, TransportError>> {
        Box::pin(async move {
            // The same frame limit as the TLS transport, so tests see what real nodes would.
            let bytes = encoded_len(&request);
            if bytes > MAX_FRAME {
                return Err(TransportError::TooLarge {
                    bytes,
                    limit: MAX_FRAME,
                });
            }
            let exchange = async {
                let copies = self.router.cross(self.from, target).await?;
                if copies == 0 {
                    // Lost on the way: the caller hears nothing until its timeout.
                    return std::future::pending().await;
                }
                let service = self
                    .router
                    .services
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&target).cloned())
                    .ok_or_else(|| {
                        TransportError::Unreachable(format!("node {target} is not running"))
                    })?;
                if copies > 1 {
                    // The duplicate is a second decoding of the same bytes, handled on its own.
                    let copy = encode_frame(&request, FRAME_FORMAT)
                        .ok()
                        .and_then(|b| decode_frame::<ZoneRequest>(&b).ok())
                        .map(|(copy, _)| copy);
                    if let Some(copy) = copy {
                        let (service, from) = (service.clone(), self.from);
                        tokio::spawn(async move {
                            let _ = service.handle(copy, Peer::Id(from)).await;
                        });
                    }
                }
                let response = service
                    .handle(request, Peer::Id(self.from))
                    .await
                    .ok_or_else(|| {
                        TransportError::Unreachable(format!(
                            "node {target} refused node {} (not a current member)",
                            self.from
                        ))
                    })?;
                // The answer travels back over its own link, which may be cut, lossy or slow.
                // The request was handled: an answer lost now is a broken connection after
                // sending (the write may have been applied), never `Unreachable`, which tells
                // the caller nothing was sent and a retry is safe.
                match self.router.cross(target, self.from).await {
                    Ok(0) => std::future::pending().await,
                    Ok(_) => Ok(response),
                    Err(_) => Err(TransportError::Network(format!(
                        "the answer of node {target} was lost: link {target} -> {} is cut",
                        self.from
                    ))),
                }
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| TransportError::Timeout(timeout))?
        })
    }
}
