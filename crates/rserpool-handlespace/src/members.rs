//! A pool's members by PE identifier, in identifier order: sorted leaves
//! of up to [`LEAF`] (identifier, slot) pairs under one sorted vector of
//! separators (one between each two leaves). A
//! lookup is two binary searches over contiguous `u32`s (the separators,
//! then one leaf), where a B-tree walks four or five nodes at 10,000 PEs,
//! comparing linearly in each; an insertion or removal moves at most a
//! leaf (2 KiB), and a leaf split or merge moves the separators and leaf
//! headers (28 bytes a leaf: 3.5 KiB at 32,000 PEs). A PE costs 8 bytes in
//! a full leaf; appending identifiers in increasing order fills each leaf.
//!
//! A pool of up to 16 PEs is one allocation of 128 bytes, like a B-tree
//! leaf node.

use std::ops::Bound;

use rserpool_wire::PeId;

/// The most pairs a leaf holds.
const LEAF: usize = 256;

/// What the first leaf reserves.
const FIRST: usize = 16;

/// The window that a search counts instead of halving.
const SCAN: usize = 8;

/// How many of the leading items of `items` satisfy `below` (which holds
/// for a prefix, like [`slice::partition_point`]'s predicate): halving
/// down to a window of [`SCAN`], then counting the window. A binary
/// search waits for one dependent load per step; the count's compares
/// are independent (a pool of 10 PEs is one count).
#[inline]
fn rank<T>(items: &[T], below: impl Fn(&T) -> bool) -> usize {
    let mut base = 0;
    let mut size = items.len();
    // The answer is in base..=base + size.
    while size > SCAN {
        let half = size / 2;
        let mid = base + half;
        base = if below(&items[mid]) { mid } else { base };
        size -= half;
    }
    base + items[base..base + size]
        .iter()
        .map(|x| usize::from(below(x)))
        .sum::<usize>()
}

/// Identifier -> entry slot, in identifier order.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// `seps[i]` is above every identifier of `leaves[i]` and at most the
    /// first of `leaves[i + 1]` (its first when it was split off; a
    /// removal may leave it below).
    seps: Vec<u32>,
    /// Non-empty sorted leaves (no leaf at all when there is no member).
    leaves: Vec<Vec<(PeId, u32)>>,
    len: usize,
}

/// Where a new member goes ([`Members::find`]), for
/// [`Members::insert_at`] while the members are unchanged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    leaf: usize,
    at: usize,
}

impl Members {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The leaf that holds `id` if it is a member (leaf 0 when there is
    /// no leaf).
    fn leaf_of(&self, id: PeId) -> usize {
        let k = id.get();
        rank(&self.seps, |&s| s <= k)
    }

    /// The member's slot, or where it would go.
    pub fn find(&self, id: PeId) -> Result<u32, Place> {
        let leaf = self.leaf_of(id);
        let Some(l) = self.leaves.get(leaf) else {
            return Err(Place { leaf, at: 0 });
        };
        let at = rank(l, |&(k, _)| k < id);
        match l.get(at) {
            Some(&(k, slot)) if k == id => Ok(slot),
            _ => Err(Place { leaf, at }),
        }
    }

    /// The member's slot.
    pub fn get(&self, id: PeId) -> Option<u32> {
        self.find(id).ok()
    }

    /// Insert a new member where [`Members::find`] placed it (nothing
    /// changed since).
    pub fn insert_at(&mut self, place: Place, id: PeId, slot: u32) {
        let Place { leaf, at } = place;
        self.len += 1;
        if self.leaves.is_empty() {
            let mut l = Vec::with_capacity(FIRST);
            l.push((id, slot));
            self.leaves.push(l);
            return;
        }
        let full = self.leaves[leaf].len() == LEAF;
        if !full {
            self.leaves[leaf].insert(at, (id, slot));
            return;
        }
        if at == LEAF && leaf + 1 == self.leaves.len() {
            // Appending past the last member: a new leaf, the full one
            // stays full (increasing identifiers fill every leaf).
            let mut l = Vec::with_capacity(LEAF);
            l.push((id, slot));
            self.leaves.push(l);
            self.seps.push(id.get());
            return;
        }
        let mut upper = Vec::with_capacity(LEAF);
        upper.extend(self.leaves[leaf].drain(LEAF / 2..));
        let sep = upper[0].0;
        if at <= LEAF / 2 {
            self.leaves[leaf].insert(at, (id, slot));
        } else {
            upper.insert(at - LEAF / 2, (id, slot));
        }
        self.seps.insert(leaf, sep.get());
        self.leaves.insert(leaf + 1, upper);
    }

    /// Remove a member; returns its slot.
    pub fn remove(&mut self, id: PeId) -> Option<u32> {
        let leaf = self.leaf_of(id);
        let l = self.leaves.get_mut(leaf)?;
        let at = l.binary_search_by_key(&id, |&(k, _)| k).ok()?;
        let (_, slot) = l.remove(at);
        self.len -= 1;
        // Merge a leaf into its successor, or its predecessor into it,
        // when they fit half a leaf: leaves stay a quarter full on
        // average, whatever the removals.
        let n = l.len();
        if n == 0 {
            self.leaves.remove(leaf);
            if !self.seps.is_empty() {
                self.seps.remove(leaf.saturating_sub(1));
            }
            return Some(slot);
        }
        if let Some(next) = self.leaves.get(leaf + 1) {
            if n + next.len() <= LEAF / 2 {
                self.merge(leaf);
                return Some(slot);
            }
        }
        if leaf > 0 && n + self.leaves[leaf - 1].len() <= LEAF / 2 {
            self.merge(leaf - 1);
        }
        Some(slot)
    }

    /// Move `leaves[i + 1]` to the end of `leaves[i]`.
    fn merge(&mut self, i: usize) {
        let next = self.leaves.remove(i + 1);
        self.seps.remove(i);
        self.leaves[i].extend(next);
    }

    /// The leaf and position of the first member at or after `id` (the
    /// end of the last leaf when there is none).
    pub fn lower_bound(&self, id: PeId) -> (usize, usize) {
        let leaf = self.leaf_of(id);
        let at = self
            .leaves
            .get(leaf)
            .map_or(0, |l| rank(l, |&(k, _)| k < id));
        (leaf, at)
    }

    /// The sorted leaves, for a walk from a [`Members::lower_bound`].
    pub fn leaves(&self) -> &[Vec<(PeId, u32)>] {
        &self.leaves
    }

    /// Members in identifier order from `lower` on.
    pub fn range(&self, lower: Bound<PeId>) -> impl Iterator<Item = (PeId, u32)> + '_ {
        let (leaf, at) = match lower {
            Bound::Unbounded => (0, 0),
            Bound::Included(id) | Bound::Excluded(id) => {
                let leaf = self.leaf_of(id);
                let at = self.leaves.get(leaf).map_or(0, |l| match lower {
                    Bound::Excluded(_) => rank(l, |&(k, _)| k <= id),
                    _ => rank(l, |&(k, _)| k < id),
                });
                (leaf, at)
            }
        };
        let first: &[(PeId, u32)] = self.leaves.get(leaf).map_or(&[], |l| &l[at..]);
        let rest = self.leaves.get(leaf + 1..).unwrap_or(&[]);
        first.iter().chain(rest.iter().flatten()).copied()
    }

    /// All members in identifier order.
    pub fn iter(&self) -> impl Iterator<Item = (PeId, u32)> + '_ {
        self.leaves.iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn check(m: &Members, model: &BTreeMap<PeId, u32>) {
        assert_eq!(m.len(), model.len());
        let all: Vec<(PeId, u32)> = m.iter().collect();
        let want: Vec<(PeId, u32)> = model.iter().map(|(&k, &v)| (k, v)).collect();
        assert_eq!(all, want);
        assert!(m.leaves.iter().all(|l| !l.is_empty() && l.len() <= LEAF));
        assert_eq!(m.seps.len() + 1, m.leaves.len().max(1));
        for (i, &s) in m.seps.iter().enumerate() {
            assert!(m.leaves[i].iter().all(|&(k, _)| k.get() < s));
            assert!(m.leaves[i + 1][0].0.get() >= s);
        }
    }

    proptest! {
        #[test]
        fn behaves_like_an_ordered_map(
            ops in proptest::collection::vec((any::<bool>(), 0u32..2000, 0u32..3000), 1..3000)
        ) {
            let mut m = Members::default();
            let mut model = BTreeMap::new();
            for (i, (add, id, probe)) in ops.into_iter().enumerate() {
                let id = PeId::new(id);
                if add {
                    match m.find(id) {
                        Ok(slot) => prop_assert_eq!(model.get(&id), Some(&slot)),
                        Err(place) => {
                            prop_assert!(!model.contains_key(&id));
                            m.insert_at(place, id, i as u32);
                            model.insert(id, i as u32);
                        }
                    }
                } else {
                    prop_assert_eq!(m.remove(id), model.remove(&id));
                }
                let p = PeId::new(probe);
                prop_assert_eq!(m.get(p), model.get(&p).copied());
                let from: Vec<_> = m.range(Bound::Included(p)).take(3).collect();
                let want: Vec<_> = model.range(p..).take(3).map(|(&k, &v)| (k, v)).collect();
                prop_assert_eq!(from, want);
                let after: Vec<_> = m.range(Bound::Excluded(p)).take(3).collect();
                let want: Vec<_> = model
                    .range((Bound::Excluded(p), Bound::Unbounded))
                    .take(3)
                    .map(|(&k, &v)| (k, v))
                    .collect();
                prop_assert_eq!(after, want);
            }
            check(&m, &model);
        }
    }

    #[test]
    fn increasing_identifiers_fill_the_leaves_and_removals_merge_them() {
        let mut m = Members::default();
        let mut model = BTreeMap::new();
        for i in 0..10 * LEAF as u32 {
            let id = PeId::new(i * 3);
            let place = m.find(id).expect_err("new");
            m.insert_at(place, id, i);
            model.insert(id, i);
        }
        assert_eq!(m.leaves.len(), 10);
        check(&m, &model);
        for i in (0..10 * LEAF as u32).filter(|i| i % 5 != 0) {
            let id = PeId::new(i * 3);
            assert_eq!(m.remove(id), model.remove(&id));
        }
        check(&m, &model);
        assert!(m.leaves.len() <= 5, "{} leaves", m.leaves.len());
        for i in 0..10 * LEAF as u32 {
            m.remove(PeId::new(i * 3));
        }
        assert!(m.is_empty());
        assert!(m.leaves.is_empty() && m.seps.is_empty());
    }
}
