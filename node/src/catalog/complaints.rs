//! Complaints (投诉举报) and the regulator's supervision of them: any token files a complaint
//! against a listing or a party of the zone; the regulator investigates it and resolves or
//! dismisses it, each step with a note kept in the complaint's history; a listing under
//! complaint can be suspended by the regulator (it stops being exported, its delisting is
//! announced to the exchanges that recognised it, new applications for it are refused) and the
//! suspension lifted again. The SQL is in [`super::tables::complaints`].
//!
//! A complaint's target is a [`TargetKind`]: every kind names what it must exist as in the
//! zone ([`target_exists`]): a listing, a party, or an order.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use xchg_protocol::{ContentId, Timestamp};

use super::tables::complaints as table;
use super::tables::listings::{self, Transition};
use super::{Actor, Applied, CommandResponse, ListingState, Refusal, ZoneFacts, federation};
use crate::catalog::parties;

/// Longest complaint text, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 64;
/// Longest note on a step, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Longest target id, in characters (a listing id has 71).
pub const MAX_TARGET_CHARS: usize = 128;
/// Most complaints one complainant may have open (received or investigating) at once: a
/// token cannot grow the zone's state without bound.
pub const MAX_OPEN_PER_COMPLAINANT: i64 = 100;

/// What a complaint is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A listing the zone holds (its own or a recognised copy): `id` is its listing id.
    Listing,
    /// A party of the zone's registry (or a founding party): `id` is its party id.
    Party,
    /// An order of the zone (交易): `id` is its number.
    Order,
}

impl TargetKind {
    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Listing => "listing",
            TargetKind::Party => "party",
            TargetKind::Order => "order",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "listing" => TargetKind::Listing,
            "party" => TargetKind::Party,
            "order" => TargetKind::Order,
            _ => return None,
        })
    }
}

/// The object of a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// What kind of object.
    pub kind: TargetKind,
    /// Its id: a listing id (`sha256:` and 64 lowercase hex digits) or a party id.
    #[schema(max_length = 128)]
    pub id: String,
}

/// What a complainant files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    /// What it is against; it must exist in the zone.
    pub target: Target,
    /// A free category (e.g. `quality`, `privacy`, `fraud`), 1 to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub category: Option<String>,
    /// What happened, 1 to 4000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub text: String,
}

/// Where a complaint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintState {
    /// Filed, not yet taken up.
    Received,
    /// The regulator investigates it.
    Investigating,
    /// Closed: the complaint was founded and dealt with.
    Resolved,
    /// Closed: the complaint was not founded.
    Dismissed,
}

impl ComplaintState {
    /// Every state, in order.
    pub const ALL: [ComplaintState; 4] = [
        ComplaintState::Received,
        ComplaintState::Investigating,
        ComplaintState::Resolved,
        ComplaintState::Dismissed,
    ];

    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintState::Received => "received",
            ComplaintState::Investigating => "investigating",
            ComplaintState::Resolved => "resolved",
            ComplaintState::Dismissed => "dismissed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the regulator may still act on it.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            ComplaintState::Received | ComplaintState::Investigating
        )
    }
}

/// How the regulator closes a complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Founded and dealt with.
    Resolved,
    /// Not founded.
    Dismissed,
}

/// One step of a complaint's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplaintStep {
    /// When.
    pub at: Timestamp,
    /// Who (actor id).
    pub actor: String,
    /// In what role.
    pub role: String,
    /// `file`, `investigate`, `resolve`, `dismiss`, `suspend_listing` or `lift_suspension`.
    pub action: String,
    /// The state before (none for the filing).
    pub from: Option<ComplaintState>,
    /// The state after.
    pub to: ComplaintState,
    /// The note given with the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A complaint as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplaintView {
    /// Its number in the zone.
    pub id: u64,
    /// What it is against.
    pub target: Target,
    /// Its category, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What the complainant wrote.
    pub text: String,
    /// Where it stands.
    pub state: ComplaintState,
    /// When it was filed.
    pub filed_at: Timestamp,
    /// The complainant (actor id of its token).
    pub filed_by: String,
    /// The complainant's role.
    pub filed_role: String,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The listing suspended under it, while the suspension lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_listing: Option<String>,
    /// Its history, oldest first (only in a single complaint's answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ComplaintStep>,
}

/// A regulator's step on a complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `received → investigating`.
    Investigate,
    /// `received | investigating → resolved | dismissed`.
    Close(Outcome),
    /// Suspends the listing the complaint is against (complaint open, listing `listed`).
    SuspendListing,
    /// Lifts the suspension made under the complaint (listing back to `listed`).
    LiftSuspension,
}

impl Step {
    /// The history action.
    pub fn action(self) -> &'static str {
        match self {
            Step::Investigate => "investigate",
            Step::Close(Outcome::Resolved) => "resolve",
            Step::Close(Outcome::Dismissed) => "dismiss",
            Step::SuspendListing => "suspend_listing",
            Step::LiftSuspension => "lift_suspension",
        }
    }
}

fn done(id: u64, state: Option<ListingState>) -> CommandResponse {
    Ok(Applied {
        object_id: format!("complaint:{id}"),
        version: None,
        state,
        used: None,
    })
}

/// Whether `target` exists in the zone (on the writer, for the rules).
///
/// # Errors
/// Only storage errors.
pub fn target_exists(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    target: &Target,
) -> rusqlite::Result<bool> {
    Ok(match target.kind {
        TargetKind::Listing => listings::current(db, &target.id)?.is_some(),
        TargetKind::Party => parties::standing_on(db, &zone.founding, &target.id)?.is_some(),
        TargetKind::Order => match order_number(&target.id) {
            Some(n) => super::tables::trades::order_row(db, n)?.is_some(),
            None => false,
        },
    })
}

/// The number an order target names: 1 to 18 decimal digits without a leading zero.
fn order_number(id: &str) -> Option<u64> {
    let digits = (1..=18).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_digit())
        && !id.starts_with('0');
    digits.then(|| id.parse::<u64>().ok()).flatten()
}

/// The shape rules of a new complaint, as the API and the state machine both apply them:
/// the field at fault and why.
///
/// # Errors
/// The field and the rule it breaks.
pub fn shape(c: &NewComplaint) -> Result<(), (&'static str, String)> {
    let id = c.target.id.as_str();
    if id.is_empty() || id.chars().count() > MAX_TARGET_CHARS {
        return Err(("target.id", format!("1 to {MAX_TARGET_CHARS} characters")));
    }
    match c.target.kind {
        TargetKind::Listing if id.parse::<ContentId>().is_err() => {
            return Err((
                "target.id",
                "a listing id is sha256: and 64 lowercase hex digits".into(),
            ));
        }
        TargetKind::Party if id.parse::<xchg_protocol::PartyId>().is_err() => {
            return Err(("target.id", "not a valid party id".into()));
        }
        TargetKind::Order if order_number(id).is_none() => {
            return Err((
                "target.id",
                "an order is named by its number: 1 to 18 digits, no leading zero".into(),
            ));
        }
        _ => {}
    }
    let text = c.text.trim();
    if text.is_empty() || c.text.chars().count() > MAX_TEXT_CHARS {
        return Err((
            "text",
            format!("1 to {MAX_TEXT_CHARS} characters, not blank"),
        ));
    }
    if let Some(category) = &c.category
        && (category.trim().is_empty() || category.chars().count() > MAX_CATEGORY_CHARS)
    {
        return Err((
            "category",
            format!("1 to {MAX_CATEGORY_CHARS} characters, not blank"),
        ));
    }
    Ok(())
}

/// Files `complaint` by `actor`: it is `received`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn file(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    complaint: &NewComplaint,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    if let Err((field, why)) = shape(complaint) {
        return Ok(Err(Refusal::Invalid(format!("{field}: {why}"))));
    }
    if !target_exists(db, zone, &complaint.target)? {
        return Ok(Err(Refusal::NotFound(format!(
            "no {} {} in zone {}",
            complaint.target.kind.as_str(),
            complaint.target.id,
            zone.zone
        ))));
    }
    if table::open_of(db, &actor.id)? >= MAX_OPEN_PER_COMPLAINANT {
        return Ok(Err(Refusal::ComplaintsFull(format!(
            "{} has {MAX_OPEN_PER_COMPLAINANT} complaints open; more are filed once the \
             regulator closes some",
            actor.id
        ))));
    }
    let id = table::insert(db, complaint, at, actor, raft_index)?;
    table::record_history(
        db,
        id,
        &table::HistoryEntry {
            raft_index,
            at,
            actor,
            action: "file",
            from: None,
            to: ComplaintState::Received,
            note: None,
        },
    )?;
    Ok(done(id, None))
}

/// Applies a regulator's `step` on complaint `id`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
#[allow(clippy::too_many_arguments)]
pub fn act(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    id: u64,
    step: Step,
    note: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(c) = table::get(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no complaint {id}"))));
    };
    let action = step.action();
    let to = match step {
        Step::Investigate if c.state == ComplaintState::Received => ComplaintState::Investigating,
        Step::Close(outcome) if c.state.is_open() => match outcome {
            Outcome::Resolved => ComplaintState::Resolved,
            Outcome::Dismissed => ComplaintState::Dismissed,
        },
        Step::SuspendListing if c.state.is_open() => c.state,
        Step::LiftSuspension => c.state,
        _ => {
            let allowed = match step {
                Step::Investigate => "received",
                _ => "received or investigating",
            };
            return Ok(Err(Refusal::IllegalTransition(format!(
                "cannot {} complaint {id}: it is {}, and only {allowed} complaints can be",
                action.replace('_', " "),
                c.state.as_str()
            ))));
        }
    };
    let mut listing_state = None;
    match step {
        Step::SuspendListing => match suspend(db, zone, raft_index, &c, note, at, actor)? {
            Ok(()) => listing_state = Some(ListingState::Suspended),
            Err(refusal) => return Ok(Err(refusal)),
        },
        Step::LiftSuspension => match lift(db, raft_index, &c, note, at, actor)? {
            Ok(()) => listing_state = Some(ListingState::Listed),
            Err(refusal) => return Ok(Err(refusal)),
        },
        Step::Investigate | Step::Close(_) => table::set_state(db, id, to, at)?,
    }
    table::record_history(
        db,
        id,
        &table::HistoryEntry {
            raft_index,
            at,
            actor,
            action,
            from: Some(c.state),
            to,
            note: Some(note),
        },
    )?;
    Ok(done(id, listing_state))
}

/// Suspends the listing complaint `c` is against: `listed → suspended`, its delisting queued
/// for the exchanges that recognised it.
fn suspend(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    c: &table::Row,
    note: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<Result<(), Refusal>> {
    if c.target.kind != TargetKind::Listing {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "complaint {} is against {} {}, not a listing: only a listing under complaint is \
             suspended",
            c.id,
            c.target.kind.as_str(),
            c.target.id
        ))));
    }
    let key = c.target.id.as_str();
    let Some(cur) = listings::current(db, key)? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {key}"))));
    };
    if cur.listing.origin != zone.zone {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "listing {key} is a copy recognised from {}: it is suspended there, by its own \
             regulator",
            cur.listing.origin
        ))));
    }
    if cur.state != ListingState::Listed {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "cannot suspend listing {key}: it is {}, and only listed listings can be suspended",
            cur.state.as_str()
        ))));
    }
    listings::set_state(db, key, ListingState::Suspended)?;
    listings::record_history(
        db,
        key,
        &Transition {
            raft_index,
            at,
            by: actor.into(),
            action: "suspend",
            from: Some(ListingState::Listed),
            to: ListingState::Suspended,
            version: cur.listing.version,
            detail: Some(serde_json::json!({ "complaint": c.id, "note": note }).to_string()),
        },
    )?;
    table::set_suspended(db, c.id, Some(key), at)?;
    let why = suspension_reason(c.id, note);
    let id = cur.listing.id();
    federation::queue_delisting(db, zone, &id, &why, at)?;
    // Applications awaiting a decision stay: none is approved while the suspension lasts
    // (`applications::open_for_applications`), and they are decided once it is lifted.
    Ok(Ok(()))
}

/// The reason a suspension's delisting announcement carries (PROTOCOL.md 4.4): it names the
/// complaint, so a recognising exchange can tell a suspension from a withdrawal.
pub fn suspension_reason(complaint: u64, note: &str) -> String {
    format!("suspended under complaint {complaint}: {note}")
}

/// Lifts the suspension made under complaint `c`: `suspended → listed`.
fn lift(
    db: &rusqlite::Connection,
    raft_index: u64,
    c: &table::Row,
    note: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<Result<(), Refusal>> {
    let Some(key) = c.suspended_listing.as_deref() else {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "complaint {} suspended no listing that is still suspended",
            c.id
        ))));
    };
    let Some(cur) = listings::current(db, key)? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {key}"))));
    };
    if cur.state != ListingState::Suspended {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "listing {key} is {}, not suspended",
            cur.state.as_str()
        ))));
    }
    listings::set_state(db, key, ListingState::Listed)?;
    listings::record_history(
        db,
        key,
        &Transition {
            raft_index,
            at,
            by: actor.into(),
            action: "lift_suspension",
            from: Some(ListingState::Suspended),
            to: ListingState::Listed,
            version: cur.listing.version,
            detail: Some(serde_json::json!({ "complaint": c.id, "note": note }).to_string()),
        },
    )?;
    table::set_suspended(db, c.id, None, at)?;
    Ok(Ok(()))
}

/// Complaint `id` with its history, on a reader.
///
/// # Errors
/// Storage errors, or a row that does not decode.
pub async fn complaint(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<ComplaintView>, sqlx::Error> {
    let Some(mut view) = table::view(conn, id).await? else {
        return Ok(None);
    };
    view.history = table::history(conn, id).await?;
    Ok(Some(view))
}

#[cfg(test)]
mod tests {
    use xchg_federation_config::Role;
    use xchg_protocol::{Contact, Listing, PartyKind, PartyProfile};

    use super::*;
    use crate::audit;
    use crate::catalog::applications::ApplicationRequest;
    use crate::catalog::apply::apply;
    use crate::catalog::tables::outbox;
    use crate::catalog::{CatalogCommand, Review, test_zone};
    use crate::sqlite::in_transaction;

    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const PROVIDER: &str = "yuzhou-credit-center";
    const BUYER: &str = "xuchang-bank";

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.into(),
            role,
        }
    }

    fn regulator() -> Actor {
        actor("token:regu1ato", Role::Regulator)
    }

    fn founder() -> PartyProfile {
        PartyProfile {
            id: PROVIDER.parse().expect("party id"),
            name: "禹州市信用中心".into(),
            credit_code: "12411081T81DJ7JM9K".parse().expect("a credit code"),
            kinds: vec![PartyKind::ResourceHolder],
            contact: Contact {
                name: "数据专员".into(),
                phone: None,
                email: Some("data@yuzhou.example".into()),
            },
        }
    }

    fn product() -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.scenarios = vec!["企业贷款授信审查".into()];
        Listing::first_version(draft, "xuchang/yuzhou".parse().expect("zone"), T0)
    }

    fn listed(p: &Listing) -> [CatalogCommand; 2] {
        [
            CatalogCommand::SubmitListing {
                listing: Box::new(p.clone()),
                actor: actor(PROVIDER, Role::Provider),
            },
            CatalogCommand::ApproveListing {
                listing_id: p.id(),
                review: Review::default(),
                at: T0,
                actor: actor("token:0perator", Role::Operator),
            },
        ]
    }

    fn file(kind: TargetKind, id: &str, by: Actor) -> CatalogCommand {
        CatalogCommand::FileComplaint {
            complaint: Box::new(NewComplaint {
                target: Target {
                    kind,
                    id: id.into(),
                },
                category: Some("quality".into()),
                text: "数据与描述不符".into(),
            }),
            at: T0,
            actor: by,
        }
    }

    fn step(id: u64, step: Step, by: Actor) -> CatalogCommand {
        CatalogCommand::ActOnComplaint {
            complaint_id: id,
            step,
            note: format!("{} note", step.action()),
            at: T0,
            actor: by,
        }
    }

    fn apply_for(p: &Listing) -> CatalogCommand {
        CatalogCommand::SubmitApplication {
            request: Box::new(ApplicationRequest {
                listing_id: p.id(),
                scenario: "企业贷款授信审查".into(),
                purpose: "授信前核验".into(),
                delivery_mode: xchg_protocol::DeliveryMode::Api,
                duration_days: 30,
                usage_limit: 100,
            }),
            buyer: BUYER.parse().expect("party id"),
            at: T0,
            actor: actor(BUYER, Role::Buyer),
        }
    }

    struct Ran {
        codes: Vec<Option<&'static str>>,
        complaints: Vec<ComplaintView>,
        listing: String,
        outbox: Vec<(String, String, Option<String>)>,
        audit: Vec<(String, String)>,
    }

    /// Applies `commands` on a fresh catalog of the test zone (whose founding provider is
    /// [`PROVIDER`]); what came of them for `p`.
    async fn run(p: &Listing, commands: &[CatalogCommand]) -> Ran {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone().with_founding(&[founder()]);
        let responses = in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let responses = (10..)
                .zip(commands)
                .map(|(index, c)| apply(&db, &mut chain, &zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(&db)?;
            Ok(responses)
        })
        .expect("apply");
        let audit = db
            .prepare("SELECT action, result FROM audit ORDER BY seq")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .expect("audit");
        let listing: String = db
            .query_row(
                "SELECT state FROM listings WHERE id = ?1",
                [p.id().to_string()],
                |r| r.get(0),
            )
            .expect("listing");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let mut complaints = Vec::new();
        for id in 1.. {
            match complaint(&mut reader, id).await.expect("read") {
                Some(c) => complaints.push(c),
                None => break,
            }
        }
        let outbox = outbox::of_listing(&mut reader, &p.id().to_string())
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| (e.kind, e.state, e.reason))
            .collect();
        Ran {
            codes: responses
                .iter()
                .map(|r| r.as_ref().err().map(Refusal::code))
                .collect(),
            complaints,
            listing,
            outbox,
            audit,
        }
    }

    #[tokio::test]
    async fn a_complaint_is_filed_investigated_and_resolved_with_every_note_in_its_history() {
        let p = product();
        let id = p.id().to_string();
        let mut commands = listed(&p).to_vec();
        commands.extend([
            file(TargetKind::Listing, &id, actor(BUYER, Role::Buyer)),
            file(TargetKind::Party, PROVIDER, actor(BUYER, Role::Buyer)),
            step(1, Step::Investigate, regulator()),
            step(1, Step::Close(Outcome::Resolved), regulator()),
            step(2, Step::Close(Outcome::Dismissed), regulator()),
        ]);
        let ran = run(&p, &commands).await;
        assert_eq!(ran.codes, [None; 7]);
        let [first, second] = &ran.complaints[..] else {
            panic!("two complaints: {:?}", ran.complaints);
        };
        assert_eq!(first.state, ComplaintState::Resolved);
        assert_eq!(first.filed_by, BUYER);
        assert_eq!(first.target.kind, TargetKind::Listing);
        let steps: Vec<_> = first
            .history
            .iter()
            .map(|s| (s.action.as_str(), s.to, s.note.as_deref()))
            .collect();
        assert_eq!(
            steps,
            [
                ("file", ComplaintState::Received, None),
                (
                    "investigate",
                    ComplaintState::Investigating,
                    Some("investigate note")
                ),
                ("resolve", ComplaintState::Resolved, Some("resolve note")),
            ]
        );
        assert_eq!(
            second.state,
            ComplaintState::Dismissed,
            "straight from received"
        );
        let audited: Vec<_> = ran.audit[2..]
            .iter()
            .map(|(a, r)| (a.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            audited,
            [
                ("file_complaint", "ok"),
                ("file_complaint", "ok"),
                ("investigate_complaint", "ok"),
                ("resolve_complaint", "ok"),
                ("dismiss_complaint", "ok"),
            ]
        );
    }

    #[tokio::test]
    async fn a_complaint_needs_a_target_that_exists_and_steps_in_order() {
        let p = product();
        let id = p.id().to_string();
        let absent = format!("sha256:{}", "0".repeat(64));
        let mut commands = listed(&p).to_vec();
        commands.extend([
            file(TargetKind::Listing, &absent, actor(BUYER, Role::Buyer)),
            file(
                TargetKind::Party,
                "no-such-party",
                actor(BUYER, Role::Buyer),
            ),
            file(TargetKind::Listing, "not-an-id", actor(BUYER, Role::Buyer)),
            file(TargetKind::Listing, &id, actor(BUYER, Role::Buyer)),
            step(1, Step::Close(Outcome::Dismissed), regulator()),
            // Closed: nothing more.
            step(1, Step::Investigate, regulator()),
            step(1, Step::Close(Outcome::Resolved), regulator()),
            step(1, Step::SuspendListing, regulator()),
            step(9, Step::Investigate, regulator()),
            // Nothing suspended under it to lift.
            step(1, Step::LiftSuspension, regulator()),
        ]);
        let ran = run(&p, &commands).await;
        assert_eq!(
            ran.codes[2..],
            [
                Some("not_found"),
                Some("not_found"),
                Some("invalid"),
                None,
                None,
                Some("illegal_transition"),
                Some("illegal_transition"),
                Some("illegal_transition"),
                Some("not_found"),
                Some("illegal_transition"),
            ]
        );
        assert_eq!(ran.complaints.len(), 1);
        assert_eq!(ran.listing, "listed");
        assert!(
            ran.audit.iter().any(|(a, r)| a == "investigate_complaint"
                && r.starts_with(
                    "refused:illegal_transition: cannot investigate complaint 1: it is dismissed"
                )),
            "{:?}",
            ran.audit
        );
    }

    #[test]
    fn only_the_regulator_acts_on_a_complaint_and_anyone_files_one() {
        for role in Role::ALL {
            let mut cmd = step(1, Step::Investigate, regulator());
            let judged = cmd.authorise(actor("someone", role), None);
            if matches!(role, Role::Regulator | Role::Admin) {
                assert!(judged.is_ok(), "{role}");
            } else {
                let refusal = judged.expect_err("refused");
                assert_eq!(refusal.code(), "forbidden", "{role}");
                assert!(
                    refusal.to_string().contains("cannot investigate complaint"),
                    "{refusal}"
                );
            }
            let mut cmd = file(TargetKind::Party, PROVIDER, regulator());
            assert!(
                cmd.authorise(actor("someone", role), None).is_ok(),
                "{role}"
            );
            let CatalogCommand::FileComplaint { actor: a, .. } = cmd else {
                unreachable!()
            };
            assert_eq!(a.id, "someone", "the complainant is the caller");
        }
    }

    #[tokio::test]
    async fn a_suspended_listing_is_withdrawn_refuses_applications_and_comes_back_when_lifted() {
        let p = product();
        let id = p.id().to_string();
        let mut commands = listed(&p).to_vec();
        commands.extend([
            file(TargetKind::Listing, &id, actor(BUYER, Role::Buyer)),
            step(1, Step::Investigate, regulator()),
            step(1, Step::SuspendListing, regulator()),
            // Suspended: no application, no second suspension, no update by its provider.
            apply_for(&p),
            step(1, Step::SuspendListing, regulator()),
            CatalogCommand::UpdateListing {
                listing_id: p.id(),
                draft: Box::new(xchg_protocol::vectors::credit_draft()),
                at: T0,
                actor: actor(PROVIDER, Role::Provider),
            },
        ]);
        let ran = run(&p, &commands).await;
        assert_eq!(
            ran.codes[2..],
            [
                None,
                None,
                None,
                Some("listing_suspended"),
                Some("illegal_transition"),
                Some("illegal_transition"),
            ]
        );
        assert_eq!(ran.listing, "suspended");
        assert_eq!(
            ran.complaints[0].suspended_listing.as_deref(),
            Some(id.as_str())
        );
        // The listing was queued for export when approved; the suspension queues its
        // delisting, whose reason names the complaint.
        let kinds: Vec<_> = ran.outbox.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(kinds, ["listing", "delisting"]);

        // Lifted: listed again, applications taken, the complaint holds no suspension.
        commands.extend([step(1, Step::LiftSuspension, regulator()), apply_for(&p)]);
        let ran = run(&p, &commands).await;
        assert_eq!(ran.codes[8..], [None, None]);
        assert_eq!(ran.listing, "listed");
        assert_eq!(ran.complaints[0].suspended_listing, None);
        let actions: Vec<_> = ran.complaints[0]
            .history
            .iter()
            .map(|s| s.action.as_str())
            .collect();
        assert_eq!(
            actions,
            ["file", "investigate", "suspend_listing", "lift_suspension"]
        );
        // Lifting twice is refused.
        commands.push(step(1, Step::LiftSuspension, regulator()));
        let ran = run(&p, &commands).await;
        assert_eq!(ran.codes[10], Some("illegal_transition"));
    }

    #[tokio::test]
    async fn only_a_listing_under_complaint_and_of_this_zone_is_suspended() {
        let p = product();
        let mut commands = listed(&p).to_vec();
        commands.extend([
            file(TargetKind::Party, PROVIDER, actor(BUYER, Role::Buyer)),
            step(1, Step::SuspendListing, regulator()),
        ]);
        let ran = run(&p, &commands).await;
        assert_eq!(ran.codes[3], Some("illegal_transition"));
        assert_eq!(ran.listing, "listed");
    }
}
