//! The committed example federation in `examples/xuchang/`: every config loads.
//!
//! To regenerate it (new keys and tokens, delegations valid for ten years), delete
//! `examples/xuchang/{keys,root,nodes,layout.json}` and run
//! `cargo test -p xchg-federation-config --test examples -- --ignored regenerate`.

use std::path::{Path, PathBuf};

use xchg_federation_config::layout::{Layout, LayoutKind, LayoutOptions, generate};
use xchg_federation_config::load;
use xchg_protocol::Timestamp;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/xuchang")
}

#[test]
fn every_example_config_loads_without_errors() {
    let dir = example_dir();
    let text =
        std::fs::read_to_string(dir.join("layout.json")).expect("examples/xuchang/layout.json");
    let layout: Layout = serde_json::from_str(&text).expect("layout.json parses");
    let nodes: Vec<PathBuf> = layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| &z.nodes)
        .map(|n| dir.join(&n.config))
        .collect();
    assert_eq!(nodes.len(), 33, "11 zones of 3 nodes");
    for config in nodes {
        let loaded = load(&config, Timestamp::now())
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", config.display()));
        // git does not keep file modes, so a checkout's key files may draw a mode warning.
        let other: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| !(w.path == "node.key_file" && w.message.contains("readable by group")))
            .collect();
        assert!(other.is_empty(), "{}: {other:?}", config.display());
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README.md");
    assert!(
        readme.contains("**"),
        "the README states in bold that these are examples"
    );
}

#[test]
#[ignore = "writes examples/xuchang; run only to regenerate the committed example"]
fn regenerate() {
    let mut opts = LayoutOptions::new(example_dir(), LayoutKind::Xuchang);
    opts.valid_days = 3650;
    generate(&opts, Timestamp::now()).expect("generate the example layout");
}
