//! How a listing's canonical bytes are kept in `listings.body` (catalog schema v23): packed
//! with zstd against a fixed dictionary of the listing format's own words, its field names and
//! the names of its enumerated values. A canonical listing is a CBOR map, and most of its
//! bytes that are not free text are those names; the free text (Chinese, three bytes a
//! character in UTF-8) packs by a fifth or so on its own. Measured on the search benchmark's
//! listings: 589 bytes to about 350.
//!
//! A packed body is [`PACKED`] followed by one zstd frame. [`PACKED`] is a byte no canonical
//! listing starts with (a listing is a map: its first byte is 0xa0 to 0xbf), so a body written
//! before v23, plain, is read as it is. Packing is deterministic (same dictionary, same level,
//! same zstd), so every member writes the same bytes for the same listing, and the replicated
//! rows stay identical on every member (the simulations' zone-agreement check compares them);
//! the content id is always computed from the unpacked bytes.
//!
//! The dictionary must never change: a body packed with it is read with it. Another one would
//! take another leading byte. A test pins its hash.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::LazyLock;

use xchg_protocol::canonical::DEFAULT_MAX_SIZE;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The first byte of a packed body: zstd, dictionary 1.
const PACKED: u8 = 0x01;

/// zstd's level: 3 (its default) packs about 1 % better than 1 for the same time at this size.
const LEVEL: i32 = 3;

/// Dictionary 1: the listing format's field names (the order of a canonical listing: shorter
/// keys first) and the names of its enumerated values, each as the CBOR text string it is in a
/// canonical listing. Frozen: see the module's documentation.
const WORDS: &[&str] = &[
    "id",
    "name",
    "model",
    "title",
    "amount",
    "issuer",
    "origin",
    "rights",
    "pricing",
    "version",
    "category",
    "currency",
    "keywords",
    "provider",
    "scenarios",
    "created_at",
    "listing_id",
    "updated_at",
    "description",
    "product_form",
    "registration",
    "certificate_id",
    "classification",
    "delivery_modes",
    "spatial_coverage",
    "update_frequency",
    "temporal_coverage",
    "contains_personal_info",
    "public",
    "general",
    "important",
    "core",
    "dataset",
    "api",
    "report",
    "verification",
    "algorithm",
    "file",
    "sandbox",
    "privacy_computing",
    "model_output",
    "holding",
    "processing_use",
    "operating",
    "realtime",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
    "irregular",
    "static",
    "free",
    "fixed",
    "per_call",
    "subscription",
    "negotiated",
    "CNY",
];

/// Dictionary 1's bytes: each word as a CBOR text string (a one-byte header: all are shorter
/// than 24 bytes), one after the other.
fn dictionary() -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in WORDS {
        let len = u8::try_from(word.len()).unwrap_or(u8::MAX);
        debug_assert!(len < 24, "a dictionary word of one-byte CBOR length");
        bytes.push(0x60 | len);
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes
}

static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(dictionary);
static ENCODER: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(&DICTIONARY, LEVEL));
static DECODER: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(&DICTIONARY));

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `canonical` packed for `listings.body`: [`PACKED`] and the frame, or the plain bytes when
/// packing would not make them smaller (the same choice on every member).
///
/// # Errors
/// zstd's, which it gives only when it cannot allocate its context. Not papered over with the
/// plain bytes: that member's row would then differ from the others'.
pub fn pack(canonical: &[u8]) -> std::io::Result<Vec<u8>> {
    let frame = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(compressor) => compressor,
            empty => empty.insert(Compressor::with_prepared_dictionary(&ENCODER)?),
        };
        compressor.compress(canonical)
    })?;
    if 1 + frame.len() >= canonical.len() {
        return Ok(canonical.to_vec());
    }
    let mut out = Vec::with_capacity(1 + frame.len());
    out.push(PACKED);
    out.extend_from_slice(&frame);
    Ok(out)
}

/// The canonical bytes of a stored body: unpacked if packed, else the body itself. At most
/// [`DEFAULT_MAX_SIZE`] bytes come out (the largest canonical message; a listing is far
/// smaller), whatever the frame claims.
///
/// # Errors
/// A packed body that zstd does not unpack with dictionary 1 within that size.
pub fn unpack(stored: &[u8]) -> std::io::Result<Cow<'_, [u8]>> {
    let Some((&PACKED, frame)) = stored.split_first() else {
        return Ok(Cow::Borrowed(stored));
    };
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            empty => empty.insert(Decompressor::with_prepared_dictionary(&DECODER)?),
        };
        decompressor
            .decompress(frame, DEFAULT_MAX_SIZE)
            .map(Cow::Owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    /// Bodies packed with dictionary 1 are read with it for as long as they are stored: the
    /// dictionary's bytes must not change (a new dictionary takes a new leading byte).
    #[test]
    fn dictionary_one_is_frozen() {
        let hash = hex::encode(Sha256::digest(dictionary()));
        assert_eq!(
            hash, "709ef911548b8e4f91e948398fe50614c08fe99bcfffffe1641fcdf2069c05bd",
            "dictionary 1 changed: bodies already packed with it would no longer unpack"
        );
    }

    fn listing_bytes() -> Vec<u8> {
        let zone = crate::catalog::test_zone().zone;
        xchg_protocol::Listing::first_version(
            xchg_protocol::vectors::credit_draft(),
            zone,
            xchg_protocol::Timestamp(1),
        )
        .canonical_bytes()
    }

    #[test]
    fn a_listing_packs_smaller_and_unpacks_to_its_bytes() {
        let plain = listing_bytes();
        let packed = pack(&plain).expect("packs");
        assert_eq!(packed[0], PACKED);
        assert!(
            packed.len() < plain.len() * 3 / 4,
            "{} of {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(unpack(&packed).expect("unpacks").as_ref(), plain.as_slice());
        assert_eq!(
            pack(&plain).expect("packs"),
            packed,
            "packing is deterministic"
        );
        assert_eq!(
            pack(b"\xa0").expect("packs"),
            b"\xa0",
            "kept plain when not smaller"
        );
    }

    /// Bodies written before schema v23 are the canonical bytes themselves.
    #[test]
    fn a_plain_body_reads_as_it_is() {
        let plain = listing_bytes();
        assert!(matches!(unpack(&plain), Ok(Cow::Borrowed(b)) if b == plain.as_slice()));
        assert!(matches!(unpack(&[]), Ok(Cow::Borrowed(&[]))));
    }

    #[test]
    fn a_damaged_or_oversized_body_is_an_error_not_a_panic() {
        let mut packed = pack(&listing_bytes()).expect("packs");
        let at = packed.len() / 2;
        packed.truncate(at);
        assert!(unpack(&packed).is_err(), "a truncated frame");
        assert!(unpack(&[PACKED, 1, 2, 3]).is_err(), "not a frame");
        // A frame that unpacks to more than the cap: refused, not allocated.
        let big = vec![b'a'; DEFAULT_MAX_SIZE + 1];
        let bomb = pack(&big).expect("packs");
        assert_eq!(bomb[0], PACKED);
        assert!(bomb.len() < 1_000, "{}", bomb.len());
        assert!(unpack(&bomb).is_err(), "more than the cap");
    }
}
