//! An in-process zone transport with fault injection, for tests and simulations.
//!
//! Every node registers its [`ZoneService`]; each node gets a [`RouterTransport`] that knows
//! who is sending, so the router can cut links in either direction. Faults: isolating a node
//! (all its links down), cutting a single directed link, a fixed delay, and a drop probability
//! driven by a seeded generator so a run can be reproduced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::transport::{
    BoxFuture, MAX_FRAME, Peer, TransportError, ZoneRequest, ZoneResponse, ZoneService,
    ZoneTransport, encoded_len,
};
use super::{MemberNode, NodeId};

/// Fault settings; all off by default.
#[derive(Debug, Default)]
struct Faults {
    isolated: BTreeSet<NodeId>,
    cut: BTreeSet<(NodeId, NodeId)>,
    delay: Duration,
    drop_per_million: u32,
    rng: u64,
}

impl Faults {
    /// xorshift64*: cheap, seeded, reproducible.
    fn next(&mut self) -> u64 {
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The shared in-process network.
#[derive(Default)]
pub struct Router {
    services: Mutex<BTreeMap<NodeId, ZoneService>>,
    faults: Mutex<Faults>,
}

impl Router {
    /// A network with no faults, and `seed` for the drop generator.
    pub fn new(seed: u64) -> Arc<Self> {
        let router = Router::default();
        if let Ok(mut f) = router.faults.lock() {
            f.rng = seed;
        }
        Arc::new(router)
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

    fn with_faults(&self, f: impl FnOnce(&mut Faults)) {
        if let Ok(mut faults) = self.faults.lock() {
            f(&mut faults);
        }
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: NodeId) {
        self.with_faults(|f| {
            f.isolated.insert(id);
        });
    }

    /// Restores the links of `id` (cut single links stay cut).
    pub fn heal(&self, id: NodeId) {
        self.with_faults(|f| {
            f.isolated.remove(&id);
        });
    }

    /// Cuts the directed link `from → to`.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.with_faults(|f| {
            f.cut.insert((from, to));
        });
    }

    /// Restores every link and removes delay and drops.
    pub fn heal_all(&self) {
        self.with_faults(|f| {
            f.isolated.clear();
            f.cut.clear();
            f.delay = Duration::ZERO;
            f.drop_per_million = 0;
        });
    }

    /// Delays every message by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.with_faults(|f| f.delay = delay);
    }

    /// Drops each message with probability `p` (0.0 to 1.0).
    pub fn set_drop_probability(&self, p: f64) {
        self.with_faults(|f| f.drop_per_million = (p.clamp(0.0, 1.0) * 1_000_000.0) as u32);
    }

    /// Decides a message's fate: `Err` if it is lost, else the delay to apply.
    fn route(&self, from: NodeId, to: NodeId) -> Result<Duration, TransportError> {
        let mut faults = self
            .faults
            .lock()
            .map_err(|_| TransportError::Network("router poisoned".into()))?;
        if faults.isolated.contains(&from)
            || faults.isolated.contains(&to)
            || faults.cut.contains(&(from, to))
        {
            return Err(TransportError::Unreachable(format!(
                "link {from} -> {to} is cut"
            )));
        }
        if faults.drop_per_million > 0
            && (faults.next() % 1_000_000) < u64::from(faults.drop_per_million)
        {
            return Err(TransportError::Network(format!(
                "message {from} -> {to} dropped"
            )));
        }
        Ok(faults.delay)
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
            let delay = self.router.route(self.from, target)?;
            let service = self
                .router
                .services
                .lock()
                .ok()
                .and_then(|s| s.get(&target).cloned())
                .ok_or_else(|| {
                    TransportError::Unreachable(format!("node {target} is not running"))
                })?;
            let exchange = async {
                tokio::time::sleep(delay).await;
                let response = service
                    .handle(request, Peer::Id(self.from))
                    .await
                    .ok_or_else(|| {
                        TransportError::Unreachable(format!(
                            "node {target} refused node {} (not a current member)",
                            self.from
                        ))
                    })?;
                // The answer travels back over the same link, which may have been cut meanwhile.
                self.router.route(target, self.from)?;
                Ok(response)
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| TransportError::Timeout(timeout))?
        })
    }
}
