//! Secondary indices (PEs by owner, by connection, by identity) as
//! intrusive doubly linked lists: each entry carries a (prev, next) link
//! per index and the index maps a key to its first entry. Adding and
//! removing a PE is O(1), a PE costs 8 bytes per index, and listing a key's
//! PEs walks only those PEs. Each key also counts its PEs (O(1) to read).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use rustc_hash::FxBuildHasher;

use crate::entry::Entries;

/// No entry (end of a list).
const NONE: u32 = u32::MAX;

/// Which of an entry's links an index uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Owner = 0,
    Connection = 1,
    Identity = 2,
}

/// An entry's place in one index's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    prev: u32,
    next: u32,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            prev: NONE,
            next: NONE,
        }
    }
}

/// The links of an entry, one per [`Which`].
pub(crate) type Links = [Link; 3];

/// A key's list: its first entry slot and its length.
#[derive(Debug, Clone, Copy)]
struct Head {
    first: u32,
    len: u32,
}

/// Key -> the key's list, hashed by `S` (a fast unseeded hash: the
/// handlespace stays deterministic).
pub(crate) struct ListIndex<K, S = FxBuildHasher> {
    which: Which,
    heads: HashMap<K, Head, S>,
}

impl<K, S> std::fmt::Debug for ListIndex<K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListIndex")
            .field("which", &self.which)
            .field("keys", &self.heads.len())
            .finish()
    }
}

impl<K: Hash + Eq, S: BuildHasher + Default> ListIndex<K, S> {
    pub fn new(which: Which) -> Self {
        ListIndex {
            which,
            heads: HashMap::default(),
        }
    }

    fn link(which: Which, entries: &mut Entries, slot: u32) -> &mut Link {
        &mut entries.get_mut(slot).links[which as usize]
    }

    /// Put `slot` at the front of `key`'s list.
    pub fn insert(&mut self, key: K, slot: u32, entries: &mut Entries) {
        let head = self.heads.entry(key).or_insert(Head {
            first: NONE,
            len: 0,
        });
        head.len += 1;
        let old = std::mem::replace(&mut head.first, slot);
        if old != NONE {
            Self::link(self.which, entries, old).prev = slot;
        }
        *Self::link(self.which, entries, slot) = Link {
            prev: NONE,
            next: old,
        };
    }

    /// Take `slot` out of `key`'s list (it must be in it).
    pub fn remove(&mut self, key: &K, slot: u32, entries: &mut Entries) {
        let Link { prev, next } = std::mem::take(Self::link(self.which, entries, slot));
        if next != NONE {
            Self::link(self.which, entries, next).prev = prev;
        }
        if prev != NONE {
            Self::link(self.which, entries, prev).next = next;
        }
        let Some(h) = self.heads.get_mut(key) else {
            return;
        };
        h.len = h.len.saturating_sub(1);
        if h.len == 0 {
            self.heads.remove(key);
        } else if prev == NONE {
            h.first = next;
        }
    }

    /// The slots in `key`'s list, most recently added first.
    pub fn slots<'a>(&self, key: &K, entries: &'a Entries) -> impl Iterator<Item = u32> + 'a {
        let which = self.which as usize;
        let mut at = self.heads.get(key).map_or(NONE, |h| h.first);
        std::iter::from_fn(move || {
            let slot = (at != NONE).then_some(at)?;
            at = entries.get(slot).links[which].next;
            Some(slot)
        })
    }

    /// The number of slots in `key`'s list.
    pub fn len(&self, key: &K) -> usize {
        self.heads.get(key).map_or(0, |h| h.len as usize)
    }

    /// Number of keys with at least one entry.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.heads.len()
    }
}
