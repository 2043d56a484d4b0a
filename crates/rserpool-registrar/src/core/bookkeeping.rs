//! The core's bookkeeping checked against its handlespace: what the
//! simulator and the property tests ask after every step.

use rserpool_handlespace::Identity;
use rserpool_wire::{ConnId, PeId, ServerId};
use rustc_hash::FxHashMap;

use super::RegistrarCore;

/// Where the core's bookkeeping disagrees with its handlespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BookkeepingError {
    /// A PE without the identity that registered it.
    #[error("PE {identifier:#010x} of pool {pool} has no registrant identity")]
    NoRegistrant {
        /// The pool.
        pool: String,
        /// The PE.
        identifier: PeId,
    },
    /// A PE registered over a connection here but homed elsewhere.
    #[error("PE {identifier:#010x} of pool {pool} registered here is homed at {home:#010x}")]
    ForeignHome {
        /// The pool.
        pool: String,
        /// The PE.
        identifier: PeId,
        /// Its home.
        home: ServerId,
    },
    /// A PE homed here without a lifetime.
    #[error("PE {identifier:#010x} of pool {pool} has no lifetime")]
    NoLifetime {
        /// The pool.
        pool: String,
        /// The PE.
        identifier: PeId,
    },
    /// The handlespace's count of an identity's PEs differs from its PEs.
    #[error("{identity} has {found} PEs, and the index counts {counted}")]
    IdentityCount {
        /// The identity.
        identity: String,
        /// PEs found with it.
        found: usize,
        /// What the index says.
        counted: usize,
    },
    /// The handlespace's count of a connection's PEs differs from its PEs.
    #[error("connection {conn} has {found} PEs, and the index counts {counted}")]
    ConnectionCount {
        /// The connection.
        conn: ConnId,
        /// PEs found on it.
        found: usize,
        /// What the index says.
        counted: usize,
    },
}

impl RegistrarCore {
    /// Check the core's bookkeeping against its handlespace: every PE has
    /// a registrant, every PE homed here a lifetime (a peer's PEs live as
    /// long as their home says); a PE registered over a connection here
    /// is homed here (others come by ENRP); the per-identity and
    /// per-connection counts of the indices are the PEs'. O(PEs).
    pub fn check_bookkeeping(&self) -> Result<(), BookkeepingError> {
        let mut identities: FxHashMap<Identity, usize> = FxHashMap::default();
        let mut connections: FxHashMap<ConnId, usize> = FxHashMap::default();
        let hs = &self.handlespace;
        for h in hs.pool_handles() {
            for e in hs.pool_elements(h) {
                let pool = || h.to_string();
                let Some(id) = e.identity.clone() else {
                    return Err(BookkeepingError::NoRegistrant {
                        pool: pool(),
                        identifier: e.identifier,
                    });
                };
                *identities.entry(id).or_insert(0) += 1;
                if let Some(c) = e.connection {
                    *connections.entry(c).or_insert(0) += 1;
                    if e.home != self.config.server_id {
                        return Err(BookkeepingError::ForeignHome {
                            pool: pool(),
                            identifier: e.identifier,
                            home: e.home,
                        });
                    }
                }
                if e.expires.is_none() && e.home == self.config.server_id {
                    return Err(BookkeepingError::NoLifetime {
                        pool: pool(),
                        identifier: e.identifier,
                    });
                }
            }
        }
        for (identity, &found) in &identities {
            let counted = hs.count_by_identity(identity);
            if counted != found {
                return Err(BookkeepingError::IdentityCount {
                    identity: identity.0.to_string(),
                    found,
                    counted,
                });
            }
        }
        for (&conn, &found) in &connections {
            let counted = hs.count_by_connection(conn);
            if counted != found {
                return Err(BookkeepingError::ConnectionCount {
                    conn,
                    found,
                    counted,
                });
            }
        }
        Ok(())
    }
}
