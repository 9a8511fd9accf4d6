//! Scenario precedents across exchanges (场景互认复用, PROTOCOL.md 11.8): a buyer applying at one
//! exchange for a product of another sees the decisions the product's origin zone made for the
//! same scenario, whoever applied, as its own zone's buyers see their zone's.
//!
//! At the origin, [`own_list`] states the zone's latest decisions on one of its listings for one
//! scenario (read from the replica; a member signs it when asked). At the applicant, the leader
//! fetches that list while an application of its zone for the listing and scenario is open,
//! verifies it, and proposes it; [`record`] keeps the latest per origin zone, and [`remote`]
//! shows its decisions next to the zone's own precedents.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use xchg_protocol::application::{Granted, Outcome, SignedMessage};
use xchg_protocol::canonical::from_canonical;
use xchg_protocol::precedents::{self as protocol, MAX_PRECEDENTS, Precedents};
use xchg_protocol::{ContentId, DeliveryMode, Timestamp, ZoneId};

use super::applications::{ApplicationState, Precedent};
use super::tables::{applications as table, listings, outbox, remote_precedents};
use super::{Applied, CommandResponse, Refusal};

const DAY_MS: u64 = 86_400_000;

/// A list of precedents received from an origin zone, verified by the member that fetched it
/// against the question it asked (PROTOCOL.md 11.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedPrecedents {
    /// The SignedMessage of the Precedents, as received.
    #[serde(with = "serde_bytes")]
    pub list: Vec<u8>,
    /// The libp2p peer that delivered it (bounded).
    pub received_from: String,
    /// When the member received it.
    pub at: Timestamp,
    /// The member's name.
    pub node: String,
}

/// Origin: this zone's list of precedents for its listing `listing_id` and `scenario` at `now`,
/// or `None` when the listing is not one of this zone's own or never left the zone (a product
/// the export firewall keeps home is nobody else's business, nor are the decisions on it).
///
/// # Errors
/// Only storage errors.
pub async fn own_list(
    conn: &mut SqliteConnection,
    zone: &ZoneId,
    listing_id: &ContentId,
    scenario: &str,
    now: Timestamp,
) -> Result<Option<Precedents>, sqlx::Error> {
    match listings::origin_and_version(conn, listing_id).await? {
        Some(copy) if copy.origin == zone.as_str() => {}
        _ => return Ok(None),
    }
    if !outbox::ever_let_out(conn, listing_id).await? {
        return Ok(None);
    }
    let rows = table::own_decisions(
        conn,
        &listing_id.to_string(),
        scenario,
        MAX_PRECEDENTS as u32,
    )
    .await?;
    let mut decisions = Vec::with_capacity(rows.len());
    for row in rows {
        let outcome = match (row.state.as_str(), row.granted, row.reason) {
            ("approved", Some((authorization, mode, granted_at, expires_at, limit)), _) => {
                let Ok(delivery_mode) =
                    serde_json::from_value::<DeliveryMode>(serde_json::Value::String(mode))
                else {
                    continue;
                };
                let days = expires_at.0.saturating_sub(granted_at.0) / DAY_MS;
                Outcome::Approved(Granted {
                    authorization,
                    delivery_mode,
                    duration_days: u32::try_from(days.max(1)).unwrap_or(u32::MAX),
                    usage_limit: limit,
                    expires_at,
                })
            }
            ("rejected", _, Some(reason)) => Outcome::Rejected { reason },
            _ => continue,
        };
        let applicant = match row.applicant_zone {
            Some(z) => match z.parse() {
                Ok(z) => z,
                Err(_) => continue,
            },
            None => zone.clone(),
        };
        decisions.push(protocol::Precedent {
            applicant,
            application: row.id,
            decided_at: row.decided_at,
            outcome,
        });
    }
    // Members' clocks differ: a list is never older than what it lists.
    let newest = decisions.first().map_or(now, |d| d.decided_at.max(now));
    Ok(Some(Precedents {
        zone: zone.clone(),
        listing_id: *listing_id,
        scenario: scenario.to_owned(),
        issued_at: newest,
        decisions,
    }))
}

/// Decodes a signed list, not verifying it (the member that proposed it did).
fn decode(list: &[u8]) -> Result<(SignedMessage, Precedents), String> {
    let limits = protocol::limits();
    let signed = SignedMessage::from_bytes(list, &limits).map_err(|e| e.to_string())?;
    let body = from_canonical(&signed.body, &limits).map_err(|e| e.to_string())?;
    Ok((signed, body))
}

/// Applicant: keeps a verified list in place of the one held for its listing, scenario and
/// zone, unless that one is as new or newer.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn record(
    db: &rusqlite::Connection,
    own: &ZoneId,
    raft_index: u64,
    r: &ReceivedPrecedents,
) -> rusqlite::Result<CommandResponse> {
    let (signed, list) = match decode(&r.list) {
        Ok(d) => d,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("precedents: {e}")))),
    };
    if list.zone.exchange() == own.exchange() {
        return Ok(Err(Refusal::Invalid(format!(
            "precedents of {}, a zone of this exchange: its decisions are not recognised across \
             exchanges",
            list.zone
        ))));
    }
    let listing_id = list.listing_id.to_string();
    let list_id = signed.id.to_string();
    remote_precedents::keep(
        db,
        &remote_precedents::Kept {
            listing_id: &listing_id,
            scenario: &list.scenario,
            origin_zone: list.zone.as_str(),
            list_id: &list_id,
            issued_at: list.issued_at,
            newest: newest(&list),
            signed: &r.list,
            received_from: &r.received_from,
            at: r.at,
            raft_index,
        },
    )?;
    Ok(Ok(Applied {
        object_id: format!("precedents:{list_id}"),
        version: None,
        state: None,
        used: None,
    }))
}

/// When the newest decision of `list` was made (0 for a list of none).
fn newest(list: &Precedents) -> Timestamp {
    list.decisions
        .first()
        .map_or(Timestamp(0), |d| d.decided_at)
}

/// Applicant: whether `list` brings nothing to record: the list held for the same listing,
/// scenario and zone states the same decisions, or is as new or newer by its newest decision
/// and then by its time ([`record`] would keep it in place of `list`: a list replayed by a
/// peer, or made by an origin member that lags behind or whose clock is behind, is not
/// proposed again and again); or none is held and `list` has no decision.
///
/// # Errors
/// Only storage errors.
pub async fn unchanged(
    conn: &mut SqliteConnection,
    list: &Precedents,
) -> Result<bool, sqlx::Error> {
    let held = remote_precedents::held(
        conn,
        &list.listing_id.to_string(),
        &list.scenario,
        list.zone.as_str(),
    )
    .await?;
    Ok(match held.and_then(|h| decode(&h).ok()) {
        Some((_, h)) => {
            h.decisions == list.decisions
                || (newest(&h), h.issued_at) >= (newest(list), list.issued_at)
        }
        None => list.decisions.is_empty(),
    })
}

/// Applicant: the decisions of the lists held for `listing_id` and `scenario`, as precedents,
/// except those on applications of zone `own` (which it holds itself).
///
/// # Errors
/// Only storage errors.
pub async fn remote(
    conn: &mut SqliteConnection,
    listing_id: &str,
    scenario: &str,
    own: &ZoneId,
) -> Result<Vec<Precedent>, sqlx::Error> {
    let lists = remote_precedents::lists(conn, listing_id, scenario).await?;
    let mut out = Vec::new();
    for list in lists {
        let Ok((_, list)) = decode(&list) else {
            continue;
        };
        for d in list.decisions {
            if d.applicant == *own {
                continue;
            }
            let (decision, reason, granted) = match d.outcome {
                Outcome::Approved(g) => (ApplicationState::Approved, None, Some(g)),
                Outcome::Rejected { reason } => (ApplicationState::Rejected, Some(reason), None),
            };
            out.push(Precedent {
                application_id: d.application,
                decision,
                decided_at: d.decided_at,
                delivery_mode: granted.as_ref().map(|g| g.delivery_mode),
                duration_days: granted.as_ref().map(|g| u64::from(g.duration_days)),
                usage_limit: granted.as_ref().map(|g| g.usage_limit),
                reason,
                decided_in: Some(list.zone.to_string()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit;
    use crate::catalog::apply::apply;
    use crate::catalog::{Actor, CatalogCommand, test_zone};
    use crate::sqlite::in_transaction;
    use xchg_federation_config::Role;
    use xchg_protocol::application_vectors as av;
    use xchg_protocol::precedents::{Precedent as Listed, sign};
    use xchg_protocol::{Classification, Listing};

    fn list(issued_at: u64, reasons: &[(&str, &str)]) -> Vec<u8> {
        let zone: ZoneId = "zhengzhou/zhongyuan".parse().expect("zone");
        let list = Precedents {
            zone: zone.clone(),
            listing_id: ContentId::of(b"listing"),
            scenario: "授信".into(),
            issued_at: Timestamp(issued_at),
            decisions: reasons
                .iter()
                .enumerate()
                .map(|(i, (applicant, reason))| Listed {
                    applicant: applicant.parse().expect("zone"),
                    application: i as u64 + 1,
                    decided_at: Timestamp(issued_at - i as u64 - 1),
                    outcome: Outcome::Rejected {
                        reason: (*reason).into(),
                    },
                })
                .collect(),
        };
        sign(
            &list,
            &av::origin_node(),
            av::origin_delegation(zone.as_str()),
        )
        .to_bytes()
    }

    fn received(list: Vec<u8>) -> ReceivedPrecedents {
        ReceivedPrecedents {
            list,
            received_from: "peer".into(),
            at: Timestamp(1),
            node: "n1".into(),
        }
    }

    async fn shown(dir: &std::path::Path) -> Vec<(u64, Option<String>)> {
        let mut conn = crate::catalog::test_reader(dir).await;
        let own: ZoneId = "xuchang/yuzhou".parse().expect("zone");
        let listing = ContentId::of(b"listing").to_string();
        remote(&mut conn, &listing, "授信", &own)
            .await
            .expect("read")
            .into_iter()
            .map(|p| (p.application_id, p.reason))
            .collect()
    }

    /// Submits and approves a credit listing of `xuchang/yuzhou` of `classification`.
    fn listed(db: &rusqlite::Connection, title: &str, classification: Classification) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        draft.classification = classification;
        let listing = Listing::first_version(draft, test_zone().zone.clone(), Timestamp(1));
        let actor = |id: &str, role| Actor {
            id: id.into(),
            role,
        };
        let commands = [
            CatalogCommand::SubmitListing {
                listing: Box::new(listing.clone()),
                actor: actor("yuzhou-credit-center", Role::Provider),
            },
            CatalogCommand::ApproveListing {
                listing_id: listing.id(),
                review: crate::catalog::Review::default(),
                at: Timestamp(2),
                actor: actor("token:op", Role::Operator),
            },
        ];
        in_transaction(db, || {
            let mut chain = audit::Chain::load(db)?;
            for (index, c) in (10..).zip(&commands) {
                let response = apply(db, &mut chain, &test_zone(), index, c)?;
                assert!(response.is_ok(), "{response:?}");
            }
            chain.flush(db)
        })
        .expect("applied");
        listing
    }

    #[tokio::test]
    async fn the_origin_lists_decisions_only_on_its_own_listings_that_left_the_zone() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::catalog::test_db(dir.path());
        let out = listed(&db, "出境的产品", Classification::General);
        let home = listed(&db, "重要数据产品", Classification::Important);
        let mut conn = crate::catalog::test_reader(dir.path()).await;
        let zone = test_zone().zone;
        let out_list = own_list(&mut conn, &zone, &out.id(), "授信", Timestamp(3)).await;
        assert!(
            out_list.expect("read").is_some(),
            "an exported listing is answered"
        );
        let home_list = own_list(&mut conn, &zone, &home.id(), "授信", Timestamp(3)).await;
        assert!(
            home_list.expect("read").is_none(),
            "an important listing the firewall kept home is not"
        );
        let elsewhere: ZoneId = "xuchang/changge".parse().expect("zone");
        assert!(
            own_list(&mut conn, &elsewhere, &out.id(), "授信", Timestamp(3))
                .await
                .expect("read")
                .is_none(),
            "nor is a listing of another zone"
        );
    }

    fn list_of(issued_at: u64, decisions: &[(u64, u64)]) -> Vec<u8> {
        let zone: ZoneId = "zhengzhou/zhongyuan".parse().expect("zone");
        let list = Precedents {
            zone: zone.clone(),
            listing_id: ContentId::of(b"listing"),
            scenario: "授信".into(),
            issued_at: Timestamp(issued_at),
            decisions: decisions
                .iter()
                .map(|&(application, decided_at)| Listed {
                    applicant: zone.clone(),
                    application,
                    decided_at: Timestamp(decided_at),
                    outcome: Outcome::Rejected {
                        reason: "不符".into(),
                    },
                })
                .collect(),
        };
        sign(
            &list,
            &av::origin_node(),
            av::origin_delegation(zone.as_str()),
        )
        .to_bytes()
    }

    #[tokio::test]
    async fn a_later_list_from_a_member_that_lags_does_not_replace_a_fuller_one() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::catalog::test_db(dir.path());
        let own: ZoneId = "xuchang/yuzhou".parse().expect("zone");
        let fuller = list_of(2_000, &[(2, 1_900), (1, 1_800)]);
        assert!(
            record(&db, &own, 5, &received(fuller))
                .expect("applied")
                .is_ok()
        );
        // Signed later by a member that has not applied decision 2 yet.
        let lagging = list_of(3_000, &[(1, 1_800)]);
        let mut conn = crate::catalog::test_reader(dir.path()).await;
        let (_, body) = decode(&lagging).expect("decodes");
        assert!(
            unchanged(&mut conn, &body).await.expect("read"),
            "nothing new to propose"
        );
        assert!(
            record(&db, &own, 6, &received(lagging))
                .expect("applied")
                .is_ok()
        );
        let kept: Vec<u64> = shown(dir.path())
            .await
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        assert_eq!(kept, [2, 1], "the fuller list stays");
        // A list with a newer decision replaces it.
        let newer = list_of(4_000, &[(3, 3_500), (2, 1_900), (1, 1_800)]);
        let (_, body) = decode(&newer).expect("decodes");
        assert!(!unchanged(&mut conn, &body).await.expect("read"));
        assert!(
            record(&db, &own, 7, &received(newer))
                .expect("applied")
                .is_ok()
        );
        let kept: Vec<u64> = shown(dir.path())
            .await
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        assert_eq!(kept, [3, 2, 1]);
        // With none held, an empty list brings nothing.
        let (_, empty) = decode(&list_of(5_000, &[])).expect("decodes");
        let mut other = empty.clone();
        other.scenario = "其他".into();
        assert!(unchanged(&mut conn, &other).await.expect("read"));
    }

    #[tokio::test]
    async fn the_newest_list_is_kept_and_this_zones_own_applications_are_not_shown_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::catalog::test_db(dir.path());
        let own: ZoneId = "xuchang/yuzhou".parse().expect("zone");
        let first = list(
            1_000,
            &[("zhengzhou/zhongyuan", "一"), ("xuchang/yuzhou", "own")],
        );
        assert!(
            record(&db, &own, 5, &received(first))
                .expect("applied")
                .is_ok()
        );
        assert_eq!(shown(dir.path()).await, [(1, Some("一".to_owned()))]);
        // An older list arriving late changes nothing; a newer one replaces it.
        let older = list(900, &[("zhengzhou/zhongyuan", "旧")]);
        assert!(
            record(&db, &own, 6, &received(older))
                .expect("applied")
                .is_ok()
        );
        assert_eq!(shown(dir.path()).await, [(1, Some("一".to_owned()))]);
        let newer = list(
            2_000,
            &[("zhengzhou/zhongyuan", "新"), ("xuchang/other", "二")],
        );
        assert!(
            record(&db, &own, 7, &received(newer))
                .expect("applied")
                .is_ok()
        );
        assert_eq!(
            shown(dir.path()).await,
            [(1, Some("新".to_owned())), (2, Some("二".to_owned()))]
        );
        // Nothing new: the same decisions, or a list older than the one held (a peer replaying
        // an earlier list would otherwise cost a Raft entry and an audit record each time).
        let (_, held) = decode(&list(
            2_000,
            &[("zhengzhou/zhongyuan", "新"), ("xuchang/other", "二")],
        ))
        .expect("decodes");
        let (_, replayed) = decode(&list(900, &[("zhengzhou/zhongyuan", "旧")])).expect("decodes");
        let (_, newer) = decode(&list(2_500, &[("zhengzhou/zhongyuan", "新新")])).expect("decodes");
        let mut conn = crate::catalog::test_reader(dir.path()).await;
        assert!(unchanged(&mut conn, &held).await.expect("read"));
        assert!(unchanged(&mut conn, &replayed).await.expect("read"));
        assert!(!unchanged(&mut conn, &newer).await.expect("read"));
        drop(conn);
        // A list of a zone of this exchange is not recorded.
        let sibling: ZoneId = "zhengzhou/other".parse().expect("zone");
        assert!(
            record(&db, &sibling, 8, &received(list(3_000, &[])))
                .expect("applied")
                .is_err()
        );
        // Nor is one that does not decode.
        assert!(
            record(&db, &own, 9, &received(vec![1, 2, 3]))
                .expect("applied")
                .is_err()
        );
    }
}
