//! The demand vectors in `test-vectors/demands/` are exactly what the code produces, and each
//! verifies (or fails with its stated error) using nothing but its own fields.
//!
//! Set `XCHG_WRITE_VECTORS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

mod common;
use common::{files_are, hex_field, limits_of, now_of, render, text, trusted_roots, vectors_in};

use xchg_protocol::demand::verify;
use xchg_protocol::demand_vectors::all;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-vectors/demands")
}

#[test]
fn demand_vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated: Vec<_> = all().iter().map(|v| (v.name.clone(), render(v))).collect();
    files_are(&dir(), &generated);
}

#[test]
fn every_demand_vector_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for (name, v) in vectors_in(&dir()) {
        let (trust, limits) = (trusted_roots(&v), limits_of(&v));
        let now = now_of(&v);
        let result = verify(&hex_field(&v, "demand"), &trust, now, &limits);
        if v["valid"].as_bool().expect("valid") {
            let verified = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verified.id.to_string(), text(&v, "id"), "{name}");
            let tag: &[u8] = b"xchg/v1/demand\0";
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
