//! What the vector tests share: the check that the files on disk are what the code
//! generates, and reading a vector's fields.
#![allow(dead_code)] // Each test crate uses its part.

/// Checks that the files of `dir` are exactly `generated` (`(name, rendered JSON)`), after
/// writing them when `XCHG_WRITE_VECTORS` is set.
pub fn files_are(dir: &std::path::Path, generated: &[(String, String)]) {
    if std::env::var_os("XCHG_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(dir).expect("create dir");
        for (name, text) in generated {
            std::fs::write(dir.join(format!("{name}.json")), text).expect("write");
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = generated.iter().map(|(n, _)| format!("{n}.json")).collect();
    names.sort();
    assert_eq!(
        on_disk,
        names,
        "the vector files of {} differ from the generated set",
        dir.display()
    );
    for (name, text) in generated {
        let file = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("read");
        assert!(
            file == *text,
            "{name} differs from the generated vector; rerun with XCHG_WRITE_VECTORS=1 if intended"
        );
    }
}

pub fn render<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("vector serialises");
    s.push('\n');
    s
}

/// The text field `name` of `v`.
pub fn text<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("missing text field {name}"))
}

/// The lowercase-hex field `name` of `v`, decoded.
pub fn hex_field(v: &serde_json::Value, name: &str) -> Vec<u8> {
    hex::decode(text(v, name)).expect("hex")
}

/// Every vector file of `dir`: its path (for messages) and its JSON.
pub fn vectors_in(dir: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let v = serde_json::from_str(&text).expect("json");
            (path.display().to_string(), v)
        })
        .collect()
}

/// The roots a vector's `trust` list names (`[{"exchange","root_public_key"}]`), trusted.
pub fn trusted_roots(v: &serde_json::Value) -> xchg_protocol::TrustStore {
    let mut trust = xchg_protocol::TrustStore::default();
    for root in v["trust"].as_array().expect("trust") {
        let exchange: xchg_protocol::ExchangeId = text(root, "exchange").parse().expect("exchange");
        let key: xchg_protocol::PublicKey = text(root, "root_public_key").parse().expect("root");
        trust.trust(exchange, key);
    }
    trust
}

/// The decoding limits a vector states (`max_size`, `max_depth`).
pub fn limits_of(v: &serde_json::Value) -> xchg_protocol::canonical::Limits {
    let field = |name: &str| {
        let n = v[name].as_u64().unwrap_or_else(|| panic!("missing {name}"));
        usize::try_from(n).expect("fits")
    };
    xchg_protocol::canonical::Limits {
        max_size: field("max_size"),
        max_depth: field("max_depth"),
    }
}

/// The clock a vector states (`now`).
pub fn now_of(v: &serde_json::Value) -> xchg_protocol::Timestamp {
    xchg_protocol::Timestamp(v["now"].as_u64().expect("now"))
}
