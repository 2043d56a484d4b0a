//! The registrar's handlespace: pools by handle, their pool elements, the
//! selection policies, the per-owner PE checksums of RFC 5353 section
//! 3.6.2 and the deadlines (registration lifetimes, keep-alives). Plain
//! data structures: no I/O, time passed in, randomness from an injected
//! PRNG.
//!
//! Work in progress (issue 3): the statistical policy tests, paged
//! iteration for handle table transfers, unreachable-report accounting and
//! the `hsbench` benchmark program are still to come.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
mod fenwick;
mod pool;
pub mod selection;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use rserpool_wire::{PoolElement, PoolHandle};

pub use checksum::PeChecksum;
pub use pool::{Inconsistency, Pool, PoolElementEntry};

/// A connection of the registrar's driver.
pub type ConnId = u64;

/// An authenticated identity (PSK identity or certificate subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub Arc<str>);

/// The PEs a handle resolution may return at most (RSPLIB's cap).
pub const MAX_ITEMS: usize = 128;

/// Handlespace settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// PEs returned when the request has no Handle Resolution option.
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
    pub home: u32,
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
}

/// Result of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new PE.
    New,
    /// An existing PE was updated.
    Updated,
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadlineKind {
    /// The registration lifetime ends.
    Lifetime,
    /// A keep-alive is due (or its answer overdue).
    KeepAlive,
}

/// A deadline that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Pool.
    pub pool_handle: PoolHandle,
    /// PE identifier.
    pub identifier: u32,
    /// Which deadline.
    pub kind: DeadlineKind,
}

type PeKey = (PoolHandle, u32);

/// The handlespace.
#[derive(Debug, Default)]
pub struct Handlespace {
    config: Config,
    pools: HashMap<PoolHandle, Pool>,
    checksums: HashMap<u32, PeChecksum>,
    by_owner: HashMap<u32, HashSet<PeKey>>,
    by_connection: HashMap<ConnId, HashSet<PeKey>>,
    by_identity: HashMap<Identity, HashSet<PeKey>>,
    deadlines: BTreeSet<(Instant, DeadlineKind, PoolHandle, u32)>,
    pe_count: usize,
}

fn index_add<K: std::hash::Hash + Eq>(m: &mut HashMap<K, HashSet<PeKey>>, k: K, v: PeKey) {
    m.entry(k).or_default().insert(v);
}

fn index_remove<K: std::hash::Hash + Eq>(m: &mut HashMap<K, HashSet<PeKey>>, k: &K, v: &PeKey) {
    if let Some(s) = m.get_mut(k) {
        s.remove(v);
        if s.is_empty() {
            m.remove(k);
        }
    }
}

impl Handlespace {
    /// An empty handlespace.
    pub fn new(config: Config) -> Self {
        Handlespace {
            config,
            ..Default::default()
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

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// A pool.
    pub fn pool(&self, handle: &PoolHandle) -> Option<&Pool> {
        self.pools.get(handle)
    }

    /// A PE.
    pub fn find(&self, handle: &PoolHandle, id: u32) -> Option<&PoolElementEntry> {
        self.pools.get(handle)?.get(id)
    }

    /// Register (new) or re-register (update) a PE. Fails, changing
    /// nothing, when the PE does not fit the pool (RFC 5354 causes).
    pub fn register(&mut self, r: Registration) -> Result<Registered, Inconsistency> {
        let id = r.element.identifier;
        if let Some(p) = self.pools.get(&r.pool_handle) {
            p.check(&r.element)?;
        }
        let entry = PoolElementEntry {
            identifier: id,
            home: r.home,
            registration_life: r.element.registration_life,
            user_transport: r.element.user_transport,
            asap_transport: r.element.asap_transport,
            policy: r.element.policy,
            expires: r.expires,
            keep_alive_due: r.keep_alive_due,
            connection: r.connection,
            identity: r.identity,
            distance: r.distance,
            unreachable_reports: Vec::new(),
            counter: 0,
            order: 0,
            pass: 0,
            key: 0,
            slot: 0,
        };
        let handle = r.pool_handle;
        let pool = self
            .pools
            .entry(handle.clone())
            .or_insert_with(|| Pool::new(handle.clone()));
        let old = pool.upsert(entry);
        if let Some(o) = &old {
            self.unindex(&handle, o);
        } else {
            self.pe_count += 1;
        }
        let e = self.pools.get(&handle).and_then(|p| p.get(id)).cloned();
        if let Some(e) = e {
            self.index(&handle, &e);
        }
        Ok(if old.is_some() {
            Registered::Updated
        } else {
            Registered::New
        })
    }

    /// Remove a PE. Returns it if it was there.
    pub fn deregister(&mut self, handle: &PoolHandle, id: u32) -> Option<PoolElementEntry> {
        let pool = self.pools.get_mut(handle)?;
        let e = pool.remove(id)?;
        if pool.is_empty() {
            self.pools.remove(handle);
        }
        self.pe_count -= 1;
        self.unindex(handle, &e);
        Some(e)
    }

    fn index(&mut self, handle: &PoolHandle, e: &PoolElementEntry) {
        let key = (handle.clone(), e.identifier);
        self.checksums
            .entry(e.home)
            .or_default()
            .add(handle, e.identifier);
        index_add(&mut self.by_owner, e.home, key.clone());
        if let Some(c) = e.connection {
            index_add(&mut self.by_connection, c, key.clone());
        }
        if let Some(i) = &e.identity {
            index_add(&mut self.by_identity, i.clone(), key.clone());
        }
        if let Some(t) = e.expires {
            self.deadlines
                .insert((t, DeadlineKind::Lifetime, handle.clone(), e.identifier));
        }
        if let Some(t) = e.keep_alive_due {
            self.deadlines
                .insert((t, DeadlineKind::KeepAlive, handle.clone(), e.identifier));
        }
    }

    fn unindex(&mut self, handle: &PoolHandle, e: &PoolElementEntry) {
        let key = (handle.clone(), e.identifier);
        if let Some(c) = self.checksums.get_mut(&e.home) {
            c.remove(handle, e.identifier);
        }
        index_remove(&mut self.by_owner, &e.home, &key);
        if let Some(c) = e.connection {
            index_remove(&mut self.by_connection, &c, &key);
        }
        if let Some(i) = &e.identity {
            index_remove(&mut self.by_identity, i, &key);
        }
        if let Some(t) = e.expires {
            self.deadlines
                .remove(&(t, DeadlineKind::Lifetime, handle.clone(), e.identifier));
        }
        if let Some(t) = e.keep_alive_due {
            self.deadlines
                .remove(&(t, DeadlineKind::KeepAlive, handle.clone(), e.identifier));
        }
    }

    /// Handle resolution: up to `items` PEs (the configured default when
    /// `None`, capped at [`MAX_ITEMS`]) chosen by the pool's policy.
    pub fn resolve(
        &mut self,
        handle: &PoolHandle,
        items: Option<u32>,
        rng: &mut impl Rng,
    ) -> Option<Vec<PoolElement>> {
        let n = items
            .map_or(self.config.default_items, |n| n as usize)
            .min(MAX_ITEMS);
        let pool = self.pools.get_mut(handle)?;
        let ids = pool.select(n, rng);
        Some(
            ids.iter()
                .filter_map(|id| pool.get(*id).map(PoolElementEntry::to_wire))
                .collect(),
        )
    }

    /// The PE checksum of an owner's PEs (RFC 5353 section 3.6.2).
    pub fn checksum(&self, owner: u32) -> u16 {
        self.checksums
            .get(&owner)
            .copied()
            .unwrap_or_default()
            .value()
    }

    /// PEs owned by a registrar.
    pub fn by_owner(&self, owner: u32) -> impl Iterator<Item = &(PoolHandle, u32)> {
        self.by_owner.get(&owner).into_iter().flatten()
    }

    /// PEs registered over a connection.
    pub fn by_connection(&self, c: ConnId) -> impl Iterator<Item = &(PoolHandle, u32)> {
        self.by_connection.get(&c).into_iter().flatten()
    }

    /// PEs registered by an identity.
    pub fn by_identity(&self, i: &Identity) -> impl Iterator<Item = &(PoolHandle, u32)> {
        self.by_identity.get(i).into_iter().flatten()
    }

    /// The earliest deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|d| d.0)
    }

    /// Take the deadlines that passed by `now`, earliest first. The PEs
    /// stay registered: the caller decides (probe, remove).
    pub fn pop_expired(&mut self, now: Instant) -> Vec<Expired> {
        let mut out = Vec::new();
        while let Some(first) = self.deadlines.first() {
            if first.0 > now {
                break;
            }
            let Some((_, kind, pool_handle, identifier)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(e) = self
                .pools
                .get_mut(&pool_handle)
                .and_then(|p| p.pes.get_mut(&identifier))
            {
                match kind {
                    DeadlineKind::Lifetime => e.expires = None,
                    DeadlineKind::KeepAlive => e.keep_alive_due = None,
                }
            }
            out.push(Expired {
                pool_handle,
                identifier,
                kind,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
