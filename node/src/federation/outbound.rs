//! The publisher: while this node leads its zone, it signs the outbox's pending entries with its
//! node key and delegation, publishes each signed envelope on gossip and records it through Raft
//! (after which peers catching up can fetch it from any node of the zone).
//!
//! The entry itself was written to the replicated outbox by the approval, so nothing is lost if
//! the leader dies at any point: a new leader signs and publishes every entry still pending.
//! The body, and so the content id receivers deduplicate on, is the same whoever signs; a second
//! envelope for the same body is a harmless duplicate.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;
use xchg_protocol::{AnnouncementKind, Envelope, Timestamp};

use super::service::Federation;
use crate::catalog::CatalogCommand;
use crate::gossip::{PublishError, topic_of};

/// Outbox entries signed per round.
const PER_ROUND: i64 = 256;
/// Gossip publish attempts while no peer subscribes yet (catch-up covers the rest).
const PUBLISH_ATTEMPTS: u32 = 8;

fn kind_of(name: &str) -> Option<AnnouncementKind> {
    match name {
        "listing" => Some(AnnouncementKind::Listing),
        "delisting" => Some(AnnouncementKind::Delisting),
        _ => None,
    }
}

impl Federation {
    /// Publishes the outbox whenever it may have changed, while this node leads.
    pub(crate) async fn publish_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let outbox = self.signals_outbox();
        loop {
            tokio::select! {
                _ = outbox.notified() => {}
                _ = tokio::time::sleep(self.tuning.outbox_poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if !self.is_leader() {
                continue;
            }
            if !self.tuning.publish_delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(self.tuning.publish_delay) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            match self.publish_pending().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(entries = n, "published outbox entries"),
                Err(e) => tracing::warn!(error = %e, "publishing the outbox"),
            }
        }
    }

    /// Signs, records and publishes every pending outbox entry; returns how many.
    ///
    /// # Errors
    /// Reading the outbox failed.
    pub async fn publish_pending(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let own = &self.config.exchange.id;
        if self.trust().await.is_revoked(own, &self.key.public()) {
            // Receivers would ignore everything it signs; another member must lead instead.
            tracing::error!(
                "this node's key is revoked by its exchange: it does not sign announcements; \
                 remove it from the zone and add a node with a new key"
            );
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let rows = sqlx::query(
                "SELECT seq, kind, body FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
            )
            .bind(PER_ROUND)
            .fetch_all(&self.db.read)
            .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let mut proposals = Vec::with_capacity(rows.len());
            for row in &rows {
                let seq: i64 = row.try_get(0)?;
                let kind: String = row.try_get(1)?;
                let body: Vec<u8> = row.try_get(2)?;
                let Some(kind) = kind_of(&kind) else { continue };
                if kind == AnnouncementKind::Listing && !self.may_leave(seq, &body) {
                    continue;
                }
                let envelope = Envelope::seal(
                    kind,
                    body,
                    &self.key,
                    Some(self.config.zone.delegation.clone()),
                )
                .to_bytes();
                // Gossip first, then the record: the entry is already in the replicated outbox,
                // so a crash in between only means the next leader signs and sends it again.
                self.publish_envelope(envelope.clone());
                let cmd = CatalogCommand::RecordPublished {
                    outbox_seq: seq as u64,
                    envelope: envelope.clone(),
                    at: Timestamp::now(),
                    node: self.config.node.name.to_string(),
                };
                let proposer = self.proposer.clone();
                proposals.push(async move { proposer.propose(cmd).await });
            }
            let results = futures::future::join_all(proposals).await;
            let mut recorded = 0;
            for result in results {
                match result {
                    Ok((Ok(_), _)) => recorded += 1,
                    Ok((Err(refusal), _)) => {
                        tracing::warn!(%refusal, "outbox entry not recorded");
                    }
                    Err(e) => {
                        // Most likely no longer the leader: the next leader takes over.
                        tracing::info!(error = %e.message, "outbox entry not recorded");
                        return Ok(total + recorded);
                    }
                }
            }
            total += recorded;
            if recorded == 0 {
                return Ok(total);
            }
        }
    }

    /// The firewall once more, with this node's own export policy, just before signing: the
    /// outbox entry was judged when the approval was applied, by the policy of whichever node
    /// applied it; a zone whose members' configs disagree must not leak through the laxest.
    fn may_leave(&self, seq: i64, body: &[u8]) -> bool {
        let verdict = xchg_protocol::canonical::from_canonical::<xchg_protocol::Listing>(
            body,
            &xchg_protocol::Limits::default(),
        )
        .map_err(|e| e.to_string())
        .and_then(|l| super::policy::export(&l, &self.config.export));
        match verdict {
            Ok(()) => true,
            Err(why) => {
                tracing::error!(
                    outbox = seq,
                    %why,
                    "not publishing: this node's export policy withholds it (the zone's members \
                     must share one export policy)"
                );
                false
            }
        }
    }

    /// Publishes a recorded envelope on the exchange's topic, retrying while no peer listens.
    pub(crate) fn publish_envelope(self: &Arc<Self>, envelope: Vec<u8>) {
        let this = self.clone();
        tokio::spawn(async move {
            let topic = topic_of(this.config.exchange.id.as_str());
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=PUBLISH_ATTEMPTS {
                match this.net.publish(topic.clone(), envelope.clone()).await {
                    Ok(()) => {
                        this.metrics.published("published");
                        return;
                    }
                    Err(PublishError::Duplicate) => {
                        this.metrics.published("duplicate");
                        return;
                    }
                    Err(PublishError::NoPeers(_)) if attempt < PUBLISH_ATTEMPTS => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(4));
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "gossip publish failed; peers will catch up");
                        this.metrics.published("failed");
                        return;
                    }
                }
            }
        });
    }
}
