//! What a change of the authorised peer database ended: the answer of
//! [`crate::RegistrarCore::replace_apd`] and
//! [`crate::RegistrarCore::change_apd`], for the admin API's answer, the
//! log and `rsp apd`.

use std::net::SocketAddr;

use rserpool_handlespace::ConnId;
use rserpool_wire::{PeId, PoolHandle};
use serde::Serialize;

/// What a database change removed, each with the decision that denied it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApdReport {
    /// Entries of the new database.
    pub entries: usize,
    /// Connections closed: their identity may no longer connect as what
    /// their listener is for.
    pub connections_closed: Vec<ClosedConnection>,
    /// PEs removed: their registration is no longer allowed.
    pub pes_removed: Vec<DeniedPe>,
}

/// A connection a database change closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedConnection {
    /// The driver's connection number.
    pub conn: ConnId,
    /// Its identity.
    pub identity: String,
    /// Its source address.
    pub address: SocketAddr,
    /// The decision (`denied by entry 2 "x"`, or the closing deny).
    pub decision: String,
}

/// A PE a database change removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeniedPe {
    /// Its pool.
    pub pool_handle: PoolHandle,
    /// Its identifier.
    pub identifier: PeId,
    /// The identity that registered it.
    pub identity: String,
    /// The decision that denies it now.
    pub decision: String,
}

impl ApdReport {
    /// Whether the change ended nothing.
    pub fn is_empty(&self) -> bool {
        self.connections_closed.is_empty() && self.pes_removed.is_empty()
    }
}
