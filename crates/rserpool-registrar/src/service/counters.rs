//! The service's own counters: what happens before and around the core
//! (accepting, admission, TLS handshakes, deadlines, slow clients),
//! shared by its tasks, and the snapshot the admin API exports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Live counters.
#[derive(Debug, Default)]
pub(crate) struct ServiceCounters {
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub refused_limit: AtomicU64,
    pub refused_per_address: AtomicU64,
    /// Closed at once: the listener does not serve the source address.
    pub refused_source: AtomicU64,
    pub refused_handshakes_per_address: AtomicU64,
    pub handshakes_evicted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub tls_handshake_timeouts: AtomicU64,
    pub tls_handshakes_superseded: AtomicU64,
    pub message_timeouts: AtomicU64,
    pub idle_closed: AtomicU64,
    pub slow_clients_closed: AtomicU64,
}

impl ServiceCounters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, handshakes_in_progress: usize) -> ServiceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServiceStats {
            connections_open: get(&self.connections_open),
            handshakes_in_progress: handshakes_in_progress as u64,
            connections_accepted: get(&self.connections_accepted),
            connections_refused_limit: get(&self.refused_limit),
            connections_refused_per_address: get(&self.refused_per_address),
            connections_refused_source: get(&self.refused_source),
            connections_refused_handshakes_per_address: get(&self.refused_handshakes_per_address),
            tls_handshakes_evicted: get(&self.handshakes_evicted),
            accept_errors: get(&self.accept_errors),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            tls_handshake_timeouts: get(&self.tls_handshake_timeouts),
            tls_handshakes_superseded: get(&self.tls_handshakes_superseded),
            message_timeouts: get(&self.message_timeouts),
            idle_closed: get(&self.idle_closed),
            slow_clients_closed: get(&self.slow_clients_closed),
        }
    }
}

/// A snapshot of the service's counters (since start, except the two
/// gauges `connections_open` and `handshakes_in_progress`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    /// TCP connections open now (including those still in their TLS
    /// handshake).
    pub connections_open: u64,
    /// TLS handshakes in progress now.
    pub handshakes_in_progress: u64,
    /// TCP connections accepted within the connection limits.
    pub connections_accepted: u64,
    /// TCP connections closed at once: the registrar had
    /// `max_connections` open.
    pub connections_refused_limit: u64,
    /// TCP connections closed at once: their source address had
    /// `max_connections_per_address` open.
    pub connections_refused_per_address: u64,
    /// Connections closed at once because their listener does not serve
    /// their source address.
    pub connections_refused_source: u64,
    /// TCP connections closed at once: their source address had
    /// `max_handshakes_per_address` handshakes in progress.
    pub connections_refused_handshakes_per_address: u64,
    /// Handshakes given up for a newer one because `max_handshakes` were
    /// in progress (the oldest goes).
    pub tls_handshakes_evicted: u64,
    /// `accept` calls that failed (out of file descriptors and the like).
    pub accept_errors: u64,
    /// TLS handshakes that failed (unknown identity, wrong key, no TLS).
    pub tls_handshake_failures: u64,
    /// TLS handshakes not completed within the handshake timeout.
    pub tls_handshake_timeouts: u64,
    /// Handshakes completed with credentials replaced meanwhile (a
    /// reload): closed, the client connects again.
    pub tls_handshakes_superseded: u64,
    /// Connections closed because a message was not complete within the
    /// message timeout of its first byte.
    pub message_timeouts: u64,
    /// Connections closed after the idle timeout.
    pub idle_closed: u64,
    /// Connections closed because they did not read their answers.
    pub slow_clients_closed: u64,
}

/// The service's limits as configured, for the metrics and the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServiceLimits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections per source address (IPv6: per /64).
    pub max_connections_per_address: usize,
    /// Open connections per authenticated identity.
    pub max_connections_per_identity: usize,
    /// TLS handshakes in progress in total.
    pub max_handshakes: usize,
    /// TLS handshakes in progress per source address.
    pub max_handshakes_per_address: usize,
    /// Largest message, bytes.
    pub max_message_size: usize,
    /// Time to complete a TLS handshake.
    #[serde(serialize_with = "millis")]
    pub handshake_timeout: Duration,
    /// Time to complete a message from its first byte.
    #[serde(serialize_with = "millis")]
    pub message_timeout: Duration,
    /// Silence after which a connection closes.
    #[serde(serialize_with = "millis")]
    pub idle_timeout: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// Counts a connection as open while it lives.
pub(crate) struct OpenGuard(Arc<ServiceCounters>);

impl OpenGuard {
    pub fn new(counters: &Arc<ServiceCounters>) -> Self {
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counters.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}
