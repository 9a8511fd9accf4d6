//! The catalog's tables, one module each: the only place their SQL is written (the catalog
//! file's schema steps are in `schema/`).
//!
//! Each module holds both sides of its table. Writes are plain functions on the catalog's
//! writer connection (`rusqlite`), called by the rules in [`super::apply`] inside the state
//! machine's transaction. Reads for the layers above (the API, the federation driver, the
//! node) are async functions on a reader connection (sqlx) from `store::Db::reader`. Where
//! both sides run the same statement, it is one constant used by both. The audit chain's
//! table has its home in [`crate::audit`]; the store's own tables (`sm_meta`, the Raft log)
//! in `store`.

pub mod announcements;
pub mod applications;
pub mod authorizations;
pub mod certificate_feed;
pub mod certificates;
pub mod complaints;
pub mod demands;
pub mod demands_across;
pub mod idempotency;
pub mod listings;
pub mod outbox;
pub mod packed;
pub mod parties;
pub mod received_certificates;
pub mod received_revocations;
pub mod recognitions;
pub mod registrations;
pub mod remote_precedents;
pub mod revocations;
pub mod supervision;
pub mod tokens;
pub mod trades;
pub mod valuations;

use xchg_protocol::AnnouncementKind;

/// Tables whose content is the replicated state, in restore order: what a snapshot holds.
pub const REPLICATED_TABLES: &[&str] = &[
    "listings",
    "listing_history",
    "audit",
    "tokens",
    "outbox",
    "announcements",
    "recognitions",
    "revocations",
    "idempotency",
    "parties",
    "party_history",
    "entrustments",
    "applications",
    "authorizations",
    "registrations",
    "certificates",
    "received_certificates",
    "received_revocations",
    "remote_precedents",
    "valuations",
    "demands",
    "demand_proposals",
    "fee_schedules",
    "orders",
    "deliveries",
    "settlements",
    "settlement_disputes",
    "complaints",
    "complaint_history",
    "authorization_changes",
    "shared_demands",
    "foreign_demands",
];

/// The stored name of an announcement kind.
pub fn kind_name(kind: AnnouncementKind) -> &'static str {
    match kind {
        AnnouncementKind::Listing => "listing",
        AnnouncementKind::Delisting => "delisting",
        AnnouncementKind::Revocation => "revocation",
    }
}

/// A set of names as a column stores it, `",name,name,"`: `,name,` finds one of them with
/// `instr` or `LIKE` whatever its neighbours.
fn set_text<S: std::borrow::Borrow<str>>(names: &[S]) -> String {
    format!(",{},", names.join(","))
}

/// The members of a set stored by [`set_text`] that `parse` knows.
fn set_of<T>(text: &str, parse: impl FnMut(&str) -> Option<T>) -> Vec<T> {
    text.split(',').filter_map(parse).collect()
}

/// The wire (serde) name of a unit enum value, as it is also stored: `per_call`, `api`, …
pub(crate) fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An enum value back from its stored name ([`enum_name`]), or what is wrong with the name.
fn enum_of<T: serde::de::DeserializeOwned>(what: &str, name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| format!("{what} {name:?}: {e}"))
}

/// The `LIKE … ESCAPE '\'` pattern matching text that contains `text` literally (its `%`, `_`
/// and `\` escaped).
fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A timestamp or count as SQLite stores it (its integers are signed 64-bit).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored timestamp or count back (never negative as written).
fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
