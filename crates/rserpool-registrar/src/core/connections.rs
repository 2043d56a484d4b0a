//! Connections as the core sees them: accepted ones and those it asked
//! the driver to open, what each is (its kind, the identity of the other
//! side), the frames they carry and the one path for what cannot be
//! decoded; and credential revocations, which end connections.

use std::time::Instant;

use rserpool_handlespace::{ConnId, Identity};
use rserpool_wire::framing::FramingError;
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, DecodeError, DecodeErrorKind, OperationError, PoolHandle,
};

use crate::client::{Client, ClientInfo, Credential};
use crate::output::{identity_text, Event, Output, Refusal, Removal};
use crate::revocation::{RemovedPe, Revocation, RevocationReport};

use super::RegistrarCore;

/// Most bytes of an offending message echoed back in an error cause.
pub(super) const MAX_ECHOED: usize = 512;

impl RegistrarCore {
    /// A connection was accepted (after its TLS handshake in secure mode).
    /// An identity over its connection limit gets an error and the
    /// connection is closed.
    pub fn handle_connect(&mut self, now: Instant, conn: ConnId, info: ClientInfo) {
        let peer = Client::new(&info, now);
        let max = self.config.max_connections_per_identity;
        let open = self
            .connections_per_identity
            .entry(peer.identity.clone())
            .or_insert(0);
        if *open >= max {
            self.stats.connections_refused_per_identity += 1;
            let detail = format!("{} already has {max} connections open", peer.identity.0);
            self.outputs.push_back(Output::Event(Event::Refused {
                conn,
                identity: identity_text(&peer.identity),
                request: "connection",
                refusal: Refusal::RateLimited,
                cause: CauseCode::LackOfResources,
                detail: detail.clone(),
            }));
            self.send_error(
                conn,
                Cause::with_info(CauseCode::LackOfResources, detail.clone().into_bytes()),
            );
            self.close(conn, detail);
            return;
        }
        *open += 1;
        self.stats.connections += 1;
        self.clients.insert(conn, peer);
    }

    /// A connection closed. Its PEs stay registered but can no longer be
    /// probed: each must re-register over a new connection within the
    /// keep-alive timeout or it is removed.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
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
            let mut pes: Vec<(PoolHandle, u32)> = self
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

    /// One complete frame from a connection (ChannelCodec output). What
    /// a connection the core is closing still sends is ignored.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: &[u8]) {
        if self.is_closing(conn) {
            return;
        }
        match AsapMessage::decode(frame) {
            Ok(d) => {
                if !d.unrecognized.is_empty() {
                    let causes = d
                        .unrecognized
                        .iter()
                        .map(|u| Cause::with_info(CauseCode::UnrecognizedParameter, u.tlv.clone()))
                        .collect();
                    self.send(
                        conn,
                        AsapMessage::Error {
                            error: OperationError { causes },
                        },
                    );
                }
                self.handle_message(now, conn, d.message);
            }
            Err(e) => self.malformed(conn, frame, &e),
        }
    }

    pub(super) fn malformed(&mut self, conn: ConnId, frame: &[u8], e: &DecodeError) {
        // RFC 5354 section 3.12: report what the type bits ask to report.
        let cause = e.cause().map(|code| {
            let info = match &e.kind {
                DecodeErrorKind::UnrecognizedParameter { tlv, .. } => tlv.clone(),
                _ => frame[..frame.len().min(MAX_ECHOED)].to_vec(),
            };
            Cause::with_info(code, info)
        });
        let max = self.config.max_malformed_per_connection;
        // Once over the limit the connection is closing: `close` asks the
        // driver once, and what is still in flight is ignored.
        if self.note_malformed(conn, cause, e.to_string()) > Some(max) {
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
