//! The errors the client reports to its application. Each names the
//! registrar, the pool handle or the setting involved. They are `Clone`
//! because one outcome may answer several waiting callers.

use std::fmt;
use std::net::SocketAddr;

use rserpool_wire::{CauseCode, PoolHandle};

/// Why one registrar could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarFailure {
    /// The registrar.
    pub registrar: SocketAddr,
    /// What went wrong (connection refused, TLS verification, timeout...)
    /// and what to do about it.
    pub reason: String,
    /// What went wrong, classified (when it was: a failed connection).
    pub kind: Option<crate::diagnose::FailureKind>,
}

impl fmt::Display for RegistrarFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.registrar, self.reason)
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A failed client operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work.
    #[error("client configuration: {0}")]
    Config(String),
    /// No registrar of the list could be reached (each with its last
    /// failure).
    #[error("no registrar reachable: {}", crate::diagnose::failure_list(.0))]
    NoRegistrar(Vec<RegistrarFailure>),
    /// Registrars took the request but did not answer in time.
    #[error("{operation}: no answer from {}", list(.registrars))]
    Timeout {
        /// What was asked.
        operation: &'static str,
        /// The registrars that did not answer.
        registrars: Vec<SocketAddr>,
    },
    /// The registrar knows no pool by this handle.
    #[error("pool handle {0} is unknown to the registrar")]
    UnknownPoolHandle(PoolHandle),
    /// The registrar refused a registration (RFC 5352 3.1).
    #[error("registrar {registrar} refused the registration of PE {identifier:#010x}: {cause}")]
    RegistrationRefused {
        /// The registrar.
        registrar: SocketAddr,
        /// The PE.
        identifier: u32,
        /// Its reason (the first cause of its operation error).
        cause: CauseCode,
    },
    /// The registrar refused a deregistration (RFC 5352 3.2).
    #[error("registrar {registrar} refused the deregistration of PE {identifier:#010x}: {cause}")]
    DeregistrationRefused {
        /// The registrar.
        registrar: SocketAddr,
        /// The PE.
        identifier: u32,
        /// Its reason.
        cause: CauseCode,
    },
    /// The registrar refused a request (a handle resolution refused for
    /// lack of resources, for example).
    #[error("registrar {registrar} refused the request for pool {pool_handle}: {cause}")]
    Refused {
        /// The registrar.
        registrar: SocketAddr,
        /// The pool.
        pool_handle: PoolHandle,
        /// Its reason.
        cause: CauseCode,
    },
    /// Every PE the registrar returned has failed.
    #[error("no usable pool element in pool {0}: every known one failed")]
    NoUsablePoolElement(PoolHandle),
    /// The client's background task has stopped.
    #[error("the RSerPool client has stopped")]
    Stopped,
}
