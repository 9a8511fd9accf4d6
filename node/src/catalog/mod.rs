//! The catalog state machine: the commands a zone agrees on through Raft, and their effects.
//!
//! Every command carries its own time and actor, so applying the same log gives byte-identical
//! tables and audit records on every node. [`apply`] holds the rules that write (with those
//! of the federation, [`federation`]); [`query`] puts together what the API reads; every
//! table's SQL has its home in [`tables`].
//!
//! Layer: above `sqlite` and `audit`, below the store; imports nothing higher (not the store, Raft, federation or API).

pub mod across;
pub mod applications;
pub mod apply;
#[cfg(test)]
mod audit_tree;
pub mod certified;
pub mod complaints;
pub mod demands;
pub mod demands_across;
pub mod federation;
pub mod format;
pub mod money;
pub mod parties;
pub mod policy;
pub mod precedents;
pub mod query;
pub mod registrations;
pub mod supervision;
pub mod tables;
pub mod trades;
pub mod valuation;

use serde::{Deserialize, Serialize};
use xchg_federation_config::{ExportPolicy, Role};
use xchg_protocol::{
    AnnouncementKind, ContentId, ExchangeId, Listing, ListingDraft, PartyId, PartyProfile,
    PublicKey, Timestamp, ZoneId,
};

/// What the state machine knows of its zone. Identical on every member (it comes from the
/// zone's shared configuration), so applying the same log still gives the same tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFacts {
    /// The zone.
    pub zone: ZoneId,
    /// Its exchange.
    pub exchange: ExchangeId,
    /// The export firewall applied when a listing is approved.
    pub export: ExportPolicy,
    /// The zone's founding parties (its configuration's `[[parties]]`), admitted without an
    /// application.
    pub founding: std::sync::Arc<parties::Founding>,
    /// The exchange's root key, against which approvals check the certificates they carry
    /// (`registrations::check_certificate`); none refuses every approval.
    pub root: Option<PublicKey>,
}

impl ZoneFacts {
    /// Facts for `zone` (whose exchange is the part before the `/`) with `export`.
    pub fn new(zone: ZoneId, export: ExportPolicy) -> Self {
        let exchange = zone
            .as_str()
            .split('/')
            .next()
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| "unknown".parse().expect("a valid exchange id literal"));
        ZoneFacts {
            zone,
            exchange,
            export,
            founding: std::sync::Arc::default(),
            root: None,
        }
    }

    /// The same facts with `root` as the exchange's root key.
    pub fn with_root(mut self, root: PublicKey) -> Self {
        self.root = Some(root);
        self
    }

    /// The same facts with `parties` as the zone's founding parties.
    pub fn with_founding(mut self, parties: &[PartyProfile]) -> Self {
        self.founding =
            std::sync::Arc::new(parties.iter().map(|p| (p.id.clone(), p.clone())).collect());
        self
    }
}

/// An announcement received from another zone or exchange, verified by the node that proposes
/// it, with that node's reading of the agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recognition {
    /// The envelope, byte for byte as received.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// Its body id (checked against the envelope when applied).
    pub content_id: ContentId,
    /// Its kind (checked against the envelope when applied).
    pub kind: AnnouncementKind,
    /// The exchange whose authority it carries (the topic it belongs to).
    pub exchange: ExchangeId,
    /// The agreement it was judged under: `sibling` or `outside:<exchange id>`.
    pub agreement: String,
    /// The key that signed it (a node key, or the root key for revocations).
    pub signer: PublicKey,
    /// Why the agreement refuses it. Only log entries written before refusals became
    /// [`CatalogCommand::RecordRefusal`] carry one; they are still applied as they were.
    pub refusal: Option<String>,
    /// Whether the proposing node let it in only on a certificate of its origin zone (a
    /// listing under an agreement that requires registration, PROTOCOL.md 10.5): applying it
    /// checks that one still counts, as a revocation applied since may have withdrawn it
    /// (10.6). Absent (false) in entries written before.
    #[serde(default)]
    pub wants_certificate: bool,
    /// The peer that delivered it.
    pub received_from: String,
    /// When the proposing node received it.
    pub at: Timestamp,
    /// The proposing node's name.
    pub node: String,
}

/// An announcement from another zone or exchange that verified but is refused before it is
/// recorded (the agreement refuses it, or it names a listing held from another origin): only
/// this bounded record goes through Raft, never the envelope (PROTOCOL.md 7.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedAnnouncement {
    /// Its body id.
    pub content_id: ContentId,
    /// Its kind.
    pub kind: AnnouncementKind,
    /// The listing it concerns, for listings and delistings.
    pub listing_id: Option<ContentId>,
    /// That listing's version.
    pub version: Option<u32>,
    /// Its origin zone.
    pub origin: ZoneId,
    /// The exchange whose authority it carries.
    pub exchange: ExchangeId,
    /// The agreement it was judged under: `sibling` or `outside:<exchange id>`.
    pub agreement: String,
    /// The key that signed it.
    pub signer: PublicKey,
    /// Why it is refused, at most [`REFUSAL_REASON_CHARS`] characters.
    pub reason: String,
    /// Refused only because the zone held no valid certificate of this listing version from
    /// its origin zone (`registration_required`, PROTOCOL.md 10.5). The leader judged that
    /// from what it read before proposing; applying the record checks it again, because a
    /// certificate recorded meanwhile makes the refusal wrong. Log entries written before
    /// this field existed read as `false` and are applied as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wants_certificate: bool,
    /// The peer that delivered it, at most [`PEER_CHARS`] characters.
    pub received_from: String,
    /// When the proposing node received it; refusal records expire by this time.
    pub at: Timestamp,
    /// The proposing node's name.
    pub node: String,
}

/// A request the receiving node refused before it became a command of its own (an application
/// naming two scenarios, a scenario or a delivery the listing does not allow, a buyer counting
/// usage on another's authorisation): only the refusal goes through Raft, so that it is in the
/// audit chain like the refusals the state machine makes. A refused read is not recorded: a
/// read that wrote to the log would let any token grow it, and would need a leader to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRequest {
    /// What was asked.
    pub act: RefusedAct,
    /// What it was asked of: a listing id, `application:<id>` or `authorization:<id>`.
    pub object: String,
    /// Why it was refused.
    pub refusal: Refusal,
    /// When.
    pub at: Timestamp,
    /// Who asked.
    pub actor: Actor,
}

/// What a [`RefusedRequest`] asked; its wire name is the audit action recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedAct {
    /// `POST /v1/applications`.
    SubmitApplication,
    /// `POST /v1/authorizations/{id}/usage`.
    RecordUsage,
}

impl RefusedAct {
    /// The audit action.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedAct::SubmitApplication => "submit_application",
            RefusedAct::RecordUsage => "record_usage",
        }
    }
}

/// Longest reason a refusal record keeps, in characters.
pub const REFUSAL_REASON_CHARS: usize = 500;
/// Longest peer id a refusal record keeps, in characters (a libp2p peer id has 52).
pub const PEER_CHARS: usize = 64;

/// Who issued a command: the identity behind the API token, and the role it was used in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Stable actor id: the token's party, or `token:<first 8 hex digits of its hash>`.
    pub id: String,
    /// The role the token grants.
    pub role: Role,
}

/// What a reviewer records when approving a listing (合规审核, 安全评估).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// Compliance review conclusion (legality, tradability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_review: Option<String>,
    /// Security assessment conclusion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_assessment: Option<String>,
    /// Free notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// The catalog file's schema steps, applied in order by the store, each in its own transaction;
/// the file's version (`PRAGMA user_version`) is how many it has had. The tables are the
/// catalog's: their SQL lives in [`tables`].
pub const SCHEMA: &[&str] = &[
    include_str!("schema/catalog_schema_v1.sql"),
    include_str!("schema/catalog_schema_v2.sql"),
    include_str!("schema/catalog_schema_v3.sql"),
    include_str!("schema/catalog_schema_v4.sql"),
    include_str!("schema/catalog_schema_v5.sql"),
    include_str!("schema/catalog_schema_v6.sql"),
    include_str!("schema/catalog_schema_v7.sql"),
    include_str!("schema/catalog_schema_v8.sql"),
    include_str!("schema/catalog_schema_v9.sql"),
    include_str!("schema/catalog_schema_v10.sql"),
    include_str!("schema/catalog_schema_v11.sql"),
    include_str!("schema/catalog_schema_v12.sql"),
    include_str!("schema/catalog_schema_v13.sql"),
    include_str!("schema/catalog_schema_v14.sql"),
    include_str!("schema/catalog_schema_v15.sql"),
    include_str!("schema/catalog_schema_v16.sql"),
    include_str!("schema/catalog_schema_v17.sql"),
    include_str!("schema/catalog_schema_v18.sql"),
    include_str!("schema/catalog_schema_v19.sql"),
    include_str!("schema/catalog_schema_v20.sql"),
    include_str!("schema/catalog_schema_v21.sql"),
    include_str!("schema/catalog_schema_v22.sql"),
    include_str!("schema/catalog_schema_v23.sql"),
];

/// Zone facts for tests: `xuchang/yuzhou` with the default export policy.
pub fn test_zone() -> ZoneFacts {
    ZoneFacts::new(
        "xuchang/yuzhou".parse().expect("a valid zone id literal"),
        ExportPolicy::default(),
    )
    .with_root(xchg_protocol::vectors::root().public())
}

/// A catalog database for the catalog's own tests, without the store above it: the schema
/// applied to a fresh file in `dir`, on the kind of connection the rules run on.
#[cfg(test)]
pub(crate) fn test_db(dir: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(dir.join("catalog.db"))
        .expect("a catalog file in the test directory");
    crate::sqlite::migrate(&db, SCHEMA).expect("the catalog schema applies");
    db
}

/// A reader of the catalog file [`test_db`] made in `dir`, for the tables' reads.
#[cfg(test)]
pub(crate) async fn test_reader(dir: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("catalog.db"));
    sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("the catalog file in the test directory")
}

/// One change to the zone's replicated state: the payload of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: internally tagged enums buffer their content and lose the binary encoding
// of timestamps and ids, so they would not round-trip through CBOR. The snake_case names are
// in every Raft log: a renamed variant keeps its old name with `#[serde(rename = "...")]`.
#[serde(rename_all = "snake_case")]
pub enum CatalogCommand {
    /// A provider submits version 1 of a new listing (built and validated by the receiving node).
    SubmitListing {
        /// The complete version 1.
        listing: Box<Listing>,
        /// The submitter.
        actor: Actor,
    },
    /// A provider replaces the content of its listing; the new version goes back to review.
    UpdateListing {
        /// The listing.
        listing_id: ContentId,
        /// The new content.
        draft: Box<ListingDraft>,
        /// When.
        at: Timestamp,
        /// The submitter.
        actor: Actor,
    },
    /// An operator approves a submitted listing after review: it becomes `listed`.
    ApproveListing {
        /// The listing.
        listing_id: ContentId,
        /// What the review found.
        review: Review,
        /// When.
        at: Timestamp,
        /// The reviewer.
        actor: Actor,
    },
    /// An operator rejects a submitted listing.
    RejectListing {
        /// The listing.
        listing_id: ContentId,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The reviewer.
        actor: Actor,
    },
    /// An operator withdraws a listed listing.
    DelistListing {
        /// The listing.
        listing_id: ContentId,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// The leader signed a pending outbox entry: the envelope is recorded (and served to peers)
    /// and the entry is marked published.
    RecordPublished {
        /// The outbox entry.
        outbox_seq: u64,
        /// The signed envelope.
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
        /// When it was signed.
        at: Timestamp,
        /// The signing node's name.
        node: String,
    },
    /// An announcement from another zone or exchange and the decision on it.
    Recognize(Box<Recognition>),
    /// The bounded record of an announcement refused before recording.
    RecordRefusal(Box<RefusedAnnouncement>),
    /// An admin creates an API token (only its hash is replicated).
    CreateToken {
        /// Hex SHA-256 of the token text.
        token_hash: String,
        /// The role it grants.
        role: Role,
        /// The party it acts for, if bound to one.
        party: Option<String>,
        /// A label for people.
        label: String,
        /// When.
        at: Timestamp,
        /// The admin.
        actor: Actor,
    },
    /// An admin changed the zone's membership (or tried to): the record of who asked, when, and
    /// how it ended. The membership itself changes through Raft's own entries.
    RecordMembershipChange {
        /// What was asked: `add <name>` or `remove <name>`.
        change: String,
        /// `ok`, or `failed: <why>`.
        outcome: String,
        /// When it was asked.
        at: Timestamp,
        /// The admin.
        actor: Actor,
    },
    /// A write its caller sent with an `Idempotency-Key`: applied once per caller and key;
    /// a retry gets the first response.
    Idempotent(Box<Idempotent>),
    /// An admin revokes a token (run-time or config-issued).
    RevokeToken {
        /// Hex SHA-256 of the token text.
        token_hash: String,
        /// The role the token had (needed to record config tokens).
        role: Role,
        /// When.
        at: Timestamp,
        /// The admin.
        actor: Actor,
        /// The hashes of the admin tokens in the proposing node's config: with the tokens
        /// table, the admin tokens that still work, of which the state machine never revokes
        /// the last. Absent in entries written before that rule, which apply as they did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config_admins: Option<Vec<String>>,
    },
    /// A party applies to trade in the zone (`parties::apply_for`): it becomes `applied`.
    ApplyParty {
        /// Who it is.
        profile: Box<PartyProfile>,
        /// When.
        at: Timestamp,
        /// The caller, if it presented a token (anyone may apply, with a token or without).
        actor: Option<Actor>,
        /// The member whose API received it: an application without a token is that
        /// member's to propose ([`CatalogCommand::proposing_node`]).
        received_by: String,
    },
    /// An operator admits an applicant: `applied → admitted`.
    AdmitParty {
        /// The party.
        party_id: PartyId,
        /// What the review found.
        notes: Option<String>,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// An operator refuses an applicant: `applied → refused`.
    RefuseParty {
        /// The party.
        party_id: PartyId,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// An operator suspends an admitted party: `admitted → suspended`.
    SuspendParty {
        /// The party.
        party_id: PartyId,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// An operator reinstates a suspended party: `suspended → admitted`.
    ReinstateParty {
        /// The party.
        party_id: PartyId,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// A party entrusts a broker with acts in its name until a time (委托).
    GrantEntrustment {
        /// Who entrusts whom with what, until when.
        grant: Box<parties::EntrustmentGrant>,
        /// When.
        at: Timestamp,
        /// The party's token.
        actor: Actor,
    },
    /// A party (or an operator) ends an entrustment before its expiry.
    RevokeEntrustment {
        /// The entrustment.
        entrustment_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// Who.
        actor: Actor,
    },
    /// A broker's act in another party's name under an entrustment; applied as the party's
    /// own command once the entrustment allows it, and recorded with both names.
    Entrusted(Box<parties::BrokerAct>),
    /// A buyer applies to use a listing for one of its scenarios (`applications::submit`).
    SubmitApplication {
        /// What it asks for.
        request: Box<applications::ApplicationRequest>,
        /// The applying party: the caller's own.
        buyer: PartyId,
        /// When.
        at: Timestamp,
        /// The buyer's token.
        actor: Actor,
    },
    /// An operator approves an application, with its terms as asked or narrowed: an
    /// authorisation is created.
    ApproveApplication {
        /// The application.
        application_id: u64,
        /// The narrowed terms (none: as asked).
        terms: applications::Terms,
        /// When; the authorisation runs from it.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// An operator rejects an application.
    RejectApplication {
        /// The application.
        application_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// The buyer, or the provider's delivery system, reports calls made under an
    /// authorisation: counted if its rules allow them at `at`, else refused and recorded.
    RecordUsage {
        /// The authorisation.
        authorization_id: u64,
        /// How many calls.
        calls: u64,
        /// When (expiry is judged by it).
        at: Timestamp,
        /// Who reports.
        actor: Actor,
    },
    /// An operator suspends an authorisation: `active → suspended`.
    SuspendAuthorization {
        /// The authorisation.
        authorization_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// An operator revokes an authorisation: `active | suspended → revoked`.
    RevokeAuthorization {
        /// The authorisation.
        authorization_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// An operator lifts an authorisation's suspension: `suspended → active`.
    ReinstateAuthorization {
        /// The authorisation.
        authorization_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// The record of a request its receiving node refused before proposing it: changes
    /// nothing, answers the refusal, and is audited under the act asked for.
    RecordRefusedRequest(Box<RefusedRequest>),
    /// A provider registers one of its listings (登记): it becomes a `pending` registration.
    SubmitRegistration {
        /// What is registered, in whose name.
        registration: Box<registrations::NewRegistration>,
        /// When.
        at: Timestamp,
        /// The submitter.
        actor: Actor,
    },
    /// An operator approves a pending registration with the certificate the handling node
    /// built and signed ([`registrations::check_certificate`] verifies it when applied).
    ApproveRegistration {
        /// The registration.
        registration_id: u64,
        /// What the review found.
        notes: Option<String>,
        /// The signed certificate, canonical CBOR (PROTOCOL.md 10.2); issued at `at`.
        #[serde(with = "serde_bytes")]
        certificate: Vec<u8>,
        /// When (the certificate's issue time).
        at: Timestamp,
        /// The reviewer.
        actor: Actor,
    },
    /// An operator rejects a pending registration.
    RejectRegistration {
        /// The registration.
        registration_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The reviewer.
        actor: Actor,
    },
    /// An operator revokes a valid certificate, with the revocation the handling node built
    /// and signed ([`registrations::revoke`] verifies it when applied, PROTOCOL.md 10.6).
    RevokeCertificate {
        /// The certificate number.
        number: String,
        /// Why.
        reason: String,
        /// The signed revocation, canonical CBOR; empty in a command written before
        /// revocations travelled (recorded, never published).
        #[serde(default, with = "serde_bytes")]
        revocation: Vec<u8>,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// A registration certificate from another zone, received on its exchange's certificate
    /// topic, and the leader's judgement of it (PROTOCOL.md 10.5).
    ReceiveCertificate(Box<certified::ReceivedCertificate>),
    /// A certificate revocation from another zone, received on its exchange's certificate
    /// topic, and the leader's judgement of it (PROTOCOL.md 10.6).
    ReceiveCertificateRevocation(Box<certified::ReceivedRevocation>),
    /// The leader published the revocation of the certificate of a registration on its
    /// exchange's certificate topic.
    RecordCertificateRevocationPublished {
        /// The registration the revoked certificate was issued for.
        registration_id: u64,
        /// When.
        at: Timestamp,
        /// The publishing node's name.
        node: String,
    },
    /// The leader published the certificate of a registration on its exchange's certificate
    /// topic.
    RecordCertificatePublished {
        /// The registration the certificate was issued for.
        registration_id: u64,
        /// When.
        at: Timestamp,
        /// The publishing node's name.
        node: String,
    },
    /// At the applicant: the origin zone acknowledged an application forwarded to it
    /// (`forwarding → submitted`, PROTOCOL.md 11).
    ApplicationForwarded {
        /// The application.
        application_id: u64,
        /// When the acknowledgement arrived.
        at: Timestamp,
        /// The member that forwarded it.
        node: String,
    },
    /// At the origin: a request forwarded from another exchange, verified by the member that
    /// received it (`across::receive`).
    ReceiveApplication(Box<across::ReceivedApplication>),
    /// At the applicant: the origin's signed decision, verified by the member that received it
    /// (`across::decided`).
    ApplicationDecided(Box<across::ReceivedDecision>),
    /// At the applicant: an origin zone's signed list of precedents, verified by the member
    /// that fetched it (`precedents::record`).
    RecordPrecedents(Box<precedents::ReceivedPrecedents>),
    /// A demand of another zone, received on a demand topic or by catch-up and verified by
    /// the leader under its agreement with the demand's exchange (PROTOCOL.md 11.9).
    ReceiveDemand(Box<demands_across::ReceivedDemand>),
    /// The leader published the signed state of a demand its buyer shared with the federation
    /// on its exchange's demand topic (PROTOCOL.md 11.9).
    RecordDemandPublished {
        /// The demand.
        demand_id: u64,
        /// The SignedMessage published.
        #[serde(with = "serde_bytes")]
        signed: Vec<u8>,
        /// When.
        at: Timestamp,
        /// The publishing node's name.
        node: String,
    },
    /// A buyer (or a broker it entrusted with `post_demand`) posts a demand.
    PostDemand {
        /// The demand.
        demand: Box<demands::NewDemand>,
        /// When.
        at: Timestamp,
        /// Who asks.
        actor: Actor,
    },
    /// A broker party or an operator proposes a listing to a demand.
    ProposeToDemand {
        /// The demand.
        demand_id: u64,
        /// The listing.
        listing_id: ContentId,
        /// Why.
        note: Option<String>,
        /// When.
        at: Timestamp,
        /// Who asks.
        actor: Actor,
    },
    /// A demand's buyer accepts a listing for it.
    AcceptDemandMatch {
        /// The demand.
        demand_id: u64,
        /// The listing, with the match as scored by the receiving node.
        acceptance: Box<demands::Acceptance>,
        /// Who asks.
        actor: Actor,
    },
    /// A demand's buyer withdraws it.
    WithdrawDemand {
        /// The demand.
        demand_id: u64,
        /// When.
        at: Timestamp,
        /// Who asks.
        actor: Actor,
    },
    /// A provider (for its own listing) or an operator records a valuation report, computed by
    /// the receiving node; it becomes the listing's next report version.
    RecordValuation {
        /// The report (its `version` is assigned when applied).
        report: Box<valuation::ValuationReport>,
        /// Who asks.
        actor: Actor,
    },
    /// An admin sets the zone's fee schedule: its next version (`trades::set_fee_schedule`).
    SetFeeSchedule {
        /// The rates.
        schedule: trades::FeeSchedule,
        /// When.
        at: Timestamp,
        /// The admin.
        actor: Actor,
    },
    /// A buyer places an order under one of its authorisations (`trades::place`).
    PlaceOrder {
        /// What it orders.
        request: trades::OrderRequest,
        /// The ordering party: the caller's own.
        buyer: PartyId,
        /// When.
        at: Timestamp,
        /// The buyer's token.
        actor: Actor,
    },
    /// The provider confirms an order: `placed → confirmed`.
    ConfirmOrder {
        /// The order.
        order_id: u64,
        /// When.
        at: Timestamp,
        /// The provider's token.
        actor: Actor,
    },
    /// The provider records a delivery for an order (`trades::deliver`).
    RecordDelivery {
        /// The order.
        order_id: u64,
        /// What was delivered.
        delivery: Box<trades::DeliveryRequest>,
        /// When (the authorisation's expiry is judged by it).
        at: Timestamp,
        /// The provider's token.
        actor: Actor,
    },
    /// An operator settles a delivered order under the current fee schedule.
    SettleOrder {
        /// The order.
        order_id: u64,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// The buyer or the provider disputes an order's settlement: `settled → disputed`.
    DisputeSettlement {
        /// The order.
        order_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The buyer's or the provider's token.
        actor: Actor,
    },
    /// An operator reverses a disputed settlement by a new record: `disputed → reversed`.
    ReverseSettlement {
        /// The order.
        order_id: u64,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
        /// The operator.
        actor: Actor,
    },
    /// Anyone with a token files a complaint against a listing or party of the zone
    /// (`complaints::file`): it is `received`.
    FileComplaint {
        /// What is complained of.
        complaint: Box<complaints::NewComplaint>,
        /// When.
        at: Timestamp,
        /// The complainant.
        actor: Actor,
    },
    /// The regulator takes a step on a complaint (`complaints::act`): investigates it,
    /// resolves or dismisses it, suspends the listing it is against or lifts that suspension.
    ActOnComplaint {
        /// The complaint.
        complaint_id: u64,
        /// The step.
        step: complaints::Step,
        /// The regulator's note, kept in the complaint's history.
        note: String,
        /// When.
        at: Timestamp,
        /// The regulator.
        actor: Actor,
    },
}

/// The actor id of a command a zone member proposes on its own authority (`node:<name>`), as
/// the offline admin recovery does (`recovery`). Party ids and token ids cannot
/// contain `:` after `node`, so no API caller is ever given it.
pub const NODE_ACTOR_PREFIX: &str = "node:";

/// The rule that binds providers to parties: a provider token acts only for the party it is
/// bound to (a listing's `provider.id`), and a provider token bound to no party (created by an
/// older xchg) acts for none. Other roles are not bound by it. A broker acts for another party
/// only as a [`CatalogCommand::Entrusted`] command, whose inner command names that party.
///
/// # Errors
/// Why the caller may not `act` (what the command does, in words) for `named`.
pub fn party_rule(role: Role, party: Option<&str>, named: &str, act: &str) -> Result<(), String> {
    match party {
        Some(party) if party != named => Err(format!(
            "this token acts for {party}; it cannot {act} for {named}"
        )),
        None if role == Role::Provider => Err(format!(
            "this provider token is bound to no party, so it cannot {act} (for {named} or \
             anyone); an admin creates one bound to the party with POST /v1/tokens \
             {{\"role\":\"provider\",\"party\":\"{named}\",...}}"
        )),
        _ => Ok(()),
    }
}

impl CatalogCommand {
    /// Whether applying it changes the tokens table or the party registry: the API caches
    /// both (a token acts only while its party is admitted).
    pub fn changes_tokens(&self) -> bool {
        match self {
            CatalogCommand::Idempotent(i) => i.command.changes_tokens(),
            c => matches!(
                c,
                CatalogCommand::CreateToken { .. }
                    | CatalogCommand::RevokeToken { .. }
                    | CatalogCommand::ApplyParty { .. }
                    | CatalogCommand::AdmitParty { .. }
                    | CatalogCommand::RefuseParty { .. }
                    | CatalogCommand::SuspendParty { .. }
                    | CatalogCommand::ReinstateParty { .. }
            ),
        }
    }

    /// The audit action name.
    pub fn action(&self) -> &'static str {
        match self {
            CatalogCommand::SubmitListing { .. } => "submit_listing",
            CatalogCommand::UpdateListing { .. } => "update_listing",
            CatalogCommand::ApproveListing { .. } => "approve_listing",
            CatalogCommand::RejectListing { .. } => "reject_listing",
            CatalogCommand::DelistListing { .. } => "delist_listing",
            CatalogCommand::CreateToken { .. } => "create_token",
            CatalogCommand::RevokeToken { .. } => "revoke_token",
            CatalogCommand::RecordMembershipChange { .. } => "request_membership_change",
            CatalogCommand::Idempotent(i) => i.command.action(),
            CatalogCommand::RecordPublished { .. } => "record_published",
            CatalogCommand::Recognize(_) => "recognize",
            CatalogCommand::RecordRefusal(_) => "record_refusal",
            CatalogCommand::ApplyParty { .. } => "apply_party",
            CatalogCommand::AdmitParty { .. } => "admit_party",
            CatalogCommand::RefuseParty { .. } => "refuse_party",
            CatalogCommand::SuspendParty { .. } => "suspend_party",
            CatalogCommand::ReinstateParty { .. } => "reinstate_party",
            CatalogCommand::GrantEntrustment { .. } => "grant_entrustment",
            CatalogCommand::RevokeEntrustment { .. } => "revoke_entrustment",
            CatalogCommand::Entrusted(act) => act.command.action(),
            CatalogCommand::SubmitApplication { .. } => "submit_application",
            CatalogCommand::ApproveApplication { .. } => "approve_application",
            CatalogCommand::RejectApplication { .. } => "reject_application",
            CatalogCommand::RecordUsage { .. } => "record_usage",
            CatalogCommand::SuspendAuthorization { .. } => "suspend_authorization",
            CatalogCommand::RevokeAuthorization { .. } => "revoke_authorization",
            CatalogCommand::ReinstateAuthorization { .. } => "reinstate_authorization",
            CatalogCommand::RecordRefusedRequest(r) => r.act.as_str(),
            CatalogCommand::SubmitRegistration { .. } => "submit_registration",
            CatalogCommand::ApproveRegistration { .. } => "approve_registration",
            CatalogCommand::RejectRegistration { .. } => "reject_registration",
            CatalogCommand::RevokeCertificate { .. } => "revoke_certificate",
            CatalogCommand::ReceiveCertificate(_) => "receive_certificate",
            CatalogCommand::RecordCertificatePublished { .. } => "record_certificate_published",
            CatalogCommand::ReceiveCertificateRevocation(_) => "receive_certificate_revocation",
            CatalogCommand::RecordCertificateRevocationPublished { .. } => {
                "record_certificate_revocation_published"
            }
            CatalogCommand::ApplicationForwarded { .. } => "application_forwarded",
            CatalogCommand::ReceiveApplication(_) => "receive_application",
            CatalogCommand::ApplicationDecided(_) => "application_decided",
            CatalogCommand::RecordPrecedents(_) => "record_precedents",
            CatalogCommand::ReceiveDemand(_) => "receive_demand",
            CatalogCommand::RecordDemandPublished { .. } => "record_demand_published",
            CatalogCommand::RecordValuation { .. } => "record_valuation",
            CatalogCommand::PostDemand { .. } => "post_demand",
            CatalogCommand::ProposeToDemand { .. } => "propose_to_demand",
            CatalogCommand::AcceptDemandMatch { .. } => "accept_demand_match",
            CatalogCommand::WithdrawDemand { .. } => "withdraw_demand",
            CatalogCommand::SetFeeSchedule { .. } => "set_fee_schedule",
            CatalogCommand::PlaceOrder { .. } => "place_order",
            CatalogCommand::ConfirmOrder { .. } => "confirm_order",
            CatalogCommand::RecordDelivery { .. } => "record_delivery",
            CatalogCommand::SettleOrder { .. } => "settle_order",
            CatalogCommand::DisputeSettlement { .. } => "dispute_settlement",
            CatalogCommand::ReverseSettlement { .. } => "reverse_settlement",
            CatalogCommand::FileComplaint { .. } => "file_complaint",
            CatalogCommand::ActOnComplaint { step, .. } => match step {
                complaints::Step::Investigate => "investigate_complaint",
                complaints::Step::Close(complaints::Outcome::Resolved) => "resolve_complaint",
                complaints::Step::Close(complaints::Outcome::Dismissed) => "dismiss_complaint",
                complaints::Step::SuspendListing => "suspend_listing",
                complaints::Step::LiftSuspension => "lift_listing_suspension",
            },
        }
    }

    /// The act a broker may be entrusted with that this command is, if any.
    pub fn act(&self) -> Option<parties::Act> {
        match self {
            CatalogCommand::SubmitListing { .. } => Some(parties::Act::SubmitListing),
            CatalogCommand::UpdateListing { .. } => Some(parties::Act::UpdateListing),
            CatalogCommand::SubmitRegistration { .. } => Some(parties::Act::SubmitRegistration),
            CatalogCommand::PostDemand { .. } => Some(parties::Act::PostDemand),
            CatalogCommand::PlaceOrder { .. } => Some(parties::Act::PlaceOrder),
            _ => None,
        }
    }

    /// What a command in a party's name does, in the words of [`party_rule`]'s refusals.
    pub fn party_act(&self) -> &'static str {
        match self {
            CatalogCommand::SubmitRegistration { .. } => "register listings",
            CatalogCommand::PostDemand { .. } => "post demands",
            CatalogCommand::PlaceOrder { .. } => "place orders",
            _ => "submit or update listings",
        }
    }

    /// The request field that names the party of [`Self::named_party`], which the API's
    /// refusals of a party blame.
    pub fn party_field(&self) -> &'static str {
        match self {
            CatalogCommand::PlaceOrder { .. } | CatalogCommand::PostDemand { .. } => "buyer",
            _ => "provider.id",
        }
    }

    /// The party a command is in the name of (a listing's `provider.id`), if it names one.
    pub fn named_party(&self) -> Option<&str> {
        match self {
            CatalogCommand::SubmitListing { listing, .. } => Some(listing.provider.id.as_str()),
            CatalogCommand::UpdateListing { draft, .. } => Some(draft.provider.id.as_str()),
            CatalogCommand::SubmitRegistration { registration, .. } => {
                Some(registration.holder.as_str())
            }
            CatalogCommand::PostDemand { demand, .. } => Some(demand.buyer.as_str()),
            CatalogCommand::PlaceOrder { buyer, .. } => Some(buyer.as_str()),
            _ => None,
        }
    }

    /// The member a node-proposed command names as its proposer (recognitions, published
    /// envelopes, a token handed over by the offline admin recovery, an application received
    /// without a token); `None` for the commands people ask for.
    pub fn proposing_node(&self) -> Option<&str> {
        match self {
            CatalogCommand::Idempotent(i) => i.command.proposing_node(),
            CatalogCommand::Recognize(r) => Some(r.node.as_str()),
            CatalogCommand::RecordRefusal(r) => Some(r.node.as_str()),
            CatalogCommand::RecordPublished { node, .. } => Some(node.as_str()),
            CatalogCommand::ReceiveCertificate(r) => Some(r.node.as_str()),
            CatalogCommand::RecordCertificatePublished { node, .. } => Some(node.as_str()),
            CatalogCommand::ReceiveCertificateRevocation(r) => Some(r.node.as_str()),
            CatalogCommand::RecordCertificateRevocationPublished { node, .. } => {
                Some(node.as_str())
            }
            CatalogCommand::ApplicationForwarded { node, .. } => Some(node.as_str()),
            CatalogCommand::ReceiveApplication(r) => Some(r.node.as_str()),
            CatalogCommand::ApplicationDecided(r) => Some(r.node.as_str()),
            CatalogCommand::RecordPrecedents(r) => Some(r.node.as_str()),
            CatalogCommand::ReceiveDemand(r) => Some(r.node.as_str()),
            CatalogCommand::RecordDemandPublished { node, .. } => Some(node.as_str()),
            // Only the admin token of the offline recovery is a member's to hand over.
            CatalogCommand::CreateToken {
                actor,
                role: Role::Admin,
                party: None,
                ..
            } => actor.id.strip_prefix(NODE_ACTOR_PREFIX),
            // Anyone may apply without a token: the member that received it proposes it.
            CatalogCommand::ApplyParty {
                actor: None,
                received_by,
                ..
            } => Some(received_by.as_str()),
            _ => None,
        }
    }

    /// Checks that a caller with `actor`'s role (acting for `party`, if its token is bound to
    /// one) may ask for this command, the same rules the API applies, and makes `actor` the
    /// command's actor. The leader does this again for commands a follower forwards.
    ///
    /// # Errors
    /// [`Refusal::Forbidden`] naming the rule.
    pub fn authorise(&mut self, actor: Actor, party: Option<&str>) -> Result<(), Refusal> {
        match self {
            CatalogCommand::Idempotent(i) => return i.command.authorise(actor, party),
            CatalogCommand::Entrusted(act) => return act.authorise(actor, party),
            _ => {}
        }
        let needs: &[Role] = match self {
            CatalogCommand::Idempotent(_) | CatalogCommand::Entrusted(_) => &[],
            CatalogCommand::SubmitListing { .. }
            | CatalogCommand::UpdateListing { .. }
            | CatalogCommand::SubmitRegistration { .. } => &[Role::Provider],
            CatalogCommand::ApproveRegistration { .. }
            | CatalogCommand::RejectRegistration { .. }
            | CatalogCommand::RevokeCertificate { .. } => &[Role::Operator],
            CatalogCommand::ApproveListing { .. }
            | CatalogCommand::RejectListing { .. }
            | CatalogCommand::DelistListing { .. }
            | CatalogCommand::AdmitParty { .. }
            | CatalogCommand::RefuseParty { .. }
            | CatalogCommand::SuspendParty { .. }
            | CatalogCommand::ReinstateParty { .. }
            | CatalogCommand::ApproveApplication { .. }
            | CatalogCommand::RejectApplication { .. }
            | CatalogCommand::SuspendAuthorization { .. }
            | CatalogCommand::RevokeAuthorization { .. }
            | CatalogCommand::ReinstateAuthorization { .. } => &[Role::Operator],
            // Whoever asked is recorded; the refusal is the receiving node's.
            CatalogCommand::RecordRefusedRequest(_) => &Role::ALL,
            CatalogCommand::SubmitApplication { .. } => &[Role::Buyer],
            CatalogCommand::PostDemand { .. }
            | CatalogCommand::AcceptDemandMatch { .. }
            | CatalogCommand::WithdrawDemand { .. } => &[Role::Buyer],
            // A broker party's token of either role; the state machine judges the party.
            CatalogCommand::ProposeToDemand { .. } => {
                &[Role::Operator, Role::Provider, Role::Buyer]
            }
            // Whose listing it is, the state machine judges (`valuation::record`).
            CatalogCommand::RecordValuation { .. } => &[Role::Provider, Role::Operator],
            // Whose order it is, the state machine judges (`trades`).
            CatalogCommand::PlaceOrder { .. } => &[Role::Buyer],
            CatalogCommand::ConfirmOrder { .. } | CatalogCommand::RecordDelivery { .. } => {
                &[Role::Provider]
            }
            CatalogCommand::SettleOrder { .. } | CatalogCommand::ReverseSettlement { .. } => {
                &[Role::Operator]
            }
            CatalogCommand::DisputeSettlement { .. } => &[Role::Buyer, Role::Provider],
            CatalogCommand::SetFeeSchedule { .. } => &[],
            // Whose authorisation it is, the state machine judges (`applications::record_usage`).
            CatalogCommand::RecordUsage { .. } => &[Role::Buyer, Role::Provider],
            CatalogCommand::ApplyParty { .. } | CatalogCommand::FileComplaint { .. } => &Role::ALL,
            CatalogCommand::ActOnComplaint { .. } => &[Role::Regulator],
            CatalogCommand::GrantEntrustment { .. } => &[Role::Provider, Role::Buyer],
            CatalogCommand::RevokeEntrustment { .. } => {
                &[Role::Provider, Role::Buyer, Role::Operator]
            }
            // Recognize: an admin posting a root-signed revocation.
            CatalogCommand::CreateToken { .. }
            | CatalogCommand::RevokeToken { .. }
            | CatalogCommand::RecordMembershipChange { .. }
            | CatalogCommand::Recognize(_) => &[],
            CatalogCommand::RecordPublished { .. }
            | CatalogCommand::RecordRefusal(_)
            | CatalogCommand::ReceiveCertificate(_)
            | CatalogCommand::RecordCertificatePublished { .. }
            | CatalogCommand::ReceiveCertificateRevocation(_)
            | CatalogCommand::RecordCertificateRevocationPublished { .. }
            | CatalogCommand::ApplicationForwarded { .. }
            | CatalogCommand::ReceiveApplication(_)
            | CatalogCommand::ApplicationDecided(_)
            | CatalogCommand::RecordPrecedents(_)
            | CatalogCommand::ReceiveDemand(_)
            | CatalogCommand::RecordDemandPublished { .. } => {
                return Err(Refusal::Forbidden(format!(
                    "only a zone member may {}",
                    self.action().replace('_', " ")
                )));
            }
        };
        if actor.role != Role::Admin && !needs.contains(&actor.role) {
            return Err(Refusal::Forbidden(format!(
                "a {} token cannot {}",
                actor.role,
                self.action().replace('_', " ")
            )));
        }
        if let Some(named) = self.named_party() {
            party_rule(actor.role, party, named, self.party_act()).map_err(Refusal::Forbidden)?;
        }
        if let CatalogCommand::GrantEntrustment { grant, .. } = self {
            // The party that entrusts is the caller's own, whatever the body said.
            grant.party = own_party(party, "entrust a broker")?;
        }
        if let CatalogCommand::ProposeToDemand { .. } = self
            && matches!(actor.role, Role::Provider | Role::Buyer)
        {
            own_party(party, "propose listings to demands")?;
        }
        if let CatalogCommand::SubmitApplication { buyer, .. } = self {
            // The applying party is the caller's own, whatever the body said.
            *buyer = own_party(party, "apply for a scenario")?;
        }
        if let CatalogCommand::PlaceOrder { buyer, .. } = self {
            // The ordering party is the caller's own.
            *buyer = own_party(party, "place an order")?;
        }
        if let CatalogCommand::PostDemand { .. } = self {
            // In the caller's own party's name ([`party_rule`] has checked it is that one): a
            // token bound to no party posts none, in anyone's name.
            own_party(party, "post demands")?;
        }
        match self {
            CatalogCommand::SubmitListing { actor: a, .. }
            | CatalogCommand::UpdateListing { actor: a, .. }
            | CatalogCommand::ApproveListing { actor: a, .. }
            | CatalogCommand::RejectListing { actor: a, .. }
            | CatalogCommand::DelistListing { actor: a, .. }
            | CatalogCommand::CreateToken { actor: a, .. }
            | CatalogCommand::RevokeToken { actor: a, .. }
            | CatalogCommand::RecordMembershipChange { actor: a, .. }
            | CatalogCommand::AdmitParty { actor: a, .. }
            | CatalogCommand::RefuseParty { actor: a, .. }
            | CatalogCommand::SuspendParty { actor: a, .. }
            | CatalogCommand::ReinstateParty { actor: a, .. }
            | CatalogCommand::GrantEntrustment { actor: a, .. }
            | CatalogCommand::RevokeEntrustment { actor: a, .. }
            | CatalogCommand::SubmitApplication { actor: a, .. }
            | CatalogCommand::ApproveApplication { actor: a, .. }
            | CatalogCommand::RejectApplication { actor: a, .. }
            | CatalogCommand::RecordUsage { actor: a, .. }
            | CatalogCommand::SuspendAuthorization { actor: a, .. }
            | CatalogCommand::RevokeAuthorization { actor: a, .. }
            | CatalogCommand::ReinstateAuthorization { actor: a, .. }
            | CatalogCommand::SubmitRegistration { actor: a, .. }
            | CatalogCommand::ApproveRegistration { actor: a, .. }
            | CatalogCommand::RejectRegistration { actor: a, .. }
            | CatalogCommand::RevokeCertificate { actor: a, .. }
            | CatalogCommand::RecordValuation { actor: a, .. }
            | CatalogCommand::PostDemand { actor: a, .. }
            | CatalogCommand::ProposeToDemand { actor: a, .. }
            | CatalogCommand::AcceptDemandMatch { actor: a, .. }
            | CatalogCommand::WithdrawDemand { actor: a, .. }
            | CatalogCommand::SetFeeSchedule { actor: a, .. }
            | CatalogCommand::PlaceOrder { actor: a, .. }
            | CatalogCommand::ConfirmOrder { actor: a, .. }
            | CatalogCommand::RecordDelivery { actor: a, .. }
            | CatalogCommand::SettleOrder { actor: a, .. }
            | CatalogCommand::DisputeSettlement { actor: a, .. }
            | CatalogCommand::ReverseSettlement { actor: a, .. } => *a = actor,
            CatalogCommand::FileComplaint { actor: a, .. }
            | CatalogCommand::ActOnComplaint { actor: a, .. } => *a = actor,
            CatalogCommand::RecordRefusedRequest(r) => r.actor = actor,
            CatalogCommand::ApplyParty { actor: a, .. } => *a = Some(actor),
            CatalogCommand::Recognize(_)
            | CatalogCommand::RecordPublished { .. }
            | CatalogCommand::RecordRefusal(_)
            | CatalogCommand::ReceiveCertificate(_)
            | CatalogCommand::RecordCertificatePublished { .. }
            | CatalogCommand::ReceiveCertificateRevocation(_)
            | CatalogCommand::RecordCertificateRevocationPublished { .. }
            | CatalogCommand::ApplicationForwarded { .. }
            | CatalogCommand::ReceiveApplication(_)
            | CatalogCommand::ApplicationDecided(_)
            | CatalogCommand::RecordPrecedents(_)
            | CatalogCommand::ReceiveDemand(_)
            | CatalogCommand::RecordDemandPublished { .. }
            | CatalogCommand::Idempotent(_)
            | CatalogCommand::Entrusted(_) => {}
        }
        Ok(())
    }

    /// Whether applying it may add revoked keys.
    pub fn changes_revocations(&self) -> bool {
        match self {
            CatalogCommand::Idempotent(i) => i.command.changes_revocations(),
            CatalogCommand::Entrusted(act) => act.command.changes_revocations(),
            c => {
                matches!(c, CatalogCommand::Recognize(r) if r.kind == AnnouncementKind::Revocation)
            }
        }
    }

    /// Whether applying it may add outbox entries.
    pub fn changes_outbox(&self) -> bool {
        match self {
            CatalogCommand::Idempotent(i) => i.command.changes_outbox(),
            CatalogCommand::Entrusted(act) => act.command.changes_outbox(),
            c => matches!(
                c,
                CatalogCommand::ApproveListing { .. }
                    | CatalogCommand::RejectListing { .. }
                    | CatalogCommand::DelistListing { .. }
                    // An approval may queue its certificate for publication, a revocation
                    // its revocation.
                    | CatalogCommand::ApproveRegistration { .. }
                    | CatalogCommand::RevokeCertificate { .. }
                    // A shared demand, posted, withdrawn or accepted, is published.
                    | CatalogCommand::PostDemand { .. }
                    | CatalogCommand::WithdrawDemand { .. }
                    | CatalogCommand::AcceptDemandMatch { .. }
                    // A suspension withdraws the listing from the exchanges that hold it.
                    | CatalogCommand::ActOnComplaint {
                        step: complaints::Step::SuspendListing,
                        ..
                    }
            ),
        }
    }
}

/// The caller's own party, which `what` needs.
fn own_party(party: Option<&str>, what: &str) -> Result<PartyId, Refusal> {
    party
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Refusal::Forbidden(format!("only a token bound to a party can {what}")))
}

impl parties::BrokerAct {
    /// As [`CatalogCommand::authorise`] for a broker's act: the broker is the caller's party,
    /// the command one a broker may be entrusted with, asked for in the name of another party,
    /// which becomes its actor.
    ///
    /// # Errors
    /// [`Refusal::Forbidden`] naming the rule.
    pub fn authorise(&mut self, actor: Actor, party: Option<&str>) -> Result<(), Refusal> {
        let act = self.command.action();
        let named = match (self.command.act(), self.command.named_party()) {
            (Some(_), Some(named)) => named.to_owned(),
            _ => {
                return Err(Refusal::Forbidden(format!(
                    "a broker cannot be entrusted to {}",
                    act.replace('_', " ")
                )));
            }
        };
        self.broker = own_party(party, "act as a broker")?;
        if self.broker.as_str() == named {
            return Err(Refusal::Forbidden(format!(
                "{named} acts for itself with its own token, not as its broker"
            )));
        }
        let as_party = Actor {
            id: named.clone(),
            role: actor.role,
        };
        self.command.authorise(as_party, Some(&named))
    }
}

/// A command sent with an `Idempotency-Key` (see [`CatalogCommand::Idempotent`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotent {
    /// The caller's key (1 to 64 characters of `A-Z a-z 0-9 . _ : -`).
    pub key: String,
    /// SHA-256 of the request's method, path and body: the same key with another request is
    /// refused.
    #[serde(with = "serde_bytes")]
    pub request: Vec<u8>,
    /// When the caller asked (keys expire [`IDEMPOTENCY_TTL_MS`] after their first use).
    pub at: Timestamp,
    /// The write.
    pub command: CatalogCommand,
}

/// How long an idempotency key is remembered: 24 hours.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// The lifecycle state of a listing in this zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListingState {
    /// Awaiting review.
    Submitted,
    /// Approved and visible to buyers.
    Listed,
    /// Refused in review.
    Rejected,
    /// Withdrawn after being listed (or, for a recognised copy, by its origin).
    Delisted,
    /// A copy of another zone's listed listing, recognised under an agreement.
    Recognised,
    /// A recognised copy whose signing key its exchange has since revoked: the revocation is in
    /// its history and provenance (PROTOCOL.md 9). A later version signed with a valid key
    /// recognises it again.
    Revoked,
    /// One of this zone's listed listings suspended by the regulator under a complaint: not
    /// exported (its delisting is announced), no application for it is taken or approved,
    /// no usage counted, until the regulator lifts the suspension (back to `listed`).
    Suspended,
}

impl ListingState {
    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingState::Submitted => "submitted",
            ListingState::Listed => "listed",
            ListingState::Rejected => "rejected",
            ListingState::Delisted => "delisted",
            ListingState::Recognised => "recognised",
            ListingState::Revoked => "revoked",
            ListingState::Suspended => "suspended",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "submitted" => ListingState::Submitted,
            "listed" => ListingState::Listed,
            "rejected" => ListingState::Rejected,
            "delisted" => ListingState::Delisted,
            "recognised" => ListingState::Recognised,
            "revoked" => ListingState::Revoked,
            "suspended" => ListingState::Suspended,
            _ => return None,
        })
    }
}

/// Why the state machine refused a command. The refusal is itself recorded in the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "code", content = "message")]
pub enum Refusal {
    /// No listing (or token) with that id.
    #[error("{0}")]
    NotFound(String),
    /// The same object already exists.
    #[error("{0}")]
    Conflict(String),
    /// The actor may not do this to this object.
    #[error("{0}")]
    Forbidden(String),
    /// An `Idempotency-Key` already used by this caller for another request.
    #[error("{0}")]
    KeyReused(String),
    /// The object's state does not allow this command.
    #[error("{0}")]
    IllegalTransition(String),
    /// The command's content is inconsistent (an envelope that does not decode or match).
    #[error("{0}")]
    Invalid(String),
    /// Revoking this admin token would leave the zone with no working admin token.
    #[error("{0}")]
    LastAdmin(String),
    /// The party acted for is not admitted in the zone's registry (unknown, applied, refused
    /// or suspended).
    #[error("{0}")]
    PartyNotAdmitted(String),
    /// A broker acted for a party outside the entrustments that party granted it.
    #[error("{0}")]
    NotEntrusted(String),
    /// The zone keeps no more applications awaiting a decision.
    #[error("{0}")]
    ApplicationsFull(String),
    /// An application named no scenario or several (一场景一申请).
    #[error("{0}")]
    OneScenario(String),
    /// An application named a scenario its listing does not offer.
    #[error("{0}")]
    ScenarioNotOffered(String),
    /// Delivery out of its domain of a product that must stay in it (数据不出域).
    #[error("{0}")]
    InDomainOnly(String),
    /// A use of an authorisation at or after its expiry.
    #[error("{0}")]
    AuthorizationExpired(String),
    /// A use that would take an authorisation past its usage limit.
    #[error("{0}")]
    UsageLimitExceeded(String),
    /// A use of a suspended authorisation.
    #[error("{0}")]
    AuthorizationSuspended(String),
    /// A use of a revoked authorisation.
    #[error("{0}")]
    AuthorizationRevoked(String),
    /// A use of an authorisation whose listing is no longer listed (delisted, or back in
    /// review).
    #[error("{0}")]
    ListingNotListed(String),
    /// A delivery in another mode than the one its order's authorisation grants.
    #[error("{0}")]
    DeliveryModeNotAuthorized(String),
    /// A delivery that would take a per-call order past the calls it was placed for.
    #[error("{0}")]
    OrderQuantityExceeded(String),
    /// An application for, or the approval of one for, a listing the regulator suspended
    /// under a complaint.
    #[error("{0}")]
    ListingSuspended(String),
    /// The complainant has the most complaints open that one may have.
    #[error("{0}")]
    ComplaintsFull(String),
    /// The zone holds the most demands of one origin zone it keeps (PROTOCOL.md 11.9).
    #[error("{0}")]
    DemandsFull(String),
}

impl Refusal {
    /// The machine-readable code used in API errors and audit results.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "not_found",
            Refusal::Conflict(_) => "conflict",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::KeyReused(_) => "idempotency_key_reused",
            Refusal::IllegalTransition(_) => "illegal_transition",
            Refusal::Invalid(_) => "invalid",
            Refusal::LastAdmin(_) => "last_admin",
            Refusal::PartyNotAdmitted(_) => "party_not_admitted",
            Refusal::NotEntrusted(_) => "not_entrusted",
            Refusal::ApplicationsFull(_) => "applications_full",
            Refusal::OneScenario(_) => "one_scenario",
            Refusal::ScenarioNotOffered(_) => "scenario_not_offered",
            Refusal::InDomainOnly(_) => "in_domain_only",
            Refusal::AuthorizationExpired(_) => "authorization_expired",
            Refusal::UsageLimitExceeded(_) => "usage_limit_exceeded",
            Refusal::AuthorizationSuspended(_) => "authorization_suspended",
            Refusal::AuthorizationRevoked(_) => "authorization_revoked",
            Refusal::ListingNotListed(_) => "listing_not_listed",
            Refusal::DeliveryModeNotAuthorized(_) => "delivery_mode_not_authorized",
            Refusal::OrderQuantityExceeded(_) => "order_quantity_exceeded",
            Refusal::ListingSuspended(_) => "listing_suspended",
            Refusal::ComplaintsFull(_) => "complaints_full",
            Refusal::DemandsFull(_) => "demands_full",
        }
    }
}

/// What applying one command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// The object acted on (listing id or token hash).
    pub object_id: String,
    /// The listing version after the command, for listing commands.
    pub version: Option<u32>,
    /// The listing state after the command, for listing commands.
    pub state: Option<ListingState>,
    /// For a usage report: the calls counted on the authorisation once it was (what a replay
    /// of the report under its idempotency key answers again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
}

/// The response to one command, handed back to the client that proposed it.
pub type CommandResponse = Result<Applied, Refusal>;

/// The payload of one Raft log entry: commands proposed together by one node.
///
/// A node gathers the writes that arrive while its previous proposal is in flight into one
/// entry, so one log append, one replication round and one state-machine call carry many
/// client writes. Each command still gets its own response and its own audit record.
///
/// Encoded with a format version (`catalog::format`), so older logs and peers stay readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch(pub Vec<CatalogCommand>);

/// The most bytes of commands (encoded) one [`Batch`] gathers; a command larger than this on
/// its own is proposed alone. Every message between zone members is bounded by it: see the
/// zone transport's frame limit.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The size of `value` in CBOR, the encoding of the Raft log and the zone transport, counted
/// without building it.
pub fn cbor_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail; a value serde refuses counts as nothing.
    let _ = cbor4ii::serde::to_writer(&mut count, value);
    count.0
}

/// The responses to a [`Batch`], in command order.
pub type BatchResponse = Vec<CommandResponse>;

/// Every refusal, one of each kind, for tests (the API checks their codes against the README);
/// adding a kind fails to compile here until it is listed.
#[cfg(test)]
pub fn every_refusal() -> Vec<Refusal> {
    let all = [
        Refusal::NotFound(String::new()),
        Refusal::Conflict(String::new()),
        Refusal::Forbidden(String::new()),
        Refusal::KeyReused(String::new()),
        Refusal::IllegalTransition(String::new()),
        Refusal::Invalid(String::new()),
        Refusal::LastAdmin(String::new()),
        Refusal::PartyNotAdmitted(String::new()),
        Refusal::NotEntrusted(String::new()),
        Refusal::ApplicationsFull(String::new()),
        Refusal::OneScenario(String::new()),
        Refusal::ScenarioNotOffered(String::new()),
        Refusal::InDomainOnly(String::new()),
        Refusal::AuthorizationExpired(String::new()),
        Refusal::UsageLimitExceeded(String::new()),
        Refusal::AuthorizationSuspended(String::new()),
        Refusal::AuthorizationRevoked(String::new()),
        Refusal::ListingNotListed(String::new()),
        Refusal::DeliveryModeNotAuthorized(String::new()),
        Refusal::OrderQuantityExceeded(String::new()),
        Refusal::ListingSuspended(String::new()),
        Refusal::ComplaintsFull(String::new()),
        Refusal::DemandsFull(String::new()),
    ];
    for r in &all {
        match r {
            Refusal::NotFound(_)
            | Refusal::Conflict(_)
            | Refusal::Forbidden(_)
            | Refusal::KeyReused(_)
            | Refusal::IllegalTransition(_)
            | Refusal::Invalid(_)
            | Refusal::LastAdmin(_)
            | Refusal::PartyNotAdmitted(_)
            | Refusal::NotEntrusted(_)
            | Refusal::ApplicationsFull(_)
            | Refusal::OneScenario(_)
            | Refusal::ScenarioNotOffered(_)
            | Refusal::InDomainOnly(_)
            | Refusal::AuthorizationExpired(_)
            | Refusal::UsageLimitExceeded(_)
            | Refusal::AuthorizationSuspended(_)
            | Refusal::AuthorizationRevoked(_)
            | Refusal::ListingNotListed(_)
            | Refusal::DeliveryModeNotAuthorized(_)
            | Refusal::OrderQuantityExceeded(_) => {}
            Refusal::ListingSuspended(_) | Refusal::ComplaintsFull(_) | Refusal::DemandsFull(_) => {
            }
        }
    }
    all.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{MigrateError, migrate};

    fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
        db.query_row(sql, [], |row| row.get(0)).expect(sql)
    }

    /// A catalog written by an older xchg is brought up to date in place: its rows stay, and
    /// what later steps changed (history keyed by the listing's seq, search indexed by the
    /// state machine) holds for the old rows too. A file from a newer xchg is refused.
    #[test]
    fn a_catalog_of_an_older_schema_is_brought_up_to_date_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = rusqlite::Connection::open(dir.path().join("catalog.db")).expect("open");
        migrate(&db, &SCHEMA[..1]).expect("v1");
        // A listing with two history entries, written the version 1 way (indexed by trigger,
        // history keyed by listing id), and a metadata row.
        db.execute_batch(
            "INSERT INTO sm_meta (key, value) VALUES ('kept', x'01');
             INSERT INTO listings (seq, id, version, content_id, state, origin, submitted_by,
                provider_id, provider_name, category, classification, delivery_modes, title,
                description, keywords, scenarios, created_at, updated_at, body)
             VALUES (7, 'sha256:aa', 1, 'sha256:aa', 'listed', 'xuchang/yuzhou', 'p1', 'p', 'P',
                'credit', 'general', ',api,', '禹州市企业信用核验接口', 'd', '', '', 1, 2, x'00');
             INSERT INTO listing_history (listing_id, seq, raft_index, at, actor, role, action,
                from_state, to_state, version)
             VALUES ('sha256:aa', 1, 3, 1, 'p1', 'provider', 'submit', NULL, 'submitted', 1),
                    ('sha256:aa', 2, 4, 2, 'op', 'operator', 'approve', 'submitted', 'listed', 1);",
        )
        .expect("v1 rows");
        migrate(&db, SCHEMA).expect("upgrade");
        assert_eq!(count(&db, "PRAGMA user_version"), SCHEMA.len() as i64);
        assert_eq!(
            count(&db, "SELECT count(*) FROM sm_meta WHERE key = 'kept'"),
            1
        );
        // Version 4: the history now hangs off the listing's seq, in the same order; the
        // listing indexed by the old trigger is still found.
        let history: Vec<(i64, i64, String)> = db
            .prepare(
                "SELECT listing_seq, seq, action FROM listing_history ORDER BY listing_seq, seq",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .expect("history");
        assert_eq!(
            history,
            [(7, 1, "submit".to_owned()), (7, 2, "approve".to_owned())]
        );
        // Version 22: the row is numbered on the listing clock for the search index.
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM listing_changes WHERE seq = 7 AND change = 7"
            ),
            1
        );
        assert_eq!(count(&db, "SELECT n FROM listing_clock"), 7);
        for table in ["outbox", "announcements", "recognitions", "revocations"] {
            assert_eq!(count(&db, &format!("SELECT count(*) FROM {table}")), 0);
        }
        // A file from a newer xchg is refused, not touched.
        let too_new = &[SCHEMA, &["SELECT 1;"]].concat();
        migrate(&db, too_new).expect("newer");
        assert!(matches!(
            migrate(&db, SCHEMA),
            Err(MigrateError::TooNew { .. })
        ));
    }

    /// Version 23 packs listing bodies and drops columns the body holds: a listing written
    /// before it (plain canonical bytes, a stored content id) reads the same after, its
    /// content id computed from the bytes, and is packed when next written.
    #[test]
    fn a_listing_written_before_v23_reads_the_same_after_and_is_packed_when_written() {
        use crate::catalog::tables::listings;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = rusqlite::Connection::open(dir.path().join("catalog.db")).expect("open");
        migrate(&db, &SCHEMA[..22]).expect("v22");
        let listing = xchg_protocol::Listing::first_version(
            xchg_protocol::vectors::credit_draft(),
            test_zone().zone,
            xchg_protocol::Timestamp(1),
        );
        let bytes = listing.canonical_bytes();
        let id = listing.id().to_string();
        db.execute(
            "INSERT INTO listings (seq, id, version, content_id, state, origin, submitted_by,
                provider_id, category, classification, delivery_modes, created_at, updated_at,
                body)
             VALUES (3, ?1, 1, ?1, 'listed', 'xuchang/yuzhou', 'p1', 'p', 'credit', 'general',
                ',api,', 1, 1, ?2)",
            rusqlite::params![id, bytes],
        )
        .expect("v22 row");
        db.execute(
            "INSERT INTO listing_history (listing_seq, listing_id, seq, raft_index, at, actor,
                role, action, from_state, to_state, version)
             VALUES (3, ?1, 1, 5, 1, 'p1', 'provider', 'submit', NULL, 'submitted', 1)",
            [&id],
        )
        .expect("v22 history");
        migrate(&db, SCHEMA).expect("upgrade");
        for (table, column) in [
            ("listings", "content_id"),
            ("listings", "delivery_modes"),
            ("listings", "created_at"),
            ("listings", "updated_at"),
            ("listing_history", "listing_id"),
        ] {
            let sql = format!(
                "SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"
            );
            assert_eq!(count(&db, &sql), 0, "{table}.{column} dropped");
        }
        let current = listings::current(&db, &id).expect("read").expect("held");
        assert_eq!(current.listing, listing);
        assert_eq!(current.state, ListingState::Listed);
        let owner = listings::owner(&db, &id).expect("read").expect("held");
        assert_eq!(
            owner.content_id, id,
            "version 1: the content id is the listing id"
        );
        // A later write packs the body; the listing and its history read as before.
        listings::write(&db, &listing, ListingState::Listed, "p1").expect("write");
        let body: Vec<u8> = db
            .query_row("SELECT body FROM listings WHERE seq = 3", [], |r| r.get(0))
            .expect("body");
        assert_eq!(body[0], 0x01, "packed");
        assert!(body.len() < bytes.len(), "{} < {}", body.len(), bytes.len());
        let again = listings::current(&db, &id).expect("read").expect("held");
        assert_eq!(again.listing, listing);
        listings::note_latest_history(&db, &id, "{\"note\":1}").expect("note");
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM listing_history WHERE listing_seq = 3 AND detail IS NOT NULL"
            ),
            1,
            "the history entry is found by the listing's seq"
        );
    }
}
