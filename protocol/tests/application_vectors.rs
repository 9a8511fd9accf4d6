//! The application vectors in `test-vectors/applications/` are exactly what the code produces,
//! and each verifies (or fails with its stated error) using nothing but its own fields.
//!
//! Set `XCHG_WRITE_VECTORS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

use xchg_protocol::application_vectors::{ApplicationVector, all};
use xchg_protocol::canonical::Limits;
use xchg_protocol::{
    ExchangeId, PublicKey, Timestamp, TrustStore, VerifyError, verify_decision, verify_request,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-vectors/applications")
}

fn render(v: &ApplicationVector) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("vector serialises");
    s.push('\n');
    s
}

#[test]
fn application_vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated = all();
    if std::env::var_os("XCHG_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).expect("create dir");
        for v in &generated {
            std::fs::write(dir().join(format!("{}.json", v.name)), render(v)).expect("write");
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .expect("test-vectors/applications/ exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let names: Vec<String> = generated
        .iter()
        .map(|v| format!("{}.json", v.name))
        .collect();
    assert_eq!(
        on_disk, names,
        "the application vector files differ from the generated set"
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

fn text<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("missing text field {name}"))
}

fn hex_field(v: &serde_json::Value, name: &str) -> Vec<u8> {
    hex::decode(text(v, name)).expect("hex")
}

/// Verifies the vector's input: its request, or its decision against its request (which must
/// verify); the id of what verified.
fn run(v: &serde_json::Value) -> Result<String, VerifyError> {
    let mut trust = TrustStore::default();
    for root in v["trust"].as_array().expect("trust") {
        let exchange: ExchangeId = text(root, "exchange").parse().expect("exchange");
        let key: PublicKey = text(root, "root_public_key").parse().expect("root");
        trust.trust(exchange, key);
    }
    let limits = Limits {
        max_size: v["max_size"].as_u64().expect("max_size") as usize,
        max_depth: v["max_depth"].as_u64().expect("max_depth") as usize,
    };
    let now = Timestamp(v["now"].as_u64().expect("now"));
    let request = verify_request(&hex_field(v, "request"), &trust, now, &limits);
    match text(v, "message") {
        "request" => request.map(|r| r.id.to_string()),
        "decision" => {
            let request = request.expect("the request a decision answers verifies");
            verify_decision(&hex_field(v, "decision"), &request, &trust, now, &limits)
                .map(|d| d.id.to_string())
        }
        other => panic!("unknown message {other}"),
    }
}

#[test]
fn every_application_vector_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir()).expect("dir") {
        let path = entry.expect("entry").path();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let name = path.display().to_string();
        let result = run(&v);
        if v["valid"].as_bool().expect("valid") {
            let id = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(id, text(&v, "id"), "{name}");
            let tag: &[u8] = match text(&v, "message") {
                "request" => b"xchg/v1/application-request\0",
                _ => b"xchg/v1/application-decision\0",
            };
            let input = hex_field(&v, "signing_input");
            assert_eq!(input, [tag, &hex_field(&v, "body")].concat(), "{name}");
        } else {
            let e = result.expect_err(&name);
            assert_eq!(e.kind(), text(&v, "error"), "{name}: {e}");
        }
        checked += 1;
    }
    assert_eq!(checked, all().len());
}
