//! Serde helpers for fixed-size byte arrays: a CBOR byte string, or lowercase hex in JSON.

use serde::Deserializer;
use serde::de::{Error, Visitor};
use std::fmt;

struct ArrayVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        <[u8; N]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut out = [0u8; N];
        hex::decode_to_slice(v, &mut out)
            .map_err(|_| E::custom(format_args!("expected {} lowercase hex digits", 2 * N)))?;
        if v.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(E::custom("hex digits must be lowercase"));
        }
        Ok(out)
    }
}

/// Reads `N` bytes: a byte string from CBOR, a hex string from a human-readable format.
pub(crate) fn deserialize_array<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        d.deserialize_str(ArrayVisitor::<N>)
    } else {
        d.deserialize_bytes(ArrayVisitor::<N>)
    }
}

/// Writes bytes as a CBOR byte string, or hex in a human-readable format.
pub(crate) fn serialize_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(v))
    } else {
        s.serialize_bytes(v)
    }
}

/// A variable-length byte string field (`#[serde(with = "crate::bytes::buf")]`).
pub(crate) mod buf {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        super::serialize_bytes(v, s)
    }

    struct BufVisitor;

    impl Visitor<'_> for BufVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            hex::decode(v).map_err(|_| E::custom("expected lowercase hex"))
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BufVisitor)
        } else {
            d.deserialize_bytes(BufVisitor)
        }
    }
}
