//! The deadline queue: a binary min-heap of (time, tag) with lazy
//! deletion. Moving or cancelling a deadline does not search the heap; the
//! old item stays until it reaches the top, where the owner's validity test
//! discards it, or until a compaction drops every stale item at once.
//!
//! An item costs 16 bytes (nanoseconds from an epoch and a 32-bit tag), a
//! push O(log n) (O(1) on average for the mostly increasing times of
//! registrations), and stale items never exceed twice the live ones plus a
//! constant, so memory and the amortised cost stay bounded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Stale items tolerated beyond twice the live ones before a compaction.
const SLACK: usize = 1024;

/// Deadlines as signed nanoseconds from an epoch, each with a tag.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// The first deadline's time: keys count from it. Taken from the
    /// caller, not the clock, so that the handlespace reads no clock.
    epoch: Option<Instant>,
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    /// Deadlines their owner holds (the heap may have more items: stale ones).
    live: usize,
    /// The top item as last found valid: until its tag is cancelled or
    /// it is popped, [`Deadlines::settle`] need not ask the owner again
    /// (a burst of registrations pushes later deadlines under one top).
    checked: Option<(i64, u32)>,
}

/// Signed nanoseconds from `epoch` to `t`.
fn key_from(epoch: Instant, t: Instant) -> i64 {
    let signed = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match t.checked_duration_since(epoch) {
        Some(d) => signed(d),
        None => -signed(epoch.duration_since(t)),
    }
}

impl Deadlines {
    /// The heap key of an instant (saturating at about 292 years either way).
    /// Before the first deadline every key is 0 (there is nothing to
    /// compare it with).
    pub fn key(&self, t: Instant) -> i64 {
        self.epoch.map_or(0, |e| key_from(e, t))
    }

    /// Add a deadline the owner now holds.
    pub fn push(&mut self, t: Instant, tag: u32) {
        let epoch = *self.epoch.get_or_insert(t);
        let k = key_from(epoch, t);
        self.heap.push(Reverse((k, tag)));
        self.live += 1;
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
    pub fn peek(&self) -> Option<(i64, u32)> {
        self.heap.peek().map(|r| r.0)
    }

    /// Take the earliest item; the owner drops the deadline it names.
    pub fn pop(&mut self) -> Option<(i64, u32)> {
        let item = self.heap.pop()?.0;
        self.live = self.live.saturating_sub(1);
        self.checked = None;
        Some(item)
    }

    /// Drop stale items from the top, and compact when they dominate, so
    /// that the top is always a live deadline. `held(tag)` is the deadline
    /// the owner holds for a tag now; an item whose time differs is stale.
    pub fn settle(&mut self, held: impl Fn(u32) -> Option<Instant>) {
        let Some(epoch) = self.epoch else {
            return;
        };
        let valid = |k: i64, tag: u32| held(tag).is_some_and(|t| key_from(epoch, t) == k);
        let compact = self.heap.len() > 2 * self.live + SLACK;
        if !compact && self.checked.is_some() && self.peek() == self.checked {
            return;
        }
        while let Some(&Reverse((k, tag))) = self.heap.peek() {
            if valid(k, tag) {
                break;
            }
            self.heap.pop();
        }
        self.checked = self.peek();
        if self.heap.len() > 2 * self.live + SLACK {
            let mut items = std::mem::take(&mut self.heap).into_vec();
            items.retain(|r| valid(r.0 .0, r.0 .1));
            // A deadline moved away and back leaves two equal items.
            items.sort_unstable();
            items.dedup();
            self.live = items.len();
            self.heap = BinaryHeap::from(items);
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

    #[test]
    fn keys_order_like_instants_on_both_sides_of_the_epoch() {
        let t0 = Instant::now();
        let before = t0 - Duration::from_secs(1);
        let mut d = Deadlines::default();
        assert_eq!(d.key(t0), 0);
        d.push(t0, 1);
        let after = before + Duration::from_secs(3);
        assert!(d.key(before) <= 0);
        assert!(d.key(after) > d.key(before));
        assert_eq!(
            d.key(after) - d.key(before),
            Duration::from_secs(3).as_nanos() as i64
        );
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
            d.settle(|tag| (tag == 1).then_some(current));
            assert!(d.items() <= 2 + SLACK, "{} items", d.items());
        }
        assert_eq!(d.peek(), Some((d.key(current), 1)));
        assert_eq!(d.pop(), Some((d.key(current), 1)));
        d.settle(|_| None);
        assert_eq!(d.peek(), None);
    }
}
