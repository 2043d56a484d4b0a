//! What a change of credentials (keys reloaded on SIGHUP) means for the
//! connections and PEs of the identities that used them: an input of
//! [`crate::RegistrarCore::handle_revocation`] and its answer.

use std::collections::BTreeSet;

use rserpool_handlespace::Identity;
use rserpool_security::PeerIdentity;
use rserpool_wire::{PeId, PoolHandle};
use serde::Serialize;

/// Identities whose credentials were removed or replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocation {
    /// Credentials removed: their connections close and their PEs are
    /// removed at once.
    pub revoked: BTreeSet<Identity>,
    /// Credentials replaced (a rotated key): their connections close and
    /// must authenticate again with the new credentials; their PEs stay
    /// for the keep-alive timeout, as after any disconnect, and are
    /// removed if they do not come back.
    pub reauthenticate: BTreeSet<Identity>,
    /// Every certificate identity must authenticate again (the client CA
    /// changed or is gone).
    pub reauthenticate_certificates: bool,
}

impl Revocation {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
            && self.reauthenticate.is_empty()
            && !self.reauthenticate_certificates
    }

    /// Revoke `identity` (its connections and PEs end).
    pub fn revoke(&mut self, identity: &PeerIdentity) {
        self.revoked.insert(key(identity));
    }

    /// Make `identity` authenticate again (its connections end).
    pub fn reauthenticate(&mut self, identity: &PeerIdentity) {
        self.reauthenticate.insert(key(identity));
    }
}

/// The identity key the core binds PEs to for a proven identity.
fn key(identity: &PeerIdentity) -> Identity {
    Identity(identity.to_string().into())
}

/// What a revocation ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RevocationReport {
    /// Connections closed, by identity.
    pub connections_closed: Vec<(String, usize)>,
    /// PEs removed: pool handle, PE identifier and registrant.
    pub pes_removed: Vec<RemovedPe>,
}

/// A PE a revocation removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedPe {
    /// Its pool.
    pub pool_handle: PoolHandle,
    /// Its identifier.
    pub identifier: PeId,
    /// The identity that registered it.
    pub identity: String,
}

impl RevocationReport {
    /// Connections closed in all.
    pub fn connections(&self) -> usize {
        self.connections_closed.iter().map(|(_, n)| n).sum()
    }
}
