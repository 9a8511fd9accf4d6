//! Applying one catalog command inside the state machine's transaction.
//!
//! Everything here is deterministic: it reads only the transaction and the command. A command
//! that the current state does not allow changes nothing but its audit record, and returns a
//! [`Refusal`] to the proposer.

use sqlx::{Row, SqliteConnection};
use xchg_federation_config::Role;
use xchg_protocol::{ContentId, Listing, Timestamp};

use super::{Actor, Applied, CatalogCommand, CommandResponse, ListingState, Refusal};
use crate::audit;

/// Applies `cmd` (the entry at `raft_index`) and records it in the audit chain.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub async fn apply(
    conn: &mut SqliteConnection,
    chain: &mut audit::Chain,
    raft_index: u64,
    cmd: &CatalogCommand,
) -> Result<CommandResponse, sqlx::Error> {
    let (actor, at, object) = subject(cmd);
    let response = match cmd {
        CatalogCommand::SubmitListing { listing, actor } => {
            submit(conn, raft_index, listing, actor).await?
        }
        CatalogCommand::UpdateListing {
            listing_id,
            draft,
            at,
            actor,
        } => update(conn, raft_index, listing_id, draft, *at, actor).await?,
        CatalogCommand::ApproveListing {
            listing_id,
            review,
            at,
            actor,
        } => {
            let detail = serde_json::to_string(review).ok();
            transition(
                conn,
                raft_index,
                listing_id,
                Transition::Approve,
                *at,
                actor,
                detail,
            )
            .await?
        }
        CatalogCommand::RejectListing {
            listing_id,
            reason,
            at,
            actor,
        } => {
            let detail = serde_json::json!({ "reason": reason }).to_string();
            transition(
                conn,
                raft_index,
                listing_id,
                Transition::Reject,
                *at,
                actor,
                Some(detail),
            )
            .await?
        }
        CatalogCommand::DelistListing {
            listing_id,
            reason,
            at,
            actor,
        } => {
            let detail = serde_json::json!({ "reason": reason }).to_string();
            transition(
                conn,
                raft_index,
                listing_id,
                Transition::Delist,
                *at,
                actor,
                Some(detail),
            )
            .await?
        }
        CatalogCommand::CreateToken {
            token_hash,
            role,
            party,
            label,
            at,
            ..
        } => create_token(conn, token_hash, *role, party.as_deref(), label, *at).await?,
        CatalogCommand::RevokeToken {
            token_hash,
            role,
            at,
            ..
        } => revoke_token(conn, token_hash, *role, *at).await?,
    };
    let result = match &response {
        Ok(_) => "ok".to_owned(),
        Err(r) => format!("refused:{}: {r}", r.code()),
    };
    chain.append(audit::Event {
        raft_index,
        at,
        actor: &actor.id,
        role: actor.role.as_str(),
        action: cmd.action(),
        object_id: &object,
        result,
    });
    Ok(response)
}

/// The actor, time and object of a command, for its audit record.
fn subject(cmd: &CatalogCommand) -> (&Actor, Timestamp, String) {
    match cmd {
        CatalogCommand::SubmitListing { listing, actor } => {
            (actor, listing.created_at, listing.id().to_string())
        }
        CatalogCommand::UpdateListing {
            listing_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::ApproveListing {
            listing_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::RejectListing {
            listing_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::DelistListing {
            listing_id,
            at,
            actor,
            ..
        } => (actor, *at, listing_id.to_string()),
        CatalogCommand::CreateToken {
            token_hash,
            at,
            actor,
            ..
        }
        | CatalogCommand::RevokeToken {
            token_hash,
            at,
            actor,
            ..
        } => (actor, *at, token_hash.clone()),
    }
}

fn join(values: &[String]) -> String {
    values.join("\n")
}

fn modes(listing: &Listing) -> String {
    let names: Vec<String> = listing
        .delivery_modes
        .iter()
        .map(|m| {
            serde_json::to_value(m)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    format!(",{},", names.join(","))
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A listing version's canonical bytes and the ids derived from them, computed once.
struct Encoded {
    id: ContentId,
    content_id: ContentId,
    bytes: Vec<u8>,
}

impl Encoded {
    fn of(listing: &Listing) -> Self {
        let bytes = listing.canonical_bytes();
        let content_id = ContentId::of(&bytes);
        Encoded {
            id: listing.listing_id.unwrap_or(content_id),
            content_id,
            bytes,
        }
    }
}

/// Inserts version 1 of a new listing; false if the id exists already.
async fn insert_new_listing(
    conn: &mut SqliteConnection,
    listing: &Listing,
    encoded: &Encoded,
    submitted_by: &str,
) -> Result<bool, sqlx::Error> {
    let done = listing_row(
        "INSERT INTO listings (id, version, content_id, state, origin, submitted_by, provider_id,
            provider_name, category, classification, delivery_modes, title, description, keywords,
            scenarios, created_at, updated_at, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING",
        listing,
        encoded,
        ListingState::Submitted,
        submitted_by,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Binds a listing row's columns, in the column order of the listings table.
fn listing_row<'q>(
    sql: &'q str,
    listing: &'q Listing,
    encoded: &Encoded,
    state: ListingState,
    submitted_by: &'q str,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(sql)
        .bind(encoded.id.to_string())
        .bind(i64::from(listing.version))
        .bind(encoded.content_id.to_string())
        .bind(state.as_str())
        .bind(listing.origin.as_str())
        .bind(submitted_by)
        .bind(listing.provider.id.as_str())
        .bind(&listing.provider.name)
        .bind(&listing.category)
        .bind(enum_name(&listing.classification))
        .bind(modes(listing))
        .bind(&listing.title)
        .bind(&listing.description)
        .bind(join(&listing.keywords))
        .bind(join(&listing.scenarios))
        .bind(listing.created_at.0 as i64)
        .bind(listing.updated_at.0 as i64)
        .bind(encoded.bytes.clone())
}

/// Replaces the current version of an existing listing, in `state`.
async fn write_listing(
    conn: &mut SqliteConnection,
    listing: &Listing,
    state: ListingState,
    submitted_by: &str,
) -> Result<(), sqlx::Error> {
    let encoded = Encoded::of(listing);
    listing_row(
        "INSERT INTO listings (id, version, content_id, state, origin, submitted_by, provider_id,
            provider_name, category, classification, delivery_modes, title, description, keywords,
            scenarios, created_at, updated_at, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, content_id = excluded.content_id,
            state = excluded.state, provider_id = excluded.provider_id,
            provider_name = excluded.provider_name, category = excluded.category,
            classification = excluded.classification, delivery_modes = excluded.delivery_modes,
            title = excluded.title, description = excluded.description, keywords = excluded.keywords,
            scenarios = excluded.scenarios, updated_at = excluded.updated_at, body = excluded.body",
        listing,
        &encoded,
        state,
        submitted_by,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_history(
    conn: &mut SqliteConnection,
    listing_id: &str,
    raft_index: u64,
    at: Timestamp,
    actor: &Actor,
    action: &str,
    from: Option<ListingState>,
    to: ListingState,
    version: u32,
    detail: Option<String>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO listing_history (listing_id, seq, raft_index, at, actor, role, action, from_state,
            to_state, version, detail)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM listing_history WHERE listing_id = ?1),
            ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(listing_id)
    .bind(raft_index as i64)
    .bind(at.0 as i64)
    .bind(&actor.id)
    .bind(actor.role.as_str())
    .bind(action)
    .bind(from.map(ListingState::as_str))
    .bind(to.as_str())
    .bind(i64::from(version))
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The current row of a listing: state, submitter and decoded current version.
struct Current {
    state: ListingState,
    submitted_by: String,
    listing: Listing,
}

async fn current(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<Current>, sqlx::Error> {
    let row = sqlx::query("SELECT state, submitted_by, body FROM listings WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get(0)?;
    let body: Vec<u8> = row.try_get(2)?;
    let listing: Listing = xchg_protocol::canonical::from_canonical(&body, &Default::default())
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let state = ListingState::parse(&state)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown listing state {state:?}").into()))?;
    Ok(Some(Current {
        state,
        submitted_by: row.try_get(1)?,
        listing,
    }))
}

fn applied(listing: &Listing, state: ListingState) -> CommandResponse {
    Ok(Applied {
        object_id: listing.id().to_string(),
        version: Some(listing.version),
        state: Some(state),
    })
}

async fn submit(
    conn: &mut SqliteConnection,
    raft_index: u64,
    listing: &Listing,
    actor: &Actor,
) -> Result<CommandResponse, sqlx::Error> {
    if listing.version != 1 {
        return Ok(Err(Refusal::Conflict(
            "a new listing must be version 1".into(),
        )));
    }
    let encoded = Encoded::of(listing);
    if !insert_new_listing(conn, listing, &encoded, &actor.id).await? {
        // Resubmitting the very same version by the same submitter (a client retry after a
        // lost answer) succeeds without a second effect; anything else is a conflict.
        let cur = current(conn, &encoded.id).await?;
        return Ok(match cur {
            Some(c) if c.submitted_by == actor.id && c.listing == *listing => {
                applied(&c.listing, c.state)
            }
            _ => Err(Refusal::Conflict(format!(
                "listing {} already exists",
                encoded.id
            ))),
        });
    }
    let id = encoded.id.to_string();
    record_history(
        conn,
        &id,
        raft_index,
        listing.created_at,
        actor,
        "submit",
        None,
        ListingState::Submitted,
        1,
        None,
    )
    .await?;
    Ok(Ok(Applied {
        object_id: id,
        version: Some(1),
        state: Some(ListingState::Submitted),
    }))
}

async fn update(
    conn: &mut SqliteConnection,
    raft_index: u64,
    id: &ContentId,
    draft: &xchg_protocol::ListingDraft,
    at: Timestamp,
    actor: &Actor,
) -> Result<CommandResponse, sqlx::Error> {
    let Some(cur) = current(conn, id).await? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    if actor.role != Role::Admin && cur.submitted_by != actor.id {
        return Ok(Err(Refusal::Forbidden(format!(
            "listing {id} was submitted by {}; only its provider may update it",
            cur.submitted_by
        ))));
    }
    if !matches!(cur.state, ListingState::Submitted | ListingState::Listed) {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "listing {id} is {}; only submitted or listed listings can be updated",
            cur.state.as_str()
        ))));
    }
    let next = cur
        .listing
        .next_version(draft.clone(), at.max(cur.listing.updated_at));
    write_listing(conn, &next, ListingState::Submitted, &cur.submitted_by).await?;
    record_history(
        conn,
        &id.to_string(),
        raft_index,
        at,
        actor,
        "update",
        Some(cur.state),
        ListingState::Submitted,
        next.version,
        None,
    )
    .await?;
    Ok(applied(&next, ListingState::Submitted))
}

#[derive(Clone, Copy)]
enum Transition {
    Approve,
    Reject,
    Delist,
}

impl Transition {
    fn rule(self) -> (&'static str, ListingState, ListingState) {
        match self {
            Transition::Approve => ("approve", ListingState::Submitted, ListingState::Listed),
            Transition::Reject => ("reject", ListingState::Submitted, ListingState::Rejected),
            Transition::Delist => ("delist", ListingState::Listed, ListingState::Delisted),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn transition(
    conn: &mut SqliteConnection,
    raft_index: u64,
    id: &ContentId,
    t: Transition,
    at: Timestamp,
    actor: &Actor,
    detail: Option<String>,
) -> Result<CommandResponse, sqlx::Error> {
    let (action, from, to) = t.rule();
    let Some(cur) = current(conn, id).await? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    if cur.state != from {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "cannot {action} listing {id}: it is {}, and only {} listings can be {}",
            cur.state.as_str(),
            from.as_str(),
            to.as_str()
        ))));
    }
    sqlx::query("UPDATE listings SET state = ? WHERE id = ?")
        .bind(to.as_str())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    record_history(
        conn,
        &id.to_string(),
        raft_index,
        at,
        actor,
        action,
        Some(from),
        to,
        cur.listing.version,
        detail,
    )
    .await?;
    Ok(applied(&cur.listing, to))
}

async fn create_token(
    conn: &mut SqliteConnection,
    hash: &str,
    role: Role,
    party: Option<&str>,
    label: &str,
    at: Timestamp,
) -> Result<CommandResponse, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO tokens (hash, role, party, label, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(role.as_str())
    .bind(party)
    .bind(label)
    .bind(at.0 as i64)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Err(Refusal::Conflict(
            "a token with this hash already exists".into(),
        )));
    }
    Ok(Ok(Applied {
        object_id: hash.to_owned(),
        version: None,
        state: None,
    }))
}

async fn revoke_token(
    conn: &mut SqliteConnection,
    hash: &str,
    role: Role,
    at: Timestamp,
) -> Result<CommandResponse, sqlx::Error> {
    // Config-issued tokens have no row yet: the revocation creates one.
    sqlx::query(
        "INSERT INTO tokens (hash, role, party, label, created_at, revoked_at) VALUES (?1, ?2, NULL, 'config', ?3, ?3)
         ON CONFLICT (hash) DO UPDATE SET revoked_at = COALESCE(tokens.revoked_at, excluded.revoked_at)",
    )
    .bind(hash)
    .bind(role.as_str())
    .bind(at.0 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(Applied {
        object_id: hash.to_owned(),
        version: None,
        state: None,
    }))
}
