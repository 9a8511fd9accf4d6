//! Which bootstrap addresses to dial and when: a state machine with no IO (time and jitter are
//! passed in), redialling a lost bootstrap peer with exponential backoff.

use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// First redial delay.
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest redial delay.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The bootstrap addresses and the state of each.
#[derive(Debug)]
pub(crate) struct Bootstrap {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    address: Multiaddr,
    /// From the address's `/p2p/` suffix, or learnt from the first connection.
    peer: Option<PeerId>,
    state: State,
    /// The delay after the next failure.
    backoff: Duration,
    /// Lookups of its host name begun so far: an answer is for the latest only.
    lookups: u64,
    /// Addresses its host name gave that are still to be tried, the next one last.
    untried: Vec<Multiaddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Dial at (or after) this instant.
    Waiting(Instant),
    /// Its host name is being looked up (the lookup's number).
    Resolving(u64),
    Dialing(ConnectionId),
    Connected,
}

impl Bootstrap {
    /// Every address is due at `now`.
    pub(crate) fn new(addresses: Vec<Multiaddr>, now: Instant) -> Self {
        let entries = addresses
            .into_iter()
            .map(|address| Entry {
                peer: peer_of(&address),
                address,
                state: State::Waiting(now),
                backoff: INITIAL_BACKOFF,
                lookups: 0,
                untried: Vec::new(),
            })
            .collect();
        Bootstrap { entries }
    }

    /// When the next dial is due, if any entry is waiting.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::Waiting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Entries due at `now`: their index, address and peer (if known); the address is the next
    /// one its host name gave, if some are left untried. The caller dials each and reports
    /// [`Bootstrap::dialing`], [`Bootstrap::connected`] or [`Bootstrap::failed`], or looks a
    /// host name up ([`Bootstrap::resolving`]).
    pub(crate) fn due(&self, now: Instant) -> Vec<(usize, Multiaddr, Option<PeerId>)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.state, State::Waiting(at) if at <= now))
            .map(|(i, e)| {
                let next = e.untried.last().unwrap_or(&e.address);
                (i, next.clone(), e.peer)
            })
            .collect()
    }

    /// Entry `index`'s host name is being looked up; returns the lookup's number, which
    /// [`Bootstrap::awaiting_lookup`] takes with the answer.
    pub(crate) fn resolving(&mut self, index: usize) -> u64 {
        let Some(entry) = self.entries.get_mut(index) else {
            return 0;
        };
        entry.lookups += 1;
        entry.untried.clear();
        entry.state = State::Resolving(entry.lookups);
        entry.lookups
    }

    /// Whether entry `index` still waits for the answer of lookup `lookup` (a connection from
    /// its peer may have come first, or a later lookup begun).
    pub(crate) fn awaiting_lookup(&self, index: usize, lookup: u64) -> bool {
        self.entries
            .get(index)
            .is_some_and(|e| e.state == State::Resolving(lookup))
    }

    /// Entry `index`'s host name gave `addresses`: returns the first to dial and keeps the
    /// others to try in turn if it fails (`None`, and the entry backs off, if there are none).
    pub(crate) fn found(
        &mut self,
        index: usize,
        mut addresses: Vec<Multiaddr>,
        now: Instant,
        jitter: f64,
    ) -> Option<Multiaddr> {
        let entry = self.entries.get_mut(index)?;
        if addresses.is_empty() {
            entry.retry(now, jitter);
            return None;
        }
        let first = addresses.remove(0);
        addresses.reverse();
        entry.untried = addresses;
        Some(first)
    }

    /// The peer entry `index` names, or that answered it before.
    pub(crate) fn peer(&self, index: usize) -> Option<PeerId> {
        self.entries.get(index).and_then(|e| e.peer)
    }

    /// Entry `index` is being dialled on `connection`.
    pub(crate) fn dialing(&mut self, index: usize, connection: ConnectionId) {
        if let Some(entry) = self.entries.get_mut(index) {
            // Dialled from `due`: its next untried address, if it had one, is tried now.
            if matches!(entry.state, State::Waiting(_)) {
                entry.untried.pop();
            }
            entry.state = State::Dialing(connection);
        }
    }

    /// A connection to `peer` is up (`connection` may be one of our dials or inbound).
    pub(crate) fn connected(&mut self, connection: ConnectionId, peer: PeerId) {
        for entry in &mut self.entries {
            let ours = entry.state == State::Dialing(connection);
            if ours && entry.peer.is_none() {
                entry.peer = Some(peer);
            }
            if ours || entry.peer == Some(peer) {
                entry.state = State::Connected;
                entry.backoff = INITIAL_BACKOFF;
                entry.untried.clear();
            }
        }
    }

    /// Entry `index` names a peer that is connected already (it dialled us).
    pub(crate) fn already_connected(&mut self, index: usize) {
        if let Some(entry) = self.entries.get_mut(index) {
            entry.state = State::Connected;
            entry.backoff = INITIAL_BACKOFF;
            entry.untried.clear();
        }
    }

    /// Entry `index` could not be dialled at all (the swarm refused the dial), or its host
    /// name did not resolve.
    pub(crate) fn refused(&mut self, index: usize, now: Instant, jitter: f64) {
        if let Some(entry) = self.entries.get_mut(index) {
            entry.next_or_retry(now, jitter);
        }
    }

    /// The dial on `connection` failed.
    pub(crate) fn failed(&mut self, connection: ConnectionId, now: Instant, jitter: f64) {
        for entry in &mut self.entries {
            if entry.state == State::Dialing(connection) {
                entry.next_or_retry(now, jitter);
            }
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: PeerId, now: Instant, jitter: f64) {
        for entry in &mut self.entries {
            if entry.peer == Some(peer) && entry.state == State::Connected {
                entry.retry(now, jitter);
            }
        }
    }
}

impl Entry {
    /// Its next untried address at once, if one is left; else a retry after the backoff.
    fn next_or_retry(&mut self, now: Instant, jitter: f64) {
        if self.untried.is_empty() {
            self.retry(now, jitter);
        } else {
            self.state = State::Waiting(now);
        }
    }

    /// Waits the current backoff plus up to a quarter of it (`jitter` in `[0, 1)`), so nodes
    /// that lost the same peer do not redial in lockstep, then doubles the backoff.
    fn retry(&mut self, now: Instant, jitter: f64) {
        let delay = self.backoff + self.backoff.mul_f64(jitter.clamp(0.0, 1.0) / 4.0);
        self.state = State::Waiting(now + delay);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// The peer id an address ends with, if any.
fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}")
            .parse()
            .expect("multiaddr")
    }

    #[test]
    fn every_address_is_due_at_start_and_a_failed_dial_backs_off_doubling_to_the_cap() {
        let start = Instant::now();
        let mut bootstrap = Bootstrap::new(vec![address(1)], start);
        assert_eq!(bootstrap.due(start).len(), 1);

        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..7 {
            let connection = ConnectionId::new_unchecked(delays.len());
            bootstrap.dialing(0, connection);
            assert_eq!(bootstrap.next_due(), None, "nothing is due while dialling");
            bootstrap.failed(connection, now, 0.0);
            let due = bootstrap.next_due().expect("waiting");
            delays.push((due - now).as_secs());
            assert!(bootstrap.due(due - Duration::from_millis(1)).is_empty());
            assert_eq!(bootstrap.due(due).len(), 1);
            now = due;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn an_entry_being_looked_up_is_not_due_and_backs_off_when_the_name_does_not_resolve() {
        let start = Instant::now();
        let mut bootstrap = Bootstrap::new(vec![address(1), address(2)], start);
        let lookup = bootstrap.resolving(0);
        assert!(bootstrap.awaiting_lookup(0, lookup));
        assert_eq!(bootstrap.due(start).len(), 1, "only the other entry");
        bootstrap.refused(0, start, 0.0);
        assert!(!bootstrap.awaiting_lookup(0, lookup));
        bootstrap.already_connected(1);
        assert_eq!(
            bootstrap.next_due(),
            Some(start + INITIAL_BACKOFF),
            "the entry backs off"
        );
        // A name that gave nothing backs off too.
        let later = start + INITIAL_BACKOFF;
        let lookup = bootstrap.resolving(0);
        assert!(bootstrap.awaiting_lookup(0, lookup));
        assert_eq!(bootstrap.found(0, Vec::new(), later, 0.0), None);
        assert_eq!(bootstrap.next_due(), Some(later + INITIAL_BACKOFF * 2));
    }

    #[test]
    fn an_answer_for_an_older_lookup_or_after_the_peer_came_is_not_used() {
        let start = Instant::now();
        let peer = PeerId::random();
        let mut bootstrap = Bootstrap::new(vec![address(1)], start);
        bootstrap.entries[0].peer = Some(peer);
        let first = bootstrap.resolving(0);
        // The peer dials us meanwhile, then goes; a new lookup begins.
        bootstrap.connected(ConnectionId::new_unchecked(9), peer);
        assert!(!bootstrap.awaiting_lookup(0, first));
        bootstrap.disconnected(peer, start, 0.0);
        let second = bootstrap.resolving(0);
        assert!(
            !bootstrap.awaiting_lookup(0, first),
            "the first answer is stale"
        );
        assert!(bootstrap.awaiting_lookup(0, second));
    }

    #[test]
    fn every_address_a_name_gave_is_tried_in_turn_before_backing_off() {
        let start = Instant::now();
        let mut bootstrap = Bootstrap::new(vec![address(1)], start);
        bootstrap.resolving(0);
        let first = bootstrap
            .found(0, vec![address(11), address(12), address(13)], start, 0.0)
            .expect("an address");
        assert_eq!(first, address(11));
        let mut tried = vec![first];
        for n in 0..3 {
            let connection = ConnectionId::new_unchecked(n);
            bootstrap.dialing(0, connection);
            bootstrap.failed(connection, start, 0.0);
            if n < 2 {
                let due = bootstrap.due(start);
                assert_eq!(due.len(), 1, "the next address at once");
                tried.push(due[0].1.clone());
            }
        }
        assert_eq!(tried, [address(11), address(12), address(13)]);
        assert_eq!(
            bootstrap.next_due(),
            Some(start + INITIAL_BACKOFF),
            "all failed: back off"
        );
        assert_eq!(
            bootstrap.due(start + INITIAL_BACKOFF)[0].1,
            address(1),
            "the name again"
        );
    }

    #[test]
    fn jitter_adds_at_most_a_quarter_of_the_backoff() {
        let now = Instant::now();
        let mut bootstrap = Bootstrap::new(vec![address(1)], now);
        bootstrap.refused(0, now, 0.999);
        let delay = bootstrap.next_due().expect("waiting") - now;
        assert!(
            delay > INITIAL_BACKOFF && delay < INITIAL_BACKOFF.mul_f64(1.25),
            "{delay:?}"
        );
    }

    #[test]
    fn a_lost_peer_is_redialled_after_the_initial_backoff_once_it_had_connected() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut bootstrap = Bootstrap::new(vec![address(1)], now);
        let connection = ConnectionId::new_unchecked(1);
        for _ in 0..3 {
            bootstrap.dialing(0, connection);
            bootstrap.failed(connection, now, 0.0);
        }
        bootstrap.dialing(0, connection);
        bootstrap.connected(connection, peer);
        assert_eq!(bootstrap.next_due(), None);

        let lost = now + Duration::from_secs(60);
        bootstrap.disconnected(PeerId::random(), lost, 0.0);
        assert_eq!(
            bootstrap.next_due(),
            None,
            "another peer's loss changes nothing"
        );
        // The entry learnt its peer from the connection, and the backoff starts over.
        bootstrap.disconnected(peer, lost, 0.0);
        assert_eq!(bootstrap.next_due(), Some(lost + INITIAL_BACKOFF));
    }

    #[test]
    fn an_inbound_connection_from_a_named_bootstrap_peer_counts_as_connected() {
        let now = Instant::now();
        let peer = PeerId::random();
        let named = address(1).with(Protocol::P2p(peer));
        let mut bootstrap = Bootstrap::new(vec![named], now);
        bootstrap.connected(ConnectionId::new_unchecked(9), peer);
        assert_eq!(bootstrap.next_due(), None);
    }
}
