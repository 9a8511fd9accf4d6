//! Demands across exchanges (PROTOCOL.md 11.9): a buyer may share its demand beyond its
//! exchange; the zones of the exchanges with an agreement show it beside their own demands and
//! rank their own listings for it.
//!
//! Sending: posting a shared demand, and withdrawing or accepting one, queues the canonical
//! Demand of its new state ([`queue_posted`], [`queue_closed`]); the leader signs and publishes
//! it on its exchange's demand topic and records that ([`published`]). Never the buyer or the
//! broker: only what is needed, and who needs it stays here.
//!
//! Receiving: the leader verifies a demand against its roots and clock and its agreement with
//! the origin's exchange, and proposes it; [`receive`] keeps, per origin zone and number, the
//! one with the latest `updated_at` (a replayed or older one changes nothing), so a withdrawal
//! or an acceptance replaces the open demand and it stops showing as open. The revocation of a
//! node key deletes the demands held in a state it signed ([`forget_signed_by`]).
//!
//! The SQL of `shared_demands` and `foreign_demands` (schema v21) is in
//! [`super::tables::demands_across`].

use serde::{Deserialize, Serialize};
use xchg_protocol::application::SignedMessage;
use xchg_protocol::canonical::{from_canonical, to_canonical};
use xchg_protocol::demand::{
    self as wire, Demand as WireDemand, DemandBudget, DemandState as WireState,
};
use xchg_protocol::{DeliveryMode, ExchangeId, Timestamp, ZoneId};

use super::demands::{Budget, DemandState, NewDemand};
use super::tables::demands_across as table;
use super::{Applied, CommandResponse, PEER_CHARS, Refusal};

/// Whether a demand leaves its zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Share {
    /// It stays in its zone (the default): the other zones of this exchange do not see it
    /// either.
    #[default]
    Exchange,
    /// It is published on this exchange's demand topic (PROTOCOL.md 11.9): the sibling zones of
    /// this exchange and the zones of the exchanges with an agreement show it when their
    /// agreement covers it; the topic and catch-up are readable by any peer of the federation.
    Federation,
}

impl Share {
    /// Whether it stays in its zone (what a request without `share` asks).
    pub fn is_exchange(&self) -> bool {
        *self == Share::Exchange
    }
}

/// Where an external demand comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provenance {
    /// Its origin's exchange.
    pub exchange: String,
    /// Its origin zone.
    pub zone: String,
}

/// A demand of another zone, recognised here under the agreement with its exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExternalDemand {
    /// Where it comes from.
    pub origin: Provenance,
    /// Its number at its origin zone.
    pub number: u64,
    /// What data it needs, in a line.
    pub title: String,
    /// What data it needs, in full.
    pub description: String,
    /// The category sought.
    pub category: String,
    /// The one scenario.
    pub scenario: String,
    /// Delivery modes it can accept.
    pub delivery_modes: Vec<DeliveryMode>,
    /// Its budget.
    pub budget: Budget,
    /// When it stops looking.
    pub deadline: Timestamp,
    /// Its state at its origin (`expired` once the deadline passed while open).
    pub state: DemandState,
    /// When it was posted at its origin.
    pub posted_at: Timestamp,
    /// When its origin reached this state.
    pub updated_at: Timestamp,
    /// When this zone recorded this state.
    pub recorded_at: Timestamp,
    /// Its row here: the order of searches.
    #[serde(skip)]
    pub position: u64,
}

impl ExternalDemand {
    /// The view of `d`, held at row `position`, of `exchange`, recorded at `recorded_at`, its
    /// state judged at `now`.
    pub fn of(
        position: u64,
        exchange: String,
        d: WireDemand,
        recorded_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        let state = match d.state {
            WireState::Open if now >= d.deadline => DemandState::Expired,
            WireState::Open => DemandState::Open,
            WireState::Withdrawn => DemandState::Withdrawn,
            WireState::Accepted => DemandState::Accepted,
        };
        ExternalDemand {
            origin: Provenance {
                exchange,
                zone: d.zone.to_string(),
            },
            number: d.number,
            title: d.title,
            description: d.description,
            category: d.category,
            scenario: d.scenario,
            delivery_modes: d.delivery_modes,
            budget: Budget {
                min: Some(d.budget.min),
                max: d.budget.max,
                currency: d.budget.currency,
            },
            deadline: d.deadline,
            state,
            posted_at: d.posted_at,
            updated_at: d.updated_at,
            recorded_at,
            position,
        }
    }

    /// How it is named in match reasons and errors: `demand <zone>:<number>`.
    pub fn name(&self) -> String {
        format!("demand {}:{}", self.origin.zone, self.number)
    }
}

/// The canonical Demand of `zone`'s demand `id`, posted as `d` at `posted_at`.
pub fn wire_of(zone: &ZoneId, id: u64, d: &NewDemand, posted_at: Timestamp) -> WireDemand {
    WireDemand {
        zone: zone.clone(),
        number: id,
        state: WireState::Open,
        category: d.category.clone(),
        title: d.title.clone(),
        description: d.description.clone(),
        scenario: d.scenario.clone(),
        delivery_modes: d.delivery_modes.clone(),
        budget: DemandBudget {
            min: d.budget.min.clone().unwrap_or_else(|| "0".to_owned()),
            max: d.budget.max.clone(),
            currency: d.budget.currency.clone(),
        },
        deadline: d.deadline,
        posted_at,
        updated_at: posted_at,
    }
}

fn encode(d: &WireDemand) -> rusqlite::Result<Vec<u8>> {
    to_canonical(d).map_err(|e| crate::sqlite::unencodable(e.to_string()))
}

/// Origin: queues the demand `id` just posted as `d` at `at`, when its buyer shares it.
///
/// # Errors
/// Only storage errors.
pub fn queue_posted(
    db: &rusqlite::Connection,
    zone: &ZoneId,
    raft_index: u64,
    id: u64,
    d: &NewDemand,
    at: Timestamp,
) -> rusqlite::Result<()> {
    if d.share.is_exchange() {
        return Ok(());
    }
    let body = encode(&wire_of(zone, id, d, at))?;
    table::queue(db, id, &body, at, raft_index)
}

/// Origin: queues the new state of demand `id`, withdrawn or accepted at `at`, when it is
/// shared.
///
/// # Errors
/// Only storage errors.
pub fn queue_closed(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: u64,
    state: WireState,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let Some(body) = table::shared_body(db, id)? else {
        return Ok(());
    };
    let mut d: WireDemand = from_canonical(&body, &wire::limits())
        .map_err(|e| crate::sqlite::undecodable(e.to_string()))?;
    d.state = state;
    // Never before its posting, whatever the clock of the member that took the request.
    d.updated_at = at.max(d.posted_at);
    table::queue(db, id, &encode(&d)?, d.updated_at, raft_index)
}

fn applied(object_id: String) -> rusqlite::Result<CommandResponse> {
    Ok(Ok(Applied {
        object_id,
        version: None,
        state: None,
        used: None,
    }))
}

/// Origin: the leader published `signed`, its signature of demand `demand_id`'s queued state.
/// A signature of an older state (a newer one was queued meanwhile) is not recorded: the newer
/// one stays pending.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn published(
    db: &rusqlite::Connection,
    raft_index: u64,
    demand_id: u64,
    signed: &[u8],
    at: Timestamp,
) -> rusqlite::Result<CommandResponse> {
    let Some(queued) = table::shared_body(db, demand_id)? else {
        return Ok(Err(Refusal::NotFound(format!(
            "demand {demand_id} is not shared with the federation"
        ))));
    };
    let message = match SignedMessage::from_bytes(signed, &wire::limits()) {
        Ok(m) => m,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("signed demand: {e}")))),
    };
    if message.body == queued {
        table::mark_published(db, demand_id, signed, at, raft_index)?;
    }
    applied(format!("demand:{demand_id}"))
}

/// A demand of another zone, received on a demand topic (or by catch-up) and verified by the
/// member that proposes it (PROTOCOL.md 11.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedDemand {
    /// The SignedMessage of the Demand, as received.
    #[serde(with = "serde_bytes")]
    pub signed: Vec<u8>,
    /// The exchange of the signer's delegation.
    pub exchange: ExchangeId,
    /// The libp2p peer that delivered it (bounded).
    pub received_from: String,
    /// When the member received it.
    pub at: Timestamp,
    /// The member's name.
    pub node: String,
}

/// The id of a signed demand (the hash of its body), or `undecodable`.
pub fn message_id(signed: &[u8]) -> String {
    SignedMessage::from_bytes(signed, &wire::limits())
        .map_or_else(|_| "undecodable".to_owned(), |m| m.id.to_string())
}

/// The most demands of one origin zone a zone holds (PROTOCOL.md 11.9): one more is refused
/// ([`Refusal::DemandsFull`]) until some end.
pub const MAX_DEMANDS_PER_ZONE: u64 = 2_000;

/// How long a foreign demand is kept after its deadline passed or it closed, in milliseconds
/// (30 days).
pub const ENDED_DEMAND_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// Whether `a` supersedes `b`: a later `updated_at`, or at the same time a closed state over
/// an open one.
fn newer(a: (Timestamp, bool), b: (Timestamp, bool)) -> bool {
    a > b
}

/// Receiver: keeps a verified demand of another zone in place of the one held of its zone and
/// number, when it is newer ([`newer`]); an older or replayed one changes nothing.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn receive(
    db: &rusqlite::Connection,
    own: &ZoneId,
    raft_index: u64,
    r: &ReceivedDemand,
) -> rusqlite::Result<CommandResponse> {
    let limits = wire::limits();
    let decoded = SignedMessage::from_bytes(&r.signed, &limits).and_then(|m| {
        let d: WireDemand = from_canonical(&m.body, &limits)?;
        Ok((m, d))
    });
    let (message, demand) = match decoded {
        Ok(d) => d,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("signed demand: {e}")))),
    };
    if demand.zone == *own {
        return Ok(Err(Refusal::Invalid(format!(
            "demand {} is this zone's own",
            demand.number
        ))));
    }
    let object = format!("demand:{}:{}", demand.zone, demand.number);
    // Proposed before the key's revocation was recorded, applied after: not kept either.
    let key = &message.delegation.delegation.node_key;
    if super::tables::revocations::revoked_at(db, r.exchange.as_str(), key)?.is_some() {
        return Ok(Err(Refusal::Invalid(format!(
            "demand {} of {} is signed by a node key {} revoked",
            demand.number, demand.zone, r.exchange
        ))));
    }
    // Demands that ended long ago go, by the command's time: the same on every replica. One
    // that ended as long ago itself is not kept (a replay cannot bring it back).
    let cutoff = Timestamp(r.at.0.saturating_sub(ENDED_DEMAND_RETENTION_MS));
    table::delete_ended_before(db, cutoff)?;
    if demand.deadline < cutoff || (demand.state != WireState::Open && demand.updated_at < cutoff) {
        return applied(object);
    }
    let closed = |s: WireState| s != WireState::Open;
    if let Some((held_at, held_state)) = table::held(db, demand.zone.as_str(), demand.number)? {
        let held = (held_at, held_state != WireState::Open.as_str());
        if !newer((demand.updated_at, closed(demand.state)), held) {
            return applied(object);
        }
    }
    let others = table::count_of_zone(db, demand.zone.as_str(), demand.number)?;
    if others >= MAX_DEMANDS_PER_ZONE {
        return Ok(Err(Refusal::DemandsFull(format!(
            "this zone holds {others} demands of {}, the most it keeps of one zone; \
             demand {} is not kept",
            demand.zone, demand.number
        ))));
    }
    let received_from: String = r.received_from.chars().take(PEER_CHARS).collect();
    let signer = message.delegation.delegation.node_key.to_base64();
    table::keep(
        db,
        &table::Kept {
            exchange: r.exchange.as_str(),
            demand: &demand,
            message_id: &message.id.to_string(),
            signed: &r.signed,
            signer: &signer,
            received_from: &received_from,
            at: r.at,
            raft_index,
        },
    )?;
    applied(object)
}

/// Receiver: the node key `signer` (base64) of `exchange` was revoked (7.3): the foreign demands
/// held in a state it signed are deleted, so they are neither shown, matched nor served on
/// catch-up; the next validly signed state of each is received as if none had been held.
///
/// # Errors
/// Only storage errors.
pub fn forget_signed_by(
    db: &rusqlite::Connection,
    exchange: &str,
    signer: &str,
) -> rusqlite::Result<()> {
    table::delete_signed_by(db, exchange, signer).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xchg_protocol::application_vectors as av;
    use xchg_protocol::demand_vectors as dv;

    fn received(d: &WireDemand) -> ReceivedDemand {
        let signed = wire::sign(
            d,
            &av::origin_node(),
            av::origin_delegation("zhengzhou/zhongyuan"),
        );
        ReceivedDemand {
            signed: signed.to_bytes(),
            exchange: "zhengzhou".parse().expect("exchange"),
            received_from: "peer".into(),
            at: d.updated_at,
            node: "n1".into(),
        }
    }

    fn held(db: &rusqlite::Connection) -> Vec<(String, i64, i64)> {
        let mut stmt = db
            .prepare("SELECT state, updated_at, raft_index FROM foreign_demands ORDER BY id")
            .expect("query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Applies `commands` as the state machine does, from Raft index 10 on.
    fn apply(
        db: &rusqlite::Connection,
        commands: &[crate::catalog::CatalogCommand],
    ) -> Vec<Result<(), &'static str>> {
        apply_from(db, 10.., commands)
    }

    /// Applies `commands` as the state machine does, at the Raft indexes `indexes` gives.
    fn apply_from(
        db: &rusqlite::Connection,
        indexes: impl Iterator<Item = u64>,
        commands: &[crate::catalog::CatalogCommand],
    ) -> Vec<Result<(), &'static str>> {
        let zone = crate::catalog::test_zone();
        crate::sqlite::in_transaction(db, || {
            let mut chain = crate::audit::Chain::load(db)?;
            let responses = commands
                .iter()
                .zip(indexes)
                .map(|(c, index)| crate::catalog::apply::apply(db, &mut chain, &zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(db)?;
            Ok(responses)
        })
        .expect("apply")
        .into_iter()
        .map(|r| r.map(drop).map_err(|e| e.code()))
        .collect()
    }

    /// What catch-up serves, paged `limit` at a time: `(pos, signed)`.
    async fn feed(dir: &std::path::Path, limit: u32) -> Vec<(u64, Vec<u8>)> {
        let mut conn = crate::catalog::test_reader(dir).await;
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = table::page(&mut conn, after, limit).await.expect("page");
            let Some(last) = page.last() else {
                return all;
            };
            after = last.0;
            all.extend(page);
        }
    }

    fn origin_signed(body: Vec<u8>) -> Vec<u8> {
        SignedMessage::seal(
            xchg_protocol::Domain::Demand,
            body,
            &av::origin_node(),
            av::origin_delegation("zhengzhou/zhongyuan"),
        )
        .to_bytes()
    }

    #[tokio::test]
    async fn demands_written_by_one_raft_entry_get_increasing_positions_and_none_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = crate::catalog::test_zone().zone;
        let d = NewDemand {
            share: Share::Federation,
            ..crate::catalog::demands::sample("buyer-1")
        };
        queue_posted(&db, &zone, 5, 1, &d, Timestamp(10)).expect("queue");
        queue_posted(&db, &zone, 5, 2, &d, Timestamp(10)).expect("queue");
        let published = |id: u64| crate::catalog::CatalogCommand::RecordDemandPublished {
            demand_id: id,
            signed: origin_signed(table::shared_body(&db, id).expect("read").expect("queued")),
            at: Timestamp(11),
            node: "n1".into(),
        };
        let mut other = dv::demand();
        other.number += 1;
        let receive =
            |d: &WireDemand| crate::catalog::CatalogCommand::ReceiveDemand(Box::new(received(d)));
        // One Raft entry: every command at index 20.
        let batch = [
            receive(&dv::demand()),
            receive(&other),
            published(1),
            published(2),
        ];
        assert_eq!(
            apply_from(&db, std::iter::repeat(20), &batch),
            [Ok(()), Ok(()), Ok(()), Ok(())]
        );
        let whole = feed(dir.path(), 100).await;
        assert_eq!(whole.len(), 4);
        assert!(whole.windows(2).all(|w| w[0].0 < w[1].0), "{whole:?}");
        assert_eq!(feed(dir.path(), 1).await, whole, "one at a time, none lost");
        // The first demand withdrawn: it moves to the end, once.
        apply_from(&db, std::iter::repeat(21), &[receive(&dv::withdrawn())]);
        let again = feed(dir.path(), 1).await;
        assert_eq!(again.len(), 4);
        assert_eq!(again[..3], whole[1..]);
        assert_eq!(again[3].1, received(&dv::withdrawn()).signed);
        // Rebuilt after a snapshot: the same order, at positions after the old ones.
        table::rebuild_feed(&db).expect("rebuild");
        let rebuilt = feed(dir.path(), 1).await;
        assert!(rebuilt[0].0 > again[3].0);
        let data = |f: &[(u64, Vec<u8>)]| f.iter().map(|r| r.1.clone()).collect::<Vec<_>>();
        let held = data(&again);
        // By Raft index: at 20 the zone's own, then the foreign one; then the withdrawal.
        assert_eq!(
            data(&rebuilt),
            [&held[1], &held[2], &held[0], &held[3]].map(Clone::clone)
        );
    }

    /// The revocation, by the Zhengzhou root, of the key that signs the vectors' demands.
    fn revoke_origin_key(at: Timestamp) -> crate::catalog::CatalogCommand {
        let root = av::origin_root();
        let rev = xchg_protocol::Revocation {
            exchange: "zhengzhou".parse().expect("exchange"),
            key: av::origin_node().public(),
            reason: "key leaked".into(),
            revoked_at: at,
        };
        let env = xchg_protocol::Envelope::revocation(&rev, &root);
        crate::catalog::CatalogCommand::Recognize(Box::new(crate::catalog::Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: rev.exchange.clone(),
            agreement: "outside:zhengzhou".into(),
            signer: root.public(),
            refusal: None,
            wants_certificate: false,
            received_from: "peer".into(),
            at,
            node: "n1".into(),
        }))
    }

    #[tokio::test]
    async fn a_revoked_keys_demands_are_forgotten_and_a_validly_signed_state_is_taken_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let receive =
            |r: ReceivedDemand| crate::catalog::CatalogCommand::ReceiveDemand(Box::new(r));
        // Withdrawn, under the key about to be revoked: it would hide every later state.
        let gone = dv::withdrawn();
        assert_eq!(apply(&db, &[receive(received(&gone))]), [Ok(())]);
        assert_eq!(held(&db).len(), 1);
        assert_eq!(feed(dir.path(), 10).await.len(), 1);
        assert_eq!(
            apply(&db, &[revoke_origin_key(Timestamp(gone.updated_at.0 + 1))]),
            [Ok(())]
        );
        assert!(held(&db).is_empty(), "not shown nor matched");
        assert!(feed(dir.path(), 10).await.is_empty(), "not served");
        // Proposed before the revocation was recorded, applied after: refused.
        assert_eq!(apply(&db, &[receive(received(&gone))]), [Err("invalid")]);
        assert!(held(&db).is_empty());
        // The open state, older, signed by another key of the zone: taken.
        let other = xchg_protocol::Keypair::from_seed(&[42; 32]);
        let mut delegation = av::origin_delegation("zhengzhou/zhongyuan");
        delegation = xchg_protocol::SignedDelegation::sign(
            xchg_protocol::Delegation {
                node_key: other.public(),
                ..delegation.delegation
            },
            &av::origin_root(),
        );
        let open = dv::demand();
        let mut r = received(&open);
        r.signed = wire::sign(&open, &other, delegation).to_bytes();
        assert_eq!(apply(&db, &[receive(r)]), [Ok(())]);
        assert_eq!(held(&db), [("open".into(), open.updated_at.0 as i64, 10)],);
        assert_eq!(feed(dir.path(), 10).await.len(), 1);
    }

    #[test]
    fn demands_of_one_zone_are_capped_and_those_ended_long_ago_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let receive =
            |r: ReceivedDemand| crate::catalog::CatalogCommand::ReceiveDemand(Box::new(r));
        let day = 24 * 60 * 60 * 1000;
        let base = dv::demand();
        let numbered = |n: u64| {
            let mut d = base.clone();
            d.number = n;
            d
        };
        // The zone's fill, kept directly (signing two thousand would only slow the test).
        crate::sqlite::in_transaction(&db, || {
            for n in 0..MAX_DEMANDS_PER_ZONE {
                table::keep(
                    &db,
                    &table::Kept {
                        exchange: "zhengzhou",
                        demand: &numbered(n),
                        message_id: &format!("m{n}"),
                        signed: b"signed",
                        signer: "key",
                        received_from: "peer",
                        at: base.updated_at,
                        raft_index: 1,
                    },
                )?;
            }
            Ok(())
        })
        .expect("fill");
        let one_more = numbered(MAX_DEMANDS_PER_ZONE);
        assert_eq!(
            apply(&db, &[receive(received(&one_more))]),
            [Err("demands_full")]
        );
        let audit: String = db
            .query_row(
                "SELECT result FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("audit");
        assert!(audit.starts_with("refused:demands_full:"), "{audit}");
        // A new state of one held is no new demand; another zone's is counted apart.
        let mut closed = numbered(5);
        closed.state = WireState::Withdrawn;
        closed.updated_at = Timestamp(base.updated_at.0 + 1);
        assert_eq!(apply(&db, &[receive(received(&closed))]), [Ok(())]);
        // Thirty-one days after the withdrawal, a new demand arrives: the withdrawn one goes,
        // and so room is made; the open ones whose deadline is not a month past stay.
        let mut later = received(&one_more);
        later.at = Timestamp(closed.updated_at.0 + 31 * day);
        assert!(
            base.deadline.0 + 30 * day > later.at.0,
            "the vector's deadline"
        );
        assert_eq!(apply(&db, &[receive(later)]), [Ok(())]);
        let count = |db: &rusqlite::Connection| -> i64 {
            db.query_row("SELECT COUNT(*) FROM foreign_demands", [], |r| r.get(0))
                .expect("count")
        };
        assert_eq!(count(&db), MAX_DEMANDS_PER_ZONE as i64);
        assert_eq!(table::held(&db, base.zone.as_str(), 5).expect("read"), None);
        // A month past every deadline: all go, and one ended as long ago is not kept again.
        let mut much_later = received(&numbered(5));
        much_later.at = Timestamp(base.deadline.0 + 31 * day);
        assert_eq!(apply(&db, &[receive(much_later)]), [Ok(())]);
        assert_eq!(count(&db), 0);
    }

    #[test]
    fn a_newer_state_replaces_the_held_one_and_an_older_or_replayed_one_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let open = dv::demand();
        let gone = dv::withdrawn();
        let receive =
            |d: &WireDemand| crate::catalog::CatalogCommand::ReceiveDemand(Box::new(received(d)));
        // Open, then withdrawn: replaced in place.
        assert_eq!(
            apply(&db, &[receive(&open), receive(&gone)]),
            [Ok(()), Ok(())]
        );
        let (posted, withdrawn) = (open.posted_at.0 as i64, gone.updated_at.0 as i64);
        assert_eq!(held(&db), [("withdrawn".into(), withdrawn, 11)]);
        // The open one replayed, and the withdrawal again: nothing changes.
        assert_eq!(
            apply(&db, &[receive(&open), receive(&gone)]),
            [Ok(()), Ok(())]
        );
        assert_eq!(held(&db), [("withdrawn".into(), withdrawn, 11)]);
        // Arriving in the other order: the open one does not bring it back.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        apply(&db, &[receive(&gone), receive(&open)]);
        assert_eq!(held(&db), [("withdrawn".into(), withdrawn, 10)]);
        // Closed at the very time it was posted: the closed state wins the tie.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let mut at_once = open.clone();
        at_once.state = WireState::Accepted;
        apply(&db, &[receive(&open), receive(&at_once)]);
        assert_eq!(held(&db), [("accepted".into(), posted, 11)]);
    }

    #[test]
    fn a_demand_of_the_zone_itself_is_not_received_and_shows_as_external_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let mut own = dv::demand();
        own.zone = crate::catalog::test_zone().zone;
        let r = received(&own);
        assert_eq!(
            apply(
                &db,
                &[crate::catalog::CatalogCommand::ReceiveDemand(Box::new(r))]
            ),
            [Err("invalid")]
        );
        assert!(held(&db).is_empty());
        let view = ExternalDemand::of(
            1,
            "zhengzhou".into(),
            dv::demand(),
            Timestamp(1),
            dv::demand().deadline,
        );
        assert_eq!(view.state, DemandState::Expired);
        assert_eq!(view.name(), "demand zhengzhou/zhongyuan:12");
    }

    #[test]
    fn a_shared_demand_is_queued_when_posted_and_again_when_withdrawn_and_a_stale_signature_is_not_recorded()
     {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = crate::catalog::test_zone().zone;
        let mut d = crate::catalog::demands::sample("buyer-1");
        queue_posted(&db, &zone, 5, 1, &d, Timestamp(10)).expect("queue");
        assert_eq!(table::shared_body(&db, 1).expect("read"), None);
        d.share = Share::Federation;
        queue_posted(&db, &zone, 6, 2, &d, Timestamp(10)).expect("queue");
        let open = table::shared_body(&db, 2).expect("read").expect("queued");
        let wire: WireDemand = from_canonical(&open, &wire::limits()).expect("decodes");
        assert_eq!(
            (wire.number, wire.state, wire.budget.min.as_str()),
            (2, WireState::Open, "0")
        );
        assert_eq!(wire.validate().map_err(|e| e.to_string()), Ok(()));
        queue_closed(&db, 7, 2, WireState::Withdrawn, Timestamp(20)).expect("queue");
        queue_closed(&db, 7, 1, WireState::Withdrawn, Timestamp(20)).expect("unshared: no-op");
        assert_eq!(table::shared_body(&db, 1).expect("read"), None);
        // The open state's signature, recorded after the withdrawal was queued, is not kept.
        let key = av::origin_node();
        let signed = |body: Vec<u8>| {
            SignedMessage::seal(
                xchg_protocol::Domain::Demand,
                body,
                &key,
                av::origin_delegation("zhengzhou/zhongyuan"),
            )
            .to_bytes()
        };
        published(&db, 8, 2, &signed(open), Timestamp(21))
            .expect("apply")
            .expect("applied");
        let state: String = db
            .query_row(
                "SELECT state FROM shared_demands WHERE demand_id = 2",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert_eq!(state, "pending");
        let closed = table::shared_body(&db, 2).expect("read").expect("queued");
        published(&db, 9, 2, &signed(closed), Timestamp(22))
            .expect("apply")
            .expect("applied");
        let (state, index): (String, i64) = db
            .query_row(
                "SELECT state, raft_index FROM shared_demands WHERE demand_id = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        assert_eq!((state.as_str(), index), ("published", 9));
    }
}
