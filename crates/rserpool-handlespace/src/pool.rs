//! One pool: the settings its first PE fixed (policy type, user transport
//! type, data/control use), its members, and the selection engine. The PE
//! entries themselves live in the handlespace's slab; a pool refers to
//! them by slot.
//!
//! A drained member stays in `members` (it is registered) but is out of
//! the engine's structures, so that no policy can choose it and the
//! others' selection state (cursors, passes, counters) is not touched;
//! the round robin walk skips it. Undraining puts it back like a
//! re-registration would, a weighted round robin PE level with the
//! current head.

use std::collections::BTreeSet;
use std::ops::Bound::{Included, Unbounded};

use rand::{Rng, RngExt};
use rserpool_wire::{PeId, Policy, PoolElement, PoolHandle, TransportUse};

use crate::entry::{Entries, PoolElementEntry};
use crate::fenwick::Fenwick;
use crate::members::{Members, Place};
use crate::selection::{self, Engine};

/// Why a registration does not fit its pool (RFC 5354 section 3.12
/// causes 0x5, 0x7, 0x8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// The pool uses another policy; carries one member's policy, for the
    /// cause information.
    Policy(Policy),
    /// The pool uses another user transport; carries one member's transport.
    Transport(rserpool_wire::Transport),
    /// The pool uses the other data/control configuration.
    DataControl,
}

/// A pool.
#[derive(Debug)]
pub struct Pool {
    handle: PoolHandle,
    /// The handle's part of its PEs' checksum blocks (RFC 5353 3.6.2).
    handle_sum: u16,
    policy_type: u32,
    transport_type: u16,
    transport_use: TransportUse,
    engine: Engine,
    /// PE identifier -> slot, ordered for handle table paging.
    members: Members,
    /// Rotation engine: the identifier the next head is at or after.
    cursor: PeId,
    /// Ordered engine: (key, rotation order, slot); ranked engine: (key,
    /// identifier, slot).
    ordered: BTreeSet<(u64, u64, u32)>,
    /// Ranked engine: key and identifier of the last head.
    last_head: Option<(u64, u64)>,
    /// Uniform engine: member slots, densely (an entry's `weight_slot` is
    /// its index here).
    dense: Vec<u32>,
    /// Random engine: weights by Fenwick slot, and Fenwick slot -> entry slot.
    weights: Fenwick,
    weight_slots: Vec<u32>,
    /// Cumulative-range starts and weights of the current draw's picks
    /// (reused buffer).
    taken: Vec<(u64, u64)>,
    /// Whether the policy counts hand-outs (degradation), so that every
    /// returned PE, not just the head, must be re-keyed.
    degrades: bool,
    next_order: u64,
    /// Members drained (out of the engine).
    drained: usize,
    /// Which pool of the handlespace's life this is (pool numbers are
    /// reused; a `PeRef` checks this).
    pub(crate) generation: u64,
}

impl Pool {
    /// An empty pool; its first PE sets its policy and transport.
    pub(crate) fn new(handle: PoolHandle, generation: u64) -> Self {
        Pool {
            generation,
            handle_sum: crate::checksum::handle_sum(&handle),
            handle,
            policy_type: 0,
            transport_type: 0,
            transport_use: TransportUse::DataOnly,
            engine: Engine::Ordered,
            members: Members::default(),
            cursor: PeId::new(0),
            ordered: BTreeSet::new(),
            last_head: None,
            dense: Vec::new(),
            weights: Fenwick::default(),
            weight_slots: Vec::new(),
            taken: Vec::new(),
            degrades: false,
            next_order: 0,
            drained: 0,
        }
    }

    /// The pool handle.
    pub fn handle(&self) -> &PoolHandle {
        &self.handle
    }

    /// The handle's part of its PEs' checksum blocks.
    pub(crate) fn handle_sum(&self) -> u16 {
        self.handle_sum
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the pool has no PE.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of drained PEs (registered, not handed out).
    pub fn drained(&self) -> usize {
        self.drained
    }

    /// The pool's policy type (set by its first PE).
    pub fn policy_type(&self) -> u32 {
        self.policy_type
    }

    /// Slot of a member.
    pub(crate) fn slot(&self, id: PeId) -> Option<u32> {
        self.members.get(id)
    }

    /// Members in identifier order, starting after `after`.
    pub(crate) fn members_after(
        &self,
        after: Option<PeId>,
    ) -> impl Iterator<Item = (PeId, u32)> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        self.members.range(after.map_or(Unbounded, Excluded))
    }

    /// Check a registration against the pool's settings (RFC 5354 causes).
    /// The only member may change them by re-registering.
    pub(crate) fn check(&self, pe: &PoolElement, entries: &Entries) -> Result<(), Inconsistency> {
        let alone = match self.members.len() {
            0 => true,
            1 => self.members.get(pe.identifier).is_some(),
            _ => false,
        };
        if alone {
            return Ok(());
        }
        // The pool's settings are its members' (RFC 5354 section 3.12):
        // compare with them, and look a member up only for the cause.
        let other = || {
            let slot = self
                .members
                .iter()
                .find(|&(id, _)| id != pe.identifier)
                .map(|(_, slot)| slot);
            match slot {
                Some(slot) => entries.get(slot),
                None => unreachable!("a pool of two or more has another member"),
            }
        };
        if pe.policy.policy_type() != self.policy_type {
            return Err(Inconsistency::Policy(other().policy.clone()));
        }
        if pe.user_transport.param_type() != self.transport_type {
            return Err(Inconsistency::Transport(other().user_transport.clone()));
        }
        if pe.user_transport.transport_use() != self.transport_use {
            return Err(Inconsistency::DataControl);
        }
        Ok(())
    }

    /// An existing member's slot, or where a new member `id` goes (one
    /// search for either): [`Pool::place`] it there, then
    /// [`Pool::admit`] it.
    pub(crate) fn member(&self, id: PeId) -> Result<u32, Place> {
        self.members.find(id)
    }

    /// Put a new member's slot where [`Pool::member`] placed it.
    pub(crate) fn place(&mut self, place: Place, id: PeId, slot: u32) {
        self.members.insert_at(place, id, slot);
    }

    /// Admit the new member just placed at `slot` (its entry is in the
    /// slab): the first member sets the pool's settings.
    pub(crate) fn admit(&mut self, slot: u32, entries: &mut Entries) {
        let e = entries.get_mut(slot);
        if self.members.len() == 1 {
            self.adopt_settings(e);
        }
        e.order = self.bump();
        if matches!(e.policy, Policy::WeightedRoundRobin { .. }) {
            // A new PE starts level with the current head.
            e.key = self.ordered.first().map_or(0, |k| k.0);
        }
        self.attach(slot, entries);
    }

    /// Remove a member.
    pub(crate) fn remove(&mut self, id: PeId, entries: &mut Entries) -> Option<u32> {
        let slot = self.members.remove(id)?;
        if entries.get(slot).drained {
            self.drained -= 1;
        }
        self.detach(slot, entries);
        Some(slot)
    }

    /// Take a member out of selection (it stays a member). Returns false
    /// if it was drained already.
    pub(crate) fn drain(&mut self, slot: u32, entries: &mut Entries) -> bool {
        if entries.get(slot).drained {
            return false;
        }
        self.detach(slot, entries);
        entries.get_mut(slot).drained = true;
        self.drained += 1;
        true
    }

    /// Put a drained member back into selection, behind its equals (and
    /// a weighted round robin PE no earlier than the current head, so
    /// that it does not take a burst of turns). Returns false if it was
    /// not drained.
    pub(crate) fn undrain(&mut self, slot: u32, entries: &mut Entries) -> bool {
        if !entries.get(slot).drained {
            return false;
        }
        let head = self.ordered.first().map(|k| k.0);
        let order = self.bump();
        let e = entries.get_mut(slot);
        e.drained = false;
        e.order = order;
        if let (Policy::WeightedRoundRobin { .. }, Some(head)) = (&e.policy, head) {
            e.key = e.key.max(head);
        }
        self.drained -= 1;
        self.attach(slot, entries);
        true
    }

    /// Put an updated member back. Re-registration resets the degradation
    /// counter (RFC 5356 5.2.2) and keeps the WRR pass.
    pub(crate) fn reattach(&mut self, slot: u32, entries: &mut Entries) {
        let e = entries.get_mut(slot);
        if self.members.len() == 1 {
            self.adopt_settings(e);
        }
        e.counter = 0;
        self.attach(slot, entries);
    }

    /// Take the pool's settings and engine from its only member.
    fn adopt_settings(&mut self, e: &PoolElementEntry) {
        self.policy_type = e.policy.policy_type();
        self.transport_type = e.user_transport.param_type();
        self.transport_use = e.user_transport.transport_use();
        self.engine = selection::engine(&e.policy);
        self.degrades = selection::uses_degradation(&e.policy);
    }

    fn bump(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// A member's place in the sorted set: ties broken by identifier
    /// (ranked) or by rotation order (ordered).
    fn sort_key(&self, slot: u32, e: &PoolElementEntry) -> (u64, u64, u32) {
        let tie = match self.engine {
            Engine::Ranked => u64::from(e.identifier.get()),
            _ => e.order,
        };
        (e.key, tie, slot)
    }

    /// Put a member into the engine's structure (not a drained one).
    fn attach(&mut self, slot: u32, entries: &mut Entries) {
        let e = entries.get_mut(slot);
        if e.drained {
            return;
        }
        match self.engine {
            Engine::Rotation => {}
            Engine::Ranked | Engine::Ordered => {
                e.key = selection::order_key(&e.policy, e.counter, e.distance, e.key);
                self.ordered.insert(self.sort_key(slot, e));
            }
            Engine::Uniform => {
                e.weight_slot = self.dense.len() as u32;
                self.dense.push(slot);
            }
            Engine::WeightedRandom => {
                let w = selection::random_weight(&e.policy, e.counter, e.distance);
                let ws = self.weights.insert(w);
                e.weight_slot = ws;
                let i = ws as usize;
                if self.weight_slots.len() <= i {
                    self.weight_slots.resize(i + 1, 0);
                }
                self.weight_slots[i] = slot;
            }
        }
    }

    /// Take a member out of the engine's structure (also before a
    /// re-registration changes it; then [`Pool::reattach`]).
    pub(crate) fn detach(&mut self, slot: u32, entries: &mut Entries) {
        let e = entries.get(slot);
        if e.drained {
            return;
        }
        match self.engine {
            Engine::Rotation => {}
            Engine::Ranked | Engine::Ordered => {
                self.ordered.remove(&self.sort_key(slot, e));
            }
            Engine::Uniform => {
                let i = e.weight_slot as usize;
                self.dense.swap_remove(i);
                if let Some(&moved) = self.dense.get(i) {
                    entries.get_mut(moved).weight_slot = i as u32;
                }
            }
            Engine::WeightedRandom => self.weights.remove(e.weight_slot),
        }
    }

    /// Select up to `n` distinct members by the pool's policy (slots, in
    /// the order to return them) and update the selection state: rotation,
    /// degradation counters, WRR passes.
    pub(crate) fn select(
        &mut self,
        n: usize,
        entries: &mut Entries,
        rng: &mut impl Rng,
        out: &mut Vec<u32>,
    ) {
        let n = n.min(self.members.len() - self.drained);
        out.clear();
        match self.engine {
            Engine::Rotation => self.rotate(n, entries, out),
            Engine::Ranked => self.ranked(n, out),
            Engine::Ordered => {
                out.extend(self.ordered.iter().take(n).map(|&(_, _, slot)| slot));
            }
            Engine::Uniform => {
                // Partial Fisher-Yates: position i gets a uniform pick
                // among the members not yet drawn.
                let len = self.dense.len();
                for i in 0..n {
                    let j = rng.random_range(i..len);
                    self.dense.swap(i, j);
                    entries.get_mut(self.dense[i]).weight_slot = i as u32;
                    entries.get_mut(self.dense[j]).weight_slot = j as u32;
                    out.push(self.dense[i]);
                }
            }
            Engine::WeightedRandom => {
                // Draw without replacement: each draw is uniform over the
                // weight not yet drawn, mapped back onto the full range by
                // stepping over the ranges of the PEs already drawn (kept
                // sorted by start), so that the tree is never modified.
                self.taken.clear();
                let mut left = self.weights.total();
                while out.len() < n && left > 0 {
                    let mut t = rng.random_range(0..left);
                    for &(start, w) in &self.taken {
                        if t < start {
                            break;
                        }
                        t += w;
                    }
                    let (ws, start) = self.weights.locate(t);
                    let w = self.weights.weight(ws);
                    let at = self.taken.partition_point(|&(s, _)| s < start);
                    self.taken.insert(at, (start, w));
                    left -= w;
                    out.push(self.weight_slots[ws as usize]);
                }
            }
        }
        let rotates = self.engine == Engine::Ordered;
        if self.degrades {
            for (i, &slot) in out.iter().enumerate() {
                self.handed_out(slot, i == 0 && rotates, entries);
            }
        } else if let (true, Some(&head)) = (rotates, out.first()) {
            self.handed_out(head, true, entries);
        }
    }

    /// The ranked engine's selection (priority, least used): see
    /// [`Pool::select`].
    #[inline(never)]
    fn ranked(&mut self, n: usize, out: &mut Vec<u32>) {
        // The best key's group rotated to start after the last
        // head (round robin among equals), then the rest in order:
        // one walk from the rotation point through the group's
        // tail and on to the next keys, interrupted once to take
        // the group's wrapped-around start (two tree descents,
        // not one per part).
        if let Some(&(best, _, _)) = self.ordered.first() {
            let from = match self.last_head {
                Some((k, id)) if k == best => id + 1,
                _ => 0,
            };
            let mut walk = self.ordered.range((Included((best, from, 0)), Unbounded));
            let mut head = None;
            let mut past_group = None;
            while out.len() < n {
                match walk.next() {
                    Some(&(k, id, slot)) if k == best => {
                        head.get_or_insert((k, id));
                        out.push(slot);
                    }
                    other => {
                        past_group = other;
                        break;
                    }
                }
            }
            if from > 0 {
                let wrap = self
                    .ordered
                    .iter()
                    .take_while(|&&(k, id, _)| k == best && id < from);
                for &(k, id, slot) in wrap.take(n - out.len()) {
                    head.get_or_insert((k, id));
                    out.push(slot);
                }
            }
            let rest = past_group.into_iter().chain(walk);
            for &(k, id, slot) in rest.take(n - out.len()) {
                head.get_or_insert((k, id));
                out.push(slot);
            }
            self.last_head = head;
        }
    }

    /// The rotation engine's selection (round robin): up to `n` members
    /// from the first at or after the cursor on, wrapping around to the
    /// first, each once: a walk over the leaves. Drained members are
    /// stepped over (at most `drained` steps more than the PEs returned).
    /// Its own function: inlined into [`Pool::select`], it made the
    /// other engines' code slower.
    #[inline(never)]
    fn rotate(&mut self, n: usize, entries: &Entries, out: &mut Vec<u32>) {
        let skip = self.drained > 0;
        let leaves = self.members.leaves();
        let (mut leaf, mut at) = self.members.lower_bound(self.cursor);
        let mut left = self.members.len();
        let mut head = None;
        while out.len() < n && left > 0 {
            let Some(l) = leaves.get(leaf) else {
                (leaf, at) = (0, 0);
                continue;
            };
            let Some(&(id, slot)) = l.get(at) else {
                (leaf, at) = (leaf + 1, 0);
                continue;
            };
            at += 1;
            left -= 1;
            if skip && entries.get(slot).drained {
                continue;
            }
            head.get_or_insert(id);
            out.push(slot);
        }
        if let Some(id) = head {
            self.cursor = PeId::new(id.get().wrapping_add(1));
        }
    }

    /// Account that a member was handed out: its degradation counter, and
    /// for the head of an ordered list the rotation (and the WRR pass).
    fn handed_out(&mut self, slot: u32, head: bool, entries: &mut Entries) {
        self.detach(slot, entries);
        let e = entries.get_mut(slot);
        if self.degrades {
            e.counter = e.counter.saturating_add(1);
        }
        if head {
            e.order = self.bump();
            e.key = e.key.saturating_add(selection::wrr_stride(&e.policy));
        }
        self.attach(slot, entries);
    }
}
