//! Rate limits (DESIGN section 4, RFC 5355 sections 2.1, 2.13, 2.14):
//! token buckets, alone or one per key (identity, source address,
//! reporter). No I/O: time is passed in.
//!
//! A keyed limiter holds one bucket per key it has seen recently; buckets
//! that have been full for a while are dropped by [`KeyedLimiter::prune`],
//! and the number of keys is capped, so an attacker who invents keys costs
//! bounded memory (beyond the cap, new keys share one overflow bucket).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A rate: `per_second` tokens per second, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// Sustained rate (tokens per second).
    pub per_second: f64,
    /// Largest burst (bucket size).
    pub burst: f64,
}

impl Rate {
    /// A rate with a burst.
    pub const fn new(per_second: f64, burst: f64) -> Self {
        Rate { per_second, burst }
    }

    /// No limit at all.
    pub const UNLIMITED: Rate = Rate {
        per_second: f64::INFINITY,
        burst: f64::INFINITY,
    };

    /// Largest finite rate and burst accepted: beyond it a limit limits
    /// nothing (say `inf` for that).
    pub const MAX: f64 = 1e9;

    /// Whether a bucket can work with this rate: a rate in 0 < r <= 1e9
    /// per second (or infinity: no limit) and a burst of 1 ..= 1e9 tokens
    /// (any burst with no limit). `Err` says what is wrong.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.per_second.is_nan() || self.per_second <= 0.0 {
            return Err("per_second must be more than 0 (inf: no limit)");
        }
        if self.per_second.is_infinite() {
            return Ok(());
        }
        if self.per_second > Self::MAX {
            return Err("per_second must be at most 1e9 (inf: no limit)");
        }
        if self.burst.is_nan() || self.burst < 1.0 || self.burst > Self::MAX {
            return Err("burst must be between 1 and 1e9");
        }
        Ok(())
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, rate: Rate, now: Instant) -> bool {
        if rate.per_second.is_infinite() {
            return true;
        }
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token could be taken at `now`, without taking it.
    pub fn has_token(&self, rate: Rate, now: Instant) -> bool {
        if rate.per_second.is_infinite() {
            return true;
        }
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + dt * rate.per_second).min(rate.burst) >= 1.0
    }

    /// Whether the bucket would be full at `now` (nothing to remember).
    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + dt * rate.per_second >= rate.burst
    }
}

/// One token bucket per key, with a cap on the number of keys.
#[derive(Debug, Clone)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, TokenBucket>,
    overflow: TokenBucket,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter allowing `rate` per key, remembering at most `max_keys`
    /// keys (further keys share one bucket of the same rate).
    pub fn new(rate: Rate, max_keys: usize, now: Instant) -> Self {
        KeyedLimiter {
            rate,
            max_keys,
            buckets: HashMap::new(),
            overflow: TokenBucket::new(rate, now),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Take one token from `key`'s bucket.
    pub fn try_take(&mut self, key: &K, now: Instant) -> bool {
        let rate = self.rate;
        if rate.per_second.is_infinite() {
            return true;
        }
        if let Some(b) = self.buckets.get_mut(key) {
            return b.try_take(rate, now);
        }
        if self.buckets.len() >= self.max_keys {
            return self.overflow.try_take(rate, now);
        }
        let mut b = TokenBucket::new(rate, now);
        let ok = b.try_take(rate, now);
        self.buckets.insert(key.clone(), b);
        ok
    }

    /// Whether `key` has a token now, without taking it (a key not seen
    /// yet has a full bucket, unless the key cap sends it to the shared
    /// overflow bucket).
    pub fn would_allow(&self, key: &K, now: Instant) -> bool {
        let rate = self.rate;
        match self.buckets.get(key) {
            Some(b) => b.has_token(rate, now),
            None if self.buckets.len() >= self.max_keys => self.overflow.has_token(rate, now),
            None => true,
        }
    }

    /// Forget buckets that are full again (their keys are at rest).
    pub fn prune(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| !b.is_full(rate, now));
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// A sliding count of events in a window (for "no more than N per
/// interval" rules such as the keep-alive limit of RFC 5355 2.14).
#[derive(Debug, Clone, Default)]
pub struct WindowCounter {
    times: Vec<Instant>,
}

impl WindowCounter {
    /// Record an event at `now` if fewer than `max` happened in the last
    /// `window`; returns whether it was recorded.
    pub fn try_record(&mut self, now: Instant, window: Duration, max: usize) -> bool {
        self.times
            .retain(|&t| now.saturating_duration_since(t) < window);
        if self.times.len() >= max {
            return false;
        }
        self.times.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let rate = Rate::new(10.0, 5.0);
        let mut b = TokenBucket::new(rate, t0);
        assert_eq!((0..10).filter(|_| b.try_take(rate, t0)).count(), 5);
        // 0.5 s later: 5 more tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| b.try_take(rate, t1)).count(), 5);
        // The bucket never holds more than the burst.
        let t2 = t1 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.try_take(rate, t2)).count(), 5);
    }

    #[test]
    fn keys_are_independent_and_capped() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::new(1.0, 2.0), 2, t0);
        assert!(l.try_take(&"a", t0));
        assert!(l.try_take(&"a", t0));
        assert!(!l.try_take(&"a", t0));
        assert!(l.try_take(&"b", t0));
        // Keys beyond the cap share the overflow bucket.
        assert!(l.try_take(&"c", t0));
        assert!(l.try_take(&"d", t0));
        assert!(!l.try_take(&"e", t0));
        assert_eq!(l.len(), 2);
        l.prune(t0 + Duration::from_secs(10));
        assert!(l.is_empty());
    }

    #[test]
    fn would_allow_peeks_without_taking() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::new(1.0, 1.0), 1, t0);
        assert!(l.would_allow(&"a", t0));
        assert!(l.would_allow(&"a", t0), "peeking takes nothing");
        assert!(l.try_take(&"a", t0));
        assert!(!l.would_allow(&"a", t0));
        assert!(l.would_allow(&"a", t0 + Duration::from_secs(1)));
        // Beyond the key cap: the overflow bucket answers.
        assert!(l.try_take(&"b", t0));
        assert!(!l.would_allow(&"c", t0));
    }

    #[test]
    fn rates_outside_their_range_are_refused() {
        assert!(Rate::new(100.0, 200.0).check().is_ok());
        assert!(Rate::UNLIMITED.check().is_ok());
        for bad in [
            Rate::new(0.0, 1.0),
            Rate::new(-1.0, 1.0),
            Rate::new(f64::NAN, 1.0),
            Rate::new(2e9, 1.0),
            Rate::new(1.0, 0.5),
            Rate::new(1.0, f64::INFINITY),
            Rate::new(1.0, 1e10),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unlimited_never_refuses() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::UNLIMITED, 1, t0);
        assert!((0..1000).all(|i| l.try_take(&i, t0)));
        assert!(l.is_empty());
    }

    #[test]
    fn window_counter_caps_events_per_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(5);
        let mut c = WindowCounter::default();
        assert!(c.try_record(t0, w, 2));
        assert!(c.try_record(t0, w, 2));
        assert!(!c.try_record(t0 + Duration::from_secs(4), w, 2));
        assert!(c.try_record(t0 + Duration::from_secs(5), w, 2));
    }
}
