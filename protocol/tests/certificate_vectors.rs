//! The certificate vectors in `test-vectors/certificates/` and the certificate-revocation
//! vectors in `test-vectors/certificate-revocations/` are exactly what the code produces, and
//! each verifies (or fails with its stated error) using nothing but its own fields.
//!
//! Set `XCHG_WRITE_VECTORS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

mod common;
use common::{files_are, render, text};

use xchg_protocol::canonical::Limits;
use xchg_protocol::certificate::check_revocation;
use xchg_protocol::certificate_revocation::{
    check_key_revocation, check_names, verify_certificate_revocation,
};
use xchg_protocol::certificate_vectors::{all, revocations};
use xchg_protocol::{ExchangeId, PublicKey, Timestamp, TrustStore, verify_certificate};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-vectors/certificates")
}

fn revocation_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-vectors/certificate-revocations")
}

#[test]
fn certificate_vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated: Vec<_> = all().iter().map(|v| (v.name.clone(), render(v))).collect();
    files_are(&dir(), &generated);
}

#[test]
fn certificate_revocation_vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated: Vec<_> = revocations()
        .iter()
        .map(|v| (v.name.clone(), render(v)))
        .collect();
    files_are(&revocation_dir(), &generated);
}

#[test]
fn every_certificate_vector_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir()).expect("dir") {
        let path = entry.expect("entry").path();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let name = path.display().to_string();
        let mut trust = TrustStore::default();
        let exchange: ExchangeId = text(&v, "exchange").parse().expect("exchange");
        let root: PublicKey = text(&v, "root_public_key").parse().expect("root");
        trust.trust(exchange, root);
        let limits = Limits {
            max_size: v["max_size"].as_u64().expect("max_size") as usize,
            max_depth: v["max_depth"].as_u64().expect("max_depth") as usize,
        };
        let now = Timestamp(v["now"].as_u64().expect("now"));
        let bytes = hex::decode(text(&v, "certificate")).expect("hex");
        let revoked_at = v["revoked_at"].as_u64().map(Timestamp);
        let result = verify_certificate(&bytes, &trust, now, &limits)
            .and_then(|ok| check_revocation(&ok, revoked_at).map(|()| ok));
        if v["valid"].as_bool().expect("valid") {
            let ok = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(ok.id.to_string(), text(&v, "id"), "{name}");
            let body = hex::decode(text(&v, "body")).expect("hex");
            let input = hex::decode(text(&v, "signing_input")).expect("hex");
            assert_eq!(input, [b"xchg/v1/certificate\0".as_slice(), &body].concat());
        } else {
            let e = result.expect_err(&name);
            assert_eq!(e.kind(), text(&v, "error"), "{name}: {e}");
        }
        checked += 1;
    }
    assert_eq!(checked, all().len());
}

/// The trust store, clock and limits a vector states.
fn verifier_of(v: &serde_json::Value) -> (TrustStore, Timestamp, Limits) {
    let mut trust = TrustStore::default();
    let exchange: ExchangeId = text(v, "exchange").parse().expect("exchange");
    let root: PublicKey = text(v, "root_public_key").parse().expect("root");
    trust.trust(exchange, root);
    let limits = Limits {
        max_size: v["max_size"].as_u64().expect("max_size") as usize,
        max_depth: v["max_depth"].as_u64().expect("max_depth") as usize,
    };
    (trust, Timestamp(v["now"].as_u64().expect("now")), limits)
}

#[test]
fn every_certificate_revocation_vector_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for entry in std::fs::read_dir(revocation_dir()).expect("dir") {
        let path = entry.expect("entry").path();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let name = path.display().to_string();
        let (trust, now, limits) = verifier_of(&v);
        // The certificate the verifier holds, under the id the revocation names.
        let certificate = verify_certificate(
            &hex::decode(text(&v, "certificate")).expect("hex"),
            &trust,
            now,
            &Limits::default(),
        )
        .expect("the certificate held verifies");
        let bytes = hex::decode(text(&v, "revocation")).expect("hex");
        let key_revoked_at = v["key_revoked_at"].as_u64().map(Timestamp);
        let result = verify_certificate_revocation(&bytes, &trust, now, &limits)
            .and_then(|ok| check_key_revocation(&ok, key_revoked_at).map(|()| ok))
            .and_then(|ok| {
                assert_eq!(ok.body.certificate_id, certificate.id, "{name}");
                check_names(&ok.body, &certificate.certificate).map(|()| ok)
            });
        if v["valid"].as_bool().expect("valid") {
            let ok = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(ok.id.to_string(), text(&v, "id"), "{name}");
            let body = hex::decode(text(&v, "body")).expect("hex");
            let input = hex::decode(text(&v, "signing_input")).expect("hex");
            assert_eq!(
                input,
                [b"xchg/v1/certificate-revocation\0".as_slice(), &body].concat()
            );
        } else {
            let e = result.expect_err(&name);
            assert_eq!(e.kind(), text(&v, "error"), "{name}: {e}");
        }
        checked += 1;
    }
    assert_eq!(checked, revocations().len());
}
