//! xchg-protocol: the domain and wire types of the xchg federated data-product exchange.
//!
//! Everything here is pure: no IO, no async runtime, no storage. Another exchange can implement
//! a compatible peer from `PROTOCOL.md` and the test vectors in `test-vectors/`; this crate is
//! the reference those documents point at.
//!
//! - [`canonical`]: deterministic CBOR encoding and bounded decoding of untrusted bytes.
//! - [`ids`]: exchange, zone, node and party identifiers; content ids.
//! - [`keys`]: ed25519 keys, signatures and domain tags.
//! - [`listing`]: listings and their validation rules; [`text`]: the rule of their free text.
//! - [`party`]: market participants' credit codes (GB 32100) and kinds.
//! - [`announcement`]: delegations, signed announcements, offline verification.
//! - [`certificate`]: registration certificates and their offline verification;
//!   [`certificate_revocation`]: their revocation by the issuing zone.
//! - [`application`]: applications forwarded across exchanges and the origin's decisions.
//! - [`demand`]: buyers' demands shared with partner exchanges.

mod bytes;

pub mod announcement;
pub mod application;
pub mod application_vectors;
pub mod canonical;
pub mod catchup;
pub mod certificate;
pub mod certificate_revocation;
pub mod certificate_vectors;
pub mod demand;
pub mod demand_vectors;
pub mod ids;
pub mod keys;
pub mod listing;
pub mod merkle;
#[cfg(feature = "openapi")]
mod openapi;
pub mod party;
pub mod precedents;
pub mod precedents_vectors;
pub mod text;
pub mod time;
pub mod tree_head;
pub mod tree_head_vectors;
pub mod vectors;

pub use announcement::{
    AnnouncementKind, Body, Delegation, Delisting, Envelope, Revocation, SignedDelegation,
    TrustStore, Verified, VerifyError, verify,
};
pub use application::{
    ApplicationDecision, ApplicationRequest, Granted, Outcome, SignedMessage, VerifiedDecision,
    VerifiedRequest, verify_decision, verify_request,
};
pub use canonical::{DecodeError, Limits};
pub use certificate::{
    Certificate, SignedCertificate, Source, VerifiedCertificate, verify_certificate,
};
pub use ids::{ContentId, ExchangeId, IdError, NodeName, PartyId, ZoneId};
pub use keys::{Domain, KeyError, Keypair, PublicKey, Signature};
pub use listing::{
    Classification, DeliveryMode, FieldError, Listing, ListingDraft, Pricing, PricingModel,
    ProductForm, Provider, RegistrationRef, Right, UpdateFrequency, ValidationError,
};
pub use party::{Contact, CreditCode, CreditCodeError, PartyKind, PartyProfile};
pub use time::Timestamp;
