//! Whole xchg federations in one process, under faults drawn from one seed, with invariants
//! checked (issue #15). This crate is built up in steps; so far:
//!
//! - [`linearizability`]: the checker of client histories (invariant 8).

pub mod linearizability;
