//! The authorised peer database in the core (DESIGN section 4; RFC 5355
//! sections 2.1, 2.3 and 2.17): the database the core decides with, the
//! places it applies (accepting a connection, each registration, each
//! handle resolution, each unreachable report), the rule for insecure
//! mode, and the re-validation after every change, which removes what
//! the new list denies and says exactly what.
//!
//! Insecure mode proves no identity, so there is nothing to match: under
//! the permissive default ([`Apd::permissive`]) an insecure client has
//! the rights of an authenticated one (what it had before the database:
//! its own address only, unless foreign addresses are allowed); a
//! configured database allows an insecure client nothing (its entries
//! name identities nobody proved), and the service refuses to start
//! with one.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Instant;

use rserpool_handlespace::{ConnId, Identity};
use rserpool_security::apd::{Apd, ApdError, Change, Decision, Origin, Request, Role};
use rserpool_security::PeerIdentity;
use rserpool_wire::{Cause, CauseCode, PeId, PoolHandle};

use crate::authorisation::{ApdReport, ClosedConnection, DeniedPe};
use crate::client::{canonical, Client, ConnKind};
use crate::output::{identity_text, Event, Output, Removal};

use super::RegistrarCore;

/// The stand-in identity an insecure client is decided as under the
/// permissive default (any authenticated identity has the same rights).
static INSECURE_STAND_IN: LazyLock<PeerIdentity> =
    LazyLock::new(|| PeerIdentity::Psk("insecure".into()));

/// A PE as re-validation checks it: what it registered, and who from
/// where.
struct HeldPe {
    pool: PoolHandle,
    id: PeId,
    identity: Option<Identity>,
    own: Option<IpAddr>,
    addresses: Vec<IpAddr>,
}

/// What a request was refused for by the database: who, what, and the
/// decision (which entry, or the closing deny).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{identity} may not {what}: {decision}{hint}")]
pub(crate) struct Unauthorised {
    pub identity: String,
    pub what: String,
    pub decision: Decision,
    /// For a denied address that is not the connection's source: says so
    /// (what the own-address rule used to say).
    pub hint: String,
}

/// The roles a connection of `kind` may be used for: an ASAP listener
/// serves PEs and PUs (which one is known only from what it sends), a
/// pool-user listener PUs, an ENRP channel registrars.
fn roles_of(kind: ConnKind) -> &'static [Role] {
    match kind {
        ConnKind::Asap => &[Role::Pe, Role::Pu],
        ConnKind::AsapPoolUser => &[Role::Pu],
        ConnKind::Enrp | ConnKind::EnrpOutbound => &[Role::Registrar],
    }
}

fn role_names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

impl RegistrarCore {
    /// The authorised peer database the core decides with.
    pub fn apd(&self) -> &Apd {
        &self.apd
    }

    /// Decide with `apd` from now on, and re-validate against it: every
    /// connection (its role, as when it was accepted) and every PE this
    /// registrar is home for (its pool and addresses, as when it
    /// registered, with its registrant and the address it registered
    /// from). Connections now denied are closed (their PEs then go the
    /// way of any orphaned PE, unless they are denied too); PEs now
    /// denied are removed at once ([`Removal::Unauthorised`]). The
    /// report names each, with the decision; an event tells the
    /// operators.
    pub fn replace_apd(&mut self, now: Instant, apd: Apd) -> ApdReport {
        self.apd = apd;
        self.stats.apd_changes += 1;
        let mut report = ApdReport {
            entries: self.apd.len(),
            ..ApdReport::default()
        };
        let mut denied: Vec<(ConnId, Unauthorised)> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closing)
            .filter_map(|(&conn, c)| self.may_connect(c).err().map(|u| (conn, u)))
            .collect();
        denied.sort_unstable_by_key(|(c, _)| *c);
        for (conn, u) in denied {
            let Some(c) = self.clients.get(&conn) else {
                continue;
            };
            report.connections_closed.push(ClosedConnection {
                conn,
                identity: identity_text(&c.identity),
                address: c.address,
                decision: u.decision.to_string(),
            });
            let cause = Cause::with_info(CauseCode::RejectedSecurity, u.to_string().into_bytes());
            let protocol = c.kind.protocol();
            self.send_error_in(conn, protocol, cause);
            self.close(conn, u.to_string());
            self.handle_disconnect(now, conn);
        }
        let mut pes: Vec<HeldPe> = self
            .handlespace
            .by_owner(self.config.server_id)
            .map(|(h, e)| HeldPe {
                pool: h.clone(),
                id: e.identifier,
                identity: e.identity.clone(),
                own: e
                    .asap_transport
                    .as_ref()
                    .and_then(|t| t.addresses().first().copied()),
                addresses: e.user_transport.addresses().to_vec(),
            })
            .collect();
        pes.sort_unstable_by(|a, b| (&a.pool, a.id).cmp(&(&b.pool, b.id)));
        for HeldPe {
            pool,
            id,
            identity,
            own,
            addresses,
        } in pes
        {
            let decision = match (&identity, own) {
                (Some(i), Some(own)) => self.registered_decision(i, own, &pool, &addresses),
                _ => Decision::closing(),
            };
            if decision.is_allowed() {
                continue;
            }
            if self.remove(&pool, id, Removal::Unauthorised) {
                self.stats.apd_removals += 1;
                report.pes_removed.push(DeniedPe {
                    pool_handle: pool,
                    identifier: id,
                    identity: identity.as_ref().map(identity_text).unwrap_or_default(),
                    decision: decision.to_string(),
                });
            }
        }
        self.stats.apd_connections_closed += report.connections_closed.len() as u64;
        self.outputs
            .push_back(Output::Event(Event::AuthorisationChanged {
                entries: report.entries,
                connections_closed: report.connections_closed.len(),
                pes_removed: report.pes_removed.len(),
            }));
        report
    }

    /// Apply `change` to the database ([`Apd::apply`]: validated first;
    /// an invalid change changes nothing) and re-validate
    /// ([`Self::replace_apd`]). Returns the report and the position the
    /// change names.
    pub fn change_apd(
        &mut self,
        now: Instant,
        change: Change,
    ) -> Result<(usize, ApdReport), ApdError> {
        let mut apd = self.apd.clone();
        let position = apd.apply(change)?;
        Ok((position, self.replace_apd(now, apd)))
    }

    /// The identity `c` is decided as: the one it proved; in insecure
    /// mode a stand-in under the permissive default, nothing otherwise.
    fn subject<'a>(&self, c: &'a Client) -> Option<&'a PeerIdentity> {
        match (&c.peer, self.apd.origin()) {
            (Some(p), _) => Some(p),
            (None, Origin::Permissive { .. }) => Some(&INSECURE_STAND_IN),
            (None, _) => None,
        }
    }

    /// Insecure mode under the permissive default (labs): nobody is
    /// authenticated, so every connection may be everything but admin,
    /// a peer registrar included.
    fn insecure_lab(&self, c: &Client) -> bool {
        c.peer.is_none() && matches!(self.apd.origin(), Origin::Permissive { .. })
    }

    /// May `c` connect as what its connection kind is for?
    pub(super) fn may_connect(&self, c: &Client) -> Result<(), Unauthorised> {
        if self.insecure_lab(c) && c.kind.protocol() == crate::Protocol::Enrp {
            return Ok(());
        }
        let roles = roles_of(c.kind);
        let source = c.address.ip();
        let mut last = Decision::closing();
        if let Some(subject) = self.subject(c) {
            for &role in roles {
                let d = self.apd.decide_connection(subject, role, source);
                if d.is_allowed() {
                    return Ok(());
                }
                last = d;
            }
        }
        Err(Unauthorised {
            identity: identity_text(&c.identity),
            what: format!("connect as {}", role_names(roles)),
            decision: last,
            hint: String::new(),
        })
    }

    /// May `c` register in `pool` with `addresses`?
    pub(super) fn may_register(
        &self,
        c: &Client,
        pool: &PoolHandle,
        addresses: &[IpAddr],
    ) -> Result<(), Unauthorised> {
        let source = c.address.ip();
        let decision = match self.subject(c) {
            Some(s) => {
                self.apd
                    .decide_registration(s, source, pool.as_bytes(), addresses.iter().copied())
            }
            None => Decision::closing(),
        };
        if decision.is_allowed() {
            return Ok(());
        }
        let hint = match decision.address {
            Some(a) if canonical(a) != source => {
                format!(" ({a} is not the connection's source address {source})")
            }
            _ => String::new(),
        };
        Err(Unauthorised {
            identity: identity_text(&c.identity),
            what: format!("register in pool {pool}"),
            decision,
            hint,
        })
    }

    /// May `c` resolve `pool` (or, `report`, report one of its PEs
    /// unreachable)? Both are the role `pu` in the pool.
    pub(super) fn may_use_pool(
        &self,
        c: &Client,
        pool: &PoolHandle,
        report: bool,
    ) -> Result<(), Unauthorised> {
        let source = c.address.ip();
        let decision = match self.subject(c) {
            Some(s) if report => self.apd.decide_report(s, source, pool.as_bytes()),
            Some(s) => self.apd.decide_resolution(s, source, pool.as_bytes()),
            None => Decision::closing(),
        };
        if decision.is_allowed() {
            return Ok(());
        }
        let what = if report {
            format!("report PEs of pool {pool} unreachable")
        } else {
            format!("resolve pool {pool}")
        };
        Err(Unauthorised {
            identity: identity_text(&c.identity),
            what,
            decision,
            hint: String::new(),
        })
    }

    /// May peer registrar `c` carry PEs of `pool` (its registrar role's
    /// pool scope; RFC 5355 2.17)?
    pub(super) fn may_carry(&self, c: &Client, pool: &PoolHandle) -> Result<(), Unauthorised> {
        if self.insecure_lab(c) {
            return Ok(());
        }
        let source = c.address.ip();
        let decision = match self.subject(c) {
            Some(s) => self
                .apd
                .decide(&Request::new(s, Role::Registrar, source).pool(pool.as_bytes())),
            None => Decision::closing(),
        };
        if decision.is_allowed() {
            return Ok(());
        }
        Err(Unauthorised {
            identity: identity_text(&c.identity),
            what: format!("carry PEs of pool {pool}"),
            decision,
            hint: String::new(),
        })
    }

    /// May a PE of registrant `identity`, registered from `own`, be in
    /// `pool` with `addresses` (a peer's PE, as a local registration
    /// would be decided)?
    pub(super) fn may_hold(
        &self,
        identity: &Identity,
        own: IpAddr,
        pool: &PoolHandle,
        addresses: &[IpAddr],
    ) -> Result<(), Unauthorised> {
        let decision = self.registered_decision(identity, own, pool, addresses);
        if decision.is_allowed() {
            return Ok(());
        }
        Err(Unauthorised {
            identity: identity_text(identity),
            what: format!("register in pool {pool}"),
            decision,
            hint: String::new(),
        })
    }

    /// The decision on a PE as registered: registrant `identity`, from
    /// `own`, in `pool`, with `addresses`.
    fn registered_decision(
        &self,
        identity: &Identity,
        own: IpAddr,
        pool: &PoolHandle,
        addresses: &[IpAddr],
    ) -> Decision {
        let subject = if identity.0.starts_with("insecure@") {
            match self.apd.origin() {
                Origin::Permissive { .. } => Some(INSECURE_STAND_IN.clone()),
                _ => None,
            }
        } else {
            identity.0.parse::<PeerIdentity>().ok()
        };
        match subject {
            Some(s) => self.apd.decide_registration(
                &s,
                canonical(own),
                pool.as_bytes(),
                addresses.iter().copied(),
            ),
            None => Decision::closing(),
        }
    }
}
