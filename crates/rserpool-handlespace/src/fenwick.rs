//! A Fenwick (binary indexed) tree of 64-bit weights over reusable slots:
//! O(log n) weight updates and O(log n) weighted random picks, the engine
//! of every random selection policy.

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
}

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
    /// than the rest of a draw.
    #[inline]
    pub fn locate(&self, target: u64) -> (u32, u64) {
        let n = self.weights.len();
        debug_assert!(n == 0 || n.is_power_of_two());
        if n == 0 {
            return (0, 0);
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
