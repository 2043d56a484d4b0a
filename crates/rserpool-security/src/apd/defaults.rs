//! Owns the two starting points: the permissive default of a registrar
//! without a database ([`Apd::permissive`], what every key could do
//! before the database existed) and the strict starting file built from
//! keys ([`Apd::strict`], what `rsp apd init` writes); and [`Origin`], the
//! one line a registrar logs about which it runs with.

use std::fmt;

use super::entry::{Action, Entry};
use super::error::{ApdError, KeyPath, Problem};
use super::pattern::{exact_text, NamespaceScope};
use super::scope::{AddressScope, Role, RoleSet};
use super::Apd;
use crate::identity::PeerIdentity;

/// Where a database came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// No database was configured: [`Apd::permissive`].
    Permissive {
        /// Whether PEs may register addresses other than their own.
        allow_foreign_addresses: bool,
        /// How many identities may be peer registrars (the keys given
        /// as peer keys; nobody else may speak ENRP).
        registrars: usize,
    },
    /// Configured (a file, [`Apd::strict`], or changed at run time).
    Configured,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Permissive {
                allow_foreign_addresses,
                registrars,
            } => write!(
                f,
                "no authorised peer database: every authenticated identity may be pe and pu in \
                 any pool, registering {}; anonymous clients may be pu; {}",
                if *allow_foreign_addresses {
                    "any address"
                } else {
                    "only its own address"
                },
                match registrars {
                    0 => "no identity may be a peer registrar".to_string(),
                    1 => "1 identity (its peer key) may be a peer registrar".to_string(),
                    n => format!("{n} identities (their peer keys) may be peer registrars"),
                }
            ),
            Origin::Configured => f.write_str("authorised peer database"),
        }
    }
}

/// Name of the permissive default's entry for authenticated identities.
pub const PERMISSIVE_AUTHENTICATED: &str = "default-authenticated";
/// Name of the permissive default's entry for anonymous clients.
pub const PERMISSIVE_ANONYMOUS: &str = "default-anonymous";
/// Name of the strict database's closing deny.
pub const CLOSING_DENY: &str = "deny-everyone-else";

/// One key and what it may do, for [`Apd::strict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who.
    pub identity: PeerIdentity,
    /// As what.
    pub roles: RoleSet,
}

fn name_of(identity: &PeerIdentity) -> String {
    let text: String = identity
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("allow-{text}");
    name.truncate(super::entry::MAX_NAME_LEN - 8);
    name
}

impl Apd {
    /// What a registrar without a database allows: what every key could
    /// do before the database existed. Two entries: `default-authenticated`
    /// (namespace `authenticated`, `*`: roles pe and pu; every
    /// pool; addresses `own`, or `any` with `allow_foreign_addresses`, the
    /// registrar switch this replaces) and `default-anonymous`
    /// (namespace `anonymous`: role pu, every pool). Nobody is `admin`
    /// (the admin interface has its own token).
    pub fn permissive(allow_foreign_addresses: bool) -> Apd {
        Apd::permissive_with_registrars(allow_foreign_addresses, &[])
    }

    /// [`Apd::permissive`], with the identities of `registrars` (a
    /// cluster's peer keys) allowed the registrar role: first an entry
    /// `registrar-...` for each (exactly that identity, role registrar,
    /// every pool), then the two permissive entries, which grant pe and
    /// pu only: a PE or PU key never speaks ENRP (RFC 5355 2.5).
    pub fn permissive_with_registrars(
        allow_foreign_addresses: bool,
        registrars: &[PeerIdentity],
    ) -> Apd {
        let mut entries = Vec::with_capacity(registrars.len() + 2);
        let mut used = std::collections::HashSet::new();
        for identity in registrars {
            let (namespace, pattern) = exact_text(identity);
            let base = name_of(identity).replacen("allow-", "registrar-", 1);
            let mut name = base.clone();
            let mut n = 1;
            while !used.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}");
            }
            match Entry::new(
                &name,
                Action::Allow,
                namespace,
                &pattern,
                RoleSet::EMPTY.with(Role::Registrar),
            ) {
                Ok(e) => entries.push(e.with_comment("the permissive default: a peer key")),
                Err(problem) => {
                    tracing::warn!(%identity, %problem, "peer identity not usable as a registrar entry");
                }
            }
        }
        let roles = RoleSet::EMPTY.with(Role::Pe).with(Role::Pu);
        let authenticated = Entry::new(
            PERMISSIVE_AUTHENTICATED,
            Action::Allow,
            NamespaceScope::Authenticated,
            "*",
            roles,
        )
        .expect("a valid entry")
        .with_addresses(if allow_foreign_addresses {
            AddressScope::any()
        } else {
            AddressScope::own()
        })
        .with_comment("the permissive default: what every key could do before the database");
        let anonymous = Entry::new(
            PERMISSIVE_ANONYMOUS,
            Action::Allow,
            NamespaceScope::Anonymous,
            "*",
            RoleSet::EMPTY.with(Role::Pu),
        )
        .expect("a valid entry")
        .with_comment("the permissive default: clients without a certificate resolve and report");
        let count = entries.len();
        entries.push(authenticated);
        entries.push(anonymous);
        Apd::build(
            entries,
            Origin::Permissive {
                allow_foreign_addresses,
                registrars: count,
            },
        )
        .expect("distinct names")
    }

    /// The strict starting database: for each grant an allow of exactly
    /// that identity in its roles, every pool, its own address only;
    /// then `deny-everyone-else` (namespace `any`, `*`, every role, pool
    /// and address). Entry names come from the identities
    /// (`allow-psk-pe-1`; repeated ones get `-2`, `-3`...). A grant
    /// without roles (`grant[i].roles`) or with an empty name
    /// (`grant[i].identity`) is refused.
    pub fn strict(grants: &[Grant]) -> Result<Apd, ApdError> {
        let mut entries = Vec::with_capacity(grants.len() + 1);
        let mut used = std::collections::HashSet::new();
        for (i, g) in grants.iter().enumerate() {
            let base = name_of(&g.identity);
            let mut name = base.clone();
            let mut n = 1;
            while !used.insert(name.clone()) || name == CLOSING_DENY {
                n += 1;
                name = format!("{base}-{n}");
            }
            let (namespace, pattern) = exact_text(&g.identity);
            let e = Entry::new(&name, Action::Allow, namespace, &pattern, g.roles).map_err(
                |problem| {
                    let key = match problem {
                        Problem::Pattern(_) => "identity",
                        _ => "roles",
                    };
                    ApdError::Invalid {
                        line: None,
                        key: KeyPath {
                            entry: None,
                            key: Some(format!("grant[{i}].{key}")),
                            item: None,
                        },
                        problem: Box::new(problem),
                    }
                },
            )?;
            entries.push(e);
        }
        entries.push(
            Entry::new(
                CLOSING_DENY,
                Action::Deny,
                NamespaceScope::Any,
                "*",
                RoleSet::ALL,
            )
            .expect("a valid entry")
            .with_comment("closes the list: whoever no entry above allows is denied"),
        );
        Apd::new(entries)
    }

    /// [`Apd::strict`] as TOML text (the file `rsp apd init` writes).
    pub fn strict_toml(grants: &[Grant]) -> Result<String, ApdError> {
        Apd::strict(grants).map(|a| a.to_toml())
    }
}
