//! The errors the client reports to its application. Each names the
//! registrar, the pool handle or the setting involved. They are `Clone`
//! because one outcome may answer several waiting callers. A refused
//! registration carries what the registrar's cause said about the pool
//! ([`RefusalDetail`], RFC 5354 section 3.12).

use std::fmt;
use std::net::SocketAddr;

use rserpool_wire::{Cause, CauseCode, PeId, Policy, PoolHandle, Transport};

/// Why a connection attempt of the server hunt failed, as a driver
/// reports it to a core (`handle_connect_failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// What went wrong and what to do.
    pub reason: String,
    /// What went wrong, classified (`None`: not classified).
    pub kind: Option<crate::diagnose::FailureKind>,
}

impl ConnectFailure {
    /// A failure for `reason`.
    pub fn new(reason: impl Into<String>, kind: Option<crate::diagnose::FailureKind>) -> Self {
        ConnectFailure {
            reason: reason.into(),
            kind,
        }
    }
}

/// What a registrar's error cause says beyond its code: the
/// cause-specific information of RFC 5354 section 3.12, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalDetail {
    /// Inconsistent Pooling Policy (3.12.6): the policy the pool uses.
    PoolPolicy(Policy),
    /// Inconsistent Transport Type (3.12.8): a transport of the pool's
    /// PEs (its type is the pool's).
    PoolTransport(Transport),
}

impl RefusalDetail {
    /// The detail of `cause`, when its code defines information and the
    /// information decodes; `None` otherwise (it is then only the code).
    pub fn of(cause: &Cause) -> Option<RefusalDetail> {
        if cause.info.is_empty() {
            return None;
        }
        match cause.code {
            CauseCode::InconsistentPoolingPolicy => {
                Policy::from_tlv(&cause.info).ok().map(Self::PoolPolicy)
            }
            CauseCode::InconsistentTransportType => Transport::from_tlv(&cause.info)
                .ok()
                .map(Self::PoolTransport),
            _ => None,
        }
    }
}

/// The protocol of a transport, in words.
fn protocol(t: &Transport) -> &'static str {
    match t {
        Transport::Sctp { .. } => "SCTP",
        Transport::Tcp { .. } => "TCP",
        Transport::Udp { .. } => "UDP",
        Transport::UdpLite { .. } => "UDP-Lite",
        Transport::Dccp { .. } => "DCCP",
        Transport::Opaque { .. } => "opaque",
    }
}

impl fmt::Display for RefusalDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalDetail::PoolPolicy(p @ Policy::Unknown { .. }) => write!(
                f,
                "the pool uses policy type {:#010x}; register with the same policy",
                p.policy_type()
            ),
            RefusalDetail::PoolPolicy(p) => write!(
                f,
                "the pool uses {} ({}); register with the same policy",
                p.long_name(),
                p.name().to_ascii_lowercase()
            ),
            RefusalDetail::PoolTransport(t) => write!(
                f,
                "the pool's PEs use {} transports; register with the same transport type",
                protocol(t)
            ),
        }
    }
}

/// `": DETAIL"`, or nothing.
fn detail_suffix(d: &Option<RefusalDetail>) -> String {
    d.as_ref().map_or_else(String::new, |d| format!(": {d}"))
}

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
#[non_exhaustive]
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
    #[error(
        "registrar {registrar} refused the registration of PE {identifier:#010x}: {cause}{}",
        detail_suffix(detail)
    )]
    RegistrationRefused {
        /// The registrar.
        registrar: SocketAddr,
        /// The PE.
        identifier: PeId,
        /// Its reason (the first cause of its operation error).
        cause: CauseCode,
        /// What the cause said about the pool, if anything.
        detail: Option<RefusalDetail>,
    },
    /// The registrar refused a deregistration (RFC 5352 3.2).
    #[error("registrar {registrar} refused the deregistration of PE {identifier:#010x}: {cause}")]
    DeregistrationRefused {
        /// The registrar.
        registrar: SocketAddr,
        /// The PE.
        identifier: PeId,
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
    /// The registrar answered with no PE at all: the pool exists (else
    /// the answer is [`ClientError::UnknownPoolHandle`]) and has PEs (a
    /// pool goes with its last PE), but hands none out: with
    /// rserpool-registrar, because an operator drained every one, or
    /// because the policy gives none of them a chance (weight 0).
    #[error(
        "registrar {registrar} handed out no pool element of pool {pool_handle}: the pool \
         exists, but every PE in it is drained (or has weight 0); try again later"
    )]
    PoolDrained {
        /// The registrar.
        registrar: SocketAddr,
        /// The pool.
        pool_handle: PoolHandle,
    },
    /// The announce group could not be joined (the socket, its port, the
    /// multicast membership).
    #[error("cannot listen for server announcements on {group}: {reason}")]
    Announce {
        /// The group.
        group: SocketAddr,
        /// What the system said.
        reason: String,
    },
    /// The client's background task has stopped.
    #[error("the RSerPool client has stopped")]
    Stopped,
}

/// An operation error as people read it: each cause's meaning, and its
/// information when that is printable text (a registrar's reason, such
/// as the authorised peer database entry that denied a connection).
pub fn describe_operation_error(error: &rserpool_wire::OperationError) -> String {
    error
        .causes
        .iter()
        .map(|c| match std::str::from_utf8(&c.info) {
            Ok(text) if !text.is_empty() && !text.chars().any(char::is_control) => {
                format!("{}: {text}", c.code)
            }
            _ => c.code.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
