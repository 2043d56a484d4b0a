//! The peer list (RFC 5353 3.4): the registrars this one knows, each
//! with the association it speaks over, when it was last heard, the PE
//! checksum it last announced and the audit of its PEs; and the static
//! peers of the configuration, dialled until they answer. Pure
//! bookkeeping: the core decides what to send.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_handlespace::{ConnId, Identity};
use rserpool_security::rate_limit::{Rate, TokenBucket};
use rserpool_wire::{PeId, PoolHandle, ServerId};

/// One known peer registrar.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its server identifier.
    pub id: ServerId,
    /// The associations bound to it (a pair of registrars that both dial
    /// has two); the first is the one messages go out on.
    pub conns: Vec<ConnId>,
    /// The identity it proved: the one it is known by; until an
    /// association names it, the key it holds (ours).
    pub identity: Identity,
    /// The identity an association named it by (one it accepted from
    /// us, or a certificate): every association that names one must name
    /// this one.
    pub named: Option<Identity>,
    /// The address of its first association.
    pub address: SocketAddr,
    /// Its ENRP transport as it announced it (where others may dial it).
    pub advertised: Option<SocketAddr>,
    /// `peer_last_heard` (RFC 5353 4.1).
    pub last_heard: Instant,
    /// A presence with the R flag went out at this time, unanswered.
    pub probing: Option<Instant>,
    /// The PE checksum it last announced of its own PEs.
    pub checksum: Option<u16>,
    /// The audit of its PEs in progress (3.6.3).
    pub audit: Option<Audit>,
    /// No audit starts before this (an audit that ended still mismatched
    /// is not repeated at every heartbeat).
    pub audit_after: Instant,
    /// Its handle updates (RFC 5355 2.17: bounded).
    pub updates: TokenBucket,
}

impl Peer {
    pub fn new(
        id: ServerId,
        conn: ConnId,
        identity: Identity,
        address: SocketAddr,
        rate: Rate,
        now: Instant,
    ) -> Peer {
        Peer {
            id,
            conns: vec![conn],
            identity,
            named: None,
            address,
            advertised: None,
            last_heard: now,
            probing: None,
            checksum: None,
            audit: None,
            audit_after: now,
            updates: TokenBucket::new(rate, now),
        }
    }

    /// The association messages to it go out on.
    pub fn conn(&self) -> Option<ConnId> {
        self.conns.first().copied()
    }
}

/// A re-synchronisation of one peer's PEs (RFC 5353 3.6.3): what was
/// marked before the first page; each PE a page brings is unmarked,
/// what is still marked after the last page is removed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Audit {
    pub marked: BTreeSet<(PoolHandle, PeId)>,
    /// The page asked for is due by then.
    pub deadline: Option<Instant>,
    pub pages: u32,
    pub pes: usize,
}

/// A peer of the configuration (RFC 5353 3.2.2.1), dialled until it
/// answers and again after it is lost.
#[derive(Debug, Clone)]
pub(crate) struct StaticPeer {
    pub address: SocketAddr,
    /// The connection asked for or open.
    pub conn: Option<ConnId>,
    /// When to dial next (with `conn` empty).
    pub dial_at: Instant,
    /// The wait after the next failure.
    pub backoff: Duration,
    /// The address turned out to be this registrar: never dialled again.
    pub is_self: bool,
    /// Learnt from a presence on the multicast channel (module `hints`):
    /// dropped, not redialled, when its dial fails or it closes before
    /// it proved to be a registrar.
    pub hint: bool,
}

/// The peers, by server identifier, and which association is whose.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    pub peers: BTreeMap<ServerId, Peer>,
    pub by_conn: BTreeMap<ConnId, ServerId>,
}

impl PeerTable {
    /// The peer an association is bound to.
    pub fn of_conn(&self, conn: ConnId) -> Option<ServerId> {
        self.by_conn.get(&conn).copied()
    }

    /// Bind `conn` to the known peer `id`.
    pub fn add_conn(&mut self, id: ServerId, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.conns.contains(&conn) {
                p.conns.push(conn);
            }
            self.by_conn.insert(conn, id);
        }
    }

    /// Forget an association; returns its peer if that was its last.
    pub fn remove_conn(&mut self, conn: ConnId) -> Option<ServerId> {
        let id = self.by_conn.remove(&conn)?;
        let p = self.peers.get_mut(&id)?;
        p.conns.retain(|c| *c != conn);
        p.conns.is_empty().then_some(id)
    }

    /// Forget a peer and its associations (returned, to close).
    pub fn remove(&mut self, id: ServerId) -> Vec<ConnId> {
        let Some(p) = self.peers.remove(&id) else {
            return Vec::new();
        };
        for c in &p.conns {
            self.by_conn.remove(c);
        }
        p.conns
    }

    /// The peers with an association up, in identifier order.
    pub fn up(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values().filter(|p| !p.conns.is_empty())
    }
}
