//! Who may talk to this member over the zone transport: the keys of the current members, and
//! of nodes that left or were revoked (told so, and nothing else). The TLS layer checks them at
//! the handshake and the zone service on every request.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// The ed25519 keys of the zone's current members, shared with the running Raft so that
/// membership changes take effect on the next handshake and the next request. Beside them, the
/// keys of members that left recently or were revoked: they may still complete a handshake, so
/// that such a node can be told it is out (its pre-vote is answered, nothing else is served).
#[derive(Clone, Debug, Default)]
pub struct MemberKeys(Arc<RwLock<KeySets>>);

#[derive(Debug, Default)]
struct KeySets {
    members: BTreeSet<[u8; 32]>,
    departed: BTreeSet<[u8; 32]>,
    revoked: BTreeSet<[u8; 32]>,
}

impl MemberKeys {
    /// Replaces the members' keys.
    pub fn set(&self, keys: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut k) = self.0.write() {
            k.members = keys.into_iter().collect();
        }
    }

    /// Replaces the keys of nodes that left the zone or were revoked, which may still connect
    /// to be told so.
    pub fn set_departed(
        &self,
        departed: impl IntoIterator<Item = [u8; 32]>,
        revoked: impl IntoIterator<Item = [u8; 32]>,
    ) {
        if let Ok(mut k) = self.0.write() {
            k.departed = departed.into_iter().collect();
            k.revoked = revoked.into_iter().collect();
        }
    }

    /// Adds one key (a member being added, before Raft's membership shows it).
    pub fn insert(&self, key: [u8; 32]) {
        if let Ok(mut k) = self.0.write() {
            k.members.insert(key);
        }
    }

    /// Whether `key` belongs to a member (it is served).
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.0
            .read()
            .map(|k| k.members.contains(key) && !k.revoked.contains(key))
            .unwrap_or(false)
    }

    /// Whether `key` may complete a handshake: a member's, or one that left or was revoked.
    pub fn admits(&self, key: &[u8; 32]) -> bool {
        self.0
            .read()
            .map(|k| k.members.contains(key) || k.departed.contains(key) || k.revoked.contains(key))
            .unwrap_or(false)
    }

    /// Whether `key` was revoked by its exchange's root.
    pub fn is_revoked(&self, key: &[u8; 32]) -> bool {
        self.0
            .read()
            .map(|k| k.revoked.contains(key))
            .unwrap_or(false)
    }
}
