//! The RSerPool client library (RFC 5352 ASAP, client side): pool
//! elements that register with a registrar and stay registered, and pool
//! users that resolve pool handles, pick a PE and report failed ones.
//!
//! Each side is a sans-IO core (time and messages in, messages and
//! events out; DESIGN section 2) with a thin tokio driver:
//!
//! * [`PeCore`] / [`PoolElement`]: registration (T2), re-registration
//!   (T4, see [`config::reregistration_interval`]), keep-alive answers and
//!   re-homing on the H flag, deregistration (T3), server hunt and
//!   re-registration with the same identifier when the home registrar is
//!   lost.
//! * [`PuCore`] / [`PoolUser`]: a handle resolution cache with a stale
//!   timeout, T1 retransmissions and registrar failover, selection by the
//!   pool policy ([`rserpool_handlespace::PoolUserSelection`]) skipping
//!   failed PEs, rate-limited unreachable reports.
//! * [`Hunter`] / [`ServerHunt`]: the server hunt of RFC 5352 3.6 over
//!   the registrar list, inside both cores: they ask their driver for one
//!   connection at a time ([`LinkAction::Connect`]). The list is the
//!   configured registrars, then (opt-in, [`AnnounceConfig`]) a bounded
//!   number learned from ASAP_SERVER_ANNOUNCE ([`announce`],
//!   [`registrars`]): untrusted hints, authenticated like any registrar.
//! * [`session`]: PU-PE sessions over TLS: a pool user's
//!   [`session::Session`] fails over between the pool's PEs, never to a
//!   weaker session, carrying the PE's signed cookie; a PE's
//!   [`session::SessionServer`] issues and verifies the cookies.
//!
//! Registrar connections are TCP with TLS ([`rserpool_security::TlsClient`],
//! a PSK or a CA certificate), or plain TCP in the insecure lab mode
//! (`tls: None`, logged as a warning). A registrar that does not
//! authenticate counts as failed and the next one is tried (RFC 5355
//! 2.7).
//!
//! ```no_run
//! use std::path::Path;
//!
//! use rserpool::{ClientConfig, PoolElement, PoolElementSpec, PoolUser, RegistrarEndpoint};
//! use rserpool_security::{Psk, TlsClient, TlsClientConfig};
//! use rserpool_wire::{Policy, PoolHandle};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let registrars = vec![
//!     RegistrarEndpoint::new("192.0.2.1:3864".parse()?),
//!     RegistrarEndpoint::new("192.0.2.2:3864".parse()?),
//! ];
//! let psk = Psk::read_file(Path::new("/etc/rserpool/pe.key"))?
//!     .into_iter()
//!     .next()
//!     .ok_or("empty key file")?;
//! let tls = TlsClient::new(&TlsClientConfig { psk: Some(psk), ..Default::default() })?;
//! let config = ClientConfig::new(registrars, Some(tls));
//! let handle = PoolHandle::from_static("echo");
//!
//! // A pool element: registered when `start` returns.
//! let spec = PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007);
//! let pe = PoolElement::start(config.clone(), spec).await?;
//! let mut events = pe.events();
//! println!("registered as {:#010x}: {:?}", pe.identifier(), pe.status());
//!
//! // A pool user.
//! let pu = PoolUser::new(config)?;
//! let all = pu.resolve(&handle).await?;
//! let chosen = pu.select(&handle).await?;
//! println!("{} PEs, using {:?}", all.len(), chosen.user_transport);
//! // ... the PE does not answer:
//! pu.report_unreachable(&handle, chosen.identifier).await?;
//!
//! if let Ok(event) = events.try_recv() {
//!     println!("{event:?}");
//! }
//! pe.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod announce;
pub mod config;
#[cfg(feature = "driver")]
pub mod connection;
#[cfg(test)]
mod core_props;
pub mod diagnose;
mod error;
pub mod hunt;
mod inbound;
#[cfg(feature = "driver")]
mod link;
#[cfg(feature = "driver")]
mod pe;
mod pe_core;
#[cfg(feature = "driver")]
mod pu;
mod pu_core;
pub mod registrars;
pub mod session;
mod standby;

pub use announce::AnnounceStats;
#[cfg(feature = "driver")]
pub use config::ClientConfig;
pub use config::{AnnounceConfig, PoolUserSettings, RegistrarEndpoint, ReportLimits, Timers};
pub use diagnose::{Diagnosis, FailureKind};
pub use error::{ClientError, ConnectFailure, RefusalDetail, RegistrarFailure};
pub use hunt::{HuntStep, Hunter, LearnOutcome, ServerHunt};
#[cfg(feature = "driver")]
pub use pe::PoolElement;
pub use pe_core::{HomeTrust, PeCore, PeEvent, PeOutput, PeStatus, PoolElementSpec};
#[cfg(feature = "driver")]
pub use pu::PoolUser;
pub use pu_core::{PuCore, PuOutput, ReportOutcome, Token};
pub use registrars::{Entry as RegistrarEntry, Origin as RegistrarOrigin};

/// A client's registrar list and what the announce channel brought, as
/// the cores' and the drivers' `discovery` report them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovery {
    /// The registrars hunted over: the configured ones, then the learned.
    pub registrars: Vec<RegistrarEntry>,
    /// The announce channel's counters.
    pub stats: AnnounceStats,
    /// Keep-alives with the H flag that did not move the home registrar
    /// because their connection was not trusted for it (a PE's; 0 for a
    /// pool user).
    pub home_changes_refused: u64,
}

/// Names a registrar connection of a driver, for the sans-IO cores. The
/// cores choose it ([`LinkAction::Connect`]). The one connection handle of
/// all the crates ([`rserpool_wire::ConnId`]).
pub use rserpool_wire::ConnId;

/// What a sans-IO core asks of its driver's registrar link, the same for
/// both sides ([`PeOutput::Link`], [`PuOutput::Link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkAction {
    /// Open connection `conn` to registrar `index` of the core's list (at
    /// `registrar`; the configured registrars first, then any learned
    /// from announcements), TCP and the TLS handshake, by `deadline`
    /// (server hunt, RFC 5352 3.6). Answer with the core's `handle_connected` or
    /// `handle_connect_failed`; a `Close` of `conn` before then means the
    /// core gave the attempt up.
    Connect {
        /// The connection to open.
        conn: ConnId,
        /// Which registrar of the list (its position now: learned entries
        /// move when one before them expires, so drivers go by the
        /// address).
        index: usize,
        /// Its address.
        registrar: std::net::SocketAddr,
        /// When to give up.
        deadline: std::time::Instant,
    },
    /// Send a message on a connection. If the write fails, the driver
    /// closes the connection and tells the core (`handle_disconnected`).
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: rserpool_wire::AsapMessage,
    },
    /// Close a connection, or abandon an attempt to open it.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// How a connection to a registrar is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkSecurity {
    /// Plain TCP: the insecure lab mode, nobody is authenticated.
    Insecure,
    /// TLS: the registrar proved this identity (RFC 5355 2.7).
    Tls {
        /// Who the registrar is.
        registrar: rserpool_security::PeerIdentity,
    },
}

impl std::fmt::Display for LinkSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSecurity::Insecure => f.write_str("insecure"),
            LinkSecurity::Tls { registrar } => write!(f, "TLS, {registrar}"),
        }
    }
}

/// What the driver learnt of a connection it made, for the core's
/// `handle_connected`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connected {
    /// This end's address on it (what a PE registers).
    pub local: std::net::SocketAddr,
    /// How it is secured, and who the registrar proved to be.
    pub security: LinkSecurity,
}

impl Connected {
    /// A connection from `local`, secured by `security`.
    pub fn new(local: std::net::SocketAddr, security: LinkSecurity) -> Self {
        Connected { local, security }
    }
}

#[cfg(feature = "driver")]
pub(crate) use rserpool_security::random_seed;

/// The link inputs both client cores ([`crate::PeCore`], [`crate::PuCore`])
/// take from their drivers: one trait for the tokio drivers and the
/// property tests.
#[cfg(any(feature = "driver", test))]
pub(crate) trait LinkInputs {
    fn handle_connected(&mut self, now: std::time::Instant, conn: ConnId, connected: Connected);
    fn handle_connect_failed(
        &mut self,
        now: std::time::Instant,
        conn: ConnId,
        failure: crate::ConnectFailure,
    );
    fn handle_frame(&mut self, now: std::time::Instant, conn: ConnId, frame: &[u8]);
    fn handle_disconnected(&mut self, now: std::time::Instant, conn: ConnId, reason: &str);
}

#[cfg(any(feature = "driver", test))]
macro_rules! link_inputs {
    ($core:ty) => {
        impl LinkInputs for $core {
            fn handle_connected(&mut self, now: std::time::Instant, conn: ConnId, c: Connected) {
                <$core>::handle_connected(self, now, conn, c)
            }
            fn handle_connect_failed(
                &mut self,
                now: std::time::Instant,
                conn: ConnId,
                f: crate::ConnectFailure,
            ) {
                <$core>::handle_connect_failed(self, now, conn, f)
            }
            fn handle_frame(&mut self, now: std::time::Instant, conn: ConnId, frame: &[u8]) {
                <$core>::handle_frame(self, now, conn, frame)
            }
            fn handle_disconnected(&mut self, now: std::time::Instant, conn: ConnId, r: &str) {
                <$core>::handle_disconnected(self, now, conn, r)
            }
        }
    };
}
#[cfg(any(feature = "driver", test))]
link_inputs!(crate::PeCore);
#[cfg(any(feature = "driver", test))]
link_inputs!(crate::PuCore);

/// Expected outputs in the PE and PU core tests.
#[cfg(test)]
pub(crate) mod test_outputs {
    use rserpool_wire::AsapMessage;

    use crate::{ConnId, LinkAction};

    /// A core output that may carry a [`LinkAction`].
    pub(crate) trait CoreOutput: From<LinkAction> {
        fn link(&self) -> Option<&LinkAction>;
    }

    /// Where the PE and PU test cores connect from.
    pub(crate) const LOCAL: std::net::SocketAddr = std::net::SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7)),
        40000,
    );

    /// What a test driver reports of a plain connection.
    pub(crate) fn plain() -> crate::Connected {
        crate::Connected::new(LOCAL, crate::LinkSecurity::Insecure)
    }

    pub(crate) fn send<O: CoreOutput>(conn: ConnId, message: AsapMessage) -> O {
        LinkAction::Send { conn, message }.into()
    }

    pub(crate) fn close<O: CoreOutput>(conn: ConnId) -> O {
        LinkAction::Close { conn }.into()
    }

    /// The connection attempts among `outs`: (conn, registrar index),
    /// the connections by number (for patterns).
    pub(crate) fn connects<O: CoreOutput>(outs: &[O]) -> Vec<(u64, usize)> {
        outs.iter()
            .filter_map(|o| match o.link() {
                Some(LinkAction::Connect { conn, index, .. }) => Some((conn.get(), *index)),
                _ => None,
            })
            .collect()
    }

    /// Whether `outs` are one connection attempt and nothing else.
    pub(crate) fn only_hunt<O: CoreOutput>(outs: &[O]) -> bool {
        outs.len() == 1 && hunts(outs)
    }

    /// Whether `outs` start a connection attempt.
    pub(crate) fn hunts<O: CoreOutput>(outs: &[O]) -> bool {
        !connects(outs).is_empty()
    }

    /// The messages among `outs`, with their connections by number.
    pub(crate) fn sends<O: CoreOutput>(outs: &[O]) -> Vec<(u64, AsapMessage)> {
        outs.iter()
            .filter_map(|o| match o.link() {
                Some(LinkAction::Send { conn, message }) => Some((conn.get(), message.clone())),
                _ => None,
            })
            .collect()
    }
}
