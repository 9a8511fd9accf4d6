//! Every invariant's checker reports a violation made on purpose: a replica whose files were
//! changed behind Raft's back (a row deleted, an audit record rewritten), a zone that lost its
//! majority, a gossip message carrying an `important` listing, a second leader in one term, and
//! a stale read. Each is first shown to hold on the same federation untouched, so a checker that
//! always fails would fail here too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::Connection as _;
use xchg_federation_config::layout::LayoutKind;
use xchg_protocol::{Classification, Envelope, Listing, Timestamp, vectors};
use xchg_simulations::cluster::Cluster;
use xchg_simulations::invariants::{self, Check, Leaders};
use xchg_simulations::scenario::{Op, spare_key};
use xchg_simulations::workload::{Clients, Outcome, Record, listing_body};

const DEADLINE: Duration = Duration::from_secs(60);

fn held(c: &Check) {
    assert!(c.held, "{} should hold: {}", c.name, c.detail);
}

fn broken(c: &Check, needle: &str) {
    assert!(!c.held, "{} should report the violation", c.name);
    assert!(
        c.detail.contains(needle),
        "{}: {:?} does not name {needle:?}",
        c.name,
        c.detail
    );
}

/// Waits until `done` holds, at most [`DEADLINE`].
async fn until<F, Fut>(what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !done().await {
        anyhow::ensure!(Instant::now() < deadline, "{what} within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Sends `op` to zone `zone`'s leader and returns its record, which must be acknowledged.
async fn send(cluster: &Cluster, clients: &Clients, op: Op) -> anyhow::Result<Record> {
    let zone = match op {
        Op::Submit { zone, .. }
        | Op::Approve { zone, .. }
        | Op::Delist { zone, .. }
        | Op::Read { zone, .. }
        | Op::Revoke { zone, .. } => zone,
    };
    let z = &cluster.zones[zone];
    let url = cluster.leader_of(zone).and_then(|i| cluster.url(i));
    let (token, body) = match &op {
        Op::Submit { key, sensitive, .. } => (
            &z.tokens.provider,
            Some(listing_body(
                *key,
                (z.provider.id.as_str(), &z.provider.name),
                false,
                *sensitive,
            )),
        ),
        Op::Approve { .. } => (&z.tokens.operator, Some(serde_json::json!({}))),
        Op::Revoke { key, .. } => {
            let envelope = cluster.revocation(zone, &spare_key(*key).public())?;
            (
                &z.tokens.admin,
                Some(serde_json::json!({"envelope": hex::encode(envelope)})),
            )
        }
        _ => (&z.tokens.regulator, None),
    };
    let record = clients.run(op, url, token, body).await;
    anyhow::ensure!(
        matches!(record.outcome, Outcome::Ok(_)),
        "{:?} was not acknowledged: {:?}",
        record.op,
        record.outcome
    );
    Ok(record)
}

/// Changes node `i`'s catalog file while it is down, then starts it again.
async fn tamper(
    cluster: &mut Cluster,
    i: usize,
    statements: &[(&str, &str)],
) -> anyhow::Result<()> {
    let file = cluster.data_dir(i)?.join("catalog.db");
    cluster.crash(i).await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display())).await?;
    for (sql, bind) in statements {
        let done = sqlx::query(sql).bind(*bind).execute(&mut conn).await?;
        anyhow::ensure!(done.rows_affected() > 0, "{sql} changed nothing");
    }
    conn.close().await?;
    cluster.restart(i).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_checker_reports_a_violation_made_on_purpose() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(LayoutKind::TwoExchanges, 3, 1).await?;
    until("every zone elects a leader", || async {
        (0..cluster.zones.len()).all(|z| cluster.leader_of(z).is_some())
    })
    .await?;
    let clients = Clients::new(Instant::now())?;
    let mut history = Vec::new();
    for (key, sensitive) in [(1, false), (2, true)] {
        let submit = Op::Submit {
            zone: 0,
            node: 0,
            key,
            large: false,
            sensitive,
        };
        history.push(send(&cluster, &clients, submit).await?);
        let approve = Op::Approve {
            zone: 0,
            node: 0,
            key,
        };
        history.push(send(&cluster, &clients, approve).await?);
    }
    history.push(
        send(
            &cluster,
            &clients,
            Op::Revoke {
                zone: 0,
                node: 0,
                key: 1,
            },
        )
        .await?,
    );
    let ids: BTreeMap<u64, String> = clients.ids();
    let id = ids.get(&1).context("listing 1 has an id")?.clone();
    until("the key revocation is recorded everywhere", || async {
        invariants::revocations(&cluster, &history).await.is_empty()
    })
    .await?;
    until("listing 1 is recognised by the other exchange", || async {
        invariants::recognition(&cluster, &history, &ids)
            .await
            .is_empty()
    })
    .await?;
    until("every zone's members apply the same position", || async {
        cluster.same_applied()
    })
    .await?;

    // Untouched, everything holds.
    held(&invariants::acknowledged_writes(&cluster, &history, &ids).await);
    held(&invariants::zone_agreement(&cluster).await);
    held(&invariants::export_firewall(&cluster, &history, &ids, &[]).await);
    held(&invariants::audit_chains(&cluster).await);
    held(&invariants::linearizable(&history));
    let mut leaders = Leaders::default();
    leaders.sample(&cluster);
    held(&leaders.check(&cluster));

    // 3: a second node says it leads a term someone else led.
    let leader = cluster.leader_of(0).context("zone 0 has a leader")?;
    let term = cluster.nodes[leader]
        .handle
        .as_ref()
        .context("its leader runs")?
        .raft
        .metrics()
        .borrow()
        .current_term;
    let other = cluster.zones[0]
        .nodes
        .iter()
        .copied()
        .find(|&i| i != leader)
        .context("a follower")?;
    leaders.saw(0, term, cluster.nodes[other].id);
    broken(&leaders.check(&cluster), &format!("in term {term}"));

    // 4: an `important` listing in a gossip message.
    let mut draft = vectors::credit_draft();
    draft.classification = Classification::Important;
    let origin = cluster.zones[0].id.parse()?;
    let listing = Listing::first_version(draft, origin, Timestamp::now());
    let message = Envelope::listing(&listing, &vectors::node(), vectors::delegation()).to_bytes();
    broken(
        &invariants::export_firewall(&cluster, &history, &ids, &[message]).await,
        "crossed a zone boundary",
    );

    // 8: a read that sees listing 1 as it was before its acknowledged approval.
    let mut stale = history.clone();
    let last = stale.last().and_then(|r| r.completed_us).unwrap_or(0);
    stale.push(Record {
        op: Op::Read {
            zone: 0,
            node: 0,
            key: 1,
        },
        invoked_us: last + 1_000,
        completed_us: Some(last + 2_000),
        outcome: Outcome::Ok(Some("submitted".to_owned())),
    });
    broken(&invariants::linearizable(&stale), "");

    // 1, 2 and 6: a follower of zone 0 loses listing 1 and has an audit record rewritten
    // behind Raft's back.
    let follower = other;
    tamper(
        &mut cluster,
        follower,
        &[
            ("DELETE FROM listings WHERE id = ?", id.as_str()),
            ("UPDATE audit SET actor = ? WHERE seq = 1", "mallory"),
        ],
    )
    .await?;
    until("the tampered follower catches up", || async {
        cluster.same_applied()
    })
    .await?;
    let name = cluster.nodes[follower].name.clone();
    broken(
        &invariants::acknowledged_writes(&cluster, &history, &ids).await,
        &name,
    );
    broken(&invariants::zone_agreement(&cluster).await, "");
    broken(
        &invariants::audit_chains(&cluster).await,
        "breaks at record 1",
    );

    // 5: a node of the other exchange forgets that it recognised listing 1.
    // A follower, so that its zone's leader's catch-up does not judge the listing again
    // before the check.
    let receiver = cluster.zones[1]
        .nodes
        .iter()
        .copied()
        .find(|&i| Some(i) != cluster.leader_of(1))
        .context("a follower in zone 1")?;
    let revoked = spare_key(1).public().to_base64();
    tamper(
        &mut cluster,
        receiver,
        &[
            ("DELETE FROM listings WHERE id = ?", id.as_str()),
            ("DELETE FROM recognitions WHERE listing_id = ?", id.as_str()),
            ("DELETE FROM revocations WHERE key = ?", revoked.as_str()),
        ],
    )
    .await?;
    let unrevoked = invariants::revocations(&cluster, &history).await;
    assert!(
        unrevoked
            .iter()
            .any(|p| p.contains(&cluster.nodes[receiver].name)),
        "the revocation check should name {}: {unrevoked:?}",
        cluster.nodes[receiver].name
    );
    let unrecognised = invariants::recognition(&cluster, &history, &ids).await;
    assert!(
        unrecognised
            .iter()
            .any(|p| p.contains(&cluster.nodes[receiver].name)),
        "recognition should name {}: {unrecognised:?}",
        cluster.nodes[receiver].name
    );

    // 7: zone 1 loses two of its three members: no leader takes a write.
    held(&invariants::liveness(&cluster, true).await);
    for &i in cluster.zones[1].nodes.clone().iter().take(2) {
        cluster.crash(i).await;
    }
    broken(
        &invariants::liveness(&cluster, true).await,
        &cluster.zones[1].id.clone(),
    );
    cluster.shutdown().await;
    Ok(())
}
