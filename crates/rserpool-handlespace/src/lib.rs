//! The registrar's handlespace: pools by handle, their pool elements, the
//! selection policies, the per-owner PE checksums of RFC 5353 section
//! 3.6.2 and the deadlines (registration lifetimes, keep-alives, drain
//! timeouts). Plain data structures: no I/O, time passed in, randomness
//! from an injected PRNG.
//!
//! A PE can be drained ([`Handlespace::drain`]): it stays registered but
//! no handle resolution returns it, whatever the policy, until
//! [`Handlespace::undrain`].
//!
//! Costs: a pool is found by hash in O(1) (an ordered map of handles
//! serves handle table paging), a PE in O(log n) of its pool (two
//! binary searches: sorted leaves under sorted separators);
//! registration, deregistration, deadlines and each PE a handle
//! resolution returns cost O(log n) or less. Owner, connection and
//! identity indices are intrusive lists: O(1). The pool-user side of the
//! policies is [`PoolUserSelection`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod block_hash;
pub mod checksum;
mod deadlines;
mod entry;
mod fenwick;
mod index;
mod members;
mod pool;
pub mod pool_user;
pub mod selection;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use rserpool_wire::{PeId, PoolElement, PoolEntry, PoolHandle, ServerId};
use rustc_hash::FxHashMap;

/// A connection of the registrar's driver (the suite's one connection
/// handle, re-exported).
pub use rserpool_wire::ConnId;

pub use checksum::PeChecksum;
pub use entry::{KeepAlive, PoolElementEntry};
pub use pool::{Inconsistency, Pool};
pub use pool_user::PoolUserSelection;

use block_hash::BlockBuild;
use deadlines::Deadlines;
use entry::Entries;
use index::{ListIndex, Which};

/// An authenticated identity (PSK identity or certificate subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub Arc<str>);

/// The most PEs a handle resolution returns (RSPLIB's cap).
pub const MAX_ITEMS: usize = 128;

/// Handlespace settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// PEs returned when a request has no Handle Resolution option.
    pub default_items: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { default_items: 3 }
    }
}

/// A registration to apply.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Pool to join.
    pub pool_handle: PoolHandle,
    /// The PE as received.
    pub element: PoolElement,
    /// Owning registrar.
    pub home: ServerId,
    /// When the registration arrived: a new PE keeps it as the time of
    /// its first registration ([`PoolElementEntry::registered_at`]); a
    /// re-registration does not change it.
    pub registered_at: Instant,
    /// Lifetime deadline (None: infinite).
    pub expires: Option<Instant>,
    /// Next keep-alive deadline.
    pub keep_alive_due: Option<Instant>,
    /// Connection it came over.
    pub connection: Option<ConnId>,
    /// Identity that registered it.
    pub identity: Option<Identity>,
    /// Distance the registrar measured (DPF policies).
    pub distance: u32,
    /// Ownership epoch: grows each time the PE changes home (a
    /// registration at another registrar, a takeover), so that a cluster
    /// of registrars tells a newer claim on a PE from a stale one (ours:
    /// RFC 5353 has none).
    pub epoch: u64,
}

/// Result of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new PE.
    New,
    /// An existing PE was updated (re-registration).
    Updated {
        /// Whether its user transport or its policy (with its values)
        /// changed; `false` for a re-registration that only renews it.
        changed: bool,
    },
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadlineKind {
    /// The registration lifetime ends.
    Lifetime,
    /// A keep-alive is due (or its answer overdue).
    KeepAlive,
    /// An operator's drain timed out ([`Handlespace::drain`]).
    Drain,
}

/// A deadline that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Pool.
    pub pool_handle: PoolHandle,
    /// PE identifier.
    pub identifier: PeId,
    /// Which deadline.
    pub kind: DeadlineKind,
    /// Where the PE is (still registered: the caller decides).
    pub pe: PeRef,
}

/// Where a PE's entry is in a [`Handlespace`]: from
/// [`Handlespace::locate`] or an [`Expired`] deadline. It names the PE
/// only while it stays registered: a reference to a PE that left finds
/// nothing, even when its slot was reused (unless by the same PE, back
/// in the same pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeRef {
    slot: u32,
    pool: u32,
    generation: u64,
    identifier: PeId,
}

/// Where a handle table transfer continues: after this PE of this pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCursor {
    /// Pool of the last PE sent.
    pub pool_handle: PoolHandle,
    /// Last PE sent.
    pub identifier: PeId,
}

/// One page of a handle table transfer (RFC 5353 section 3.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePage {
    /// Pools with their PEs, in handle order.
    pub pools: Vec<PoolEntry>,
    /// Where the next page starts; `None` when this was the last (M flag 0).
    pub next: Option<TableCursor>,
}

/// The handlespace.
#[derive(Debug)]
pub struct Handlespace {
    config: Config,
    /// Pools created so far (each pool's generation).
    pools_created: u64,
    /// Pool lookup (a fast hash: handle resolutions look pools up first).
    pool_lookup: FxHashMap<PoolHandle, u32>,
    /// The same pools in handle order, for handle table paging.
    pool_ids: BTreeMap<PoolHandle, u32>,
    pools: Vec<Option<Pool>>,
    free_pools: Vec<u32>,
    entries: Entries,
    checksums: FxHashMap<ServerId, PeChecksum>,
    by_owner: ListIndex<ServerId>,
    /// Connections are numbered by a counter: a hash that keeps
    /// neighbouring numbers together ([`block_hash`]).
    by_connection: ListIndex<ConnId, BlockBuild>,
    by_identity: ListIndex<Identity>,
    /// Each PE's earliest deadline (lifetime, keep-alive or drain
    /// timeout); tags are slots with the deadline kind in the two top bits.
    deadlines: Deadlines,
    pe_count: usize,
    /// PEs drained, over all pools.
    drained: usize,
    /// Reused for the slots a resolution selects (no allocation per request).
    scratch: Vec<u32>,
}

/// A live pool in the pool slab (a free function, so that callers can
/// borrow the entry slab at the same time).
fn pool_at(pools: &mut [Option<Pool>], pid: u32) -> &mut Pool {
    match pools.get_mut(pid as usize) {
        Some(Some(p)) => p,
        _ => unreachable!("handlespace index points at an empty pool {pid}"),
    }
}

/// The two top bits of a deadline's tag say its kind, the others are the
/// slot (slots stay far below 2^30: a billion PEs).
const KIND_SHIFT: u32 = 30;
const SLOT_MASK: u32 = (1 << KIND_SHIFT) - 1;

fn deadline_tag(slot: u32, kind: DeadlineKind) -> u32 {
    debug_assert!(slot <= SLOT_MASK, "slot {slot} does not fit a deadline tag");
    let bits = match kind {
        DeadlineKind::Lifetime => 0,
        DeadlineKind::KeepAlive => 1,
        DeadlineKind::Drain => 2,
    };
    slot | (bits << KIND_SHIFT)
}

fn split_tag(tag: u32) -> (u32, DeadlineKind) {
    let kind = match tag >> KIND_SHIFT {
        0 => DeadlineKind::Lifetime,
        1 => DeadlineKind::KeepAlive,
        _ => DeadlineKind::Drain,
    };
    (tag & SLOT_MASK, kind)
}

/// Whether a queued deadline item is valid: the deadline its tag names
/// is still its entry's earliest ([`PoolElementEntry::earliest`]; one
/// item is queued per PE) and still at `t`.
fn queued(entries: &Entries, t: Instant, tag: u32) -> bool {
    let (slot, kind) = split_tag(tag);
    entries
        .try_get(slot)
        .is_some_and(|e| e.earliest() == Some((t, kind)))
}

/// The entry of a new PE of pool `pid` (no deadlines yet: the caller
/// queues them).
fn new_entry(pid: u32, r: Registration) -> PoolElementEntry {
    PoolElementEntry {
        identifier: r.element.identifier,
        home: r.home,
        registration_life: r.element.registration_life,
        distance: r.distance,
        user_transport: r.element.user_transport,
        asap_transport: r.element.asap_transport,
        policy: r.element.policy,
        expires: None,
        keep_alive_due: None,
        registered_at: r.registered_at,
        drained: false,
        drain_ends: None,
        connection: r.connection,
        identity: r.identity,
        epoch: r.epoch,
        keep_alive: None,
        links: Default::default(),
        pool: pid,
        counter: 0,
        weight_slot: 0,
        key: 0,
        order: 0,
    }
}

impl Default for Handlespace {
    fn default() -> Self {
        Handlespace::new(Config::default())
    }
}

impl Handlespace {
    /// An empty handlespace.
    pub fn new(config: Config) -> Self {
        Handlespace {
            config,
            pools_created: 0,
            pool_lookup: FxHashMap::default(),
            pool_ids: BTreeMap::new(),
            pools: Vec::new(),
            free_pools: Vec::new(),
            entries: Entries::default(),
            checksums: FxHashMap::default(),
            by_owner: ListIndex::new(Which::Owner),
            by_connection: ListIndex::new(Which::Connection),
            by_identity: ListIndex::new(Which::Identity),
            deadlines: Deadlines::default(),
            pe_count: 0,
            drained: 0,
            scratch: Vec::new(),
        }
    }

    /// Number of PEs.
    pub fn len(&self) -> usize {
        self.pe_count
    }

    /// Whether there is no PE.
    pub fn is_empty(&self) -> bool {
        self.pe_count == 0
    }

    /// Number of drained PEs, over all pools.
    pub fn drained_count(&self) -> usize {
        self.drained
    }

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.pool_ids.len()
    }

    fn pool_id(&self, handle: &PoolHandle) -> Option<u32> {
        self.pool_lookup.get(handle).copied()
    }

    fn pool_ref(&self, id: u32) -> &Pool {
        match self.pools.get(id as usize) {
            Some(Some(p)) => p,
            _ => unreachable!("handlespace index points at an empty pool {id}"),
        }
    }

    /// A pool.
    pub fn pool(&self, handle: &PoolHandle) -> Option<&Pool> {
        self.pool_id(handle).map(|id| self.pool_ref(id))
    }

    /// Pool handles, in order.
    pub fn pool_handles(&self) -> impl Iterator<Item = &PoolHandle> {
        self.pool_ids.keys()
    }

    fn slot(&self, handle: &PoolHandle, id: PeId) -> Option<u32> {
        self.pool_ref(self.pool_id(handle)?).slot(id)
    }

    /// A PE.
    pub fn find(&self, handle: &PoolHandle, id: PeId) -> Option<&PoolElementEntry> {
        self.slot(handle, id).map(|s| self.entries.get(s))
    }

    /// Where a PE's entry is, to reach it again without looking up its
    /// pool and identifier (a keep-alive sent, answered, timed out).
    pub fn locate(&self, handle: &PoolHandle, id: PeId) -> Option<PeRef> {
        let pool = self.pool_id(handle)?;
        let slot = self.pool_ref(pool).slot(id)?;
        Some(PeRef {
            slot,
            pool,
            generation: self.pool_ref(pool).generation,
            identifier: id,
        })
    }

    /// The slot a [`PeRef`] names, while that PE is registered.
    fn slot_of(&self, r: PeRef) -> Option<u32> {
        let e = self.entries.try_get(r.slot)?;
        let same = e.pool == r.pool
            && e.identifier == r.identifier
            && self.pool_ref(e.pool).generation == r.generation;
        same.then_some(r.slot)
    }

    /// The PE a [`PeRef`] names, while it is registered.
    pub fn get(&self, r: PeRef) -> Option<&PoolElementEntry> {
        self.slot_of(r).map(|s| self.entries.get(s))
    }

    /// The PEs of a pool, in identifier order.
    pub fn pool_elements<'a>(
        &'a self,
        handle: &PoolHandle,
    ) -> impl Iterator<Item = &'a PoolElementEntry> + 'a {
        self.pool(handle)
            .into_iter()
            .flat_map(|p| p.members_after(None))
            .map(|(_, slot)| self.entries.get(slot))
    }

    /// Register (new) or re-register (update) a PE. On an inconsistency
    /// nothing changes and the error carries what the RFC 5354 cause needs.
    pub fn register(&mut self, r: Registration) -> Result<Registered, Inconsistency> {
        let id = r.element.identifier;
        let existing_pool = self.pool_id(&r.pool_handle);
        if let Some(pid) = existing_pool {
            self.pool_ref(pid).check(&r.element, &self.entries)?;
        }
        let pid = match existing_pool {
            Some(pid) => pid,
            None => self.add_pool(r.pool_handle.clone()),
        };
        let (expires, keep_alive_due) = (r.expires, r.keep_alive_due);
        let entries = &mut self.entries;
        let pool = pool_at(&mut self.pools, pid);
        // One search of the pool's members, for a new PE or an update.
        let (slot, outcome) = match pool.member(id) {
            Err(place) => {
                let slot = entries.insert(new_entry(pid, r));
                pool.place(place, id, slot);
                pool.admit(slot, entries);
                let handle_sum = pool.handle_sum();
                self.pe_count += 1;
                self.index(handle_sum, slot);
                (slot, Registered::New)
            }
            Ok(slot) => {
                let changed = self.update(pid, slot, r);
                (slot, Registered::Updated { changed })
            }
        };
        let e = self.entries.get(slot);
        if e.expires != expires || e.keep_alive_due != keep_alive_due {
            self.change_deadlines(slot, |e| {
                e.expires = expires;
                e.keep_alive_due = keep_alive_due;
            });
            self.settle_deadlines();
        }
        Ok(outcome)
    }

    /// Apply a re-registration to the PE in `slot`; returns whether its
    /// user transport or policy changed. The owner, connection and
    /// identity indices (and the owner's checksum) are touched only when
    /// those change: a periodic re-registration changes none of them. A
    /// drained PE stays drained.
    fn update(&mut self, pid: u32, slot: u32, r: Registration) -> bool {
        let e = self.entries.get(slot);
        let changed = e.user_transport != r.element.user_transport || e.policy != r.element.policy;
        let moves = e.home != r.home || e.connection != r.connection || e.identity != r.identity;
        if moves {
            self.unindex(self.pool_ref(pid).handle_sum(), slot);
        }
        let entries = &mut self.entries;
        let pool = pool_at(&mut self.pools, pid);
        pool.detach(slot, entries);
        let e = entries.get_mut(slot);
        e.home = r.home;
        e.registration_life = r.element.registration_life;
        e.distance = r.distance;
        e.user_transport = r.element.user_transport;
        e.asap_transport = r.element.asap_transport;
        e.policy = r.element.policy;
        e.connection = r.connection;
        e.identity = r.identity;
        e.epoch = r.epoch;
        pool.reattach(slot, entries);
        if moves {
            self.index(self.pool_ref(pid).handle_sum(), slot);
        }
        changed
    }

    fn add_pool(&mut self, handle: PoolHandle) -> u32 {
        self.pools_created += 1;
        let pool = Some(Pool::new(handle.clone(), self.pools_created));
        let pid = match self.free_pools.pop() {
            Some(pid) => {
                self.pools[pid as usize] = pool;
                pid
            }
            None => {
                self.pools.push(pool);
                (self.pools.len() - 1) as u32
            }
        };
        self.pool_lookup.insert(handle.clone(), pid);
        self.pool_ids.insert(handle, pid);
        pid
    }

    /// Remove a PE. Returns it if it was there; an emptied pool goes too.
    pub fn deregister(&mut self, handle: &PoolHandle, id: PeId) -> Option<PoolElementEntry> {
        let pid = self.pool_id(handle)?;
        let entries = &mut self.entries;
        let pool = pool_at(&mut self.pools, pid);
        let slot = pool.remove(id, entries)?;
        let handle_sum = pool.handle_sum();
        if pool.is_empty() {
            self.pools[pid as usize] = None;
            self.free_pools.push(pid);
            self.pool_ids.remove(handle);
            self.pool_lookup.remove(handle);
        }
        self.unindex(handle_sum, slot);
        self.change_deadlines(slot, |e| {
            e.expires = None;
            e.keep_alive_due = None;
            e.drain_ends = None;
        });
        self.pe_count -= 1;
        let e = self.entries.remove(slot);
        if e.as_ref().is_some_and(|e| e.drained) {
            self.drained -= 1;
        }
        self.settle_deadlines();
        e
    }

    /// Drain a PE: it stays registered (re-registrations and keep-alives
    /// go on, and a re-registration does not undrain it) but no handle
    /// resolution returns it, by any policy, and the others' selection
    /// state is left as it is. `ends` is when the drain times out: a
    /// [`DeadlineKind::Drain`] deadline that [`Handlespace::pop_expired`]
    /// reports (the PE stays until the caller removes it); draining a
    /// drained PE replaces it. Returns whether the PE was drained
    /// already; `None` for an unknown PE.
    pub fn drain(&mut self, handle: &PoolHandle, id: PeId, ends: Option<Instant>) -> Option<bool> {
        let pid = self.pool_id(handle)?;
        let slot = self.pool_ref(pid).slot(id)?;
        let entries = &mut self.entries;
        let newly = pool_at(&mut self.pools, pid).drain(slot, entries);
        if newly {
            self.drained += 1;
        }
        self.move_deadline(slot, DeadlineKind::Drain, ends);
        self.settle_deadlines();
        Some(!newly)
    }

    /// Hand a drained PE out again. Returns whether it was drained;
    /// `None` for an unknown PE.
    pub fn undrain(&mut self, handle: &PoolHandle, id: PeId) -> Option<bool> {
        let pid = self.pool_id(handle)?;
        let slot = self.pool_ref(pid).slot(id)?;
        let entries = &mut self.entries;
        let was = pool_at(&mut self.pools, pid).undrain(slot, entries);
        if was {
            self.drained -= 1;
        }
        self.move_deadline(slot, DeadlineKind::Drain, None);
        self.settle_deadlines();
        Some(was)
    }

    /// Give a PE a new deadline of one kind (or none). Call
    /// `settle_deadlines` after.
    fn move_deadline(&mut self, slot: u32, kind: DeadlineKind, at: Option<Instant>) {
        self.change_deadlines(slot, |e| *e.deadline_mut(kind) = at);
    }

    /// Change a PE's deadlines by `set` and queue its earliest one if
    /// that changed (the item queued before becomes stale). Call
    /// `settle_deadlines` after.
    fn change_deadlines(&mut self, slot: u32, set: impl FnOnce(&mut PoolElementEntry)) {
        let e = self.entries.get_mut(slot);
        let before = e.earliest();
        set(e);
        let after = e.earliest();
        if before == after {
            return;
        }
        if let Some((_, kind)) = before {
            self.deadlines.cancel(deadline_tag(slot, kind));
        }
        if let Some((t, kind)) = after {
            self.deadlines.push(t, deadline_tag(slot, kind));
        }
    }

    /// Drop stale deadline items from the top of the queue.
    fn settle_deadlines(&mut self) {
        let entries = &self.entries;
        self.deadlines.settle(|t, tag| queued(entries, t, tag));
    }

    /// Index the PE in `slot` by owner (with its checksum), connection
    /// and identity; `handle_sum` is its pool's [`Pool::handle_sum`].
    fn index(&mut self, handle_sum: u16, slot: u32) {
        let e = self.entries.get(slot);
        let (home, id) = (e.home, e.identifier);
        let (connection, identity) = (e.connection, e.identity.clone());
        let block = checksum::block_sum_with(handle_sum, id);
        self.checksums.entry(home).or_default().add_block(block);
        let entries = &mut self.entries;
        self.by_owner.insert(home, slot, entries);
        if let Some(c) = connection {
            self.by_connection.insert(c, slot, entries);
        }
        if let Some(i) = identity {
            self.by_identity.insert(i, slot, entries);
        }
    }

    /// Undo [`Handlespace::index`].
    fn unindex(&mut self, handle_sum: u16, slot: u32) {
        let e = self.entries.get(slot);
        let (home, id) = (e.home, e.identifier);
        let (connection, identity) = (e.connection, e.identity.clone());
        if let Some(c) = self.checksums.get_mut(&home) {
            c.remove_block(checksum::block_sum_with(handle_sum, id));
        }
        let entries = &mut self.entries;
        self.by_owner.remove(&home, slot, entries);
        if let Some(c) = connection {
            self.by_connection.remove(&c, slot, entries);
        }
        if let Some(i) = identity {
            self.by_identity.remove(&i, slot, entries);
        }
    }

    /// Handle resolution: up to `items` PEs (the configured default when
    /// `None`, capped at [`MAX_ITEMS`]) chosen by the pool's policy, in the
    /// order to return them; drained PEs never. `None` when the pool does
    /// not exist (a pool whose PEs are all drained exists: it answers an
    /// empty list).
    pub fn resolve(
        &mut self,
        handle: &PoolHandle,
        items: Option<u32>,
        rng: &mut impl Rng,
    ) -> Option<Vec<PoolElement>> {
        let mut v = Vec::new();
        self.resolve_each(handle, items, rng, |e| v.push(e.to_wire()))?;
        Some(v)
    }

    /// Handle resolution without copying: `f` sees each selected entry in
    /// order (a registrar encodes its response from them). Returns the
    /// number of PEs, or `None` when the pool does not exist.
    pub fn resolve_each(
        &mut self,
        handle: &PoolHandle,
        items: Option<u32>,
        rng: &mut impl Rng,
        mut f: impl FnMut(&PoolElementEntry),
    ) -> Option<usize> {
        let n = items
            .map_or(self.config.default_items, |n| n as usize)
            .min(MAX_ITEMS);
        let pid = self.pool_id(handle)?;
        let entries = &mut self.entries;
        pool_at(&mut self.pools, pid).select(n, entries, rng, &mut self.scratch);
        for &s in &self.scratch {
            f(self.entries.get(s));
        }
        Some(self.scratch.len())
    }

    /// Move a PE's deadline (for example after a keep-alive was sent or
    /// answered). Returns false for an unknown PE.
    pub fn set_deadline(
        &mut self,
        handle: &PoolHandle,
        id: PeId,
        kind: DeadlineKind,
        at: Option<Instant>,
    ) -> bool {
        self.locate(handle, id)
            .is_some_and(|r| self.set_deadline_at(r, kind, at))
    }

    /// [`Handlespace::set_deadline`] of a located PE.
    pub fn set_deadline_at(&mut self, r: PeRef, kind: DeadlineKind, at: Option<Instant>) -> bool {
        let Some(slot) = self.slot_of(r) else {
            return false;
        };
        self.move_deadline(slot, kind, at);
        self.settle_deadlines();
        true
    }

    /// The PE checksum of an owner's PEs (RFC 5353 section 3.6.2).
    pub fn checksum(&self, owner: ServerId) -> u16 {
        self.checksums
            .get(&owner)
            .copied()
            .unwrap_or_default()
            .value()
    }

    fn refs(
        &self,
        slots: impl Iterator<Item = u32>,
    ) -> impl Iterator<Item = (&PoolHandle, &PoolElementEntry)> {
        slots.map(move |s| {
            let e = self.entries.get(s);
            (self.pool_ref(e.pool).handle(), e)
        })
    }

    /// PEs owned by a registrar.
    pub fn by_owner(
        &self,
        owner: ServerId,
    ) -> impl Iterator<Item = (&PoolHandle, &PoolElementEntry)> + '_ {
        self.refs(self.by_owner.slots(&owner, &self.entries))
    }

    /// PEs registered over a connection.
    pub fn by_connection(
        &self,
        c: ConnId,
    ) -> impl Iterator<Item = (&PoolHandle, &PoolElementEntry)> + '_ {
        self.refs(self.by_connection.slots(&c, &self.entries))
    }

    /// PEs registered by an identity.
    pub fn by_identity<'a>(
        &'a self,
        i: &Identity,
    ) -> impl Iterator<Item = (&'a PoolHandle, &'a PoolElementEntry)> + 'a {
        self.refs(self.by_identity.slots(i, &self.entries))
    }

    /// How many PEs `i` registered (O(1)).
    pub fn count_by_identity(&self, i: &Identity) -> usize {
        self.by_identity.len(i)
    }

    /// How many PEs registered over connection `c` (O(1)).
    pub fn count_by_connection(&self, c: ConnId) -> usize {
        self.by_connection.len(&c)
    }

    /// The keep-alive state of a PE ([`KeepAlive`]), created empty on
    /// first use; `None` if there is no such PE.
    pub fn keep_alive_mut(&mut self, handle: &PoolHandle, id: PeId) -> Option<&mut KeepAlive> {
        let r = self.locate(handle, id)?;
        self.keep_alive_at(r)
    }

    /// Set the ownership epoch of a located PE (a registrar reclaiming
    /// its PEs after it was stopped). Returns whether the PE exists.
    pub fn set_epoch_at(&mut self, r: PeRef, epoch: u64) -> bool {
        let Some(slot) = self.slot_of(r) else {
            return false;
        };
        self.entries.get_mut(slot).epoch = epoch;
        true
    }

    /// [`Handlespace::keep_alive_mut`] of a located PE.
    pub fn keep_alive_at(&mut self, r: PeRef) -> Option<&mut KeepAlive> {
        let slot = self.slot_of(r)?;
        Some(
            self.entries
                .get_mut(slot)
                .keep_alive
                .get_or_insert_with(Default::default),
        )
    }

    /// The earliest deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|(t, _)| t)
    }

    /// Take the deadlines that passed by `now`, earliest first. The PEs
    /// stay registered (a drained one stays drained): the caller decides
    /// (probe, remove).
    pub fn pop_expired(&mut self, now: Instant) -> Vec<Expired> {
        let mut out = Vec::new();
        while let Some((t, tag)) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let (slot, kind) = split_tag(tag);
            let e = self.entries.get_mut(slot);
            *e.deadline_mut(kind) = None;
            // The PE's next deadline takes its place in the queue.
            if let Some((next, kind)) = e.earliest() {
                self.deadlines.push(next, deadline_tag(slot, kind));
            }
            let e = self.entries.get(slot);
            let (pool, identifier) = (e.pool, e.identifier);
            out.push(Expired {
                pool_handle: self.pool_ref(pool).handle().clone(),
                identifier,
                kind,
                pe: PeRef {
                    slot,
                    pool,
                    generation: self.pool_ref(pool).generation,
                    identifier,
                },
            });
            self.settle_deadlines();
        }
        out
    }

    /// One page of a handle table transfer (RFC 5353 section 3.2.3): the
    /// PEs after `after` whose Pool Handle and Pool Element parameters fit
    /// in `max_bytes` (the room a message of the configured maximum size
    /// leaves after its header; at least one PE, so that every page makes
    /// progress), pools in handle order and PEs in identifier order, only
    /// those owned by `owner` when given (the W flag). Starting a page
    /// costs O(log P + log n).
    pub fn table_page(
        &self,
        after: Option<&TableCursor>,
        max_bytes: usize,
        owner: Option<ServerId>,
    ) -> TablePage {
        use std::ops::Bound::{Included, Unbounded};
        let mut pools: Vec<PoolEntry> = Vec::new();
        let mut count = 0;
        let mut bytes = 0;
        let lower = after.map_or(Unbounded, |c| Included(&c.pool_handle));
        for (handle, &pid) in self.pool_ids.range::<PoolHandle, _>((lower, Unbounded)) {
            let skip_to = match after {
                Some(c) if &c.pool_handle == handle => Some(c.identifier),
                _ => None,
            };
            let mut pes = Vec::new();
            for (_, slot) in self.pool_ref(pid).members_after(skip_to) {
                let e = self.entries.get(slot);
                if owner.is_some_and(|o| o != e.home) {
                    continue;
                }
                let pe = e.to_wire();
                // A PE that cannot be encoded could not be sent either:
                // it counts as the whole budget (it goes alone).
                let mut cost = pe.encoded_len().unwrap_or(max_bytes);
                if pes.is_empty() {
                    cost += handle.encoded_len();
                }
                if count > 0 && bytes + cost > max_bytes {
                    if !pes.is_empty() {
                        pools.push(PoolEntry {
                            pool_handle: handle.clone(),
                            pool_elements: pes,
                        });
                    }
                    let next = pools.last().and_then(|p| {
                        p.pool_elements.last().map(|last| TableCursor {
                            pool_handle: p.pool_handle.clone(),
                            identifier: last.identifier,
                        })
                    });
                    return TablePage { pools, next };
                }
                pes.push(pe);
                count += 1;
                bytes += cost;
            }
            if !pes.is_empty() {
                pools.push(PoolEntry {
                    pool_handle: handle.clone(),
                    pool_elements: pes,
                });
            }
        }
        TablePage { pools, next: None }
    }
}

#[cfg(test)]
mod tests;
