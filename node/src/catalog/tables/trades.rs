//! The trade tables (schema v18): `fee_schedules`, `orders`, `deliveries`, `settlements` and
//! `settlement_disputes`. The rules are in `catalog::trades`; a settlement row is never
//! updated (a reversal is a new row).

use rusqlite::OptionalExtension as _;
use sqlx::{Row as _, SqliteConnection};
use xchg_protocol::{DeliveryMode, Timestamp};

use super::{enum_name, enum_of, int, uint};
use crate::catalog::Actor;
use crate::catalog::trades::{
    Amounts, DeliveryRequest, DeliveryView, DisputeView, FeeSchedule, FeeScheduleView, OrderFilter,
    OrderState, OrderView, SettlementView, SplitView,
};
use crate::sqlite::undecodable;

/// Most fee schedule versions a history shows, newest first.
pub const MAX_HISTORY: i64 = 100;

/// Records `schedule` as the next version; its version.
///
/// # Errors
/// SQLite's error.
pub fn insert_fee_schedule(
    db: &rusqlite::Connection,
    schedule: &FeeSchedule,
    at: Timestamp,
    by: &str,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO fee_schedules (version, platform_fee_bp, operator_share_bp, \
            broker_share_bp, minimum_fee, note, set_by, set_at, raft_index) \
         VALUES ((SELECT coalesce(max(version), 0) + 1 FROM fee_schedules), ?1, ?2, ?3, ?4, \
            ?5, ?6, ?7, ?8) RETURNING version",
    )?
    .query_row(
        rusqlite::params![
            schedule.platform_fee_bp,
            schedule.operator_share_bp,
            schedule.broker_share_bp,
            schedule.minimum_fee,
            schedule.note,
            by,
            int(at.0),
            int(raft_index),
        ],
        |r| r.get::<_, i64>(0),
    )
    .map(uint)
}

const SELECT_SCHEDULE: &str = "SELECT version, platform_fee_bp, operator_share_bp, \
    broker_share_bp, minimum_fee, note, set_by, set_at FROM fee_schedules";

type ScheduleRow = (i64, u32, u32, u32, String, Option<String>, String, i64);

fn schedule_of(r: ScheduleRow) -> FeeScheduleView {
    let (version, fee, operator, broker, minimum_fee, note, set_by, set_at) = r;
    FeeScheduleView {
        version: uint(version),
        schedule: FeeSchedule {
            platform_fee_bp: fee,
            operator_share_bp: operator,
            broker_share_bp: broker,
            minimum_fee,
            note,
        },
        set_by: Some(set_by),
        set_at: Some(Timestamp(uint(set_at))),
    }
}

/// The fee schedule in force: the latest version, or version 0 (none) before any.
///
/// # Errors
/// SQLite's error.
pub fn current_fee_schedule(db: &rusqlite::Connection) -> rusqlite::Result<FeeScheduleView> {
    let row = db
        .prepare_cached(&format!("{SELECT_SCHEDULE} ORDER BY version DESC LIMIT 1"))?
        .query_row([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .optional()?;
    Ok(row.map_or_else(FeeScheduleView::initial, schedule_of))
}

/// The fee schedules set, newest first (at most [`MAX_HISTORY`]), on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn fee_schedules_read(
    conn: &mut SqliteConnection,
) -> Result<Vec<FeeScheduleView>, sqlx::Error> {
    let rows: Vec<ScheduleRow> =
        sqlx::query_as(&format!("{SELECT_SCHEDULE} ORDER BY version DESC LIMIT ?"))
            .bind(MAX_HISTORY)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(schedule_of).collect())
}

/// An order to record.
pub struct NewOrder<'a> {
    /// The authorisation.
    pub authorization_id: u64,
    /// The listing.
    pub listing_id: &'a str,
    /// Its current version's content id.
    pub content_id: &'a str,
    /// Its valid certificate's number.
    pub certificate_number: Option<&'a str>,
    /// The provider.
    pub provider: &'a str,
    /// The buyer.
    pub buyer: &'a str,
    /// The broker, if any.
    pub broker: Option<&'a str>,
    /// The scenario.
    pub scenario: &'a str,
    /// The delivery mode.
    pub delivery_mode: DeliveryMode,
    /// The pricing model's wire name.
    pub pricing_model: &'a str,
    /// The currency.
    pub currency: &'a str,
    /// Units ordered.
    pub quantity: u64,
    /// Unit price.
    pub unit_price: &'a str,
    /// Total.
    pub total: &'a str,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub by: &'a str,
    /// The Raft entry.
    pub raft_index: u64,
}

/// Records `o`, placed; its number.
///
/// # Errors
/// SQLite's error.
pub fn insert_order(db: &rusqlite::Connection, o: &NewOrder<'_>) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO orders (authorization_id, listing_id, content_id, certificate_number, \
            provider, buyer, broker, scenario, delivery_mode, pricing_model, currency, quantity, \
            unit_price, total, state, placed_at, placed_by, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'placed', ?15, \
            ?16, ?17) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            int(o.authorization_id),
            o.listing_id,
            o.content_id,
            o.certificate_number,
            o.provider,
            o.buyer,
            o.broker,
            o.scenario,
            enum_name(&o.delivery_mode),
            o.pricing_model,
            o.currency,
            int(o.quantity),
            o.unit_price,
            o.total,
            int(o.at.0),
            o.by,
            int(o.raft_index),
        ],
        |r| r.get::<_, i64>(0),
    )
    .map(uint)
}

/// An order as the rules judge it.
pub struct OrderRow {
    /// The authorisation.
    pub authorization_id: u64,
    /// The provider.
    pub provider: String,
    /// The buyer.
    pub buyer: String,
    /// The broker.
    pub broker: Option<String>,
    /// Its state.
    pub state: OrderState,
    /// The authorised delivery mode.
    pub delivery_mode: DeliveryMode,
    /// The pricing model's wire name.
    pub pricing_model: String,
    /// The currency.
    pub currency: String,
    /// Units ordered.
    pub quantity: u64,
    /// Unit price.
    pub unit_price: String,
    /// Calls delivered.
    pub delivered_calls: u64,
}

/// Order `id` as the rules judge it.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn order_row(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<OrderRow>> {
    type Row = (
        i64,
        String,
        String,
        Option<String>,
        String,
        String,
        String,
        String,
        i64,
        String,
        i64,
    );
    let row: Option<Row> = db
        .prepare_cached(
            "SELECT authorization_id, provider, buyer, broker, state, delivery_mode, \
                pricing_model, currency, quantity, unit_price, delivered_calls \
             FROM orders WHERE id = ?1",
        )?
        .query_row([int(id)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .optional()?;
    let Some((auth, provider, buyer, broker, state, mode, model, currency, q, unit, calls)) = row
    else {
        return Ok(None);
    };
    Ok(Some(OrderRow {
        authorization_id: uint(auth),
        provider,
        buyer,
        broker,
        state: OrderState::parse(&state)
            .ok_or_else(|| undecodable(format!("unknown order state {state:?}")))?,
        delivery_mode: enum_of("delivery mode", &mode).map_err(undecodable)?,
        pricing_model: model,
        currency,
        quantity: uint(q),
        unit_price: unit,
        delivered_calls: uint(calls),
    }))
}

/// Marks order `id` confirmed at `at` by `by`.
///
/// # Errors
/// SQLite's error.
pub fn confirm(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
    by: &str,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE orders SET state = 'confirmed', confirmed_at = ?1, confirmed_by = ?2 \
         WHERE id = ?3",
    )?
    .execute(rusqlite::params![int(at.0), by, int(id)])
    .map(drop)
}

/// Sets the calls delivered on order `id` and its state.
///
/// # Errors
/// SQLite's error.
pub fn delivered(
    db: &rusqlite::Connection,
    id: u64,
    calls: u64,
    state: OrderState,
) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE orders SET delivered_calls = ?1, state = ?2 WHERE id = ?3")?
        .execute(rusqlite::params![int(calls), state.as_str(), int(id)])
        .map(drop)
}

/// Records the broker that placed order `id` for its buyer.
///
/// # Errors
/// SQLite's error.
pub fn set_broker(db: &rusqlite::Connection, id: u64, broker: &str) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE orders SET broker = ?1 WHERE id = ?2")?
        .execute(rusqlite::params![broker, int(id)])
        .map(drop)
}

/// Sets the state of order `id`.
///
/// # Errors
/// SQLite's error.
pub fn set_state(db: &rusqlite::Connection, id: u64, state: OrderState) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE orders SET state = ?1 WHERE id = ?2")?
        .execute(rusqlite::params![state.as_str(), int(id)])
        .map(drop)
}

fn json_list(items: Option<&Vec<String>>) -> Option<String> {
    items.map(|v| serde_json::to_string(v).unwrap_or_default())
}

/// Records a delivery of order `order_id`; its number.
///
/// # Errors
/// SQLite's error.
pub fn insert_delivery(
    db: &rusqlite::Connection,
    order_id: u64,
    d: &DeliveryRequest,
    at: Timestamp,
    by: &str,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO deliveries (order_id, mode, calls, manifest_hashes, model_output_ids, \
            note, at, by, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            int(order_id),
            enum_name(&d.mode),
            d.calls.map(int),
            json_list(d.manifest_hashes.as_ref()),
            json_list(d.model_output_ids.as_ref()),
            d.note,
            int(at.0),
            by,
            int(raft_index),
        ],
        |r| r.get::<_, i64>(0),
    )
    .map(uint)
}

/// A settlement to record.
pub struct NewSettlement<'a> {
    /// The order.
    pub order_id: u64,
    /// The settlement a reversal reverses.
    pub reverses: Option<u64>,
    /// Quantity settled.
    pub quantity: u64,
    /// What it comes to.
    pub amounts: Amounts,
    /// The currency.
    pub currency: &'a str,
    /// The fee schedule version applied.
    pub fee_schedule_version: u64,
    /// Why (reversals).
    pub reason: Option<&'a str>,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub by: &'a str,
    /// The Raft entry.
    pub raft_index: u64,
}

/// Records a settlement; its number.
///
/// # Errors
/// SQLite's error.
pub fn insert_settlement(
    db: &rusqlite::Connection,
    s: &NewSettlement<'_>,
) -> rusqlite::Result<u64> {
    let a = &s.amounts;
    db.prepare_cached(
        "INSERT INTO settlements (order_id, kind, reverses, quantity, amount, fees, \
            provider_share, operator_share, broker_share, currency, fee_schedule_version, \
            reason, at, by, raft_index) \
         VALUES (?1, 'settlement', NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12) \
         RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            int(s.order_id),
            int(s.quantity),
            a.amount.fen_string(),
            a.fees.fen_string(),
            a.provider.fen_string(),
            a.operator.fen_string(),
            a.broker.fen_string(),
            s.currency,
            int(s.fee_schedule_version),
            int(s.at.0),
            s.by,
            int(s.raft_index),
        ],
        |r| r.get::<_, i64>(0),
    )
    .map(uint)
}

/// The latest settlement (not reversal) of order `order_id`.
///
/// # Errors
/// SQLite's error.
pub fn latest_settlement(
    db: &rusqlite::Connection,
    order_id: u64,
) -> rusqlite::Result<Option<u64>> {
    db.prepare_cached(
        "SELECT id FROM settlements WHERE order_id = ?1 AND kind = 'settlement' \
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row([int(order_id)], |r| r.get::<_, i64>(0))
    .optional()
    .map(|id| id.map(uint))
}

/// Records the reversal of settlement `first`: a new row with its amounts, naming it; the
/// reversal's number.
///
/// # Errors
/// SQLite's error.
pub fn insert_reversal(
    db: &rusqlite::Connection,
    first: u64,
    reason: &str,
    at: Timestamp,
    by: &str,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO settlements (order_id, kind, reverses, quantity, amount, fees, \
            provider_share, operator_share, broker_share, currency, fee_schedule_version, \
            reason, at, by, raft_index) \
         SELECT order_id, 'reversal', id, quantity, amount, fees, provider_share, \
            operator_share, broker_share, currency, fee_schedule_version, ?2, ?3, ?4, ?5 \
         FROM settlements WHERE id = ?1 RETURNING id",
    )?
    .query_row(
        rusqlite::params![int(first), reason, int(at.0), by, int(raft_index)],
        |r| r.get::<_, i64>(0),
    )
    .map(uint)
}

/// Records a dispute of settlement `settlement` of order `order_id`; its number.
///
/// # Errors
/// SQLite's error.
pub fn insert_dispute(
    db: &rusqlite::Connection,
    order_id: u64,
    settlement: u64,
    reason: &str,
    at: Timestamp,
    actor: &Actor,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO settlement_disputes (order_id, settlement_id, reason, by, role, at, \
            raft_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            int(order_id),
            int(settlement),
            reason,
            actor.id,
            actor.role.as_str(),
            int(at.0),
            int(raft_index),
        ],
        |r| r.get::<_, i64>(0),
    )
    .map(uint)
}

fn decode(e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(e.to_string().into())
}

fn time(t: i64) -> Timestamp {
    Timestamp(uint(t))
}

const SELECT_ORDER: &str = "SELECT id, state, authorization_id, listing_id, content_id, \
    certificate_number, provider, buyer, broker, scenario, delivery_mode, pricing_model, \
    currency, quantity, unit_price, total, delivered_calls, placed_at, placed_by, confirmed_at, \
    confirmed_by FROM orders";

fn order_of(r: &sqlx::sqlite::SqliteRow) -> Result<OrderView, sqlx::Error> {
    let state: String = r.try_get("state")?;
    let mode: String = r.try_get("delivery_mode")?;
    Ok(OrderView {
        id: uint(r.try_get("id")?),
        state: OrderState::parse(&state).ok_or_else(|| decode(format!("order state {state}")))?,
        authorization_id: uint(r.try_get("authorization_id")?),
        listing_id: r.try_get("listing_id")?,
        content_id: r.try_get("content_id")?,
        certificate_number: r.try_get("certificate_number")?,
        provider: r.try_get("provider")?,
        buyer: r.try_get("buyer")?,
        broker: r.try_get("broker")?,
        scenario: r.try_get("scenario")?,
        delivery_mode: enum_of("delivery mode", &mode).map_err(decode)?,
        pricing_model: r.try_get("pricing_model")?,
        currency: r.try_get("currency")?,
        quantity: uint(r.try_get("quantity")?),
        unit_price: r.try_get("unit_price")?,
        total: r.try_get("total")?,
        delivered_calls: uint(r.try_get("delivered_calls")?),
        placed_at: time(r.try_get("placed_at")?),
        placed_by: r.try_get("placed_by")?,
        confirmed_at: r.try_get::<Option<i64>, _>("confirmed_at")?.map(time),
        confirmed_by: r.try_get("confirmed_by")?,
        deliveries: None,
        settlements: Vec::new(),
        disputes: Vec::new(),
    })
}

const SELECT_SETTLEMENT: &str = "SELECT id, order_id, kind, reverses, quantity, amount, fees, \
    provider_share, operator_share, broker_share, currency, fee_schedule_version, reason, at, \
    by FROM settlements";

fn settlement_of(r: &sqlx::sqlite::SqliteRow) -> Result<SettlementView, sqlx::Error> {
    Ok(SettlementView {
        id: uint(r.try_get("id")?),
        order_id: uint(r.try_get("order_id")?),
        kind: r.try_get("kind")?,
        reverses: r.try_get::<Option<i64>, _>("reverses")?.map(uint),
        quantity: uint(r.try_get("quantity")?),
        amount: r.try_get("amount")?,
        fees: r.try_get("fees")?,
        split: SplitView {
            provider: r.try_get("provider_share")?,
            operator: r.try_get("operator_share")?,
            broker: r.try_get("broker_share")?,
        },
        currency: r.try_get("currency")?,
        fee_schedule_version: uint(r.try_get("fee_schedule_version")?),
        reason: r.try_get("reason")?,
        at: time(r.try_get("at")?),
        by: r.try_get("by")?,
    })
}

const SELECT_DELIVERY: &str = "SELECT id, order_id, mode, calls, manifest_hashes, \
    model_output_ids, note, at, by FROM deliveries";

fn delivery_of(r: &sqlx::sqlite::SqliteRow) -> Result<DeliveryView, sqlx::Error> {
    let mode: String = r.try_get("mode")?;
    let list = |col: &str| -> Result<Option<Vec<String>>, sqlx::Error> {
        r.try_get::<Option<String>, _>(col)?
            .map(|t| serde_json::from_str(&t).map_err(decode))
            .transpose()
    };
    Ok(DeliveryView {
        id: uint(r.try_get("id")?),
        order_id: uint(r.try_get("order_id")?),
        mode: enum_of("delivery mode", &mode).map_err(decode)?,
        calls: r.try_get::<Option<i64>, _>("calls")?.map(uint),
        manifest_hashes: list("manifest_hashes")?,
        model_output_ids: list("model_output_ids")?,
        note: r.try_get("note")?,
        at: time(r.try_get("at")?),
        by: r.try_get("by")?,
    })
}

const SELECT_DISPUTE: &str =
    "SELECT id, order_id, settlement_id, reason, by, role, at FROM settlement_disputes";

fn dispute_of(r: &sqlx::sqlite::SqliteRow) -> Result<DisputeView, sqlx::Error> {
    Ok(DisputeView {
        id: uint(r.try_get("id")?),
        order_id: uint(r.try_get("order_id")?),
        settlement_id: uint(r.try_get("settlement_id")?),
        reason: r.try_get("reason")?,
        by: r.try_get("by")?,
        role: r.try_get("role")?,
        at: time(r.try_get("at")?),
    })
}

/// Most deliveries an order shows, oldest first.
pub const MAX_DELIVERIES_SHOWN: i64 = 1000;

/// Fills in `o`'s settlements and disputes, and its deliveries when `deliveries`.
async fn with_records(
    conn: &mut SqliteConnection,
    mut o: OrderView,
    deliveries: bool,
) -> Result<OrderView, sqlx::Error> {
    let id = int(o.id);
    let rows = sqlx::query(&format!(
        "{SELECT_SETTLEMENT} WHERE order_id = ? ORDER BY id"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    o.settlements = rows.iter().map(settlement_of).collect::<Result<_, _>>()?;
    let rows = sqlx::query(&format!("{SELECT_DISPUTE} WHERE order_id = ? ORDER BY id"))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    o.disputes = rows.iter().map(dispute_of).collect::<Result<_, _>>()?;
    if deliveries {
        let rows = sqlx::query(&format!(
            "{SELECT_DELIVERY} WHERE order_id = ? ORDER BY id LIMIT ?"
        ))
        .bind(id)
        .bind(MAX_DELIVERIES_SHOWN)
        .fetch_all(&mut *conn)
        .await?;
        o.deliveries = Some(rows.iter().map(delivery_of).collect::<Result<_, _>>()?);
    }
    Ok(o)
}

/// Order `id` with its deliveries, settlements and disputes, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn order_read(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<OrderView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_ORDER} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    match row.as_ref().map(order_of).transpose()? {
        Some(o) => Ok(Some(with_records(conn, o, true).await?)),
        None => Ok(None),
    }
}

/// The orders `filter` selects, newest first, at most `rows`, with their settlements and
/// disputes, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn list_read(
    conn: &mut SqliteConnection,
    filter: &OrderFilter,
    rows: i64,
) -> Result<Vec<OrderView>, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("{SELECT_ORDER} WHERE 1 = 1"));
    if let Some(state) = filter.state {
        qb.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(a) = filter.authorization_id {
        qb.push(" AND authorization_id = ").push_bind(int(a));
    }
    if let Some(buyer) = &filter.buyer {
        qb.push(" AND buyer = ").push_bind(buyer.as_str());
    }
    if let Some(provider) = &filter.provider {
        qb.push(" AND provider = ").push_bind(provider.as_str());
    }
    if let Some(before) = filter.before {
        qb.push(" AND id < ").push_bind(int(before));
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(rows);
    let found = qb.build().fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(found.len());
    for row in &found {
        let o = order_of(row)?;
        out.push(with_records(conn, o, false).await?);
    }
    Ok(out)
}

/// Whether order `id` exists, on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn order_exists(conn: &mut SqliteConnection, id: u64) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM orders WHERE id = ?")
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

/// Delivery `id`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn delivery_read(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<DeliveryView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_DELIVERY} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(delivery_of).transpose()
}

/// Settlement record `id`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn settlement_read(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<SettlementView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_SETTLEMENT} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(settlement_of).transpose()
}

/// Dispute `id`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn dispute_read(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<DisputeView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_DISPUTE} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(dispute_of).transpose()
}
