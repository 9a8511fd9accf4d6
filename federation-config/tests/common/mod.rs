//! Fixed keys, times and delegations shared by the integration tests and used to write the
//! fixture files.
//!
//! Keys come from fixed seeds: seed `[n; 32]` for key `n`. Roots: 1 = xuchang, 2 = zhengzhou,
//! 3 = a root nobody trusts. Nodes: 11, 12, 13 = yuzhou-1, -2, -3. The fixtures were written
//! from `print_fixture_material` in `tests/fixtures.rs`; run it to see every value again.

#![allow(dead_code)]

use xchg_protocol::{Delegation, Keypair, SignedDelegation, Timestamp};

/// The time every fixture is checked at: 2026-01-01T00:00:00Z.
pub const NOW: Timestamp = Timestamp(1_767_225_600_000);
/// Start of every fixture delegation: 2025-01-01T00:00:00Z.
pub const NOT_BEFORE: Timestamp = Timestamp(1_735_689_600_000);
/// End of the valid fixture delegations: 2100-01-01T00:00:00Z.
pub const NOT_AFTER: Timestamp = Timestamp(4_102_444_800_000);
/// End of the expired fixture delegation: 2025-12-01T00:00:00Z, a month before [`NOW`].
pub const EXPIRED: Timestamp = Timestamp(1_764_547_200_000);

/// Key number `n`.
pub fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

/// Hex of a delegation of node key `node` for `zone` of `exchange`, signed by root key `root`.
pub fn delegation_hex(
    root: u8,
    exchange: &str,
    zone: &str,
    node: u8,
    not_after: Timestamp,
) -> String {
    let delegation = Delegation {
        exchange: exchange.parse().expect("fixture exchange id"),
        zone: zone.parse().expect("fixture zone id"),
        node_key: key(node).public(),
        not_before: NOT_BEFORE,
        not_after,
    };
    hex::encode(SignedDelegation::sign(delegation, &key(root)).to_bytes())
}
