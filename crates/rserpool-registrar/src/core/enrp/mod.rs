//! ENRP (RFC 5353) on associations with peer registrars, secured as RFC
//! 5355 2.5 and 2.17 ask: only authenticated connections of the
//! registrar role reach here (the connection checks of
//! [`super::connections`]), and what a peer says is checked before it
//! changes anything.
//!
//! * **Associations.** The static peers of [`crate::EnrpConfig::peers`]
//!   are dialled until they answer, and again after they are lost; the
//!   dialler speaks first (ENRP_PRESENCE with the R flag). The first
//!   message on an association binds it to its sender's server
//!   identifier: a later message naming another sender is dropped and
//!   counted (a peer cannot speak for another), and an identifier already
//!   bound to another identity is refused. A registrar that reaches
//!   itself (its own nonce in the presence) stops dialling that address.
//! * **Initialisation** (3.2): the first peer up is the mentor: peer list
//!   ([`peers`]), then its whole handle table in pages ([`table`]). Until
//!   the download ends (or no mentor answers within
//!   [`crate::EnrpConfig::mentor_timeout`]) pool users are refused,
//!   unless [`crate::EnrpConfig::serve_partial_table`].
//! * **Handle updates** (3.3, [`updates`]): one for every registration,
//!   re-registration and removal of a PE this registrar owns, emitted
//!   where the handlespace changes; a peer's updates are applied only
//!   for PEs it is home of, with their registrant identity (our
//!   extension) bound as a local registration's would be, and only as
//!   this registrar's own database allows.
//! * **Heartbeats and audit** (3.4, 3.6): a presence every
//!   [`crate::EnrpConfig::heartbeat_cycle`] with the checksum of our own
//!   PEs; a peer's checksum that disagrees with ours of its PEs starts an
//!   audit (mark, download its own PEs, sweep). A peer silent for
//!   MAX-TIME-LAST-HEARD is asked for its presence and, without an
//!   answer in MAX-TIME-NO-RESPONSE, is down.

mod hints;
pub(crate) mod peers;
mod table;
mod takeover;
mod updates;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use rand::RngExt;
use rserpool_handlespace::{ConnId, TableCursor};
use rserpool_wire::{
    Cause, CauseCode, EnrpExtensions, EnrpMessage, PeId, PoolHandle, ServerId, ServerInformation,
    Transport, TransportUse,
};

use crate::client::ConnKind;
use crate::output::{identity_text, Event, Message};

use self::peers::{Peer, PeerTable, StaticPeer};
use super::RegistrarCore;

/// Where the registrar is in its initialisation (RFC 5353 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Init {
    /// Serving: alone (no peers configured, or none answered in time),
    /// or with the mentor's table downloaded.
    Ready,
    /// Static peers are configured; none is up.
    Waiting,
    /// A mentor is up: its peer list, then its handle table.
    Mentoring {
        /// The mentor.
        mentor: ServerId,
        /// The step.
        step: MentorStep,
        /// The answer to the last request is due by then.
        deadline: Instant,
        /// Pages received.
        pages: u32,
        /// PEs received.
        pes: usize,
    },
}

/// The steps with a mentor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MentorStep {
    /// ENRP_LIST_REQUEST sent.
    List,
    /// ENRP_HANDLE_TABLE_REQUEST sent.
    Table,
}

/// A handle table transfer this registrar serves to a peer (3.2.3).
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Where the next page starts.
    pub cursor: TableCursor,
    /// Only our own PEs (the W flag).
    pub own_only: bool,
    /// Given up if the next request does not come by then.
    pub expires: Instant,
}

/// The registrar's ENRP state.
#[derive(Debug)]
pub(crate) struct Enrp {
    /// Drawn at start: tells "I reached myself" from "another registrar
    /// has my identifier" (3.2.1).
    pub nonce: u64,
    pub peers: PeerTable,
    pub statics: Vec<StaticPeer>,
    pub init: Init,
    /// Pool users are served from here on, whatever the initialisation
    /// reached (no mentor answered in time); `None` once passed or with
    /// no peers to wait for.
    pub alone_at: Option<Instant>,
    /// `alone_at` passed before the initialisation was done.
    pub serving_alone: bool,
    pub serving: BTreeMap<ConnId, Served>,
    /// Takeovers this registrar started, by target.
    pub takeovers: BTreeMap<ServerId, takeover::Takeover>,
    /// Peers that went down and were not taken over (no majority then):
    /// tried again whenever another peer comes up.
    pub lost: BTreeSet<ServerId>,
    pub next_heartbeat: Instant,
    /// When ENRP's clock-driven work last ran: a registrar that finds it
    /// has not run for longer than a peer may be silent was itself
    /// stopped (frozen, suspended), and takes nobody over for losing
    /// touch with it.
    pub last_tick: Instant,
    /// After such a stop, no takeover starts before this.
    pub no_takeover_until: Option<Instant>,
    /// After such a stop, no handle table goes to peers before this
    /// (its own PEs are being probed again).
    pub table_held_until: Option<Instant>,
    /// Own PEs probed after such a stop: each that answers is announced
    /// to the peers again.
    pub reclaiming: BTreeSet<(PoolHandle, PeId)>,
    /// The most registrars (this one and its peers up) seen together,
    /// less those taken over since: a takeover needs a majority of them
    /// (with three or more), so that a registrar cut off from the others
    /// takes nobody over.
    pub scope_size: usize,
    /// New addresses dialled on a multicast presence (module `hints`).
    pub hint_dials: rserpool_security::rate_limit::TokenBucket,
}

impl Enrp {
    pub fn new(config: &crate::EnrpConfig, nonce: u64, now: Instant) -> Enrp {
        let statics = config
            .peers
            .iter()
            .map(|&address| StaticPeer {
                address,
                conn: None,
                dial_at: now,
                backoff: config.reconnect_interval,
                is_self: false,
                hint: false,
            })
            .collect::<Vec<_>>();
        let (init, alone_at) = if statics.is_empty() {
            (Init::Ready, None)
        } else {
            (Init::Waiting, Some(now + config.mentor_timeout))
        };
        Enrp {
            nonce,
            peers: PeerTable::default(),
            statics,
            init,
            alone_at,
            serving_alone: false,
            serving: BTreeMap::new(),
            takeovers: BTreeMap::new(),
            lost: BTreeSet::new(),
            last_tick: now,
            no_takeover_until: None,
            table_held_until: None,
            reclaiming: BTreeSet::new(),
            scope_size: 1,
            next_heartbeat: now + config.heartbeat_cycle,
            hint_dials: rserpool_security::rate_limit::TokenBucket::new(hints::HINT_DIALS, now),
        }
    }
}

/// Draw the nonce of a new core.
pub(crate) fn draw_nonce(rng: &mut impl RngExt) -> u64 {
    rng.random()
}

impl RegistrarCore {
    // ----- the peers, as operators see them ---------------------------------

    /// Whether pool users are served: initialisation done, or serving a
    /// partial table is allowed.
    pub fn serves_pool_users(&self) -> bool {
        self.enrp.init == Init::Ready
            || self.enrp.serving_alone
            || self.config.enrp.serve_partial_table
    }

    /// The peer registrars known, in identifier order.
    pub fn peers(&self) -> impl Iterator<Item = crate::PeerView> + '_ {
        self.enrp.peers.peers.values().map(|p| crate::PeerView {
            server_id: p.id,
            address: p.address,
            advertised: p.advertised,
            identity: identity_text(&p.identity),
            up: !p.conns.is_empty(),
            last_heard: p.last_heard,
            pes: self.handlespace.by_owner(p.id).count(),
            checksum: p.checksum,
            checksum_agrees: p.checksum == Some(self.handlespace.checksum(p.id)),
            auditing: p.audit.is_some(),
        })
    }

    // ----- associations -----------------------------------------------------

    /// An ENRP connection is open and admitted. The dialler speaks first.
    pub(super) fn enrp_opened(&mut self, _now: Instant, conn: ConnId, kind: ConnKind) {
        if kind == ConnKind::EnrpOutbound {
            let hello = self.presence(true);
            self.send_enrp(conn, hello);
        }
    }

    /// A connection the core asked for failed: dial that static peer
    /// again later.
    pub(super) fn enrp_connect_failed(&mut self, now: Instant, conn: ConnId) {
        self.drop_hint(conn);
        let max = self.config.enrp.reconnect_interval * 8;
        for s in &mut self.enrp.statics {
            if s.conn == Some(conn) {
                s.conn = None;
                s.dial_at = now + s.backoff;
                s.backoff = (s.backoff * 2).min(max);
            }
        }
    }

    /// An ENRP connection closed.
    pub(super) fn enrp_closed(&mut self, now: Instant, conn: ConnId) {
        if self.enrp.peers.of_conn(conn).is_some() {
            // After a stop, the closes of the peers that gave up on this
            // registrar may come before its timers: it finds out here.
            self.note_stall(now);
        }
        if self.enrp.peers.of_conn(conn).is_none() {
            // A hinted address that did not prove to be a registrar.
            self.drop_hint(conn);
        }
        let interval = self.config.enrp.reconnect_interval;
        for s in &mut self.enrp.statics {
            if s.conn == Some(conn) {
                s.conn = None;
                s.dial_at = now + s.backoff;
                s.backoff = interval;
            }
        }
        self.enrp.serving.remove(&conn);
        if let Some(id) = self.enrp.peers.remove_conn(conn) {
            self.peer_down(now, id, "its last association closed".into());
        }
    }

    /// A peer is gone (its associations closed, or it stopped
    /// answering): forget it; its PEs stay until it comes back, a
    /// takeover moves them, or their home removes them.
    fn peer_down(&mut self, now: Instant, id: ServerId, reason: String) {
        self.forget_peer(id, &reason);
        if let Init::Mentoring { mentor, .. } = self.enrp.init {
            if mentor == id {
                self.next_mentor(now, id);
            }
        }
        tracing::warn!(peer = %id, %reason, "peer registrar down");
        self.push_event(Event::PeerDown {
            server_id: id,
            reason,
        });
        self.enrp.lost.insert(id);
        self.start_takeover(now, id);
        self.orphan_peer_pes(now, id);
    }

    /// Whether `id` is a peer with an association up.
    pub(super) fn peer_is_up(&self, id: ServerId) -> bool {
        self.enrp
            .peers
            .peers
            .get(&id)
            .is_some_and(|p| !p.conns.is_empty())
    }

    /// The PEs of a peer that is gone and not taken over (yet): each
    /// lives out its registration life here unless it re-registers, its
    /// home comes back with it, or a takeover moves it.
    fn orphan_peer_pes(&mut self, now: Instant, home: ServerId) {
        let pes: Vec<_> = self
            .handlespace
            .by_owner(home)
            .filter(|(_, e)| e.expires.is_none())
            .map(|(h, e)| (h.clone(), e.identifier, e.registration_life))
            .collect();
        for (h, id, life) in pes {
            if let Some(r) = self.handlespace.locate(&h, id) {
                let at = now + std::time::Duration::from_millis(life.max(0) as u64);
                self.handlespace.set_deadline_at(
                    r,
                    rserpool_handlespace::DeadlineKind::Lifetime,
                    Some(at),
                );
            }
        }
    }

    // ----- messages ---------------------------------------------------------

    /// An ENRP message from an ENRP connection the core knows and is not
    /// closing.
    pub(super) fn enrp_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: EnrpMessage,
        ext: EnrpExtensions,
    ) {
        let sender = msg.sender();
        match self.enrp.peers.of_conn(conn) {
            Some(bound) if bound == sender => {}
            Some(bound) => {
                // RFC 5355 2.17: a peer speaks for itself only.
                self.stats.enrp.spoofed += 1;
                tracing::debug!(conn = conn.get(), %bound, claimed = %sender, msg = msg.name(), "ENRP message naming another sender dropped");
                return;
            }
            None => {
                if !self.bind(now, conn, sender, &ext) {
                    return;
                }
            }
        }
        let receiver = msg.receiver();
        if receiver != ServerId::UNDETERMINED && receiver != self.config.server_id {
            self.stats.enrp.misdirected += 1;
            return;
        }
        if let Some(p) = self.enrp.peers.peers.get_mut(&sender) {
            p.last_heard = now;
            p.probing = None;
        }
        self.takeover_target_alive(sender);
        self.stats.enrp.received += 1;
        match msg {
            EnrpMessage::Presence {
                reply_required,
                checksum,
                server_info,
                ..
            } => self.on_presence(now, conn, sender, reply_required, checksum, server_info),
            EnrpMessage::ListRequest { .. } => self.on_list_request(conn, sender),
            EnrpMessage::ListResponse {
                reject, servers, ..
            } => self.on_list_response(now, sender, reject, servers),
            EnrpMessage::HandleTableRequest {
                own_children_only, ..
            } => self.serve_table(now, conn, sender, own_children_only),
            EnrpMessage::HandleTableResponse {
                more_to_send,
                reject,
                pools,
                ..
            } => self.on_table_page(now, conn, sender, more_to_send, reject, pools, ext),
            EnrpMessage::HandleUpdate {
                action,
                pool_handle,
                pool_element,
                ..
            } => self.on_update(now, conn, sender, action, pool_handle, pool_element, ext),
            EnrpMessage::Error { error, .. } => {
                self.stats.enrp.errors_received += 1;
                tracing::debug!(peer = %sender, ?error, "ENRP_ERROR from a peer");
            }
            EnrpMessage::InitTakeover { target, .. } => self.on_init_takeover(now, sender, target),
            EnrpMessage::InitTakeoverAck { target, .. } => {
                self.on_takeover_ack(now, sender, target)
            }
            EnrpMessage::TakeoverServer { target, .. } => {
                self.on_takeover_server(now, sender, target)
            }
        }
    }

    /// Whether this registrar may still change its server identifier:
    /// drawn at random, still starting (no table from a mentor yet), and
    /// owning no PE (RFC 5353 3.2.1: it stays the same once in use).
    fn may_redraw_server_id(&self) -> bool {
        let me = self.config.server_id;
        self.config.server_id_drawn
            && self.enrp.init != Init::Ready
            && self.handlespace.by_owner(me).next().is_none()
            && self.enrp.peers.up().next().is_none()
    }

    /// Another registrar uses our identifier, and ours may still change:
    /// draw a new one. The association closes (by the caller) and the
    /// peers are dialled again under the new identifier.
    fn redraw_server_id(&mut self, taken: ServerId) {
        let new = loop {
            let id = ServerId::new(self.rng.random());
            if id != ServerId::UNDETERMINED && id != taken {
                break id;
            }
        };
        tracing::warn!(taken = %taken, new = %new, "another registrar has this registrar's server identifier: this one, still starting, drew a new one (RFC 5353 3.2.1)");
        self.config.server_id = new;
        self.push_event(Event::ServerIdChanged {
            from: taken,
            to: new,
        });
    }

    /// The first message on an association: bind it to `sender`, or
    /// refuse it (returns whether it may go on).
    fn bind(&mut self, now: Instant, conn: ConnId, sender: ServerId, ext: &EnrpExtensions) -> bool {
        let Some(client) = self.clients.get(&conn) else {
            return false;
        };
        let (identity, address) = (client.identity.clone(), client.address);
        // What this association says of who the peer is: on one this
        // registrar dialled with a pre-shared key, only that the peer
        // holds our key (TLS PSK names the client, never the server).
        let named = (client.kind != ConnKind::EnrpOutbound
            || client.credential != crate::client::Credential::Psk)
            .then(|| identity.clone());
        if sender == ServerId::UNDETERMINED {
            self.protocol_error(
                conn,
                Some(Cause::new(CauseCode::InvalidValues)),
                "ENRP message with sender 0".into(),
            );
            return false;
        }
        if sender == self.config.server_id {
            if ext.nonce == Some(self.enrp.nonce) {
                // This registrar reached itself (its own address among
                // the peers): the accepting side answers, so that the
                // dialling side, on its connection, knows which static
                // peer it was.
                if client.kind == ConnKind::EnrpOutbound {
                    tracing::info!(%address, "this address is this registrar: not dialled again");
                    for s in &mut self.enrp.statics {
                        if s.conn == Some(conn) {
                            s.is_self = true;
                        }
                    }
                    self.stats.enrp.self_connections += 1;
                } else {
                    let answer = self.presence(false);
                    self.send_enrp(conn, answer);
                }
            } else {
                self.stats.enrp.id_collisions += 1;
                if self.may_redraw_server_id() {
                    self.redraw_server_id(sender);
                } else {
                    tracing::error!(%address, identity = %identity.0, id = %sender, "another registrar uses this registrar's server identifier (RFC 5353 3.2.1); its association is refused");
                    // Our presence tells the other side (it may be the
                    // one still starting, which then draws a new one).
                    let presence = self.presence(false);
                    self.send_enrp(conn, presence);
                    self.send_error(
                        conn,
                        Cause::with_info(
                            CauseCode::InvalidValues,
                            b"server identifier in use".to_vec(),
                        ),
                    );
                }
            }
            self.close(
                conn,
                "ENRP association with this registrar's own identifier".into(),
            );
            return false;
        }
        if let Some(known) = self.enrp.peers.peers.get_mut(&sender) {
            let conflict = match (&known.named, &named) {
                (Some(k), Some(n)) => k != n,
                (None, Some(n)) => {
                    known.named = Some(n.clone());
                    known.identity = n.clone();
                    false
                }
                _ => false,
            };
            if conflict {
                // RFC 5355 2.5: an identifier is its first identity's.
                self.stats.enrp.spoofed += 1;
                let detail = format!(
                    "server identifier {sender} belongs to {}, not {}",
                    identity_text(&known.identity),
                    identity_text(&identity)
                );
                tracing::warn!(%address, %detail, "ENRP association refused");
                self.send_error(
                    conn,
                    Cause::with_info(CauseCode::RejectedSecurity, detail.clone().into_bytes()),
                );
                self.close(conn, detail);
                return false;
            }
            self.enrp.peers.add_conn(sender, conn);
            return true;
        }
        if let Some(n) = &named {
            let max = self.config.enrp.max_ids_per_identity;
            let speaks_for = self
                .enrp
                .peers
                .up()
                .filter(|p| p.named.as_ref() == Some(n))
                .count();
            if speaks_for >= max {
                // RFC 5355 2.17: one insider cannot take every peer slot.
                let detail = format!(
                    "{} speaks for {speaks_for} server identifiers already (enrp.max_ids_per_identity = {max})",
                    identity_text(n)
                );
                tracing::warn!(%address, %detail, id = %sender, "ENRP association refused");
                self.send_error(
                    conn,
                    Cause::with_info(CauseCode::RejectedSecurity, detail.clone().into_bytes()),
                );
                self.close(conn, detail);
                return false;
            }
        }
        if self.enrp.peers.peers.len() >= self.config.enrp.max_peers {
            let detail = format!("{} peers known already", self.config.enrp.max_peers);
            self.send_error(
                conn,
                Cause::with_info(CauseCode::LackOfResources, detail.clone().into_bytes()),
            );
            self.close(conn, detail);
            return false;
        }
        let mut peer = Peer::new(
            sender,
            conn,
            identity.clone(),
            address,
            self.config.enrp.update_rate,
            now,
        );
        peer.named = named;
        self.enrp.peers.peers.insert(sender, peer);
        self.enrp.peers.by_conn.insert(conn, sender);
        for s in &mut self.enrp.statics {
            if s.conn == Some(conn) {
                // A hinted address proved to be a registrar: kept.
                s.hint = false;
            }
        }
        self.enrp.scope_size = self.enrp.scope_size.max(1 + self.enrp.peers.up().count());
        tracing::info!(peer = %sender, %address, identity = %identity.0, "peer registrar up");
        self.push_event(Event::PeerUp {
            server_id: sender,
            address,
            identity: identity_text(&identity),
        });
        if self.enrp.init == Init::Waiting {
            self.start_mentor(now, sender);
        }
        // With one more peer up, a majority may be reached now for a peer
        // that went down when there was none (a cut that healed).
        self.enrp.lost.remove(&sender);
        let lost: Vec<ServerId> = self.enrp.lost.iter().copied().collect();
        for target in lost {
            if self.handlespace.by_owner(target).next().is_none() {
                self.enrp.lost.remove(&target);
            } else {
                self.start_takeover(now, target);
            }
        }
        true
    }

    fn on_presence(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: ServerId,
        reply_required: bool,
        checksum: Option<u16>,
        server_info: Option<ServerInformation>,
    ) {
        let remote = self.clients.get(&conn).map(|c| c.address);
        if let Some(p) = self.enrp.peers.peers.get_mut(&sender) {
            if let (Some(info), Some(remote)) = (server_info, remote) {
                p.advertised = advertised_address(&info.transport, remote);
            }
            p.checksum = checksum;
        }
        if reply_required {
            let answer = self.presence(false);
            self.send_enrp(conn, answer);
        }
        if let Some(c) = checksum {
            self.check_checksum(now, sender, c);
        }
    }

    fn on_list_request(&mut self, conn: ConnId, sender: ServerId) {
        let me = self.config.server_id;
        let reject = self.enrp.init != Init::Ready;
        let servers = if reject {
            Vec::new()
        } else {
            self.enrp
                .peers
                .up()
                .filter(|p| p.id != sender)
                .filter_map(|p| {
                    p.advertised.map(|a| ServerInformation {
                        server_id: p.id,
                        transport: tcp(a),
                    })
                })
                .collect()
        };
        self.send_enrp(
            conn,
            EnrpMessage::ListResponse {
                reject,
                sender: me,
                receiver: sender,
                servers,
            },
        );
    }

    fn on_list_response(
        &mut self,
        now: Instant,
        sender: ServerId,
        reject: bool,
        servers: Vec<ServerInformation>,
    ) {
        let Init::Mentoring {
            mentor,
            step: MentorStep::List,
            ..
        } = self.enrp.init
        else {
            return;
        };
        if mentor != sender {
            return;
        }
        if reject {
            // 3.2.2.2: the mentor is starting itself: another one, or
            // the same again after MAX-TIME-NO-RESPONSE (the deadline).
            let other = self.enrp.peers.up().map(|p| p.id).find(|&id| id != mentor);
            if let Some(other) = other {
                self.start_mentor(now, other);
            }
            return;
        }
        for s in servers {
            let Transport::Tcp { address, port, .. } = s.transport else {
                continue;
            };
            self.learn_peer(now, s.server_id, SocketAddr::new(address, port));
        }
        self.request_table(now, mentor, MentorStep::Table, 0, 0);
    }

    /// A peer the mentor named: dial it if it is new to us (bounded by
    /// `max_peers`, and only ever as a registrar it must prove to be).
    fn learn_peer(&mut self, now: Instant, id: ServerId, address: SocketAddr) {
        if id == self.config.server_id
            || self.enrp.peers.peers.contains_key(&id)
            || self.enrp.statics.iter().any(|s| s.address == address)
            || self.enrp.statics.len() >= self.config.enrp.max_peers
        {
            return;
        }
        self.enrp.statics.push(StaticPeer {
            address,
            conn: None,
            dial_at: now,
            backoff: self.config.enrp.reconnect_interval,
            is_self: false,
            hint: false,
        });
    }

    // ----- initialisation (3.2) ----------------------------------------------

    fn start_mentor(&mut self, now: Instant, mentor: ServerId) {
        tracing::info!(%mentor, "mentor chosen: asking for its peer list");
        let me = self.config.server_id;
        self.enrp.init = Init::Mentoring {
            mentor,
            step: MentorStep::List,
            deadline: now + self.config.enrp.max_time_no_response,
            pages: 0,
            pes: 0,
        };
        if let Some(conn) = self.peer_conn(mentor) {
            self.send_enrp(
                conn,
                EnrpMessage::ListRequest {
                    sender: me,
                    receiver: mentor,
                },
            );
        }
    }

    /// The mentor did not answer in time, or is gone: the next peer that
    /// is up (the same one if it is the only one), else wait for one.
    fn next_mentor(&mut self, now: Instant, failed: ServerId) {
        let up: Vec<ServerId> = self.enrp.peers.up().map(|p| p.id).collect();
        let next = up
            .iter()
            .copied()
            .find(|&id| id > failed)
            .or_else(|| up.first().copied());
        match next {
            Some(id) => self.start_mentor(now, id),
            None => self.enrp.init = Init::Waiting,
        }
    }

    // ----- time ---------------------------------------------------------------

    /// The earliest ENRP deadline.
    pub(super) fn enrp_deadline(&self) -> Option<Instant> {
        let e = &self.enrp;
        let c = &self.config.enrp;
        let dials = e
            .statics
            .iter()
            .filter(|s| s.conn.is_none() && !s.is_self)
            .map(|s| s.dial_at);
        let peers = e.peers.up().map(|p| match p.probing {
            Some(t) => t + c.max_time_no_response,
            None => p.last_heard + c.max_time_last_heard,
        });
        let audits = e
            .peers
            .peers
            .values()
            .filter_map(|p| p.audit.as_ref().and_then(|a| a.deadline));
        let init = match &e.init {
            Init::Mentoring { deadline, .. } => Some(*deadline),
            Init::Ready | Init::Waiting => None,
        };
        let init = init.into_iter().chain(e.alone_at);
        let serving = e
            .serving
            .values()
            .map(|s| s.expires)
            .chain(e.takeovers.values().map(|t| t.deadline));
        let heartbeat = e.peers.up().next().map(|_| e.next_heartbeat);
        dials
            .chain(peers)
            .chain(audits)
            .chain(init)
            .chain(serving)
            .chain(heartbeat)
            .min()
    }

    /// ENRP's clock-driven work.
    pub(super) fn enrp_timeout(&mut self, now: Instant) {
        self.note_stall(now);
        if self.enrp.table_held_until.is_some_and(|t| now >= t) {
            // The recheck after a stall is over: PEs that did not answer
            // are no longer suspect, only gone or moved.
            self.enrp.table_held_until = None;
            self.enrp.reclaiming.clear();
        }
        self.dial_statics(now);
        if now >= self.enrp.next_heartbeat {
            self.enrp.next_heartbeat = now + self.config.enrp.heartbeat_cycle;
            let hb = self.presence(false);
            let conns: Vec<ConnId> = self.enrp.peers.up().filter_map(Peer::conn).collect();
            for conn in conns {
                self.send_enrp(conn, hb.clone());
            }
        }
        self.check_silence(now);
        if self.enrp.alone_at.is_some_and(|t| now >= t) {
            self.enrp.alone_at = None;
            if self.enrp.init != Init::Ready {
                tracing::warn!("no mentor completed the initialisation in time: serving pool users from the table as it is");
                self.enrp.serving_alone = true;
            }
        }
        if let Init::Mentoring {
            mentor,
            step,
            deadline,
            ..
        } = self.enrp.init
        {
            if now >= deadline {
                tracing::warn!(%mentor, ?step, "the mentor did not answer in time");
                self.next_mentor(now, mentor);
            }
        }
        self.expire_transfers(now);
        self.expire_takeovers(now);
    }

    fn dial_statics(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .enrp
            .statics
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_none() && !s.is_self && s.dial_at <= now)
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let address = self.enrp.statics[i].address;
            match self.connect(now, address, ConnKind::EnrpOutbound) {
                Ok(conn) => self.enrp.statics[i].conn = Some(conn),
                Err(e) => {
                    tracing::error!(error = %e, "cannot dial a peer");
                    self.enrp.statics[i].is_self = true;
                }
            }
        }
    }

    /// RFC 5353 3.4.3: a peer silent past MAX-TIME-LAST-HEARD is asked
    /// for its presence; one that does not answer within
    /// MAX-TIME-NO-RESPONSE is down.
    fn check_silence(&mut self, now: Instant) {
        let c = &self.config.enrp;
        let (last_heard, no_response) = (c.max_time_last_heard, c.max_time_no_response);
        let mut probe = Vec::new();
        let mut dead = Vec::new();
        for p in self.enrp.peers.up() {
            match p.probing {
                Some(t) if now >= t + no_response => dead.push(p.id),
                None if now >= p.last_heard + last_heard => probe.push(p.id),
                _ => {}
            }
        }
        let ask = self.presence(true);
        for id in probe {
            if let Some(p) = self.enrp.peers.peers.get_mut(&id) {
                p.probing = Some(now);
            }
            if let Some(conn) = self.peer_conn(id) {
                self.send_enrp(conn, ask.clone());
            }
        }
        for id in dead {
            self.peer_down(now, id, "no answer to a presence request".into());
        }
    }

    // ----- sending --------------------------------------------------------------

    /// Our presence: R flag, our own PEs' checksum, our ENRP transport
    /// and our nonce.
    pub(super) fn presence(&self, reply_required: bool) -> (EnrpMessage, EnrpExtensions) {
        let me = self.config.server_id;
        let server_info = self.config.enrp.advertise.map(|a| ServerInformation {
            server_id: me,
            transport: tcp(a),
        });
        (
            EnrpMessage::Presence {
                reply_required,
                sender: me,
                receiver: ServerId::UNDETERMINED,
                checksum: Some(self.handlespace.checksum(me)),
                server_info,
            },
            EnrpExtensions {
                nonce: Some(self.enrp.nonce),
                ..EnrpExtensions::default()
            },
        )
    }

    /// Send an ENRP message (with its extensions) on `conn`.
    pub(super) fn send_enrp(&mut self, conn: ConnId, msg: impl Into<EnrpOut>) {
        let EnrpOut(m, ext) = msg.into();
        self.stats.enrp.sent += 1;
        self.send(conn, Message::Enrp(m, ext));
    }

    /// The association messages to peer `id` go out on.
    pub(super) fn peer_conn(&self, id: ServerId) -> Option<ConnId> {
        self.enrp.peers.peers.get(&id).and_then(Peer::conn)
    }
}

/// An ENRP message to send, with or without extensions.
pub(super) struct EnrpOut(EnrpMessage, EnrpExtensions);

impl From<EnrpMessage> for EnrpOut {
    fn from(m: EnrpMessage) -> Self {
        EnrpOut(m, EnrpExtensions::default())
    }
}

impl From<(EnrpMessage, EnrpExtensions)> for EnrpOut {
    fn from((m, e): (EnrpMessage, EnrpExtensions)) -> Self {
        EnrpOut(m, e)
    }
}

/// A TCP transport parameter for `a`.
fn tcp(a: SocketAddr) -> Transport {
    Transport::Tcp {
        port: a.port(),
        transport_use: TransportUse::DataOnly,
        address: a.ip(),
    }
}

/// Where a peer says it can be dialled: its transport's address, or,
/// when that is unspecified (it listens on every address), the address
/// it connected from, with the port it announced.
pub(super) fn advertised_address(t: &Transport, remote: SocketAddr) -> Option<SocketAddr> {
    let Transport::Tcp { address, port, .. } = t else {
        return None;
    };
    if *port == 0 {
        return None;
    }
    let ip = if address.is_unspecified() {
        remote.ip()
    } else {
        *address
    };
    Some(SocketAddr::new(ip, *port))
}
