//! Pins the behaviours an independent verifier could not read off PROTOCOL.md unambiguously:
//! which "empty" optional values are omitted, how `null` and wrong CBOR types are refused, how a
//! map count is bounded, which key and `R` encodings are refused, the exact white-space set of
//! the text rule, and what a `description` may hold.
//!
//! Listing cases edit the vectors' credit listing as a generic CBOR map, sign the result with
//! the vectors' node key under the vectors' delegation, and run `verify`, so each case reports
//! the error kind a receiver sees.

use std::collections::BTreeMap;

use cbor4ii::core::Value;
use xchg_protocol::canonical::{Limits, check_canonical, to_canonical};
use xchg_protocol::{
    AnnouncementKind, DecodeError, Envelope, KeyError, Listing, ListingDraft, PublicKey,
    TrustStore, vectors, verify,
};

/// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The 25 code points of Unicode `White_Space`, as PROTOCOL.md 4.2 lists them.
const WHITE_SPACE: [u32; 25] = [
    0x0009, 0x000A, 0x000B, 0x000C, 0x000D, 0x0020, 0x0085, 0x00A0, 0x1680, 0x2000, 0x2001, 0x2002,
    0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F,
    0x3000,
];

fn trust() -> TrustStore {
    let mut trust = TrustStore::default();
    trust.trust(
        "xuchang".parse().expect("exchange literal"),
        vectors::root().public(),
    );
    trust
}

fn listing() -> Listing {
    Listing::first_version(
        vectors::credit_draft(),
        "xuchang/yuzhou".parse().expect("zone literal"),
        vectors::NOW,
    )
}

/// The error kind `verify` reports for `wire`, or `"verified"`.
fn kind_of(wire: &[u8]) -> String {
    match verify(wire, &trust(), vectors::NOW, &Limits::default()) {
        Ok(_) => "verified".into(),
        Err(e) => e.kind().into(),
    }
}

/// A correctly signed and delegated listing envelope around arbitrary body bytes.
fn listing_body_kind(body: Vec<u8>) -> String {
    let env = Envelope::seal(
        AnnouncementKind::Listing,
        body,
        &vectors::node(),
        Some(vectors::delegation()),
    );
    kind_of(&env.to_bytes())
}

/// The credit listing as a map whose entries the tests edit.
fn listing_map() -> BTreeMap<String, Value> {
    let bytes = listing().canonical_bytes();
    let map: BTreeMap<String, Value> = cbor4ii::serde::from_slice(&bytes).expect("generic map");
    assert_eq!(
        to_canonical(&map).expect("encode"),
        bytes,
        "the generic map re-encodes to the listing, so each case sees only its own edit"
    );
    map
}

/// The verification result for the credit listing with `field` set to `value`.
fn listing_with(field: &str, value: Value) -> String {
    let mut map = listing_map();
    map.insert(field.into(), value);
    listing_body_kind(to_canonical(&map).expect("encode"))
}

/// The verification result for the credit listing with `pricing.<field>` set to `value`.
fn pricing_with(field: &str, value: Value) -> String {
    let mut map = listing_map();
    let Some(Value::Map(pricing)) = map.get_mut("pricing") else {
        panic!("the credit listing has a pricing map");
    };
    pricing.retain(|(k, _)| *k != text(field));
    pricing.push((text(field), value));
    listing_body_kind(to_canonical(&map).expect("encode"))
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Replaces the only occurrence of `from` in `wire` by `to` (same length).
fn patched(wire: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = wire
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "pattern occurs exactly once");
    let mut out = wire.to_vec();
    out[at[0]..at[0] + to.len()].copy_from_slice(to);
    out
}

/// `s + L` for a scalar `s < L`; the sum stays below 2^256.
fn plus_l(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    out
}

/// The encoding `y + p` (p = 2^255 - 19) of a small `y`, with the given sign bit.
fn y_plus_p(y: u8, sign: bool) -> [u8; 32] {
    assert!(y < 19);
    let mut bytes = [0xff; 32];
    bytes[0] = 0xed + y;
    bytes[31] = if sign { 0xff } else { 0x7f };
    bytes
}

fn draft_errors(change: impl FnOnce(&mut ListingDraft)) -> Vec<(String, String)> {
    let mut draft = vectors::credit_draft();
    change(&mut draft);
    match draft.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.0.into_iter().map(|f| (f.field, f.message)).collect(),
    }
}

#[test]
fn the_unedited_listing_map_verifies() {
    let map = listing_map();
    assert_eq!(
        listing_body_kind(to_canonical(&map).expect("encode")),
        "verified"
    );
}

// 3.1 rule 9: only absent values and the empty `keywords` array are omitted.

#[test]
fn an_empty_string_in_an_optional_field_is_a_present_value_and_invalid_listing() {
    assert_eq!(
        listing_with("spatial_coverage", text("")),
        "invalid_listing"
    );
    assert_eq!(
        listing_with("temporal_coverage", text("")),
        "invalid_listing"
    );
    assert_eq!(
        listing_with("spatial_coverage", text(" ")),
        "invalid_listing"
    );
    // The credit listing is priced per call, so amount and currency are due but "" breaks
    // their grammar.
    assert_eq!(pricing_with("amount", text("")), "invalid_listing");
    assert_eq!(pricing_with("currency", text("")), "invalid_listing");
    // For free pricing "" is a present amount, which free pricing forbids.
    let mut map = listing_map();
    map.insert(
        "pricing".into(),
        Value::Map(vec![
            (text("model"), text("free")),
            (text("amount"), text("")),
        ]),
    );
    assert_eq!(
        listing_body_kind(to_canonical(&map).expect("encode")),
        "invalid_listing"
    );
}

#[test]
fn only_the_empty_keywords_array_is_non_canonical_and_other_empty_values_are_not_omitted() {
    assert_eq!(
        listing_with("keywords", Value::Array(vec![])),
        "non_canonical"
    );
    for required_list in ["rights", "scenarios", "delivery_modes"] {
        assert_eq!(
            listing_with(required_list, Value::Array(vec![])),
            "invalid_listing",
            "{required_list}"
        );
    }
    assert_eq!(
        listing_with("keywords", Value::Array(vec![text("")])),
        "invalid_listing"
    );
    assert_eq!(listing_with("registration", Value::Map(vec![])), "shape");
    assert_eq!(listing_with("description", text("")), "verified");
}

#[test]
fn null_in_an_option_field_is_non_canonical_but_null_keywords_is_shape() {
    for field in [
        "listing_id",
        "spatial_coverage",
        "temporal_coverage",
        "registration",
    ] {
        assert_eq!(listing_with(field, Value::Null), "non_canonical", "{field}");
    }
    assert_eq!(pricing_with("amount", Value::Null), "non_canonical");
    assert_eq!(pricing_with("currency", Value::Null), "non_canonical");
    // `keywords` is a list that defaults to empty, not an optional value: null is not a list.
    assert_eq!(listing_with("keywords", Value::Null), "shape");

    let wire = Envelope::listing(&listing(), &vectors::node(), vectors::delegation()).to_bytes();
    let mut envelope: BTreeMap<String, Value> =
        cbor4ii::serde::from_slice(&wire).expect("generic map");
    envelope.insert("delegation".into(), Value::Null);
    assert_eq!(
        kind_of(&to_canonical(&envelope).expect("encode")),
        "non_canonical"
    );
}

// 3.2 step 3: null and wrong major types in required fields.

#[test]
fn null_or_a_wrong_major_type_in_a_required_listing_field_is_shape() {
    let cases = [
        ("title", Value::Null),
        ("title", Value::Bytes(b"title".to_vec())),
        ("title", Value::Integer(1)),
        ("description", Value::Null),
        ("category", Value::Null),
        ("origin", Value::Null),
        ("origin", Value::Bytes(b"xuchang/yuzhou".to_vec())),
        ("version", Value::Null),
        ("version", text("1")),
        ("version", Value::Integer(-1)),
        ("version", Value::Bool(true)),
        ("created_at", Value::Null),
        ("created_at", Value::Integer(-1)),
        ("contains_personal_info", Value::Null),
        ("contains_personal_info", Value::Integer(0)),
        ("rights", Value::Null),
        ("rights", text("holding")),
        ("pricing", Value::Null),
        ("pricing", Value::Array(vec![])),
        ("provider", Value::Null),
        ("classification", Value::Null),
        ("classification", Value::Integer(1)),
        ("classification", Value::Bytes(b"general".to_vec())),
        ("listing_id", Value::Bytes(vec![])),
    ];
    for (field, value) in cases {
        let shown = format!("{field} = {value:?}");
        assert_eq!(listing_with(field, value), "shape", "{shown}");
    }
    assert_eq!(pricing_with("model", Value::Null), "shape");
}

#[test]
fn null_or_a_wrong_major_type_in_a_required_envelope_field_is_shape() {
    let wire = Envelope::listing(&listing(), &vectors::node(), vectors::delegation()).to_bytes();
    let envelope: BTreeMap<String, Value> = cbor4ii::serde::from_slice(&wire).expect("generic map");
    let cases = [
        ("v", Value::Null),
        ("v", text("1")),
        ("id", text("ab")),
        ("id", Value::Array(vec![Value::Integer(0); 32])),
        ("body", text("a0")),
        ("kind", Value::Null),
        ("signature", Value::Null),
        ("delegation", Value::Array(vec![])),
    ];
    for (field, value) in cases {
        let shown = format!("{field} = {value:?}");
        let mut edited = envelope.clone();
        edited.insert(field.into(), value);
        assert_eq!(
            kind_of(&to_canonical(&edited).expect("encode")),
            "shape",
            "{shown}"
        );
    }
}

#[test]
fn an_enumeration_spelled_as_a_one_entry_map_is_shape_or_non_canonical_in_the_reference() {
    // The reference's CBOR reader takes a one-entry map `{name: x}` as the enumeration value
    // `name` and leaves `x` to be read as the next key of the enclosing map. Usually that
    // misreading fails (`shape`) ...
    assert_eq!(
        listing_with(
            "classification",
            Value::Map(vec![(text("general"), Value::Null)])
        ),
        "shape"
    );
    // ... but where the enclosing map ends right after it, the misreading can succeed, and
    // only the round trip refuses the input. Here the last two entries
    // `"update_frequency": "daily", "contains_personal_info": false` become
    // `"update_frequency": {"daily": "contains_personal_info"}, false: false`, which the
    // structural walk accepts (the key `f4` sorts after every text key).
    let bytes = listing().canonical_bytes();
    let mut tail = vec![0x70];
    tail.extend_from_slice(b"update_frequency");
    tail.push(0x65);
    tail.extend_from_slice(b"daily");
    let mut last = vec![0x76];
    last.extend_from_slice(b"contains_personal_info");
    tail.extend_from_slice(&last);
    tail.push(0xf4);
    assert!(
        bytes.ends_with(&tail),
        "the listing ends with these entries"
    );
    let mut crafted = bytes[..bytes.len() - tail.len()].to_vec();
    crafted.push(0x70);
    crafted.extend_from_slice(b"update_frequency");
    crafted.push(0xa1);
    crafted.push(0x65);
    crafted.extend_from_slice(b"daily");
    crafted.extend_from_slice(&last);
    crafted.extend_from_slice(&[0xf4, 0xf4]);
    check_canonical(&crafted, &Limits::default()).expect("structurally canonical");
    assert_eq!(listing_body_kind(crafted), "non_canonical");
}

// 3.2 step 2: a map count counts entries, not items.

#[test]
fn a_map_count_is_bounded_by_the_remaining_bytes_as_entries_not_as_key_and_value_items() {
    let limits = Limits::default();
    // Three entries in five remaining bytes pass the bound (2 × 3 = 6 items would not); the walk
    // then meets key "a" after key "b".
    let err =
        check_canonical(&[0xa3, 0x61, 0x62, 0x01, 0x61, 0x61], &limits).expect_err("unsorted keys");
    assert_eq!(err, DecodeError::UnsortedKeys { offset: 4 });
    assert_eq!(err.kind(), "non_canonical");
    // Two entries in three remaining bytes pass the bound; the first value is `undefined`.
    let err = check_canonical(&[0xa2, 0x61, 0x61, 0xf7], &limits).expect_err("undefined");
    assert_eq!(err.kind(), "unsupported_item");
    // Two entries in three remaining bytes, all of them well-formed: the input ends where the
    // second key should start.
    assert_eq!(
        check_canonical(&[0xa2, 0x61, 0x61, 0x01], &limits),
        Err(DecodeError::Truncated { offset: 4 })
    );
    // Four entries in three remaining bytes fail the bound at once.
    assert_eq!(
        check_canonical(&[0xa4, 0x61, 0x61, 0x01], &limits),
        Err(DecodeError::Truncated { offset: 1 })
    );
}

#[test]
fn a_long_form_tag_is_non_canonical_and_a_cut_short_float_is_truncated() {
    let limits = Limits::default();
    // Tag 1 with its number in a following byte: the shortest-form check runs on every major
    // type but 7 before the tag itself is refused.
    let err = check_canonical(&[0xd8, 0x01, 0x00], &limits).expect_err("long tag");
    assert_eq!(err, DecodeError::NonShortestArgument { offset: 0 });
    assert_eq!(err.kind(), "non_canonical");
    // A half float needs two argument bytes; they are read before the float is refused.
    let err = check_canonical(&[0xf9, 0x3c], &limits).expect_err("short float");
    assert_eq!(err, DecodeError::Truncated { offset: 1 });
    assert_eq!(err.kind(), "truncated");
}

// 2.7 and 5.1: point decoding of keys and of R.

#[test]
fn every_key_encoding_with_y_at_or_above_p_is_refused() {
    // y + p decodes (reduced modulo p) to the point of y: small order for y in {0, 1}, no point
    // for the y that are not on the curve, and otherwise a valid point in a second spelling.
    for y in 0..19u8 {
        for sign in [false, true] {
            let got = PublicKey::from_bytes(&y_plus_p(y, sign));
            match y {
                0 | 1 => assert_eq!(got, Err(KeyError::Weak), "y = {y} + p"),
                2 | 7 | 8 | 11 | 12 | 13 | 17 => {
                    assert!(matches!(got, Err(KeyError::Invalid(_))), "y = {y} + p")
                }
                _ => assert_eq!(got, Err(KeyError::NonCanonical), "y = {y} + p"),
            }
        }
    }
}

#[test]
fn a_key_with_x_zero_and_the_sign_bit_set_is_refused_as_weak() {
    // x = 0 only for y = 1 (the identity) and y = p - 1 (order 2), both of small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    identity[31] = 0x80;
    assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::Weak));
    let mut minus_one = [0xff; 32];
    minus_one[0] = 0xec;
    assert_eq!(PublicKey::from_bytes(&minus_one), Err(KeyError::Weak));
}

#[test]
fn a_non_canonical_node_key_in_a_delegation_is_shape_before_any_signature_is_checked() {
    let wire = Envelope::listing(&listing(), &vectors::node(), vectors::delegation()).to_bytes();
    let node = *vectors::node().public().as_bytes();
    let wire = patched(&wire, &node, &y_plus_p(3, false));
    assert_eq!(kind_of(&wire), "shape");
}

#[test]
fn a_signature_with_s_not_below_l_or_a_non_canonical_r_is_bad_signature_not_shape() {
    let env = Envelope::listing(&listing(), &vectors::node(), vectors::delegation());
    let wire = env.to_bytes();
    let signature = env.signature.0;
    assert_eq!(kind_of(&wire), "verified");

    let mut s_plus_l = signature;
    s_plus_l[32..].copy_from_slice(&plus_l(&signature[32..]));
    assert_eq!(
        kind_of(&patched(&wire, &signature, &s_plus_l)),
        "bad_signature"
    );

    // R spelled as y + p for y = 3, a point that is not of small order.
    let mut non_canonical_r = signature;
    non_canonical_r[..32].copy_from_slice(&y_plus_p(3, false));
    assert_eq!(
        kind_of(&patched(&wire, &signature, &non_canonical_r)),
        "bad_signature"
    );

    let delegation_signature = vectors::delegation().signature.0;
    let mut s_plus_l = delegation_signature;
    s_plus_l[32..].copy_from_slice(&plus_l(&delegation_signature[32..]));
    assert_eq!(
        kind_of(&patched(&wire, &delegation_signature, &s_plus_l)),
        "bad_delegation_signature"
    );
}

// 4.2 text rule: the white-space set and the optional `description`.

#[test]
fn rust_white_space_is_exactly_the_25_unicode_white_space_code_points() {
    let found: Vec<u32> = (0..=0x10_ffff)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .map(u32::from)
        .collect();
    assert_eq!(found, WHITE_SPACE);
    // `str::trim`, which the text rule uses, removes exactly these.
    let trimmed: Vec<u32> = (0..=0x10_ffff)
        .filter_map(char::from_u32)
        .filter(|c| c.to_string().trim().is_empty())
        .map(u32::from)
        .collect();
    assert_eq!(trimmed, WHITE_SPACE);
}

#[test]
fn a_title_of_only_white_space_is_blank_and_one_of_only_invisible_characters_as_good() {
    for cp in WHITE_SPACE {
        let c = char::from_u32(cp).expect("a scalar value");
        let errors = draft_errors(|d| d.title = c.to_string().repeat(3));
        assert!(
            errors.contains(&("title".into(), "must not be empty".into())),
            "U+{cp:04X}: {errors:?}"
        );
    }
    // ZERO WIDTH SPACE, MONGOLIAN VOWEL SEPARATOR, WORD JOINER, ZERO WIDTH NO-BREAK SPACE:
    // general category Cf, not White_Space and not Cc, but default-ignorable: they show
    // nothing, so a title of only them is refused (it was accepted before issue #12).
    for c in ['\u{200B}', '\u{180E}', '\u{2060}', '\u{FEFF}'] {
        let errors = draft_errors(|d| d.title = c.to_string());
        assert_eq!(errors.len(), 1, "{c:?}: {errors:?}");
        assert!(
            errors[0].1.starts_with("must show a visible character"),
            "{errors:?}"
        );
    }
    assert_eq!(listing_with("title", text("\u{3000}")), "invalid_listing");
    assert_eq!(listing_with("title", text("\u{200B}")), "invalid_listing");
    assert_eq!(listing_with("title", text("信\u{200B}用")), "verified");
}

#[test]
fn bidirectional_overrides_and_noncharacters_are_invalid_in_every_text_field() {
    for bad in ["a\u{202E}b", "a\u{2066}b", "a\u{FDD0}b", "a\u{10FFFF}b"] {
        for field in ["title", "description"] {
            assert_eq!(
                listing_with(field, text(bad)),
                "invalid_listing",
                "{field} {bad:?}"
            );
        }
        let errors = draft_errors(|d| d.scenarios = vec![bad.to_owned()]);
        assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
        assert_eq!(errors[0].0, "scenarios[0]");
    }
}

#[test]
fn a_description_may_be_empty_or_only_white_space_but_not_hold_a_carriage_return() {
    for blank in ["", " ", "\n\t", "\u{3000}\u{00A0}"] {
        assert_eq!(
            draft_errors(|d| d.description = blank.into()),
            [],
            "{blank:?}"
        );
    }
    assert_eq!(listing_with("description", text(" \n\t ")), "verified");
    assert_eq!(
        draft_errors(|d| d.description = "许".repeat(8000)),
        [],
        "8000 characters (24000 bytes)"
    );
    assert_eq!(
        draft_errors(|d| d.description = "许".repeat(8001)),
        [(
            "description".to_string(),
            "8001 characters, at most 8000 allowed".to_string()
        )]
    );
    assert_eq!(
        draft_errors(|d| d.description = " \r ".into()),
        [(
            "description".to_string(),
            "must not contain control characters".to_string()
        )]
    );
    assert_eq!(listing_with("description", text("\r")), "invalid_listing");
}
