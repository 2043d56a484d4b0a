//! Why a session operation failed.

use rserpool_wire::{PeId, PoolHandle};

use super::{CookieError, SecurityLevel};
use crate::ClientError;

/// One PE that was tried and not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The PE.
    pub pe: PeId,
    /// What went wrong.
    pub reason: String,
}

/// A session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Resolving or selecting a PE failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// Every PE tried failed (none was reachable, or their handshakes
    /// failed).
    #[error("no PE of pool {pool} could take the session: {}", list(.tried))]
    NoPoolElement {
        /// The pool.
        pool: PoolHandle,
        /// What each PE tried did.
        tried: Vec<Skipped>,
    },
    /// Reachable PEs were found, but none offered the security the session
    /// needs (RFC 5355 2.9: a failover must not weaken the session).
    #[error(
        "no PE of pool {pool} offers at least {floor} (the session's level): {}",
        list(.tried)
    )]
    SecurityDowngrade {
        /// The pool.
        pool: PoolHandle,
        /// The level the session needs.
        floor: SecurityLevel,
        /// What each PE tried did.
        tried: Vec<Skipped>,
    },
    /// The PE the session failed over to refused the cookie it was
    /// given (ASAP_ERROR "rejected due to security considerations"); the
    /// session's state did not carry over and the session is closed.
    #[error("PE {pe:#010x} refused the session's cookie: {reason}")]
    CookieRefused {
        /// The PE.
        pe: PeId,
        /// What it said.
        reason: String,
    },
    /// A cookie echoed to this PE did not verify; the PU was told and the
    /// session closed.
    #[error("cookie from {peer} refused: {error}")]
    BadCookie {
        /// The PU's address.
        peer: std::net::SocketAddr,
        /// Why.
        error: CookieError,
    },
    /// The peer broke the session protocol (a frame too long, too many
    /// undecodable control messages, a cookie echo out of place).
    #[error("session protocol violated by {peer}: {reason}")]
    Protocol {
        /// Who.
        peer: std::net::SocketAddr,
        /// What.
        reason: String,
    },
    /// The TLS handshake with a PU failed or took too long.
    #[error("handshake with {peer} failed: {reason}")]
    Handshake {
        /// Who.
        peer: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The application asked for something the session cannot do.
    #[error("{0}")]
    Usage(&'static str),
    /// Issuing a cookie failed.
    #[error("cannot issue a cookie: {0}")]
    Cookie(#[from] CookieError),
    /// The connection failed (PE side: the PU is gone).
    #[error("connection to {peer}: {reason}")]
    Connection {
        /// Who.
        peer: std::net::SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The session was closed.
    #[error("the session is closed")]
    Closed,
}

fn list(tried: &[Skipped]) -> String {
    if tried.is_empty() {
        return "none tried".into();
    }
    tried
        .iter()
        .map(|s| format!("PE {:#010x}: {}", s.pe.get(), s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}
