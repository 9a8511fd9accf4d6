//! The tree-head and Merkle-proof test vectors (PROTOCOL.md 12):
//! `protocol/test-vectors/tree-heads/*.json`, heads of the audit log of `zhengzhou/zhongyuan`
//! signed by the node key of [`crate::application_vectors`], and
//! `protocol/test-vectors/merkle/tree-7.json`, a tree of seven leaves with its roots and every
//! inclusion and consistency proof. A test rebuilds them and compares the bytes, so the files
//! never drift from the code.

use serde::Serialize;

use crate::application::SignedMessage;
use crate::application_vectors::{TrustedRoot, origin_delegation, origin_node, origin_root};
use crate::canonical::{DEFAULT_MAX_DEPTH, to_canonical};
use crate::ids::{ContentId, ZoneId};
use crate::keys::{Domain, Keypair};
use crate::merkle::{MemoryTree, leaf_hash};
use crate::time::Timestamp;
use crate::tree_head::{MAX_TREE_HEAD_BYTES, TreeHead, sign};
use crate::vectors::NOW;

/// One tree-head vector, as stored in `test-vectors/tree-heads/<name>.json`. Byte fields are
/// lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct TreeHeadVector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// The roots the verifier trusts.
    pub trust: Vec<TrustedRoot>,
    /// The zone the verifier expects a head of.
    pub zone: String,
    /// **The input**: the signed head.
    pub head: String,
    /// Its body, as carried.
    pub body: String,
    /// Its id, as carried, in text form.
    pub id: String,
    /// Exactly the bytes its signature covers: a domain tag followed by the body as signed.
    pub signing_input: String,
    /// The verifier's clock, in milliseconds since the Unix epoch.
    pub now: u64,
    /// The size cap the verifier applies, in bytes ([`MAX_TREE_HEAD_BYTES`]).
    pub max_size: usize,
    /// The nesting cap the verifier applies.
    pub max_depth: usize,
    /// Whether verification succeeds.
    pub valid: bool,
    /// When invalid, the error kind (`VerifyError::kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An inclusion proof of the tree vector.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionVector {
    /// Leaf index, from 0.
    pub index: u64,
    /// Tree size.
    pub size: u64,
    /// The path, from the leaf upward.
    pub audit_path: Vec<String>,
}

/// A consistency proof of the tree vector.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyVector {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The proof.
    pub proof: Vec<String>,
}

/// The Merkle tree vector, `test-vectors/merkle/tree-7.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TreeVector {
    /// File name without `.json`.
    pub name: String,
    /// What it holds.
    pub description: String,
    /// The leaves' data (the record bytes), in order.
    pub leaves: Vec<String>,
    /// `SHA-256(0x00 ‖ leaf)` of each.
    pub leaf_hashes: Vec<String>,
    /// The root of the first `n` leaves, for `n` from 0 to 7.
    pub roots: Vec<String>,
    /// Every inclusion proof: each index of each size from 1 to 7.
    pub inclusion: Vec<InclusionVector>,
    /// Every consistency proof: each `from <= to` from 0 to 7.
    pub consistency: Vec<ConsistencyVector>,
}

const ZONE: &str = "zhengzhou/zhongyuan";
const SIZE: u64 = 7;

fn zone(id: &str) -> ZoneId {
    id.parse().expect("a valid zone literal")
}

/// The leaves' data of the vectors: `audit record 0` to `audit record 6`.
pub fn leaves() -> Vec<Vec<u8>> {
    (0..SIZE)
        .map(|i| format!("audit record {i}").into_bytes())
        .collect()
}

/// The tree of [`leaves`].
pub fn tree() -> MemoryTree {
    MemoryTree::new(leaves().iter().map(|d| leaf_hash(d)))
}

/// The head of the vectors: the tree of seven leaves, a minute before [`NOW`].
pub fn head() -> TreeHead {
    TreeHead {
        zone: zone(ZONE),
        size: SIZE,
        root_hash: tree().root(SIZE),
        timestamp: Timestamp(NOW.0 - 60_000),
    }
}

fn trust() -> Vec<TrustedRoot> {
    vec![TrustedRoot {
        exchange: "zhengzhou".into(),
        root_public_key: origin_root().public().to_string(),
    }]
}

fn vector(
    name: &str,
    description: &str,
    signed: &SignedMessage,
    signed_over: (Domain, &[u8]),
    asked: &str,
    error: Option<&str>,
) -> TreeHeadVector {
    TreeHeadVector {
        name: name.into(),
        description: description.into(),
        trust: trust(),
        zone: asked.into(),
        head: hex::encode(signed.to_bytes()),
        body: hex::encode(&signed.body),
        id: signed.id.to_string(),
        signing_input: hex::encode(signed_over.0.signing_input(signed_over.1)),
        now: NOW.0,
        max_size: MAX_TREE_HEAD_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

/// Every tree-head vector, in a fixed order.
pub fn all() -> Vec<TreeHeadVector> {
    let delegation = || origin_delegation(ZONE);
    let valid = sign(&head(), &origin_node(), delegation());
    let mut out = Vec::new();
    out.push(vector(
        "tree-head-valid",
        "a node of zhengzhou/zhongyuan signs the head of its audit log of seven records (the \
         tree of test-vectors/merkle/tree-7.json), a minute before now",
        &valid,
        (Domain::TreeHead, &valid.body),
        ZONE,
        None,
    ));

    let mut tampered = valid.clone();
    let mut shorter = head();
    shorter.size = 6;
    shorter.root_hash = tree().root(6);
    tampered.body = to_canonical(&shorter).expect("encodes");
    tampered.id = ContentId::of(&tampered.body);
    out.push(vector(
        "tree-head-invalid-tampered",
        "the size and root replaced by those of the first six records after signing, id \
         recomputed",
        &tampered,
        (Domain::TreeHead, &valid.body),
        ZONE,
        Some("bad_signature"),
    ));

    let body = to_canonical(&head()).expect("encodes");
    let wrong_domain = SignedMessage::seal(
        Domain::ApplicationPrecedents,
        body.clone(),
        &origin_node(),
        delegation(),
    );
    out.push(vector(
        "tree-head-invalid-wrong-domain",
        "the head's body signed under the application-precedents tag",
        &wrong_domain,
        (Domain::ApplicationPrecedents, &body),
        ZONE,
        Some("bad_signature"),
    ));

    out.push(vector(
        "tree-head-invalid-wrong-zone",
        "a valid head of zhengzhou/zhongyuan, offered as the head of zhengzhou/erqi",
        &valid,
        (Domain::TreeHead, &valid.body),
        "zhengzhou/erqi",
        Some("not_asked"),
    ));

    let other_zone = sign(&head(), &origin_node(), origin_delegation("zhengzhou/erqi"));
    out.push(vector(
        "tree-head-invalid-wrong-origin",
        "a zhengzhou/erqi node, validly delegated, signs a head of zhengzhou/zhongyuan",
        &other_zone,
        (Domain::TreeHead, &other_zone.body),
        ZONE,
        Some("wrong_origin"),
    ));

    let stranger = Keypair::from_seed(&[0x66; 32]);
    let mut forged_delegation = delegation();
    forged_delegation = crate::SignedDelegation::sign(forged_delegation.delegation, &stranger);
    let forged = sign(&head(), &origin_node(), forged_delegation);
    out.push(vector(
        "tree-head-invalid-untrusted-root",
        "the node's delegation signed by a key that is not zhengzhou's root",
        &forged,
        (Domain::TreeHead, &forged.body),
        ZONE,
        Some("untrusted_root"),
    ));

    let mut later = head();
    later.timestamp = NOW.plus_millis(3_600_000);
    let future = sign(&later, &origin_node(), delegation());
    out.push(vector(
        "tree-head-invalid-from-the-future",
        "a head stamped an hour after now",
        &future,
        (Domain::TreeHead, &future.body),
        ZONE,
        Some("from_the_future"),
    ));
    out
}

/// The Merkle tree vector.
pub fn tree_vector() -> TreeVector {
    let t = tree();
    let hex_all = |v: Vec<[u8; 32]>| v.iter().map(hex::encode).collect::<Vec<_>>();
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for size in 1..=SIZE {
        for index in 0..size {
            inclusion.push(InclusionVector {
                index,
                size,
                audit_path: hex_all(t.inclusion(index, size)),
            });
        }
    }
    for to in 0..=SIZE {
        for from in 0..=to {
            consistency.push(ConsistencyVector {
                from,
                to,
                proof: hex_all(t.consistency(from, to)),
            });
        }
    }
    TreeVector {
        name: "tree-7".into(),
        description: "seven leaves (the UTF-8 text `audit record 0` to `audit record 6`), the \
                      roots of their first 0 to 7, and every inclusion and consistency proof \
                      (RFC 9162 2.1)"
            .into(),
        leaves: leaves().iter().map(hex::encode).collect(),
        leaf_hashes: leaves().iter().map(|d| hex::encode(leaf_hash(d))).collect(),
        roots: (0..=SIZE).map(|n| hex::encode(t.root(n))).collect(),
        inclusion,
        consistency,
    }
}
