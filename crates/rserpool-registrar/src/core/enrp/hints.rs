//! ENRP_PRESENCE over UDP multicast (RFC 5353 3.2.1 lets a registrar
//! find its peers by multicast; off unless configured): a presence heard
//! there is a hint, never a fact. It only proposes an address to dial;
//! the association it leads to authenticates like any other (mutual TLS,
//! the registrar role of the authorised peer database, RFC 5355 2.5), and
//! nothing of the datagram is used beyond the address.
//!
//! What one host on the group can make this registrar do is bounded:
//! the address must be the datagram's source (no dials aimed at third
//! parties), new addresses are dialled at [`HINT_DIALS`], at most
//! [`MAX_HINTED`] hinted addresses wait at a time, and a hinted address
//! whose dial fails, or that closes before it proved to be a registrar,
//! is dropped rather than redialled.

use std::net::SocketAddr;
use std::time::Instant;

use rserpool_handlespace::ConnId;
use rserpool_security::rate_limit::Rate;
use rserpool_wire::{receive, EnrpMessage, WireMessage};

use super::peers::StaticPeer;
use super::RegistrarCore;

/// New hinted addresses dialled: one a second, four at once.
pub(super) const HINT_DIALS: Rate = Rate::new(1.0, 4.0);

/// Hinted addresses known and not yet proven at a time.
pub(super) const MAX_HINTED: usize = 16;

impl RegistrarCore {
    /// A datagram from the ENRP multicast channel, from `from`.
    pub fn handle_presence_hint(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.enrp.presence_hints += 1;
        let Ok(EnrpMessage::Presence {
            sender,
            server_info: Some(info),
            ..
        }) = receive::<EnrpMessage>(datagram).message
        else {
            tracing::debug!(%from, "multicast datagram that is no ENRP_PRESENCE with a transport: ignored");
            return;
        };
        let Some(address) = super::advertised_address(&info.transport, from) else {
            return;
        };
        let e = &self.enrp;
        let known = sender == self.config.server_id
            || e.peers.peers.contains_key(&sender)
            || e.peers
                .peers
                .values()
                .any(|p| p.advertised == Some(address))
            || e.statics.iter().any(|s| s.address == address);
        if known {
            return;
        }
        if address.ip() != from.ip() {
            tracing::debug!(%from, %address, "multicast presence naming another host: ignored");
            return;
        }
        let hinted = e.statics.iter().filter(|s| s.hint).count();
        if hinted >= MAX_HINTED || e.statics.len() >= self.config.enrp.max_peers {
            return;
        }
        if !self.enrp.hint_dials.try_take(HINT_DIALS, now) {
            return;
        }
        self.stats.enrp.presence_hints_dialled += 1;
        tracing::info!(%address, peer = %sender, "a multicast presence names a registrar: dialling it (it must authenticate)");
        self.enrp.statics.push(StaticPeer {
            address,
            conn: None,
            dial_at: now,
            backoff: self.config.enrp.reconnect_interval,
            is_self: false,
            hint: true,
        });
        self.dial_statics(now);
    }

    /// The dial of a hinted address failed, or its association ended
    /// before it proved to be a registrar: forget the address.
    pub(super) fn drop_hint(&mut self, conn: ConnId) {
        self.enrp
            .statics
            .retain(|s| !(s.hint && s.conn == Some(conn)));
    }
}

impl RegistrarCore {
    /// The ENRP_PRESENCE this registrar multicasts: its identifier and
    /// its ENRP transport (`None` without one to announce).
    pub fn multicast_presence(&self) -> Option<Vec<u8>> {
        let (msg, _) = self.presence(false);
        match &msg {
            EnrpMessage::Presence {
                server_info: Some(_),
                ..
            } => msg.to_bytes().ok(),
            _ => None,
        }
    }
}
