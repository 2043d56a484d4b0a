//! Operator actions on one PE, as the admin API asks for them: drain
//! (the PE stays registered but is no longer handed out, RFC 5352 3.3
//! lists only what may be chosen), undrain, and removal. They change the
//! core's state only through its own paths (the removal is the one every
//! other removal takes, and a PE's registrant, connection and keep-alive
//! state live in its handlespace entry, so they go with it); a drain's
//! timeout is a handlespace deadline that
//! [`RegistrarCore::handle_timeout`] acts on like the others.
//!
//! There is no ASAP message that tells a PE it was removed by an
//! operator (an unsolicited ASAP_DEREGISTRATION_RESPONSE means "your
//! registration life ended", RFC 5352 3.2, and makes a PE register again
//! at once), so none is sent: a PE process that still runs registers
//! again, as a new PE, at its next re-registration.

use std::time::{Duration, Instant};

use rserpool_wire::{PeId, PoolHandle};

use super::RegistrarCore;
use crate::config::Range;
use crate::output::{Event, Output, Removal};

/// A drain's timeout when the operator gives none (RFC 5352 has no drain;
/// long enough for most sessions to end).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// The timeouts a drain may have: whole seconds from 1 s to 30 days.
pub const DRAIN_TIMEOUTS: Range<Duration> = Range {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30 * 86_400),
};

/// Why an operator action was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The handlespace has no pool by this handle.
    #[error("no pool {:?}", .0.to_string())]
    NoPool(PoolHandle),
    /// The pool has no PE by this identifier.
    #[error("pool {:?} has no PE {identifier:#010x}", pool_handle.to_string())]
    NoPoolElement {
        /// The pool.
        pool_handle: PoolHandle,
        /// The identifier asked for.
        identifier: PeId,
    },
    /// The drain timeout is not whole seconds within [`DRAIN_TIMEOUTS`].
    #[error("drain timeout {}: {reason}", crate::config::show_duration(*.timeout))]
    Timeout {
        /// The timeout asked for.
        timeout: Duration,
        /// What is allowed.
        reason: String,
    },
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// The PE was drained already (its timeout was replaced).
    pub was_drained: bool,
    /// When the drain times out and the PE is removed (`None`: never).
    pub ends: Option<Instant>,
}

/// Check a drain timeout against [`DRAIN_TIMEOUTS`].
pub fn check_drain_timeout(timeout: Duration) -> Result<(), OperatorError> {
    let reason = if timeout.subsec_nanos() != 0 {
        Some("must be whole seconds".to_string())
    } else if !DRAIN_TIMEOUTS.contains(timeout) {
        Some(DRAIN_TIMEOUTS.problem(timeout))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(OperatorError::Timeout { timeout, reason }),
        None => Ok(()),
    }
}

impl RegistrarCore {
    /// The PE must exist: which of pool and PE is missing, otherwise.
    fn operator_target(&self, pool_handle: &PoolHandle, id: PeId) -> Result<(), OperatorError> {
        let hs = &self.handlespace;
        if hs.pool(pool_handle).is_none() {
            return Err(OperatorError::NoPool(pool_handle.clone()));
        }
        match hs.find(pool_handle, id) {
            Some(_) => Ok(()),
            None => Err(OperatorError::NoPoolElement {
                pool_handle: pool_handle.clone(),
                identifier: id,
            }),
        }
    }

    /// Drain a PE: it stays registered (keep-alives and re-registrations
    /// go on; a re-registration does not undrain it) but no handle
    /// resolution hands it out. The drain ends when the PE deregisters,
    /// when an operator undrains it, or after `timeout` (whole seconds
    /// within [`DRAIN_TIMEOUTS`]; `None`: never), when the PE is removed
    /// with [`Removal::DrainTimeout`]. Draining a drained PE replaces its
    /// timeout. `by` says who asked, for the event.
    pub fn drain(
        &mut self,
        now: Instant,
        pool_handle: &PoolHandle,
        identifier: PeId,
        timeout: Option<Duration>,
        by: &str,
    ) -> Result<DrainOutcome, OperatorError> {
        if let Some(t) = timeout {
            check_drain_timeout(t)?;
        }
        self.operator_target(pool_handle, identifier)?;
        let ends = timeout.map(|t| now + t);
        let was_drained = self
            .handlespace
            .drain(pool_handle, identifier, ends)
            .unwrap_or(false);
        self.stats.operator_drains += 1;
        self.outputs.push_back(Output::Event(Event::Drained {
            pool_handle: pool_handle.clone(),
            identifier,
            by: by.to_string(),
            timeout_seconds: timeout.map(|t| t.as_secs()),
        }));
        Ok(DrainOutcome { was_drained, ends })
    }

    /// Hand a drained PE out again (idempotent: a PE that was not drained
    /// stays as it is, and no event is sent). Returns whether it was
    /// drained.
    pub fn undrain(
        &mut self,
        _now: Instant,
        pool_handle: &PoolHandle,
        identifier: PeId,
        by: &str,
    ) -> Result<bool, OperatorError> {
        self.operator_target(pool_handle, identifier)?;
        let was = self
            .handlespace
            .undrain(pool_handle, identifier)
            .unwrap_or(false);
        self.stats.operator_undrains += 1;
        if was {
            self.outputs.push_back(Output::Event(Event::Undrained {
                pool_handle: pool_handle.clone(),
                identifier,
                by: by.to_string(),
            }));
        }
        Ok(was)
    }

    /// Remove a PE now ([`Removal::Operator`]), with everything the core
    /// keeps about it; a later deregistration or keep-alive answer for it
    /// is then harmless (an unknown PE). A PE process that still runs
    /// registers again at its next re-registration: to keep it out, stop
    /// it or revoke its key.
    pub fn remove_pool_element(
        &mut self,
        _now: Instant,
        pool_handle: &PoolHandle,
        identifier: PeId,
    ) -> Result<(), OperatorError> {
        self.operator_target(pool_handle, identifier)?;
        if self.remove(pool_handle, identifier, Removal::Operator) {
            self.stats.operator_removals += 1;
        }
        Ok(())
    }
}
