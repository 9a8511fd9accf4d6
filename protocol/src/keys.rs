//! Ed25519 keys, signatures and the domain tags that keep one kind of signature from being
//! replayed as another.
//!
//! Every signature covers `domain tag || canonical CBOR bytes`. Tags are distinct ASCII strings
//! ending in a NUL byte, so that no tag is a prefix of another's signing input. Verification uses
//! `verify_strict` and refuses weak (small-order) public keys and non-canonical key encodings.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a signature is for. The tag is prepended to the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A root key delegating to a node key.
    Delegation,
    /// A node announcing a listing version.
    Listing,
    /// A node announcing a delisting.
    Delisting,
    /// A root key revoking a node key.
    Revocation,
    /// A node issuing a registration certificate.
    Certificate,
    /// A node of the issuing zone revoking one of its registration certificates.
    CertificateRevocation,
    /// A node forwarding a buyer's application to the listing's origin exchange.
    ApplicationRequest,
    /// A node of the origin zone answering a forwarded application.
    ApplicationDecision,
    /// A node of an origin zone listing its decisions on one listing and scenario.
    ApplicationPrecedents,
    /// A node of a zone stating the size and root of its zone's audit log.
    TreeHead,
    /// A node of an origin zone sharing one of its buyers' demands.
    Demand,
}

impl Domain {
    /// The tag bytes, NUL-terminated.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Domain::Delegation => b"xchg/v1/delegation\0",
            Domain::Listing => b"xchg/v1/listing\0",
            Domain::Delisting => b"xchg/v1/delisting\0",
            Domain::Revocation => b"xchg/v1/revocation\0",
            Domain::Certificate => b"xchg/v1/certificate\0",
            Domain::CertificateRevocation => b"xchg/v1/certificate-revocation\0",
            Domain::ApplicationRequest => b"xchg/v1/application-request\0",
            Domain::ApplicationDecision => b"xchg/v1/application-decision\0",
            Domain::ApplicationPrecedents => b"xchg/v1/application-precedents\0",
            Domain::TreeHead => b"xchg/v1/tree-head\0",
            Domain::Demand => b"xchg/v1/demand\0",
        }
    }

    /// `tag || body`: exactly the bytes a signature covers.
    pub fn signing_input(self, body: &[u8]) -> Vec<u8> {
        let mut input = Vec::with_capacity(self.tag().len() + body.len());
        input.extend_from_slice(self.tag());
        input.extend_from_slice(body);
        input
    }
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 32 bytes, not lowercase hex, or not a valid curve point.
    #[error("not a valid ed25519 public key: {0}")]
    Invalid(String),
    /// A small-order key, for which signatures prove nothing.
    #[error("weak (small-order) ed25519 public key")]
    Weak,
    /// A valid point spelled in a second, non-canonical way (`y` at or above 2^255 - 19, or a
    /// negative zero `x`); the canonical spelling is the only one accepted.
    #[error("non-canonical encoding of an ed25519 public key")]
    NonCanonical,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// An ed25519 public key that has been checked to be a valid, non-weak point in its canonical
/// encoding.
///
/// CBOR: a 32-byte byte string. JSON: 64 lowercase hex digits. Config files use base64
/// ([`PublicKey::to_base64`]).
///
/// Only the 32 bytes are kept (the point is decompressed again to verify): that keeps trust
/// stores and errors that name a key small, and because the encoding is canonical, comparing
/// bytes is comparing keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Checks and wraps 32 bytes.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] for a non-point, [`KeyError::Weak`] for a small-order point,
    /// [`KeyError::NonCanonical`] for a second spelling of a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|e| KeyError::Invalid(e.to_string()))?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        // Decompression reduces `y` modulo p and accepts a negative zero `x`, so a few points
        // have two spellings; re-compressing the point gives the one canonical spelling. Two
        // spellings of one key would give one node two peer ids and two trust-store entries.
        if VerifyingKey::from(key.to_edwards()).as_bytes() != bytes {
            return Err(KeyError::NonCanonical);
        }
        Ok(PublicKey(*bytes))
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 with padding, the form used in config files.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.as_bytes())
    }

    /// Parses the base64 form used in config files.
    ///
    /// # Errors
    /// A message saying what is wrong (not base64, not 32 bytes, not a point, weak).
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| KeyError::Invalid(format!("not base64 ({e})")))?;
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| {
            KeyError::Invalid(format!("{} bytes of base64, expected 32", raw.len()))
        })?;
        Self::from_bytes(&bytes)
    }

    /// Verifies `signature` over `domain tag || body` with `verify_strict`.
    ///
    /// # Errors
    /// [`KeyError::BadSignature`].
    pub fn verify(
        &self,
        domain: Domain,
        body: &[u8],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        // Cannot fail: the bytes were checked to be a point when this key was made.
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadSignature)?;
        key.verify_strict(&domain.signing_input(body), &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The libp2p peer id of this key, in its base58 text form (`12D3KooW…`).
    ///
    /// A libp2p ed25519 peer id is the identity multihash (code 0x00, length 36) of the protobuf
    /// `PublicKey { Type = Ed25519 (1), Data = key }`, i.e. `00 24 08 01 12 20 || key`.
    pub fn peer_id(&self) -> String {
        let mut raw = Vec::with_capacity(38);
        raw.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        raw.extend_from_slice(self.as_bytes());
        bs58::encode(raw).into_string()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.as_bytes()))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    /// Parses 64 lowercase hex digits, the same form the JSON decoding accepts.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let expected = || KeyError::Invalid("expected 64 lowercase hex digits".into());
        if s.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(expected());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| expected())?;
        Self::from_bytes(&bytes)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::bytes::serialize_bytes(self.as_bytes(), s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = crate::bytes::deserialize_array::<D, 32>(d)?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature: a 64-byte byte string in CBOR, hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::bytes::serialize_bytes(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::bytes::deserialize_array::<D, 64>(d).map(Signature)
    }
}

/// A signing key: a node key or an exchange root key.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// From a 32-byte seed (the secret-key file format).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair(SigningKey::from_bytes(seed))
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Keypair(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The 32-byte seed, for writing the secret-key file.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `domain tag || body`.
    pub fn sign(&self, domain: Domain, body: &[u8]) -> Signature {
        Signature(self.0.sign(&domain.signing_input(body)).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair(public {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_for_one_domain_does_not_verify_in_another() {
        let key = Keypair::from_seed(&[7; 32]);
        let sig = key.sign(Domain::Listing, b"body");
        key.public()
            .verify(Domain::Listing, b"body", &sig)
            .expect("same domain verifies");
        assert_eq!(
            key.public().verify(Domain::Delisting, b"body", &sig),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::Weak));
    }

    #[test]
    fn a_second_spelling_of_a_valid_key_is_refused_as_non_canonical() {
        // y = 3 is the y-coordinate of a curve point that is not of small order. Its canonical
        // spelling is 3 in little-endian; y + p = 2^255 - 16 decompresses to the same point
        // because decompression reduces y modulo p = 2^255 - 19.
        let mut canonical = [0u8; 32];
        canonical[0] = 3;
        PublicKey::from_bytes(&canonical).expect("y = 3 is a valid, non-weak key");
        let mut y_plus_p = [0xff; 32];
        y_plus_p[0] = 0xf0;
        y_plus_p[31] = 0x7f;
        VerifyingKey::from_bytes(&y_plus_p).expect("ed25519-dalek itself accepts y + p");
        assert_eq!(
            PublicKey::from_bytes(&y_plus_p),
            Err(KeyError::NonCanonical)
        );
        assert!(
            PublicKey::from_base64(&base64::engine::general_purpose::STANDARD.encode(y_plus_p))
                .is_err()
        );
        assert!(hex::encode(y_plus_p).parse::<PublicKey>().is_err());
    }

    #[test]
    fn the_text_form_is_lowercase_hex_only_like_the_json_form() {
        let key = Keypair::from_seed(&[0x11; 32]).public();
        let lower = key.to_string();
        assert_eq!(lower.parse::<PublicKey>(), Ok(key));
        assert!(lower.to_uppercase().parse::<PublicKey>().is_err());
        let letter = lower
            .find(|c: char| c.is_ascii_lowercase())
            .expect("a hex letter");
        let mixed = format!(
            "{}{}{}",
            &lower[..letter],
            lower[letter..=letter].to_uppercase(),
            &lower[letter + 1..]
        );
        assert!(
            mixed.parse::<PublicKey>().is_err(),
            "one uppercase digit is enough to refuse"
        );
        let json = format!("\"{}\"", lower.to_uppercase());
        assert!(
            serde_json::from_str::<PublicKey>(&json).is_err(),
            "JSON refuses it too"
        );
    }

    #[test]
    fn peer_ids_match_an_independent_base58_computation() {
        // Expected values computed outside this crate, with a few lines of python3 that build
        // 00 24 08 01 12 20 || key, read those 38 bytes as a big-endian integer, write it in
        // base 58 with the Bitcoin alphabet (123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmno
        // pqrstuvwxyz) and prepend one '1' per leading zero byte (here one, for the 00).
        let root = Keypair::from_seed(&[0x11; 32]).public();
        assert_eq!(
            root.peer_id(),
            "12D3KooWPqT2nMDSiXUSx5D7fasaxhxKigVhcqfkKqrLghCq9jxz"
        );
        let node = Keypair::from_seed(&[0x22; 32]).public();
        assert_eq!(
            node.peer_id(),
            "12D3KooWLdJAwPtyQ5RFnr9wGXsQzpf3P2SeqFbYkqbfVehLu4Ns"
        );
    }

    #[test]
    fn no_domain_tag_is_a_prefix_of_another() {
        let all = [
            Domain::Delegation,
            Domain::Listing,
            Domain::Delisting,
            Domain::Revocation,
            Domain::Certificate,
            Domain::CertificateRevocation,
            Domain::ApplicationRequest,
            Domain::ApplicationDecision,
            Domain::ApplicationPrecedents,
            Domain::TreeHead,
            Domain::Demand,
        ];
        for a in all {
            for b in all {
                if a != b {
                    assert!(!b.tag().starts_with(a.tag()), "{a:?} prefixes {b:?}");
                }
            }
        }
    }

    #[test]
    fn base64_form_round_trips_and_names_the_wrong_length() {
        let key = Keypair::from_seed(&[9; 32]).public();
        assert_eq!(PublicKey::from_base64(&key.to_base64()), Ok(key));
        let err = PublicKey::from_base64("AAAA").expect_err("short key");
        assert!(
            err.to_string().contains("3 bytes of base64, expected 32"),
            "{err}"
        );
    }
}
