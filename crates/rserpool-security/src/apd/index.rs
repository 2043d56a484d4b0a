//! Owns the matcher's index: for each role and each namespace scope, the
//! entries by the shape of their identity pattern, so that a decision
//! looks at the entries whose identity can match instead of scanning the
//! list.
//!
//! * exact values: a hash map (value → entries);
//! * prefixes (`pe-*`) and suffixes (`*.example.net`): a hash map keyed
//!   by the prefix (suffix), probed once for each distinct prefix
//!   (suffix) length the database has, up to the value's length;
//! * addresses and ranges (namespace `ip`): a hash map keyed by (network,
//!   length), probed once for each distinct prefix length;
//! * `*`: a list, every one a candidate;
//! * general globs (`a*b`, `pe-?`, `?.example.net`): with the prefixes
//!   under the literal text before their first wildcard, else with the
//!   suffixes under the text after their last one; only globs that both
//!   start and end with a wildcard (`*a*`, `?b*`) are in a list that
//!   every request of their role and namespace scans.
//!
//! A request's identity looks in the slots of its own namespace,
//! `authenticated` (unless anonymous) and `any` of its role. Each source
//! is a list of entry positions in ascending order; the lists are merged
//! lazily in entry order, and the first candidate that decides (the same
//! [`Entry::decides`] the reference scan uses: identity, role, pool and
//! address) is the answer, so the index only has to find a superset of
//! the entries that match, never to decide.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::entry::{Action, Entry};
use super::net::mask;
use super::pattern::{NamespaceScope, QueryIdentity, Shape};
use super::scope::Role;
use super::Request;
use crate::identity::Namespace;

/// Entries under one key: positions, ascending.
type Ids = Vec<u32>;

#[derive(Debug, Default, Clone)]
struct Affix {
    /// The distinct key lengths (bytes), ascending.
    lens: Vec<usize>,
    map: FxHashMap<Box<[u8]>, Ids>,
}

impl Affix {
    fn insert(&mut self, key: &str, id: u32) {
        let b = key.as_bytes();
        if let Err(at) = self.lens.binary_search(&b.len()) {
            self.lens.insert(at, b.len());
        }
        self.map.entry(b.into()).or_default().push(id);
    }

    /// The entries whose prefix (`suffix == false`) or suffix `value` has.
    fn find<'s>(&'s self, value: &[u8], suffix: bool, out: &mut Sources<'s>) {
        for &l in self.lens.iter().take_while(|&&l| l <= value.len()) {
            let key = if suffix {
                &value[value.len() - l..]
            } else {
                &value[..l]
            };
            if let Some(ids) = self.map.get(key) {
                out.push(ids);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Nets {
    v4: Vec<u8>,
    v6: Vec<u8>,
    map: FxHashMap<(IpAddr, u8), Ids>,
}

impl Nets {
    fn insert(&mut self, network: IpAddr, len: u8, id: u32) {
        let lens = if network.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        if let Err(at) = lens.binary_search(&len) {
            lens.insert(at, len);
        }
        self.map.entry((network, len)).or_default().push(id);
    }

    fn find<'s>(&'s self, ip: IpAddr, out: &mut Sources<'s>) {
        let lens = if ip.is_ipv4() { &self.v4 } else { &self.v6 };
        for &l in lens {
            if let Some(ids) = self.map.get(&(mask(ip, l), l)) {
                out.push(ids);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Slot {
    any: Ids,
    exact: FxHashMap<Box<str>, Ids>,
    prefix: Affix,
    suffix: Affix,
    nets: Nets,
    globs: Ids,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.any.is_empty()
            && self.exact.is_empty()
            && self.prefix.lens.is_empty()
            && self.suffix.lens.is_empty()
            && self.nets.map.is_empty()
            && self.globs.is_empty()
    }
}

/// Candidate lists kept on the stack (beyond: on the heap).
const FIXED: usize = 16;

/// The candidate lists of one request.
struct Sources<'s> {
    fixed: [&'s [u32]; FIXED],
    n: usize,
    more: Vec<&'s [u32]>,
}

impl<'s> Sources<'s> {
    fn new() -> Sources<'s> {
        Sources {
            fixed: [&[]; FIXED],
            n: 0,
            more: Vec::new(),
        }
    }

    fn push(&mut self, ids: &'s [u32]) {
        if ids.is_empty() {
            return;
        }
        if self.n < FIXED {
            self.fixed[self.n] = ids;
            self.n += 1;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.fixed);
            }
            self.more.push(ids);
        }
    }

    fn lists(&mut self) -> &mut [&'s [u32]] {
        if self.more.is_empty() {
            &mut self.fixed[..self.n]
        } else {
            &mut self.more
        }
    }
}

/// The index of a database (rebuilt with every change).
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    /// `[role][namespace scope]`.
    slots: [[Slot; 7]; 4],
}

impl Index {
    pub(crate) fn new(entries: &[Entry]) -> Index {
        let mut index = Index::default();
        for (i, e) in entries.iter().enumerate() {
            let id = u32::try_from(i).expect("fewer than 2^32 entries");
            for role in e.roles().iter() {
                let slot = &mut index.slots[role.slot()][e.namespace().slot()];
                match e.identity().shape() {
                    Shape::Any => slot.any.push(id),
                    Shape::Exact(v) => slot.exact.entry(v.as_str().into()).or_default().push(id),
                    Shape::Prefix(p) => slot.prefix.insert(p, id),
                    Shape::Suffix(s) => slot.suffix.insert(s, id),
                    Shape::Net(n) => slot.nets.insert(n.network(), n.prefix_len(), id),
                    // A glob under its literal prefix or suffix (a
                    // superset: the entry itself checks the rest); only
                    // globs that start and end with a wildcard are
                    // scanned.
                    Shape::Glob { prefix, .. } if !prefix.is_empty() => {
                        slot.prefix.insert(prefix, id)
                    }
                    Shape::Glob { suffix, .. } if !suffix.is_empty() => {
                        slot.suffix.insert(suffix, id)
                    }
                    Shape::Glob { .. } => slot.globs.push(id),
                }
            }
        }
        index
    }

    /// The first entry of `entries` (which this index was built from)
    /// that decides `req`.
    pub(crate) fn decide(&self, entries: &[Entry], req: &Request<'_>) -> Option<(usize, Action)> {
        let role: &[Slot; 7] = &self.slots[req.role.slot()];
        let id = QueryIdentity::new(req.peer);
        let own = NamespaceScope::of(id.namespace);
        let mut sources = Sources::new();
        let authenticated = id.namespace != Namespace::Anonymous;
        for scope in [own, NamespaceScope::Authenticated, NamespaceScope::Any] {
            if scope == NamespaceScope::Authenticated && !authenticated {
                continue;
            }
            let slot = &role[scope.slot()];
            if slot.is_empty() {
                continue;
            }
            sources.push(&slot.any);
            if let Some(ids) = slot.exact.get(&*id.value) {
                sources.push(ids);
            }
            let v = id.value.as_bytes();
            slot.prefix.find(v, false, &mut sources);
            slot.suffix.find(v, true, &mut sources);
            if let Some(ip) = id.ip {
                slot.nets.find(ip, &mut sources);
            }
            sources.push(&slot.globs);
        }
        let lists = sources.lists();
        // Merge in entry order; the lists are disjoint (an entry sits in
        // one slot per role), so the smallest head is the next candidate.
        loop {
            let (k, &i) = lists
                .iter()
                .enumerate()
                .filter_map(|(k, l)| l.first().map(|i| (k, i)))
                .min_by_key(|(_, &i)| i)?;
            lists[k] = &lists[k][1..];
            let i = i as usize;
            if let Some(a) = entries[i].decides(req, &id) {
                return Some((i, a));
            }
        }
    }
}

/// The reference: the first entry that decides, by a scan of the list.
pub(crate) fn scan(entries: &[Entry], req: &Request<'_>) -> Option<(usize, Action)> {
    let id = QueryIdentity::new(req.peer);
    entries
        .iter()
        .enumerate()
        .find_map(|(i, e)| e.decides(req, &id).map(|a| (i, a)))
}

/// Roles are used as indices into the slots.
const _: () = assert!(Role::ALL.len() == 4 && NamespaceScope::ALL.len() == 7);
