//! The verifiable audit log (PROTOCOL.md 12) on a real three-node zone: the signed tree head,
//! and every inclusion and consistency proof of small sizes checked by an implementation of
//! RFC 9162 2.1 written here (not the node's); `xchg audit verify` against the API, and against
//! a stopped node's files after one audit row was edited in its SQLite file.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use sha2::{Digest, Sha256};
use xchg_tests::{Zone, example_listing, xchg_binary};

const ELECTION: Duration = Duration::from_secs(30);

type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// MTH of RFC 9162 2.1.1 over leaf hashes, recursively.
fn mth(leaves: &[H]) -> H {
    match leaves.len() {
        0 => sha(&[]),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            sha(&[&[1], &mth(&leaves[..k]), &mth(&leaves[k..])])
        }
    }
}

/// The inclusion path of RFC 9162 2.1.3.1, computed from the leaves directly.
fn path(m: usize, leaves: &[H]) -> Vec<H> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// SUBPROOF of RFC 9162 2.1.4.1, from the leaves directly.
fn subproof(m: usize, leaves: &[H], whole: bool) -> Vec<H> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![mth(leaves)] };
    }
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    if m <= k {
        let mut p = subproof(m, &leaves[..k], whole);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn hashes(v: &Value) -> anyhow::Result<Vec<H>> {
    v.as_array()
        .context("not an array")?
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.as_str().context("not text")?, &mut out)?;
            Ok(out)
        })
        .collect()
}

/// Every record's leaf hash, `SHA-256(0x00 ‖ record bytes)`, the record bytes being the
/// canonical CBOR of the record without `hash` (checked against the record's own `hash`).
async fn leaves(zone: &Zone, token: &str) -> anyhow::Result<Vec<H>> {
    let (s, page) = zone.get(0, "/v1/audit?limit=1000", Some(token)).await?;
    ensure!(s == 200, "audit answered {s}: {page}");
    let mut out = Vec::new();
    for item in page["items"].as_array().context("items")? {
        let record: xchg_node::audit::AuditRecord = serde_json::from_value(item.clone())?;
        let bytes = record.content.bytes();
        ensure!(sha(&[&bytes]) == record.hash, "record bytes of {item}");
        out.push(sha(&[&[0], &bytes]));
    }
    Ok(out)
}

fn audit_verify(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(xchg_binary())
        .args(["audit", "verify"])
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_check_against_an_implementation_written_here_and_a_tampered_row_is_named()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, ELECTION).await?;
    let tokens = zone.tokens().clone();
    for i in 0..6 {
        zone.approve_new(leader, &tokens, &example_listing(&format!("audit-{i}")))
            .await?;
    }

    // The signed head: it verifies as a head of this zone, and its root is the MTH of every
    // record's leaf.
    let (s, head) = zone.get(1, "/v1/audit/head", Some(&tokens.buyer)).await?;
    ensure!(s == 200, "head answered {s}: {head}");
    let leaves = leaves(&zone, &tokens.regulator).await?;
    let size = head["size"].as_u64().context("size")? as usize;
    ensure!(
        size >= 12 && size <= leaves.len(),
        "size {size} of {}",
        leaves.len()
    );
    ensure!(
        head["root_hash"] == hex::encode(mth(&leaves[..size])),
        "{head}"
    );
    let signed = hex::decode(head["signed_head"].as_str().context("signed_head")?)?;
    let mut trust = xchg_protocol::TrustStore::default();
    let root_key = zone.layout.exchanges[0].root_public_key.clone();
    trust.trust(
        zone.layout.exchanges[0].id.clone(),
        xchg_protocol::PublicKey::from_base64(&root_key).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let zone_id: xchg_protocol::ZoneId = head["zone"].as_str().context("zone")?.parse()?;
    let verified = xchg_protocol::tree_head::verify(
        &signed,
        &zone_id,
        &trust,
        xchg_protocol::Timestamp::now(),
        &xchg_protocol::tree_head::limits(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(verified.body.size as usize == size);
    ensure!(verified.signer.to_string() == head["signer"].as_str().unwrap_or_default());

    // Every index of every size up to 12, and every pair of sizes up to 12.
    let n = 12;
    for size in 1..=n {
        for index in 0..size {
            let (s, p) = zone
                .get(
                    0,
                    &format!("/v1/audit/proof/inclusion?index={index}&size={size}"),
                    Some(&tokens.buyer),
                )
                .await?;
            ensure!(s == 200, "inclusion {index} {size}: {s} {p}");
            ensure!(p["leaf_hash"] == hex::encode(leaves[index]), "{p}");
            ensure!(
                hashes(&p["audit_path"])? == path(index, &leaves[..size]),
                "inclusion of {index} in {size}: {p}"
            );
        }
    }
    for to in 0..=n {
        for from in 0..=to {
            let (s, p) = zone
                .get(
                    0,
                    &format!("/v1/audit/proof/consistency?from={from}&to={to}"),
                    Some(&tokens.buyer),
                )
                .await?;
            ensure!(s == 200, "consistency {from} {to}: {s} {p}");
            let expected = if from == 0 {
                Vec::new()
            } else {
                subproof(from, &leaves[..to], true)
            };
            ensure!(
                hashes(&p["proof"])? == expected,
                "consistency of {from} to {to}: {p}"
            );
        }
    }

    // Bad parameters are named.
    for (query, field) in [
        ("inclusion?index=3&size=3", "index"),
        ("inclusion?index=0&size=0", "size"),
        ("inclusion?index=0&size=99999", "size"),
        ("inclusion?index=x&size=3", "index"),
        ("consistency?from=5&to=4", "from"),
        ("consistency?from=1&to=99999", "to"),
    ] {
        let (s, e) = zone
            .get(0, &format!("/v1/audit/proof/{query}"), Some(&tokens.buyer))
            .await?;
        ensure!(s == 400, "{query}: {s} {e}");
        ensure!(e["error"]["field"] == field, "{query}: {e}");
    }
    let (s, e) = zone
        .get(0, "/v1/audit/proof/inclusion?size=3", Some(&tokens.buyer))
        .await?;
    ensure!(
        s == 400 && e["error"]["code"] == "invalid_query",
        "a missing index: {s} {e}"
    );
    let (s, _) = zone.get(0, "/v1/audit/head", None).await?;
    ensure!(s == 401, "a head without a token: {s}");

    // The CLI against the API: the whole log checks.
    let url = zone.nodes[0].api_url.clone();
    let (ok, out, err) = audit_verify(&[
        "--node",
        &url,
        "--token",
        &tokens.regulator,
        "--root-key",
        &root_key,
    ])?;
    ensure!(ok, "verify failed: {out} {err}");
    ensure!(out.contains("ok: "), "{out}");

    // Node 2 serves a head (kept in its data directory), is stopped, and checks offline.
    let (s, _) = zone.get(2, "/v1/audit/head", Some(&tokens.buyer)).await?;
    ensure!(s == 200);
    let dir = zone.data_dir(2)?;
    zone.kill(2);
    let dir_arg = dir.to_string_lossy().into_owned();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("audit-head.cbor"))?
            .permissions()
            .mode();
        ensure!(mode & 0o777 == 0o600, "the kept head is mode {mode:o}");
    }
    let (ok, out, err) = audit_verify(&["--data-dir", &dir_arg, "--root-key", &root_key])?;
    ensure!(
        ok,
        "offline verify of an untouched node failed: {out} {err}"
    );

    // One row's result edited in the SQLite file: named by seq and field.
    let db = rusqlite::Connection::open(dir.join("catalog.db"))?;
    let changed = db.execute(
        "UPDATE audit SET result = 'refused:forbidden: rewritten' WHERE seq = 5",
        [],
    )?;
    ensure!(changed == 1);
    drop(db);
    let (ok, out, err) = audit_verify(&["--data-dir", &dir_arg])?;
    ensure!(!ok, "a tampered log verified: {out} {err}");
    ensure!(err.contains("record 5, field hash"), "not named: {err}");

    // Rewritten with every hash recomputed: the chain holds, the tree and the head do not.
    let db = rusqlite::Connection::open(dir.join("catalog.db"))?;
    let rows: Vec<(i64, xchg_node::audit::AuditRecord)> = {
        let mut q = db.prepare(
            "SELECT seq, raft_index, at, actor, role, action, object_id, result FROM audit \
             ORDER BY seq",
        )?;
        let mut prev = [0u8; 32];
        let mut out = Vec::new();
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let content = xchg_node::audit::AuditContent {
                seq: r.get::<_, i64>(0)? as u64,
                raft_index: r.get::<_, i64>(1)? as u64,
                at: xchg_protocol::Timestamp(r.get::<_, i64>(2)? as u64),
                actor: r.get(3)?,
                role: r.get(4)?,
                action: r.get(5)?,
                object_id: r.get(6)?,
                result: r.get(7)?,
                prev_hash: prev,
            };
            let hash = content.hash();
            prev = hash;
            out.push((r.get(0)?, xchg_node::audit::AuditRecord { content, hash }));
        }
        out
    };
    for (seq, r) in &rows {
        db.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![&r.content.prev_hash[..], &r.hash[..], seq],
        )?;
    }
    drop(db);
    let (ok, _, err) = audit_verify(&["--data-dir", &dir_arg])?;
    ensure!(!ok, "a rewritten log verified: {err}");
    ensure!(
        err.contains("record 5, field leaf_hash"),
        "not named: {err}"
    );
    Ok(())
}

/// Rewrites the audit log of the stopped node whose data directory is `dir`: record `seq`'s
/// result changed, every hash after it recomputed, and the Merkle tree dropped (the node
/// rebuilds it from the rewritten records on its next append) — a zone rewriting its history
/// so that its own chain still checks.
fn rewrite_history(dir: &std::path::Path, seq: i64) -> anyhow::Result<()> {
    let db = rusqlite::Connection::open(dir.join("catalog.db"))?;
    db.execute(
        "UPDATE audit SET result = 'refused:forbidden: never happened' WHERE seq = ?1",
        [seq],
    )?;
    let rows: Vec<xchg_node::audit::AuditContent> = {
        let mut q = db.prepare(
            "SELECT seq, raft_index, at, actor, role, action, object_id, result FROM audit \
             ORDER BY seq",
        )?;
        let mut rows = q.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(xchg_node::audit::AuditContent {
                seq: r.get::<_, i64>(0)? as u64,
                raft_index: r.get::<_, i64>(1)? as u64,
                at: xchg_protocol::Timestamp(r.get::<_, i64>(2)? as u64),
                actor: r.get(3)?,
                role: r.get(4)?,
                action: r.get(5)?,
                object_id: r.get(6)?,
                result: r.get(7)?,
                prev_hash: [0; 32],
            });
        }
        out
    };
    let mut prev = [0u8; 32];
    for mut c in rows {
        c.prev_hash = prev;
        let hash = c.hash();
        db.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![&prev[..], &hash[..], c.seq as i64],
        )?;
        prev = hash;
    }
    db.execute("DELETE FROM audit_tree", [])?;
    Ok(())
}

/// The audit head `observer` holds of `zone`, from its overview.
async fn held_head(
    fed: &Zone,
    observer: usize,
    token: &str,
    zone: &str,
) -> anyhow::Result<Option<Value>> {
    let (s, o) = fed
        .get(observer, "/v1/federation/overview", Some(token))
        .await?;
    ensure!(s == 200, "overview answered {s}: {o}");
    Ok(o["audit_heads"]
        .as_array()
        .context("audit_heads")?
        .iter()
        .find(|h| h["zone"] == zone)
        .cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_zone_catches_a_zone_whose_signed_heads_rewrite_its_history()
-> anyhow::Result<()> {
    const XUCHANG: &str = "xuchang/municipal";
    const ZHENGZHOU: &str = "zhengzhou/main";
    let mut fed = Zone::generate("two-exchanges", 1)?;
    let hub = fed.zone_nodes(XUCHANG)[0];
    let zz = fed.zone_nodes(ZHENGZHOU)[0];
    fed.start_all()?;
    fed.wait_for_leader(hub, ELECTION).await?;
    fed.wait_for_leader(zz, ELECTION).await?;
    let ht = fed.zone_tokens(XUCHANG).clone();
    let zt = fed.zone_tokens(ZHENGZHOU).clone();
    for i in 0..3 {
        fed.approve_new(zz, &zt, &example_listing(&format!("zz-{i}")))
            .await?;
    }
    let (_, head) = fed.get(zz, "/v1/audit/head", Some(&zt.buyer)).await?;
    let size = head["size"].as_u64().context("size")?;
    ensure!(size >= 6, "{head}");

    // The hub holds Zhengzhou's head once it has caught up with those records.
    xchg_tests::eventually(
        Duration::from_secs(60),
        "the hub holding zhengzhou's head",
        || async {
            let check = async {
                let held = held_head(&fed, hub, &ht.regulator, ZHENGZHOU).await?;
                let held = held.context("not held yet")?;
                ensure!(held["size"].as_u64() >= Some(size), "held {held}");
                ensure!(held["consistent"] == true, "{held}");
                Ok(())
            };
            check
                .await
                .map(Some)
                .map_err(|e: anyhow::Error| format!("{e:#}"))
        },
    )
    .await?;

    // Zhengzhou rewrites record 2 of its log, every hash after it recomputed, and goes on.
    let dir = fed.data_dir(zz)?;
    fed.kill(zz);
    rewrite_history(&dir, 2)?;
    fed.start(zz)?;
    fed.wait_for_leader(zz, ELECTION).await?;
    fed.approve_new(zz, &zt, &example_listing("zz-after"))
        .await?;

    // Its next head, signed with its own key, does not extend the one the hub holds.
    xchg_tests::eventually(
        Duration::from_secs(60),
        "the hub flagging zhengzhou",
        || async {
            let check = async {
                let held = held_head(&fed, hub, &ht.regulator, ZHENGZHOU)
                    .await?
                    .context("not held")?;
                ensure!(held["consistent"] == false, "not flagged: {held}");
                ensure!(
                    held["problem"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("does not extend"),
                    "{held}"
                );
                ensure!(held["evidence"]["signed_head"].is_string(), "{held}");
                Ok(())
            };
            check
                .await
                .map(Some)
                .map_err(|e: anyhow::Error| format!("{e:#}"))
        },
    )
    .await?;
    Ok(())
}
