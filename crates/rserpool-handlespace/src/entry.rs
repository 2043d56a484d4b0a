//! Pool element entries and the slab that holds them: one vector for the
//! whole handlespace, so that a PE costs its entry and a few 32-bit slot
//! numbers in the indices, not a hash map bucket per index.

use std::time::Instant;

use rserpool_wire::{PeId, Policy, PoolElement, ServerId, Transport};

use crate::index::Links;
use crate::{ConnId, DeadlineKind, Identity};

/// The keep-alive state of a PE at its home registrar (RFC 5352 3.5,
/// RFC 5355 2.13 and 2.14). The handlespace only keeps it with the PE;
/// the registrar gives it its meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepAlive {
    /// A keep-alive is out and unanswered (or the PE's connection
    /// closed): when the keep-alive deadline passes the PE is removed.
    pub outstanding: bool,
    /// The outstanding keep-alive checks unreachable reports.
    pub reported: bool,
    /// When keep-alives were sent recently (the per-PE limit).
    pub sent: Vec<Instant>,
    /// Unreachable reports: reporter and time, one per reporter.
    pub reports: Vec<(Identity, Instant)>,
}

/// A PE as the handlespace keeps it.
#[derive(Debug, Clone)]
pub struct PoolElementEntry {
    /// PE identifier.
    pub identifier: PeId,
    /// Owning (home) registrar.
    pub home: ServerId,
    /// Registration life as registered.
    pub registration_life: i32,
    /// Distance measured by the registrar (DPF policies).
    pub distance: u32,
    /// Transport PUs use.
    pub user_transport: Transport,
    /// ASAP transport, if registered.
    pub asap_transport: Option<Transport>,
    /// Policy and its values.
    pub policy: Policy,
    /// When the registration expires (None: never).
    pub expires: Option<Instant>,
    /// When a keep-alive is next due (or its answer overdue).
    pub keep_alive_due: Option<Instant>,
    /// When the PE first registered (re-registrations keep it).
    pub registered_at: Instant,
    /// Drained by an operator: it stays registered (keep-alives and
    /// re-registrations go on) but no handle resolution hands it out, by
    /// any policy, until it is undrained ([`crate::Handlespace::drain`]).
    pub drained: bool,
    /// When a drain times out (a [`DeadlineKind::Drain`] deadline: the
    /// caller removes the PE then); `None` without a timeout or a drain.
    pub drain_ends: Option<Instant>,
    /// Connection it registered over (on the owning registrar).
    pub connection: Option<ConnId>,
    /// Identity that registered it.
    pub identity: Option<Identity>,
    /// Ownership epoch ([`crate::Registration::epoch`]).
    pub epoch: u64,
    /// What its home registrar keeps to check that it is alive (RFC 5352
    /// 3.5): created on first use ([`crate::Handlespace::keep_alive_mut`]),
    /// gone with the entry; re-registrations leave it alone.
    pub keep_alive: Option<Box<KeepAlive>>,
    /// Its places in the owner, connection and identity indices.
    pub(crate) links: Links,
    /// The pool it belongs to.
    pub(crate) pool: u32,
    /// Degradation counter (RFC 5356 5.2.2).
    pub(crate) counter: u32,
    /// Fenwick slot (random engine).
    pub(crate) weight_slot: u32,
    /// Sort key (ordered engine; the pass for weighted round robin).
    pub(crate) key: u64,
    /// Rotation order among equal keys.
    pub(crate) order: u64,
}

impl PoolElementEntry {
    /// The deadline of one kind.
    pub fn deadline(&self, kind: DeadlineKind) -> Option<Instant> {
        match kind {
            DeadlineKind::Lifetime => self.expires,
            DeadlineKind::KeepAlive => self.keep_alive_due,
            DeadlineKind::Drain => self.drain_ends,
        }
    }

    /// The earliest of its deadlines, with its kind (of equal ones, the
    /// first kind in [`DeadlineKind`]'s order): the one the handlespace
    /// queues for it.
    pub(crate) fn earliest(&self) -> Option<(Instant, DeadlineKind)> {
        let mut best = self.expires.map(|t| (t, DeadlineKind::Lifetime));
        for (at, kind) in [
            (self.keep_alive_due, DeadlineKind::KeepAlive),
            (self.drain_ends, DeadlineKind::Drain),
        ] {
            if let Some(t) = at {
                if best.map_or(true, |(b, _)| t < b) {
                    best = Some((t, kind));
                }
            }
        }
        best
    }

    pub(crate) fn deadline_mut(&mut self, kind: DeadlineKind) -> &mut Option<Instant> {
        match kind {
            DeadlineKind::Lifetime => &mut self.expires,
            DeadlineKind::KeepAlive => &mut self.keep_alive_due,
            DeadlineKind::Drain => &mut self.drain_ends,
        }
    }

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

/// Entries per chunk of the slab.
const CHUNK: usize = 1024;

/// The slab of entries, addressed by 32-bit slots that are reused. It
/// grows by fixed chunks, so that growing never moves the entries already
/// there (a doubling vector would copy them all, a pause of milliseconds
/// at a million PEs).
#[derive(Debug, Default)]
pub(crate) struct Entries {
    chunks: Vec<Vec<Option<PoolElementEntry>>>,
    free: Vec<u32>,
}

/// Chunk and index within it of a slot.
fn place(slot: u32) -> (usize, usize) {
    (slot as usize / CHUNK, slot as usize % CHUNK)
}

impl Entries {
    pub fn insert(&mut self, e: PoolElementEntry) -> u32 {
        if let Some(s) = self.free.pop() {
            let (c, i) = place(s);
            self.chunks[c][i] = Some(e);
            return s;
        }
        if self.chunks.last().map_or(true, |c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let c = self.chunks.len() - 1;
        let chunk = &mut self.chunks[c];
        chunk.push(Some(e));
        (c * CHUNK + chunk.len() - 1) as u32
    }

    pub fn remove(&mut self, slot: u32) -> Option<PoolElementEntry> {
        let (c, i) = place(slot);
        let e = self.chunks.get_mut(c)?.get_mut(i)?.take()?;
        self.free.push(slot);
        Some(e)
    }

    /// The entry in a slot, if occupied.
    #[inline]
    pub fn try_get(&self, slot: u32) -> Option<&PoolElementEntry> {
        let (c, i) = place(slot);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    /// The entry in a slot that the caller knows to be occupied (slots come
    /// only from the handlespace's own indices).
    #[inline]
    pub fn get(&self, slot: u32) -> &PoolElementEntry {
        match self.try_get(slot) {
            Some(e) => e,
            None => unreachable!("handlespace index points at an empty slot {slot}"),
        }
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut PoolElementEntry {
        let (c, i) = place(slot);
        match self.chunks.get_mut(c).and_then(|c| c.get_mut(i)) {
            Some(Some(e)) => e,
            _ => unreachable!("handlespace index points at an empty slot {slot}"),
        }
    }
}
