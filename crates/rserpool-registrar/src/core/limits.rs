//! The rate limits of the core's requests: each kind of request is
//! limited per identity, per source address and over everyone (DESIGN
//! section 4: more than one layer, the PIM lesson that one layer is
//! bypassed by becoming the trusted node; RFC 5355 2.1, 2.13), each
//! refusal counted by the layer that refused, and idle buckets are
//! forgotten.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::CoreConfig;
use rserpool_handlespace::Identity;
use rserpool_security::rate_limit::{KeyedLimiter, Rate, TokenBucket};
use serde::Serialize;

use crate::client::source_prefix;

/// Requests of one kind refused by each layer of its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefusedByLayer {
    /// By the limit of the requester's identity.
    pub identity: u64,
    /// By the limit of its source address (IPv6: /64).
    pub address: u64,
    /// By the limit over all requesters together.
    pub global: u64,
}

/// Requests refused by a rate limit, by kind and layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateLimited {
    /// Registrations and deregistrations.
    pub registrations: RefusedByLayer,
    /// Handle resolutions.
    pub resolutions: RefusedByLayer,
    /// Endpoint unreachable reports.
    pub reports: RefusedByLayer,
}

/// The rate limits of one kind of request: per identity, per source
/// address and over all requesters (DESIGN section 4: more than one
/// layer). A request takes a token from each, in that order, and only
/// if the layers before gave one: a requester over its own limit costs
/// the global budget nothing, so one identity cannot spend it.
#[derive(Debug)]
pub(super) struct Limit {
    by_identity: KeyedLimiter<Identity>,
    by_address: KeyedLimiter<IpAddr>,
    global_rate: Rate,
    global: TokenBucket,
    pub(super) refused: RefusedByLayer,
}

impl Limit {
    pub(super) fn new(
        identity: Rate,
        address: Rate,
        global: Rate,
        max_keys: usize,
        now: Instant,
    ) -> Self {
        Limit {
            by_identity: KeyedLimiter::new(identity, max_keys, now),
            by_address: KeyedLimiter::new(address, max_keys, now),
            global_rate: global,
            global: TokenBucket::new(global, now),
            refused: RefusedByLayer::default(),
        }
    }

    pub(super) fn allow(&mut self, identity: &Identity, address: IpAddr, now: Instant) -> bool {
        if !self.by_identity.try_take(identity, now) {
            self.refused.identity += 1;
            false
        } else if !self.by_address.try_take(&source_prefix(address), now) {
            self.refused.address += 1;
            false
        } else if !self.global.try_take(self.global_rate, now) {
            self.refused.global += 1;
            false
        } else {
            true
        }
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
                config.registration_rate_global,
                keys,
                now,
            ),
            resolutions: Limit::new(
                config.resolution_rate,
                config.resolution_rate_per_address,
                config.resolution_rate_global,
                keys,
                now,
            ),
            reports: Limit::new(
                config.report_rate,
                config.report_rate_per_address,
                config.report_rate_global,
                keys,
                now,
            ),
            next_prune: now + PRUNE_INTERVAL,
        }
    }

    /// The refusals of each kind of request, by layer.
    pub(super) fn refused(&self) -> RateLimited {
        RateLimited {
            registrations: self.registrations.refused,
            resolutions: self.resolutions.refused,
            reports: self.reports.refused,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Many identities from many addresses, each within its own limits,
    /// meet the global one; one identity over its own limit does not
    /// spend it.
    #[test]
    fn the_global_layer_bounds_what_many_requesters_do_together() {
        let t0 = Instant::now();
        let mut l = Limit::new(
            Rate::new(1.0, 5.0),
            Rate::new(1.0, 5.0),
            Rate::new(1.0, 20.0),
            1000,
            t0,
        );
        let who = |i: u32| Identity(format!("psk:k{i}").into());
        let from = |i: u32| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        // One identity: 5 pass, the rest refused by its own layer.
        let passed = (0..50).filter(|_| l.allow(&who(0), from(0), t0)).count();
        assert_eq!(passed, 5);
        assert_eq!(l.refused.identity, 45);
        // 100 more identities, 3 requests each: 15 global tokens are left.
        let passed = (1..=100)
            .flat_map(|i| [i; 3])
            .filter(|&i| l.allow(&who(i), from(i), t0))
            .count();
        assert_eq!(passed, 15);
        assert_eq!(l.refused.global, 300 - 15);
        assert_eq!(l.refused.address, 0);
        // It refills at its rate.
        assert!(l.allow(&who(200), from(200), t0 + Duration::from_secs(1)));
    }
}
