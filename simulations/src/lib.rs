//! Whole xchg federations in one process, under faults drawn from one seed, with invariants
//! checked (issue #15). This crate is built up in steps; so far:
//!
//! - [`scenario`]: the scenarios and their schedules of faults and client operations, a pure
//!   function of the seed and options, with the digest that shows it;
//! - [`linearizability`]: the checker of client histories (invariant 8).

pub mod cluster;
pub mod invariants;
pub mod linearizability;
pub mod run;
pub mod scenario;
pub mod workload;
