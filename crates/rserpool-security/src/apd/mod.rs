//! The authorised peer database (APD; DESIGN section 4, after the GIST
//! peer authorisation text): who may do what, where. [`Apd`] holds an
//! ordered list of [`Entry`]s; each has
//!
//! * an identity pattern and the namespace it applies to
//!   ([`NamespaceScope`]: `psk`, `cert` (subject common name), `dns`
//!   (dNSName subject-alt-name), `ip` (iPAddress subject-alt-name),
//!   `anonymous`, `authenticated` (all but anonymous) or `any`);
//! * a scope: the roles ([`Role`]: `pe`, `pu`, `registrar`, `admin`), the
//!   pools ([`PoolScope`]: exact handles or prefixes, `*` for all) and
//!   the addresses ([`AddressScope`]: `own`, `any`, addresses, CIDR
//!   ranges);
//! * allow or deny ([`Action`]).
//!
//! # Matching
//!
//! A [`Request`] says who ([`PeerIdentity`]), as what role, from which
//! source address (`own`), in which pool, for which address. The entries
//! are tried in order; the first whose identity, role, pool and address
//! all match decides ([`Apd::decide`]). A request no entry matches is
//! denied: the list always ends in a closing wildcard deny
//! ([`DecidedBy::Closing`]), whether the file writes one or not. A
//! [`Decision`] names the entry (position and name) that decided, so
//! that what the registrar removes after a change can be reported
//! exactly.
//!
//! Which address is checked: for role `pe`, each transport address a PE
//! registers ([`Apd::decide_registration`] asks once per address, and
//! every one must be allowed); for the other roles, the connection's
//! source address, so `own` always holds there and ranges say where the
//! peer may connect from.
//!
//! # Open pools and addresses: the connection check
//!
//! When a connection is accepted ([`Apd::decide_connection`]) the pool is
//! not known, nor, for a PE, the addresses it will register. Such a
//! request leaves them open, and then:
//!
//! * an **allow** entry decides if it *could* match: its identity and
//!   role match (and the address, when it is known);
//! * a **deny** entry decides only if it matches *unconditionally*: its
//!   identity and role match and its scope covers every pool (`*`) and
//!   every address (`any`, or `0.0.0.0/0` with `::/0`) left open;
//! * any other deny entry is passed over.
//!
//! So identity X may connect as `pe` iff, in order, some entry that could
//! allow X as `pe` comes before every entry that denies X as `pe`
//! unconditionally. The check is sound for refusals: a connection it
//! refuses could have nothing allowed (every later request with the pool
//! and the addresses filled in is denied too; tested). A connection it
//! admits may still have each request refused, one by one.
//!
//! # Where it applies
//!
//! Accepting a connection: [`Apd::decide_connection`] with the role of
//! the listener (`registrar` for an ENRP peer). Every registration:
//! [`Apd::decide_registration`]. Every handle resolution:
//! [`Apd::decide_resolution`]; every unreachable report:
//! [`Apd::decide_report`] (both role `pu`). A cluster applies the same
//! to each handle update from a peer ([`Apd::decide_handle_update`]: the
//! peer as `registrar` for the pool, and the PE's registrant as `pe`) and
//! to each peer association (role `registrar`).
//!
//! # Without a database
//!
//! [`Apd::permissive`] is what a registrar had before the database: any
//! authenticated identity may be `pe`, `pu` and `registrar` in any pool
//! (registering its own address only, unless foreign addresses are
//! allowed), an anonymous client may be `pu`; [`Apd::origin`] says so in
//! one line to log. [`Apd::strict`] builds the strict starting file from
//! keys (what `rsp apd init` writes).
//!
//! # Changes
//!
//! [`Apd::apply`] (list, add, insert, modify, move, delete; see
//! [`Change`]) validates every change before it applies: an invalid one
//! changes nothing and says why ([`ApdError`], with the line and key path
//! when it comes from a text).
//!
//! # Cost
//!
//! Decisions do not scan the list: see the `index` module: exact
//! identities by hash, prefixes and suffixes by hash at each length in
//! use, `ip` ranges by hash at each prefix length in use, `*` and general
//! globs in lists (only globs are matched one by one). Each change
//! rebuilds the index (linear in the entries).

mod change;
mod decision;
mod defaults;
mod entry;
mod error;
mod file;
mod index;
mod net;
mod pattern;
mod scope;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::Path;

pub use change::{Change, EntrySelector};
pub use decision::{DecidedBy, Decision, EntryRef, Request, Verdict};
pub use defaults::{Grant, Origin, CLOSING_DENY, PERMISSIVE_ANONYMOUS, PERMISSIVE_AUTHENTICATED};
pub use entry::{Action, Entry, EntrySpec, MAX_NAME_LEN};
pub use error::{ApdError, KeyPath, Problem};
pub use net::{IpNet, NetError};
pub use pattern::{IdentityPattern, NamespaceScope, PatternError, UnknownNamespace};
pub use scope::{
    AddressItem, AddressScope, PoolError, PoolPattern, PoolScope, Role, RoleSet, UnknownRole,
};

use crate::identity::PeerIdentity;
use index::Index;

/// The most entries a database holds: a bound on what one file, or one
/// admin token holder adding entry after entry, can make a registrar
/// keep and index (each change rebuilds the index, linear in the
/// entries). A file holds fewer when its entries are long: it is at most
/// [`crate::MAX_FILE_LEN`] bytes ([`Apd::save`] refuses more).
pub const MAX_ENTRIES: usize = 10_000;

/// The authorised peer database: entries in order, and their index.
#[derive(Debug, Clone)]
pub struct Apd {
    entries: Vec<Entry>,
    index: Index,
    origin: Origin,
}

impl Apd {
    /// A database of `entries` (names must be unique).
    pub fn new(entries: Vec<Entry>) -> Result<Apd, ApdError> {
        Apd::build(entries, Origin::Configured)
    }

    pub(crate) fn build(entries: Vec<Entry>, origin: Origin) -> Result<Apd, ApdError> {
        if entries.len() > MAX_ENTRIES {
            return Err(ApdError::TooManyEntries {
                entries: entries.len(),
                max: MAX_ENTRIES,
            });
        }
        check_names(entries.iter().map(|e| (e.name(), None)), None)?;
        Ok(Apd {
            index: Index::new(&entries),
            entries,
            origin,
        })
    }

    /// The empty database: everything is denied.
    pub fn empty() -> Apd {
        Apd {
            entries: Vec::new(),
            index: Index::default(),
            origin: Origin::Configured,
        }
    }

    /// The database of a TOML text ([`Apd::to_toml`]'s format).
    pub fn from_toml(text: &str) -> Result<Apd, ApdError> {
        let read = file::read_entries(text)?;
        check_names(
            read.iter().map(|(e, at)| (e.name(), Some(at.start))),
            Some(text),
        )?;
        Apd::new(read.into_iter().map(|(e, _)| e).collect())
    }

    /// The database in the file at `path` (a regular file of at most
    /// [`crate::MAX_FILE_LEN`] bytes); errors name the file.
    pub fn load(path: &Path) -> Result<Apd, ApdError> {
        let in_file = |error| ApdError::File {
            path: path.to_owned(),
            error: Box::new(error),
        };
        let bytes = crate::read_credential_file(path).map_err(|e| in_file(e.into()))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("");
            in_file(ApdError::Encoding {
                line: valid.matches('\n').count() + 1,
            })
        })?;
        Apd::from_toml(text).map_err(in_file)
    }

    /// Write it to `path` as [`Apd::to_toml`] (mode 0644; with
    /// [`crate::Existing::Replace`] the new file is renamed over the old,
    /// so a reader sees the old or the new, never half). A text longer
    /// than [`Apd::load`] reads ([`crate::MAX_FILE_LEN`]) is refused and
    /// nothing is written.
    pub fn save(&self, path: &Path, existing: crate::Existing) -> Result<(), ApdError> {
        let text = self.to_toml();
        let in_file = |error| ApdError::File {
            path: path.to_owned(),
            error: Box::new(error),
        };
        let len = u64::try_from(text.len()).unwrap_or(u64::MAX);
        if len > crate::MAX_FILE_LEN {
            return Err(in_file(ApdError::Read(
                crate::SecurityError::FileTooLarge {
                    path: path.to_owned(),
                    size: len,
                    limit: crate::MAX_FILE_LEN,
                },
            )));
        }
        crate::write_public_file(path, text.as_bytes(), existing).map_err(|e| in_file(e.into()))
    }

    /// Its TOML text: every key written out, so it reads back to the same
    /// entries.
    pub fn to_toml(&self) -> String {
        file::write(&self.entries)
    }

    /// Its entries, in order (the `list` change).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries (and denies everything).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry named `name` and its position.
    pub fn find(&self, name: &str) -> Option<(usize, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.name() == name)
    }

    /// Where it came from, for one line in the log.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The decision on `req`: the first entry that decides it (pool and
    /// address may be open; see the module documentation), or the
    /// closing deny.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let req = req.canonical();
        self.decision(self.index.decide(&self.entries, &req))
    }

    /// [`Apd::decide`] by a linear scan of the entries: the reference the
    /// index is tested against (same answers, slower).
    pub fn decide_by_scan(&self, req: &Request<'_>) -> Decision {
        let req = req.canonical();
        self.decision(index::scan(&self.entries, &req))
    }

    fn decision(&self, found: Option<(usize, Action)>) -> Decision {
        match found {
            None => Decision::closing(),
            Some((index, action)) => Decision {
                verdict: match action {
                    Action::Allow => Verdict::Allow,
                    Action::Deny => Verdict::Deny,
                },
                by: DecidedBy::Entry(EntryRef {
                    index,
                    name: self.entries[index].shared_name().clone(),
                }),
                address: None,
            },
        }
    }

    /// May `peer`, connected from `source`, connect as `role`? The pool
    /// is open; the address too for `pe` (the addresses it will register
    /// are not known), for the other roles it is `source`.
    pub fn decide_connection(&self, peer: &PeerIdentity, role: Role, source: IpAddr) -> Decision {
        let req = Request::new(peer, role, source);
        let req = if role == Role::Pe {
            req
        } else {
            req.address(source)
        };
        self.decide(&req)
    }

    /// May `peer`, connected from `own`, register in `pool` with these
    /// transport addresses? Each address is one request; the first denied
    /// one denies (the decision names it). Allowed, the decision names
    /// the entry that allowed the first address. No address: the
    /// address is open.
    pub fn decide_registration(
        &self,
        peer: &PeerIdentity,
        own: IpAddr,
        pool: &[u8],
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> Decision {
        let req = Request::new(peer, Role::Pe, own).pool(pool);
        let mut first: Option<Decision> = None;
        for a in addresses {
            let mut d = self.decide(&req.address(a));
            d.address = Some(net::canonical(a));
            if !d.is_allowed() {
                return d;
            }
            first.get_or_insert(d);
        }
        first.unwrap_or_else(|| self.decide(&req))
    }

    /// May `peer`, connected from `source`, resolve `pool` (see it)?
    pub fn decide_resolution(&self, peer: &PeerIdentity, source: IpAddr, pool: &[u8]) -> Decision {
        self.decide(
            &Request::new(peer, Role::Pu, source)
                .pool(pool)
                .address(source),
        )
    }

    /// May `peer`, connected from `source`, report a PE of `pool`
    /// unreachable? (The same question as a resolution: role `pu`.)
    pub fn decide_report(&self, peer: &PeerIdentity, source: IpAddr, pool: &[u8]) -> Decision {
        self.decide_resolution(peer, source, pool)
    }

    /// May peer registrar `peer`, connected from `source`, tell us about
    /// a PE of `pool` that `registrant` registered from `registrant_own`
    /// (its ASAP transport address) with these addresses? First the peer
    /// as `registrar` for the pool, then the registrant as `pe` (as if it
    /// had registered here); the first denial decides.
    pub fn decide_handle_update(
        &self,
        peer: &PeerIdentity,
        source: IpAddr,
        pool: &[u8],
        registrant: &PeerIdentity,
        registrant_own: IpAddr,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> Decision {
        let d = self.decide(
            &Request::new(peer, Role::Registrar, source)
                .pool(pool)
                .address(source),
        );
        if !d.is_allowed() {
            return d;
        }
        self.decide_registration(registrant, registrant_own, pool, addresses)
    }
}

impl Default for Apd {
    /// The empty database (everything denied).
    fn default() -> Apd {
        Apd::empty()
    }
}

/// Names must be unique: the first repeated one is an error at the second
/// entry (with its line, when `text` has the entries' name offsets).
fn check_names<'a>(
    names: impl Iterator<Item = (&'a str, Option<usize>)>,
    text: Option<&str>,
) -> Result<(), ApdError> {
    let mut seen: rustc_hash::FxHashMap<&str, usize> = Default::default();
    for (i, (name, at)) in names.enumerate() {
        if let Some(&first) = seen.get(name) {
            return Err(ApdError::Invalid {
                line: text.zip(at).map(|(t, o)| error::line_column(t, o).0),
                key: KeyPath::entry(Some(i)).key("name"),
                problem: Box::new(Problem::DuplicateName {
                    name: name.to_owned(),
                    first,
                }),
            });
        }
        seen.insert(name, i);
    }
    Ok(())
}
