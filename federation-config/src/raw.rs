//! The configuration file as written: serde structs that mirror the TOML, schema version 1.
//!
//! Everything that has a richer type later (ids, keys, addresses, classifications, roles) is kept
//! as a `String` here, so that a bad value becomes a validation violation with its TOML path
//! instead of a serde error that stops at the first problem. Only the shape of the file (tables,
//! field names, TOML types) is checked at this step. The layout generator writes files through
//! these same structs, so what it writes is exactly what the reader expects.

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Schema version; this crate reads version 1 only.
    pub version: i64,
    /// This node: its name, key and data directory.
    pub node: RawNode,
    /// Where this node listens.
    pub listen: RawListen,
    /// The exchange this node belongs to.
    pub exchange: RawExchange,
    /// The zone this node belongs to, with every member.
    pub zone: RawZone,
    /// Raft timing and log compaction; every field has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RawRaft>,
    /// What may leave the zone; every field has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<RawExport>,
    /// What this node recognises from the other zones of its own exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sibling_agreement: Option<RawAgreement>,
    /// Where gossip starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip: Option<RawGossip>,
    /// Outside exchanges under a mutual-recognition agreement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside: Vec<RawOutside>,
    /// HTTP API settings and the zone's initial role tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<RawApi>,
    /// The zone's founding parties: admitted from the zone's start, without an application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<RawParty>,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// This node's name; must be one of `zone.members`.
    pub name: String,
    /// File holding the node's ed25519 seed as 64 lowercase hex digits (mode 0600), relative to
    /// the config file's directory.
    pub key_file: String,
    /// Directory for the node's database and state, relative to the config file's directory.
    pub data_dir: String,
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// HTTP API socket address, e.g. `127.0.0.1:7100`.
    pub api: String,
    /// Raft RPC socket address (mutual TLS); the zone reaches this node at its member address.
    pub raft: String,
    /// libp2p listen multiaddr, e.g. `/ip4/127.0.0.1/tcp/7102`.
    pub p2p: String,
}

/// `[exchange]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    /// Exchange id, e.g. `xuchang`.
    pub id: String,
    /// Name shown to people, e.g. `许昌数据交易中心`.
    pub display_name: String,
    /// The exchange root key that signs node delegations, standard base64 of 32 bytes.
    pub root_public_key: String,
}

/// `[zone]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Zone id, `<exchange>/<zone>`, e.g. `xuchang/yuzhou`.
    pub id: String,
    /// Name shown to people, e.g. `禹州市`.
    pub display_name: String,
    /// This node's delegation from the exchange root: hex of the signed delegation's canonical CBOR.
    pub delegation: String,
    /// Every node of the zone, this one included: the Raft membership.
    #[serde(default)]
    pub members: Vec<RawMember>,
}

/// `[[zone.members]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    /// The member's node name.
    pub name: String,
    /// Socket address of the member's Raft RPC listener.
    pub raft_addr: String,
    /// Base URL of the member's HTTP API, used to forward writes to the leader.
    pub api_url: String,
    /// The member's node key, standard base64 of 32 bytes; pinned for mutual TLS.
    pub public_key: String,
}

/// `[raft]`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRaft {
    /// Leader heartbeat interval in milliseconds (default 250).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// Lower bound of the randomised election timeout in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_min_ms: Option<u64>,
    /// Upper bound of the randomised election timeout in milliseconds (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after at least this many applied entries (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_every_entries: Option<u64>,
    /// …and once the log written since the last snapshot is at least this percentage of the
    /// catalog's size, or 1 GiB (default 50; 0: on the entry count alone; at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_log_percent: Option<u64>,
    /// Log entries kept behind a snapshot before they are purged (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_log_entries: Option<u64>,
}

/// `[export]`: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// Highest classification that may leave the zone: `public` or `general` (default `general`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<String>,
    /// Personal-information products: `in_domain_only` (default) or `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_info: Option<String>,
}

/// A recognition agreement: `[sibling_agreement]` (fields optional) or `[outside.agreement]`
/// (fields required; validation reports the missing ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgreement {
    /// `["*"]` for every category, else category names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Highest classification recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_classification: Option<String>,
    /// `["*"]` for every delivery mode, else delivery mode names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_modes: Option<Vec<String>>,
    /// Whether only listings for whose version the zone holds a valid registration certificate
    /// from their origin zone are recognised (PROTOCOL.md 10.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_registration: Option<bool>,
}

/// `[gossip]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGossip {
    /// Multiaddrs dialled at start, ideally ending in `/p2p/<peer id>`; may be empty.
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

/// `[[outside]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutside {
    /// The outside exchange's id; must differ from this node's exchange.
    pub id: String,
    /// Name shown to people.
    pub display_name: String,
    /// The outside exchange's root key, standard base64 of 32 bytes.
    pub root_public_key: String,
    /// Multiaddrs of some of its nodes.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// What this node recognises from that exchange; every term must be stated.
    pub agreement: RawAgreement,
}

/// `[api]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Largest accepted request body in bytes (default 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Most HTTP connections open at once; more are answered 503 and closed (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Milliseconds a client has to send a request's head (request line and headers) once the
    /// node waits for it: after connecting, or from its first byte on a kept-alive connection
    /// (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a kept-alive connection may wait for its next request (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Milliseconds one request may take from its head to its answer, its body included
    /// (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// PEM file with the API's TLS certificate chain (this node's certificate first), relative
    /// to the config file's directory. With `tls_key`, the API is served over HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// PEM file with the private key of `tls_cert` (PKCS#8, SEC1 or PKCS#1), relative to the
    /// config file's directory; mode 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
    /// PEM file with the certificate authorities this node trusts when it calls other nodes'
    /// APIs over HTTPS (the federation overview), relative to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Serve plain HTTP on an address other than loopback (default false: such a node refuses
    /// to start, because bearer tokens would cross the network in clear text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plain_http: Option<bool>,
    /// The zone's initial role tokens, as hashes.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// `[[api.tokens]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// `admin`, `operator`, `provider`, `buyer` or `regulator`.
    pub role: String,
    /// SHA-256 of the token text, 64 lowercase hex digits; the token itself is never stored.
    pub sha256: String,
    /// The party the token acts for (a listing's `provider.id`, e.g. `yuzhou-credit-center`);
    /// required for `provider` and `buyer` tokens: a provider token submits and updates only
    /// that party's listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<String>,
}

/// `[[parties]]`: a founding party of the zone, admitted by the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParty {
    /// Party id, e.g. `yuzhou-credit-center`.
    pub id: String,
    /// Legal name, e.g. `禹州市信用中心`.
    pub name: String,
    /// Unified social credit code, 18 characters.
    pub credit_code: String,
    /// Kinds of participant, e.g. `["resource_holder"]`.
    pub kinds: Vec<String>,
    /// Whom to reach.
    pub contact: RawContact,
}

/// `parties[].contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContact {
    /// Contact person or desk.
    pub name: String,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}
