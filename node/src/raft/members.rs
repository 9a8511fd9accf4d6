//! Who may talk to this member over the zone transport: the keys of the current members, and
//! of nodes that left or were revoked (told so, and nothing else). The TLS layer checks them at
//! the handshake and the zone service on every request.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Keys of nodes this member is asking something before they join (see
    /// [`MemberKeys::hold`]), with how many askers hold each.
    held: BTreeMap<[u8; 32], usize>,
}

/// A key let through this member's handshakes until dropped ([`MemberKeys::hold`]).
#[derive(Debug)]
pub struct HeldKey {
    keys: MemberKeys,
    key: [u8; 32],
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        if let Ok(mut k) = self.keys.0.write()
            && let Some(count) = k.held.get_mut(&self.key)
        {
            *count -= 1;
            if *count == 0 {
                k.held.remove(&self.key);
            }
        }
    }
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

    /// Lets `key` complete handshakes (not be served) until the guard is dropped, whatever the
    /// membership meanwhile: a node about to be added is asked a question first.
    pub fn hold(&self, key: [u8; 32]) -> HeldKey {
        if let Ok(mut k) = self.0.write() {
            *k.held.entry(key).or_default() += 1;
        }
        HeldKey {
            keys: self.clone(),
            key,
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
            .map(|k| {
                k.members.contains(key)
                    || k.departed.contains(key)
                    || k.revoked.contains(key)
                    || k.held.contains_key(key)
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_key_completes_handshakes_until_its_last_holder_lets_go_and_is_never_served() {
        let keys = MemberKeys::default();
        let key = [7u8; 32];
        assert!(!keys.admits(&key));
        let first = keys.hold(key);
        let second = keys.hold(key);
        keys.set([[1u8; 32]]);
        assert!(keys.admits(&key), "a new membership does not drop it");
        assert!(!keys.contains(&key), "held, not served");
        drop(first);
        assert!(keys.admits(&key), "one holder left");
        drop(second);
        assert!(!keys.admits(&key));
    }
}
