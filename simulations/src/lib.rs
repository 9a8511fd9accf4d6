//! Whole xchg federations in one process, under faults drawn from one seed, with invariants
//! checked (issue #15):
//!
//! - [`scenario`]: the scenarios and their schedules of faults and client operations, a pure
//!   function of the seed and options, with the digest that shows it;
//! - [`cluster`]: the federation of in-process nodes the schedule is played against;
//! - [`workload`]: the clients, and the history of their operations;
//! - [`invariants`] and [`linearizability`]: the checkers;
//! - [`run`]: one run and its report; [`sweep`]: one scenario over many seeds; [`scale`]: the
//!   scale scenario over many sizes; [`svg`]: the charts.

pub mod cluster;
pub mod invariants;
pub mod linearizability;
pub mod run;
pub mod scale;
pub mod scenario;
pub mod svg;
pub mod sweep;
pub mod workload;
