//! The supervision figures of the other zones of this exchange, asked over the catch-up
//! protocol (PROTOCOL.md 7.5): the hub gathers every zone's figures in one view. A node
//! answers only a peer that proved it is a node of a zone of the same exchange (its
//! delegation, `identity`) or a member of its own zone: an outside exchange, or a peer that
//! proved nothing, is refused. The figures are the zone's own answer to
//! `GET /v1/supervision/stats` ([`crate::catalog::supervision`]).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use xchg_protocol::catchup::{Blob, MAX_FIGURES_BYTES, Request, Response};
use xchg_protocol::{ExchangeId, ZoneId};

use super::driver::Federation;
use super::identity::Identity;
use crate::catalog::supervision::{self, PeriodFigures, Window, ZoneStats, day_of};
use crate::gossip::Peer;
use crate::store::Db;

/// How long one zone may take to answer.
pub const FIGURES_TIMEOUT: Duration = Duration::from_secs(3);
/// Most zones asked at once (an exchange has a hub and its counties).
pub const MAX_ZONES: usize = 64;
/// Nodes of one zone tried in turn before it is reported unreachable.
const TRIES_PER_ZONE: usize = 2;

/// A question for a zone's figures, as received.
pub struct FiguresAsked<'a> {
    /// The zone asked about.
    pub zone: &'a ZoneId,
    /// The first day.
    pub from: &'a str,
    /// The last day.
    pub to: &'a str,
    /// The period.
    pub period: &'a str,
}

/// The figures this node last read for a peer, with the periods asked and the log position
/// they were read at. The hub asks the same question at every view, and reading 30 periods
/// takes some 400 queries: on a busy machine that outlasted [`FIGURES_TIMEOUT`], every view
/// asked again and the answers nobody waited for piled up. While the zone's log has not moved
/// the same question is answered from here.
#[derive(Debug, Default)]
pub(super) struct LastFigures(std::sync::Mutex<Option<Read>>);

/// Figures as read: the periods asked, the log position, the figures.
type Read = (Vec<Window>, u64, Vec<PeriodFigures>);

impl LastFigures {
    fn get(&self, windows: &[Window], applied: u64) -> Option<Vec<PeriodFigures>> {
        let last = self.0.lock().ok()?;
        let (w, at, figures) = last.as_ref()?;
        (w == windows && *at == applied).then(|| figures.clone())
    }

    fn put(&self, windows: &[Window], applied: u64, figures: &[PeriodFigures]) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some((windows.to_vec(), applied, figures.to_vec()));
        }
    }
}

/// What one zone answered, or why there is nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneAnswer {
    /// The zone.
    pub zone: ZoneId,
    /// Its figures, or why they are missing.
    pub figures: Result<ZoneStats, String>,
}

/// Whether a peer that proved `identity` (none: not connected any more) is answered this
/// exchange's figures: a member of this zone, or a node delegated to a zone of `exchange`.
pub fn may_ask(identity: Option<&Identity>, exchange: &ExchangeId) -> bool {
    match identity {
        Some(Identity::Member { .. }) => true,
        Some(Identity::Delegated { zone }) => zone.exchange() == *exchange,
        Some(Identity::Unproven { .. }) | None => false,
    }
}

impl Federation {
    /// Answers `from`'s question for this zone's figures.
    pub(super) async fn answer_figures(
        &self,
        db: &Db,
        from: &Peer,
        asked: &FiguresAsked<'_>,
    ) -> Response {
        let error = |message: String| Response::Error { message };
        let own = &self.config.zone.id;
        if asked.zone != own {
            return error(format!(
                "wrong_zone: this node is of {own}, not of {}",
                asked.zone
            ));
        }
        let exchange = &self.config.exchange.id;
        // Only the asker's identity matters: asking every peer here would make the answer
        // wait on any of them that is slow.
        let identity = self.identity_of(from).await;
        if !may_ask(identity.as_ref(), exchange) {
            return error(format!(
                "forbidden: a zone's figures are answered to the nodes of the zones of exchange \
                 {exchange} only"
            ));
        }
        let today = day_of(self.clock.now());
        let (period, windows) = match supervision::windows_of(
            Some(asked.from),
            Some(asked.to),
            Some(asked.period),
            today,
        ) {
            Ok(w) => w,
            Err((field, why)) => return error(format!("invalid: {field}: {why}")),
        };
        // Read before the catalog, so the figures hold at least what this position says
        // (the replica is never behind what Raft reports applied).
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        let periods = match self.last_figures.get(&windows, applied) {
            Some(p) => p,
            None => {
                let read = async { supervision::figures(&mut *db.reader().await?, &windows).await };
                let Ok(p) = read.await.inspect_err(|e| {
                    tracing::warn!(error = %e, "supervision figures");
                }) else {
                    return error("internal error".into());
                };
                self.last_figures.put(&windows, applied, &p);
                p
            }
        };
        let stats = ZoneStats {
            zone: own.to_string(),
            period,
            periods,
        };
        match serde_json::to_vec(&stats) {
            Ok(json) if json.len() <= MAX_FIGURES_BYTES => Response::Figures { json: Blob(json) },
            Ok(json) => error(format!(
                "too_large: {} bytes of figures; ask for fewer periods",
                json.len()
            )),
            Err(e) => error(format!("internal error: {e}")),
        }
    }

    /// The figures of every other zone of this exchange one of whose nodes is connected and
    /// proven, asked concurrently (at most [`MAX_ZONES`] zones, [`FIGURES_TIMEOUT`] each
    /// try), by zone id. `from`, `to` and `period` are passed as asked (already checked).
    pub async fn zone_figures(&self, from: &str, to: &str, period: &str) -> Vec<ZoneAnswer> {
        let own = &self.config.zone.id;
        let exchange = &self.config.exchange.id;
        let mut zones: BTreeMap<ZoneId, Vec<Peer>> = BTreeMap::new();
        for (info, identity) in self.peer_identities().await {
            if let Identity::Delegated { zone } = identity
                && zone.exchange() == *exchange
                && zone != *own
            {
                zones.entry(zone).or_default().push(Peer(info.peer));
            }
        }
        let asks = zones
            .into_iter()
            .take(MAX_ZONES)
            .map(|(zone, peers)| async move {
                let figures = self.ask_figures(&zone, &peers, from, to, period).await;
                ZoneAnswer { zone, figures }
            });
        join_all(asks).await
    }

    async fn ask_figures(
        &self,
        zone: &ZoneId,
        peers: &[Peer],
        from: &str,
        to: &str,
        period: &str,
    ) -> Result<ZoneStats, String> {
        let request = Request::Figures {
            zone: zone.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
            period: period.to_owned(),
        };
        let body = request.to_bytes().map_err(|e| e.to_string())?;
        let mut why = format!("no node of {zone} is connected");
        for peer in peers.iter().take(TRIES_PER_ZONE) {
            let answer = tokio::time::timeout(
                FIGURES_TIMEOUT,
                self.net.request(peer.clone(), body.clone()),
            )
            .await;
            let bytes = match answer {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    why = format!("{peer}: {e}");
                    continue;
                }
                Err(_) => {
                    why = format!("{peer}: no answer within {FIGURES_TIMEOUT:?}");
                    continue;
                }
            };
            return match Response::from_bytes(&bytes) {
                Ok(Response::Figures { json }) if json.0.len() <= MAX_FIGURES_BYTES => {
                    let stats: ZoneStats = serde_json::from_slice(&json.0)
                        .map_err(|e| format!("{zone} answered figures that do not decode: {e}"))?;
                    if stats.zone != zone.as_str() {
                        return Err(format!("{zone} answered the figures of {}", stats.zone));
                    }
                    Ok(stats)
                }
                Ok(Response::Error { message }) => Err(format!(
                    "{zone} refused: {}",
                    message.chars().take(200).collect::<String>()
                )),
                Ok(_) => Err(format!("{zone} answered something else")),
                Err(e) => Err(format!("{zone} answered undecodably ({})", e.kind())),
            };
        }
        Err(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_answered_again_only_for_the_same_periods_at_the_same_log_position() {
        let windows = |days: u64| -> Vec<Window> {
            vec![Window {
                start: xchg_protocol::Timestamp(0),
                end: xchg_protocol::Timestamp(days * 86_400_000),
            }]
        };
        let last = LastFigures::default();
        assert!(last.get(&windows(1), 7).is_none(), "nothing read yet");
        last.put(&windows(1), 7, &[]);
        assert_eq!(last.get(&windows(1), 7), Some(vec![]));
        assert!(last.get(&windows(1), 8).is_none(), "the log moved");
        assert!(last.get(&windows(2), 7).is_none(), "other periods");
        last.put(&windows(2), 8, &[]);
        assert!(
            last.get(&windows(1), 7).is_none(),
            "only the last question is kept"
        );
    }

    #[test]
    fn only_the_nodes_of_this_exchange_are_answered_its_figures() {
        let xuchang: ExchangeId = "xuchang".parse().expect("id");
        let delegated = |zone: &str| Identity::Delegated {
            zone: zone.parse().expect("zone"),
        };
        assert!(may_ask(Some(&delegated("xuchang/municipal")), &xuchang));
        assert!(may_ask(Some(&delegated("xuchang/yuzhou")), &xuchang));
        let member = Identity::Member {
            name: "yuzhou-2".into(),
        };
        assert!(may_ask(Some(&member), &xuchang));
        assert!(!may_ask(Some(&delegated("zhengzhou/main")), &xuchang));
        let unproven = Identity::Unproven {
            reason: "no delegation".into(),
        };
        assert!(!may_ask(Some(&unproven), &xuchang));
        assert!(!may_ask(None, &xuchang));
    }
}
