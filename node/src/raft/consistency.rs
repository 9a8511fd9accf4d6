//! Settings every member of a zone must share — the export policy, the sibling agreement and
//! the `[[outside]]` agreements — compared between members at run time.
//!
//! Each member judges what reaches it by its own copy: a member with another agreement would
//! recognise what the others refuse, and the zone's catalog would depend on which member a
//! message happened to reach. So every member asks the others for their digest
//! ([`ZoneRequest::Policy`], `NodeConfig::zone_policy_digest`) every [`CHECK_EVERY`], logs a
//! warning naming the members that differ, and `GET /v1/status` shows it (`zone_policy`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::Raft;
use super::transport::{ZoneRequest, ZoneResponse, ZoneTransport};

/// How often members compare their zone-wide settings.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);
/// The first comparison, once the members have had time to start.
const FIRST_CHECK: Duration = Duration::from_secs(5);

/// What the last comparison found: the members whose settings differ from this node's.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PolicyCheck(Arc<RwLock<Vec<String>>>);

impl PolicyCheck {
    /// The members whose zone-wide settings differ from this node's (empty: all agree, or not
    /// checked yet).
    pub fn differing(&self) -> Vec<String> {
        self.0.read().map(|d| d.clone()).unwrap_or_default()
    }

    fn record(&self, differing: Vec<String>) {
        if let Ok(mut d) = self.0.write()
            && *d != differing
        {
            if differing.is_empty() {
                tracing::info!(
                    "the zone's members agree on the export policy and agreements again"
                );
            } else {
                tracing::warn!(
                    members = ?differing,
                    "these members have another export policy, sibling agreement or [[outside]] \
                     agreement than this node: a zone's members must share them (make the configs \
                     the same and restart)"
                );
            }
            *d = differing;
        }
    }
}

/// Compares this node's `digest` with the other members' every [`CHECK_EVERY`] until `stop`.
pub async fn run(
    raft: Raft,
    transport: Arc<dyn ZoneTransport>,
    digest: [u8; 32],
    check: PolicyCheck,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = FIRST_CHECK;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        wait = CHECK_EVERY;
        let metrics = raft.metrics().borrow().clone();
        let me = metrics.id;
        let mut differing = Vec::new();
        for (id, node) in metrics.membership_config.membership().nodes() {
            if *id == me {
                continue;
            }
            let answer = transport
                .call(*id, node, ZoneRequest::Policy, Duration::from_secs(2))
                .await;
            if let Ok(ZoneResponse::Policy(theirs)) = answer
                && theirs != digest
            {
                differing.push(node.name.clone());
            }
        }
        check.record(differing);
    }
}
