//! Connections as the core sees them: accepted ones and those it asked
//! the driver to open, what each is (its kind, the identity of the other
//! side), the frames they carry and the one path for what cannot be
//! decoded; and credential revocations, which end connections.

use std::net::SocketAddr;
use std::time::Instant;

use rserpool_handlespace::{ConnId, Identity};
use rserpool_security::PeerIdentity;
use rserpool_wire::framing::FramingError;
use rserpool_wire::{
    receive, AsapMessage, Cause, CauseCode, EnrpExtensions, EnrpMessage, PeId, PoolHandle,
};

use crate::client::{Client, ClientInfo, ConnKind, Credential, Protocol};
use crate::output::{identity_text, Event, Message, Output, Refusal, Removal};
use crate::revocation::{RemovedPe, Revocation, RevocationReport};

use super::RegistrarCore;

/// Most bytes of an offending message echoed back in an error cause.
pub(super) use rserpool_wire::MAX_ECHOED;

/// The first handle [`RegistrarCore::connect`] gives out: drivers number
/// the connections they accept below it (2^63), so the two never meet.
pub const OUTBOUND_CONNECTIONS: ConnId = ConnId::new(1 << 63);

/// A connection asked of the driver and not yet open.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    address: SocketAddr,
    kind: ConnKind,
    since: Instant,
}

/// Why [`RegistrarCore::connect`] asked nothing of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Connections of this kind are accepted, not opened.
    #[error("{} connections are accepted, not opened", .0.name())]
    NotOutbound(ConnKind),
}

impl RegistrarCore {
    /// A connection was accepted (after its TLS handshake in secure
    /// mode); `info` says on which kind of listener and who the other
    /// side proved to be. An identity over its connection limit gets an
    /// error and the connection is closed; so does a peer registrar that
    /// proved no identity (RFC 5355 2.5: registrars authenticate each
    /// other), and an identity the authorised peer database does not
    /// allow in a role of this listener.
    pub fn handle_connect(&mut self, now: Instant, conn: ConnId, info: ClientInfo) {
        self.admit(now, conn, info);
    }

    /// After a connection was admitted: ENRP speaks first on what this
    /// registrar dialled.
    fn opened(&mut self, now: Instant, conn: ConnId) {
        let kind = match self.clients.get(&conn) {
            Some(c) if !c.closing => c.kind,
            _ => return,
        };
        if kind.protocol() == Protocol::Enrp {
            self.enrp_opened(now, conn, kind);
        }
    }

    /// Ask the driver to open a connection of `kind` (an outbound kind,
    /// [`ConnKind::is_outbound`]) to `address`, as quinn-proto's
    /// `Endpoint::connect` does: the returned handle names the connection
    /// in [`Output::Connect`], in the driver's answer
    /// ([`RegistrarCore::handle_connected`] or
    /// [`RegistrarCore::handle_connect_failed`]) and from then on like any
    /// other connection. Handles are [`OUTBOUND_CONNECTIONS`] and up, so
    /// they never meet the driver's numbers of accepted connections.
    pub fn connect(
        &mut self,
        now: Instant,
        address: SocketAddr,
        kind: ConnKind,
    ) -> Result<ConnId, ConnectError> {
        if !kind.is_outbound() {
            return Err(ConnectError::NotOutbound(kind));
        }
        let conn = self.next_outbound;
        self.next_outbound = self.next_outbound.next().max(OUTBOUND_CONNECTIONS);
        self.pending.insert(
            conn,
            Pending {
                address,
                kind,
                since: now,
            },
        );
        self.stats.connects += 1;
        self.outputs.push_back(Output::Connect {
            conn,
            address,
            kind,
        });
        Ok(conn)
    }

    /// The connection [`Output::Connect`] asked for is open; the other
    /// side proved `identity` (`None`: insecure mode). It is then like
    /// an accepted connection ([`RegistrarCore::handle_connect`]). An
    /// unknown handle is ignored.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId, identity: Option<PeerIdentity>) {
        let Some(p) = self.pending.remove(&conn) else {
            return;
        };
        self.admit(now, conn, ClientInfo::new(identity, p.address, p.kind));
        self.opened(now, conn);
    }

    /// The connection [`Output::Connect`] asked for could not be opened
    /// (TCP, TLS, or the driver's limits): `reason` says why. An unknown
    /// handle is ignored.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        let Some(p) = self.pending.remove(&conn) else {
            return;
        };
        self.enrp_connect_failed(now, conn);
        self.stats.connect_failures += 1;
        self.outputs.push_back(Output::Event(Event::ConnectFailed {
            conn,
            address: p.address,
            kind: p.kind,
            reason: reason.to_owned(),
        }));
    }

    /// The connections asked of the driver and not yet open: handle,
    /// address, kind and when they were asked for.
    pub fn pending_connections(
        &self,
    ) -> impl Iterator<Item = (ConnId, SocketAddr, ConnKind, Instant)> + '_ {
        self.pending
            .iter()
            .map(|(&c, p)| (c, p.address, p.kind, p.since))
    }

    /// Take a connection on: the checks every new connection passes.
    fn admit(&mut self, now: Instant, conn: ConnId, info: ClientInfo) {
        let peer = Client::new(&info, now);
        let protocol = info.kind.protocol();
        let refusal = if protocol == Protocol::Enrp
            && info
                .identity
                .as_ref()
                .is_some_and(PeerIdentity::is_anonymous)
        {
            Some((
                Refusal::Security,
                CauseCode::RejectedSecurity,
                "a peer registrar must authenticate (RFC 5355 2.5)".to_string(),
            ))
        } else if let Err(u) = self.may_connect(&peer) {
            // The authorised peer database: the roles of this listener.
            self.stats.refused_unauthorised += 1;
            Some((
                Refusal::Security,
                CauseCode::RejectedSecurity,
                u.to_string(),
            ))
        } else {
            let max = self.config.max_connections_per_identity;
            let open = self
                .connections_per_identity
                .get(&peer.identity)
                .copied()
                .unwrap_or(0);
            (open >= max).then(|| {
                self.stats.connections_refused_per_identity += 1;
                (
                    Refusal::RateLimited,
                    CauseCode::LackOfResources,
                    format!("{} already has {max} connections open", peer.identity.0),
                )
            })
        };
        if let Some((refusal, cause, detail)) = refusal {
            if refusal == Refusal::Security {
                self.stats.refused_security += 1;
            }
            self.outputs.push_back(Output::Event(Event::Refused {
                conn,
                identity: identity_text(&peer.identity),
                request: "connection",
                refusal,
                cause,
                detail: detail.clone(),
            }));
            self.send_error_in(
                conn,
                protocol,
                Cause::with_info(cause, detail.clone().into_bytes()),
            );
            self.close(conn, detail);
            return;
        }
        *self
            .connections_per_identity
            .entry(peer.identity.clone())
            .or_insert(0) += 1;
        self.stats.connections += 1;
        self.clients.insert(conn, peer);
    }

    /// A connection closed. Its PEs stay registered but can no longer be
    /// probed: each must re-register over a new connection within the
    /// keep-alive timeout or it is removed.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        // A connection still being opened is forgotten too.
        self.pending.remove(&conn);
        self.enrp_closed(now, conn);
        self.standby.closed(conn);
        let Some(peer) = self.clients.remove(&conn) else {
            return;
        };
        if let Some(n) = self.connections_per_identity.get_mut(&peer.identity) {
            *n -= 1;
            if *n == 0 {
                self.connections_per_identity.remove(&peer.identity);
            }
        }
        self.orphan_pes(now, conn);
    }

    /// Credentials changed: close the connections of revoked identities
    /// and of those that must authenticate again, and remove the PEs of
    /// revoked identities (RFC 5355 2.3: a PE belongs to the identity
    /// that registered it; without that identity it has no owner). The
    /// report says what ended; an event tells the operators.
    pub fn handle_revocation(&mut self, now: Instant, r: &Revocation) -> RevocationReport {
        let mut report = RevocationReport::default();
        if r.is_empty() {
            return report;
        }
        let ends = |p: &Client| {
            r.revoked.contains(&p.identity)
                || r.reauthenticate.contains(&p.identity)
                || (r.reauthenticate_certificates && p.credential == Credential::Certificate)
        };
        let mut closing: Vec<(ConnId, Identity)> = self
            .clients
            .iter()
            .filter(|(_, p)| ends(p))
            .map(|(&c, p)| (c, p.identity.clone()))
            .collect();
        closing.sort_unstable();
        let mut by_identity: std::collections::BTreeMap<Identity, usize> = Default::default();
        for (conn, identity) in closing {
            let why = if r.revoked.contains(&identity) {
                "credentials revoked"
            } else {
                "credentials replaced: authenticate again"
            };
            self.close(conn, why.into());
            self.handle_disconnect(now, conn);
            *by_identity.entry(identity).or_insert(0) += 1;
        }
        report.connections_closed = by_identity
            .into_iter()
            .map(|(i, n)| (identity_text(&i), n))
            .collect();
        for identity in &r.revoked {
            let mut pes: Vec<(PoolHandle, PeId)> = self
                .handlespace
                .by_identity(identity)
                .map(|(h, e)| (h.clone(), e.identifier))
                .collect();
            pes.sort_unstable();
            for (pool_handle, identifier) in pes {
                if self.remove(&pool_handle, identifier, Removal::Revoked) {
                    self.stats.revocation_removals += 1;
                    report.pes_removed.push(RemovedPe {
                        pool_handle,
                        identifier,
                        identity: identity_text(identity),
                    });
                }
            }
        }
        self.outputs.push_back(Output::Event(Event::Revoked {
            identities: r.revoked.iter().map(identity_text).collect(),
            reauthenticate: r.reauthenticate.iter().map(identity_text).collect(),
            connections_closed: report.connections(),
            pes_removed: report.pes_removed.len(),
        }));
        report
    }

    /// A framing error on a connection: the stream cannot be cut into
    /// messages any more, so the connection is closed after an error.
    pub fn handle_framing_error(&mut self, _now: Instant, conn: ConnId, error: &FramingError) {
        if self.is_closing(conn) {
            return;
        }
        let cause = Cause::new(CauseCode::InvalidValues);
        if self
            .note_malformed(conn, Some(cause), error.to_string())
            .is_some()
        {
            self.close(conn, format!("unframeable stream: {error}"));
        }
    }

    /// One complete frame from a connection (ChannelCodec output),
    /// decoded in the connection's protocol. What a connection the core
    /// is closing still sends is ignored, as is what an unknown one sends.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: &[u8]) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        if client.closing {
            return;
        }
        if client.credential == Credential::Insecure && is_tls_handshake(frame) {
            // A TLS client at a plain TCP listener (RFC 5355 2.15: the
            // two never meet). Its ClientHello cut as ASAP or ENRP is an
            // unknown type that the rules would discard unanswered,
            // leaving the client to time out: it gets an error (no TLS
            // record, which its TLS library reports) and the close.
            let info = frame[..frame.len().min(MAX_ECHOED)].to_vec();
            let cause = Cause::with_info(CauseCode::UnrecognizedMessage, info);
            let error = "a TLS handshake on a plain TCP (insecure) listener".to_string();
            if self.note_malformed(conn, Some(cause), error).is_some() {
                self.close(conn, "a TLS client at a plain TCP listener".into());
            }
            return;
        }
        // RFC 5354 3, 3.12: the one path of every core for a frame
        // (`rserpool_wire::receive`): what to report, and the message.
        let (message, report) = match client.kind.protocol() {
            Protocol::Asap => {
                let r = receive::<AsapMessage>(frame);
                (r.message.map(Message::from), r.report)
            }
            Protocol::Enrp => {
                let r = receive::<EnrpMessage>(frame);
                // Our extension parameters (they are skipped by the
                // decoder); malformed ones count as none.
                let ext = EnrpExtensions::read(frame).unwrap_or_default();
                (r.message.map(|m| Message::Enrp(m, ext)), r.report)
            }
        };
        match message {
            Ok(message) => {
                if let Some(error) = report {
                    // Parameters skipped with a report.
                    let protocol = self.protocol_of(conn);
                    self.send_operation_error_in(conn, protocol, error);
                }
                self.dispatch(now, conn, message);
            }
            Err(e) => {
                let cause = report.and_then(|r| r.causes.into_iter().next());
                self.protocol_error(conn, cause, e.to_string());
            }
        }
    }

    /// A decoded message from a connection: an [`AsapMessage`] or an
    /// [`rserpool_wire::EnrpMessage`] (or a [`Message`]). A message of
    /// the other protocol than the connection's is a protocol error,
    /// handled like an undecodable one ([`Self::handle_frame`]).
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: impl Into<Message>) {
        self.dispatch(now, conn, msg.into());
    }

    fn dispatch(&mut self, now: Instant, conn: ConnId, msg: Message) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        if client.closing {
            return;
        }
        let protocol = client.kind.protocol();
        match (protocol, msg) {
            (Protocol::Asap, Message::Asap(m)) => self.asap_message(now, conn, m),
            (Protocol::Enrp, Message::Enrp(m, ext)) => self.enrp_message(now, conn, m, ext),
            (_, other) => {
                // Over SCTP the PPID would have told the protocols apart;
                // here the listener does, and this is RFC 5354 3.12.3's
                // Unrecognized Message for this connection's protocol.
                let mut info = Vec::new();
                let _ = other.encode(&mut info);
                info.truncate(MAX_ECHOED);
                let error = format!("{} on an {} connection", other.name(), protocol.name());
                self.protocol_error(
                    conn,
                    Some(Cause::with_info(CauseCode::UnrecognizedMessage, info)),
                    error,
                );
            }
        }
    }

    /// The one path for a message that cannot be served (undecodable, in
    /// either protocol, or of the other protocol; the client cores match
    /// it): the connection's and the registrar's malformed counts go up;
    /// the sender gets `cause` (what RFC 5354 3.12 asks for) in an
    /// ASAP_ERROR or ENRP_ERROR; an [`Event::Malformed`] reports it; and
    /// once a connection sent more than `max_malformed_per_connection` it
    /// is closed (what is still in flight is ignored).
    pub(super) fn protocol_error(&mut self, conn: ConnId, cause: Option<Cause>, error: String) {
        let max = self.config.max_malformed_per_connection;
        // Once over the limit the connection is closing: `close` asks the
        // driver once, and what is still in flight is ignored.
        if self.note_malformed(conn, cause, error) > Some(max) {
            self.close(conn, format!("more than {max} malformed messages"));
        }
    }

    /// Whether the core asked the driver to close `conn`.
    pub(super) fn is_closing(&self, conn: ConnId) -> bool {
        self.clients.get(&conn).is_some_and(|p| p.closing)
    }

    /// Count a malformed input from `conn`, answer it with `cause` (if the
    /// rules ask for an answer) and report it. Returns the connection's
    /// count of malformed inputs; `None` for an unknown connection.
    pub(super) fn note_malformed(
        &mut self,
        conn: ConnId,
        cause: Option<Cause>,
        error: String,
    ) -> Option<u32> {
        let peer = self.clients.get_mut(&conn)?;
        peer.malformed += 1;
        let (count, identity) = (peer.malformed, identity_text(&peer.identity));
        self.stats.malformed += 1;
        if let Some(cause) = cause {
            self.send_error(conn, cause);
        }
        self.outputs.push_back(Output::Event(Event::Malformed {
            conn,
            identity,
            error,
        }));
        Some(count)
    }
}

/// Whether `frame` begins like a TLS handshake record (RFC 8446 5.1:
/// content type 22, legacy version 3.x), what a TLS client sends first.
fn is_tls_handshake(frame: &[u8]) -> bool {
    matches!(frame, [0x16, 0x03, 0x00..=0x04, ..])
}
