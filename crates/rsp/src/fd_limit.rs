//! File descriptors for the registrar (DESIGN section 4): the soft
//! RLIMIT_NOFILE is raised to the hard limit at start, and the ASAP
//! connection limit is lowered if the descriptors cannot hold it next to
//! the admin API's connections and a reserve (listeners, key files,
//! logs), so that `accept` runs out of connection slots, which are
//! refused cleanly, before it runs out of descriptors.

/// Descriptors kept for everything that is not a client connection.
pub const RESERVE: u64 = 64;

/// Raise the soft limit to the hard one; returns the limit in effect
/// (`None` if it cannot be read).
pub fn raise() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            return Some(hard);
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The ASAP connection limit that fits `limit` descriptors next to
/// `others` (the admin API's cap) and [`RESERVE`]; `Some(lower)` when
/// `wanted` does not fit.
pub fn fit(wanted: usize, others: usize, limit: u64) -> Option<usize> {
    let room = limit.saturating_sub(RESERVE + others as u64);
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    (wanted > room).then_some(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_fits_the_descriptors() {
        assert_eq!(fit(10_000, 64, 1_048_576), None);
        assert_eq!(fit(10_000, 64, 1_024), Some(1_024 - 128));
        assert_eq!(fit(10_000, 64, 10), Some(1));
        assert!(raise().is_some_and(|l| l >= 64));
    }
}
