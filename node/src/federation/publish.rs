//! The publisher: while this node leads its zone, it signs the outbox's pending entries with its
//! node key and delegation, publishes each signed envelope on gossip and records it through Raft
//! (after which peers catching up can fetch it from any node of the zone). A part of the core
//! with no IO: it asks the driver for the pending entries and hands it envelopes and proposals.
//!
//! The entry itself was written to the replicated outbox by the approval, so nothing is lost if
//! the leader dies at any point: a new leader signs and publishes every entry still pending.
//! The body, and so the content id receivers deduplicate on, is the same whoever signs; a second
//! envelope for the same body is a harmless duplicate.
//!
//! One round at a time: a change signalled during a round starts another once it ends. A round
//! reads [`PER_ROUND`] entries, signs and proposes them all, waits for every outcome, and reads
//! again while anything got recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use xchg_protocol::application::SignedMessage;
use xchg_protocol::canonical::from_canonical;
use xchg_protocol::{AnnouncementKind, Domain, Envelope, Limits, Listing, Timestamp};

use super::core::{Count, Entries, Outcome, Output, Shared, Ticket, Timer};
use super::policy;
use crate::catalog::CatalogCommand;
use crate::gossip::{PublishError, certificate_topic_of, demand_topic_of, topic_of};

/// Outbox entries signed per read.
pub const PER_ROUND: usize = 256;
/// Gossip publish attempts while no peer subscribes yet (catch-up covers the rest).
pub const PUBLISH_ATTEMPTS: u32 = 8;
/// The wait before the second attempt; it doubles for each further one ...
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// ... up to this.
pub const LONGEST_RETRY: Duration = Duration::from_secs(4);

/// One pending outbox entry, as the outbox table reads it.
pub use crate::catalog::tables::outbox::Pending as OutboxEntry;

/// The kind of a pending entry that is a certificate to publish (PROTOCOL.md 10.5): its `seq`
/// is the registration it was issued for and its `body` the signed certificate, which the
/// approving node signed already.
pub const CERTIFICATE_ENTRY: &str = "certificate";

/// The kind of a pending entry that is a certificate revocation to publish (PROTOCOL.md
/// 10.6): `seq` is the registration of the revoked certificate and `body` the signed
/// revocation, which the revoking node signed already.
pub const CERTIFICATE_REVOCATION_ENTRY: &str = "certificate_revocation";

/// The kind of a pending entry that is a shared demand's latest state to sign and publish on
/// the exchange's demand topic (PROTOCOL.md 11.9): `seq` is the demand and `body` its
/// canonical Demand.
pub const DEMAND_ENTRY: &str = "demand";

fn kind_of(name: &str) -> Option<AnnouncementKind> {
    match name {
        "listing" => Some(AnnouncementKind::Listing),
        "delisting" => Some(AnnouncementKind::Delisting),
        _ => None,
    }
}

/// Where the publisher is in a round.
#[derive(Debug, Default, PartialEq, Eq)]
enum Round {
    /// No round.
    #[default]
    Idle,
    /// Waiting out the publish delay.
    Delaying,
    /// Waiting for the pending entries.
    Reading(Ticket),
    /// Waiting for the outcome of these proposals.
    Recording {
        outstanding: BTreeSet<Ticket>,
        recorded: usize,
        /// A proposal failed (most likely this node no longer leads): no further read.
        stopped: bool,
    },
}

/// An envelope being published, with the attempts made.
#[derive(Debug)]
struct Sending {
    topic: String,
    envelope: Vec<u8>,
    attempts: u32,
    next_wait: Duration,
}

/// The publisher's state.
#[derive(Debug, Default)]
pub(super) struct Publisher {
    round: Round,
    /// A change was signalled during the round.
    again: bool,
    /// Entries recorded in this round so far.
    total: usize,
    /// Envelopes whose publish has not ended.
    sending: BTreeMap<Ticket, Sending>,
}

impl Publisher {
    /// Sets the first outbox poll.
    pub(super) fn start(&mut self, shared: &Shared, out: &mut Vec<Output>) {
        out.push(Output::Timer {
            after: shared.settings.tuning.outbox_poll,
            timer: Timer::OutboxPoll,
        });
    }

    /// The outbox may have changed: starts a round while leading (after the publish delay), or
    /// remembers to start one after the current round.
    pub(super) fn trigger(&mut self, shared: &mut Shared, out: &mut Vec<Output>) {
        if !shared.leading {
            return;
        }
        if self.round != Round::Idle {
            self.again = true;
            return;
        }
        let delay = shared.settings.tuning.publish_delay;
        if delay.is_zero() {
            self.read(shared, out, true);
        } else {
            self.round = Round::Delaying;
            out.push(Output::Timer {
                after: delay,
                timer: Timer::PublishDelay,
            });
        }
    }

    /// Asks for the pending entries; on the first read of a round, not when this node's key is
    /// revoked.
    fn read(&mut self, shared: &mut Shared, out: &mut Vec<Output>, first: bool) {
        let own = &shared.settings;
        if first && shared.trust.is_revoked(&own.exchange, &own.key.public()) {
            // Receivers would ignore everything it signs; another member must lead instead.
            tracing::error!(
                "this node's key is revoked by its exchange: it does not sign announcements; \
                 remove it from the zone and add a node with a new key"
            );
            self.finish(shared, out);
            return;
        }
        let ticket = shared.ticket();
        self.round = Round::Reading(ticket);
        out.push(Output::ReadOutbox {
            ticket,
            limit: PER_ROUND,
        });
    }

    /// Signs, publishes and proposes the pending `entries`.
    pub(super) fn outbox(
        &mut self,
        ticket: Ticket,
        entries: Entries,
        shared: &mut Shared,
        now: Timestamp,
        out: &mut Vec<Output>,
    ) {
        if self.round != Round::Reading(ticket) {
            return;
        }
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "publishing the outbox");
                self.finish(shared, out);
                return;
            }
        };
        let mut outstanding = BTreeSet::new();
        for entry in entries {
            let signed = match entry.kind.as_str() {
                CERTIFICATE_ENTRY => Some(CatalogCommand::RecordCertificatePublished {
                    registration_id: entry.seq,
                    at: now,
                    node: shared.settings.node.clone(),
                }),
                CERTIFICATE_REVOCATION_ENTRY => {
                    Some(CatalogCommand::RecordCertificateRevocationPublished {
                        registration_id: entry.seq,
                        at: now,
                        node: shared.settings.node.clone(),
                    })
                }
                _ => None,
            };
            if entry.kind == DEMAND_ENTRY {
                let settings = &shared.settings;
                let signed = SignedMessage::seal(
                    Domain::Demand,
                    entry.body,
                    &settings.key,
                    settings.delegation.clone(),
                )
                .to_bytes();
                let command = CatalogCommand::RecordDemandPublished {
                    demand_id: entry.seq,
                    signed: signed.clone(),
                    at: now,
                    node: settings.node.clone(),
                };
                let topic = demand_topic_of(settings.exchange.as_str());
                self.publish_on(shared, topic, signed, out);
                let ticket = shared.ticket();
                outstanding.insert(ticket);
                out.push(Output::Propose { ticket, command });
                continue;
            }
            if let Some(command) = signed {
                let topic = certificate_topic_of(shared.settings.exchange.as_str());
                self.publish_on(shared, topic, entry.body, out);
                let ticket = shared.ticket();
                outstanding.insert(ticket);
                out.push(Output::Propose { ticket, command });
                continue;
            }
            let Some(kind) = kind_of(&entry.kind) else {
                continue;
            };
            if kind == AnnouncementKind::Listing && !may_leave(shared, &entry) {
                continue;
            }
            let settings = &shared.settings;
            let envelope = Envelope::seal(
                kind,
                entry.body,
                &settings.key,
                Some(settings.delegation.clone()),
            )
            .to_bytes();
            let command = CatalogCommand::RecordPublished {
                outbox_seq: entry.seq,
                envelope: envelope.clone(),
                at: now,
                node: settings.node.clone(),
            };
            // Gossip first, then the record: the entry is already in the replicated outbox,
            // so a crash in between only means the next leader signs and sends it again.
            self.publish(shared, envelope, out);
            let ticket = shared.ticket();
            outstanding.insert(ticket);
            out.push(Output::Propose { ticket, command });
        }
        if outstanding.is_empty() {
            self.finish(shared, out);
            return;
        }
        self.round = Round::Recording {
            outstanding,
            recorded: 0,
            stopped: false,
        };
    }

    /// Takes the outcome of one of the publisher's proposals (others are ignored).
    pub(super) fn proposed(
        &mut self,
        ticket: Ticket,
        outcome: Outcome,
        shared: &mut Shared,
        out: &mut Vec<Output>,
    ) {
        let Round::Recording {
            outstanding,
            recorded,
            stopped,
        } = &mut self.round
        else {
            return;
        };
        if !outstanding.remove(&ticket) {
            return;
        }
        match outcome {
            Outcome::Applied { .. } => *recorded += 1,
            Outcome::Refused(refusal) => tracing::warn!(%refusal, "outbox entry not recorded"),
            Outcome::Failed(error) => {
                // Most likely no longer the leader: the next leader takes over.
                tracing::info!(%error, "outbox entry not recorded");
                *stopped = true;
            }
        }
        if !outstanding.is_empty() {
            return;
        }
        let (recorded, stopped) = (*recorded, *stopped);
        self.total += recorded;
        if stopped || recorded == 0 {
            self.finish(shared, out);
        } else {
            self.read(shared, out, false);
        }
    }

    /// Ends the round; starts the next one if a change was signalled meanwhile.
    fn finish(&mut self, shared: &mut Shared, out: &mut Vec<Output>) {
        if self.total > 0 {
            tracing::debug!(entries = self.total, "published outbox entries");
        }
        self.total = 0;
        self.round = Round::Idle;
        if std::mem::take(&mut self.again) {
            self.trigger(shared, out);
        }
    }

    /// Publishes `envelope` on this exchange's topic.
    pub(super) fn publish(
        &mut self,
        shared: &mut Shared,
        envelope: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let topic = topic_of(shared.settings.exchange.as_str());
        self.publish_on(shared, topic, envelope, out);
    }

    /// Publishes `envelope` on `topic`, retrying while no peer subscribes yet.
    fn publish_on(
        &mut self,
        shared: &mut Shared,
        topic: String,
        envelope: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let ticket = shared.ticket();
        out.push(Output::Publish {
            ticket,
            topic: topic.clone(),
            envelope: envelope.clone(),
        });
        self.sending.insert(
            ticket,
            Sending {
                topic,
                envelope,
                attempts: 1,
                next_wait: FIRST_RETRY,
            },
        );
    }

    /// Takes what the transport said about a publish: done, or retried later while no peer
    /// subscribes yet.
    pub(super) fn published(
        &mut self,
        ticket: Ticket,
        result: Result<(), PublishError>,
        out: &mut Vec<Output>,
    ) {
        let Some(sending) = self.sending.get_mut(&ticket) else {
            return;
        };
        let counted = match result {
            Ok(()) => "published",
            Err(PublishError::Duplicate) => "duplicate",
            Err(PublishError::NoPeers(_)) if sending.attempts < PUBLISH_ATTEMPTS => {
                out.push(Output::Timer {
                    after: sending.next_wait,
                    timer: Timer::PublishRetry(ticket),
                });
                sending.attempts += 1;
                sending.next_wait = (sending.next_wait * 2).min(LONGEST_RETRY);
                return;
            }
            Err(e) => {
                tracing::info!(error = %e, "gossip publish failed; peers will catch up");
                "failed"
            }
        };
        self.sending.remove(&ticket);
        out.push(Output::Count(Count::Published(counted)));
    }

    /// A publisher timer fired.
    pub(super) fn timer(&mut self, timer: Timer, shared: &mut Shared, out: &mut Vec<Output>) {
        match timer {
            Timer::OutboxPoll => {
                self.trigger(shared, out);
                self.start(shared, out);
            }
            Timer::PublishDelay if self.round == Round::Delaying => self.read(shared, out, true),
            Timer::PublishRetry(ticket) => {
                if let Some(s) = self.sending.get(&ticket) {
                    out.push(Output::Publish {
                        ticket,
                        topic: s.topic.clone(),
                        envelope: s.envelope.clone(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// The firewall once more, with this node's own export policy, just before signing: the
/// outbox entry was judged when the approval was applied, by the policy of whichever node
/// applied it; a zone whose members' configs disagree must not leak through the laxest.
fn may_leave(shared: &Shared, entry: &OutboxEntry) -> bool {
    let verdict = from_canonical::<Listing>(&entry.body, &Limits::default())
        .map_err(|e| e.to_string())
        .and_then(|l| policy::export(&l, &shared.settings.export));
    match verdict {
        Ok(()) => true,
        Err(why) => {
            tracing::error!(
                outbox = entry.seq,
                %why,
                "not publishing: this node's export policy withholds it (the zone's members \
                 must share one export policy)"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::core::Input;
    use crate::federation::testkit::{self, Kit};
    use xchg_protocol::Classification;

    fn tickets_of(out: &[Output]) -> (Vec<Ticket>, Vec<Ticket>, Option<Ticket>) {
        let mut publishes = Vec::new();
        let mut proposals = Vec::new();
        let mut read = None;
        for o in out {
            match o {
                Output::Publish { ticket, .. } => publishes.push(*ticket),
                Output::Propose { ticket, .. } => proposals.push(*ticket),
                Output::ReadOutbox { ticket, .. } => read = Some(*ticket),
                _ => {}
            }
        }
        (publishes, proposals, read)
    }

    fn entry(kit: &Kit, seq: u64, title: &str) -> OutboxEntry {
        OutboxEntry {
            seq,
            kind: "listing".into(),
            body: kit.own_listing(title).canonical_bytes(),
        }
    }

    #[test]
    fn a_pending_entry_is_signed_published_and_recorded_then_the_outbox_read_again() {
        let kit = Kit::new();
        let mut core = kit.core(false);
        assert!(
            core.handle(Input::OutboxChanged, testkit::NOW).is_empty(),
            "a follower does not publish"
        );
        let out = core.handle(Input::Leadership(true), testkit::NOW);
        let (_, _, Some(read)) = tickets_of(&out) else {
            panic!("a new leader reads the outbox at once: {out:?}");
        };
        let out = core.handle(
            Input::Outbox {
                ticket: read,
                entries: Ok(vec![entry(&kit, 4, "one"), entry(&kit, 5, "two")]),
            },
            testkit::NOW,
        );
        let (publishes, proposals, _) = tickets_of(&out);
        assert_eq!((publishes.len(), proposals.len()), (2, 2), "{out:?}");
        let Some(Output::Publish {
            envelope, topic, ..
        }) = out.first()
        else {
            panic!("gossip first: {out:?}");
        };
        assert_eq!(topic, "xchg/v1/announcements/xuchang");
        let recorded = out.iter().find_map(|o| match o {
            Output::Propose {
                command:
                    CatalogCommand::RecordPublished {
                        outbox_seq,
                        envelope: e,
                        at,
                        ..
                    },
                ..
            } => Some((*outbox_seq, e.clone(), *at)),
            _ => None,
        });
        assert_eq!(recorded, Some((4, envelope.clone(), testkit::NOW)));
        let applied = || Outcome::Applied {
            object_id: "x".into(),
        };
        let out = core.handle(
            Input::Proposed {
                ticket: proposals[0],
                outcome: applied(),
            },
            testkit::NOW,
        );
        assert!(out.is_empty(), "waits for every outcome: {out:?}");
        let out = core.handle(
            Input::Proposed {
                ticket: proposals[1],
                outcome: applied(),
            },
            testkit::NOW,
        );
        let (_, _, Some(again)) = tickets_of(&out) else {
            panic!("something was recorded, so it reads again: {out:?}");
        };
        let out = core.handle(
            Input::Outbox {
                ticket: again,
                entries: Ok(Vec::new()),
            },
            testkit::NOW,
        );
        assert!(out.is_empty(), "nothing left: {out:?}");
    }

    #[test]
    fn a_failed_proposal_ends_the_round_and_a_change_meanwhile_starts_another() {
        let kit = Kit::new();
        let mut core = kit.core(false);
        let out = core.handle(Input::Leadership(true), testkit::NOW);
        let read = tickets_of(&out).2.expect("read");
        let out = core.handle(
            Input::Outbox {
                ticket: read,
                entries: Ok(vec![entry(&kit, 1, "lost leadership")]),
            },
            testkit::NOW,
        );
        let proposal = tickets_of(&out).1[0];
        assert!(
            core.handle(Input::OutboxChanged, testkit::NOW).is_empty(),
            "one round at a time"
        );
        let out = core.handle(
            Input::Proposed {
                ticket: proposal,
                outcome: Outcome::Failed("not the leader".into()),
            },
            testkit::NOW,
        );
        assert!(
            tickets_of(&out).2.is_some(),
            "the change signalled during the round starts the next: {out:?}"
        );
    }

    #[test]
    fn a_publish_with_no_listener_is_retried_with_growing_waits_then_counted_failed() {
        let kit = Kit::new();
        let mut core = kit.core(true);
        let out = core.handle(
            Input::Publish {
                envelope: b"revocation".to_vec(),
            },
            testkit::NOW,
        );
        let ticket = tickets_of(&out).0[0];
        let no_peers = || Err(PublishError::NoPeers("t".into()));
        let mut waits = Vec::new();
        for _ in 1..PUBLISH_ATTEMPTS {
            let out = core.handle(
                Input::Published {
                    ticket,
                    result: no_peers(),
                },
                testkit::NOW,
            );
            let [Output::Timer { after, timer }] = out.as_slice() else {
                panic!("a retry: {out:?}");
            };
            assert_eq!(*timer, Timer::PublishRetry(ticket));
            waits.push(after.as_millis());
            let out = core.handle(Input::Timer(*timer), testkit::NOW);
            assert_eq!(tickets_of(&out).0, [ticket], "sent again");
        }
        assert_eq!(waits, [250, 500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        let out = core.handle(
            Input::Published {
                ticket,
                result: no_peers(),
            },
            testkit::NOW,
        );
        assert!(matches!(
            out.as_slice(),
            [Output::Count(Count::Published("failed"))]
        ));
        // Done with: a late answer changes nothing.
        let out = core.handle(
            Input::Published {
                ticket,
                result: Ok(()),
            },
            testkit::NOW,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn an_entry_this_nodes_export_policy_withholds_is_not_signed() {
        let kit = Kit::new();
        let mut core = kit.core(false);
        let out = core.handle(Input::Leadership(true), testkit::NOW);
        let read = tickets_of(&out).2.expect("read");
        let mut important = kit.own_listing("important");
        important.classification = Classification::Important;
        let withheld = OutboxEntry {
            seq: 9,
            kind: "listing".into(),
            body: important.canonical_bytes(),
        };
        let out = core.handle(
            Input::Outbox {
                ticket: read,
                entries: Ok(vec![withheld]),
            },
            testkit::NOW,
        );
        assert!(out.is_empty(), "nothing signed, round over: {out:?}");
    }

    #[test]
    fn a_node_whose_key_is_revoked_signs_nothing() {
        let kit = Kit::new();
        let mut core = kit.core(false);
        core.handle(
            Input::Revoked(vec![(testkit::own(), kit.own_node.public())]),
            testkit::NOW,
        );
        let out = core.handle(Input::Leadership(true), testkit::NOW);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn the_publish_delay_comes_before_the_read_and_the_poll_repeats() {
        let kit = Kit::new();
        let mut tuning = testkit::tuning();
        tuning.publish_delay = Duration::from_secs(3);
        let mut core = kit.core_with(tuning, false);
        let out = core.handle(Input::Start, testkit::NOW);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Timer { timer: Timer::OutboxPoll, after } if *after == tuning.outbox_poll
        )));
        let out = core.handle(Input::Leadership(true), testkit::NOW);
        assert!(matches!(
            out.as_slice(),
            [Output::Timer { timer: Timer::PublishDelay, after }] if after.as_secs() == 3
        ));
        let out = core.handle(Input::Timer(Timer::PublishDelay), testkit::NOW);
        assert!(tickets_of(&out).2.is_some(), "{out:?}");
        let out = core.handle(Input::Timer(Timer::OutboxPoll), testkit::NOW);
        assert!(
            matches!(
                out.as_slice(),
                [Output::Timer {
                    timer: Timer::OutboxPoll,
                    ..
                }]
            ),
            "a round is under way; the poll is set again: {out:?}"
        );
    }
}
