//! Owns [`Entry`] (one validated line of the database: identity pattern,
//! scope, allow or deny), [`Action`], [`EntrySpec`] (an entry as plain
//! strings, the form commands and files carry) and the validation that
//! turns the one into the other, naming the key of every problem.
//!
//! Defaults: `pools` is every pool (`["*"]`); `addresses` is `["own"]`
//! for an allow and `["any"]` for a deny (each the narrower choice);
//! `identity` may be left out only in namespace `anonymous` (`*`).

use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{line_column, ApdError, KeyPath, Problem};
use super::pattern::{IdentityPattern, NamespaceScope, QueryIdentity};
use super::scope::{AddressScope, PoolScope, Role, RoleSet};
use super::Request;

/// Whether an entry grants or refuses what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Grants (`allow`).
    Allow,
    /// Refuses (`deny`).
    Deny,
}

impl Action {
    /// Its name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the database, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    name: Arc<str>,
    action: Action,
    namespace: NamespaceScope,
    identity: IdentityPattern,
    roles: RoleSet,
    pools: PoolScope,
    addresses: AddressScope,
    comment: Option<String>,
}

/// Longest entry name.
pub const MAX_NAME_LEN: usize = 200;

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.bytes().all(|b| b.is_ascii_digit())
}

impl Entry {
    /// An entry with every pool and the default addresses of its action
    /// (an allow: `own`; a deny: `any`). `identity` is parsed for
    /// `namespace`. A name is 1 to [`MAX_NAME_LEN`] letters, digits, `.`,
    /// `_` or `-`, and not only digits (a number is a position).
    pub fn new(
        name: &str,
        action: Action,
        namespace: NamespaceScope,
        identity: &str,
        roles: RoleSet,
    ) -> Result<Entry, Problem> {
        if !valid_name(name) {
            return Err(Problem::Name(name.to_owned()));
        }
        if roles.is_empty() {
            return Err(Problem::EmptyList);
        }
        Ok(Entry {
            name: name.into(),
            action,
            namespace,
            identity: IdentityPattern::parse(namespace, identity)?,
            roles,
            pools: PoolScope::any(),
            addresses: match action {
                Action::Allow => AddressScope::own(),
                Action::Deny => AddressScope::any(),
            },
            comment: None,
        })
    }

    /// The same entry for these pools.
    pub fn with_pools(mut self, pools: PoolScope) -> Entry {
        self.pools = pools;
        self
    }

    /// The same entry for these addresses.
    pub fn with_addresses(mut self, addresses: AddressScope) -> Entry {
        self.addresses = addresses;
        self
    }

    /// The same entry with a comment (kept in the file, not matched).
    pub fn with_comment(mut self, comment: impl Into<String>) -> Entry {
        self.comment = Some(comment.into());
        self
    }

    /// Its name, unique in its database.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Allow or deny.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The identities it is about.
    pub fn namespace(&self) -> NamespaceScope {
        self.namespace
    }

    /// Which of their values.
    pub fn identity(&self) -> &IdentityPattern {
        &self.identity
    }

    /// The roles it is about.
    pub fn roles(&self) -> RoleSet {
        self.roles
    }

    /// The pools it is about.
    pub fn pools(&self) -> &PoolScope {
        &self.pools
    }

    /// The addresses it is about.
    pub fn addresses(&self) -> &AddressScope {
        &self.addresses
    }

    /// Its comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Whether the identity of a request is its business.
    pub(crate) fn matches_identity(&self, id: &QueryIdentity<'_>) -> bool {
        self.namespace.contains(id.namespace) && self.identity.matches(id)
    }

    /// Whether it decides `req`, and how (`None`: the next entry's turn).
    ///
    /// A request may leave the pool or the address open (`None`: not
    /// known yet, as when a connection is accepted). Then an allow
    /// decides if it *could* match (some pool, some address), and a deny
    /// only if it matches *whatever* they turn out to be (every pool,
    /// every address); a deny that matches only some is passed over.
    pub(crate) fn decides(&self, req: &Request<'_>, id: &QueryIdentity<'_>) -> Option<Action> {
        if !self.roles.contains(req.role) || !self.matches_identity(id) {
            return None;
        }
        let open_matches = self.action == Action::Allow;
        let pool = req.pool.map_or_else(
            || open_matches || self.pools.covers_all(),
            |p| self.pools.matches(p),
        );
        let address = req.address.map_or_else(
            || open_matches || self.addresses.covers_all(),
            |a| self.addresses.contains(a, req.own),
        );
        (pool && address).then_some(self.action)
    }

    /// The entry as plain strings (what [`Entry::from_spec`] reads back).
    pub fn to_spec(&self) -> EntrySpec {
        EntrySpec {
            name: self.name.to_string(),
            action: self.action.as_str().to_owned(),
            namespace: self.namespace.as_str().to_owned(),
            identity: Some(self.identity.as_str().to_owned()),
            roles: self.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            pools: Some(
                self.pools
                    .patterns()
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
            ),
            addresses: Some(
                self.addresses
                    .items()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
            ),
            comment: self.comment.clone(),
        }
    }

    /// The entry `spec` describes; an error names the key that is wrong.
    pub fn from_spec(spec: &EntrySpec) -> Result<Entry, ApdError> {
        fn s(t: &str) -> Located<'_> {
            Located { text: t, at: None }
        }
        fn list(v: &[String]) -> LocatedList<'_> {
            LocatedList {
                items: v.iter().map(|t| s(t)).collect(),
                at: None,
            }
        }
        let raw = RawEntry {
            name: Some(s(&spec.name)),
            action: Some(s(&spec.action)),
            namespace: Some(s(&spec.namespace)),
            identity: spec.identity.as_deref().map(s),
            roles: Some(list(&spec.roles)),
            pools: spec.pools.as_deref().map(list),
            addresses: spec.addresses.as_deref().map(list),
            comment: spec.comment.as_deref().map(s),
            at: None,
        };
        raw.validate(None, None)
    }
}

/// An entry as plain strings, as a command or a file carries it; every
/// value is checked by [`Entry::from_spec`]. `identity`, `pools`,
/// `addresses` and `comment` may be left out (see the module defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    /// Its name.
    pub name: String,
    /// `allow` or `deny`.
    pub action: String,
    /// `psk`, `cert`, `dns`, `ip`, `anonymous`, `authenticated` or `any`.
    pub namespace: String,
    /// The identity pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `pe`, `pu`, `registrar`, `admin`.
    pub roles: Vec<String>,
    /// Pool patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<String>>,
    /// `own`, `any`, addresses, CIDR ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A string value and where it is in its text.
#[derive(Debug, Clone)]
pub(crate) struct Located<'a> {
    pub text: &'a str,
    pub at: Option<Range<usize>>,
}

/// A list value and where it and its items are.
#[derive(Debug, Clone)]
pub(crate) struct LocatedList<'a> {
    pub items: Vec<Located<'a>>,
    pub at: Option<Range<usize>>,
}

/// An entry's values before validation, with their places in a text.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawEntry<'a> {
    pub name: Option<Located<'a>>,
    pub action: Option<Located<'a>>,
    pub namespace: Option<Located<'a>>,
    pub identity: Option<Located<'a>>,
    pub roles: Option<LocatedList<'a>>,
    pub pools: Option<LocatedList<'a>>,
    pub addresses: Option<LocatedList<'a>>,
    pub comment: Option<Located<'a>>,
    /// The entry's table.
    pub at: Option<Range<usize>>,
}

/// Each item of a list parsed, or the first item's problem (`fail` gets
/// its place and position).
fn items<T: FromStr>(
    list: &LocatedList<'_>,
    fail: impl Fn(&Option<Range<usize>>, usize, T::Err) -> ApdError,
) -> Result<Vec<T>, ApdError> {
    let parse =
        |(i, item): (usize, &Located<'_>)| item.text.parse().map_err(|e| fail(&item.at, i, e));
    list.items.iter().enumerate().map(parse).collect()
}

impl RawEntry<'_> {
    /// The entry, or the first problem: at `entry` (its position in a
    /// file; `None` for a command's one entry), with lines from `text`.
    pub(crate) fn validate(
        &self,
        entry: Option<usize>,
        text: Option<&str>,
    ) -> Result<Entry, ApdError> {
        let fail = |at: &Option<Range<usize>>, key: KeyPath, problem: Problem| ApdError::Invalid {
            line: text
                .zip(at.as_ref())
                .map(|(t, r)| line_column(t, r.start).0),
            key,
            problem: Box::new(problem),
        };
        let path = || KeyPath::entry(entry);
        let missing = |key: &str| fail(&self.at, path().key(key), Problem::Missing);
        let Some(name) = &self.name else {
            return Err(missing("name"));
        };
        let Some(action) = &self.action else {
            return Err(missing("action"));
        };
        let Some(ns) = &self.namespace else {
            return Err(missing("namespace"));
        };
        if !valid_name(name.text) {
            return Err(fail(
                &name.at,
                path().key("name"),
                Problem::Name(name.text.to_owned()),
            ));
        }
        let action_v = match action.text {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            other => {
                return Err(fail(
                    &action.at,
                    path().key("action"),
                    Problem::Action(other.to_owned()),
                ))
            }
        };
        let namespace: NamespaceScope = ns
            .text
            .parse()
            .map_err(|e| fail(&ns.at, path().key("namespace"), Problem::Namespace(e)))?;
        let identity = match (&self.identity, namespace) {
            (Some(i), _) => IdentityPattern::parse(namespace, i.text)
                .map_err(|e| fail(&i.at, path().key("identity"), Problem::Pattern(e)))?,
            (None, NamespaceScope::Anonymous) => {
                IdentityPattern::parse(namespace, "*").expect("`*` is a pattern")
            }
            (None, _) => return Err(missing("identity")),
        };
        let Some(roles_l) = &self.roles else {
            return Err(missing("roles"));
        };
        let mut roles = RoleSet::EMPTY;
        for (i, r) in roles_l.items.iter().enumerate() {
            let role: Role = r
                .text
                .parse()
                .map_err(|e| fail(&r.at, path().key("roles").item(i), Problem::Role(e)))?;
            if roles.contains(role) {
                return Err(fail(
                    &r.at,
                    path().key("roles").item(i),
                    Problem::DuplicateRole(role),
                ));
            }
            roles = roles.with(role);
        }
        if roles.is_empty() {
            return Err(fail(&roles_l.at, path().key("roles"), Problem::EmptyList));
        }
        let pools = match &self.pools {
            None => PoolScope::any(),
            Some(l) => {
                let v = items(l, |at, i, e| {
                    fail(at, path().key("pools").item(i), Problem::Pool(e))
                })?;
                PoolScope::new(v)
                    .ok_or_else(|| fail(&l.at, path().key("pools"), Problem::EmptyList))?
            }
        };
        let addresses = match &self.addresses {
            None if action_v == Action::Allow => AddressScope::own(),
            None => AddressScope::any(),
            Some(l) => {
                let v = items(l, |at, i, e| {
                    fail(at, path().key("addresses").item(i), Problem::Address(e))
                })?;
                AddressScope::new(v)
                    .ok_or_else(|| fail(&l.at, path().key("addresses"), Problem::EmptyList))?
            }
        };
        Ok(Entry {
            name: name.text.into(),
            action: action_v,
            namespace,
            identity,
            roles,
            pools,
            addresses,
            comment: self.comment.as_ref().map(|c| c.text.to_owned()),
        })
    }
}
