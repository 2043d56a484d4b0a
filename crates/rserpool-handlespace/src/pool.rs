//! One pool: its PEs, the settings its first PE fixed (policy type, user
//! transport type, data/control use), and the selection engine.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rand::{Rng, RngExt};
use rserpool_wire::{Policy, PoolElement, PoolHandle, Transport, TransportUse};

use crate::fenwick::Fenwick;
use crate::selection::{self, Engine};
use crate::{ConnId, Identity};

/// A PE as the handlespace keeps it.
#[derive(Debug, Clone)]
pub struct PoolElementEntry {
    /// PE identifier.
    pub identifier: u32,
    /// Owning (home) registrar.
    pub home: u32,
    /// Registration life as registered.
    pub registration_life: i32,
    /// Transport PUs use.
    pub user_transport: Transport,
    /// ASAP transport, if registered.
    pub asap_transport: Option<Transport>,
    /// Policy and its values.
    pub policy: Policy,
    /// When the registration expires (None: never).
    pub expires: Option<Instant>,
    /// When the PE must next be probed or have answered.
    pub keep_alive_due: Option<Instant>,
    /// Connection it registered over (for the owning registrar).
    pub connection: Option<ConnId>,
    /// Identity that registered it.
    pub identity: Option<Identity>,
    /// Distance measured by the registrar (DPF policies).
    pub distance: u32,
    /// Unreachable reports received: reporter and time.
    pub unreachable_reports: Vec<(u64, Instant)>,
    /// Degradation counter (RFC 5356 5.2.2).
    pub(crate) counter: u32,
    /// Rotation order among equal keys.
    pub(crate) order: u64,
    /// Weighted round robin pass.
    pub(crate) pass: u64,
    /// Sort key (ordered engine) or Fenwick slot (random engine).
    pub(crate) key: u64,
    pub(crate) slot: u32,
}

impl PoolElementEntry {
    /// The PE as a wire parameter.
    pub fn to_wire(&self) -> PoolElement {
        PoolElement {
            identifier: self.identifier,
            home_registrar: self.home,
            registration_life: self.registration_life,
            user_transport: self.user_transport.clone(),
            policy: self.policy.clone(),
            asap_transport: self.asap_transport.clone(),
        }
    }
}

/// A pool.
#[derive(Debug)]
pub struct Pool {
    /// Its handle.
    pub handle: PoolHandle,
    policy_type: u32,
    transport_type: u16,
    transport_use: TransportUse,
    engine: Engine,
    pub(crate) pes: HashMap<u32, PoolElementEntry>,
    ordered: BTreeSet<(u64, u64, u32)>,
    weights: Fenwick,
    /// Slot -> PE identifier, for the random engine.
    slot_ids: Vec<u32>,
    next_order: u64,
    /// Minimum pass among WRR PEs when the pool was last touched, so that
    /// new PEs start level with the others.
    base_pass: u64,
}

/// Why a registration does not fit its pool (RFC 5354 causes 0x5, 0x7, 0x8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// The pool uses another policy; carries one of its PEs' policy.
    Policy(Policy),
    /// The pool uses another user transport type; carries one of its PEs' transport.
    Transport(Transport),
    /// The pool uses the other data/control configuration.
    DataControl,
}

impl Pool {
    /// An empty pool; its first PE sets its policy and transport.
    pub(crate) fn new(handle: PoolHandle) -> Self {
        Pool {
            handle,
            policy_type: 0,
            transport_type: 0,
            transport_use: TransportUse::DataOnly,
            engine: Engine::Ordered,
            pes: HashMap::new(),
            ordered: BTreeSet::new(),
            weights: Fenwick::default(),
            slot_ids: Vec::new(),
            next_order: 0,
            base_pass: 0,
        }
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.pes.len()
    }

    /// Whether the pool has no PE.
    pub fn is_empty(&self) -> bool {
        self.pes.is_empty()
    }

    /// A PE by identifier.
    pub fn get(&self, id: u32) -> Option<&PoolElementEntry> {
        self.pes.get(&id)
    }

    /// All PEs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &PoolElementEntry> {
        self.pes.values()
    }

    /// The pool's policy type.
    pub fn policy_type(&self) -> u32 {
        self.policy_type
    }

    /// Check a registration against the pool's settings. A PE that is the
    /// only member may change them by re-registering.
    pub fn check(&self, pe: &PoolElement) -> Result<(), Inconsistency> {
        if self.pes.len() == 1 && self.pes.contains_key(&pe.identifier) {
            return Ok(());
        }
        let Some(any) = self.pes.values().find(|e| e.identifier != pe.identifier) else {
            return Ok(());
        };
        if pe.policy.policy_type() != self.policy_type {
            return Err(Inconsistency::Policy(any.policy.clone()));
        }
        if pe.user_transport.param_type() != self.transport_type {
            return Err(Inconsistency::Transport(any.user_transport.clone()));
        }
        if pe.user_transport.transport_use() != self.transport_use {
            return Err(Inconsistency::DataControl);
        }
        Ok(())
    }

    fn detach(&mut self, e: &PoolElementEntry) {
        match self.engine {
            Engine::Ordered => {
                self.ordered.remove(&(e.key, e.order, e.identifier));
            }
            Engine::WeightedRandom => self.weights.remove(e.slot),
        }
    }

    /// Insert or replace a PE; re-registration resets the degradation
    /// counter (RFC 5356 5.2.2). Returns the previous entry.
    pub(crate) fn upsert(&mut self, mut e: PoolElementEntry) -> Option<PoolElementEntry> {
        let old = self.pes.remove(&e.identifier);
        if let Some(o) = &old {
            self.detach(o);
        }
        if self.pes.is_empty() {
            // The first PE (re)defines the pool.
            self.policy_type = e.policy.policy_type();
            self.transport_type = e.user_transport.param_type();
            self.transport_use = e.user_transport.transport_use();
            self.engine = selection::engine(&e.policy);
        }
        e.counter = 0;
        e.order = self.bump();
        e.pass = old.as_ref().map_or(self.base_pass, |o| o.pass);
        self.attach(&mut e);
        self.pes.insert(e.identifier, e);
        old
    }

    fn bump(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn attach(&mut self, e: &mut PoolElementEntry) {
        match self.engine {
            Engine::Ordered => {
                e.key = selection::order_key(&e.policy, e.counter, e.distance, e.pass);
                self.ordered.insert((e.key, e.order, e.identifier));
            }
            Engine::WeightedRandom => {
                let w = selection::random_weight(&e.policy, e.counter, e.distance);
                e.slot = self.weights.insert(w);
                let s = e.slot as usize;
                if self.slot_ids.len() <= s {
                    self.slot_ids.resize(s + 1, 0);
                }
                self.slot_ids[s] = e.identifier;
            }
        }
    }

    /// Remove a PE.
    pub(crate) fn remove(&mut self, id: u32) -> Option<PoolElementEntry> {
        let e = self.pes.remove(&id)?;
        self.detach(&e);
        Some(e)
    }

    /// Select up to `n` distinct PEs by the pool's policy and update the
    /// selection state (rotation, degradation counters, WRR passes).
    pub fn select(&mut self, n: usize, rng: &mut impl Rng) -> Vec<u32> {
        let n = n.min(self.pes.len());
        let mut out = Vec::with_capacity(n);
        match self.engine {
            Engine::Ordered => {
                out.extend(self.ordered.iter().take(n).map(|&(_, _, id)| id));
                // The head moves behind its equals (and WRR advances its pass).
                if let Some(&head) = out.first() {
                    self.touch(head, true);
                }
                for &id in out.iter().skip(1) {
                    self.touch(id, false);
                }
            }
            Engine::WeightedRandom => {
                let mut taken = Vec::with_capacity(n);
                while out.len() < n && self.weights.total() > 0 {
                    let t = rng.random_range(0..self.weights.total());
                    let slot = self.weights.find(t);
                    taken.push((slot, self.weights.get(slot)));
                    self.weights.set(slot, 0);
                    out.push(self.slot_ids[slot as usize]);
                }
                for (slot, w) in taken {
                    self.weights.set(slot, w);
                }
                for &id in &out {
                    self.touch(id, false);
                }
            }
        }
        out
    }

    /// Account that `id` was handed out: degradation counter, and for the
    /// head of an ordered list, rotation (and the WRR pass).
    fn touch(&mut self, id: u32, head: bool) {
        let Some(mut e) = self.pes.remove(&id) else {
            return;
        };
        let degrades = selection::uses_degradation(&e.policy);
        if !head && !degrades {
            self.pes.insert(id, e);
            return;
        }
        self.detach(&e);
        if degrades {
            e.counter = e.counter.saturating_add(1);
        }
        if head {
            e.order = self.bump();
            e.pass = e.pass.saturating_add(selection::wrr_stride(&e.policy));
        }
        self.attach(&mut e);
        if head && matches!(e.policy, Policy::WeightedRoundRobin { .. }) {
            if let Some(&(k, _, _)) = self.ordered.first() {
                self.base_pass = k;
            }
        }
        self.pes.insert(id, e);
    }
}
