//! Bounded logging of what an attacker can repeat at will: refused
//! connections, failed handshakes, refused requests, malformed messages,
//! failed admin logins. Each kind of warning is written at most once per
//! source and interval, and at most [`LogLimiter::MAX_LINES`] times per
//! interval over all sources; what is held back is written at the end of
//! the interval as one summary line per kind, for example
//! `connection refused (per-address limit): 406383 more in the last 10s,
//! from 127.0.0.1 ×406380, 10.0.0.7 ×3`. The counters (metrics) keep the
//! exact figures; this only bounds the log (DEVELOPERS: "summarise repeated
//! log lines").
//!
//! [`LogLimiter`] is sans-IO (time is passed in); [`SummarisedLog`] is the
//! shared, locked form the service's tasks use, and [`run_flusher`] the
//! task that writes the summaries.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

/// Who caused a warning: what "at most once per source" counts by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogSource {
    /// A source address.
    Address(IpAddr),
    /// An authenticated identity (or the identity key of an anonymous one).
    Identity(Arc<str>),
    /// No particular source (accept errors and the like).
    Global,
}

impl LogSource {
    /// The source of what `address` sent: its source prefix (an IPv4
    /// address or an IPv6 /64), as every per-address limit counts it.
    pub fn of(address: IpAddr) -> Self {
        LogSource::Address(crate::client::source_prefix(address))
    }
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::Address(a) => write!(f, "{a}"),
            LogSource::Identity(i) => f.write_str(i),
            LogSource::Global => f.write_str("-"),
        }
    }
}

/// One kind's state in the current interval.
#[derive(Debug, Default)]
struct Window {
    /// Sources that had their line written in this interval.
    logged: Vec<LogSource>,
    /// Occurrences held back, by source (at most `MAX_SOURCES` sources).
    held: FxHashMap<LogSource, u64>,
    /// Occurrences held back from sources beyond `MAX_SOURCES` (not
    /// told apart).
    held_elsewhere: u64,
}

impl Window {
    fn held_total(&self) -> u64 {
        self.held.values().sum::<u64>() + self.held_elsewhere
    }
}

/// The summary of what one kind of warning held back in an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The kind of warning.
    pub kind: &'static str,
    /// Occurrences held back.
    pub held: u64,
    /// The interval.
    pub interval: Duration,
    /// The sources with the most held-back occurrences, most first (at
    /// most [`LogLimiter::MAX_NAMED`]).
    pub top: Vec<(LogSource, u64)>,
    /// Occurrences from the sources not named in `top`.
    pub from_others: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} more in the last {}",
            self.kind,
            self.held,
            humanize(self.interval)
        )?;
        let mut sep = ", from ";
        for (source, n) in &self.top {
            write!(f, "{sep}{source} ×{n}")?;
            sep = ", ";
        }
        if self.from_others > 0 {
            write!(f, "{sep}others ×{}", self.from_others)?;
        }
        Ok(())
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Decides which warnings are written and sums up the others.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    window_end: Instant,
    kinds: BTreeMap<&'static str, Window>,
}

impl LogLimiter {
    /// Lines one kind writes per interval over all sources.
    pub const MAX_LINES: usize = 10;
    /// Sources one kind tells apart per interval (memory bound).
    pub const MAX_SOURCES: usize = 1024;
    /// Sources named in a summary.
    pub const MAX_NAMED: usize = 5;

    /// Intervals of `interval` (at least 1 ms) starting at `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        LogLimiter {
            interval,
            window_end: now + interval,
            kinds: BTreeMap::new(),
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// An occurrence of `kind` from `source`: `true` if it is to
    /// be written now, `false` if it is held back for the summary. Call
    /// [`Self::flush`] first when the interval may have ended.
    pub fn note(&mut self, kind: &'static str, source: LogSource) -> bool {
        let w = self.kinds.entry(kind).or_default();
        if w.logged.len() < Self::MAX_LINES && !w.logged.contains(&source) {
            w.logged.push(source);
            return true;
        }
        if let Some(n) = w.held.get_mut(&source) {
            *n += 1;
        } else if w.held.len() < Self::MAX_SOURCES {
            w.held.insert(source, 1);
        } else {
            w.held_elsewhere += 1;
        }
        false
    }

    /// When the current interval ends.
    pub fn next_flush(&self) -> Instant {
        self.window_end
    }

    /// End the interval if it is over: the summaries of what was held
    /// back, in kind order, and a fresh interval. Nothing before the end.
    pub fn flush(&mut self, now: Instant) -> Vec<Summary> {
        if now < self.window_end {
            return Vec::new();
        }
        let kinds = std::mem::take(&mut self.kinds);
        // Intervals with nothing in them are skipped, not summarised.
        let passed = now.saturating_duration_since(self.window_end).as_nanos()
            / self.interval.as_nanos().max(1);
        self.window_end += self.interval * (passed as u32).saturating_add(1);
        kinds
            .into_iter()
            .filter_map(|(kind, w)| {
                let held = w.held_total();
                if held == 0 {
                    return None;
                }
                let mut by_count: Vec<(LogSource, u64)> = w.held.into_iter().collect();
                // Most first; ties in source order, so the line is
                // the same for the same events.
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let named: Vec<_> = by_count.iter().take(Self::MAX_NAMED).cloned().collect();
                let shown: u64 = named.iter().map(|(_, n)| n).sum();
                Some(Summary {
                    kind,
                    held,
                    interval: self.interval,
                    top: named,
                    from_others: held - shown,
                })
            })
            .collect()
    }
}

/// A [`LogLimiter`] shared by a service's tasks.
#[derive(Debug)]
pub struct SummarisedLog {
    limiter: Mutex<LogLimiter>,
}

impl SummarisedLog {
    /// A shared limiter with intervals of `interval`.
    pub fn new(interval: Duration) -> Arc<Self> {
        Arc::new(SummarisedLog {
            limiter: Mutex::new(LogLimiter::new(interval, Instant::now())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogLimiter> {
        // A panic while holding the lock leaves counts, not broken state.
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `write` (which writes the line) unless this occurrence of
    /// `kind` from `source` is held back for the summary.
    pub fn write(&self, kind: &'static str, source: LogSource, write: impl FnOnce()) {
        let now = Instant::now();
        let allowed = {
            let mut l = self.lock();
            // Summaries due are written by the flusher; here the interval
            // only has to be current.
            let summaries = l.flush(now);
            let allowed = l.note(kind, source);
            drop(l);
            summaries.iter().for_each(write_summary);
            allowed
        };
        if allowed {
            write();
        }
    }

    /// Write the summaries of intervals that ended; returns when the next
    /// one ends.
    pub fn flush(&self) -> Instant {
        let (summaries, next) = {
            let mut l = self.lock();
            let s = l.flush(Instant::now());
            (s, l.next_flush())
        };
        summaries.iter().for_each(write_summary);
        next
    }
}

fn write_summary(s: &Summary) {
    tracing::warn!(kind = s.kind, held = s.held, "{s}");
}

/// Write `log`'s summaries at the end of each interval, until dropped
/// (abort the task).
#[cfg(feature = "service")]
pub async fn run_flusher(log: Arc<SummarisedLog>) {
    loop {
        let next = log.flush();
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> LogSource {
        LogSource::Address(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_flood_from_one_source_writes_one_line_and_one_summary() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10), t0);
        let written = (0..406_394)
            .filter(|_| l.note("connection refused", addr(1)))
            .count();
        assert_eq!(written, 1);
        assert!(l.flush(t0 + Duration::from_secs(9)).is_empty(), "not yet");
        let s = l.flush(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].held, 406_393);
        assert_eq!(
            s[0].to_string(),
            "connection refused: 406393 more in the last 10s, from 10.0.0.1 ×406393"
        );
        // A new interval: the source gets its line again.
        assert!(l.note("connection refused", addr(1)));
    }

    #[test]
    fn many_sources_write_at_most_max_lines_and_memory_is_bounded() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10), t0);
        let mut written = 0;
        for i in 0..100_000u32 {
            let src = LogSource::Address(IpAddr::from(i.to_be_bytes()));
            written += usize::from(l.note("handshake failed", src));
        }
        assert_eq!(written, LogLimiter::MAX_LINES);
        let w = &l.kinds["handshake failed"];
        assert_eq!(w.held.len(), LogLimiter::MAX_SOURCES);
        let s = l.flush(t0 + Duration::from_secs(10));
        assert_eq!(s[0].held, 100_000 - LogLimiter::MAX_LINES as u64);
        assert_eq!(s[0].top.len(), LogLimiter::MAX_NAMED);
        assert_eq!(
            s[0].held,
            s[0].top.iter().map(|(_, n)| n).sum::<u64>() + s[0].from_others
        );
    }

    #[test]
    fn kinds_are_limited_apart_and_summaries_name_the_biggest_sources() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(1), t0);
        assert!(l.note("a", addr(1)));
        assert!(l.note("b", addr(1)));
        for (src, n) in [(1, 3), (2, 1), (3, 7)] {
            l.note("a", addr(src)); // the first of 2 and 3 is written
            for _ in 0..n {
                l.note("a", addr(src));
            }
        }
        let s = l.flush(t0 + Duration::from_millis(1500));
        assert_eq!(s.len(), 1, "b held nothing back");
        assert_eq!(
            s[0].to_string(),
            "a: 12 more in the last 1s, from 10.0.0.3 ×7, 10.0.0.1 ×4, 10.0.0.2 ×1"
        );
        // Quiet intervals are skipped: the next one ends within an interval.
        let next = l.next_flush();
        assert!(next > t0 + Duration::from_millis(1500));
        assert!(next <= t0 + Duration::from_millis(2500));
        let far = t0 + Duration::from_secs(100);
        assert!(l.flush(far).is_empty());
        assert!(l.next_flush() > far && l.next_flush() <= far + Duration::from_secs(1));
    }
}
