//! The list of registrars a client hunts over (RFC 5352 section 3.6:
//! "each PU and PE manages a list of transport addresses of ENRP
//! servers"), sans-IO: the configured (static) entries first, always
//! kept and in their order, then at most `max_learned` entries learned
//! from ASAP_SERVER_ANNOUNCE, each with its T7-ENRPoutdate expiry.
//!
//! What an announcement can do to the list is bounded (RFC 5355 2.12:
//! discovery may be spoofed):
//!
//! * a learned entry is only an address to try; the connection to it is
//!   authenticated like any other (TLS decides, DESIGN section 3);
//! * a static entry is never removed, replaced or reordered, and an
//!   announced address equal to a static one adds nothing;
//! * learned entries are at most `max_learned`; when the cap is reached a
//!   new address replaces the learned entry that was announced least
//!   recently (never a static one);
//! * an entry not announced again within the expiry is removed (T7).
//!
//! Indices are list positions: static entries `0..static_len()`, learned
//! ones after them in the order they were first learned. Removing a
//! learned entry shifts the ones after it, and the hunt is told.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_wire::ServerId;

/// Where an entry of the list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Configured: always kept.
    Static,
    /// Learned from an ASAP_SERVER_ANNOUNCE of this registrar; dropped at
    /// `expires` unless announced again.
    Learned {
        /// The server identifier it announced.
        server_id: ServerId,
        /// When it expires (T7-ENRPoutdate after the last announcement).
        expires: Instant,
    },
}

/// One entry of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its ASAP transport address.
    pub address: SocketAddr,
    /// Configured or learned.
    pub origin: Origin,
}

/// What a call did to the positions of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// An entry was appended at the end.
    Appended,
    /// The entry at this position was removed; later ones moved down.
    Removed(usize),
}

/// What learning one address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A new entry.
    Added,
    /// A new entry, in place of the least recently announced one.
    Replaced,
    /// An entry learned before: its expiry restarts.
    Refreshed,
    /// A configured registrar: nothing to learn.
    Static,
}

/// The registrar list.
#[derive(Debug, Clone)]
pub(crate) struct RegistrarList {
    statics: Vec<SocketAddr>,
    /// Learned entries in the order they were first learned, with their
    /// server identifier and expiry.
    learned: Vec<(SocketAddr, ServerId, Instant)>,
    max_learned: usize,
}

impl RegistrarList {
    /// A list of these configured registrars, learning none.
    pub(crate) fn new(statics: Vec<SocketAddr>) -> Self {
        RegistrarList {
            statics,
            learned: Vec::new(),
            max_learned: 0,
        }
    }

    /// Allow up to `max` learned entries (0: learn none). Lowering the
    /// cap removes the least recently announced entries beyond it.
    pub(crate) fn set_max_learned(&mut self, max: usize, changes: &mut Vec<Change>) {
        self.max_learned = max;
        while self.learned.len() > max {
            let i = self.stalest();
            self.remove_learned(i, changes);
        }
    }

    /// Whether `address` is a configured entry.
    pub(crate) fn is_static(&self, address: SocketAddr) -> bool {
        self.statics.contains(&address)
    }

    /// Whether entries may be learned.
    pub(crate) fn is_learning(&self) -> bool {
        self.max_learned > 0
    }

    /// How many entries there are.
    pub(crate) fn len(&self) -> usize {
        self.statics.len() + self.learned.len()
    }

    /// How many of them are configured.
    #[cfg(test)]
    pub(crate) fn static_len(&self) -> usize {
        self.statics.len()
    }

    /// How many of them are learned.
    pub(crate) fn learned_len(&self) -> usize {
        self.learned.len()
    }

    /// The address at position `i`.
    pub(crate) fn address(&self, i: usize) -> Option<SocketAddr> {
        match i.checked_sub(self.statics.len()) {
            None => self.statics.get(i).copied(),
            Some(j) => self.learned.get(j).map(|l| l.0),
        }
    }

    /// Every entry, in list order.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let statics = self.statics.iter().map(|&address| Entry {
            address,
            origin: Origin::Static,
        });
        let learned = self
            .learned
            .iter()
            .map(|&(address, server_id, expires)| Entry {
                address,
                origin: Origin::Learned { server_id, expires },
            });
        statics.chain(learned).collect()
    }

    /// An announcement (RFC 5352 3.6) named `address` for `server_id`:
    /// insert it with its expiry, or restart the expiry of the entry it
    /// is ("For all already-known, included transport addresses, the
    /// T7-ENRPoutdate timer MUST be restarted"). `None` when learning is
    /// off (a cap of 0).
    pub(crate) fn learn(
        &mut self,
        address: SocketAddr,
        server_id: ServerId,
        expires: Instant,
        changes: &mut Vec<Change>,
    ) -> Option<Learned> {
        if self.statics.contains(&address) {
            return Some(Learned::Static);
        }
        if let Some(l) = self.learned.iter_mut().find(|l| l.0 == address) {
            l.1 = server_id;
            l.2 = l.2.max(expires);
            return Some(Learned::Refreshed);
        }
        if self.max_learned == 0 {
            return None;
        }
        let outcome = if self.learned.len() >= self.max_learned {
            let i = self.stalest();
            self.remove_learned(i, changes);
            Learned::Replaced
        } else {
            Learned::Added
        };
        self.learned.push((address, server_id, expires));
        changes.push(Change::Appended);
        Some(outcome)
    }

    /// Remove the learned entries that expired by `now` (T7); returns how
    /// many.
    pub(crate) fn expire(&mut self, now: Instant, changes: &mut Vec<Change>) -> usize {
        let mut removed = 0;
        let mut j = 0;
        while j < self.learned.len() {
            if self.learned[j].2 <= now {
                self.remove_learned(j, changes);
                removed += 1;
            } else {
                j += 1;
            }
        }
        removed
    }

    /// The learned entry announced least recently (the earliest expiry;
    /// the first learned among equals).
    fn stalest(&self) -> usize {
        let mut best = 0;
        for (j, l) in self.learned.iter().enumerate() {
            if l.2 < self.learned[best].2 {
                best = j;
            }
        }
        best
    }

    fn remove_learned(&mut self, j: usize, changes: &mut Vec<Change>) {
        self.learned.remove(j);
        changes.push(Change::Removed(self.statics.len() + j));
    }
}

/// How long an announced address is kept without being announced again:
/// T7-ENRPoutdate (RFC 5352 section 7.1: 5 s).
pub const T7_ENRP_OUTDATE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 3864))
    }

    #[test]
    fn static_entries_stay_first_and_learned_ones_are_capped() {
        let t0 = Instant::now();
        let mut l = RegistrarList::new(vec![a(1), a(2)]);
        let mut ch = Vec::new();
        assert_eq!(l.learn(a(3), ServerId::new(3), t0, &mut ch), None, "off");
        l.set_max_learned(2, &mut ch);
        let exp = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            l.learn(a(1), ServerId::new(1), exp(5), &mut ch),
            Some(Learned::Static)
        );
        assert_eq!(
            l.learn(a(3), ServerId::new(3), exp(5), &mut ch),
            Some(Learned::Added)
        );
        assert_eq!(
            l.learn(a(4), ServerId::new(4), exp(6), &mut ch),
            Some(Learned::Added)
        );
        assert_eq!(
            l.learn(a(3), ServerId::new(3), exp(7), &mut ch),
            Some(Learned::Refreshed)
        );
        // Full: the least recently announced (4) goes, never a static.
        assert_eq!(
            l.learn(a(5), ServerId::new(5), exp(8), &mut ch),
            Some(Learned::Replaced)
        );
        let addrs: Vec<_> = l.entries().iter().map(|e| e.address).collect();
        assert_eq!(addrs, vec![a(1), a(2), a(3), a(5)]);
        assert_eq!(
            ch,
            vec![
                Change::Appended,
                Change::Appended,
                Change::Removed(3),
                Change::Appended
            ]
        );
        ch.clear();
        // T7: 3 expires at 7 s, 5 at 8 s.
        assert_eq!(l.expire(exp(7), &mut ch), 1);
        assert_eq!(ch, vec![Change::Removed(2)]);
        assert_eq!(l.address(2), Some(a(5)));
        assert_eq!(l.expire(exp(9), &mut ch), 1);
        assert_eq!(l.len(), 2);
        assert_eq!(l.static_len(), 2);
        assert_eq!(l.address(0), Some(a(1)));
    }
}
