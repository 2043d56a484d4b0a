//! The deadline queue: a min-heap (eight children a node) of (time, tag)
//! with lazy deletion. Moving or cancelling a deadline does not search the heap; the
//! old item stays until it reaches the top, where the owner's validity test
//! discards it, or until a compaction drops every stale item at once.
//!
//! The handlespace queues one item per PE, not one per deadline: the
//! PE's earliest deadline (of its lifetime, keep-alive and drain
//! timeout). When that one is taken, the PE's next is queued. A
//! registration, which sets two deadlines, pushes one item.
//!
//! An item costs 24 bytes (the instant and a 32-bit tag), a push
//! O(log n) (O(1) on average for the mostly increasing times of
//! registrations), and stale items never exceed twice the live ones plus a
//! constant, so memory and the amortised cost stay bounded. Items keep
//! the instants themselves: comparing two is cheaper than turning each
//! into a count from an epoch.

use std::time::Instant;

/// Stale items tolerated beyond twice the live ones before a compaction.
const SLACK: usize = 1024;

/// Children a heap node has.
const ARITY: usize = 8;

/// A min-heap with [`ARITY`] children a node: a third of the levels of
/// a binary heap, so that an item pushed below many equal times (a
/// registration burst into reused slots, whose tags decrease) climbs a
/// third as far (a pop compares more children a level: no slower).
#[derive(Debug, Default)]
struct Heap {
    items: Vec<(Instant, u32)>,
}

impl Heap {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn peek(&self) -> Option<&(Instant, u32)> {
        self.items.first()
    }

    fn push(&mut self, x: (Instant, u32)) {
        let mut i = self.items.len();
        self.items.push(x);
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.items[parent] <= x {
                break;
            }
            self.items[i] = self.items[parent];
            i = parent;
        }
        self.items[i] = x;
    }

    fn pop(&mut self) -> Option<(Instant, u32)> {
        let last = self.items.pop()?;
        let Some(&top) = self.items.first() else {
            return Some(last);
        };
        // Sift the last item down from the root.
        let n = self.items.len();
        let mut i = 0;
        loop {
            let first = ARITY * i + 1;
            if first >= n {
                break;
            }
            let mut least = first;
            for c in first + 1..(first + ARITY).min(n) {
                if self.items[c] < self.items[least] {
                    least = c;
                }
            }
            if self.items[least] >= last {
                break;
            }
            self.items[i] = self.items[least];
            i = least;
        }
        self.items[i] = last;
        Some(top)
    }

    /// Keep the items `keep` accepts, once each. A sorted vector is a
    /// heap already (every parent comes before its children).
    fn retain_sorted(&mut self, keep: impl Fn(Instant, u32) -> bool) {
        self.items.retain(|&(t, tag)| keep(t, tag));
        self.items.sort_unstable();
        self.items.dedup();
    }
}

/// Deadlines, each with a tag.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: Heap,
    /// Deadlines their owner holds (the heap may have more items: stale ones).
    live: usize,
    /// The top item as last found valid: until its tag is cancelled or
    /// it is popped, [`Deadlines::settle`] need not ask the owner again
    /// (a burst of registrations pushes later deadlines under one top).
    checked: Option<(Instant, u32)>,
}

impl Deadlines {
    /// Add a deadline the owner now holds. An item that becomes the top
    /// is valid (the owner holds it): [`Deadlines::settle`] need not ask.
    pub fn push(&mut self, t: Instant, tag: u32) {
        self.heap.push((t, tag));
        self.live += 1;
        if self.heap.peek() == Some(&(t, tag)) {
            self.checked = Some((t, tag));
        }
    }

    /// The owner dropped the deadline of `tag` (its item became stale).
    /// Call [`Deadlines::settle`] after.
    pub fn cancel(&mut self, tag: u32) {
        self.live = self.live.saturating_sub(1);
        if self.checked.is_some_and(|(_, t)| t == tag) {
            self.checked = None;
        }
    }

    /// The earliest item (valid after [`Deadlines::settle`]).
    pub fn peek(&self) -> Option<(Instant, u32)> {
        self.heap.peek().copied()
    }

    /// Take the earliest item; the owner drops the deadline it names.
    pub fn pop(&mut self) -> Option<(Instant, u32)> {
        let item = self.heap.pop()?;
        self.live = self.live.saturating_sub(1);
        self.checked = None;
        Some(item)
    }

    /// Drop stale items from the top, and compact when they dominate, so
    /// that the top is always a live deadline. `held(t, tag)` says whether
    /// the owner still holds the deadline `t` for `tag`.
    pub fn settle(&mut self, held: impl Fn(Instant, u32) -> bool) {
        let compact = self.heap.len() > 2 * self.live + SLACK;
        if !compact && self.checked.is_some() && self.peek() == self.checked {
            return;
        }
        while let Some(&(t, tag)) = self.heap.peek() {
            if held(t, tag) {
                break;
            }
            self.heap.pop();
        }
        self.checked = self.peek();
        if self.heap.len() > 2 * self.live + SLACK {
            // A deadline moved away and back leaves two equal items.
            self.heap.retain_sorted(&held);
            self.live = self.heap.len();
            self.checked = self.peek();
        }
    }

    /// Items in the heap, stale ones included (for tests).
    #[cfg(test)]
    pub fn items(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_heap_pops_in_order() {
        let t0 = Instant::now();
        let mut h = Heap::default();
        let mut model = Vec::new();
        // Equal times with decreasing tags, increasing and mixed times.
        let mut x = 12345u64;
        for i in 0..2000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = t0 + Duration::from_millis(if i % 3 == 0 { 5 } else { x >> 54 });
            let item = (t, 5000 - i);
            h.push(item);
            model.push(item);
            if i % 7 == 0 {
                model.sort_unstable();
                assert_eq!(h.pop(), Some(model.remove(0)));
            }
        }
        model.sort_unstable();
        for want in model {
            assert_eq!(h.peek(), Some(&want));
            assert_eq!(h.pop(), Some(want));
        }
        assert_eq!(h.pop(), None);
    }

    #[test]
    fn stale_items_are_dropped_and_compacted() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        // Tag 1 holds a deadline that moves earlier each time, so that
        // the stale items stay below the top until a compaction.
        let mut current = t0;
        for i in 0..10_000u64 {
            current = t0 + Duration::from_millis(10_000 - i);
            if i > 0 {
                d.cancel(1);
            }
            d.push(current, 1);
            d.settle(|t, tag| tag == 1 && t == current);
            assert!(d.items() <= 2 + SLACK, "{} items", d.items());
        }
        assert_eq!(d.peek(), Some((current, 1)));
        assert_eq!(d.pop(), Some((current, 1)));
        d.settle(|_, _| false);
        assert_eq!(d.peek(), None);
    }
}
