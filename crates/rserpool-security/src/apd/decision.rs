//! Owns the questions and answers of the database: [`Request`] (who wants
//! to do what, where), [`Decision`] (allowed or denied, and by which
//! entry: [`DecidedBy`], [`EntryRef`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::net::canonical;
use super::scope::Role;
use crate::identity::PeerIdentity;

/// A question to the database: may `peer`, connected from `own`, act as
/// `role` in `pool` for `address`?
///
/// `pool` and `address` may be open (`None`) when they are not known yet
/// (accepting a connection): see [`super::Apd::decide`] for what that
/// means. The address is, for role `pe`, a transport address it
/// registers; for the other roles, the connection's source address.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asks.
    pub peer: &'a PeerIdentity,
    /// As what.
    pub role: Role,
    /// The connection's source address: what `own` means (for a handle
    /// update from a peer registrar, the PE's ASAP transport address).
    pub own: IpAddr,
    /// The pool (`None`: any, not known yet).
    pub pool: Option<&'a [u8]>,
    /// The address (`None`: any, not known yet).
    pub address: Option<IpAddr>,
}

impl<'a> Request<'a> {
    /// A request with open pool and address.
    pub fn new(peer: &'a PeerIdentity, role: Role, own: IpAddr) -> Request<'a> {
        Request {
            peer,
            role,
            own: canonical(own),
            pool: None,
            address: None,
        }
    }

    /// The same request for `pool`.
    pub fn pool(mut self, pool: &'a [u8]) -> Request<'a> {
        self.pool = Some(pool);
        self
    }

    /// The same request for `address`.
    pub fn address(mut self, address: IpAddr) -> Request<'a> {
        self.address = Some(canonical(address));
        self
    }

    /// The addresses in canonical form (IPv4-mapped IPv6 as IPv4).
    pub(crate) fn canonical(mut self) -> Request<'a> {
        self.own = canonical(self.own);
        self.address = self.address.map(canonical);
        self
    }
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// An entry, named: its position when the decision was made and its name
/// (stable across moves; the name is what to report).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryRef {
    /// Its position (from 0).
    pub index: usize,
    /// Its name.
    pub name: Arc<str>,
}

/// What decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DecidedBy {
    /// This entry matched.
    Entry(EntryRef),
    /// No entry matched: the list's closing deny (a database always ends
    /// in one, written or not).
    Closing,
}

/// The database's answer to a [`Request`] (or to a registration, one
/// request per address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Allowed or denied.
    pub verdict: Verdict,
    /// What decided.
    pub by: DecidedBy,
    /// For a registration: the address the decision is about (a denial:
    /// the first address denied; an allow: the first address, whose
    /// entry is named). `None` otherwise.
    pub address: Option<IpAddr>,
}

impl Decision {
    /// Whether it allows.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// The entry that decided (`None`: the closing deny).
    pub fn entry(&self) -> Option<&EntryRef> {
        match &self.by {
            DecidedBy::Entry(e) => Some(e),
            DecidedBy::Closing => None,
        }
    }

    /// The closing deny: what no entry allows.
    pub fn closing() -> Decision {
        Decision {
            verdict: Verdict::Deny,
            by: DecidedBy::Closing,
            address: None,
        }
    }
}

/// `allowed by entry 3 "echo-pes"`, `denied: no entry matches (closing
/// deny)`, with ` for 10.0.0.9` when it is about an address.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Allow => "allowed",
            Verdict::Deny => "denied",
        };
        match &self.by {
            DecidedBy::Entry(e) => write!(f, "{verdict} by entry {} {:?}", e.index, &*e.name)?,
            DecidedBy::Closing => write!(f, "{verdict}: no entry matches (closing deny)")?,
        }
        if let Some(a) = self.address {
            write!(f, " for {a}")?;
        }
        Ok(())
    }
}
