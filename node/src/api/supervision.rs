//! `GET /v1/supervision/stats`: the zone's supervision figures (监管统计) per period, for the
//! regulator, operators and admins ([`crate::catalog::supervision`] counts them).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, ErrorBody, ReadErrors};
use super::listings::{consistency_schema, query_error};
use super::{AppState, Consistency};
use crate::catalog::supervision::{self, Period, ZoneStats, day_of};

/// The query string of `GET /v1/supervision/stats`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    /// The first day covered, `YYYY-MM-DD` (UTC): the periods start with the one holding it.
    /// Default: 29 periods before the one holding `to`.
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    from: Option<String>,
    /// The last day covered, `YYYY-MM-DD` (UTC), not before `from`: the periods end with the
    /// one holding it. Default: today (the node's clock). At most 100 periods from `from`.
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    to: Option<String>,
    /// `day` (default), `week` (ISO, from Monday) or `month`.
    #[param(value_type = Option<Period>)]
    period: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

/// The periods `p` asks for, with `today` as the default end.
///
/// # Errors
/// 400 `invalid_field` naming `from`, `to` or `period`.
pub fn windows_of(
    from: Option<&str>,
    to: Option<&str>,
    period: Option<&str>,
    today: i64,
) -> Result<(Period, Vec<supervision::Window>), ApiError> {
    supervision::windows_of(from, to, period, today)
        .map_err(|(field, why)| ApiError::invalid_field(field, why))
}

/// `GET /v1/supervision/stats?from=&to=&period=` (regulator, operator, admin).
#[utoipa::path(
    get,
    path = "/v1/supervision/stats",
    operation_id = "supervision_stats",
    tag = "supervision",
    params(StatsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The zone's figures per period (UTC days, ISO weeks or \
            months), oldest first: listings that entered each state and those held at the \
            period's end by state and classification; applications submitted, approved and \
            rejected; authorisations granted, expired, suspended and revoked in the period and \
            by state at its end; announcements of other zones judged, by exchange and decision \
            (`rejected` are the refusals); complaint steps and complaints by state at the end. \
            Counted by the commands' own times from the replicated tables: every member \
            answers the same", body = ZoneStats),
        (status = 400, description = "An unknown parameter (`invalid_query`); a `from` or `to` \
            that is not a date from 1970 to 9999, a `from` after `to`, more than 100 periods, \
            or an unknown `period` (`invalid_field` naming it)", body = ErrorBody),
        (status = 403, description = "Not a regulator, operator or admin token", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<ZoneStats>, ApiError> {
    caller.require(&[Role::Regulator, Role::Operator])?;
    let Query(p) = query.map_err(query_error)?;
    let today = day_of(state.clock.now());
    let (period, windows) = windows_of(
        p.from.as_deref(),
        p.to.as_deref(),
        p.period.as_deref(),
        today,
    )?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let periods = supervision::figures(&mut conn, &windows).await?;
    Ok(Json(ZoneStats {
        zone: state.config.zone.id.to_string(),
        period,
        periods,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::supervision::{DEFAULT_PERIODS, civil_from_days, days_from_civil};

    #[test]
    fn the_periods_asked_default_to_thirty_ending_today_and_are_bounded() {
        let today = days_from_civil(2026, 12, 2);
        let (period, w) = windows_of(None, None, None, today).expect("default");
        assert_eq!(period, Period::Day);
        assert_eq!(w.len(), DEFAULT_PERIODS);
        assert_eq!(day_of(w[29].start), today);
        let (_, w) = windows_of(None, None, Some("month"), today).expect("months");
        assert_eq!(w.len(), DEFAULT_PERIODS);
        assert_eq!(civil_from_days(day_of(w[0].start)), (2024, 7, 1));
        let (_, w) = windows_of(Some("2026-11-30"), Some("2026-12-02"), Some("week"), today)
            .expect("one week");
        assert_eq!(w.len(), 1);
        let field = |r: Result<_, ApiError>| r.err().and_then(|e| e.field);
        assert_eq!(
            field(windows_of(
                Some("2026-12-03"),
                Some("2026-12-02"),
                None,
                today
            )),
            Some("from".into())
        );
        assert_eq!(
            field(windows_of(Some("2026-02-30"), None, None, today)),
            Some("from".into())
        );
        assert_eq!(
            field(windows_of(None, Some("tomorrow"), None, today)),
            Some("to".into())
        );
        assert_eq!(
            field(windows_of(None, None, Some("year"), today)),
            Some("period".into())
        );
        assert_eq!(
            field(windows_of(Some("2020-01-01"), None, None, today)),
            Some("from".into()),
            "more than 100 days"
        );
    }
}

/// One zone in the exchange's view: its figures, or why they are missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ZoneEntry {
    /// The zone.
    pub zone: String,
    /// Its figures, as its own `GET /v1/supervision/stats` gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<ZoneStats>,
    /// Why they are missing (unreachable, refused, undecodable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The figures of every zone of this exchange that could be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExchangeStats {
    /// The exchange.
    pub exchange: String,
    /// The length of the periods.
    pub period: Period,
    /// This node's zone first, then the other zones with a connected, proven node, by id.
    pub zones: Vec<ZoneEntry>,
}

/// `GET /v1/supervision/federation?from=&to=&period=` (regulator, operator, admin).
#[utoipa::path(
    get,
    path = "/v1/supervision/federation",
    operation_id = "supervision_federation",
    tag = "supervision",
    params(StatsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every zone of this node's exchange in one view (the \
            hub's): this zone's figures, then those of each other zone of the exchange one of \
            whose nodes is connected and proven (PROTOCOL.md 7.5), asked over the catch-up \
            protocol with the same `from`, `to` and `period`; a zone that does not answer \
            within 3 seconds, or refuses, carries `error` instead of `stats`. A zone with no \
            connected node is not listed", body = ExchangeStats),
        (status = 400, description = "As `GET /v1/supervision/stats`", body = ErrorBody),
        (status = 403, description = "Not a regulator, operator or admin token", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn federation(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<ExchangeStats>, ApiError> {
    caller.require(&[Role::Regulator, Role::Operator])?;
    let Query(p) = query.map_err(query_error)?;
    let today = day_of(state.clock.now());
    let (period, windows) = windows_of(
        p.from.as_deref(),
        p.to.as_deref(),
        p.period.as_deref(),
        today,
    )?;
    // The other zones are asked for exactly these days.
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return Err(ApiError::internal("no period"));
    };
    let from = supervision::date(day_of(first.start));
    let to = supervision::date(day_of(last.end) - 1);
    let period_name = match period {
        Period::Day => "day",
        Period::Week => "week",
        Period::Month => "month",
    };
    state.read_barrier(&p.consistency).await?;
    let own = {
        let mut conn = state.db.reader().await?;
        supervision::figures(&mut conn, &windows).await?
    };
    let mut zones = vec![ZoneEntry {
        zone: state.config.zone.id.to_string(),
        stats: Some(ZoneStats {
            zone: state.config.zone.id.to_string(),
            period,
            periods: own,
        }),
        error: None,
    }];
    for answer in state.federation.zone_figures(&from, &to, period_name).await {
        let (stats, error) = match answer.figures {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        zones.push(ZoneEntry {
            zone: answer.zone.to_string(),
            stats,
            error,
        });
    }
    Ok(Json(ExchangeStats {
        exchange: state.config.exchange.id.to_string(),
        period,
        zones,
    }))
}
