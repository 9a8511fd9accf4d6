//! A revocation applies to what the revoked key already signed (PROTOCOL.md 9): a copy that
//! Zhengzhou recognised from an announcement signed by a Xuchang node key becomes `revoked`
//! when Xuchang's root revokes that key, with the revocation in the copy's history and
//! provenance. Whole federation in one process.

use base64::Engine as _;
use xchg_federation_config::layout::LayoutKind;
use xchg_federation_config::{load, read_key_file};
use xchg_node::federation::Tuning;
use xchg_protocol::{Envelope, Revocation, Timestamp};
use xchg_tests::example_listing;
use xchg_tests::in_process::Federation;

const XUCHANG: usize = 0;
const ZHENGZHOU: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_recognised_under_a_revoked_key_become_revoked_with_the_revocation_shown()
-> anyhow::Result<()> {
    let fed = Federation::start(LayoutKind::TwoExchanges, 1, Tuning::default(), |_, _| {}).await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("signed before the key leaked"))
        .await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;

    // Xuchang's root revokes the node key that signed it. Base64, the form of earlier releases,
    // still accepted for the envelope.
    let node = &fed.layout.exchanges[0].zones[0].nodes[0];
    let config = load(&fed.layout_dir().join(&node.config), Timestamp::now())?.config;
    let key = read_key_file(&config.node.key_file)?;
    let root = read_key_file(&fed.layout_dir().join("root/xuchang-root.key"))?;
    let revocation = Envelope::revocation(
        &Revocation {
            exchange: "xuchang".parse()?,
            key: key.public(),
            reason: "node key leaked".into(),
            revoked_at: Timestamp::now(),
        },
        &root,
    );
    let body = serde_json::json!({
        "envelope": base64::engine::general_purpose::STANDARD.encode(revocation.to_bytes())
    });
    let admin = fed.zone_tokens(XUCHANG).admin.clone();
    let (s, v) = fed
        .call(
            XUCHANG,
            0,
            reqwest::Method::POST,
            "/v1/federation/revocations",
            &admin,
            Some(body),
        )
        .await?;
    assert_eq!(s, 201, "{v}");

    fed.wait_for_state(ZHENGZHOU, 0, &id, "revoked").await?;
    let token = fed.zone_tokens(ZHENGZHOU).regulator.clone();
    let (_, detail) = fed
        .get(ZHENGZHOU, 0, &format!("/v1/listings/{id}"), &token)
        .await?;
    let revoked = &detail["provenance"]["revocation"];
    let key_hex = key.public().to_string();
    assert_eq!(revoked["key"], key_hex.as_str(), "{detail}");
    assert_eq!(revoked["exchange"], "xuchang", "{detail}");
    assert_eq!(revoked["reason"], "node key leaked", "{detail}");
    assert_eq!(
        revoked["content_id"],
        revocation.id.to_string().as_str(),
        "{detail}"
    );
    let last = detail["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["action"], "revoke", "{detail}");
    assert_eq!(last["to_state"], "revoked", "{detail}");
    // Keys are lowercase hex in JSON (PROTOCOL.md 2.10).
    let signer = &detail["provenance"]["recognitions"][0]["signer"];
    assert_eq!(signer, key_hex.as_str(), "{detail}");
    // A search by state finds it.
    let (_, found) = fed
        .get(
            ZHENGZHOU,
            0,
            "/v1/listings?state=revoked&consistency=local",
            &token,
        )
        .await?;
    assert_eq!(found["total"], 1, "{found}");
    fed.shutdown().await;
    Ok(())
}
