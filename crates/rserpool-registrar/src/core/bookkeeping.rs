//! The core's own bookkeeping checked against its handlespace: what a
//! simulator and the property tests ask after every step.

use rserpool_handlespace::Identity;
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
        identifier: u32,
    },
    /// A PE homed at another registrar (there is no ENRP yet).
    #[error("PE {identifier:#010x} of pool {pool} is homed at {home:#010x}, not here")]
    ForeignHome {
        /// The pool.
        pool: String,
        /// The PE.
        identifier: u32,
        /// Its home.
        home: u32,
    },
    /// A PE without a lifetime.
    #[error("PE {identifier:#010x} of pool {pool} has no lifetime")]
    NoLifetime {
        /// The pool.
        pool: String,
        /// The PE.
        identifier: u32,
    },
    /// The per-identity PE counts differ from the handlespace's.
    #[error("per-identity PE counts: {counted} identities counted, {recorded} recorded, or values differ")]
    IdentityCounts {
        /// Identities with PEs in the handlespace.
        counted: usize,
        /// Identities with counts recorded.
        recorded: usize,
    },
    /// Probe state for a PE that is gone.
    #[error("keep-alive probe state for PE {identifier:#010x} of pool {pool}, which is gone")]
    OrphanProbe {
        /// The pool.
        pool: String,
        /// The PE.
        identifier: u32,
    },
}

impl RegistrarCore {
    /// Check the core's bookkeeping against its handlespace: every PE has
    /// a registrant, a lifetime and this registrar as its home; the
    /// per-identity counts are the handlespace's; no probe outlives its
    /// PE. O(PEs).
    pub fn check_bookkeeping(&self) -> Result<(), BookkeepingError> {
        let mut counts: FxHashMap<Identity, usize> = FxHashMap::default();
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
                *counts.entry(id).or_insert(0) += 1;
                if e.home != self.config.server_id {
                    return Err(BookkeepingError::ForeignHome {
                        pool: pool(),
                        identifier: e.identifier,
                        home: e.home,
                    });
                }
                if e.expires.is_none() {
                    return Err(BookkeepingError::NoLifetime {
                        pool: pool(),
                        identifier: e.identifier,
                    });
                }
            }
        }
        let recorded: FxHashMap<&Identity, usize> = self
            .pes_per_identity
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, v)| (k, *v))
            .collect();
        if counts.len() != recorded.len() || counts.iter().any(|(k, v)| recorded.get(k) != Some(v))
        {
            return Err(BookkeepingError::IdentityCounts {
                counted: counts.len(),
                recorded: recorded.len(),
            });
        }
        for (h, id) in self.probes.keys() {
            if hs.find(h, *id).is_none() {
                return Err(BookkeepingError::OrphanProbe {
                    pool: h.to_string(),
                    identifier: *id,
                });
            }
        }
        Ok(())
    }
}
