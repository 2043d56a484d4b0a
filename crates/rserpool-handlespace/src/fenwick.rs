//! A Fenwick (binary indexed) tree of 64-bit weights over reusable slots:
//! O(log n) weight updates and O(log n) weighted random picks, the engine
//! of every random selection policy. A small tree (up to 32 slots) also
//! keeps its prefix sums, updated in O(32), and picks by counting them.

/// Weights by slot, with prefix sums.
#[derive(Debug, Clone, Default)]
pub struct Fenwick {
    /// 1-based Fenwick array; `tree[0]` unused.
    tree: Vec<u64>,
    /// Plain weights by slot (0-based).
    weights: Vec<u64>,
    /// Slots freed for reuse.
    free: Vec<u32>,
    total: u64,
    /// While the capacity is at most [`SMALL`]: the inclusive prefix sums
    /// of the weights (`prefix[i]` is the sum of slots `0..=i`), so that
    /// a pick counts the sums at or below its target instead of
    /// descending the tree (empty otherwise).
    prefix: Vec<u64>,
    /// Slots from here on were never handed out (their weight is 0): a
    /// count stops here.
    used: usize,
}

/// The capacity up to which picks count prefix sums: independent
/// compares instead of a chain of dependent loads (a 10-PE pool's four
/// levels took longer than sixteen compares).
const SMALL: usize = 32;

impl Fenwick {
    /// Store `weight` in a free slot and return the slot.
    pub fn insert(&mut self, weight: u64) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = self.weights.len() as u32;
                self.grow();
                s
            }
        };
        let _ = self.set(slot, weight);
        self.used = self.used.max(slot as usize + 1);
        slot
    }

    /// Release a slot (its weight becomes 0).
    pub fn remove(&mut self, slot: u32) {
        let _ = self.set(slot, 0);
        self.free.push(slot);
    }

    /// Double the capacity (or make room for one), rebuilding the tree in O(n).
    fn grow(&mut self) {
        let n = self.weights.len();
        let cap = (n * 2).max(8);
        self.weights.resize(cap, 0);
        // Slots n+1..cap are free; hand them out in ascending order.
        self.free.extend((n as u32 + 1..cap as u32).rev());
        self.tree = vec![0; cap + 1];
        self.prefix.clear();
        if cap <= SMALL {
            let mut sum = 0;
            self.prefix.extend(self.weights.iter().map(|&w| {
                sum += w;
                sum
            }));
        }
        for i in 0..cap {
            let mut j = i + 1;
            let w = self.weights[i];
            if w != 0 {
                while j <= cap {
                    self.tree[j] += w;
                    j += j & j.wrapping_neg();
                }
            }
        }
    }

    /// Set the weight of a slot; returns the previous weight.
    pub fn set(&mut self, slot: u32, weight: u64) -> u64 {
        let i = slot as usize;
        let old = self.weights[i];
        if old == weight {
            return old;
        }
        self.weights[i] = weight;
        self.total = self.total - old + weight;
        for p in self.prefix.iter_mut().skip(i) {
            *p = *p - old + weight;
        }
        let mut j = i + 1;
        let n = self.weights.len();
        while j <= n {
            self.tree[j] = self.tree[j] - old + weight;
            j += j & j.wrapping_neg();
        }
        old
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The slot whose cumulative range contains `target` (< total), and
    /// where that range starts.
    ///
    /// The capacity is a power of two ([`Fenwick::grow`] doubles from 8),
    /// so every step of the descent stays inside the tree and the step's
    /// decision is a conditional move, not a branch: the decisions are
    /// random by nature, and a mispredicted branch per level cost more
    /// than the rest of a draw. Up to a capacity of [`SMALL`] the pick
    /// counts the prefix sums at or below the target instead: the same
    /// slot, by independent compares.
    #[inline]
    pub fn locate(&self, target: u64) -> (u32, u64) {
        let n = self.weights.len();
        debug_assert!(n == 0 || n.is_power_of_two());
        if n == 0 {
            return (0, 0);
        }
        if !self.prefix.is_empty() {
            let prefix = self.prefix.get(..self.used).unwrap_or(&self.prefix);
            // The slot is the number of slots whose range ends at or
            // before the target.
            let pos: usize = prefix.iter().map(|&p| usize::from(p <= target)).sum();
            let start = prefix.get(pos).map_or(0, |&p| p - self.weights[pos]);
            return (pos as u32, start);
        }
        let tree = &self.tree[..=n];
        let mut left = target;
        let mut pos = 0usize;
        // tree[n] is the total (> target): the first step never descends.
        let mut step = n >> 1;
        while step > 0 {
            let v = tree[pos + step];
            // All ones when the range lies below `left` (the subtraction
            // does not borrow): descend past it. Written as a borrow mask
            // so that the compiler keeps it branch-free.
            let (rest, borrow) = left.overflowing_sub(v);
            let take = u64::from(borrow).wrapping_sub(1);
            left = (rest & take) | (left & !take);
            pos += step & take as usize;
            step >>= 1;
        }
        (pos as u32, target - left)
    }

    /// The weight of a slot.
    pub fn weight(&self, slot: u32) -> u64 {
        self.weights[slot as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot and range start of `target` by a walk over the weights.
    fn reference(f: &Fenwick, target: u64) -> (u32, u64) {
        let mut start = 0;
        for (i, &w) in f.weights.iter().enumerate() {
            if target < start + w {
                return (i as u32, start);
            }
            start += w;
        }
        unreachable!("target {target} beyond the total {}", f.total)
    }

    #[test]
    fn prefix_counting_and_the_descent_agree_with_a_walk() {
        // Pools below, at and above SMALL, with zero weights, removals
        // and changed weights.
        for n in [3u64, 9, 20, 32, 33, 100] {
            let mut f = Fenwick::default();
            let slots: Vec<u32> = (0..n).map(|i| f.insert(i * 7 % 5)).collect();
            for &s in slots.iter().step_by(3) {
                f.remove(s);
            }
            let _ = f.set(slots[1], 1_000);
            assert_eq!(f.prefix.is_empty(), f.weights.len() > SMALL);
            for t in 0..f.total() {
                assert_eq!(f.locate(t), reference(&f, t), "n {n} target {t}");
            }
        }
    }

    #[test]
    fn find_maps_cumulative_ranges_to_slots() {
        let mut f = Fenwick::default();
        let a = f.insert(3);
        let b = f.insert(0);
        let c = f.insert(5);
        assert_eq!(f.total(), 8);
        for t in 0..3 {
            assert_eq!(f.locate(t), (a, 0));
        }
        for t in 3..8 {
            assert_eq!(f.locate(t), (c, 3));
        }
        assert_eq!(f.set(b, 2), 0);
        assert_eq!(f.locate(3), (b, 3));
        assert_eq!(f.locate(5), (c, 5));
        f.remove(a);
        assert_eq!(f.total(), 7);
        assert_eq!(f.locate(0), (b, 0));
        // Growth keeps the weights.
        let many: Vec<u32> = (0..100).map(|_| f.insert(1)).collect();
        assert_eq!(f.total(), 107);
        assert_eq!(f.locate(106), (*many.last().expect("inserted"), 106));
    }
}
