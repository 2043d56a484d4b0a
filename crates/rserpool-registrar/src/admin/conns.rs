//! Who may hold an admin connection (sans-IO): a cap on connections in
//! total and per source address, where a new connection first takes the
//! place of the one that has waited longest for its request headers, so
//! that slow or half-open clients can never keep a real client out; and
//! the back-off after failed `accept` calls is `crate::accept`'s.
//!
//! A connection is *waiting* from its accept until its request headers
//! are in (hyper then calls the router), *busy* from then to its end (one
//! request per connection), and *closing* once it has been told to go
//! (evicted, or its headers timed out) until its task has closed it.
//! Only waiting connections are ever evicted; closing ones count against
//! neither cap (their descriptors are bounded by the server's semaphore).

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Which cap a connection met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// The total cap (`max_connections`).
    Total,
    /// The per-address cap (`max_connections_per_address`).
    Address,
}

impl Cap {
    /// The `reason` label of the metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Cap::Total => "limit",
            Cap::Address => "address_limit",
        }
    }
}

/// A connection told to make room for a new one.
#[derive(Debug)]
pub(crate) struct Evicted<T> {
    /// Its number.
    pub id: u64,
    /// Its source address.
    pub ip: IpAddr,
    /// How to close it.
    pub handle: T,
    /// The cap that was reached.
    pub cap: Cap,
}

/// What to do with a new connection.
#[derive(Debug)]
pub(crate) enum Admission<T> {
    /// Serve it as connection `id`; when `evicted` is set, that
    /// connection must close first.
    Admit {
        /// The new connection's number.
        id: u64,
        /// The connection to close for it.
        evicted: Option<Evicted<T>>,
    },
    /// Close it at once: every connection that counts against `Cap` is
    /// busy in a handler.
    Refuse(Cap),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Busy,
    Closing,
}

#[derive(Debug)]
struct Conn<T> {
    ip: IpAddr,
    state: State,
    /// How to close it (dropped once it is closing).
    handle: Option<T>,
}

/// The open admin connections, in accept order. `T` is how the server
/// tells a connection to close.
#[derive(Debug)]
pub(crate) struct ConnTable<T> {
    max_total: usize,
    max_per_address: usize,
    next_id: u64,
    conns: BTreeMap<u64, Conn<T>>,
}

impl<T> ConnTable<T> {
    /// A table for these caps (each at least 1).
    pub(crate) fn new(max_total: usize, max_per_address: usize) -> Self {
        ConnTable {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            next_id: 0,
            conns: BTreeMap::new(),
        }
    }

    fn live(c: &Conn<T>) -> bool {
        c.state != State::Closing
    }

    /// The oldest waiting connection, of `ip` when given.
    fn oldest_waiting(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .find(|(_, c)| c.state == State::Waiting && ip.map_or(true, |ip| c.ip == ip))
            .map(|(id, _)| *id)
    }

    fn evict(&mut self, id: u64, cap: Cap) -> Option<Evicted<T>> {
        let c = self.conns.get_mut(&id)?;
        c.state = State::Closing;
        let ip = c.ip;
        c.handle.take().map(|handle| Evicted {
            id,
            ip,
            handle,
            cap,
        })
    }

    /// A new connection from `ip`, closed through `handle`.
    pub(crate) fn admit(&mut self, ip: IpAddr, handle: T) -> Admission<T> {
        let from_ip = self
            .conns
            .values()
            .filter(|c| Self::live(c) && c.ip == ip)
            .count();
        let mut evicted = None;
        if from_ip >= self.max_per_address {
            match self.oldest_waiting(Some(ip)) {
                Some(v) => evicted = self.evict(v, Cap::Address),
                None => return Admission::Refuse(Cap::Address),
            }
        }
        // Evicting one of the same address has made room in the total too.
        if evicted.is_none() && self.live_count() >= self.max_total {
            match self.oldest_waiting(None) {
                Some(v) => evicted = self.evict(v, Cap::Total),
                None => return Admission::Refuse(Cap::Total),
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Conn {
                ip,
                state: State::Waiting,
                handle: Some(handle),
            },
        );
        Admission::Admit { id, evicted }
    }

    /// Connection `id` has its request headers (hyper calls the router):
    /// it is never evicted from now on. `false` when it is already
    /// closing.
    pub(crate) fn busy(&mut self, id: u64) -> bool {
        match self.conns.get_mut(&id) {
            Some(c) if c.state == State::Waiting => {
                c.state = State::Busy;
                true
            }
            _ => false,
        }
    }

    /// Connection `id`'s header deadline passed: `true` when it was still
    /// waiting (it is closing now), `false` when it is busy or closing.
    pub(crate) fn header_timeout(&mut self, id: u64) -> bool {
        match self.conns.get_mut(&id) {
            Some(c) if c.state == State::Waiting => {
                c.state = State::Closing;
                c.handle = None;
                true
            }
            _ => false,
        }
    }

    /// Whether connection `id` is still waiting for its headers.
    pub(crate) fn is_waiting(&self, id: u64) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.state == State::Waiting)
    }

    /// Connection `id` is closed.
    pub(crate) fn remove(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    /// Connections that count against the caps (waiting or busy).
    pub(crate) fn live_count(&self) -> usize {
        self.conns.values().filter(|c| Self::live(c)).count()
    }

    /// Live connections from `ip`.
    #[cfg(test)]
    fn live_from(&self, ip: IpAddr) -> usize {
        self.conns
            .values()
            .filter(|c| Self::live(c) && c.ip == ip)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn admitted<T>(a: Admission<T>) -> (u64, Option<(u64, T, Cap)>) {
        match a {
            Admission::Admit { id, evicted } => (id, evicted.map(|e| (e.id, e.handle, e.cap))),
            Admission::Refuse(cap) => panic!("refused ({cap:?})"),
        }
    }

    #[test]
    fn a_full_address_gives_up_its_oldest_waiting_connection() {
        let mut t = ConnTable::new(64, 3);
        let ids: Vec<u64> = (0..3).map(|n| admitted(t.admit(ip(1), n)).0).collect();
        // Another address is not affected.
        assert!(admitted(t.admit(ip(2), 10)).1.is_none());
        let (new, evicted) = admitted(t.admit(ip(1), 3));
        let (victim, handle, cap) = evicted.expect("an eviction");
        assert_eq!((victim, handle, cap), (ids[0], 0, Cap::Address));
        assert_eq!(t.live_from(ip(1)), 3);
        // The victim is closing: it is not chosen again, and its task
        // removes it when it is closed.
        let (_, evicted) = admitted(t.admit(ip(1), 4));
        assert_eq!(evicted.map(|e| e.0), Some(ids[1]));
        t.remove(ids[0]);
        assert!(t.is_waiting(new));
    }

    #[test]
    fn the_total_cap_evicts_the_oldest_waiting_connection_of_any_address() {
        let mut t = ConnTable::new(3, 8);
        let a = admitted(t.admit(ip(1), ())).0;
        let b = admitted(t.admit(ip(2), ())).0;
        assert!(t.busy(a), "a is in a handler now");
        admitted(t.admit(ip(3), ()));
        let (_, evicted) = admitted(t.admit(ip(4), ()));
        let (victim, (), cap) = evicted.expect("an eviction");
        assert_eq!(
            (victim, cap),
            (b, Cap::Total),
            "a is busy, b waited longest"
        );
        assert_eq!(t.live_count(), 3);
    }

    #[test]
    fn busy_connections_are_never_evicted_so_the_new_one_is_refused() {
        let mut t = ConnTable::new(2, 1);
        let a = admitted(t.admit(ip(1), ())).0;
        assert!(t.busy(a));
        assert!(matches!(
            t.admit(ip(1), ()),
            Admission::Refuse(Cap::Address)
        ));
        let b = admitted(t.admit(ip(2), ())).0;
        assert!(t.busy(b));
        assert!(matches!(t.admit(ip(3), ()), Admission::Refuse(Cap::Total)));
        // Refusals leave nothing behind; a closed connection frees its slot.
        assert_eq!(t.live_count(), 2);
        t.remove(a);
        admitted(t.admit(ip(3), ()));
    }

    #[test]
    fn header_timeouts_close_only_waiting_connections() {
        let mut t = ConnTable::new(4, 4);
        let a = admitted(t.admit(ip(1), ())).0;
        let b = admitted(t.admit(ip(1), ())).0;
        assert!(t.busy(b));
        assert!(t.header_timeout(a));
        assert!(!t.header_timeout(a), "once");
        assert!(!t.header_timeout(b), "busy");
        assert!(!t.busy(a), "a closing connection does not become busy");
        assert_eq!(t.live_count(), 1);
    }

    #[test]
    fn the_caps_hold_under_any_mix_of_arrivals() {
        // 2000 arrivals from 7 addresses, some becoming busy, some ending.
        let (total, per) = (16, 4);
        let mut t = ConnTable::new(total, per);
        let mut open = Vec::new();
        for n in 0u32..2000 {
            let src = ip((n * 7 % 11) as u8 % 7 + 1);
            if let Admission::Admit { id, evicted } = t.admit(src, ()) {
                open.push(id);
                if let Some(e) = evicted {
                    if e.cap == Cap::Address {
                        assert_eq!(e.ip, src, "the address that is full gives up one");
                    }
                    t.remove(e.id);
                }
            }
            if n % 5 == 0 {
                if let Some(&id) = open.get(n as usize % open.len().max(1)) {
                    t.busy(id);
                }
            }
            if n % 3 == 0 && !open.is_empty() {
                t.remove(open.remove(0));
            }
            assert!(t.live_count() <= total);
            for a in 1..=7 {
                assert!(t.live_from(ip(a)) <= per);
            }
        }
    }
}
