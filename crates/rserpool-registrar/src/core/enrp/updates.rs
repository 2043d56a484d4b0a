//! Handle updates (RFC 5353 3.3): announcing the changes of the PEs this
//! registrar owns, and applying peers' announcements and table pages.
//!
//! A peer's PE is taken only as a local registration would be (RFC 5355
//! 2.17: an insider registrar stays in its scope):
//! * the sender must be the PE's home (an update), or the PE must not
//!   claim this registrar as home (a table page);
//! * the sender's identity must be allowed the registrar role in the
//!   PE's pool, and the PE's registrant identity (carried in our
//!   extension parameter; required on authenticated associations) must
//!   be allowed the pool and the addresses, its `own` scope being the
//!   PE's ASAP transport address as its home saw it;
//! * a PE identifier stays bound to the identity that registered it,
//!   cluster-wide (RFC 5355 2.3): a PE of another identity is refused; a
//!   re-registration of the same identity at another registrar moves its
//!   ownership there (RFC 5352 3.1);
//! * one peer's updates are rate-limited
//!   ([`crate::EnrpConfig::update_rate`]).

use std::time::Instant;

use rserpool_handlespace::{ConnId, Identity, Registration};
use rserpool_wire::{
    Cause, CauseCode, EnrpExtensions, EnrpMessage, PeId, PoolElement, PoolHandle, ServerId,
    UpdateAction,
};

use crate::core::authorisation::Unauthorised;
use crate::output::{identity_text, Event, Refusal};
use crate::RegistrarCore;

/// Why a peer's PE was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerPeRefusal {
    #[error("the sender is not the PE's home (it names {0})")]
    NotHome(ServerId),
    #[error("the PE names this registrar as its home")]
    OurOwn,
    #[error("no registrant identity on an authenticated association")]
    NoRegistrant,
    #[error("{0}")]
    Unauthorised(Unauthorised),
    #[error("the PE identifier is registered by {0}")]
    AnotherIdentity(String),
    #[error("the registrant has {0} PEs already")]
    TooManyPes(usize),
    #[error("inconsistent with its pool: {0}")]
    Inconsistent(String),
    #[error("a stale claim: ownership epoch {theirs}, this registrar has {ours}")]
    Stale { ours: u64, theirs: u64 },
}

impl PeerPeRefusal {
    fn kind(&self) -> (Refusal, CauseCode) {
        match self {
            PeerPeRefusal::TooManyPes(_) => (Refusal::RateLimited, CauseCode::LackOfResources),
            PeerPeRefusal::Inconsistent(_) => {
                (Refusal::Inconsistent, CauseCode::InconsistentPoolingPolicy)
            }
            _ => (Refusal::Security, CauseCode::RejectedSecurity),
        }
    }
}

impl RegistrarCore {
    /// Tell every peer that a PE this registrar owns was added, updated
    /// or removed (3.3.1, 3.3.2).
    pub(in crate::core) fn announce_pe(
        &mut self,
        action: UpdateAction,
        pool: &PoolHandle,
        pe: PoolElement,
        registrant: Option<&Identity>,
        epoch: u64,
    ) {
        let conns: Vec<ConnId> = self
            .enrp
            .peers
            .up()
            .filter_map(super::peers::Peer::conn)
            .collect();
        if conns.is_empty() {
            return;
        }
        let me = self.config.server_id;
        let msg = EnrpMessage::HandleUpdate {
            takeover_suggested: false,
            sender: me,
            receiver: ServerId::UNDETERMINED,
            action,
            pool_handle: pool.clone(),
            pool_element: pe,
        };
        let ext = EnrpExtensions {
            registrant: registrant.map(|i| i.0.to_string()),
            epoch: Some(epoch),
            ..EnrpExtensions::default()
        };
        for conn in conns {
            self.stats.enrp.updates_sent += 1;
            self.send_enrp(conn, (msg.clone(), ext.clone()));
        }
    }

    /// An ENRP_HANDLE_UPDATE from peer `sender`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_update(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: ServerId,
        action: UpdateAction,
        pool: PoolHandle,
        pe: PoolElement,
        ext: EnrpExtensions,
    ) {
        self.stats.enrp.updates_received += 1;
        let rate = self.config.enrp.update_rate;
        let allowed = self
            .enrp
            .peers
            .peers
            .get_mut(&sender)
            .is_some_and(|p| p.updates.try_take(rate, now));
        if !allowed {
            // Counted, not answered: a flood gets no flood back.
            self.stats.enrp.updates_refused += 1;
            self.stats.enrp.updates_rate_limited += 1;
            return;
        }
        let id = pe.identifier;
        let epoch = ext.epoch.unwrap_or(0);
        let result = match action {
            UpdateAction::AddPe => {
                self.apply_peer_pe(now, conn, sender, &pool, pe, ext.registrant, epoch, true)
            }
            UpdateAction::DelPe => self.remove_peer_pe(sender, &pool, id, epoch),
        };
        if let Err(r) = result {
            self.refuse_update(conn, sender, &pool, id, r);
        }
    }

    /// A peer's PE removal: only its home may remove it.
    fn remove_peer_pe(
        &mut self,
        sender: ServerId,
        pool: &PoolHandle,
        id: PeId,
        epoch: u64,
    ) -> Result<(), PeerPeRefusal> {
        let Some(e) = self.handlespace.find(pool, id) else {
            // 3.3.2: nothing to do.
            return Ok(());
        };
        if e.home != sender {
            return Err(PeerPeRefusal::NotHome(e.home));
        }
        if epoch < e.epoch {
            return Err(PeerPeRefusal::Stale {
                ours: e.epoch,
                theirs: epoch,
            });
        }
        self.remove(pool, id, crate::Removal::PeerRemoved);
        Ok(())
    }

    /// Take a peer's PE into the handlespace (an update with
    /// `from_home`, or an entry of a table page), or say why not.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_peer_pe(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: ServerId,
        pool: &PoolHandle,
        pe: PoolElement,
        registrant: Option<String>,
        epoch: u64,
        from_home: bool,
    ) -> Result<(), PeerPeRefusal> {
        let me = self.config.server_id;
        let home = pe.home_registrar;
        if home == me {
            return Err(PeerPeRefusal::OurOwn);
        }
        if from_home && home != sender {
            return Err(PeerPeRefusal::NotHome(home));
        }
        let Some(client) = self.clients.get(&conn) else {
            return Ok(());
        };
        let own = pe
            .asap_transport
            .as_ref()
            .and_then(|t| t.addresses().first().copied())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let identity = match registrant {
            Some(r) if !r.is_empty() => Identity(r.into()),
            _ if client.is_anonymous() => Identity(format!("insecure@{own}").into()),
            _ => return Err(PeerPeRefusal::NoRegistrant),
        };
        self.may_carry(client, pool)
            .map_err(PeerPeRefusal::Unauthorised)?;
        let addresses = pe.user_transport.addresses().to_vec();
        self.may_hold(&identity, own, pool, &addresses)
            .map_err(PeerPeRefusal::Unauthorised)?;
        match self.handlespace.find(pool, pe.identifier) {
            Some(e) if e.identity.as_ref() != Some(&identity) => {
                return Err(PeerPeRefusal::AnotherIdentity(
                    e.identity.as_ref().map(identity_text).unwrap_or_default(),
                ));
            }
            // Newer claims win; at the same epoch, the larger home
            // (concurrent claims: every registrar picks the same one).
            Some(e) if epoch < e.epoch || (epoch == e.epoch && home < e.home) => {
                return Err(PeerPeRefusal::Stale {
                    ours: e.epoch,
                    theirs: epoch,
                });
            }
            Some(e) if e.home == me => {
                // RFC 5352 3.1: the PE re-registered with the sender.
                tracing::info!(pool = %pool, pe = %format_args!("{:#010x}", pe.identifier.get()), new_home = %home, "PE moved to a peer registrar");
                self.stats.enrp.pes_moved_away += 1;
            }
            Some(_) => {}
            None => {
                let owned = self.handlespace.count_by_identity(&identity);
                if owned >= self.config.max_pes_per_identity {
                    return Err(PeerPeRefusal::TooManyPes(owned));
                }
            }
        }
        let reg = Registration {
            pool_handle: pool.clone(),
            element: pe,
            home,
            registered_at: now,
            expires: None,
            keep_alive_due: None,
            connection: None,
            identity: Some(identity),
            distance: 0,
            epoch,
        };
        match self.handlespace.register(reg) {
            Ok(_) => {
                self.stats.enrp.pes_applied += 1;
                Ok(())
            }
            Err(inc) => Err(PeerPeRefusal::Inconsistent(format!("{inc:?}"))),
        }
    }

    fn refuse_update(
        &mut self,
        conn: ConnId,
        sender: ServerId,
        pool: &PoolHandle,
        id: PeId,
        r: PeerPeRefusal,
    ) {
        self.stats.enrp.updates_refused += 1;
        if let PeerPeRefusal::Stale { .. } = r {
            // Part of converging (a claim overtaken by a newer one), not
            // an error to report.
            self.stats.enrp.updates_stale += 1;
            tracing::debug!(%sender, pool = %pool, pe = id.get(), reason = %r, "handle update overtaken");
            return;
        }
        let (refusal, cause) = r.kind();
        if refusal == Refusal::Security {
            self.stats.refused_security += 1;
        }
        let identity = self
            .clients
            .get(&conn)
            .map(|c| identity_text(&c.identity))
            .unwrap_or_default();
        let detail = format!(
            "PE {:#010x} of pool {pool} from peer {sender}: {r}",
            id.get()
        );
        self.push_event(Event::Refused {
            conn,
            identity,
            request: "ENRP_HANDLE_UPDATE",
            refusal,
            cause,
            detail: detail.clone(),
        });
        self.send_error(conn, Cause::with_info(cause, detail.into_bytes()));
    }
}
