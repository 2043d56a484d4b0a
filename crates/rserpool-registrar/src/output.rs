//! What the core asks its driver to do (send, close) and what it reports
//! (events for logs, metrics and watchers; counters).

use std::collections::BTreeMap;

use std::net::IpAddr;

use rserpool_handlespace::{ConnId, Identity};
use std::net::SocketAddr;

use rserpool_wire::{
    AsapMessage, CauseCode, EnrpExtensions, EnrpMessage, OperationError, PeId, PoolHandle,
    ServerId, Transport,
};
use serde::Serialize;

use crate::client::{ConnKind, Protocol};

/// A message of either protocol, as the core receives and sends them:
/// each connection carries one ([`ConnKind::protocol`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An ASAP message (RFC 5352).
    Asap(AsapMessage),
    /// An ENRP message (RFC 5353) with this implementation's extension
    /// parameters (empty for a peer that sends none, such as RSPLIB).
    Enrp(EnrpMessage, EnrpExtensions),
}

impl Message {
    /// Its protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            Message::Asap(_) => Protocol::Asap,
            Message::Enrp(..) => Protocol::Enrp,
        }
    }

    /// The RFC name of its type.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Asap(m) => m.name(),
            Message::Enrp(m, _) => m.name(),
        }
    }

    /// Append its canonical encoding to `out`
    /// ([`rserpool_wire::WireMessage::encode`]).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), rserpool_wire::EncodeError> {
        match self {
            Message::Asap(m) => m.encode(out),
            Message::Enrp(m, ext) => ext.encode(m, out),
        }
    }

    /// The ASAP message, if it is one.
    pub fn as_asap(&self) -> Option<&AsapMessage> {
        match self {
            Message::Asap(m) => Some(m),
            Message::Enrp(..) => None,
        }
    }

    /// The ENRP message, if it is one.
    pub fn as_enrp(&self) -> Option<&EnrpMessage> {
        match self {
            Message::Enrp(m, _) => Some(m),
            Message::Asap(_) => None,
        }
    }
}

impl From<AsapMessage> for Message {
    fn from(m: AsapMessage) -> Self {
        Message::Asap(m)
    }
}

impl From<EnrpMessage> for Message {
    fn from(m: EnrpMessage) -> Self {
        Message::Enrp(m, EnrpExtensions::default())
    }
}

/// An action for the driver, or an event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Send a message on a connection (in the connection's protocol).
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: Message,
    },
    /// Open a connection to `address` (TCP, then TLS with the
    /// registrar's own credentials in secure mode), as
    /// [`crate::RegistrarCore::connect`] asked. The driver answers with
    /// [`crate::RegistrarCore::handle_connected`] or
    /// [`crate::RegistrarCore::handle_connect_failed`] for `conn`, and
    /// uses `conn` for the connection from then on.
    Connect {
        /// The handle the core gave the connection.
        conn: ConnId,
        /// Where to connect.
        address: SocketAddr,
        /// What the connection is.
        kind: ConnKind,
    },
    /// Close a connection (after sending what was queued before).
    Close {
        /// Connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// Something happened that operators want to see.
    Event(Event),
}

/// Why a PE left the handlespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Removal {
    /// The PE deregistered.
    Deregistered,
    /// Its registration life ended without a re-registration.
    LifetimeExpired,
    /// It did not answer a keep-alive in time (or its connection closed
    /// and it did not come back).
    KeepAliveTimeout,
    /// MAX-BAD-PE-REPORT distinct reporters said it is unreachable, and
    /// the keep-alive that checked it went unanswered.
    Unreachable,
    /// The credentials of the identity that registered it were revoked.
    Revoked,
    /// An operator removed it (the admin API).
    Operator,
    /// An operator drained it, and it was still registered when the
    /// drain's timeout ended.
    DrainTimeout,
    /// A change of the authorised peer database denies its registration
    /// now (its pool, its addresses or its registrant).
    Unauthorised,
    /// Its home, a peer registrar, removed it (ENRP_HANDLE_UPDATE
    /// DEL_PE), or an audit found the home no longer has it.
    PeerRemoved,
}

impl Removal {
    /// The reason in words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Removal::Deregistered => "deregistered",
            Removal::LifetimeExpired => "registration life ended",
            Removal::KeepAliveTimeout => "keep-alive timeout: its connection died with it",
            Removal::Unreachable => {
                "reported unreachable by pool users, and did not answer the keep-alive that checked it"
            }
            Removal::Revoked => "the credentials of its registrant were revoked",
            Removal::Operator => "removed by an operator",
            Removal::DrainTimeout => "drained, and still registered when the drain timed out",
            Removal::Unauthorised => "the authorised peer database no longer allows its registration",
            Removal::PeerRemoved => "its home registrar, a peer, removed it",
        }
    }
}

/// How a registrar checks a PE that MAX-BAD-PE-REPORT reporters said is
/// unreachable (RFC 5352 3.5, RFC 5355 2.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportCheck {
    /// A keep-alive went out; the PE is removed if it goes unanswered.
    Probing,
    /// A keep-alive was out already; its answer decides.
    Outstanding,
    /// The per-PE keep-alive limit (RFC 5355 2.14) allows no probe now;
    /// the next regular keep-alive checks the PE.
    Limited,
    /// A PE homed here with no connection to check it on (taken over
    /// from a failed registrar, not re-registered since): removed. A
    /// live one re-registers (RFC 5352 3.1) and comes back.
    Unconnected,
}

/// A request the core refused, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// Not allowed for this identity (RFC 5355: anonymous registration,
    /// foreign address, another identity's PE).
    Security,
    /// Over a rate limit or a resource cap.
    RateLimited,
    /// Invalid values (lifetime, transport).
    Invalid,
    /// Inconsistent with the pool (policy, transport type, data/control).
    Inconsistent,
}

/// An event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A PE registered (or re-registered).
    Registered {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Who registered it.
        identity: String,
        /// First registration (not a re-registration).
        new: bool,
        /// A new PE, or a re-registration that changed its user
        /// transport or its policy; `false` when it only renewed it.
        changed: bool,
        /// Its user transport's addresses.
        addresses: Vec<IpAddr>,
        /// Its user transport's port.
        port: u16,
        /// Its user transport's protocol ([`protocol_name`]).
        protocol: &'static str,
        /// Its policy's short name ([`rserpool_wire::Policy::name`]).
        policy: &'static str,
    },
    /// An operator drained a PE (or changed the timeout of its drain): it
    /// stays registered but is not handed out.
    Drained {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Who (`admin API from ADDRESS`).
        by: String,
        /// Seconds until the drain times out and the PE is removed
        /// (`None`: no timeout).
        timeout_seconds: Option<u64>,
    },
    /// An operator undrained a drained PE: it is handed out again.
    Undrained {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Who (`admin API from ADDRESS`).
        by: String,
    },
    /// A PE left the handlespace.
    Removed {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Why.
        reason: Removal,
    },
    /// A request was refused.
    Refused {
        /// Connection.
        conn: ConnId,
        /// Who asked.
        identity: String,
        /// The request's message name.
        request: &'static str,
        /// Why.
        refusal: Refusal,
        /// The cause sent back.
        #[serde(serialize_with = "cause_name")]
        cause: CauseCode,
        /// Details for the log.
        detail: String,
    },
    /// MAX-BAD-PE-REPORT distinct reporters reported a PE unreachable
    /// within the window; the registrar checks it.
    ReportedUnreachable {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// The reporters (identities; anonymous ones by source address).
        reporters: Vec<String>,
        /// How the PE is checked.
        check: ReportCheck,
    },
    /// A PE reported unreachable answered the keep-alive that checked it:
    /// it stays, and the reports are void.
    ReportsRefuted {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Who had reported it.
        reporters: Vec<String>,
    },
    /// Credentials were revoked or replaced (a reload).
    Revoked {
        /// Identities revoked (their PEs are removed).
        identities: Vec<String>,
        /// Identities that must authenticate again.
        reauthenticate: Vec<String>,
        /// Connections closed.
        connections_closed: usize,
        /// PEs removed.
        pes_removed: usize,
    },
    /// The authorised peer database was replaced or changed, and
    /// everything re-validated against it
    /// ([`crate::RegistrarCore::replace_apd`]).
    AuthorisationChanged {
        /// Entries of the new database.
        entries: usize,
        /// Connections closed (now denied).
        connections_closed: usize,
        /// PEs removed (now denied).
        pes_removed: usize,
    },
    /// A connection the core asked for ([`Output::Connect`]) could not
    /// be opened.
    ConnectFailed {
        /// The connection's handle.
        conn: ConnId,
        /// Where it was to go.
        address: SocketAddr,
        /// What it was to be.
        kind: ConnKind,
        /// Why it failed (the driver's words).
        reason: String,
    },
    /// Another registrar had this one's server identifier while this
    /// one was still starting: it drew a new one (RFC 5353 3.2.1).
    ServerIdChanged {
        /// The identifier the other registrar has.
        from: ServerId,
        /// This registrar's from now on.
        to: ServerId,
    },
    /// A peer registrar's association is up: its first ENRP message on
    /// an authenticated connection named its server identifier.
    PeerUp {
        /// Its server identifier.
        server_id: ServerId,
        /// Its address.
        address: SocketAddr,
        /// The identity it proved.
        identity: String,
    },
    /// A peer registrar is gone: its last association closed, or it did
    /// not answer a presence request in time.
    PeerDown {
        /// Its server identifier.
        server_id: ServerId,
        /// Why.
        reason: String,
    },
    /// A handle table transfer from a peer ended: the mentor's whole
    /// table at start (RFC 5353 3.2.3), or an audit's re-synchronisation
    /// of the peer's own PEs (3.6.3).
    TableSynced {
        /// The peer it came from.
        from: ServerId,
        /// PEs received.
        pes: usize,
        /// Pages (messages).
        pages: u32,
        /// PEs removed because the peer no longer has them (audits only).
        removed: usize,
        /// An audit (else the start-up download).
        audit: bool,
    },
    /// A failed registrar was taken over (RFC 5353 3.5): its PEs are
    /// homed at the winner now.
    TakenOver {
        /// The registrar taken over (this one, if it learns it was).
        target: ServerId,
        /// The winner (this one, if it won).
        winner: ServerId,
        /// PEs that moved.
        pes: usize,
    },
    /// A message could not be decoded.
    Malformed {
        /// Connection.
        conn: ConnId,
        /// Who sent it.
        identity: String,
        /// The decoding error.
        error: String,
    },
}

impl Event {
    /// The event's name, as in its JSON `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Registered { .. } => "registered",
            Event::Drained { .. } => "drained",
            Event::Undrained { .. } => "undrained",
            Event::Removed { .. } => "removed",
            Event::Refused { .. } => "refused",
            Event::ReportedUnreachable { .. } => "reported_unreachable",
            Event::ReportsRefuted { .. } => "reports_refuted",
            Event::Revoked { .. } => "revoked",
            Event::AuthorisationChanged { .. } => "authorisation_changed",
            Event::ConnectFailed { .. } => "connect_failed",
            Event::PeerUp { .. } => "peer_up",
            Event::ServerIdChanged { .. } => "server_id_changed",
            Event::PeerDown { .. } => "peer_down",
            Event::TableSynced { .. } => "table_synced",
            Event::TakenOver { .. } => "taken_over",
            Event::Malformed { .. } => "malformed",
        }
    }
}

/// The protocol of a transport, as events and the admin API name it.
pub fn protocol_name(t: &Transport) -> &'static str {
    match t {
        Transport::Sctp { .. } => "sctp",
        Transport::Tcp { .. } => "tcp",
        Transport::Udp { .. } => "udp",
        Transport::UdpLite { .. } => "udp-lite",
        Transport::Dccp { .. } => "dccp",
        Transport::Opaque { .. } => "opaque",
    }
}

fn cause_name<S: serde::Serializer>(c: &CauseCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

/// Counters since start. RFC 5525 defines no counters (its objects are
/// tables of the handlespace); these are the registrar's own, exported
/// as Prometheus metrics by [`crate::admin`] (`docs/admin.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Accepted first registrations.
    pub registrations: u64,
    /// Accepted re-registrations.
    pub reregistrations: u64,
    /// Accepted deregistrations (of existing PEs).
    pub deregistrations: u64,
    /// Handle resolutions answered (including unknown pools).
    pub resolutions: u64,
    /// Keep-alives sent.
    pub keep_alives_sent: u64,
    /// H-flag keep-alives sent over PEs' standby links after a takeover
    /// (docs/tcp-mapping.md).
    pub standby_calls: u64,
    /// Standby claims not recorded: by another identity than the PE's
    /// registrant, or over the per-connection bound.
    pub standby_claims_refused: u64,
    /// PEs removed for not answering keep-alives.
    pub keep_alive_failures: u64,
    /// PEs removed at the end of their registration life.
    pub lifetime_expiries: u64,
    /// Unreachable reports accepted.
    pub unreachable_reports: u64,
    /// Keep-alives sent to check a PE that MAX-BAD-PE-REPORT reporters
    /// reported unreachable.
    pub unreachable_probes: u64,
    /// Reported PEs that answered their check (and stayed).
    pub unreachable_refuted: u64,
    /// Reported PEs removed because their check went unanswered.
    pub unreachable_removals: u64,
    /// PEs removed because their registrant's credentials were revoked.
    pub revocation_removals: u64,
    /// Changes of the authorised peer database (and its first setting).
    pub apd_changes: u64,
    /// PEs removed because a database change denies them now.
    pub apd_removals: u64,
    /// Connections closed because a database change denies them now.
    pub apd_connections_closed: u64,
    /// Requests the authorised peer database denied (also counted in
    /// [`Self::refused_security`]).
    pub refused_unauthorised: u64,
    /// Drains by an operator (new drains and timeout changes).
    pub operator_drains: u64,
    /// Undrains by an operator (also of PEs that were not drained).
    pub operator_undrains: u64,
    /// PEs removed by an operator.
    pub operator_removals: u64,
    /// Drained PEs removed when their drain timed out.
    pub drain_timeout_removals: u64,
    /// Requests refused for security reasons.
    pub refused_security: u64,
    /// Requests refused by a rate limit or resource cap.
    pub refused_rate_limited: u64,
    /// Of those, refused by a rate limit: by kind of request and by the
    /// layer that refused (identity, address, global).
    pub rate_limited: crate::core::RateLimited,
    /// Requests refused for invalid values (lifetime, transport).
    pub refused_invalid: u64,
    /// Registrations refused as inconsistent with their pool (policy,
    /// transport type, data/control configuration; RFC 5354 3.12.6-3.12.9).
    pub refused_inconsistent: u64,
    /// Messages that could not be decoded, and messages of the other
    /// protocol than their connection's (ASAP on ENRP and vice versa).
    pub malformed: u64,
    /// ENRP counters.
    pub enrp: EnrpStats,
    /// Connections the core asked the driver to open.
    pub connects: u64,
    /// Of those, the ones that could not be opened.
    pub connect_failures: u64,
    /// Connections established (after the TLS handshake in secure mode).
    pub connections: u64,
    /// Connections refused because their identity had
    /// `max_connections_per_identity` open.
    pub connections_refused_per_identity: u64,
    /// Error causes sent back (in ASAP_ERROR and in responses that carry
    /// an operation error, RFC 5354 section 3.12), by the cause's RFC name
    /// ([`CauseCode::name`]). A message with several causes counts each.
    pub errors_sent: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Count the causes of an operation error that goes out.
    pub(crate) fn count_errors(&mut self, error: &OperationError) {
        for c in &error.causes {
            *self.errors_sent.entry(c.code.name()).or_insert(0) += 1;
        }
    }
}

/// The key that binds a PE to its registrant, shown in events.
pub(crate) fn identity_text(i: &Identity) -> String {
    i.0.to_string()
}

/// ENRP counters (RFC 5353; what peers sent, what was refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnrpStats {
    /// ENRP messages sent.
    pub sent: u64,
    /// ENRP messages received from bound peers.
    pub received: u64,
    /// Messages naming another sender than the association's peer, or
    /// an identifier bound to another identity: dropped.
    pub spoofed: u64,
    /// Messages for another receiver: dropped.
    pub misdirected: u64,
    /// ENRP_PRESENCE heard on the multicast channel (module `hints`).
    pub presence_hints: u64,
    /// Of those, the ones whose address was dialled.
    pub presence_hints_dialled: u64,
    /// Associations that reached this registrar itself.
    pub self_connections: u64,
    /// Another registrar with this registrar's identifier.
    pub id_collisions: u64,
    /// ENRP_ERROR received.
    pub errors_received: u64,
    /// Table pages nobody asked for: dropped.
    pub unsolicited: u64,
    /// Takeovers of a failed peer this registrar won (RFC 5353 3.5).
    pub takeovers_won: u64,
    /// Takeovers it started and lost to a peer with a larger identifier
    /// (or saw another peer complete).
    pub takeovers_lost: u64,
    /// Takeover messages refused: for this registrar, or for a peer it
    /// still hears (RFC 5355 2.17).
    pub takeovers_refused: u64,
    /// Takeovers given up (not every peer acknowledged, or the target
    /// spoke again).
    pub takeovers_abandoned: u64,
    /// Handle updates sent (one per peer).
    pub updates_sent: u64,
    /// Handle updates received.
    pub updates_received: u64,
    /// Handle updates refused (rate limit included).
    pub updates_refused: u64,
    /// Of those, over the peer's rate.
    pub updates_rate_limited: u64,
    /// Of those, claims overtaken by a newer one (ownership epochs).
    pub updates_stale: u64,
    /// Peers' PEs taken (updates and table entries).
    pub pes_applied: u64,
    /// Table entries refused.
    pub table_entries_refused: u64,
    /// PEs of ours that re-registered with a peer.
    pub pes_moved_away: u64,
    /// Handle table pages sent.
    pub pages_sent: u64,
    /// Handle table pages received.
    pub pages_received: u64,
    /// Audits started.
    pub audits: u64,
}

/// A peer registrar as operators see it ([`crate::RegistrarCore::peers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// Its server identifier.
    pub server_id: ServerId,
    /// The address of its association.
    pub address: SocketAddr,
    /// The ENRP transport it announces.
    pub advertised: Option<SocketAddr>,
    /// The identity it proved.
    pub identity: String,
    /// Whether an association is up.
    pub up: bool,
    /// When it was last heard (the core's clock).
    pub last_heard: std::time::Instant,
    /// PEs it owns here.
    pub pes: usize,
    /// The checksum of its own PEs it last announced.
    pub checksum: Option<u16>,
    /// Whether that agrees with ours of its PEs.
    pub checksum_agrees: bool,
    /// An audit of its PEs is in progress.
    pub auditing: bool,
}
