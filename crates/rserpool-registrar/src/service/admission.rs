//! Admission of new TCP connections (DESIGN section 4, RFC 5355 2.1):
//! caps on open connections in total and per source address, and on TLS
//! handshakes in progress per source address and in total. One host can
//! hold at most its share; when the handshake slots are all taken, the
//! oldest handshake in progress is evicted for the new one, so stalled
//! handshakes (which cost an attacker nothing) cannot keep others out:
//! a real handshake finishes in milliseconds and is rarely the oldest.
//!
//! "One source address" is an IPv4 address or an IPv6 /64
//! ([`crate::client::source_prefix`]). Memory is bounded: a source is
//! remembered only while it has a connection open.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::client::source_prefix;

/// The caps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections in total.
    pub connections: usize,
    /// Open connections per source address.
    pub per_address: usize,
    /// Handshakes in progress in total.
    pub handshakes: usize,
    /// Handshakes in progress per source address.
    pub handshakes_per_address: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The registrar has its most connections open.
    Total,
    /// The source address has its most connections open.
    PerAddress,
    /// The source address has its most handshakes in progress.
    HandshakesPerAddress,
}

impl Refused {
    /// What the log says.
    pub fn describe(self) -> &'static str {
        match self {
            Refused::Total => "connection refused (connection limit reached)",
            Refused::PerAddress => "connection refused (per-address connection limit)",
            Refused::HandshakesPerAddress => {
                "connection refused (per-address limit of handshakes in progress)"
            }
        }
    }
}

#[derive(Debug, Default)]
struct Source {
    connections: usize,
    handshakes: usize,
}

#[derive(Debug, Default)]
struct State {
    connections: usize,
    by_source: FxHashMap<IpAddr, Source>,
    /// Handshakes in progress, oldest first: source and eviction signal.
    handshakes: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    next: u64,
}

impl State {
    fn source(&mut self, key: IpAddr) -> &mut Source {
        self.by_source.entry(key).or_default()
    }

    fn forget_if_idle(&mut self, key: IpAddr) {
        if let Some(s) = self.by_source.get(&key) {
            if s.connections == 0 && s.handshakes == 0 {
                self.by_source.remove(&key);
            }
        }
    }
}

/// The admission state of one service.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    state: Mutex<State>,
}

/// A connection slot: held while the connection is open.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    source: IpAddr,
}

/// A handshake slot: held while the handshake runs. `evicted` fires
/// when a newer handshake took the slot.
#[derive(Debug)]
pub(crate) struct Handshake {
    admission: Arc<Admission>,
    source: IpAddr,
    seq: u64,
    /// Resolves when the handshake must give up its slot.
    pub evicted: oneshot::Receiver<()>,
}

/// A new connection's slots; `evicted_one` says whether an older
/// handshake was evicted to make room.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub slot: Slot,
    pub handshake: Handshake,
    pub evicted_one: bool,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts, not broken state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handshakes in progress now.
    pub fn handshakes_in_progress(&self) -> usize {
        self.lock().handshakes.len()
    }

    /// Admit a connection from `ip`, or say why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let key = source_prefix(ip);
        let l = self.limits;
        let mut st = self.lock();
        if st.connections >= l.connections {
            return Err(Refused::Total);
        }
        let s = st.by_source.get(&key);
        if s.is_some_and(|s| s.connections >= l.per_address) {
            return Err(Refused::PerAddress);
        }
        if s.is_some_and(|s| s.handshakes >= l.handshakes_per_address) {
            return Err(Refused::HandshakesPerAddress);
        }
        let mut evicted_one = false;
        if st.handshakes.len() >= l.handshakes {
            if let Some((_, (old, signal))) = st.handshakes.pop_first() {
                st.source(old).handshakes -= 1;
                st.forget_if_idle(old);
                let _ = signal.send(());
                evicted_one = true;
            }
        }
        let seq = st.next;
        st.next += 1;
        let (tx, evicted) = oneshot::channel();
        st.handshakes.insert(seq, (key, tx));
        st.connections += 1;
        let src = st.source(key);
        src.connections += 1;
        src.handshakes += 1;
        Ok(Admitted {
            slot: Slot {
                admission: self.clone(),
                source: key,
            },
            handshake: Handshake {
                admission: self.clone(),
                source: key,
                seq,
                evicted,
            },
            evicted_one,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.admission.lock();
        st.connections -= 1;
        st.source(self.source).connections -= 1;
        st.forget_if_idle(self.source);
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut st = self.admission.lock();
        // Gone already if it was evicted.
        if st.handshakes.remove(&self.seq).is_some() {
            st.source(self.source).handshakes -= 1;
            st.forget_if_idle(self.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admission(
        connections: usize,
        per_address: usize,
        hs: usize,
        hs_per: usize,
    ) -> Arc<Admission> {
        Admission::new(Limits {
            connections,
            per_address,
            handshakes: hs,
            handshakes_per_address: hs_per,
        })
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let a = admission(100, 10, 100, 100);
        let held: Vec<Admitted> = (0..10).map(|_| a.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(a.admit(ip("10.0.0.1")).unwrap_err(), Refused::PerAddress);
        let other = a.admit(ip("10.0.0.2")).unwrap();
        // Handshakes done (their guards dropped): the connections count.
        let slots: Vec<Slot> = held.into_iter().map(|h| h.slot).collect();
        assert_eq!(a.handshakes_in_progress(), 1);
        assert_eq!(a.admit(ip("10.0.0.1")).unwrap_err(), Refused::PerAddress);
        drop(slots);
        drop(other);
        assert!(a.lock().by_source.is_empty(), "memory comes back");
        assert_eq!(a.lock().connections, 0);
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_cap() {
        let a = admission(100, 2, 100, 100);
        let _x = a.admit(ip("2001:db8::1")).unwrap();
        let _y = a.admit(ip("2001:db8::2:3")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8::ffff")).unwrap_err(),
            Refused::PerAddress
        );
        assert!(a.admit(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn handshakes_per_address_and_the_total() {
        let a = admission(100, 100, 100, 3);
        let held: Vec<Admitted> = (0..3).map(|_| a.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(
            a.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::HandshakesPerAddress
        );
        // One handshake completes: room for another.
        let mut held = held.into_iter();
        let first = held.next().unwrap();
        let _slot = first.slot;
        drop(first.handshake);
        assert!(a.admit(ip("10.0.0.1")).is_ok());
        let b = admission(2, 100, 100, 100);
        let _first = b.admit(ip("10.0.0.1")).unwrap();
        let _second = b.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(b.admit(ip("10.0.0.3")).unwrap_err(), Refused::Total);
    }

    #[test]
    fn a_full_handshake_table_evicts_the_oldest() {
        let a = admission(100, 100, 2, 100);
        let mut old = a.admit(ip("10.0.0.1")).unwrap();
        let _mid = a.admit(ip("10.0.0.2")).unwrap();
        let new = a.admit(ip("10.0.0.3")).unwrap();
        assert!(new.evicted_one);
        assert_eq!(old.handshake.evicted.try_recv(), Ok(()));
        assert_eq!(a.handshakes_in_progress(), 2);
        // The evicted one's guard does not count twice.
        drop(old);
        assert_eq!(a.handshakes_in_progress(), 2);
        assert_eq!(a.lock().connections, 2);
        assert!(!a.lock().by_source.contains_key(&ip("10.0.0.1")));
    }
}
