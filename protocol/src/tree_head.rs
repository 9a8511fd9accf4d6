//! Signed tree heads (PROTOCOL.md 12.3): a node of a zone states the size and Merkle root of its
//! zone's audit log at a time, signed like the application messages (PROTOCOL.md 11.3) under
//! the tag `xchg/v1/tree-head\0`. The zone is part of what is signed, so a head of one zone
//! never passes for another's.

use serde::{Deserialize, Serialize};

use crate::announcement::{TrustStore, VerifyError};
use crate::application::{SignedMessage, Verified, check_authority, open};
use crate::canonical::{DEFAULT_MAX_DEPTH, Limits};
use crate::ids::ZoneId;
use crate::keys::{Domain, Keypair};
use crate::merkle::Hash;
use crate::time::Timestamp;

/// Largest accepted encoding of a signed tree head: 4 KiB (one is about 600 bytes).
pub const MAX_TREE_HEAD_BYTES: usize = 4 * 1024;

/// The limits a receiver applies to a signed tree head.
pub fn limits() -> Limits {
    Limits {
        max_size: MAX_TREE_HEAD_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
    }
}

/// What a head states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// The zone whose audit log it is: must be the zone of the signer's delegation.
    pub zone: ZoneId,
    /// Leaves (audit records) in the tree.
    pub size: u64,
    /// The tree's root (RFC 9162 2.1.1): a 32-byte string in CBOR, hex in JSON.
    #[serde(
        serialize_with = "crate::bytes::serialize_bytes",
        deserialize_with = "crate::bytes::deserialize_array"
    )]
    pub root_hash: Hash,
    /// When it was signed.
    pub timestamp: Timestamp,
}

/// Signs `head` as a node of its zone holding `key` under `delegation`.
pub fn sign(head: &TreeHead, key: &Keypair, delegation: crate::SignedDelegation) -> SignedMessage {
    let body = crate::canonical::to_canonical(head).unwrap_or_default();
    SignedMessage::seal(Domain::TreeHead, body, key, delegation)
}

/// Verifies a signed tree head offline as a head of `zone` (PROTOCOL.md 12.3): the steps 1 to
/// 6 of 11.4 with the tree-head tag and `timestamp` → `zone` is the signer's (`wrong_origin`)
/// and `timestamp` not in the future → it is a head of `zone` (`not_asked`).
///
/// # Errors
/// The first failed check, as a [`VerifyError`].
pub fn verify(
    bytes: &[u8],
    zone: &ZoneId,
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<Verified<TreeHead>, VerifyError> {
    let verified = open(
        bytes,
        Domain::TreeHead,
        |h: &TreeHead| h.timestamp,
        trust,
        limits,
    )?;
    let h = &verified.body;
    check_authority(&h.zone, h.timestamp, &verified.delegation, now)?;
    if h.zone != *zone {
        return Err(VerifyError::NotAsked {
            message: format!("the head is of {}, asked for {zone}", h.zone),
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application_vectors as av;
    use crate::vectors;

    fn head() -> TreeHead {
        TreeHead {
            zone: "zhengzhou/zhongyuan".parse().expect("zone"),
            size: 7,
            root_hash: [9; 32],
            timestamp: Timestamp(vectors::NOW.0 - 1000),
        }
    }

    #[test]
    fn a_head_encodes_its_keys_in_canonical_order_and_verifies_only_for_its_zone() {
        let body = crate::canonical::to_canonical(&head()).expect("encodes");
        assert_eq!(&body[..6], &[0xa4, 0x64, b's', b'i', b'z', b'e']);
        let signed = sign(
            &head(),
            &av::origin_node(),
            av::origin_delegation("zhengzhou/zhongyuan"),
        );
        let mut trust = TrustStore::default();
        trust.trust("zhengzhou".parse().expect("id"), av::origin_root().public());
        let zone = head().zone;
        let ok =
            verify(&signed.to_bytes(), &zone, &trust, vectors::NOW, &limits()).expect("verifies");
        assert_eq!(ok.body, head());
        let other: ZoneId = "zhengzhou/erqi".parse().expect("zone");
        let e = verify(&signed.to_bytes(), &other, &trust, vectors::NOW, &limits())
            .map(drop)
            .expect_err("refused");
        assert_eq!(e.kind(), "not_asked");
    }
}
