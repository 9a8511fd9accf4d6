//! Registration certificates and the federation (issue #14, PROTOCOL.md 10.3): a certificate
//! whose signing node key its exchange revoked before the certificate's issue time is shown
//! invalid. Whole federation in one process.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;

use serde_json::{Value, json};
use xchg_federation_config::layout::LayoutKind;
use xchg_federation_config::{load, read_key_file};
use xchg_node::federation::Tuning;
use xchg_protocol::{Envelope, Revocation, Timestamp};
use xchg_tests::in_process::Federation;
use xchg_tests::{eventually, example_listing};

const XUCHANG: usize = 0;

/// A registration of listing `id` with one evidence hash.
fn registration(id: &str) -> Value {
    json!({
        "listing_id": id,
        "source": "collected",
        "rights": ["holding"],
        "evidence_hashes": [format!("sha256:{}", "ab".repeat(32))],
    })
}

/// Registers listing `id` of zone `zone` and approves the registration on its first node; the
/// certificate number.
async fn certify(fed: &Federation, zone: usize, id: &str) -> anyhow::Result<String> {
    let t = fed.zone_tokens(zone).clone();
    let (s, v) = fed
        .post_keyed(zone, 0, "/v1/registrations", &t.provider, &registration(id))
        .await?;
    anyhow::ensure!(s == 201, "register: {s} {v}");
    let n = v["id"].as_u64().context("a registration number")?;
    let path = format!("/v1/registrations/{n}/approve");
    let (s, v) = fed.post(zone, 0, &path, &t.operator, &json!({})).await?;
    anyhow::ensure!(s == 200, "approve: {s} {v}");
    Ok(v["certificate_number"]
        .as_str()
        .context("a certificate number")?
        .to_owned())
}

/// Posts, as zone `zone`'s admin, the revocation by Xuchang's root of the node key of the
/// zone's first node, dated `revoked_at`.
async fn revoke_key(fed: &Federation, zone: usize, revoked_at: Timestamp) -> anyhow::Result<()> {
    let node = &fed.layout.exchanges[0].zones[0].nodes[0];
    let config = load(&fed.layout_dir().join(&node.config), Timestamp::now())?.config;
    let key = read_key_file(&config.node.key_file)?;
    let root = read_key_file(&fed.layout_dir().join("root/xuchang-root.key"))?;
    let revocation = Envelope::revocation(
        &Revocation {
            exchange: "xuchang".parse()?,
            key: key.public(),
            reason: "node key leaked".into(),
            revoked_at,
        },
        &root,
    );
    let envelope = base64::engine::general_purpose::STANDARD.encode(revocation.to_bytes());
    let body = json!({ "envelope": envelope });
    let admin = fed.zone_tokens(zone).admin.clone();
    let (s, v) = fed
        .post(zone, 0, "/v1/federation/revocations", &admin, &body)
        .await?;
    anyhow::ensure!(s == 201, "revocation: {s} {v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_whose_key_was_revoked_before_its_issue_time_is_shown_invalid()
-> anyhow::Result<()> {
    // Three members: the one whose key is revoked stops serving, the others answer.
    let fed = Federation::start(LayoutKind::TwoExchanges, 3, Tuning::default(), |_, _| {}).await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("登记证书与密钥吊销"))
        .await?;
    let before = Timestamp::now();
    let number = certify(&fed, XUCHANG, &id).await?;
    let path = format!("/v1/certificates/{number}");
    let token = fed.zone_tokens(XUCHANG).regulator.clone();
    let (s, view) = fed.get(XUCHANG, 0, &path, &token).await?;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["verification"]["valid"], true, "{view}");

    // The root says the key was lost a moment before the certificate was issued.
    revoke_key(&fed, XUCHANG, Timestamp(before.0 - 1)).await?;
    let view = eventually(
        Duration::from_secs(30),
        "the certificate invalid",
        || async {
            let (_, v) = fed
                .get(XUCHANG, 1, &path, &token)
                .await
                .map_err(|e| e.to_string())?;
            if v["verification"]["valid"] == false {
                return Ok(Some(v));
            }
            Err(v.to_string())
        },
    )
    .await?;
    assert_eq!(view["verification"]["error"], "revoked_key", "{view}");
    assert_eq!(
        view["status"], "valid",
        "the zone's own record is unchanged: {view}"
    );
    Ok(())
}
