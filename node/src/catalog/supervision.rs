//! The supervision figures (监管统计) of a zone, per period: what changed in each period and
//! what stood at its end. Periods are UTC calendar days, ISO weeks (Monday to Sunday) or
//! calendar months. Every figure is counted from the replicated tables, so every member
//! answers the same for the same applied log. The SQL is in [`super::tables::supervision`].
//!
//! Orders are counted by the times of their steps (placed, confirmed, each delivery,
//! settlement, dispute and reversal); amounts settled and reversed are summed by currency in
//! the trades' decimal [`Money`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use xchg_protocol::Timestamp;

use super::money::Money;
use super::tables::supervision as table;

/// Most periods one request covers.
pub const MAX_PERIODS: usize = 100;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A UTC calendar day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A UTC calendar month.
    Month,
}

impl Period {
    /// Parses a query name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            _ => return None,
        })
    }
}

/// Days since 1970-01-01 of the civil date `y-m-d` (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of day `z` since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01: a real date from 1970 to 9999.
///
/// # Errors
/// What is expected.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let expected = || format!("{s:.40?} is not a date: expected YYYY-MM-DD (UTC), 1970 to 9999");
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(expected());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| expected())
        } else {
            Err(expected())
        }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return Err(expected());
    }
    let days = days_from_civil(i64::from(y), m, d);
    // A day past the month's end comes back as another date.
    if civil_from_days(days) != (i64::from(y), m, d) {
        return Err(expected());
    }
    Ok(days)
}

/// The day (since 1970-01-01) of `t`.
pub fn day_of(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX).div_euclid(DAY_MS)
}

fn at_day(day: i64) -> Timestamp {
    Timestamp(u64::try_from(day.saturating_mul(DAY_MS)).unwrap_or(0))
}

/// The first day of the period of `period` that holds `day`.
pub fn period_start(period: Period, day: i64) -> i64 {
    match period {
        Period::Day => day,
        // 1970-01-01 was a Thursday: day 4 (1970-01-05) is a Monday.
        Period::Week => day - (day - 4).rem_euclid(7),
        Period::Month => {
            let (y, m, _) = civil_from_days(day);
            days_from_civil(y, m, 1)
        }
    }
}

fn next_start(period: Period, start: i64) -> i64 {
    match period {
        Period::Day => start + 1,
        Period::Week => start + 7,
        Period::Month => {
            let (y, m, _) = civil_from_days(start);
            if m == 12 {
                days_from_civil(y + 1, 1, 1)
            } else {
                days_from_civil(y, m + 1, 1)
            }
        }
    }
}

/// One period: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Window {
    /// Its first instant.
    pub start: Timestamp,
    /// The first instant after it.
    pub end: Timestamp,
}

/// The periods of `period` from the one holding day `from` to the one holding day `to`.
///
/// # Errors
/// When `from` is after `to`, or they span more than [`MAX_PERIODS`] periods.
pub fn windows(period: Period, from: i64, to: i64) -> Result<Vec<Window>, String> {
    if from > to {
        return Err("from is after to".into());
    }
    let mut out = Vec::new();
    let mut start = period_start(period, from);
    while start <= to {
        if out.len() == MAX_PERIODS {
            return Err(format!(
                "from and to span more than {MAX_PERIODS} periods; ask for fewer or longer ones"
            ));
        }
        let end = next_start(period, start);
        out.push(Window {
            start: at_day(start),
            end: at_day(end),
        });
        start = end;
    }
    Ok(out)
}

/// Periods covered when `from` is not given.
pub const DEFAULT_PERIODS: usize = 30;

/// The figures of one zone, as `GET /v1/supervision/stats` answers them and a zone's node
/// answers the hub (PROTOCOL.md 7.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZoneStats {
    /// The zone counted.
    pub zone: String,
    /// The length of its periods.
    pub period: Period,
    /// Its periods, oldest first, each `[start, end)` in UTC.
    pub periods: Vec<PeriodFigures>,
}

/// `YYYY-MM-DD` of day `day`.
pub fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The periods asked by `from`, `to` (days as `YYYY-MM-DD`) and `period` (`day`, `week`,
/// `month`), with `today` as the default end and [`DEFAULT_PERIODS`] periods ending with it as
/// the default range.
///
/// # Errors
/// The parameter at fault and why.
pub fn windows_of(
    from: Option<&str>,
    to: Option<&str>,
    period: Option<&str>,
    today: i64,
) -> Result<(Period, Vec<Window>), (&'static str, String)> {
    let period = match period {
        None => Period::Day,
        Some(p) => Period::parse(p).ok_or_else(|| {
            (
                "period",
                format!("unknown period {p:.40?}; expected day, week or month"),
            )
        })?,
    };
    let to = match to {
        None => today,
        Some(t) => parse_date(t).map_err(|e| ("to", e))?,
    };
    let from = match from {
        None => {
            let mut start = period_start(period, to);
            for _ in 1..DEFAULT_PERIODS {
                start = period_start(period, start - 1);
            }
            start.max(0)
        }
        Some(f) => parse_date(f).map_err(|e| ("from", e))?,
    };
    if from > to {
        return Err(("from", format!("{} is after to {}", date(from), date(to))));
    }
    let windows = windows(period, from, to).map_err(|e| ("from", e))?;
    Ok((period, windows))
}

/// Counts by name.
pub type Counts = BTreeMap<String, u64>;

/// The listings of the zone in one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListingFigures {
    /// How many entered each state during the period (`submitted` counts new versions put
    /// to review too; `listed` approvals and lifted suspensions; `recognised` copies taken
    /// from other zones).
    pub entered: Counts,
    /// The listings the zone held at the period's end, by state.
    pub by_state: Counts,
    /// The same by state, then by the classification of their current version.
    pub by_state_and_classification: BTreeMap<String, Counts>,
}

/// The scenario applications of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplicationFigures {
    /// Submitted (to this zone, or forwarded from it to another exchange).
    pub submitted: u64,
    /// Approved.
    pub approved: u64,
    /// Rejected.
    pub rejected: u64,
}

/// The authorisations of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthorizationFigures {
    /// Granted during the period.
    pub granted: u64,
    /// Reached their expiry during the period.
    pub expired_in_period: u64,
    /// Suspended during the period.
    pub suspended_in_period: u64,
    /// Revoked during the period.
    pub revoked_in_period: u64,
    /// At the period's end, by state: `active`, `expired` (active but past its expiry),
    /// `suspended`, `revoked`.
    pub at_end: Counts,
}

/// The complaints of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplaintFigures {
    /// The steps taken during the period, by action: `file`, `investigate`, `resolve`,
    /// `dismiss`, `suspend_listing`, `lift_suspension`.
    pub steps: Counts,
    /// At the period's end, by state.
    pub at_end: Counts,
}

/// The trades of one period (交易): orders by step, and the amounts settled and reversed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderFigures {
    /// Orders placed during the period.
    pub placed: u64,
    /// Orders confirmed by their provider during the period.
    pub confirmed: u64,
    /// Deliveries recorded during the period.
    pub deliveries: u64,
    /// Settlements recorded during the period.
    pub settled: u64,
    /// Settlements disputed during the period.
    pub disputed: u64,
    /// Settlements reversed during the period (each by a new record).
    pub reversed: u64,
    /// The amounts settled during the period, by currency: decimal strings to the fen.
    pub settled_amounts: BTreeMap<String, String>,
    /// The amounts reversed during the period, by currency.
    pub reversed_amounts: BTreeMap<String, String>,
}

/// The figures of one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeriodFigures {
    /// The period.
    #[serde(flatten)]
    pub window: Window,
    /// Listings.
    pub listings: ListingFigures,
    /// Scenario applications and decisions.
    pub applications: ApplicationFigures,
    /// Authorisations.
    pub authorizations: AuthorizationFigures,
    /// Announcements of other zones judged during the period, by the exchange whose
    /// authority they carry, then by decision (`recognised`, `rejected` — the refusals —,
    /// `stale`, `delisted`, `revoked`). Refusal records expire (PROTOCOL.md 7.4), so a
    /// period older than their retention counts fewer refusals than it had.
    pub recognitions: BTreeMap<String, Counts>,
    /// Complaints.
    pub complaints: ComplaintFigures,
    /// Orders and settlements.
    pub orders: OrderFigures,
}

/// The figures of `windows`.
///
/// # Errors
/// Storage errors.
pub async fn figures(
    conn: &mut SqliteConnection,
    windows: &[Window],
) -> Result<Vec<PeriodFigures>, sqlx::Error> {
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        let (start, end) = (w.start, w.end);
        let mut listings = ListingFigures {
            entered: table::listings_entered(conn, start, end).await?,
            ..ListingFigures::default()
        };
        for (state, classification, n) in table::listings_at(conn, end).await? {
            *listings.by_state.entry(state.clone()).or_default() += n;
            *listings
                .by_state_and_classification
                .entry(state)
                .or_default()
                .entry(classification)
                .or_default() += n;
        }
        let decided = table::applications_decided(conn, start, end).await?;
        let applications = ApplicationFigures {
            submitted: table::applications_submitted(conn, start, end).await?,
            approved: decided.get("approved").copied().unwrap_or(0),
            rejected: decided.get("rejected").copied().unwrap_or(0),
        };
        let changed = table::authorization_changes(conn, start, end).await?;
        let authorizations = AuthorizationFigures {
            granted: table::authorizations_granted(conn, start, end).await?,
            expired_in_period: table::authorizations_expired(conn, start, end).await?,
            suspended_in_period: changed.get("suspended").copied().unwrap_or(0),
            revoked_in_period: changed.get("revoked").copied().unwrap_or(0),
            at_end: table::authorizations_at(conn, end).await?,
        };
        let complaints = ComplaintFigures {
            steps: table::complaint_steps(conn, start, end).await?,
            at_end: table::complaints_at(conn, end).await?,
        };
        let steps = table::order_steps(conn, start, end).await?;
        let step = |name: &str| steps.get(name).copied().unwrap_or(0);
        let mut orders = OrderFigures {
            placed: step("placed"),
            confirmed: step("confirmed"),
            deliveries: step("delivery"),
            settled: step("settlement"),
            disputed: step("dispute"),
            reversed: step("reversal"),
            ..OrderFigures::default()
        };
        // Each amount is at most the largest amount kept, but a period's sum of them may pass
        // it: the sums are not bounded by it (a u128 holds far more than any log's).
        let (mut settled, mut reversed) = (BTreeMap::new(), BTreeMap::new());
        for (kind, currency, amount) in table::settled_amounts(conn, start, end).await? {
            let sums: &mut BTreeMap<String, u128> = match kind.as_str() {
                "settlement" => &mut settled,
                _ => &mut reversed,
            };
            let held = sums.entry(currency).or_default();
            *held = Money::parse(&amount)
                .ok()
                .and_then(|a| held.checked_add(a.0))
                .ok_or_else(|| sqlx::Error::Decode(format!("amount {amount:?}").into()))?;
        }
        let shown = |sums: BTreeMap<String, u128>| {
            sums.into_iter()
                .map(|(currency, sum)| (currency, Money(sum).fen_string()))
                .collect()
        };
        orders.settled_amounts = shown(settled);
        orders.reversed_amounts = shown(reversed);
        out.push(PeriodFigures {
            window: *w,
            listings,
            applications,
            authorizations,
            recognitions: table::recognitions(conn, start, end).await?,
            complaints,
            orders,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_periods_are_utc_calendar_days_iso_weeks_and_months() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        for day in [0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(parse_date("2026-12-02"), Ok(days_from_civil(2026, 12, 2)));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "1969-12-31",
            "２０２６-01-01",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad:?}");
        }
        assert!(parse_date("2028-02-29").is_ok(), "a leap day");
        // 2026-12-02 is a Wednesday: its week starts Monday 2026-11-30.
        let wed = days_from_civil(2026, 12, 2);
        assert_eq!(
            period_start(Period::Week, wed),
            days_from_civil(2026, 11, 30)
        );
        assert_eq!(
            period_start(Period::Month, wed),
            days_from_civil(2026, 12, 1)
        );
        let months = windows(Period::Month, wed, days_from_civil(2027, 2, 10)).expect("3");
        let starts: Vec<_> = months
            .iter()
            .map(|w| civil_from_days(day_of(w.start)))
            .collect();
        assert_eq!(starts, [(2026, 12, 1), (2027, 1, 1), (2027, 2, 1)]);
        assert_eq!(day_of(months[2].end), days_from_civil(2027, 3, 1));
        let weeks = windows(Period::Week, wed, wed + 6).expect("2");
        assert_eq!(weeks.len(), 2);
        assert_eq!(weeks[0].end.0 - weeks[0].start.0, 7 * 86_400_000);
        assert_eq!(windows(Period::Day, wed, wed).map(|w| w.len()), Ok(1));
        assert!(windows(Period::Day, wed, wed - 1).is_err());
        assert_eq!(windows(Period::Day, 0, 99).map(|w| w.len()), Ok(100));
        assert!(windows(Period::Day, 0, 100).is_err(), "101 periods");
    }

    use xchg_federation_config::Role;
    use xchg_protocol::{DeliveryMode, Listing};

    use crate::audit;
    use crate::catalog::applications::{ApplicationRequest, Terms};
    use crate::catalog::apply::apply;
    use crate::catalog::complaints::{NewComplaint, Outcome, Step, Target, TargetKind};
    use crate::catalog::{Actor, CatalogCommand, Review, test_zone};
    use crate::sqlite::in_transaction;

    const HOUR: u64 = 60 * 60 * 1000;
    const BUYER: &str = "xuchang-bank";
    const PROVIDER: &str = "yuzhou-credit-center";

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.into(),
            role,
        }
    }

    fn operator() -> Actor {
        actor("token:0perator", Role::Operator)
    }

    fn regulator() -> Actor {
        actor("token:regu1ato", Role::Regulator)
    }

    /// Hour `h` of day `d` of December 2026.
    fn at(d: u32, h: u64) -> Timestamp {
        at_day(days_from_civil(2026, 12, d)).plus_millis(h * HOUR)
    }

    fn listing(title: &str, created: Timestamp) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        draft.scenarios = vec!["企业贷款授信审查".into()];
        Listing::first_version(draft, "xuchang/yuzhou".parse().expect("zone"), created)
    }

    fn apply_for(l: &Listing, when: Timestamp) -> CatalogCommand {
        CatalogCommand::SubmitApplication {
            request: Box::new(ApplicationRequest {
                listing_id: l.id(),
                scenario: "企业贷款授信审查".into(),
                purpose: "授信前核验".into(),
                delivery_mode: DeliveryMode::Api,
                duration_days: 1,
                usage_limit: 10,
            }),
            buyer: BUYER.parse().expect("party"),
            at: when,
            actor: actor(BUYER, Role::Buyer),
        }
    }

    fn approve(id: u64, when: Timestamp) -> CatalogCommand {
        CatalogCommand::ApproveApplication {
            application_id: id,
            terms: Terms::default(),
            at: when,
            actor: operator(),
        }
    }

    fn on_complaint(step: Step, when: Timestamp) -> CatalogCommand {
        CatalogCommand::ActOnComplaint {
            complaint_id: 1,
            step,
            note: "n".into(),
            at: when,
            actor: regulator(),
        }
    }

    fn counts(pairs: &[(&str, u64)]) -> Counts {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    /// Three days of a zone's history, each command at a time the test sets, and the figures
    /// of each day counted by hand.
    #[tokio::test]
    async fn the_figures_of_each_period_are_those_of_the_history_the_test_wrote() {
        let a = listing("A", at(1, 1));
        let b = listing("B", at(1, 3));
        let commands = vec![
            // 1 December: A submitted and listed, B submitted and rejected.
            CatalogCommand::SubmitListing {
                listing: Box::new(a.clone()),
                actor: actor(PROVIDER, Role::Provider),
            },
            CatalogCommand::ApproveListing {
                listing_id: a.id(),
                review: Review::default(),
                at: at(1, 2),
                actor: operator(),
            },
            CatalogCommand::SubmitListing {
                listing: Box::new(b.clone()),
                actor: actor(PROVIDER, Role::Provider),
            },
            CatalogCommand::RejectListing {
                listing_id: b.id(),
                reason: "incomplete".into(),
                at: at(1, 4),
                actor: operator(),
            },
            // 2 December: two applications, one approved for a day, one rejected; a complaint
            // filed, investigated, and A suspended under it.
            apply_for(&a, at(2, 1)),
            approve(1, at(2, 2)),
            apply_for(&a, at(2, 3)),
            CatalogCommand::RejectApplication {
                application_id: 2,
                reason: "no need shown".into(),
                at: at(2, 4),
                actor: operator(),
            },
            CatalogCommand::FileComplaint {
                complaint: Box::new(NewComplaint {
                    target: Target {
                        kind: TargetKind::Listing,
                        id: a.id().to_string(),
                    },
                    category: None,
                    text: "t".into(),
                }),
                at: at(2, 5),
                actor: actor(BUYER, Role::Buyer),
            },
            on_complaint(Step::Investigate, at(2, 6)),
            on_complaint(Step::SuspendListing, at(2, 7)),
            // 3 December: lifted and resolved; authorisation 1 expires at 02:00; a third
            // application approved, its authorisation suspended, then revoked.
            on_complaint(Step::LiftSuspension, at(3, 1)),
            on_complaint(Step::Close(Outcome::Resolved), at(3, 2)),
            apply_for(&a, at(3, 4)),
            approve(3, at(3, 5)),
            CatalogCommand::SuspendAuthorization {
                authorization_id: 2,
                reason: "r".into(),
                at: at(3, 6),
                actor: operator(),
            },
            CatalogCommand::RevokeAuthorization {
                authorization_id: 2,
                reason: "r".into(),
                at: at(3, 7),
                actor: operator(),
            },
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        let responses = in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let responses = (10..)
                .zip(&commands)
                .map(|(index, c)| apply(&db, &mut chain, &zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(&db)?;
            Ok(responses)
        })
        .expect("apply");
        assert!(responses.iter().all(Result::is_ok), "{responses:?}");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let day = |d| days_from_civil(2026, 12, d);
        let w = windows(Period::Day, day(1), day(3)).expect("3 days");
        let f = figures(&mut reader, &w).await.expect("figures");
        let [d1, d2, d3] = &f[..] else {
            panic!("three periods: {f:?}")
        };

        assert_eq!(d1.window.start, at(1, 0));
        assert_eq!(d1.window.end, at(2, 0));
        assert_eq!(
            d1.listings.entered,
            counts(&[("submitted", 2), ("listed", 1), ("rejected", 1)])
        );
        assert_eq!(
            d1.listings.by_state,
            counts(&[("listed", 1), ("rejected", 1)])
        );
        assert_eq!(
            d1.listings.by_state_and_classification["listed"],
            counts(&[("general", 1)])
        );
        assert_eq!(d1.applications, ApplicationFigures::default());
        assert_eq!(d1.authorizations, AuthorizationFigures::default());
        assert_eq!(d1.complaints, ComplaintFigures::default());

        assert_eq!(d2.listings.entered, counts(&[("suspended", 1)]));
        assert_eq!(
            d2.listings.by_state,
            counts(&[("suspended", 1), ("rejected", 1)])
        );
        assert_eq!(
            d2.applications,
            ApplicationFigures {
                submitted: 2,
                approved: 1,
                rejected: 1
            }
        );
        assert_eq!(
            d2.authorizations,
            AuthorizationFigures {
                granted: 1,
                at_end: counts(&[("active", 1)]),
                ..AuthorizationFigures::default()
            }
        );
        assert_eq!(
            d2.complaints.steps,
            counts(&[("file", 1), ("investigate", 1), ("suspend_listing", 1)])
        );
        assert_eq!(d2.complaints.at_end, counts(&[("investigating", 1)]));

        assert_eq!(d3.listings.entered, counts(&[("listed", 1)]));
        assert_eq!(
            d3.listings.by_state,
            counts(&[("listed", 1), ("rejected", 1)])
        );
        assert_eq!(
            d3.applications,
            ApplicationFigures {
                submitted: 1,
                approved: 1,
                rejected: 0
            }
        );
        assert_eq!(
            d3.authorizations,
            AuthorizationFigures {
                granted: 1,
                expired_in_period: 1,
                suspended_in_period: 1,
                revoked_in_period: 1,
                at_end: counts(&[("expired", 1), ("revoked", 1)]),
            }
        );
        assert_eq!(
            d3.complaints.steps,
            counts(&[("lift_suspension", 1), ("resolve", 1)])
        );
        assert_eq!(d3.complaints.at_end, counts(&[("resolved", 1)]));
        assert!(f.iter().all(|p| p.recognitions.is_empty()));

        // The same history by month: one period holding all of it.
        let m = windows(Period::Month, day(3), day(3)).expect("a month");
        let month = &figures(&mut reader, &m).await.expect("figures")[0];
        assert_eq!(month.applications.submitted, 3);
        assert_eq!(month.authorizations.granted, 2);
        assert_eq!(
            month.listings.entered,
            counts(&[
                ("submitted", 2),
                ("listed", 2),
                ("rejected", 1),
                ("suspended", 1)
            ])
        );
        assert_eq!(month.listings.by_state, d3.listings.by_state);
    }

    /// Each settlement fits under the largest amount an order may have, but a period's sum of
    /// them need not: the figures add them up all the same, and do not fail.
    #[tokio::test]
    async fn a_periods_settled_sum_may_pass_the_largest_amount_of_one_settlement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let when = at(2, 1).0;
        db.execute_batch(&format!(
            "INSERT INTO orders (id, authorization_id, listing_id, content_id, provider, buyer, \
                scenario, delivery_mode, pricing_model, currency, quantity, unit_price, total, \
                state, placed_at, placed_by, raft_index) VALUES \
             (1, 1, 'l', 'l', 'p', 'b', 's', 'api', 'fixed', 'CNY', 1, '600000000000000.00', \
                '600000000000000.00', 'settled', {when}, 'b', 1), \
             (2, 1, 'l', 'l', 'p', 'b', 's', 'api', 'fixed', 'CNY', 1, '999999999999999.99', \
                '999999999999999.99', 'reversed', {when}, 'b', 2);
             INSERT INTO settlements (order_id, kind, reverses, quantity, amount, fees, \
                provider_share, operator_share, broker_share, currency, fee_schedule_version, \
                at, by, raft_index) VALUES \
             (1, 'settlement', NULL, 1, '600000000000000.00', '0.00', '600000000000000.00', \
                '0.00', '0.00', 'CNY', 0, {when}, 'op', 3), \
             (2, 'settlement', NULL, 1, '999999999999999.99', '0.00', '999999999999999.99', \
                '0.00', '0.00', 'CNY', 0, {when}, 'op', 4), \
             (2, 'reversal', 2, 1, '999999999999999.99', '0.00', '999999999999999.99', \
                '0.00', '0.00', 'CNY', 0, {when}, 'op', 5), \
             (2, 'reversal', 2, 1, '999999999999999.99', '0.00', '999999999999999.99', \
                '0.00', '0.00', 'CNY', 0, {when}, 'op', 6);"
        ))
        .expect("two settlements and two reversals");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let day = days_from_civil(2026, 12, 2);
        let w = windows(Period::Day, day, day).expect("a day");
        let f = figures(&mut reader, &w).await.expect("figures");
        assert_eq!(
            f[0].orders.settled_amounts["CNY"], "1599999999999999.99",
            "{f:?}"
        );
        assert_eq!(f[0].orders.reversed_amounts["CNY"], "1999999999999999.98");
    }
}

#[cfg(test)]
mod migration_tests {
    use crate::catalog::SCHEMA;
    use crate::sqlite::migrate;

    /// Schema v19 takes the suspensions, reinstatements and revocations recorded before it from
    /// the audit chain: only those applied (`ok`), in their order, with their times.
    #[test]
    fn the_authorisation_changes_made_before_version_16_are_taken_from_the_audit_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = rusqlite::Connection::open(dir.path().join("catalog.db")).expect("open");
        migrate(&db, &SCHEMA[..15]).expect("v15");
        db.execute_batch(
            "INSERT INTO audit (seq, raft_index, at, actor, role, action, object_id, result,
                prev_hash, hash) VALUES
             (1, 5, 100, 'op', 'operator', 'suspend_authorization', 'authorization:7', 'ok', x'00', x'01'),
             (2, 6, 200, 'op', 'operator', 'reinstate_authorization', 'authorization:7', 'ok', x'01', x'02'),
             (3, 7, 300, 'op', 'operator', 'revoke_authorization', 'authorization:12',
                 'refused:illegal_transition: no', x'02', x'03'),
             (4, 8, 400, 'op', 'operator', 'revoke_authorization', 'authorization:7', 'ok', x'03', x'04'),
             (5, 9, 500, 'op', 'operator', 'approve_application', 'application:1', 'ok', x'04', x'05');",
        )
        .expect("old audit records");
        migrate(&db, SCHEMA).expect("v19");
        let rows: Vec<(i64, i64, i64, String)> = db
            .prepare(
                "SELECT authorization_id, seq, at, to_state FROM authorization_changes \
                 ORDER BY authorization_id, seq",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .expect("changes");
        assert_eq!(
            rows,
            [
                (7, 1, 100, "suspended".to_owned()),
                (7, 2, 200, "active".to_owned()),
                (7, 3, 400, "revoked".to_owned()),
            ]
        );
    }
}
