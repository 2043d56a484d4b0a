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
//! * [`ServerHunt`] / [`connection::hunt`]: the server hunt of RFC 5352
//!   3.6 over the configured registrar list.
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

pub mod config;
pub mod connection;
pub mod diagnose;
mod error;
pub mod hunt;
mod link;
mod pe;
mod pe_core;
mod pu;
mod pu_core;

pub use config::{ClientConfig, PoolUserSettings, RegistrarEndpoint, ReportLimits, Timers};
pub use diagnose::{Diagnosis, FailureKind};
pub use error::{ClientError, RefusalDetail, RegistrarFailure};
pub use hunt::{HuntStep, ServerHunt};
pub use pe::PoolElement;
pub use pe_core::{PeCore, PeEvent, PeOutput, PeStatus, PoolElementSpec};
pub use pu::PoolUser;
pub use pu_core::{PuCore, PuOutput, ReportOutcome, Token};

/// Names a registrar connection of a driver, for the sans-IO cores.
pub type ConnId = u64;

/// What a sans-IO core asks of its driver's registrar link, the same for
/// both sides ([`PeOutput::Link`], [`PuOutput::Link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Send a message on a connection. If the write fails, the driver
    /// closes the connection and tells the core (`handle_disconnected`).
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: rserpool_wire::AsapMessage,
    },
    /// Close a connection.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Find a registrar (server hunt); answer with the core's
    /// `handle_connected` ([`PeCore::handle_connected`],
    /// [`PuCore::handle_connected`]) or `handle_hunt_failed`.
    Hunt,
}

pub(crate) use rserpool_security::random_seed;

/// Expected outputs in the PE and PU core tests.
#[cfg(test)]
pub(crate) mod test_outputs {
    use rserpool_wire::AsapMessage;

    use crate::{ConnId, LinkAction};

    /// A core output that may carry a [`LinkAction`].
    pub(crate) trait CoreOutput: From<LinkAction> {
        fn link(&self) -> Option<&LinkAction>;
    }

    pub(crate) fn send<O: CoreOutput>(conn: ConnId, message: AsapMessage) -> O {
        LinkAction::Send { conn, message }.into()
    }

    pub(crate) fn close<O: CoreOutput>(conn: ConnId) -> O {
        LinkAction::Close { conn }.into()
    }

    pub(crate) fn hunt<O: CoreOutput>() -> O {
        LinkAction::Hunt.into()
    }

    /// The messages among `outs`, with their connections.
    pub(crate) fn sends<O: CoreOutput>(outs: &[O]) -> Vec<(ConnId, AsapMessage)> {
        outs.iter()
            .filter_map(|o| match o.link() {
                Some(LinkAction::Send { conn, message }) => Some((*conn, message.clone())),
                _ => None,
            })
            .collect()
    }
}
