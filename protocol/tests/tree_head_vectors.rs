//! The tree-head vectors in `test-vectors/tree-heads/` and the Merkle tree vector in
//! `test-vectors/merkle/` are exactly what the code produces; each head verifies (or fails with
//! its stated error) using nothing but its own fields; and the tree vector's roots and proofs
//! are checked by a Merkle implementation written here from RFC 9162, not the crate's.
//!
//! Set `XCHG_WRITE_VECTORS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

mod common;
use common::{files_are, hex_field, limits_of, now_of, render, text, trusted_roots, vectors_in};

use sha2::{Digest, Sha256};
use xchg_protocol::ZoneId;
use xchg_protocol::tree_head::verify;
use xchg_protocol::tree_head_vectors::{all, tree_vector};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test-vectors")
        .join(name)
}

#[test]
fn tree_head_and_merkle_vector_files_are_byte_identical_to_what_the_code_generates() {
    let generated: Vec<_> = all().iter().map(|v| (v.name.clone(), render(v))).collect();
    files_are(&dir("tree-heads"), &generated);
    let tree = tree_vector();
    files_are(&dir("merkle"), &[(tree.name.clone(), render(&tree))]);
}

#[test]
fn every_tree_head_vector_verifies_or_fails_as_it_says_using_only_its_own_fields() {
    let mut checked = 0;
    for (name, v) in vectors_in(&dir("tree-heads")) {
        let (trust, limits) = (trusted_roots(&v), limits_of(&v));
        let zone: ZoneId = text(&v, "zone").parse().expect("zone");
        let now = now_of(&v);
        let result = verify(&hex_field(&v, "head"), &zone, &trust, now, &limits);
        if v["valid"].as_bool().expect("valid") {
            let verified = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verified.id.to_string(), text(&v, "id"), "{name}");
            let tag: &[u8] = b"xchg/v1/tree-head\0";
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

// An implementation of RFC 9162 2.1 of its own: recursive MTH over the leaf data, the
// verification algorithms of 2.1.3.2 and 2.1.4.2 written out again.

type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn mth(leaves: &[Vec<u8>]) -> H {
    match leaves.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &leaves[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            sha(&[&[1], &mth(&leaves[..k]), &mth(&leaves[k..])])
        }
    }
}

fn path_root(index: u64, size: u64, leaf: H, path: &[H]) -> Option<H> {
    let (mut f, mut s, mut r) = (index, size.checked_sub(1)?, leaf);
    for p in path {
        if s == 0 {
            return None;
        }
        if f % 2 == 1 || f == s {
            r = sha(&[&[1], p, &r]);
            while f % 2 == 0 && f != 0 {
                f /= 2;
                s /= 2;
            }
        } else {
            r = sha(&[&[1], &r, p]);
        }
        f /= 2;
        s /= 2;
    }
    (s == 0).then_some(r)
}

fn consistent(from: u64, to: u64, old: H, new: H, proof: &[H]) -> bool {
    if from == to {
        return proof.is_empty() && old == new;
    }
    if from == 0 {
        return proof.is_empty();
    }
    let mut p = proof.to_vec();
    if from & (from - 1) == 0 {
        p.insert(0, old);
    }
    let Some((&first, rest)) = p.split_first() else {
        return false;
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f % 2 == 1 {
        f /= 2;
        s /= 2;
    }
    let (mut fr, mut sr) = (first, first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            fr = sha(&[&[1], c, &fr]);
            sr = sha(&[&[1], c, &sr]);
            while f % 2 == 0 && f != 0 {
                f /= 2;
                s /= 2;
            }
        } else {
            sr = sha(&[&[1], &sr, c]);
        }
        f /= 2;
        s /= 2;
    }
    fr == old && sr == new && s == 0
}

fn hashes(v: &serde_json::Value) -> Vec<H> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.as_str().expect("hex"), &mut out).expect("32 bytes");
            out
        })
        .collect()
}

#[test]
fn the_merkle_vectors_roots_and_proofs_check_against_an_implementation_written_here() {
    let path = dir("merkle").join("tree-7.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    let leaves: Vec<Vec<u8>> = v["leaves"]
        .as_array()
        .expect("leaves")
        .iter()
        .map(|l| hex::decode(l.as_str().expect("hex")).expect("hex"))
        .collect();
    let roots = hashes(&v["roots"]);
    for (n, root) in roots.iter().enumerate() {
        assert_eq!(*root, mth(&leaves[..n]), "root of {n}");
    }
    for (i, h) in hashes(&v["leaf_hashes"]).iter().enumerate() {
        assert_eq!(*h, sha(&[&[0], &leaves[i]]), "leaf {i}");
    }
    let mut proofs = 0;
    for p in v["inclusion"].as_array().expect("inclusion") {
        let (index, size) = (
            p["index"].as_u64().expect("i"),
            p["size"].as_u64().expect("n"),
        );
        let leaf = sha(&[&[0], &leaves[index as usize]]);
        let path = hashes(&p["audit_path"]);
        assert_eq!(
            path_root(index, size, leaf, &path),
            Some(roots[size as usize]),
            "inclusion of {index} in {size}"
        );
        proofs += 1;
    }
    assert_eq!(proofs, 28, "every index of every size from 1 to 7");
    for p in v["consistency"].as_array().expect("consistency") {
        let (from, to) = (p["from"].as_u64().expect("m"), p["to"].as_u64().expect("n"));
        let proof = hashes(&p["proof"]);
        assert!(
            consistent(from, to, roots[from as usize], roots[to as usize], &proof),
            "consistency of {from} to {to}"
        );
        if from > 0 && from < to {
            assert!(!consistent(from, to, [0; 32], roots[to as usize], &proof));
        }
        proofs += 1;
    }
    assert_eq!(proofs, 28 + 36);
}
