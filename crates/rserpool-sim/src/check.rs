//! The invariants of a run. Checked after every step:
//!
//! * no core panics (the run is caught and the panic reported);
//! * nothing is sent on a connection its core closed or was told is
//!   closed;
//! * a registrar never hands out a PE that has been dead (crashed,
//!   vanished, frozen, cut off or stopped) for longer than the keep-alive
//!   bound;
//! * every pool user failover (a selection after a report) lands on a
//!   live PE, or on one dead for less than that bound (which the
//!   registrar cannot know yet);
//! * each registrar's bookkeeping matches its handlespace (every
//!   simulated ten seconds, and at the end).
//!
//! At quiescence (after the fault-free settling time at the end of a
//! scenario): every live PE is registered exactly once, with one
//! registrar, and no dead one is.

use std::fmt;
use std::time::Duration;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time.
    pub at: Duration,
    /// Which invariant.
    pub rule: Rule,
    /// What was seen.
    pub detail: String,
}

/// The invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// A core panicked.
    Panic,
    /// Something was sent on a closed connection.
    SendOnClosed,
    /// A registrar listed a PE dead for longer than the bound.
    DeadPeResolved,
    /// A failover landed on a dead PE.
    FailoverToDead,
    /// A live PE is not registered exactly once (at quiescence).
    NotRegisteredOnce,
    /// A dead PE is still registered (at quiescence).
    DeadPeRegistered,
    /// A registrar's bookkeeping disagrees with its handlespace.
    Bookkeeping,
    /// Registrars of a cluster disagree on a PE's home, or its home is
    /// not a running registrar, or the PE names another (at quiescence).
    HomeDisagrees,
    /// A running registrar does not see another running one as a peer
    /// that is up (at quiescence).
    PeerNotUp,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Panic => "a core panicked",
            Rule::SendOnClosed => "sent on a closed connection",
            Rule::DeadPeResolved => "a dead PE was handed out after the keep-alive bound",
            Rule::FailoverToDead => "a failover landed on a dead PE",
            Rule::NotRegisteredOnce => "a live PE is not registered exactly once",
            Rule::DeadPeRegistered => "a dead PE is still registered",
            Rule::Bookkeeping => "registrar bookkeeping does not match its handlespace",
            Rule::HomeDisagrees => "registrars disagree on a PE's home, or it is not live",
            Rule::PeerNotUp => "a running registrar does not see another as a peer",
        })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            crate::trace::stamp(self.at),
            self.rule,
            self.detail
        )
    }
}
