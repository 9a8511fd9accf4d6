//! Certificates travel with exported listings (issue #14, PROTOCOL.md 10.5): Zhengzhou's
//! agreement with Xuchang requires registration, so a Xuchang listing is recognised there only
//! once Zhengzhou holds a valid certificate for that listing version; a certificate that does
//! not verify is refused, recorded, and lets nothing in; a certificate Xuchang revokes stops
//! counting at Zhengzhou, which withdraws the listing it let in (PROTOCOL.md 10.6), and
//! recognises it again once Xuchang certifies it again, while a revocation another zone signed
//! is refused and recorded. Whole federation in one process.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use xchg_federation_config::layout::LayoutKind;
use xchg_federation_config::layout::root_key_file;
use xchg_federation_config::{load, read_key_file};
use xchg_node::federation::Tuning;
use xchg_node::gossip::{Broadcast, certificate_topic_of};
use xchg_protocol::canonical::to_canonical;
use xchg_protocol::certificate::{Certificate, SignedCertificate, number};
use xchg_protocol::certificate_revocation::{self, CertificateRevocation};
use xchg_protocol::{ContentId, Delegation, Keypair, Right, SignedDelegation, Source, Timestamp};
use xchg_tests::in_process::Federation;
use xchg_tests::{eventually, example_listing};

/// Zone indices of the two-exchanges layout.
const XUCHANG: usize = 0;
const ZHENGZHOU: usize = 1;

/// A federation where Zhengzhou recognises Xuchang's listings only with a certificate.
async fn start() -> anyhow::Result<Federation> {
    let tuning = Tuning {
        catchup_every: Duration::from_secs(1),
        ..Tuning::default()
    };
    Federation::start(LayoutKind::TwoExchanges, 1, tuning, |zone, c| {
        if zone == "zhengzhou/main" {
            for o in &mut c.outside {
                o.agreement.require_registration = true;
            }
        }
    })
    .await
}

/// `path` on Zhengzhou's node as its regulator.
async fn zhengzhou(fed: &Federation, path: &str) -> Result<Value, String> {
    let token = fed.zone_tokens(ZHENGZHOU).regulator.clone();
    let (s, v) = fed
        .get(ZHENGZHOU, 0, path, &token)
        .await
        .map_err(|e| e.to_string())?;
    if s != 200 {
        return Err(format!("{path}: {s} {v}"));
    }
    Ok(v)
}

/// Waits until Zhengzhou recorded the refusal of listing `id` for want of a certificate.
async fn refused_for_registration(fed: &Federation, id: &str) -> anyhow::Result<Value> {
    eventually(
        Duration::from_secs(30),
        "the listing refused for want of a certificate",
        || async {
            let page = zhengzhou(fed, "/v1/recognitions?decision=rejected&limit=100").await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            match items.into_iter().find(|r| r["listing_id"] == id) {
                Some(r) => Ok(Some(r)),
                None => Err(page.to_string()),
            }
        },
    )
    .await
}

/// Registers listing `id` of Xuchang and approves the registration; the certificate number.
async fn certify(fed: &Federation, id: &str) -> anyhow::Result<String> {
    let t = fed.zone_tokens(XUCHANG).clone();
    let body = json!({
        "listing_id": id,
        "source": "collected",
        "rights": ["holding"],
        "evidence_hashes": [format!("sha256:{}", "ab".repeat(32))],
    });
    let (s, v) = fed
        .post_keyed(XUCHANG, 0, "/v1/registrations", &t.provider, &body)
        .await?;
    anyhow::ensure!(s == 201, "register: {s} {v}");
    let n = v["id"].as_u64().context("a registration number")?;
    let path = format!("/v1/registrations/{n}/approve");
    let (s, v) = fed.post(XUCHANG, 0, &path, &t.operator, &json!({})).await?;
    anyhow::ensure!(s == 200, "approve: {s} {v}");
    Ok(v["certificate_number"]
        .as_str()
        .context("a certificate number")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_without_a_certificate_is_refused_and_recognised_once_its_certificate_arrives()
-> anyhow::Result<()> {
    let fed = start().await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("登记证书随挂牌出境"))
        .await?;
    let refusal = refused_for_registration(&fed, &id).await?;
    let reason = refusal["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("registration certificate"), "{refusal}");
    let kinds = zhengzhou(&fed, "/v1/federation/verdicts?kind=registration_required")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        kinds["items"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| r["content_id"] == refusal["content_id"])),
        "the verdict names the reason: {kinds}"
    );
    assert_eq!(fed.state_on(ZHENGZHOU, 0, &id).await?, None);

    let number = certify(&fed, &id).await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;
    let valid = zhengzhou(&fed, "/v1/federation/certificates?decision=valid")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        valid["items"]
            .as_array()
            .is_some_and(|v| v.iter().any(|c| c["number"] == number.as_str())),
        "{valid}"
    );
    fed.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_certificate_is_refused_and_recorded_and_the_listing_stays_unrecognised()
-> anyhow::Result<()> {
    let fed = start().await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("篡改的登记证书"))
        .await?;
    let refusal = refused_for_registration(&fed, &id).await?;
    let content_id: ContentId = refusal["content_id"]
        .as_str()
        .context("a content id")?
        .parse()?;

    // A certificate for the listing, signed by Xuchang's node key under its delegation, then
    // given a right after signing (its id recomputed, so only the signature can tell).
    let node = &fed.layout.exchanges[0].zones[0].nodes[0];
    let config = load(&fed.layout_dir().join(&node.config), Timestamp::now())?.config;
    let key = read_key_file(&config.node.key_file)?;
    let issued_at = Timestamp::now();
    let certificate = Certificate {
        number: number(&config.zone.id, issued_at, 900_001),
        holder: fed.zone_party(XUCHANG).id.clone(),
        listing_id: id.parse()?,
        content_id,
        source: Source::Collected,
        rights: vec![Right::Holding],
        evidence: vec![ContentId::of(b"evidence")],
        zone: config.zone.id.clone(),
        issued_at,
    };
    let genuine = SignedCertificate::sign(&certificate, &key, config.zone.delegation.clone());
    let mut tampered = genuine.clone();
    let mut claimed = certificate.clone();
    claimed.rights.push(Right::Operating);
    tampered.body = to_canonical(&claimed)?;
    tampered.id = ContentId::of(&tampered.body);

    let relay = Keypair::generate();
    let (client, _events) = fed.gossip.join(&relay.public());
    let topic = certificate_topic_of("xuchang");
    client.subscribe(topic.clone()).await?;
    eventually(
        Duration::from_secs(30),
        "the tampered certificate sent",
        || async {
            match client.publish(topic.clone(), tampered.to_bytes()).await {
                Ok(()) => Ok(Some(())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    let refused = eventually(
        Duration::from_secs(30),
        "the tampered certificate refused and recorded",
        || async {
            let page = zhengzhou(&fed, "/v1/federation/certificates?decision=refused").await?;
            match page["items"].as_array().and_then(|v| v.first()).cloned() {
                Some(c) => Ok(Some(c)),
                None => Err(page.to_string()),
            }
        },
    )
    .await?;
    assert_eq!(refused["kind"], "bad_signature", "{refused}");
    assert_eq!(
        refused["certificate_id"],
        tampered.id.to_string(),
        "{refused}"
    );
    assert_eq!(fed.state_on(ZHENGZHOU, 0, &id).await?, None);
    let held = zhengzhou(&fed, "/v1/federation/certificates?decision=valid")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(held["items"], json!([]), "{held}");

    // The same certificate as signed is what lets the listing in: the signature alone was
    // what kept it out.
    client.publish(topic, genuine.to_bytes()).await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;
    fed.shutdown().await;
    Ok(())
}

/// Sends `data` on Xuchang's certificate topic from a peer of the test's own.
async fn send_on_xuchang_certificate_topic(fed: &Federation, data: Vec<u8>) -> anyhow::Result<()> {
    let relay = Keypair::generate();
    let (client, _events) = fed.gossip.join(&relay.public());
    let topic = certificate_topic_of("xuchang");
    client.subscribe(topic.clone()).await?;
    eventually(Duration::from_secs(30), "the message sent", || async {
        match client.publish(topic.clone(), data.clone()).await {
            Ok(()) => Ok(Some(())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Waits until Zhengzhou lists a received revocation of `decision`; the first one.
async fn revocation_recorded(fed: &Federation, decision: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/federation/certificate-revocations?decision={decision}");
    eventually(
        Duration::from_secs(30),
        &format!("a {decision} certificate revocation at Zhengzhou"),
        || async {
            let page = zhengzhou(fed, &path).await?;
            match page["items"].as_array().and_then(|v| v.first()).cloned() {
                Some(r) => Ok(Some(r)),
                None => Err(page.to_string()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_stops_the_partner_recognising_its_listing_and_a_forged_revocation_is_refused()
-> anyhow::Result<()> {
    let fed = start().await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("撤销登记证书"))
        .await?;
    refused_for_registration(&fed, &id).await?;
    let number = certify(&fed, &id).await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;
    let held = zhengzhou(&fed, "/v1/federation/certificates?decision=valid")
        .await
        .map_err(anyhow::Error::msg)?;
    let certificate_id: ContentId = held["items"]
        .as_array()
        .and_then(|v| v.iter().find(|c| c["number"] == number.as_str()))
        .and_then(|c| c["certificate_id"].as_str())
        .context("the certificate held at Zhengzhou")?
        .parse()?;

    // Another zone of Xuchang, with a key the root delegated to it, revokes the certificate in
    // its own name: step 10 of PROTOCOL.md 10.6 refuses it, and the listing stays recognised.
    let exchange = "xuchang".parse()?;
    let root = read_key_file(&root_key_file(&fed.layout_dir(), &exchange))?;
    let forger = Keypair::generate();
    let now = Timestamp::now();
    let delegation = SignedDelegation::sign(
        Delegation {
            exchange,
            zone: "xuchang/forger".parse()?,
            node_key: forger.public(),
            not_before: Timestamp(now.0 - 60_000),
            not_after: now.plus_millis(86_400_000),
        },
        &root,
    );
    let forged = CertificateRevocation {
        number: {
            let parts: Vec<&str> = number.split('-').collect();
            format!("XC-{}-FORGER-{}", parts[1], parts[3])
        },
        certificate_id,
        zone: "xuchang/forger".parse()?,
        reason: "forged".into(),
        revoked_at: now,
    };
    let forged = certificate_revocation::sign(&forged, &forger, delegation).to_bytes();
    send_on_xuchang_certificate_topic(&fed, forged.clone()).await?;
    let refused = revocation_recorded(&fed, "refused").await?;
    assert_eq!(refused["kind"], "wrong_origin", "{refused}");
    assert_eq!(
        refused["message_id"],
        ContentId::of(&forged).to_string(),
        "{refused}"
    );
    assert_eq!(
        fed.state_on(ZHENGZHOU, 0, &id).await?.as_deref(),
        Some("recognised")
    );

    // Xuchang's operator revokes it: Zhengzhou applies the revocation and withdraws the copy.
    let t = fed.zone_tokens(XUCHANG).clone();
    let path = format!("/v1/certificates/{number}/revoke");
    let (s, v) = fed
        .post(
            XUCHANG,
            0,
            &path,
            &t.operator,
            &json!({"reason": "证据伪造 evidence forged"}),
        )
        .await?;
    anyhow::ensure!(s == 200 && v["status"] == "revoked", "revoke: {s} {v}");
    fed.wait_for_state(ZHENGZHOU, 0, &id, "revoked").await?;
    let applied = revocation_recorded(&fed, "applied").await?;
    assert_eq!(applied["number"], number.as_str(), "{applied}");
    let held = zhengzhou(&fed, "/v1/federation/certificates?decision=valid")
        .await
        .map_err(anyhow::Error::msg)?;
    let shown = held["items"]
        .as_array()
        .and_then(|v| v.iter().find(|c| c["number"] == number.as_str()))
        .cloned()
        .context("the certificate still listed")?;
    assert_eq!(
        shown["revocation_reason"], "证据伪造 evidence forged",
        "{shown}"
    );
    let decisions = zhengzhou(&fed, "/v1/recognitions?decision=revoked&limit=100")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        decisions["items"]
            .as_array()
            .is_some_and(|v| v.iter().any(|r| {
                r["listing_id"] == id.as_str()
                    && r["reason"]
                        .as_str()
                        .is_some_and(|why| why.starts_with("certificate_revoked: "))
            })),
        "{decisions}"
    );
    fed.shutdown().await;
    Ok(())
}

/// Waits until Xuchang's certificate `number` shows `field` as `published`.
async fn published_at_xuchang(fed: &Federation, number: &str, field: &str) -> anyhow::Result<()> {
    let token = fed.zone_tokens(XUCHANG).regulator.clone();
    let path = format!("/v1/certificates/{number}");
    eventually(
        Duration::from_secs(30),
        &format!("{field} published by Xuchang"),
        || async {
            let (s, v) = fed
                .get(XUCHANG, 0, &path, &token)
                .await
                .map_err(|e| e.to_string())?;
            match (s, v[field].as_str()) {
                (200, Some("published")) => Ok(Some(())),
                _ => Err(format!("{s} {v}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_revocations_missed_while_cut_off_arrive_by_catch_up() -> anyhow::Result<()>
{
    // Three nodes per zone, so Xuchang's publisher has its own zone's nodes to publish to while
    // every link to Zhengzhou is cut (gossip and catch-up requests alike; the in-process network
    // never replays a message): whatever reaches Zhengzhou after healing came by catch-up.
    let tuning = Tuning {
        catchup_every: Duration::from_secs(1),
        ..Tuning::default()
    };
    let fed = Federation::start(LayoutKind::TwoExchanges, 3, tuning, |zone, c| {
        if zone == "zhengzhou/main" {
            for o in &mut c.outside {
                o.agreement.require_registration = true;
            }
        }
    })
    .await?;
    let kept = fed
        .approve_new(XUCHANG, example_listing("断网期间发出的证书"))
        .await?;
    let dropped = fed
        .approve_new(XUCHANG, example_listing("断网期间撤销的证书"))
        .await?;
    refused_for_registration(&fed, &kept).await?;
    refused_for_registration(&fed, &dropped).await?;
    let peers = |zone: usize| -> Vec<_> {
        fed.zones[zone]
            .iter()
            .map(|n| n.federation.net().local_peer())
            .collect()
    };
    for a in &peers(XUCHANG) {
        for b in &peers(ZHENGZHOU) {
            fed.gossip.cut(a, b);
        }
    }
    let kept_number = certify(&fed, &kept).await?;
    let dropped_number = certify(&fed, &dropped).await?;
    published_at_xuchang(&fed, &kept_number, "export").await?;
    published_at_xuchang(&fed, &dropped_number, "export").await?;
    let t = fed.zone_tokens(XUCHANG).clone();
    let path = format!("/v1/certificates/{dropped_number}/revoke");
    let (s, v) = fed
        .post(
            XUCHANG,
            0,
            &path,
            &t.operator,
            &json!({"reason": "断网期间撤销"}),
        )
        .await?;
    anyhow::ensure!(s == 200 && v["status"] == "revoked", "revoke: {s} {v}");
    published_at_xuchang(&fed, &dropped_number, "revocation_export").await?;
    // The cut held: Zhengzhou has none of it.
    let held = zhengzhou(&fed, "/v1/federation/certificates?decision=valid")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(held["items"], json!([]), "{held}");

    fed.gossip.heal_all();
    // The kept listing's certificate comes by catch-up, and the listing refused for want of it
    // is judged again and recognised, on every node of the zone.
    for node in 0..3 {
        fed.wait_for_state(ZHENGZHOU, node, &kept, "recognised")
            .await?;
    }
    // The revoked one's certificate and revocation come too: the revocation is applied and the
    // listing is not recognised.
    let applied = revocation_recorded(&fed, "applied").await?;
    assert_eq!(applied["number"], dropped_number.as_str(), "{applied}");
    assert_eq!(fed.state_on(ZHENGZHOU, 0, &dropped).await?, None);
    let held = zhengzhou(&fed, "/v1/federation/certificates?decision=valid")
        .await
        .map_err(anyhow::Error::msg)?;
    let numbers: Vec<&str> = held["items"]
        .as_array()
        .map(|v| v.iter().filter_map(|c| c["number"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        numbers.contains(&kept_number.as_str()) && numbers.contains(&dropped_number.as_str()),
        "{held}"
    );
    fed.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_withdrawn_for_its_revoked_certificate_is_recognised_again_once_certified_again()
-> anyhow::Result<()> {
    let fed = start().await?;
    let id = fed
        .approve_new(XUCHANG, example_listing("撤销后重新登记"))
        .await?;
    refused_for_registration(&fed, &id).await?;
    let first = certify(&fed, &id).await?;
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;
    let t = fed.zone_tokens(XUCHANG).clone();
    let path = format!("/v1/certificates/{first}/revoke");
    let (s, v) = fed
        .post(
            XUCHANG,
            0,
            &path,
            &t.operator,
            &json!({"reason": "证据待补 evidence incomplete"}),
        )
        .await?;
    anyhow::ensure!(s == 200 && v["status"] == "revoked", "revoke: {s} {v}");
    fed.wait_for_state(ZHENGZHOU, 0, &id, "revoked").await?;

    // Registered and certified again, the same version is judged anew and let in again.
    let second = certify(&fed, &id).await?;
    anyhow::ensure!(second != first, "a new certificate: {second}");
    fed.wait_for_state(ZHENGZHOU, 0, &id, "recognised").await?;
    let listing = zhengzhou(&fed, &format!("/v1/listings/{id}"))
        .await
        .map_err(anyhow::Error::msg)?;
    let actions: Vec<&str> = listing["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["action"].as_str())
        .collect();
    assert_eq!(actions, ["recognise", "revoke", "recognise"], "{listing}");
    fed.shutdown().await;
    Ok(())
}
