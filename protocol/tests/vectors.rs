//! The test vectors in `test-vectors/` are exactly what the code produces, and each verifies
//! (or fails with its stated error) using nothing but the fields of its own file.
//!
//! Set `XCHG_WRITE_VECTORS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

use xchg_protocol::canonical::Limits;
use xchg_protocol::{
    Domain, ExchangeId, PublicKey, Signature, Timestamp, TrustStore, vectors, verify,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-vectors")
}

fn render(v: &vectors::Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("vector serialises");
    s.push('\n');
    s
}

#[test]
fn vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated = vectors::all();
    if std::env::var_os("XCHG_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).expect("create dir");
        for v in &generated {
            std::fs::write(dir().join(format!("{}.json", v.name)), render(v)).expect("write");
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .expect("test-vectors/ exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let names: Vec<String> = generated
        .iter()
        .map(|v| format!("{}.json", v.name))
        .collect();
    assert_eq!(
        on_disk, names,
        "the set of vector files differs from the generated set"
    );
    for v in &generated {
        let file = std::fs::read_to_string(dir().join(format!("{}.json", v.name))).expect("read");
        assert!(
            file == render(v),
            "{} differs from the generated vector; rerun with XCHG_WRITE_VECTORS=1 if intended",
            v.name
        );
    }
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v.get(name)
        .unwrap_or_else(|| panic!("missing field {name}"))
}

fn hex_field(v: &serde_json::Value, name: &str) -> Vec<u8> {
    hex::decode(field(v, name).as_str().expect("string")).expect("hex")
}

#[test]
fn every_vector_file_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir()).expect("dir") {
        let path = entry.expect("entry").path();
        // `certificates/` holds the certificate vectors, run by `certificate_vectors.rs`.
        if path.is_dir() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let name = path.display().to_string();
        for required in [
            "description",
            "root_public_key",
            "revoked_keys",
            "delegation",
            "signer_public_key",
            "body",
            "id",
            "signing_input",
            "signature",
            "envelope",
            "valid",
        ] {
            field(&v, required);
        }
        let mut trust = TrustStore::default();
        let exchange: ExchangeId = field(&v, "exchange")
            .as_str()
            .expect("str")
            .parse()
            .expect("exchange");
        let root: PublicKey = field(&v, "root_public_key")
            .as_str()
            .expect("str")
            .parse()
            .expect("root key");
        trust.trust(exchange.clone(), root);
        for revoked in field(&v, "revoked_keys").as_array().expect("array") {
            let key: PublicKey = revoked.as_str().expect("str").parse().expect("revoked key");
            trust.revoke(exchange.clone(), key);
        }
        let limits = Limits {
            max_size: field(&v, "max_size").as_u64().expect("max_size") as usize,
            max_depth: field(&v, "max_depth").as_u64().expect("max_depth") as usize,
        };
        let now = Timestamp(field(&v, "now").as_u64().expect("now"));
        let result = verify(&hex_field(&v, "envelope"), &trust, now, &limits);
        if field(&v, "valid").as_bool().expect("bool") {
            let ok = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                ok.id.to_string(),
                field(&v, "id").as_str().expect("id"),
                "{name}"
            );
            assert_eq!(
                ok.signer.to_string(),
                field(&v, "signer_public_key").as_str().expect("signer"),
                "{name}"
            );
            // The documented relationships between the fields hold.
            let body = hex_field(&v, "body");
            assert_eq!(xchg_protocol::ContentId::of(&body), ok.id, "{name}");
            let input = hex_field(&v, "signing_input");
            assert!(
                input.ends_with(&body),
                "{name}: signing_input must end with body"
            );
        } else {
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name}: verified but marked invalid"));
            assert_eq!(
                err.kind(),
                field(&v, "error").as_str().expect("error"),
                "{name}: {err}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 19, "only {checked} vectors found");
}

#[test]
fn every_vector_signature_verifies_under_its_signer_over_its_signing_input() {
    // The descriptive fields are honest even in invalid vectors: `signer_public_key` made
    // `signature`, over exactly `signing_input`.
    for v in vectors::all() {
        let input = hex::decode(&v.signing_input).expect("hex");
        let domain = [Domain::Listing, Domain::Delisting, Domain::Revocation]
            .into_iter()
            .find(|d| input.starts_with(d.tag()))
            .unwrap_or_else(|| panic!("{}: signing_input starts with no announcement tag", v.name));
        let signer: PublicKey = v.signer_public_key.parse().expect("signer");
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&v.signature, &mut signature).expect("signature hex");
        signer
            .verify(domain, &input[domain.tag().len()..], &Signature(signature))
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
    }
}
