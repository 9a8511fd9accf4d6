//! Registration and rights confirmation through the API of a 3-node zone (issue #14): a
//! provider registers its listing on one node, an operator approves it on another (whose node
//! key signs the certificate), every node serves the certificate with its verification, and
//! `xchg certificate verify` checks it offline, naming why a tampered one fails. Every refusal
//! is answered with its rule.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use xchg_tests::{Zone, eventually, example_listing, party_application, xchg_binary};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// How long a write may take to show on every node.
const REPLICATION: Duration = Duration::from_secs(10);

async fn zone() -> anyhow::Result<Zone> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    Ok(zone)
}

/// Expects `answer` to be `status` `code` blaming `field` when given; its message.
fn refused(
    answer: &(u16, Value),
    status: u16,
    code: &str,
    field: Option<&str>,
) -> anyhow::Result<String> {
    let (s, body) = answer;
    let error = &body["error"];
    ensure!(
        *s == status && error["code"] == code,
        "expected {status} {code}, got {s} {body}"
    );
    if let Some(field) = field {
        ensure!(error["field"] == field, "expected field {field}: {body}");
    }
    Ok(error["message"].as_str().unwrap_or_default().to_owned())
}

fn evidence(n: u8) -> String {
    format!("sha256:{}", hex_encode(&[n; 32]))
}

fn registration(listing_id: &str) -> Value {
    json!({
        "listing_id": listing_id,
        "source": "collected",
        "rights": ["holding", "operating"],
        "evidence_hashes": [evidence(1), evidence(2)],
    })
}

/// A listed listing of the zone's demo provider, registered on node 1; its id and the
/// registration's number.
async fn registered(zone: &Zone) -> anyhow::Result<(String, u64)> {
    let tokens = zone.tokens();
    let listing = zone
        .approve_new(0, tokens, &example_listing("登记"))
        .await?;
    let answer = zone
        .post(
            1,
            "/v1/registrations",
            &tokens.provider,
            &registration(&listing),
        )
        .await?;
    ensure!(
        answer.0 == 201 && answer.1["state"] == "pending",
        "register: {answer:?}"
    );
    let id = answer.1["id"].as_u64().context("a registration number")?;
    Ok((listing, id))
}

/// The exchange's root public key, base64, from node 0's configuration.
fn root_key(zone: &Zone) -> anyhow::Result<String> {
    let config =
        xchg_federation_config::load(&zone.nodes[0].config, xchg_protocol::Timestamp::now())?;
    Ok(config.config.exchange.root_public_key.to_base64())
}

/// Runs `xchg certificate verify` on `hex` (written to a file) with `root`: exit success, and
/// standard output and error together.
fn verify_offline(
    zone: &Zone,
    name: &str,
    hex: &str,
    root: &str,
) -> anyhow::Result<(bool, String)> {
    let file = zone.dir.path().join(format!("{name}.hex"));
    std::fs::write(&file, hex)?;
    let out = Command::new(xchg_binary())
        .args(["certificate", "verify"])
        .arg(&file)
        .args(["--root-key", root])
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(hex: &str) -> anyhow::Result<Vec<u8>> {
    (0..hex.len() / 2)
        .map(|i| {
            Ok(u8::from_str_radix(
                hex.get(2 * i..2 * i + 2).context("odd hex")?,
                16,
            )?)
        })
        .collect()
}

/// What a tampering changes in a signed certificate.
enum Tamper {
    /// Adds the processing-use right to the body (and recomputes its id).
    Rights,
    /// Moves the delegation to another zone after the root signed it.
    DelegationZone,
}

/// `hex` (a signed certificate) changed by `how`, as hex.
fn tampered(hex: &str, how: Tamper) -> anyhow::Result<String> {
    use xchg_protocol::canonical::{from_canonical, to_canonical};
    let limits = xchg_protocol::Limits::default();
    let bytes = hex_decode(hex)?;
    let mut signed = xchg_protocol::SignedCertificate::from_bytes(&bytes, &limits)?;
    match how {
        Tamper::Rights => {
            let mut c: xchg_protocol::Certificate = from_canonical(&signed.body, &limits)?;
            c.rights.push(xchg_protocol::Right::ProcessingUse);
            signed.body = to_canonical(&c)?;
            signed.id = xchg_protocol::ContentId::of(&signed.body);
        }
        Tamper::DelegationZone => {
            signed.delegation.delegation.zone = "xuchang/yuzhou".parse()?;
        }
    }
    Ok(hex_encode(&signed.to_bytes()))
}

#[tokio::test]
async fn a_registration_approved_on_one_node_is_certified_on_every_node_and_verifies_offline()
-> anyhow::Result<()> {
    let zone = zone().await?;
    let tokens = zone.tokens();
    let (listing, id) = registered(&zone).await?;
    let approve = format!("/v1/registrations/{id}/approve");
    let answer = zone
        .post(
            2,
            &approve,
            &tokens.operator,
            &json!({"notes": "营业执照与采集合同已核验"}),
        )
        .await?;
    ensure!(answer.0 == 200, "approve: {answer:?}");
    let number = answer.1["certificate_number"]
        .as_str()
        .context("a certificate number")?
        .to_owned();
    ensure!(
        number.starts_with("XC-20") && number.ends_with(&format!("-MUNICIPAL-{id:06}")),
        "the number names the year, the zone and the registration: {number}"
    );
    let path = format!("/v1/certificates/{number}?consistency=local");
    let view = eventually(REPLICATION, "the certificate on every node", || async {
        let mut last = Value::Null;
        for i in 0..3 {
            let (s, v) = zone
                .get(i, &path, Some(&tokens.buyer))
                .await
                .map_err(|e| e.to_string())?;
            if s != 200 {
                return Err(format!("node {i}: {s} {v}"));
            }
            last = v;
        }
        Ok(Some(last))
    })
    .await?;
    ensure!(view["status"] == "valid", "{view}");
    ensure!(view["verification"]["valid"] == true, "{view}");
    ensure!(
        view["certificate"]["listing_id"] == listing.as_str(),
        "{view}"
    );
    ensure!(
        view["certificate"]["rights"] == json!(["holding", "operating"]),
        "{view}"
    );
    let (s, reg) = zone
        .get(
            0,
            &format!("/v1/registrations/{id}"),
            Some(&tokens.operator),
        )
        .await?;
    ensure!(s == 200 && reg["state"] == "approved", "{reg}");
    ensure!(reg["certificate_number"] == number.as_str(), "{reg}");

    let signed = view["signed"].as_str().context("signed hex")?.to_owned();
    let root = root_key(&zone)?;
    let (ok, out) = verify_offline(&zone, "valid", &signed, &root)?;
    ensure!(ok && out.contains("valid: every check passed"), "{out}");
    ensure!(
        out.contains(&number) && out.contains("checks, in order"),
        "{out}"
    );

    // The whole JSON of GET /v1/certificates/{number} verifies too; with a readable field
    // changed (the signed bytes untouched) it does not.
    let (ok, out) = verify_offline(&zone, "json", &view.to_string(), &root)?;
    ensure!(ok && out.contains("valid: every check passed"), "{out}");
    let mut edited = view.clone();
    edited["certificate"]["holder"] = json!("someone-else");
    let (ok, out) = verify_offline(&zone, "edited", &edited.to_string(), &root)?;
    ensure!(
        !ok && out.contains("disagrees with them in: holder"),
        "{out}"
    );
    let (ok, out) = verify_offline(&zone, "root-key", &signed, "zz")?;
    ensure!(!ok && out.contains("base64"), "{out}");

    let (ok, out) = verify_offline(&zone, "rights", &tampered(&signed, Tamper::Rights)?, &root)?;
    ensure!(!ok && out.contains("invalid: bad_signature"), "{out}");
    let (ok, out) = verify_offline(
        &zone,
        "zone",
        &tampered(&signed, Tamper::DelegationZone)?,
        &root,
    )?;
    ensure!(
        !ok && out.contains("invalid: bad_delegation_signature"),
        "{out}"
    );
    let stranger = xchg_protocol::Keypair::from_seed(&[0x33; 32])
        .public()
        .to_base64();
    let (ok, out) = verify_offline(&zone, "root", &signed, &stranger)?;
    ensure!(!ok && out.contains("invalid: untrusted_root"), "{out}");
    Ok(())
}

#[tokio::test]
async fn every_refusal_of_a_registration_or_certificate_names_its_rule() -> anyhow::Result<()> {
    let zone = zone().await?;
    let tokens = zone.tokens();
    let (listing, id) = registered(&zone).await?;

    // Another admitted party's provider token registering the demo party's listing.
    let operator = &tokens.operator;
    let answer = zone
        .post(
            0,
            "/v1/parties",
            operator,
            &party_application("yuzhou-ceramics", &["resource_holder"]),
        )
        .await?;
    ensure!(answer.0 == 201, "apply: {answer:?}");
    let answer = zone
        .post(1, "/v1/parties/yuzhou-ceramics/admit", operator, &json!({}))
        .await?;
    ensure!(answer.0 == 200, "admit: {answer:?}");
    let body = json!({"role": "provider", "party": "yuzhou-ceramics", "label": "test"});
    let (s, t) = zone.post(2, "/v1/tokens", &tokens.admin, &body).await?;
    ensure!(s == 201, "token: {t}");
    let other = t["token"].as_str().context("token")?.to_owned();
    let answer = zone
        .post(0, "/v1/registrations", &other, &registration(&listing))
        .await?;
    let why = refused(&answer, 403, "forbidden", Some("listing_id"))?;
    ensure!(
        why.contains("regist") && !why.contains("submit or update listings"),
        "the refusal speaks of registering: {why}"
    );

    // Nor an admin token, which has no party (a user registered a provider's listing with one).
    let answer = zone
        .post(
            0,
            "/v1/registrations",
            &tokens.admin,
            &registration(&listing),
        )
        .await?;
    refused(&answer, 403, "forbidden", None)?;

    let unknown = format!("sha256:{}", "ab".repeat(32));
    let answer = zone
        .post(
            0,
            "/v1/registrations",
            &tokens.provider,
            &registration(&unknown),
        )
        .await?;
    refused(&answer, 404, "not_found", Some("listing_id"))?;

    let mut bad = registration(&listing);
    bad["evidence_hashes"] = json!([evidence(1), "sha256:NOT-HEX"]);
    let answer = zone
        .post(0, "/v1/registrations", &tokens.provider, &bad)
        .await?;
    refused(&answer, 400, "invalid_field", Some("evidence_hashes[1]"))?;

    let answer = zone
        .post(
            0,
            "/v1/registrations",
            &tokens.provider,
            &registration(&listing),
        )
        .await?;
    refused(&answer, 409, "conflict", None)?;

    let approve = format!("/v1/registrations/{id}/approve");
    let answer = zone.post(1, &approve, operator, &json!({})).await?;
    ensure!(answer.0 == 200, "approve: {answer:?}");
    let number = answer.1["certificate_number"]
        .as_str()
        .context("number")?
        .to_owned();
    let answer = zone.post(2, &approve, operator, &json!({})).await?;
    let why = refused(&answer, 409, "illegal_transition", None)?;
    ensure!(why.contains("already approved"), "{why}");
    let reject = format!("/v1/registrations/{id}/reject");
    let answer = zone
        .post(0, &reject, operator, &json!({"reason": "late"}))
        .await?;
    refused(&answer, 409, "illegal_transition", None)?;
    let answer = zone.post(0, &approve, &tokens.provider, &json!({})).await?;
    refused(&answer, 403, "forbidden", None)?;

    let revoke = format!("/v1/certificates/{number}/revoke");
    let answer = zone
        .post(
            2,
            &revoke,
            operator,
            &json!({"reason": "evidence found forged"}),
        )
        .await?;
    ensure!(
        answer.0 == 200 && answer.1["status"] == "revoked",
        "revoke: {answer:?}"
    );
    ensure!(
        answer.1["revoke_reason"] == "evidence found forged",
        "{answer:?}"
    );
    let path = format!("/v1/certificates/{number}?consistency=local");
    eventually(REPLICATION, "the revocation on every node", || async {
        for i in 0..3 {
            let (_, v) = zone
                .get(i, &path, Some(&tokens.buyer))
                .await
                .map_err(|e| e.to_string())?;
            if v["status"] != "revoked" {
                return Err(format!("node {i}: {v}"));
            }
        }
        Ok(Some(()))
    })
    .await?;
    let answer = zone
        .post(0, &revoke, operator, &json!({"reason": "again"}))
        .await?;
    refused(&answer, 409, "illegal_transition", None)?;
    Ok(())
}
