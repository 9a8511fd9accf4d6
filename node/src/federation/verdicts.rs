//! Why the judge decided what it did ([`Reason`], one name per outcome, each with
//! its fixed gossip verdict), and this node's [`Journal`] of recent verdicts, which an operator
//! looks up by content id (`GET /v1/federation/verdicts`).
//!
//! PROTOCOL.md 7.4 lists every [`Reason`] with its verdict; `verdict_kinds_match_protocol_7_4`
//! below keeps the two in step.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use xchg_protocol::{Timestamp, VerifyError};

use crate::gossip::Verdict;

/// Why a received announcement got its verdict. [`Reason::as_str`] is the `kind` shown in the
/// verdict journal, the `reason` label of `xchg_gossip_verdicts_total` and the log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Verified and new; recognised, or recorded under the agreement (Accept).
    Accepted,
    /// This zone's own announcement coming back (Accept; nothing recorded).
    OwnZone,
    /// Its content id is already decided in this zone (Ignore).
    Duplicate,
    /// A listing version not higher than the one held (Ignore).
    Stale,
    /// A later version of a listing held from another origin zone (Ignore; refusal recorded).
    OriginConflict,
    /// The agreement or recognition policy refuses it (Ignore; refusal recorded).
    RefusedByAgreement,
    /// The agreement requires a registration certificate and the zone holds no valid one for
    /// this listing version (Ignore; refusal recorded, forgotten when a certificate arrives).
    RegistrationRequired,
    /// Refused by the agreement beyond what this node records from one signer or peer (Ignore;
    /// not recorded, and the delivering peer pays for it).
    RefusalRateLimited,
    /// Verified, but its authority's exchange is not the topic's (Reject).
    WrongTopic,
    /// It arrived on a topic that is not an xchg announcement topic (Ignore).
    UnknownTopic,
    /// Verification failed; the kind of PROTOCOL.md 6.3 ([`VerifyError::kind`]).
    Verification(&'static str),
}

/// Verification kinds that depend on the receiver's own trust store or clock, not on the
/// message: an honest forwarder with a different view could have accepted it (PROTOCOL.md 7.4).
const RECEIVERS_VIEW: [&str; 7] = [
    "unsupported_version",
    "unknown_exchange",
    "untrusted_root",
    "revoked_key",
    "delegation_not_yet_valid",
    "delegation_expired",
    "from_the_future",
];

impl Reason {
    /// The reasons that are not verification failures.
    pub const OWN: [Reason; 10] = [
        Reason::Accepted,
        Reason::OwnZone,
        Reason::Duplicate,
        Reason::Stale,
        Reason::OriginConflict,
        Reason::RefusedByAgreement,
        Reason::RegistrationRequired,
        Reason::RefusalRateLimited,
        Reason::WrongTopic,
        Reason::UnknownTopic,
    ];

    /// The reason for a verification failure.
    pub fn of(e: &VerifyError) -> Self {
        Reason::Verification(e.kind())
    }

    /// Every reason this node can give.
    pub fn all() -> Vec<Reason> {
        Reason::OWN
            .into_iter()
            .chain(VerifyError::KINDS.into_iter().map(Reason::Verification))
            .collect()
    }

    /// Its stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "accepted",
            Reason::OwnZone => "own_zone",
            Reason::Duplicate => "duplicate",
            Reason::Stale => "stale",
            Reason::OriginConflict => "origin_conflict",
            Reason::RefusedByAgreement => "refused_by_agreement",
            Reason::RegistrationRequired => "registration_required",
            Reason::RefusalRateLimited => "refusal_rate_limited",
            Reason::WrongTopic => "wrong_topic",
            Reason::UnknownTopic => "unknown_topic",
            Reason::Verification(kind) => kind,
        }
    }

    /// The gossip verdict that goes with it (PROTOCOL.md 7.4).
    pub fn verdict(self) -> Verdict {
        match self {
            Reason::Accepted | Reason::OwnZone => Verdict::Accept,
            Reason::Duplicate
            | Reason::Stale
            | Reason::OriginConflict
            | Reason::RefusedByAgreement
            | Reason::RegistrationRequired
            | Reason::RefusalRateLimited
            | Reason::UnknownTopic => Verdict::Ignore,
            Reason::WrongTopic => Verdict::Reject,
            Reason::Verification(kind) if RECEIVERS_VIEW.contains(&kind) => Verdict::Ignore,
            Reason::Verification(_) => Verdict::Reject,
        }
    }

    /// Whether it is an Ignore that depends on this node's trust store or clock: an operator
    /// should hear of it (logged at INFO like a Reject), and a peer that cannot prove who it is
    /// pays for delivering it.
    pub fn is_receivers_view(self) -> bool {
        matches!(self, Reason::Verification(kind) if RECEIVERS_VIEW.contains(&kind))
    }
}

/// How a judged envelope reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A gossip message.
    Gossip,
    /// A catch-up fetch.
    Catchup,
    /// `POST /v1/federation/revocations`.
    Api,
    /// A forwarded application or its decision (PROTOCOL.md 11.7).
    Application,
}

/// One verdict as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerdictRecord {
    /// When this node judged it.
    pub at: Timestamp,
    /// `accept`, `ignore` or `reject`.
    pub verdict: &'static str,
    /// Why (PROTOCOL.md 7.4 lists every kind).
    pub kind: &'static str,
    /// The envelope's `id` (`sha256:...`) when the envelope could be decoded; for an envelope
    /// that failed verification, the id it claims.
    pub content_id: Option<String>,
    /// SHA-256 of the message bytes as received (`sha256:...`), the gossip message id; also
    /// known for bytes that are not an envelope at all.
    pub message_id: String,
    /// The peer that delivered it (`api` for the revocation route).
    pub peer: String,
    /// The exchange whose topic it arrived on, or whose inventory it was fetched from.
    pub exchange: Option<String>,
    /// How it arrived.
    pub via: Via,
    /// What exactly failed or why it was refused, when there is more to say than the kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Most verdicts the journal keeps; older ones are dropped first.
pub const JOURNAL_CAPACITY: usize = 10_000;
/// How long a verdict stays in the journal.
pub const JOURNAL_AGE_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest `detail` kept, in characters.
pub const DETAIL_CHARS: usize = 300;

/// What a journal query selects.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    /// Only records whose content id or message id is this.
    pub id: Option<String>,
    /// Only records delivered by this peer.
    pub peer: Option<String>,
    /// Only this verdict.
    pub verdict: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// This node's recent verdicts, bounded in number and age. Kept in memory: each node has its
/// own (the verdict is each receiver's), and a restart empties it.
#[derive(Debug, Default)]
pub struct Journal {
    records: Mutex<VecDeque<VerdictRecord>>,
}

impl Journal {
    /// Records `record`, dropping what is over the capacity or older than the age limit.
    pub fn record(&self, mut record: VerdictRecord) {
        if let Some(detail) = &mut record.detail
            && detail.chars().count() > DETAIL_CHARS
        {
            *detail = detail.chars().take(DETAIL_CHARS).collect();
        }
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        let oldest = record.at.millis().saturating_sub(JOURNAL_AGE_MS);
        while records
            .front()
            .is_some_and(|r| records.len() >= JOURNAL_CAPACITY || r.at.millis() < oldest)
        {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// The records `filter` selects, newest first, none older than the age limit at `now`.
    pub fn query(&self, filter: &JournalFilter, now: Timestamp) -> Vec<VerdictRecord> {
        let Ok(records) = self.records.lock() else {
            return Vec::new();
        };
        let oldest = now.millis().saturating_sub(JOURNAL_AGE_MS);
        let wanted = |r: &&VerdictRecord| {
            r.at.millis() >= oldest
                && filter
                    .id
                    .as_deref()
                    .is_none_or(|id| r.message_id == id || r.content_id.as_deref() == Some(id))
                && filter.peer.as_deref().is_none_or(|p| r.peer == p)
                && filter.verdict.as_deref().is_none_or(|v| r.verdict == v)
                && filter.kind.as_deref().is_none_or(|k| r.kind == k)
        };
        records
            .iter()
            .rev()
            .filter(wanted)
            .take(filter.limit)
            .cloned()
            .collect()
    }
}

/// Verdict lines logged at INFO per [`LOG_WINDOW_MS`]; the rest are counted and reported in
/// the first line of the next window, so a flood cannot flood the log too.
pub const LOG_LINES_PER_WINDOW: u32 = 20;
/// The window of [`LOG_LINES_PER_WINDOW`].
pub const LOG_WINDOW_MS: u64 = 10_000;

/// How many verdict lines may still be logged (a pure budget, time passed in).
#[derive(Debug, Default)]
pub struct LogBudget {
    window_start: u64,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Whether a line may be logged at `now` (ms), and how many lines were held back since the
    /// last one that was.
    pub fn take(&mut self, now: u64) -> Option<u64> {
        if now.saturating_sub(self.window_start) >= LOG_WINDOW_MS {
            self.window_start = now;
            self.used = 0;
        }
        if self.used >= LOG_LINES_PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::judge::verdict_for;

    #[test]
    fn the_log_budget_holds_back_a_flood_and_says_how_much() {
        let mut budget = LogBudget::default();
        for _ in 0..LOG_LINES_PER_WINDOW {
            assert_eq!(budget.take(5), Some(0));
        }
        assert_eq!(budget.take(6), None);
        assert_eq!(budget.take(7), None);
        assert_eq!(budget.take(5 + LOG_WINDOW_MS), Some(2));
    }

    fn record(at: u64, kind: &'static str, content_id: &str) -> VerdictRecord {
        VerdictRecord {
            at: Timestamp(at),
            verdict: "reject",
            kind,
            content_id: Some(content_id.into()),
            message_id: format!("m-{content_id}"),
            peer: "peer".into(),
            exchange: Some("xuchang".into()),
            via: Via::Gossip,
            detail: Some("x".repeat(DETAIL_CHARS + 10)),
        }
    }

    /// The table of PROTOCOL.md 7.4 that lists every kind: (kind, verdict) per row.
    fn protocol_table() -> Vec<(String, String)> {
        let spec = include_str!("../../../PROTOCOL.md");
        let section = spec
            .split_once("**Verdict kinds.**")
            .map(|(_, rest)| rest)
            .expect("PROTOCOL.md 7.4 has the verdict kinds table");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .filter_map(|l| {
                let mut cells = l.split('|').skip(1).map(|c| c.trim().trim_matches('`'));
                Some((cells.next()?.to_owned(), cells.next()?.to_lowercase()))
            })
            .collect()
    }

    #[test]
    fn verdict_kinds_match_protocol_7_4() {
        let in_code: Vec<(String, String)> = Reason::all()
            .into_iter()
            .map(|r| (r.as_str().to_owned(), r.verdict().as_str().to_owned()))
            .collect();
        let mut in_spec = protocol_table();
        let mut sorted = in_code.clone();
        in_spec.sort();
        sorted.sort();
        assert_eq!(sorted, in_spec, "PROTOCOL.md 7.4 and `Reason` differ");
    }

    #[test]
    fn a_verification_failure_has_the_verdict_of_protocol_7_4() {
        for kind in VerifyError::KINDS {
            let expected = if RECEIVERS_VIEW.contains(&kind) {
                Verdict::Ignore
            } else {
                Verdict::Reject
            };
            assert_eq!(Reason::Verification(kind).verdict(), expected, "{kind}");
        }
        let expired = VerifyError::DelegationExpired {
            not_after: Timestamp(1),
            now: Timestamp(2),
        };
        assert_eq!(Reason::of(&expired).verdict(), verdict_for(&expired));
        assert!(Reason::of(&expired).is_receivers_view());
        assert!(!Reason::of(&VerifyError::BadSignature).is_receivers_view());
    }

    #[test]
    fn the_journal_is_bounded_expires_and_is_found_by_either_id() {
        let journal = Journal::default();
        for i in 0..JOURNAL_CAPACITY as u64 + 5 {
            journal.record(record(1_000 + i, "bad_signature", &format!("c{i}")));
        }
        let all = JournalFilter {
            limit: usize::MAX,
            ..JournalFilter::default()
        };
        let now = Timestamp(2_000 + JOURNAL_CAPACITY as u64);
        let kept = journal.query(&all, now);
        assert_eq!(kept.len(), JOURNAL_CAPACITY);
        assert_eq!(
            kept[0].content_id.as_deref(),
            Some("c10004"),
            "newest first"
        );
        assert_eq!(
            kept[0].detail.as_ref().map(|d| d.chars().count()),
            Some(DETAIL_CHARS)
        );

        let by_content = JournalFilter {
            id: Some("c10002".into()),
            limit: 10,
            ..JournalFilter::default()
        };
        assert_eq!(journal.query(&by_content, now).len(), 1);
        let by_message = JournalFilter {
            id: Some("m-c10002".into()),
            limit: 10,
            ..JournalFilter::default()
        };
        assert_eq!(journal.query(&by_message, now).len(), 1);
        let gone = JournalFilter {
            id: Some("c1".into()),
            limit: 10,
            ..JournalFilter::default()
        };
        assert!(journal.query(&gone, now).is_empty(), "beyond the capacity");

        let a_day_later = Timestamp(now.millis() + JOURNAL_AGE_MS);
        assert!(journal.query(&all, a_day_later).is_empty(), "expired");
        journal.record(record(a_day_later.millis(), "too_deep", "late"));
        assert_eq!(
            journal.query(&all, a_day_later).len(),
            1,
            "old ones dropped"
        );
    }
}
