//! Scenario precedents across exchanges (场景互认复用, PROTOCOL.md 11.8): the decisions an origin
//! zone made on one of its listings for one scenario, signed by a node of that zone, so that a
//! buyer of another exchange applying for the same product and scenario sees what was granted
//! or refused before, and on what terms, without who applied.
//!
//! Signed like the application messages (PROTOCOL.md 11.3) under its own domain tag; verified
//! against the question it answers (the zone, listing and scenario asked about).

use serde::{Deserialize, Serialize};

use crate::announcement::{REASON_CHARS, TrustStore, VerifyError};
use crate::application::{Outcome, SignedMessage, Verified, check_authority, open};
use crate::canonical::{DEFAULT_MAX_DEPTH, Limits};
use crate::ids::{ContentId, ZoneId};
use crate::keys::{Domain, Keypair};
use crate::listing::{ValidationError, Violations};
use crate::time::Timestamp;

/// Most decisions in one list: the newest.
pub const MAX_PRECEDENTS: usize = 20;

/// Largest accepted encoding of a signed list: 256 KiB (twenty rejections with reasons of 2000
/// four-byte characters, and the delegation, are about 161 KiB).
pub const MAX_PRECEDENTS_BYTES: usize = 256 * 1024;

/// Longest scenario, in characters: as in an application (PROTOCOL.md 11.1).
pub const SCENARIO_CHARS: usize = 200;

/// The limits a receiver applies to a signed list.
pub fn limits() -> Limits {
    Limits {
        max_size: MAX_PRECEDENTS_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
    }
}

/// One earlier decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precedent {
    /// The zone where the buyer applied: the origin zone itself for its own buyers, or the
    /// zone that forwarded the application (PROTOCOL.md 11.7).
    pub applicant: ZoneId,
    /// The application's id at the origin zone.
    pub application: u64,
    /// When the origin zone decided.
    pub decided_at: Timestamp,
    /// What it decided, as in an ApplicationDecision (the authorisation id is the origin's).
    pub outcome: Outcome,
}

/// The decisions of an origin zone on one listing and one scenario, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precedents {
    /// The origin zone: must be the zone of the signer's delegation.
    pub zone: ZoneId,
    /// The listing.
    pub listing_id: ContentId,
    /// The scenario.
    pub scenario: String,
    /// When the list was made.
    pub issued_at: Timestamp,
    /// At most [`MAX_PRECEDENTS`], newest first.
    pub decisions: Vec<Precedent>,
}

impl Precedents {
    /// Checks the content rules: the scenario follows the text rule (not blank, at most
    /// [`SCENARIO_CHARS`]); at most [`MAX_PRECEDENTS`] decisions, newest first, none after
    /// `issued_at`; a rejection's reason follows the reason rule; an approval grants at least
    /// one day and one call and expires after its decision.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        v.text("scenario", &self.scenario, SCENARIO_CHARS, true);
        if self.decisions.len() > MAX_PRECEDENTS {
            v.add(
                "decisions",
                format!(
                    "{} decisions; at most {MAX_PRECEDENTS}",
                    self.decisions.len()
                ),
            );
        }
        let mut newer = self.issued_at;
        for (i, d) in self.decisions.iter().enumerate() {
            if d.decided_at > newer {
                v.add(
                    "decisions",
                    format!("decision {i} is newer than what precedes it, or than issued_at"),
                );
            }
            newer = d.decided_at;
            match &d.outcome {
                Outcome::Rejected { reason } => {
                    v.text(
                        "decisions.outcome.rejected.reason",
                        reason,
                        REASON_CHARS,
                        true,
                    );
                }
                Outcome::Approved(g) => {
                    if g.duration_days == 0 || g.usage_limit == 0 || g.expires_at <= d.decided_at {
                        v.add(
                            "decisions.outcome.approved",
                            format!(
                                "decision {i}: at least 1 day and 1 call, expiring after the \
                                 decision"
                            ),
                        );
                    }
                }
            }
        }
        v.finish()
    }
}

/// What a list answers: the zone, listing and scenario asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question<'a> {
    /// The listing's origin zone, asked.
    pub zone: &'a ZoneId,
    /// The listing.
    pub listing_id: &'a ContentId,
    /// The scenario.
    pub scenario: &'a str,
}

/// Signs `list` as a node of its zone holding `key` under `delegation`.
pub fn sign(
    list: &Precedents,
    key: &Keypair,
    delegation: crate::SignedDelegation,
) -> SignedMessage {
    let body = crate::canonical::to_canonical(list).unwrap_or_default();
    SignedMessage::seal(Domain::ApplicationPrecedents, body, key, delegation)
}

/// Verifies a signed list offline against the question it answers (PROTOCOL.md 11.8): the
/// steps 1 to 6 of 11.4 with the precedents tag and `issued_at` → content rules
/// (`invalid_precedents`) → `zone` is the signer's and `issued_at` not in the future → it
/// answers exactly `asked` (`not_asked`).
///
/// # Errors
/// The first failed check, as a [`VerifyError`].
pub fn verify(
    bytes: &[u8],
    asked: &Question<'_>,
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<Verified<Precedents>, VerifyError> {
    let verified = open(
        bytes,
        Domain::ApplicationPrecedents,
        |p: &Precedents| p.issued_at,
        trust,
        limits,
    )?;
    let p = &verified.body;
    p.validate()
        .map_err(|errors| VerifyError::InvalidPrecedents { errors })?;
    check_authority(&p.zone, p.issued_at, &verified.delegation, now)?;
    if p.zone != *asked.zone || p.listing_id != *asked.listing_id || p.scenario != asked.scenario {
        return Err(VerifyError::NotAsked {
            message: format!(
                "the list is of {} for {:?} of {}, asked {} for {:?} of {}",
                p.listing_id, p.scenario, p.zone, asked.listing_id, asked.scenario, asked.zone
            ),
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::Granted;
    use crate::application_vectors as av;
    use crate::listing::DeliveryMode;
    use crate::vectors;

    fn trust() -> TrustStore {
        let mut t = TrustStore::default();
        t.trust("zhengzhou".parse().expect("id"), av::origin_root().public());
        t
    }

    fn zone() -> ZoneId {
        "zhengzhou/zhongyuan".parse().expect("zone")
    }

    fn list() -> Precedents {
        let decided_at = Timestamp(vectors::NOW.0 - 3_600_000);
        Precedents {
            zone: zone(),
            listing_id: ContentId::of(b"listing"),
            scenario: "企业信用评价".into(),
            issued_at: Timestamp(vectors::NOW.0 - 60_000),
            decisions: vec![
                Precedent {
                    applicant: "xuchang/yuzhou".parse().expect("zone"),
                    application: 42,
                    decided_at,
                    outcome: Outcome::Approved(Granted {
                        authorization: 7,
                        delivery_mode: DeliveryMode::Sandbox,
                        duration_days: 30,
                        usage_limit: 100,
                        expires_at: decided_at.plus_millis(30 * 86_400_000),
                    }),
                },
                Precedent {
                    applicant: zone(),
                    application: 3,
                    decided_at: Timestamp(decided_at.0 - 1),
                    outcome: Outcome::Rejected {
                        reason: "用途不符".into(),
                    },
                },
            ],
        }
    }

    fn check(list: &Precedents, listing: &ContentId) -> Result<Verified<Precedents>, VerifyError> {
        let bytes = sign(
            list,
            &av::origin_node(),
            av::origin_delegation("zhengzhou/zhongyuan"),
        )
        .to_bytes();
        let zone = zone();
        let asked = Question {
            zone: &zone,
            listing_id: listing,
            scenario: "企业信用评价",
        };
        verify(&bytes, &asked, &trust(), vectors::NOW, &limits())
    }

    #[test]
    fn a_list_encodes_its_keys_in_the_canonical_order_of_protocol_11_8() {
        let body = crate::canonical::to_canonical(&list()).expect("encodes");
        let at = |key: &str| {
            body.windows(key.len())
                .position(|w| w == key.as_bytes())
                .unwrap_or(usize::MAX)
        };
        assert_eq!(&body[..6], &[0xa5, 0x64, b'z', b'o', b'n', b'e']);
        let order = ["zone", "scenario", "decisions", "issued_at", "listing_id"];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{order:?}");
        let inner = ["outcome", "applicant", "decided_at", "application"];
        assert!(inner.windows(2).all(|w| at(w[0]) < at(w[1])), "{inner:?}");
    }

    #[test]
    fn a_list_verifies_against_the_question_it_answers_and_no_other() {
        let listing = ContentId::of(b"listing");
        let verified = check(&list(), &listing).expect("verifies");
        assert_eq!(verified.body, list());
        let other = ContentId::of(b"other");
        assert_eq!(
            check(&list(), &other)
                .map(drop)
                .expect_err("refused")
                .kind(),
            "not_asked"
        );
    }

    #[test]
    fn a_list_out_of_order_or_over_the_cap_is_invalid_and_a_tampered_one_does_not_verify() {
        let listing = ContentId::of(b"listing");
        let mut reversed = list();
        reversed.decisions.reverse();
        assert_eq!(
            check(&reversed, &listing)
                .map(drop)
                .expect_err("refused")
                .kind(),
            "invalid_precedents"
        );
        let mut long = list();
        long.decisions = (0..=MAX_PRECEDENTS as u64)
            .map(|i| Precedent {
                applicant: zone(),
                application: i,
                decided_at: Timestamp(1_000 - i),
                outcome: Outcome::Rejected {
                    reason: "no".into(),
                },
            })
            .collect();
        assert_eq!(
            check(&long, &listing)
                .map(drop)
                .expect_err("refused")
                .kind(),
            "invalid_precedents"
        );
        let mut signed = sign(
            &list(),
            &av::origin_node(),
            av::origin_delegation("zhengzhou/zhongyuan"),
        );
        let mut changed = list();
        changed.decisions.pop();
        signed.body = crate::canonical::to_canonical(&changed).expect("encodes");
        signed.id = ContentId::of(&signed.body);
        let zone = zone();
        let asked = Question {
            zone: &zone,
            listing_id: &listing,
            scenario: "企业信用评价",
        };
        let result = verify(
            &signed.to_bytes(),
            &asked,
            &trust(),
            vectors::NOW,
            &limits(),
        );
        assert_eq!(
            result.map(drop).expect_err("refused").kind(),
            "bad_signature"
        );
        // A decision signed by the origin never verifies as a list.
        let decision = av::signed_decision(&av::approval()).to_bytes();
        assert_ne!(
            verify(&decision, &asked, &trust(), vectors::NOW, &limits())
                .map(drop)
                .expect_err("refused")
                .kind(),
            "not_asked"
        );
    }
}
