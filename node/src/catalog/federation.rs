//! The federation side of the state machine: the outbox of this zone's exportable changes, the
//! envelopes it published or accepted, and the decisions on announcements from elsewhere.
//!
//! Like the rest of [`super::apply`], everything is deterministic: it reads only the transaction,
//! the command and the zone's facts. The SQL is the tables' own ([`super::tables`]).

use xchg_protocol::canonical::{from_canonical, to_canonical};
use xchg_protocol::{
    AnnouncementKind, ContentId, Delisting, Envelope, Limits, Listing, Revocation, Timestamp,
};

use super::policy;
use super::tables::listings::{self, By, Current, Transition};
use super::tables::outbox::{self, NewEntry};
use super::tables::recognitions::{self, Decision};
use super::tables::{announcements, received_certificates, revocations};
use super::{
    Applied, CommandResponse, ListingState, Recognition, Refusal, RefusedAnnouncement, ZoneFacts,
};
use crate::sqlite::unencodable;

/// Who recognised copies are recorded as submitted by.
pub const FEDERATION_SUBMITTER: &str = "federation";

/// How long a refusal record (a `rejected` decision) is kept, by the time in the commands:
/// a refusal recorded at `t` is deleted by the first refusal applied after `t` + 30 days.
pub const REFUSAL_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most refusal records kept per signing key; the oldest go first.
pub const MAX_REFUSALS_PER_SIGNER: i64 = 1_000;
/// Most refusal records kept per exchange (whatever the number of its keys); the oldest go
/// first. With the per-signer cap, no partner can fill a zone's disk with refusals.
pub const MAX_REFUSALS_PER_EXCHANGE: i64 = 10_000;

/// How long refusal records are kept and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalBounds {
    /// Age, by command time, after which a record goes.
    pub retention_ms: u64,
    /// Records kept per signing key.
    pub per_signer: i64,
    /// Records kept per exchange.
    pub per_exchange: i64,
}

impl RefusalBounds {
    /// The bounds every zone applies.
    pub const DEFAULT: RefusalBounds = RefusalBounds {
        retention_ms: REFUSAL_RETENTION_MS,
        per_signer: MAX_REFUSALS_PER_SIGNER,
        per_exchange: MAX_REFUSALS_PER_EXCHANGE,
    };
}

/// A reason as a delisting must carry it (PROTOCOL.md 4.4): control characters other than
/// newline and tab become spaces, at most 2000 characters, never blank.
fn delisting_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .take(xchg_protocol::announcement::REASON_CHARS)
        .collect();
    if cleaned.trim().is_empty() {
        "withdrawn by its origin".into()
    } else {
        cleaned
    }
}

/// The current row of `id` if it is one of this zone's own listings (copies recognised from
/// elsewhere never go into the outbox).
fn own_current(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: &ContentId,
) -> rusqlite::Result<Option<Current>> {
    Ok(listings::current(db, &id.to_string())?.filter(|c| c.listing.origin == zone.zone))
}

/// After an approval: queues the approved version of one of this zone's own listings for
/// publication, or records that the export firewall withholds it — and, if an earlier version
/// is out there, withdraws it, since the listing no longer may leave.
///
/// # Errors
/// Storage errors.
pub fn queue_listing(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: &ContentId,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let Some(cur) = own_current(db, zone, id)? else {
        return Ok(());
    };
    let (state, reason) = match policy::export(&cur.listing, &zone.export) {
        Ok(()) => ("pending", None),
        Err(reason) => ("withheld", Some(reason)),
    };
    let live = outbox::live_export(db, id)?;
    let body = cur.listing.canonical_bytes();
    outbox::push(
        db,
        &NewEntry {
            listing_id: id,
            kind: AnnouncementKind::Listing,
            version: cur.listing.version,
            state,
            reason: reason.as_deref(),
            body: &body,
            at,
        },
    )?;
    if let (Some(version), Some(why)) = (live, reason) {
        let why = format!(
            "version {} may not leave its zone: {why}",
            cur.listing.version
        );
        push_delisting(db, zone, id, version, &why, at)?;
    }
    Ok(())
}

/// After a delisting, or the rejection of a new version: if a version of the listing is out
/// there, queues its delisting.
///
/// # Errors
/// Storage errors.
pub fn queue_delisting(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: &ContentId,
    reason: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    if own_current(db, zone, id)?.is_none() {
        return Ok(());
    }
    match outbox::live_export(db, id)? {
        Some(version) => push_delisting(db, zone, id, version, reason, at),
        None => Ok(()),
    }
}

fn push_delisting(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: &ContentId,
    version: u32,
    reason: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let delisting = Delisting {
        listing_id: *id,
        version,
        origin: zone.zone.clone(),
        reason: delisting_reason(reason),
        delisted_at: at,
    };
    let body = to_canonical(&delisting).map_err(unencodable)?;
    outbox::push(
        db,
        &NewEntry {
            listing_id: id,
            kind: AnnouncementKind::Delisting,
            version,
            state: "pending",
            reason: None,
            body: &body,
            at,
        },
    )
}

fn done(
    object: impl ToString,
    version: Option<u32>,
    state: Option<ListingState>,
) -> CommandResponse {
    Ok(Applied {
        object_id: object.to_string(),
        version,
        state,
        used: None,
    })
}

/// Records the signed envelope of outbox entry `seq` and marks the entry published.
///
/// # Errors
/// Storage errors; a mismatched or withheld entry is a refusal.
pub fn record_published(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    seq: u64,
    envelope: &[u8],
    at: Timestamp,
) -> rusqlite::Result<CommandResponse> {
    let Some(entry) = outbox::entry(db, seq)? else {
        return Ok(Err(Refusal::NotFound(format!("no outbox entry {seq}"))));
    };
    let content_id = entry.content_id;
    match entry.state.as_str() {
        "published" => return Ok(done(&content_id, None, None)),
        "withheld" => {
            return Ok(Err(Refusal::IllegalTransition(format!(
                "outbox entry {seq} is withheld by the export firewall"
            ))));
        }
        _ => {}
    }
    let env: Envelope = match from_canonical(envelope, &Limits::default()) {
        Ok(env) => env,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("envelope: {e}")))),
    };
    if ContentId::of(&env.body).to_string() != content_id {
        return Ok(Err(Refusal::Invalid(format!(
            "envelope carries {}, outbox entry {seq} holds {content_id}",
            env.id
        ))));
    }
    outbox::mark_published(db, seq, at)?;
    let listing_id: ContentId = entry
        .listing_id
        .parse()
        .map_err(crate::sqlite::undecodable)?;
    announcements::insert(
        db,
        &env.id,
        zone.exchange.as_str(),
        env.kind,
        Some(&listing_id),
        envelope,
    )?;
    Ok(done(&content_id, None, None))
}

/// What [`record_decision`] records about an announcement besides its [`Recognition`].
struct Outcome<'a> {
    listing_id: Option<ContentId>,
    version: Option<u32>,
    origin: String,
    decision: &'static str,
    reason: Option<String>,
    delegation: Option<&'a str>,
}

/// Records the decision on `r`, and keeps the refusal records within their bounds after a
/// refusal.
fn record_decision(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &Recognition,
    o: Outcome<'_>,
) -> rusqlite::Result<()> {
    let signer = r.signer.to_base64();
    recognitions::record(
        db,
        &Decision {
            content_id: &r.content_id,
            kind: r.kind,
            listing_id: o.listing_id.as_ref(),
            version: o.version,
            origin: &o.origin,
            exchange: r.exchange.as_str(),
            agreement: &r.agreement,
            decision: o.decision,
            reason: o.reason.as_deref(),
            signer: &signer,
            delegation: o.delegation,
            received_from: &r.received_from,
            at: r.at,
            raft_index,
        },
    )?;
    if o.decision == "rejected" {
        bound_refusals(
            db,
            &signer,
            r.exchange.as_str(),
            r.at,
            &RefusalBounds::DEFAULT,
        )?;
    }
    Ok(())
}

/// Records a refusal made before recording (no envelope, PROTOCOL.md 7.4), then keeps the
/// refusal records within their bounds.
///
/// # Errors
/// Storage errors.
pub fn record_refusal(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &RefusedAnnouncement,
) -> rusqlite::Result<CommandResponse> {
    record_refusal_within(db, raft_index, r, &RefusalBounds::DEFAULT)
}

/// [`record_refusal`] within `bounds`.
fn record_refusal_within(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &RefusedAnnouncement,
    bounds: &RefusalBounds,
) -> rusqlite::Result<CommandResponse> {
    if recognitions::decided(db, &r.content_id)? {
        return Ok(done(r.content_id, None, None));
    }
    // The leader found no certificate when it read the replica; one recorded since then
    // already forgot the refusals of this version, so this one must not outlive it either.
    if r.wants_certificate
        && let Some(listing_id) = &r.listing_id
        && received_certificates::certified_by_zone(
            db,
            listing_id,
            &r.content_id,
            r.origin.as_str(),
        )?
    {
        return Ok(Err(Refusal::Conflict(format!(
            "listing {listing_id} version {}: a valid certificate of its origin zone {} is \
             held, so it is not refused for want of one; it is judged again",
            r.version.unwrap_or_default(),
            r.origin
        ))));
    }
    let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    let signer = r.signer.to_base64();
    recognitions::record(
        db,
        &Decision {
            content_id: &r.content_id,
            kind: r.kind,
            listing_id: r.listing_id.as_ref(),
            version: r.version,
            origin: r.origin.as_str(),
            exchange: r.exchange.as_str(),
            agreement: &clip(&r.agreement, 64),
            decision: "rejected",
            reason: Some(&clip(&r.reason, super::REFUSAL_REASON_CHARS)),
            signer: &signer,
            delegation: None,
            received_from: &clip(&r.received_from, super::PEER_CHARS),
            at: r.at,
            raft_index,
        },
    )?;
    bound_refusals(db, &signer, r.exchange.as_str(), r.at, bounds)?;
    Ok(done(r.content_id, r.version, None))
}

/// Deletes refusal records older than the retention before `at`, and the oldest of `signer`'s
/// and of `exchange`'s beyond their caps. Decided by the command's time and the replica alone,
/// so every member deletes the same rows.
fn bound_refusals(
    db: &rusqlite::Connection,
    signer: &str,
    exchange: &str,
    at: Timestamp,
    bounds: &RefusalBounds,
) -> rusqlite::Result<()> {
    recognitions::bound_refusals(
        db,
        Timestamp(at.0.saturating_sub(bounds.retention_ms)),
        (signer, bounds.per_signer),
        (exchange, bounds.per_exchange),
    )
}

/// The history's name for the node that recorded a decision for the zone.
fn node_actor(r: &Recognition) -> String {
    format!("node:{}", r.node)
}

/// Applies the decision on an announcement from another zone or exchange.
///
/// # Errors
/// Storage errors; an envelope that does not match the command is a refusal.
pub fn recognize(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    r: &Recognition,
) -> rusqlite::Result<CommandResponse> {
    let limits = Limits::default();
    let env: Envelope = match from_canonical(&r.envelope, &limits) {
        Ok(env) => env,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("envelope: {e}")))),
    };
    if env.id != r.content_id || env.kind != r.kind {
        return Ok(Err(Refusal::Invalid(
            "the envelope does not match the command's id and kind".into(),
        )));
    }
    if recognitions::decided(db, &env.id)? {
        return Ok(done(env.id, None, None));
    }
    let delegation = env.delegation.as_ref().map(|d| {
        serde_json::json!({
            "exchange": d.delegation.exchange.as_str(),
            "zone": d.delegation.zone.as_str(),
            "node_key": d.delegation.node_key.to_base64(),
            "root_key": d.root_key.to_base64(),
            "not_before": d.delegation.not_before,
            "not_after": d.delegation.not_after,
        })
        .to_string()
    });
    let delegation = delegation.as_deref();
    let invalid = |e: xchg_protocol::DecodeError| Ok(Err(Refusal::Invalid(format!("body: {e}"))));
    match env.kind {
        AnnouncementKind::Listing => {
            let listing: Listing = match from_canonical(&env.body, &limits) {
                Ok(l) => l,
                Err(e) => return invalid(e),
            };
            recognize_listing(db, zone, raft_index, r, listing, delegation)
        }
        AnnouncementKind::Delisting => {
            let d: Delisting = match from_canonical(&env.body, &limits) {
                Ok(d) => d,
                Err(e) => return invalid(e),
            };
            recognize_delisting(db, raft_index, r, d, delegation)
        }
        AnnouncementKind::Revocation => {
            let rev: Revocation = match from_canonical(&env.body, &limits) {
                Ok(rev) => rev,
                Err(e) => return invalid(e),
            };
            revocations::insert(
                db,
                rev.exchange.as_str(),
                &rev.key,
                &env.id,
                &rev.reason,
                rev.revoked_at,
            )?;
            announcements::insert(
                db,
                &env.id,
                r.exchange.as_str(),
                env.kind,
                None,
                &r.envelope,
            )?;
            record_decision(
                db,
                raft_index,
                r,
                Outcome {
                    listing_id: None,
                    version: None,
                    origin: rev.exchange.to_string(),
                    decision: "revoked",
                    reason: Some(rev.reason.clone()),
                    delegation,
                },
            )?;
            revoke_copies(db, raft_index, r, &env.id, &rev)?;
            super::demands_across::forget_signed_by(
                db,
                rev.exchange.as_str(),
                &rev.key.to_base64(),
            )?;
            Ok(done(hex::encode(rev.key.as_bytes()), None, None))
        }
    }
}

fn recognize_listing(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    r: &Recognition,
    listing: Listing,
    delegation: Option<&str>,
) -> rusqlite::Result<CommandResponse> {
    let id = listing.id();
    // The leader found a certificate of the origin zone when it read the replica; one revoked
    // since then (PROTOCOL.md 10.6) no longer lets the version in: it is judged again.
    if r.wants_certificate
        && r.refusal.is_none()
        && !received_certificates::certified_by_zone(
            db,
            &id,
            &listing.content_id(),
            listing.origin.as_str(),
        )?
    {
        return Ok(Err(Refusal::Conflict(format!(
            "listing {id} version {}: no certificate of its origin zone {} counts any more \
             (revoked since it was judged), so it is not recognised; it is judged again",
            listing.version, listing.origin
        ))));
    }
    let cur = listings::current(db, &id.to_string())?;
    let (decision, reason): (&'static str, Option<String>) = if let Some(reason) = &r.refusal {
        ("rejected", Some(reason.clone()))
    } else if listing.origin == zone.zone {
        ("rejected", Some("announces a listing of this zone".into()))
    } else {
        match &cur {
            // Version 1's listing id is its own content id: it proves whose listing it is, and
            // replaces a copy that another zone announced under that id.
            Some(c) if c.listing.origin != listing.origin && listing.listing_id.is_none() => (
                "recognised",
                Some(format!(
                    "replaces a copy that {} announced under this listing id",
                    c.listing.origin
                )),
            ),
            Some(c) if c.listing.origin != listing.origin => (
                "rejected",
                Some(format!(
                    "listing {id} belongs to {}, not to {}",
                    c.listing.origin, listing.origin
                )),
            ),
            Some(c) if c.state == ListingState::Delisted => {
                ("stale", Some("already delisted by its origin".into()))
            }
            // Withdrawn when its certificate was revoked, then certified again: the zone
            // forgot its decision on this version (PROTOCOL.md 10.6), which is judged anew.
            Some(c)
                if c.state == ListingState::Revoked
                    && c.listing.content_id() == listing.content_id() =>
            {
                ("recognised", None)
            }
            Some(c) if c.listing.version >= listing.version => (
                "stale",
                Some(format!("version {} is already held", c.listing.version)),
            ),
            _ => ("recognised", None),
        }
    };
    let mut response = done(id, Some(listing.version), None);
    if decision == "recognised" {
        let delisted_before =
            recognitions::delisting_recorded(db, &id, listing.origin.as_str(), listing.version)?;
        let state = if delisted_before {
            ListingState::Delisted
        } else {
            ListingState::Recognised
        };
        let node = node_actor(r);
        listings::write(db, &listing, state, FEDERATION_SUBMITTER)?;
        listings::record_history(
            db,
            &id.to_string(),
            &Transition {
                raft_index,
                at: r.at,
                by: By {
                    id: &node,
                    role: "system",
                },
                action: "recognise",
                from: cur.as_ref().map(|c| c.state),
                to: state,
                version: listing.version,
                detail: Some(serde_json::json!({ "agreement": r.agreement }).to_string()),
            },
        )?;
        announcements::insert(
            db,
            &r.content_id,
            r.exchange.as_str(),
            AnnouncementKind::Listing,
            Some(&id),
            &r.envelope,
        )?;
        response = done(id, Some(listing.version), Some(state));
    }
    record_decision(
        db,
        raft_index,
        r,
        Outcome {
            listing_id: Some(id),
            version: Some(listing.version),
            origin: listing.origin.to_string(),
            decision,
            reason,
            delegation,
        },
    )?;
    Ok(response)
}

/// After a revocation of `rev.key` by `rev.exchange`: every recognised copy whose current
/// version this zone recognised from an announcement that key signed under that exchange's
/// delegation becomes `revoked`, with the revocation in its history (PROTOCOL.md 9: a
/// revocation applies whatever the date of what the key signed). Copies of versions signed by
/// other keys stay as they are.
fn revoke_copies(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &Recognition,
    revocation: &ContentId,
    rev: &Revocation,
) -> rusqlite::Result<()> {
    let copies = recognitions::copies_signed_by(db, &rev.key.to_base64(), rev.exchange.as_str())?;
    let detail = serde_json::json!({
        "revocation": revocation.to_string(),
        "exchange": rev.exchange.as_str(),
        "key": hex::encode(rev.key.as_bytes()),
        "reason": rev.reason,
    })
    .to_string();
    let node = node_actor(r);
    for listing_id in copies {
        if listing_id.parse::<ContentId>().is_err() {
            continue;
        }
        let Some(cur) = listings::current(db, &listing_id)? else {
            continue;
        };
        listings::set_state(db, &listing_id, ListingState::Revoked)?;
        listings::record_history(
            db,
            &listing_id,
            &Transition {
                raft_index,
                at: r.at,
                by: By {
                    id: &node,
                    role: "system",
                },
                action: "revoke",
                from: Some(cur.state),
                to: ListingState::Revoked,
                version: cur.listing.version,
                detail: Some(detail.clone()),
            },
        )?;
    }
    Ok(())
}

fn recognize_delisting(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &Recognition,
    d: Delisting,
    delegation: Option<&str>,
) -> rusqlite::Result<CommandResponse> {
    let key = d.listing_id.to_string();
    let cur = listings::current(db, &key)?;
    let (decision, reason, state) = match &cur {
        Some(c) if c.listing.origin != d.origin => (
            "rejected",
            Some(format!(
                "listing {} belongs to {}, not to {}",
                d.listing_id, c.listing.origin, d.origin
            )),
            None,
        ),
        // A revoked copy is still the origin's listing: its delisting is final all the same.
        Some(c) if matches!(c.state, ListingState::Recognised | ListingState::Revoked) => {
            let node = node_actor(r);
            listings::set_state(db, &key, ListingState::Delisted)?;
            listings::record_history(
                db,
                &key,
                &Transition {
                    raft_index,
                    at: r.at,
                    by: By {
                        id: &node,
                        role: "system",
                    },
                    action: "delist",
                    from: Some(c.state),
                    to: ListingState::Delisted,
                    version: c.listing.version,
                    detail: Some(serde_json::json!({ "reason": d.reason }).to_string()),
                },
            )?;
            (
                "delisted",
                Some(d.reason.clone()),
                Some(ListingState::Delisted),
            )
        }
        Some(c) => (
            "stale",
            Some(format!("copy is {}", c.state.as_str())),
            Some(c.state),
        ),
        // Recorded ahead of the listing, so a late copy arrives already delisted.
        None => ("delisted", Some(d.reason.clone()), None),
    };
    if decision != "rejected" {
        announcements::insert(
            db,
            &r.content_id,
            r.exchange.as_str(),
            AnnouncementKind::Delisting,
            Some(&d.listing_id),
            &r.envelope,
        )?;
    }
    record_decision(
        db,
        raft_index,
        r,
        Outcome {
            listing_id: Some(d.listing_id),
            version: Some(d.version),
            origin: d.origin.to_string(),
            decision,
            reason,
            delegation,
        },
    )?;
    Ok(done(d.listing_id, Some(d.version), state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit;
    use crate::catalog::apply::apply;
    use crate::catalog::query::{MAX_PAGE, RecognitionFilter, RecognitionView};
    use crate::catalog::{Actor, CatalogCommand, Review};
    use crate::sqlite::in_transaction;
    use xchg_federation_config::Role;
    use xchg_protocol::{Classification, Delegation, Keypair, SignedDelegation, ZoneId};

    fn zone(id: &str) -> ZoneId {
        id.parse().expect("zone id")
    }

    /// `body` of `kind` sealed by a node key delegated to `origin`.
    fn signed(origin: &ZoneId, kind: AnnouncementKind, body: Vec<u8>) -> Envelope {
        let root = Keypair::from_seed(&[7; 32]);
        let key = Keypair::from_seed(&[8; 32]);
        let delegation = SignedDelegation::sign(
            Delegation {
                exchange: origin.exchange(),
                zone: origin.clone(),
                node_key: key.public(),
                not_before: Timestamp(0),
                not_after: Timestamp(4_000_000_000_000),
            },
            &root,
        );
        Envelope::seal(kind, body, &key, Some(delegation))
    }

    /// The command recording `env` (from `origin`'s exchange) with `refusal`, received at `at`.
    fn recognition(
        env: &Envelope,
        origin: &ZoneId,
        refusal: Option<&str>,
        at: u64,
    ) -> CatalogCommand {
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: Keypair::from_seed(&[8; 32]).public(),
            refusal: refusal.map(str::to_owned),
            wants_certificate: false,
            received_from: "peer".into(),
            at: Timestamp(at),
            node: "main-1".into(),
        }))
    }

    fn recognise(listing: &Listing, refusal: Option<&str>) -> CatalogCommand {
        let env = signed(
            &listing.origin,
            AnnouncementKind::Listing,
            listing.canonical_bytes(),
        );
        recognition(&env, &listing.origin, refusal, 5_000)
    }

    fn delist(listing: &Listing) -> CatalogCommand {
        let d = Delisting {
            listing_id: listing.id(),
            version: listing.version,
            origin: listing.origin.clone(),
            reason: "withdrawn".into(),
            delisted_at: Timestamp(6_000),
        };
        let body = to_canonical(&d).expect("encode");
        let env = signed(&listing.origin, AnnouncementKind::Delisting, body);
        recognition(&env, &listing.origin, None, 6_000)
    }

    /// The (kind, state) of outbox rows, for comparing with literals.
    fn kind_state(outbox: &[(String, String)]) -> Vec<(&str, &str)> {
        outbox
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_str()))
            .collect()
    }

    fn listing(origin: &str, title: &str) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        Listing::first_version(draft, zone(origin), Timestamp(1_000))
    }

    /// The decisions recorded in the catalog in `dir`, oldest first (`decision` only, if
    /// given).
    async fn decisions_in(dir: &std::path::Path, decision: Option<&str>) -> Vec<RecognitionView> {
        let mut reader = crate::catalog::test_reader(dir).await;
        let filter = RecognitionFilter {
            decision: decision.map(str::to_owned),
            limit: Some(MAX_PAGE),
            ..RecognitionFilter::default()
        };
        let mut page = recognitions::page(&mut reader, &filter)
            .await
            .expect("decisions")
            .items;
        assert!(page.len() < MAX_PAGE as usize, "more than one page");
        page.reverse();
        page
    }

    /// Applies `commands` in order to a fresh xuchang/yuzhou replica; returns the decisions
    /// recorded (decision, reason) and the listing rows (id, origin, version, state) in the
    /// order they were recorded, and each listing's outbox entries (kind, state) in that order.
    async fn run(
        commands: &[CatalogCommand],
    ) -> (
        Vec<(String, Option<String>)>,
        Vec<(String, String, i64, String)>,
        Vec<(String, String)>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let facts = crate::catalog::test_zone();
        in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            for (i, c) in commands.iter().enumerate() {
                let _response = apply(&db, &mut chain, &facts, i as u64 + 1, c)?;
            }
            Ok(())
        })
        .expect("apply");
        drop(db);
        let decisions = decisions_in(dir.path(), None)
            .await
            .into_iter()
            .map(|d| (d.decision, d.reason))
            .collect();
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let mut held = listings::newest(&mut reader, MAX_PAGE)
            .await
            .expect("listings");
        held.reverse();
        let mut listings = Vec::new();
        let mut outbox = Vec::new();
        for l in held {
            for e in outbox::of_listing(&mut reader, &l.id)
                .await
                .expect("outbox")
            {
                outbox.push((e.kind, e.state));
            }
            let version = i64::from(l.listing.version);
            listings.push((l.id, l.listing.origin.to_string(), version, l.state));
        }
        (decisions, listings, outbox)
    }

    #[tokio::test]
    async fn a_recognised_copy_follows_new_versions_and_the_delisting_of_its_origin() {
        let v1 = listing("zhengzhou/main", "v1");
        let v2 = v1.next_version(v1.draft(), Timestamp(2_000));
        let (decisions, listings, _) = run(&[
            recognise(&v1, None),
            recognise(&v2, None),
            recognise(&v1, None), // the same announcement again: no effect
            delist(&v2),
        ])
        .await;
        let names: Vec<&str> = decisions.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, ["recognised", "recognised", "delisted"]);
        assert_eq!(listings.len(), 1);
        assert_eq!(listings[0].1, "zhengzhou/main");
        assert_eq!(listings[0].2, 2);
        assert_eq!(listings[0].3, "delisted");
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_and_nothing_listed() {
        let v1 = listing("zhengzhou/main", "refused");
        let (decisions, listings, _) =
            run(&[recognise(&v1, Some("category credit is not covered"))]).await;
        assert_eq!(decisions[0].0, "rejected");
        assert_eq!(
            decisions[0].1.as_deref(),
            Some("category credit is not covered")
        );
        assert!(listings.is_empty());
    }

    #[tokio::test]
    async fn another_zone_cannot_take_over_a_listing_id_but_version_1_proves_its_owner() {
        let genuine = listing("zhengzhou/main", "genuine");
        // A later version naming the genuine listing id, announced by another zone.
        let mut squat = genuine.next_version(genuine.draft(), Timestamp(2_000));
        squat.origin = zone("xuchang/weidu");
        let mut stolen = genuine.next_version(genuine.draft(), Timestamp(3_000));
        stolen.version = 3;
        stolen.origin = zone("xuchang/weidu");
        let (decisions, listings, _) = run(&[
            recognise(&squat, None),
            recognise(&genuine, None),
            recognise(&stolen, None),
        ])
        .await;
        let names: Vec<&str> = decisions.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, ["recognised", "recognised", "rejected"]);
        assert_eq!(listings.len(), 1);
        assert_eq!(
            listings[0].1, "zhengzhou/main",
            "version 1 took the id back"
        );
        assert_eq!(listings[0].2, 1);
    }

    #[tokio::test]
    async fn a_delisting_that_arrives_first_keeps_the_late_listing_delisted() {
        let v1 = listing("zhengzhou/main", "late");
        let (decisions, listings, _) = run(&[delist(&v1), recognise(&v1, None)]).await;
        assert_eq!(decisions[0].0, "delisted");
        assert_eq!(listings[0].3, "delisted");
    }

    #[tokio::test]
    async fn an_own_listing_announced_back_is_not_recorded_as_a_copy() {
        let own = listing("xuchang/yuzhou", "own");
        let (decisions, listings, _) = run(&[recognise(&own, None)]).await;
        assert_eq!(decisions[0].0, "rejected");
        assert!(listings.is_empty());
    }

    fn submit(l: &Listing) -> CatalogCommand {
        CatalogCommand::SubmitListing {
            listing: Box::new(l.clone()),
            actor: Actor {
                id: "p".into(),
                role: Role::Provider,
            },
        }
    }

    fn review(cmd: &str, id: ContentId, at: u64) -> CatalogCommand {
        let actor = Actor {
            id: "o".into(),
            role: Role::Operator,
        };
        let at = Timestamp(at);
        match cmd {
            "approve" => CatalogCommand::ApproveListing {
                listing_id: id,
                review: Review::default(),
                at,
                actor,
            },
            "reject" => CatalogCommand::RejectListing {
                listing_id: id,
                reason: "no\u{7}".into(),
                at,
                actor,
            },
            _ => CatalogCommand::DelistListing {
                listing_id: id,
                reason: "gone".into(),
                at,
                actor,
            },
        }
    }

    fn update(l: &Listing, classification: Classification) -> CatalogCommand {
        let mut draft = l.draft();
        draft.classification = classification;
        CatalogCommand::UpdateListing {
            listing_id: l.id(),
            draft: Box::new(draft),
            at: Timestamp(3_000),
            actor: Actor {
                id: "p".into(),
                role: Role::Provider,
            },
        }
    }

    #[tokio::test]
    async fn the_outbox_withdraws_copies_when_a_listing_stops_being_exportable() {
        let l = listing("xuchang/yuzhou", "own general");
        let id = l.id();
        // Exported, then a new version becomes important: its approval withdraws the copies.
        let (_, _, outbox) = run(&[
            submit(&l),
            review("approve", id, 2_000),
            update(&l, Classification::Important),
            review("approve", id, 4_000),
        ])
        .await;
        let rows = kind_state(&outbox);
        assert_eq!(
            rows,
            [
                ("listing", "pending"),
                ("listing", "withheld"),
                ("delisting", "pending")
            ]
        );
        // Exported, then a new version is rejected in review: the copies are withdrawn.
        let (_, _, outbox) = run(&[
            submit(&l),
            review("approve", id, 2_000),
            update(&l, Classification::General),
            review("reject", id, 4_000),
        ])
        .await;
        let rows = kind_state(&outbox);
        assert_eq!(rows, [("listing", "pending"), ("delisting", "pending")]);
        // Never exported: nothing to withdraw.
        let imp = {
            let mut d = l.draft();
            d.classification = Classification::Core;
            Listing::first_version(d, zone("xuchang/yuzhou"), Timestamp(1_500))
        };
        let (_, _, outbox) = run(&[
            submit(&imp),
            review("approve", imp.id(), 2_000),
            review("delist", imp.id(), 3_000),
        ])
        .await;
        let rows = kind_state(&outbox);
        assert_eq!(rows, [("listing", "withheld")]);
    }

    /// A refusal record of `n` (its content id and time) signed by the key of `seed`.
    fn refusal(n: u64, seed: u8, at: u64) -> RefusedAnnouncement {
        RefusedAnnouncement {
            content_id: ContentId::of(&n.to_be_bytes()),
            kind: AnnouncementKind::Listing,
            listing_id: Some(ContentId::of(&n.to_be_bytes())),
            version: Some(1),
            origin: zone("zhengzhou/main"),
            exchange: "zhengzhou".parse().expect("exchange id"),
            agreement: "outside:zhengzhou".into(),
            signer: Keypair::from_seed(&[seed; 32]).public(),
            reason: "x".repeat(crate::catalog::REFUSAL_REASON_CHARS + 50),
            wants_certificate: false,
            received_from: "peer".into(),
            at: Timestamp(at),
            node: "main-1".into(),
        }
    }

    /// Records `refusals` in order within `bounds` on a fresh replica; returns the content ids
    /// kept (`rejected`) and the longest reason, in order.
    async fn kept(
        refusals: &[RefusedAnnouncement],
        bounds: &RefusalBounds,
    ) -> (Vec<ContentId>, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        in_transaction(&db, || {
            for (i, r) in refusals.iter().enumerate() {
                let response = record_refusal_within(&db, i as u64 + 1, r, bounds)?;
                assert!(response.is_ok(), "{response:?}");
            }
            Ok(())
        })
        .expect("apply");
        drop(db);
        let rows = decisions_in(dir.path(), Some("rejected")).await;
        let longest = rows
            .iter()
            .map(|r| r.reason.as_deref().unwrap_or("").chars().count())
            .max()
            .unwrap_or(0);
        let ids = rows
            .into_iter()
            .map(|r| r.content_id.parse().expect("content id"))
            .collect();
        (ids, longest)
    }

    #[tokio::test]
    async fn refusal_records_expire_by_command_time_and_stay_within_their_caps() {
        let bounds = RefusalBounds {
            retention_ms: 10_000,
            per_signer: 3,
            per_exchange: 4,
        };
        let id = |n: u64| ContentId::of(&n.to_be_bytes());
        // Key 1 refused five times: its three newest stay.
        let mut rs: Vec<RefusedAnnouncement> = (0..5).map(|n| refusal(n, 1, 1_000 + n)).collect();
        let (ids, longest) = kept(&rs, &bounds).await;
        assert_eq!(ids, [id(2), id(3), id(4)]);
        assert_eq!(
            longest,
            crate::catalog::REFUSAL_REASON_CHARS,
            "reasons are clipped"
        );
        // Key 2 of the same exchange twice: the exchange keeps four, the oldest go.
        rs.extend((5..7).map(|n| refusal(n, 2, 1_000 + n)));
        let (ids, _) = kept(&rs, &bounds).await;
        assert_eq!(ids, [id(3), id(4), id(5), id(6)]);
        // The same announcement again: recorded once.
        rs.push(refusal(6, 2, 1_007));
        assert_eq!(kept(&rs, &bounds).await.0, ids);
        // A refusal applied more than the retention later: the old ones go, whatever the clock
        // of the node applying it says (only command times count).
        rs.push(refusal(9, 3, 11_006));
        let (ids, _) = kept(&rs, &bounds).await;
        assert_eq!(ids, [id(6), id(9)]);
        // Every replica applying the same commands keeps the same records.
        assert_eq!(kept(&rs, &bounds).await.0, ids);
    }

    /// The revocation, by the root of `origin`'s exchange, of the node key of `seed`.
    fn revoke(origin: &ZoneId, seed: u8, at: u64) -> CatalogCommand {
        let root = Keypair::from_seed(&[7; 32]);
        let rev = Revocation {
            exchange: origin.exchange(),
            key: Keypair::from_seed(&[seed; 32]).public(),
            reason: "key leaked".into(),
            revoked_at: Timestamp(at),
        };
        let env = Envelope::revocation(&rev, &root);
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: root.public(),
            refusal: None,
            wants_certificate: false,
            received_from: "peer".into(),
            at: Timestamp(at),
            node: "main-1".into(),
        }))
    }

    /// `listing` announced with the node key of `seed` (delegated by the seed-7 root).
    fn recognise_signed_by(listing: &Listing, seed: u8) -> CatalogCommand {
        let root = Keypair::from_seed(&[7; 32]);
        let key = Keypair::from_seed(&[seed; 32]);
        let delegation = SignedDelegation::sign(
            Delegation {
                exchange: listing.origin.exchange(),
                zone: listing.origin.clone(),
                node_key: key.public(),
                not_before: Timestamp(0),
                not_after: Timestamp(4_000_000_000_000),
            },
            &root,
        );
        let env = Envelope::listing(listing, &key, delegation);
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: listing.origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: key.public(),
            refusal: None,
            wants_certificate: false,
            received_from: "peer".into(),
            at: Timestamp(5_000),
            node: "main-1".into(),
        }))
    }

    #[tokio::test]
    async fn a_revocation_moves_the_copies_its_key_signed_to_revoked() {
        let origin = zone("zhengzhou/main");
        let by_leaked = listing("zhengzhou/main", "signed by the leaked key");
        let by_other = listing("zhengzhou/main", "signed by another key");
        let moved_on = listing("zhengzhou/main", "v1 by the leaked key, v2 by another");
        let moved_on_v2 = moved_on.next_version(moved_on.draft(), Timestamp(2_000));
        let (decisions, listings, _) = run(&[
            recognise_signed_by(&by_leaked, 8),
            recognise_signed_by(&by_other, 9),
            recognise_signed_by(&moved_on, 8),
            recognise_signed_by(&moved_on_v2, 9),
            revoke(&origin, 8, 7_000),
        ])
        .await;
        assert_eq!(decisions.last().map(|d| d.0.as_str()), Some("revoked"));
        let state = |l: &Listing| {
            listings
                .iter()
                .find(|row| row.0 == l.id().to_string())
                .map(|row| row.3.clone())
        };
        assert_eq!(state(&by_leaked).as_deref(), Some("revoked"));
        assert_eq!(state(&by_other).as_deref(), Some("recognised"));
        assert_eq!(
            state(&moved_on).as_deref(),
            Some("recognised"),
            "v2 is another key's"
        );

        // A later version under a valid key recognises the copy again; the origin's delisting
        // still delists a revoked copy.
        let by_leaked_v2 = by_leaked.next_version(by_leaked.draft(), Timestamp(8_000));
        let (_, listings, _) = run(&[
            recognise_signed_by(&by_leaked, 8),
            revoke(&origin, 8, 7_000),
            recognise_signed_by(&by_leaked_v2, 9),
        ])
        .await;
        assert_eq!(listings[0].3, "recognised");
        assert_eq!(listings[0].2, 2);
        let (_, listings, _) = run(&[
            recognise_signed_by(&by_leaked, 8),
            revoke(&origin, 8, 7_000),
            delist(&by_leaked),
        ])
        .await;
        assert_eq!(listings[0].3, "delisted");
    }

    #[test]
    fn delisting_reasons_are_made_valid() {
        assert_eq!(delisting_reason("a\u{7}b"), "a b");
        assert_eq!(delisting_reason("  "), "withdrawn by its origin");
        assert_eq!(delisting_reason(&"x".repeat(3000)).chars().count(), 2000);
    }
}
