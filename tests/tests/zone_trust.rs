//! Trust between zone members (issue #12, items 6 and 8), with real processes: a member's
//! standing is checked on every Raft request, not only at the TLS handshake; a leader
//! authorises forwarded writes again instead of taking the follower's word for the actor; a
//! member whose key its root revoked is cut off at once and stands down; a flood of
//! unauthenticated handshakes on the Raft port neither stops members being served nor floods
//! the log.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use xchg_node::catalog::{Actor, Batch, CatalogCommand};
use xchg_node::raft::MemberNode;
use xchg_node::raft::tls::{self, MemberKeys, TlsTransport};
use xchg_node::raft::transport::{
    Credential, ForwardError, ZoneRequest, ZoneResponse, ZoneTransport,
};
use xchg_protocol::{Keypair, Timestamp};
use xchg_tests::{Zone, eventually, example_listing, xchg_binary};

/// Node `i` as a Raft peer, and its key file's key.
fn member(zone: &Zone, i: usize) -> anyhow::Result<(MemberNode, Keypair)> {
    let config = xchg_federation_config::load(&zone.nodes[i].config, Timestamp::now())?.config;
    let own = config
        .own_member()
        .ok_or_else(|| anyhow::anyhow!("no own member"))?;
    let node = MemberNode {
        name: zone.nodes[i].name.clone(),
        raft_addr: config.listen.raft.to_string(),
        api_url: zone.nodes[i].api_url.clone(),
        public_key: own.public_key.as_bytes().to_vec(),
    };
    Ok((
        node,
        xchg_federation_config::read_key_file(&config.node.key_file)?,
    ))
}

/// A transport speaking as `key` that trusts `target`'s key.
fn transport_as(key: &Keypair, target: &MemberNode) -> anyhow::Result<TlsTransport> {
    let trusted = MemberKeys::default();
    trusted.set([<[u8; 32]>::try_from(target.public_key.as_slice())?]);
    Ok(TlsTransport::new(&tls::configs(key, trusted)?))
}

fn approve(
    listing: &str,
    actor_role: xchg_federation_config::Role,
) -> anyhow::Result<CatalogCommand> {
    Ok(CatalogCommand::ApproveListing {
        listing_id: listing.parse()?,
        review: Default::default(),
        at: Timestamp::now(),
        actor: Actor {
            id: "forged".into(),
            role: actor_role,
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_authorises_forwarded_writes_again() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    let (status, body) = zone
        .post(
            leader,
            "/v1/listings",
            &tokens.provider,
            &example_listing("forward me"),
        )
        .await?;
    anyhow::ensure!(status == 201, "{status} {body}");
    let id = body["id"].as_str().unwrap_or_default().to_owned();

    // A member (its real key) forwards approvals in an operator's name.
    let (target, _) = member(&zone, leader)?;
    let (_, follower_key) = member(&zone, follower)?;
    let transport = transport_as(&follower_key, &target)?;
    let forged = approve(&id, xchg_federation_config::Role::Operator)?;
    let forward = |credential: Credential| {
        let batch = Batch(vec![forged.clone()]);
        let transport = &transport;
        let target = target.clone();
        async move {
            transport
                .call(
                    1,
                    &target,
                    ZoneRequest::ForwardWrite(batch, vec![credential]),
                    Duration::from_secs(10),
                )
                .await
        }
    };
    let refused = |r: &ZoneResponse| {
        matches!(r, ZoneResponse::ForwardWrite(Ok((answers, _)))
            if answers.len() == 1 && answers[0].as_ref().is_err_and(|e| e.code() == "forbidden"))
    };
    // With only a provider's token: refused, whatever actor the command names.
    let answer = forward(Credential::Token(tokens.provider.clone())).await?;
    assert!(
        refused(&answer),
        "a provider token cannot approve: {answer:?}"
    );
    // On the member's own authority: refused (an approval is asked for by a person).
    let answer = forward(Credential::Node).await?;
    assert!(
        refused(&answer),
        "a member cannot approve on its own: {answer:?}"
    );
    // An unknown token: refused.
    let answer = forward(Credential::Token("xchg-operator-made-up".into())).await?;
    assert!(refused(&answer), "{answer:?}");
    assert_eq!(
        zone.state_on(leader, &tokens.regulator, &id)
            .await?
            .as_deref(),
        Some("submitted"),
        "nothing was approved"
    );
    // With the operator's token it goes through, recorded under the token's own identity.
    let answer = forward(Credential::Token(tokens.operator.clone())).await?;
    assert!(
        matches!(&answer, ZoneResponse::ForwardWrite(Ok((a, _))) if a[0].is_ok()),
        "{answer:?}"
    );
    let (_, audit) = zone
        .get(leader, "/v1/audit?limit=1000", Some(&tokens.regulator))
        .await?;
    let approval = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["action"] == "approve_listing")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(approval["role"], "operator", "{approval}");
    assert_ne!(approval["actor"], "forged", "{approval}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_whose_key_is_revoked_is_cut_off_and_stands_down() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let revoked = (leader + 1) % 3;
    let (node, revoked_key) = member(&zone, revoked)?;
    let (target, _) = member(&zone, leader)?;
    // An open connection from the member, served before the revocation.
    let transport = transport_as(&revoked_key, &target)?;
    let read_index = || transport.call(1, &target, ZoneRequest::ReadIndex, Duration::from_secs(5));
    assert!(matches!(
        read_index().await,
        Ok(ZoneResponse::ReadIndex(Ok(_)))
    ));

    let root = zone.dir.path().join("layout/root/xuchang-root.key");
    let root = if root.exists() {
        root
    } else {
        zone.dir.path().join("layout/keys/xuchang-root.key")
    };
    let out = Command::new(xchg_binary())
        .args(["federation", "revoke", "--root-key"])
        .arg(&root)
        .args(["--exchange", "xuchang", "--reason", "key leaked", "--key"])
        .arg(base64_key(&node.public_key))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout)?;
    let (status, answer) = zone
        .post(leader, "/v1/federation/revocations", &tokens.admin, &body)
        .await?;
    anyhow::ensure!(status == 201, "{status} {answer}");

    // The same open connection is served no more.
    eventually(
        Duration::from_secs(10),
        "the revoked member to be cut off",
        || async { Ok(read_index().await.is_err().then_some(())) },
    )
    .await?;
    // The revoked node knows, and says what an operator must do.
    let status = eventually(
        Duration::from_secs(30),
        "the revoked node to stand down",
        || async {
            let (_, s) = zone
                .get(revoked, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((s["role"] == "removed").then_some(s))
        },
    )
    .await?;
    assert!(
        status["removed"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{status}"
    );
    // The zone goes on with the other two.
    let (code, body) = zone
        .post(
            leader,
            "/v1/listings",
            &tokens.provider,
            &example_listing("after revocation"),
        )
        .await?;
    assert_eq!(code, 201, "{body}");
    Ok(())
}

fn base64_key(key: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_silent_connections_on_the_raft_port_neither_blocks_members_nor_the_log()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let (target, _) = member(&zone, leader)?;
    let (_, member_key) = member(&zone, (leader + 1) % 3)?;
    // 300 connections that never say a word, then 300 that send garbage.
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(&target.raft_addr).await {
            silent.push(s);
        }
    }
    for _ in 0..300 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&target.raft_addr).await {
            use tokio::io::AsyncWriteExt as _;
            let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
            silent.push(s);
        }
    }
    // A member is still served, within a bound.
    let transport = transport_as(&member_key, &target)?;
    eventually(Duration::from_secs(15), "a member to be served", || async {
        Ok(matches!(
            transport
                .call(1, &target, ZoneRequest::ReadIndex, Duration::from_secs(2))
                .await,
            Ok(ZoneResponse::ReadIndex(_))
        )
        .then_some(()))
    })
    .await?;
    drop(silent);
    // The refusals were logged a few times, not hundreds.
    let log = zone.log_of(leader);
    let warnings = log.matches("refused Raft connection").count();
    assert!(
        (1..=5).contains(&warnings),
        "{warnings} refusal warnings for 600 bad connections"
    );
    Ok(())
}

/// A member that is not the leader, asked to take a forwarded write (its peers may still think
/// it leads, just after it restarted), sends the forwarder on to the leader before judging the
/// command: it used to read the token from its own replica first and answer a good write
/// `forbidden` (found by `xchg-sim leader-churn --seed 150 --duration 10s`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_is_not_the_leader_sends_a_forwarded_write_on_instead_of_judging_it()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let (target, _) = member(&zone, a)?;
    let (_, sender_key) = member(&zone, b)?;
    let transport = transport_as(&sender_key, &target)?;
    let (status, body) = zone
        .post(
            leader,
            "/v1/listings",
            &tokens.provider,
            &example_listing("sent on"),
        )
        .await?;
    anyhow::ensure!(status == 201, "{status} {body}");
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let cmd = approve(&id, xchg_federation_config::Role::Operator)?;
    for credential in [
        Credential::Token(tokens.operator.clone()),
        Credential::Token("xchg-operator-made-up".into()),
    ] {
        let answer = transport
            .call(
                1,
                &target,
                ZoneRequest::ForwardWrite(Batch(vec![cmd.clone()]), vec![credential]),
                Duration::from_secs(10),
            )
            .await?;
        assert!(
            matches!(
                answer,
                ZoneResponse::ForwardWrite(Err(ForwardError::NotLeader { leader: Some(_) }))
            ),
            "a follower names the leader, judging nothing: {answer:?}"
        );
    }
    Ok(())
}

/// Forwards `cmd` on `credential`'s authority to the leader `target`, as the member whose key
/// `transport` speaks with; the leader's answer: applied, or the refusal's code.
async fn forward(
    transport: &TlsTransport,
    target: &MemberNode,
    cmd: CatalogCommand,
    credential: Credential,
) -> anyhow::Result<Result<(), &'static str>> {
    let answer = transport
        .call(
            1,
            target,
            ZoneRequest::ForwardWrite(Batch(vec![cmd]), vec![credential]),
            Duration::from_secs(10),
        )
        .await?;
    match answer {
        ZoneResponse::ForwardWrite(Ok((mut answers, _))) if answers.len() == 1 => {
            Ok(answers.remove(0).map(drop).map_err(|e| e.code()))
        }
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

/// A leader holds forwarded writes to the same party rule as the API: a provider token bound
/// to the zone's demo party cannot have a member forward a submission in another party's
/// name. A member may hand over an admin token created offline (`xchg token create`) in its
/// own name only, and nothing else on its own authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_applies_the_party_rule_and_the_recovery_rule_to_forwarded_writes()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    let (target, _) = member(&zone, leader)?;
    let (own, follower_key) = member(&zone, follower)?;
    let transport = transport_as(&follower_key, &target)?;
    let forward = |cmd, credential| forward(&transport, &target, cmd, credential);
    let actor = |id: &str, role| Actor {
        id: id.into(),
        role,
    };

    let mut draft: xchg_protocol::ListingDraft =
        serde_json::from_value(example_listing("forwarded in another party's name"))?;
    draft.provider.id = "yuzhou-credit-center".parse()?;
    let submit = CatalogCommand::SubmitListing {
        listing: Box::new(xchg_protocol::Listing::first_version(
            draft,
            "xuchang/municipal".parse()?,
            Timestamp::now(),
        )),
        actor: actor(
            "yuzhou-credit-center",
            xchg_federation_config::Role::Provider,
        ),
    };
    assert_eq!(
        forward(submit, Credential::Token(tokens.provider.clone())).await?,
        Err("forbidden"),
        "the zone's provider token acts for its own party only"
    );

    let recovery = |node: &str, role| CatalogCommand::CreateToken {
        token_hash: "ab".repeat(32),
        role,
        party: None,
        label: "offline recovery".into(),
        at: Timestamp::now(),
        actor: actor(&format!("node:{node}"), xchg_federation_config::Role::Admin),
    };
    let other = &zone.nodes[leader].name;
    assert_eq!(
        forward(
            recovery(other, xchg_federation_config::Role::Admin),
            Credential::Node
        )
        .await?,
        Err("forbidden"),
        "in another member's name"
    );
    assert_eq!(
        forward(
            recovery(&own.name, xchg_federation_config::Role::Buyer),
            Credential::Node
        )
        .await?,
        Err("forbidden"),
        "a member creates no token but the recovered admin's"
    );
    assert_eq!(
        forward(
            recovery(&own.name, xchg_federation_config::Role::Admin),
            Credential::Node
        )
        .await?,
        Ok(()),
        "a member hands over an admin token created offline in its own name"
    );
    Ok(())
}

/// A member forwards an application without a token in its own name only, and a broker is
/// who its token says, whatever a forwarded command claims: the leader takes the broker from
/// the token, so a party's own token cannot pass its listing off as a broker's act.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_takes_applications_from_the_member_that_received_them_and_brokers_from_tokens()
-> anyhow::Result<()> {
    use xchg_node::catalog::parties::BrokerAct;
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    let (target, _) = member(&zone, leader)?;
    let (own, follower_key) = member(&zone, follower)?;
    let transport = transport_as(&follower_key, &target)?;
    let forward = |cmd, credential| forward(&transport, &target, cmd, credential);

    let application = |id: &str, received_by: &str| -> anyhow::Result<CatalogCommand> {
        let profile = serde_json::from_value(xchg_tests::party_application(id, &["processor"]))?;
        Ok(CatalogCommand::ApplyParty {
            profile: Box::new(profile),
            at: Timestamp::now(),
            actor: None,
            received_by: received_by.to_owned(),
        })
    };
    let other = zone.nodes[leader].name.clone();
    assert_eq!(
        forward(application("forged-applicant", &other)?, Credential::Node).await?,
        Err("forbidden"),
        "an application in another member's name"
    );
    assert_eq!(
        forward(
            application("walk-in-applicant", &own.name)?,
            Credential::Node
        )
        .await?,
        Ok(()),
        "an application the member received itself"
    );

    let party = xchg_tests::FIRST_ZONE_PARTY.0;
    let draft: xchg_protocol::ListingDraft =
        serde_json::from_value(example_listing("as its own broker"))?;
    let act = CatalogCommand::Entrusted(Box::new(BrokerAct {
        broker: "henan-data-broker".parse()?,
        entrustment: 1,
        command: CatalogCommand::SubmitListing {
            listing: Box::new(xchg_protocol::Listing::first_version(
                draft,
                "xuchang/municipal".parse()?,
                Timestamp::now(),
            )),
            actor: Actor {
                id: party.into(),
                role: xchg_federation_config::Role::Provider,
            },
        },
    }));
    assert_eq!(
        forward(act, Credential::Token(tokens.provider.clone())).await?,
        Err("forbidden"),
        "the zone's provider token is its party, not a broker of it"
    );
    Ok(())
}
