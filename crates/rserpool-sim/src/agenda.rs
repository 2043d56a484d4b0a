//! The pending events of a simulation: taken in time order, ties in the
//! order they were scheduled.
//!
//! A radix heap (Ahuja, Mehlhorn, Orlin and Tarjan, 1990) over a slab.
//! It fits because the agenda is monotone: nothing is scheduled before
//! the event last taken, since the world never schedules into its past.
//! Each key is (time, sequence number) — unique, and ordered as the
//! events must run. Bucket `i` holds the keys whose highest bit that
//! differs from the last key taken is bit `i - 1` (of the 128-bit
//! number time·2^64 + sequence); taking an event from an empty bucket 0
//! moves the first non-empty bucket's keys down, each to a lower bucket.
//! An item moves at most 128 times and in practice a few, through short
//! sequential vectors, where a binary heap of tens of thousands of
//! pending events sifts through a dozen cache lines at every pop (the
//! binary heap was a tenth of the simulator's time).
//!
//! The events wait in a slab; the buckets move 24-byte keys.

/// Where an event is in time: virtual nanoseconds, then the order it
/// was scheduled in.
type Key = (u64, u64);

#[derive(Debug, Clone, Copy)]
struct Item {
    key: Key,
    index: u32,
}

/// The bucket of `key` relative to `last`: 0 when equal, else one more
/// than the position of the highest bit in which they differ.
fn bucket(last: Key, key: Key) -> usize {
    if key.0 != last.0 {
        64 + (64 - (key.0 ^ last.0).leading_zeros() as usize)
    } else if key.1 != last.1 {
        64 - (key.1 ^ last.1).leading_zeros() as usize
    } else {
        0
    }
}

const BUCKETS: usize = 129;

/// Pending events of type `T`.
#[derive(Debug)]
pub(crate) struct Agenda<T> {
    /// The key last taken (or the origin).
    last: Key,
    buckets: Vec<Vec<Item>>,
    /// Bit `i` set when bucket `i + 1` holds something (bucket 0 is
    /// checked directly).
    occupied: u128,
    events: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Default for Agenda<T> {
    fn default() -> Self {
        Agenda {
            last: (0, 0),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            occupied: 0,
            events: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<T> Agenda<T> {
    /// Schedule `ev` at virtual nanosecond `at`, which must not be
    /// before the event last taken (it is moved up to it if it is).
    pub fn push(&mut self, at: u64, ev: T) {
        let index = match self.free.pop() {
            Some(i) => {
                self.events[i as usize] = Some(ev);
                i
            }
            None => {
                self.events.push(Some(ev));
                (self.events.len() - 1) as u32
            }
        };
        self.seq += 1;
        let key = (at.max(self.last.0), self.seq);
        self.put(Item { key, index });
    }

    fn put(&mut self, item: Item) {
        let b = bucket(self.last, item.key);
        self.buckets[b].push(item);
        if b > 0 {
            self.occupied |= 1 << (b - 1);
        }
    }

    /// Take the earliest event if it is due at or before `limit`, with
    /// its time.
    pub fn pop_until(&mut self, limit: u64) -> Option<(u64, T)> {
        if self.buckets[0].is_empty() {
            if self.occupied == 0 {
                return None;
            }
            let i = self.occupied.trailing_zeros() as usize + 1;
            let min = self.buckets[i].iter().map(|x| x.key).min()?;
            if min.0 > limit {
                // `last` stays: what is scheduled before `min` still fits.
                return None;
            }
            self.last = min;
            self.occupied &= !(1 << (i - 1));
            let mut moving = std::mem::take(&mut self.buckets[i]);
            for item in moving.drain(..) {
                self.put(item);
            }
            self.buckets[i] = moving;
        }
        let item = *self.buckets[0].last()?;
        if item.key.0 > limit {
            return None;
        }
        self.buckets[0].pop();
        let ev = self.events.get_mut(item.index as usize)?.take()?;
        self.free.push(item.index);
        Some((item.key.0, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use std::collections::BinaryHeap;

    #[test]
    fn takes_events_in_time_then_schedule_order_like_a_binary_heap() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut agenda = Agenda::default();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        for round in 0..20_000u64 {
            // Bursts of events at the same time, near and far ones.
            for _ in 0..rng.random_range(0..4) {
                let at = now
                    + match rng.random_range(0..4) {
                        0 => 0,
                        1 => rng.random_range(0..1_000),
                        2 => rng.random_range(0..5_000_000_000),
                        _ => 7,
                    };
                seq += 1;
                agenda.push(at, seq);
                reference.push(std::cmp::Reverse((at, seq)));
            }
            // Sometimes stop short of the next event, as run_until does.
            let limit = if round % 5 == 0 { now + 3 } else { u64::MAX };
            let got = agenda.pop_until(limit);
            let want = match reference.peek() {
                Some(std::cmp::Reverse((at, _))) if *at <= limit => {
                    reference.pop().map(|r| (r.0 .0, r.0 .1))
                }
                _ => None,
            };
            assert_eq!(got, want, "round {round}");
            if let Some((at, _)) = got {
                assert!(at >= now);
                now = at;
            } else {
                now = now.max(limit.min(now + 3));
            }
        }
        while let Some(r) = reference.pop() {
            assert_eq!(agenda.pop_until(u64::MAX), Some((r.0 .0, r.0 .1)));
        }
        assert_eq!(agenda.pop_until(u64::MAX), None);
    }
}
