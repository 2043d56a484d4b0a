//! A deterministic simulator of RSerPool (DESIGN section 2, issue 13):
//! the same sans-IO cores that run in the daemons — [`RegistrarCore`],
//! [`PeCore`], [`PuCore`] — run together in one process, on a virtual
//! clock, over an in-memory network that models latency and jitter per
//! node, loss (as TCP retransmission delay), partitions, connection
//! resets versus silent deaths, freezes and crash-restarts. No tokio, no
//! OpenSSL: the registrar and client crates are built without their
//! drivers.
//!
//! * `agenda`: the pending events, in time order (a radix heap).
//! * [`net`]: the network: links, connections, what arrives when.
//! * [`world`]: the event loop: nodes, their cores, the application
//!   behaviour of PEs and PUs, the faults.
//! * [`scenario`]: [`Scenario`], the named scenarios and their fault
//!   plans, all drawn from one seed.
//! * [`check`]: the invariants, checked after every step and at
//!   quiescence.
//! * [`trace`]: what happened, for replaying a failing seed.
//!
//! Same seed, same scenario: the same trace, bit for bit (no clock is
//! read but once for the origin of the virtual clock, which no output
//! shows; no collection is randomly seeded, and what is iterated is
//! ordered; every random draw comes from the seed).
//!
//! [`RegistrarCore`]: rserpool_registrar::RegistrarCore
//! [`PeCore`]: rserpool::PeCore
//! [`PuCore`]: rserpool::PuCore

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agenda;
pub mod check;
pub mod net;
pub mod scenario;
pub mod trace;
pub mod world;

pub use check::Violation;
pub use scenario::{Outcome, Scenario, SCENARIOS};
pub use world::World;
