//! Deterministic CBOR (RFC 8949 §4.2.1) for every object xchg signs, hashes or sends.
//!
//! Encoding goes through cbor4ii's serde support and is then put into canonical form by
//! [`canonicalize`]: definite lengths, shortest argument encodings, map entries ordered by the
//! bytes of their encoded keys. Decoding untrusted bytes is done in three steps, so that no
//! attacker-chosen length ever sizes an allocation and no nesting can exhaust the stack:
//!
//! 1. the size is compared with [`Limits::max_size`] before anything is read;
//! 2. [`check_canonical`] walks the item without allocating, rejecting anything that is not
//!    already in canonical form, any declared length longer than the bytes that remain, tags,
//!    floats and simple values other than `false`, `true` and `null`, and nesting deeper than
//!    [`Limits::max_depth`];
//! 3. the bytes are decoded into the typed struct; anything that is not that struct is
//!    [`DecodeError::Shape`], including an unknown field in the types that declare
//!    `deny_unknown_fields` (every struct of the protocol);
//! 4. the struct is encoded again and must give back exactly the input. This catches what the
//!    typed decoding tolerates: an optional field written out although empty (`null`, an empty
//!    `keywords` array), and unknown fields of a type that does not deny them. A mismatch is
//!    [`DecodeError::NonCanonical`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bounds applied to untrusted bytes before and while they are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted encoding in bytes; checked before any decoding.
    pub max_size: usize,
    /// Deepest accepted nesting of arrays and maps; the top-level item is depth 1.
    pub max_depth: usize,
}

/// Default size cap for one message: 256 KiB.
pub const DEFAULT_MAX_SIZE: usize = 256 * 1024;
/// Default nesting cap. The deepest honest object (an envelope holding a delegation) has depth 3.
pub const DEFAULT_MAX_DEPTH: usize = 16;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: DEFAULT_MAX_SIZE,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why bytes could not be decoded as the expected canonical object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is longer than the size cap; nothing was decoded.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The cap in force.
        max: usize,
    },
    /// Arrays and maps are nested deeper than the cap.
    #[error("nesting deeper than {max} levels at byte {offset}")]
    TooDeep {
        /// Byte offset of the item that went too deep.
        offset: usize,
        /// The cap in force.
        max: usize,
    },
    /// The input ends in the middle of an item, or declares more content than it has.
    #[error("input truncated at byte {offset}")]
    Truncated {
        /// Byte offset where more input was needed.
        offset: usize,
    },
    /// Bytes follow the single top-level item.
    #[error("{extra} trailing bytes after the item at byte {offset}")]
    TrailingBytes {
        /// Byte offset where the trailing bytes start.
        offset: usize,
        /// How many bytes trail.
        extra: usize,
    },
    /// An indefinite-length string, array or map.
    #[error("indefinite length at byte {offset}")]
    IndefiniteLength {
        /// Byte offset of the item.
        offset: usize,
    },
    /// An integer or length not in its shortest form.
    #[error("argument not in shortest form at byte {offset}")]
    NonShortestArgument {
        /// Byte offset of the item.
        offset: usize,
    },
    /// Map keys out of canonical order.
    #[error("map keys out of canonical order at byte {offset}")]
    UnsortedKeys {
        /// Byte offset of the out-of-order key.
        offset: usize,
    },
    /// The same map key twice.
    #[error("duplicate map key at byte {offset}")]
    DuplicateKey {
        /// Byte offset of the repeated key.
        offset: usize,
    },
    /// A tag, a float, or a simple value other than false, true and null.
    #[error("unsupported CBOR item (major type {major}, info {info}) at byte {offset}")]
    UnsupportedItem {
        /// Byte offset of the item.
        offset: usize,
        /// CBOR major type (0..=7).
        major: u8,
        /// The additional-information bits.
        info: u8,
    },
    /// A text string that is not UTF-8.
    #[error("text string is not UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Byte offset of the string.
        offset: usize,
    },
    /// Well-formed CBOR that does not have the shape of the expected object.
    #[error("unexpected shape: {0}")]
    Shape(String),
    /// Decodes, but is not the canonical encoding of what it decodes to (unknown fields, empty
    /// optional fields spelled out, ...).
    #[error("not the canonical encoding of the decoded object")]
    NonCanonical,
}

impl DecodeError {
    /// A stable snake_case name for this kind of error, used in test vectors and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::IndefiniteLength { .. }
            | DecodeError::NonShortestArgument { .. }
            | DecodeError::UnsortedKeys { .. }
            | DecodeError::DuplicateKey { .. }
            | DecodeError::NonCanonical => "non_canonical",
            DecodeError::UnsupportedItem { .. } => "unsupported_item",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::Shape(_) => "shape",
        }
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The serializer refused the value (a float, or a map key that is not text).
    #[error("cannot encode: {0}")]
    Unsupported(String),
}

/// Encodes `value` in canonical CBOR.
///
/// # Errors
/// [`EncodeError::Unsupported`] if the value contains something the canonical profile forbids
/// (floats, tags) — a programming error for xchg's own types.
pub fn to_canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let raw = cbor4ii::serde::to_vec(Vec::new(), value)
        .map_err(|e| EncodeError::Unsupported(e.to_string()))?;
    let limits = Limits {
        max_size: usize::MAX,
        max_depth: 64,
    };
    let mut out = Vec::with_capacity(raw.len());
    let end = rewrite(&raw, 0, 1, &limits, &mut out)
        .map_err(|e| EncodeError::Unsupported(e.to_string()))?;
    if end != raw.len() {
        return Err(EncodeError::Unsupported(
            "serializer produced trailing bytes".into(),
        ));
    }
    Ok(out)
}

/// Decodes canonical CBOR from an untrusted source into `T`, enforcing `limits`.
///
/// # Errors
/// Any [`DecodeError`]: too large, too deep, malformed, not canonical, or not a `T`.
pub fn from_canonical<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<T, DecodeError> {
    let value: T = from_stored(bytes, limits)?;
    let again = to_canonical(&value).map_err(|e| DecodeError::Shape(e.to_string()))?;
    if again != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

/// Decodes bytes that were checked with [`from_canonical`] (or produced by [`to_canonical`])
/// before they were stored, such as a node's own catalog rows: `limits` and the profile's
/// structure are enforced as for untrusted bytes, but the value is not encoded again to compare.
/// A stored body is read far more often than it is written (every page of results, the search
/// indexer on every member), and that second encoding was a fifth of the indexer's work.
///
/// # Errors
/// As [`from_canonical`], except that a value whose encoding differs from `bytes` (which the
/// check at storing time rules out) is not detected.
pub fn from_stored<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, DecodeError> {
    check_canonical(bytes, limits)?;
    cbor4ii::serde::from_slice(bytes).map_err(|e| DecodeError::Shape(e.to_string()))
}

/// Checks that `bytes` is exactly one data item in xchg's canonical CBOR profile, within
/// `limits`. Allocates nothing.
///
/// # Errors
/// The first violation found, with its byte offset.
pub fn check_canonical(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if bytes.len() > limits.max_size {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: limits.max_size,
        });
    }
    let end = walk(bytes, 0, 1, limits)?;
    if end != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            offset: end,
            extra: bytes.len() - end,
        });
    }
    Ok(())
}

/// Puts CBOR produced by a trusted encoder into canonical form (sorting map entries).
///
/// # Errors
/// The same violations as [`check_canonical`] for things sorting cannot fix.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let limits = Limits {
        max_size: usize::MAX,
        max_depth: 64,
    };
    let mut out = Vec::with_capacity(bytes.len());
    let end = rewrite(bytes, 0, 1, &limits, &mut out)?;
    if end != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            offset: end,
            extra: bytes.len() - end,
        });
    }
    Ok(out)
}

/// A decoded item head: major type, argument, and where the content starts.
struct Head {
    major: u8,
    info: u8,
    arg: u64,
    next: usize,
}

/// Reads the head at `at`. With `strict`, arguments must be in shortest form.
fn head(bytes: &[u8], at: usize, strict: bool) -> Result<Head, DecodeError> {
    let first = *bytes.get(at).ok_or(DecodeError::Truncated { offset: at })?;
    let major = first >> 5;
    let info = first & 0x1f;
    let (arg, width) = match info {
        0..=23 => (u64::from(info), 0),
        24..=27 => {
            let width = 1usize << (info - 24);
            let slice = bytes
                .get(at + 1..at + 1 + width)
                .ok_or(DecodeError::Truncated { offset: at + 1 })?;
            let arg = slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            (arg, width)
        }
        31 if major == 7 => {
            return Err(DecodeError::UnsupportedItem {
                offset: at,
                major,
                info,
            });
        }
        31 => return Err(DecodeError::IndefiniteLength { offset: at }),
        _ => {
            return Err(DecodeError::UnsupportedItem {
                offset: at,
                major,
                info,
            });
        }
    };
    if strict && major != 7 {
        let shortest = match arg {
            0..=23 => 0,
            24..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xffff_ffff => 4,
            _ => 8,
        };
        if width != shortest {
            return Err(DecodeError::NonShortestArgument { offset: at });
        }
    }
    Ok(Head {
        major,
        info,
        arg,
        next: at + 1 + width,
    })
}

/// Length of `arg` as usize, refusing lengths that exceed what remains of the input.
fn bounded_len(bytes: &[u8], h: &Head) -> Result<usize, DecodeError> {
    let remaining = bytes.len().saturating_sub(h.next);
    match usize::try_from(h.arg) {
        Ok(n) if n <= remaining => Ok(n),
        _ => Err(DecodeError::Truncated { offset: h.next }),
    }
}

fn check_simple(h: &Head, at: usize) -> Result<(), DecodeError> {
    // false (20), true (21), null (22); everything else in major 7 (floats, undefined,
    // other simple values) has no place in xchg objects.
    match h.info {
        20..=22 => Ok(()),
        _ => Err(DecodeError::UnsupportedItem {
            offset: at,
            major: 7,
            info: h.info,
        }),
    }
}

/// Validates one canonical item starting at `at` (depth `depth`); returns where it ends.
fn walk(bytes: &[u8], at: usize, depth: usize, limits: &Limits) -> Result<usize, DecodeError> {
    let h = head(bytes, at, true)?;
    match h.major {
        0 | 1 => Ok(h.next),
        2 => Ok(h.next + bounded_len(bytes, &h)?),
        3 => {
            let n = bounded_len(bytes, &h)?;
            std::str::from_utf8(&bytes[h.next..h.next + n])
                .map_err(|_| DecodeError::InvalidUtf8 { offset: at })?;
            Ok(h.next + n)
        }
        4 | 5 => {
            if depth > limits.max_depth {
                return Err(DecodeError::TooDeep {
                    offset: at,
                    max: limits.max_depth,
                });
            }
            // Each element takes at least one byte, so a count above the remaining length is
            // a lie that we refuse before looping over it.
            let count = bounded_len(bytes, &h)?;
            let mut pos = h.next;
            if h.major == 4 {
                for _ in 0..count {
                    pos = walk(bytes, pos, depth + 1, limits)?;
                }
            } else {
                let mut previous: Option<(usize, usize)> = None;
                for _ in 0..count {
                    let key_start = pos;
                    let key_end = walk(bytes, pos, depth + 1, limits)?;
                    if let Some((ps, pe)) = previous {
                        match bytes[ps..pe].cmp(&bytes[key_start..key_end]) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(DecodeError::DuplicateKey { offset: key_start });
                            }
                            std::cmp::Ordering::Greater => {
                                return Err(DecodeError::UnsortedKeys { offset: key_start });
                            }
                        }
                    }
                    previous = Some((key_start, key_end));
                    pos = walk(bytes, key_end, depth + 1, limits)?;
                }
            }
            Ok(pos)
        }
        6 => Err(DecodeError::UnsupportedItem {
            offset: at,
            major: 6,
            info: h.info,
        }),
        _ => {
            check_simple(&h, at)?;
            Ok(h.next)
        }
    }
}

fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Re-emits the item at `at` in canonical form into `out`; returns where the input item ends.
fn rewrite(
    bytes: &[u8],
    at: usize,
    depth: usize,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<usize, DecodeError> {
    let h = head(bytes, at, false)?;
    match h.major {
        0 | 1 => {
            write_head(out, h.major, h.arg);
            Ok(h.next)
        }
        2 | 3 => {
            let n = bounded_len(bytes, &h)?;
            write_head(out, h.major, h.arg);
            out.extend_from_slice(&bytes[h.next..h.next + n]);
            Ok(h.next + n)
        }
        4 => {
            if depth > limits.max_depth {
                return Err(DecodeError::TooDeep {
                    offset: at,
                    max: limits.max_depth,
                });
            }
            let count = bounded_len(bytes, &h)?;
            write_head(out, 4, h.arg);
            let mut pos = h.next;
            for _ in 0..count {
                pos = rewrite(bytes, pos, depth + 1, limits, out)?;
            }
            Ok(pos)
        }
        5 => {
            if depth > limits.max_depth {
                return Err(DecodeError::TooDeep {
                    offset: at,
                    max: limits.max_depth,
                });
            }
            let count = bounded_len(bytes, &h)?;
            // Entries are rewritten straight into `out`, remembering where each key and entry
            // ends; only a map whose keys are out of order is then rearranged, in one copy.
            write_head(out, 5, h.arg);
            let start = out.len();
            let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(count);
            let mut pos = h.next;
            for _ in 0..count {
                let key_start = out.len();
                pos = rewrite(bytes, pos, depth + 1, limits, out)?;
                let key_end = out.len();
                pos = rewrite(bytes, pos, depth + 1, limits, out)?;
                spans.push((key_start, key_end, out.len()));
            }
            let key = |s: &(usize, usize, usize)| s.0..s.1;
            let ascending = spans.windows(2).all(|w| out[key(&w[0])] < out[key(&w[1])]);
            if !ascending {
                spans.sort_by(|a, b| out[key(a)].cmp(&out[key(b)]));
                if spans.windows(2).any(|w| out[key(&w[0])] == out[key(&w[1])]) {
                    return Err(DecodeError::DuplicateKey { offset: at });
                }
                let mut sorted = Vec::with_capacity(out.len() - start);
                for &(key_start, _, end) in &spans {
                    sorted.extend_from_slice(&out[key_start..end]);
                }
                out.truncate(start);
                out.extend_from_slice(&sorted);
            }
            Ok(pos)
        }
        6 => Err(DecodeError::UnsupportedItem {
            offset: at,
            major: 6,
            info: h.info,
        }),
        _ => {
            check_simple(&h, at)?;
            out.push(bytes[at]);
            Ok(h.next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn stored_bytes_decode_within_the_same_bounds_as_untrusted_ones() {
        let mut value = BTreeMap::new();
        value.insert("b".to_string(), vec![1u64, 2, 3]);
        value.insert("a".to_string(), vec![]);
        let bytes = to_canonical(&value).expect("encodes");
        let back: BTreeMap<String, Vec<u64>> =
            from_stored(&bytes, &Limits::default()).expect("decodes");
        assert_eq!(back, value);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            from_stored::<BTreeMap<String, Vec<u64>>>(&trailing, &Limits::default()),
            Err(DecodeError::TrailingBytes { .. })
        ));
        let small = Limits {
            max_size: bytes.len() - 1,
            max_depth: DEFAULT_MAX_DEPTH,
        };
        assert!(matches!(
            from_stored::<BTreeMap<String, Vec<u64>>>(&bytes, &small),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            from_stored::<Vec<String>>(&bytes, &Limits::default()),
            Err(DecodeError::Shape(_))
        ));
    }

    #[test]
    fn map_keys_are_ordered_by_encoded_bytes_so_shorter_keys_come_first() {
        #[derive(Serialize)]
        struct S {
            zz: u8,
            a: u8,
            bbb: u8,
        }
        let bytes = to_canonical(&S {
            zz: 1,
            a: 2,
            bbb: 3,
        })
        .expect("encode");
        // {"a": 2, "zz": 1, "bbb": 3}
        assert_eq!(hex::encode(&bytes), "a3616102627a7a016362626203");
        check_canonical(&bytes, &Limits::default()).expect("canonical");
    }

    #[test]
    fn integers_use_their_shortest_form() {
        assert_eq!(to_canonical(&23u64).expect("encode"), vec![0x17]);
        assert_eq!(to_canonical(&24u64).expect("encode"), vec![0x18, 24]);
        assert_eq!(to_canonical(&256u64).expect("encode"), vec![0x19, 1, 0]);
        let long = [0x1b, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            check_canonical(&long, &Limits::default()),
            Err(DecodeError::NonShortestArgument { offset: 0 })
        );
    }

    #[test]
    fn unsorted_and_duplicate_keys_are_refused() {
        // {"b": 1, "a": 2}
        let unsorted = hex::decode("a2616201616102").expect("hex");
        assert_eq!(
            check_canonical(&unsorted, &Limits::default()),
            Err(DecodeError::UnsortedKeys { offset: 4 })
        );
        let dup = hex::decode("a2616101616102").expect("hex");
        assert_eq!(
            check_canonical(&dup, &Limits::default()),
            Err(DecodeError::DuplicateKey { offset: 4 })
        );
    }

    #[test]
    fn indefinite_lengths_tags_and_floats_are_refused() {
        let limits = Limits::default();
        assert!(matches!(
            check_canonical(&[0x9f, 0xff], &limits),
            Err(DecodeError::IndefiniteLength { offset: 0 })
        ));
        assert!(matches!(
            check_canonical(&[0xc1, 0x00], &limits),
            Err(DecodeError::UnsupportedItem { major: 6, .. })
        ));
        assert!(matches!(
            check_canonical(&[0xf9, 0x3c, 0x00], &limits),
            Err(DecodeError::UnsupportedItem { major: 7, .. })
        ));
        check_canonical(&[0xf4], &limits).expect("false is allowed");
    }

    #[test]
    fn declared_lengths_beyond_the_input_are_truncation_not_allocation() {
        // An array claiming 2^32 elements in a 5-byte message.
        let liar = [0x9a, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            check_canonical(&liar, &Limits::default()),
            Err(DecodeError::Truncated { offset: 5 })
        );
        let long_text = [0x7a, 0x7f, 0xff, 0xff, 0xff, b'a'];
        assert_eq!(
            check_canonical(&long_text, &Limits::default()),
            Err(DecodeError::Truncated { offset: 5 })
        );
    }

    #[test]
    fn deep_nesting_stops_at_the_cap_without_recursing_further() {
        let mut deep = vec![0x81u8; 10_000];
        deep.push(0x00);
        let limits = Limits {
            max_size: usize::MAX,
            max_depth: 16,
        };
        assert_eq!(
            check_canonical(&deep, &limits),
            Err(DecodeError::TooDeep {
                offset: 16,
                max: 16
            })
        );
    }

    #[test]
    fn oversized_input_is_refused_before_reading() {
        let limits = Limits {
            max_size: 4,
            max_depth: 4,
        };
        assert_eq!(
            check_canonical(&[0; 5], &limits),
            Err(DecodeError::TooLarge { size: 5, max: 4 })
        );
    }

    #[test]
    fn unknown_fields_are_shape_in_a_type_that_denies_them() {
        #[derive(Serialize, serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct One {
            a: u8,
        }
        let mut m = BTreeMap::new();
        m.insert("a", 1u8);
        m.insert("b", 2u8);
        let bytes = to_canonical(&m).expect("encode");
        let err = from_canonical::<One>(&bytes, &Limits::default()).expect_err("unknown field");
        assert_eq!(err.kind(), "shape", "{err}");
    }

    #[test]
    fn a_type_that_tolerates_unknown_fields_still_refuses_them_through_the_round_trip() {
        #[derive(Serialize, serde::Deserialize, Debug)]
        struct One {
            a: u8,
        }
        let mut m = BTreeMap::new();
        m.insert("a", 1u8);
        m.insert("b", 2u8);
        let bytes = to_canonical(&m).expect("encode");
        assert_eq!(
            from_canonical::<One>(&bytes, &Limits::default()).map(|o| o.a),
            Err(DecodeError::NonCanonical)
        );
    }

    /// The canonical listing of the vectors, as a map whose entries can be edited.
    fn listing_entries() -> BTreeMap<String, cbor4ii::core::Value> {
        let listing = crate::listing::Listing::first_version(
            crate::vectors::credit_draft(),
            "xuchang/yuzhou".parse().expect("zone"),
            crate::vectors::NOW,
        );
        assert!(listing.keywords.is_empty() && listing.spatial_coverage.is_none());
        let bytes = listing.canonical_bytes();
        let entries: BTreeMap<String, cbor4ii::core::Value> =
            cbor4ii::serde::from_slice(&bytes).expect("generic map");
        // So that the tests below see only the entry they add.
        assert_eq!(
            to_canonical(&entries).expect("encode"),
            bytes,
            "the generic map round-trips"
        );
        entries
    }

    #[test]
    fn an_empty_keywords_array_written_out_in_a_listing_is_non_canonical() {
        let mut entries = listing_entries();
        entries.insert("keywords".into(), cbor4ii::core::Value::Array(vec![]));
        let bytes = to_canonical(&entries).expect("encode");
        check_canonical(&bytes, &Limits::default()).expect("structurally canonical");
        assert_eq!(
            from_canonical::<crate::listing::Listing>(&bytes, &Limits::default()),
            Err(DecodeError::NonCanonical)
        );
    }

    #[test]
    fn a_null_optional_field_in_a_listing_is_non_canonical() {
        let mut entries = listing_entries();
        entries.insert("spatial_coverage".into(), cbor4ii::core::Value::Null);
        let bytes = to_canonical(&entries).expect("encode");
        check_canonical(&bytes, &Limits::default()).expect("structurally canonical");
        assert_eq!(
            from_canonical::<crate::listing::Listing>(&bytes, &Limits::default()),
            Err(DecodeError::NonCanonical)
        );
    }

    #[test]
    fn bytes_after_the_item_are_trailing_bytes() {
        assert_eq!(
            check_canonical(&[0x01, 0x02, 0x03], &Limits::default()),
            Err(DecodeError::TrailingBytes {
                offset: 1,
                extra: 2
            })
        );
    }

    #[test]
    fn a_text_string_that_is_not_utf8_is_invalid_utf8() {
        // A one-element array holding text(2) with a lone continuation byte.
        let err =
            check_canonical(&[0x81, 0x62, 0x61, 0x80], &Limits::default()).expect_err("not UTF-8");
        assert_eq!(err, DecodeError::InvalidUtf8 { offset: 1 });
        assert_eq!(err.kind(), "invalid_utf8");
    }
}
