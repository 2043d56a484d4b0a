//! The rate limits of the core's requests: each kind of request is
//! limited per identity and per source address (DESIGN section 4: more
//! than one layer; RFC 5355 2.1, 2.13), and idle buckets are forgotten.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::CoreConfig;
use rserpool_handlespace::Identity;
use rserpool_security::rate_limit::{KeyedLimiter, Rate};

use crate::client::source_prefix;

/// The rate limits of one kind of request: per identity and per source
/// address (DESIGN section 4: more than one layer).
#[derive(Debug)]
pub(super) struct Limit {
    by_identity: KeyedLimiter<Identity>,
    by_address: KeyedLimiter<IpAddr>,
}

impl Limit {
    pub(super) fn new(identity: Rate, address: Rate, max_keys: usize, now: Instant) -> Self {
        Limit {
            by_identity: KeyedLimiter::new(identity, max_keys, now),
            by_address: KeyedLimiter::new(address, max_keys, now),
        }
    }

    pub(super) fn allow(&mut self, identity: &Identity, address: IpAddr, now: Instant) -> bool {
        self.by_identity.try_take(identity, now)
            && self.by_address.try_take(&source_prefix(address), now)
    }

    pub(super) fn prune(&mut self, now: Instant) {
        self.by_identity.prune(now);
        self.by_address.prune(now);
    }
}

/// How often idle rate-limiter buckets are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// The core's rate limits: registrations (and deregistrations), handle
/// resolutions and unreachable reports (RFC 5355 2.1, 2.13).
#[derive(Debug)]
pub(super) struct Limits {
    pub(super) registrations: Limit,
    pub(super) resolutions: Limit,
    pub(super) reports: Limit,
    next_prune: Instant,
}

impl Limits {
    pub(super) fn new(config: &CoreConfig, now: Instant) -> Self {
        let keys = config.max_limiter_keys;
        Limits {
            registrations: Limit::new(
                config.registration_rate,
                config.registration_rate_per_address,
                keys,
                now,
            ),
            resolutions: Limit::new(
                config.resolution_rate,
                config.resolution_rate_per_address,
                keys,
                now,
            ),
            reports: Limit::new(
                config.report_rate,
                config.report_rate_per_address,
                keys,
                now,
            ),
            next_prune: now + PRUNE_INTERVAL,
        }
    }

    /// When idle buckets are forgotten next.
    pub(super) fn next_prune(&self) -> Instant {
        self.next_prune
    }

    /// Forget idle buckets when it is time.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_prune {
            self.registrations.prune(now);
            self.resolutions.prune(now);
            self.reports.prune(now);
            self.next_prune = now + PRUNE_INTERVAL;
        }
    }
}
