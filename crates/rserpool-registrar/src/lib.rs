//! The RSerPool registrar (ENRP server), ASAP server side: a sans-IO core
//! ([`RegistrarCore`], DESIGN section 2) and its tokio service over TCP
//! with TLS ([`service`], DESIGN sections 3 and 4).
//!
//! * [`config`]: timers, thresholds and limits with their defaults.
//! * [`RegistrarCore`]: registration, deregistration, handle resolution,
//!   keep-alives and unreachable reports (RFC 5352 sections 3.1-3.5) with
//!   the RFC 5355 rules: identity binding, own-address rule, rate limits
//!   per identity and source address, the per-PE keep-alive limit; and
//!   operators' drains, undrains and removals of PEs
//!   ([`RegistrarCore::drain`]).
//! * [`Output`]/[`Event`]: what the core asks of its driver and reports.
//! * [`service`]: the tokio driver ([`Registrar`], [`RegistrarHandle`]);
//!   [`announce`]: the optional ASAP_SERVER_ANNOUNCE sender.
//! * [`log_limit`]: warnings an attacker can repeat, limited and summarised.
//! * [`admin`]: the admin HTTP API and Prometheus metrics
//!   ([`admin::AdminServer`]).
//!
//! The default feature `service` brings the tokio service, the admin API
//! and announcements. Without it (`default-features = false`) the crate
//! is the sans-IO core alone, with neither tokio nor OpenSSL in its
//! dependencies: what a deterministic simulator drives.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "service")]
mod accept;
#[cfg(feature = "service")]
pub mod admin;
#[cfg(feature = "service")]
pub mod announce;
pub mod authorisation;
mod client;
pub mod config;
mod core;
pub mod enrp_config;
#[cfg(feature = "service")]
pub mod enrp_multicast;
pub mod log_limit;
mod output;
pub mod revocation;
#[cfg(feature = "service")]
pub mod service;

#[cfg(test)]
mod core_apd_tests;
#[cfg(test)]
mod core_conn_tests;
#[cfg(test)]
mod core_enrp_tests;
#[cfg(test)]
mod core_operator_tests;
#[cfg(test)]
mod core_props;
#[cfg(test)]
mod core_tests;

pub use crate::core::operator::{
    check_drain_timeout, DrainOutcome, OperatorError, DEFAULT_DRAIN_TIMEOUT, DRAIN_TIMEOUTS,
};
pub use crate::core::{
    BookkeepingError, ConnectError, RateLimited, RefusedByLayer, RegistrarCore,
    OUTBOUND_CONNECTIONS,
};
pub use authorisation::{ApdReport, ClosedConnection, DeniedPe};
pub use client::{ClientInfo, ConnKind, OpenConnection, Protocol};
pub use config::CoreConfig;
pub use enrp_config::EnrpConfig;
pub use output::{
    protocol_name, EnrpStats, Event, Message, Output, PeerView, Refusal, Removal, ReportCheck,
    Stats,
};
pub use revocation::{Revocation, RevocationReport};
/// The identity key PEs are bound to (as in events: `psk:NAME`, `cert:SUBJECT`).
pub use rserpool_handlespace::Identity;
/// The authorised peer database the core decides with.
pub use rserpool_security::apd::Apd;
#[cfg(feature = "service")]
pub use service::{
    ListenerConfig, Registrar, RegistrarHandle, ServiceConfig, ServiceError, ServiceStats,
};
