//! Anti-entropy over request-response (PROTOCOL.md 7.5).
//!
//! Serving: a node answers summaries, inventory pages and fetches from the announcements its zone
//! holds, and identity requests with its own delegation. Asking: while it leads, a node picks
//! one peer outside its zone per round (round-robin), compares per-exchange summaries, pages
//! through the peer's inventory from where it last got to, fetches what it has not decided yet
//! and runs every envelope through the same pipeline as gossip. A zone that was partitioned or
//! offline converges with no operator action.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use sqlx::Row;
use tokio::sync::watch;
use xchg_protocol::catchup::{
    Blob, ExchangeSummary, Item, MAX_FETCH, MAX_INVENTORY, Request, Response, digest,
};
use xchg_protocol::{ContentId, ExchangeId};

use super::service::Federation;
use super::verdicts::Via;
use crate::gossip::Peer;

/// Inventory pages one round reads from one peer for one exchange.
pub const PAGES_PER_ROUND: usize = 16;
/// Longest one catch-up round may take.
pub const ROUND_TIME: Duration = Duration::from_secs(60);
/// Rounds after which the positions reached are forgotten and peers' inventories read again
/// from the start, so announcements ignored for reasons that pass (a clock ahead, a root key
/// being rotated) are judged again.
pub const RESCAN_EVERY_ROUNDS: u64 = 60;

/// Why a catch-up round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CatchupError {
    /// The request failed.
    #[error(transparent)]
    Request(#[from] crate::gossip::RequestError),
    /// The peer answered something that is not a valid response to the request.
    #[error("peer answered badly: {0}")]
    BadAnswer(String),
    /// The local replica could not be read.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Federation {
    /// Answers one catch-up request (a response body, never an error at the transport level).
    pub async fn answer(&self, peer: &Peer, body: &[u8]) -> Vec<u8> {
        let response = match Request::from_bytes(body) {
            Err(e) => Response::Error {
                message: format!("undecodable request: {e}"),
            },
            Ok(req) => match self.serve(req).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "catch-up request failed");
                    Response::Error {
                        message: "internal error".into(),
                    }
                }
            },
        };
        response.to_bytes().unwrap_or_default()
    }

    async fn serve(&self, req: Request) -> Result<Response, sqlx::Error> {
        Ok(match req {
            Request::Summary {} => Response::Summary {
                exchanges: self.summaries().await?,
            },
            Request::Inventory {
                exchange,
                after,
                limit,
            } => {
                let limit = limit.clamp(1, MAX_INVENTORY);
                let rows = sqlx::query(
                    "SELECT seq, content_id FROM announcements WHERE exchange = ? AND seq > ?
                     ORDER BY seq LIMIT ?",
                )
                .bind(exchange.as_str())
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.db.read)
                .await?;
                let more = rows.len() > limit as usize;
                let mut items = Vec::with_capacity(rows.len());
                for row in rows.iter().take(limit as usize) {
                    let pos: i64 = row.try_get(0)?;
                    let id: String = row.try_get(1)?;
                    if let Ok(id) = id.parse() {
                        items.push(Item {
                            pos: pos as u64,
                            id,
                        });
                    }
                }
                Response::Inventory { items, more }
            }
            Request::Fetch { ids } => {
                let mut envelopes = Vec::with_capacity(ids.len());
                for id in ids.iter().take(MAX_FETCH) {
                    let env: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT envelope FROM announcements WHERE content_id = ?",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&self.db.read)
                    .await?;
                    if let Some(env) = env {
                        envelopes.push(Blob(env));
                    }
                }
                Response::Envelopes { envelopes }
            }
            // Who this node is: the delegation of the key it connected with.
            Request::Identity {} => Response::Identity {
                delegation: self.config.zone.delegation.clone(),
            },
        })
    }

    /// Count and digest of the announcements held, per exchange.
    pub async fn summaries(&self) -> Result<Vec<ExchangeSummary>, sqlx::Error> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT exchange, content_id FROM announcements ORDER BY exchange")
                .fetch_all(&self.db.read)
                .await?;
        let mut out: Vec<ExchangeSummary> = Vec::new();
        let mut ids: Vec<ContentId> = Vec::new();
        let mut current: Option<String> = None;
        let mut flush = |exchange: Option<String>, ids: &mut Vec<ContentId>| {
            if let Some(e) = exchange.and_then(|e| e.parse::<ExchangeId>().ok()) {
                out.push(ExchangeSummary {
                    exchange: e,
                    count: ids.len() as u64,
                    digest: digest(ids.iter()),
                });
            }
            ids.clear();
        };
        for (exchange, id) in rows {
            if current.as_deref() != Some(exchange.as_str()) {
                flush(current.take(), &mut ids);
                current = Some(exchange);
            }
            if let Ok(id) = id.parse() {
                ids.push(id);
            }
        }
        flush(current, &mut ids);
        Ok(out)
    }

    /// Runs catch-up rounds while leading, every `catchup_every` with ±20 % jitter.
    pub(crate) async fn catchup_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let base = self.tuning.catchup_every.as_millis() as u64;
            let jitter = rand::thread_rng().gen_range(0..=base / 5 * 2);
            let wait = Duration::from_millis(base - base / 5 + jitter);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if !self.is_leader() {
                continue;
            }
            match self.catch_up_once().await {
                Ok(n) => {
                    self.metrics.catchup("round", 1);
                    if n > 0 {
                        tracing::info!(fetched = n, "caught up");
                    }
                }
                Err(e) => {
                    self.metrics.catchup("failed", 1);
                    tracing::debug!(error = %e, "catch-up round");
                }
            }
        }
    }

    /// Peer ids of this zone's members (same replica: nothing to catch up from them).
    fn zone_peers(&self) -> HashSet<String> {
        self.members()
            .iter()
            .filter_map(|m| <[u8; 32]>::try_from(m.public_key.as_slice()).ok())
            .filter_map(|k| xchg_protocol::PublicKey::from_bytes(&k).ok())
            .map(|k| k.peer_id())
            .collect()
    }

    /// One round against the next peer outside this zone; returns how many envelopes it fetched.
    ///
    /// # Errors
    /// When a request fails or the peer answers out of protocol.
    pub async fn catch_up_once(self: &Arc<Self>) -> Result<usize, CatchupError> {
        let mine = self.zone_peers();
        let mut peers: Vec<String> = self
            .net
            .peers()
            .await
            .into_iter()
            .map(|p| p.peer)
            .filter(|p| !mine.contains(p))
            .collect();
        peers.sort();
        peers.dedup();
        if peers.is_empty() {
            return Ok(0);
        }
        let n = self.next_peer.fetch_add(1, Ordering::Relaxed);
        if n % RESCAN_EVERY_ROUNDS == RESCAN_EVERY_ROUNDS - 1
            && let Ok(mut c) = self.cursors.lock()
        {
            c.clear();
        }
        let peer = Peer(peers[n as usize % peers.len()].clone());
        tokio::time::timeout(ROUND_TIME, self.catch_up_from(&peer))
            .await
            .map_err(|_| CatchupError::BadAnswer(format!("round with {peer} took too long")))?
    }

    /// One round against `peer`.
    ///
    /// # Errors
    /// When a request fails or the peer answers out of protocol.
    pub async fn catch_up_from(self: &Arc<Self>, peer: &Peer) -> Result<usize, CatchupError> {
        let Response::Summary { exchanges } = self.ask(peer, &Request::Summary {}).await? else {
            return Err(CatchupError::BadAnswer("expected a summary".into()));
        };
        let wanted: BTreeSet<String> = std::iter::once(self.config.exchange.id.to_string())
            .chain(self.config.outside.iter().map(|o| o.id.to_string()))
            .collect();
        let ours = self.summaries().await?;
        let mut fetched = 0;
        for theirs in exchanges {
            if !wanted.contains(theirs.exchange.as_str()) {
                continue;
            }
            if ours.iter().any(|o| o == &theirs) {
                continue;
            }
            fetched += self.page_through(peer, &theirs.exchange).await?;
        }
        Ok(fetched)
    }

    async fn ask(&self, peer: &Peer, req: &Request) -> Result<Response, CatchupError> {
        let body = req
            .to_bytes()
            .map_err(|e| CatchupError::BadAnswer(e.to_string()))?;
        let answer = self.net.request(peer.clone(), body).await?;
        match Response::from_bytes(&answer) {
            Ok(Response::Error { message }) => Err(CatchupError::BadAnswer(message)),
            Ok(r) => Ok(r),
            Err(e) => Err(CatchupError::BadAnswer(e.to_string())),
        }
    }

    /// Pages through `peer`'s inventory of `exchange` from the last position reached, fetching
    /// and judging what this zone has not decided yet. Everything the peer says is checked: a
    /// page holds at most [`MAX_INVENTORY`] items in strictly increasing positions after the one
    /// asked for, a fetch answers only ids that were asked for, and one round reads at most
    /// [`PAGES_PER_ROUND`] pages.
    async fn page_through(
        self: &Arc<Self>,
        peer: &Peer,
        exchange: &ExchangeId,
    ) -> Result<usize, CatchupError> {
        let key = (peer.0.clone(), exchange.to_string());
        let mut after = self
            .cursors
            .lock()
            .ok()
            .and_then(|c| c.get(&key).copied())
            .unwrap_or(0);
        let mut fetched = 0;
        for _ in 0..PAGES_PER_ROUND {
            let req = Request::Inventory {
                exchange: exchange.clone(),
                after,
                limit: MAX_INVENTORY,
            };
            let Response::Inventory { items, more } = self.ask(peer, &req).await? else {
                return Err(CatchupError::BadAnswer("expected an inventory".into()));
            };
            check_page(&items, after)?;
            let Some(last) = items.last().map(|i| i.pos) else {
                break;
            };
            let mut missing = Vec::new();
            for item in &items {
                if !self.seen(&item.id).await {
                    missing.push(item.id);
                }
            }
            let mut complete = true;
            for chunk in missing.chunks(MAX_FETCH) {
                let asked: HashSet<ContentId> = chunk.iter().copied().collect();
                let req = Request::Fetch {
                    ids: chunk.to_vec(),
                };
                let Response::Envelopes { envelopes } = self.ask(peer, &req).await? else {
                    return Err(CatchupError::BadAnswer("expected envelopes".into()));
                };
                if envelopes.len() > chunk.len() {
                    return Err(CatchupError::BadAnswer(
                        "more envelopes than asked for".into(),
                    ));
                }
                // Whatever was asked for and not served stays undecided: try again next round.
                complete &= envelopes.len() == chunk.len();
                for Blob(bytes) in envelopes {
                    let judgement = self.judge(&bytes, exchange.as_str(), peer).await;
                    self.note(
                        &judgement,
                        &bytes,
                        peer,
                        Some(exchange.as_str()),
                        Via::Catchup,
                    );
                    if let Some(p) = judgement.proposal {
                        if !asked.contains(&p.content_id()) {
                            return Err(CatchupError::BadAnswer(
                                "served an envelope that was not asked for".into(),
                            ));
                        }
                        fetched += 1;
                        complete &= self.propose_and_wait(p).await;
                    }
                }
            }
            self.metrics.catchup("fetched", fetched as u64);
            if !complete {
                // Try this page again next round.
                break;
            }
            after = last;
            if let Ok(mut c) = self.cursors.lock() {
                c.insert(key.clone(), after);
            }
            if !more {
                break;
            }
        }
        Ok(fetched)
    }
}

/// Checks an inventory page: at most [`MAX_INVENTORY`] items, positions strictly increasing and
/// all after `after`.
///
/// # Errors
/// [`CatchupError::BadAnswer`] naming the broken rule.
pub fn check_page(items: &[Item], after: u64) -> Result<(), CatchupError> {
    if items.len() > MAX_INVENTORY as usize {
        return Err(CatchupError::BadAnswer(format!(
            "inventory page of {} items; at most {MAX_INVENTORY}",
            items.len()
        )));
    }
    let mut previous = after;
    for item in items {
        if item.pos <= previous {
            return Err(CatchupError::BadAnswer(
                "inventory positions do not increase".into(),
            ));
        }
        previous = item.pos;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(positions: &[u64]) -> Vec<Item> {
        positions
            .iter()
            .map(|&pos| Item {
                pos,
                id: ContentId::of(&pos.to_be_bytes()),
            })
            .collect()
    }

    #[test]
    fn an_inventory_page_must_be_bounded_and_move_forward() {
        assert!(check_page(&items(&[5, 6, 9]), 4).is_ok());
        assert!(check_page(&[], 4).is_ok());
        assert!(check_page(&items(&[4, 5]), 4).is_err(), "not after `after`");
        assert!(check_page(&items(&[5, 5]), 0).is_err(), "repeated position");
        assert!(check_page(&items(&[6, 5]), 0).is_err(), "going back");
        let long: Vec<u64> = (1..=u64::from(MAX_INVENTORY) + 1).collect();
        assert!(check_page(&items(&long), 0).is_err(), "over the page bound");
    }
}
