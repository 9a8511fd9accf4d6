//! The precedents vectors in `test-vectors/precedents/` are exactly what the code produces, and
//! each verifies (or fails with its stated error) using nothing but its own fields.
//!
//! Set `XCHG_WRITE_VECTORS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

mod common;
use common::{files_are, hex_field, limits_of, now_of, render, text, trusted_roots, vectors_in};

use xchg_protocol::precedents::{Question, verify};
use xchg_protocol::precedents_vectors::all;
use xchg_protocol::{ContentId, ZoneId};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-vectors/precedents")
}

#[test]
fn precedents_vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated: Vec<_> = all().iter().map(|v| (v.name.clone(), render(v))).collect();
    files_are(&dir(), &generated);
}

#[test]
fn every_precedents_vector_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for (name, v) in vectors_in(&dir()) {
        let (trust, limits) = (trusted_roots(&v), limits_of(&v));
        let q = &v["question"];
        let zone: ZoneId = text(q, "zone").parse().expect("zone");
        let listing: ContentId = text(q, "listing_id").parse().expect("listing");
        let asked = Question {
            zone: &zone,
            listing_id: &listing,
            scenario: text(q, "scenario"),
        };
        let now = now_of(&v);
        let result = verify(&hex_field(&v, "list"), &asked, &trust, now, &limits);
        if v["valid"].as_bool().expect("valid") {
            let verified = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verified.id.to_string(), text(&v, "id"), "{name}");
            let tag: &[u8] = b"xchg/v1/application-precedents\0";
            let input = hex_field(&v, "signing_input");
            assert_eq!(input, [tag, &hex_field(&v, "body")].concat(), "{name}");
        } else {
            let e = result.map(drop).expect_err(&name);
            assert_eq!(e.kind(), text(&v, "error"), "{name}: {e}");
        }
        checked += 1;
    }
    assert_eq!(checked, all().len());
}
