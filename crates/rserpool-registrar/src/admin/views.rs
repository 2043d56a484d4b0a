//! The JSON documents of the admin API, built from the core inside its
//! task (one query per request) and serialized outside it. Field names
//! are stable; `docs/admin.md` describes them and the RFC 5525 objects
//! they correspond to.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use rserpool_handlespace::{ConnId, PoolElementEntry};
use rserpool_wire::{PeId, Policy, PoolHandle, ServerId, Transport, TransportUse};
use serde::Serialize;

use crate::{RegistrarCore, ServiceStats, Stats};

/// Default and largest number of PEs one handlespace or peers document
/// lists.
pub(crate) const DEFAULT_LIMIT: usize = 10_000;
/// Largest `limit` accepted (larger values are clamped).
pub(crate) const MAX_LIMIT: usize = 100_000;

/// The admin server's own counters and gauges (exact figures; the log
/// only summarises).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AdminStats {
    /// Requests with a missing or wrong bearer token (401 and 429).
    pub auth_failures: u64,
    /// Of those, the ones answered 429: their source address, or all
    /// addresses together, were over the failure budget.
    pub auth_rate_limited: u64,
    /// Admin connections open now that count against the caps (waiting
    /// for their request or in a handler; not those told to close).
    pub connections_open: u64,
    /// Most of those at once since start (at most `max_connections`).
    pub connections_peak: u64,
    /// Admin connections accepted within the caps.
    pub connections_accepted: u64,
    /// Connections closed at once: every connection was busy in a handler.
    pub connections_refused_limit: u64,
    /// Connections closed at once: every connection from the address was
    /// busy in a handler.
    pub connections_refused_address_limit: u64,
    /// Connections still waiting for their request closed to make room
    /// (total cap).
    pub connections_evicted_limit: u64,
    /// The same for the per-address cap.
    pub connections_evicted_address_limit: u64,
    /// Connections closed because their request headers were not complete
    /// within the header timeout.
    pub header_timeouts: u64,
    /// HTTPS connections whose TLS handshake failed or did not complete
    /// within the header timeout.
    pub tls_failures: u64,
    /// Failed accept calls (out of file descriptors and the like).
    pub accept_errors: u64,
    /// `/v1/events` streams open now.
    pub event_streams_open: u64,
    /// `/v1/events` requests refused (503) at the stream cap.
    pub event_streams_refused: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    pub server_id: ServerId,
    pub server_id_hex: String,
    pub version: &'static str,
    pub mode: &'static str,
    pub listen: Vec<SocketAddr>,
    pub uptime_seconds: u64,
    pub pools: usize,
    pub pool_elements: usize,
    pub pool_elements_drained: usize,
    pub connections: usize,
    /// The ENRP peers (as `/v1/peers`).
    pub peers: PeerTableView,
    pub core: Stats,
    pub service: ServiceStats,
    pub admin: AdminStats,
}

/// `GET /v1/stats`.
#[derive(Debug, Serialize)]
pub(crate) struct StatsView {
    pub core: Stats,
    pub service: ServiceStats,
    pub admin: AdminStats,
}

/// Counts and counters read from the core in one query.
#[derive(Debug)]
pub(crate) struct CoreCounts {
    pub pools: usize,
    pub pool_elements: usize,
    pub pool_elements_drained: usize,
    pub connections: usize,
    pub peers_up: usize,
    pub peers_known: usize,
    pub standby_links: usize,
    pub stats: Stats,
}

pub(crate) fn core_counts(core: &RegistrarCore) -> CoreCounts {
    CoreCounts {
        pools: core.handlespace().pool_count(),
        pool_elements: core.handlespace().len(),
        pool_elements_drained: core.handlespace().drained_count(),
        connections: core.connections(),
        peers_up: core.peers().filter(|p| p.up).count(),
        peers_known: core.peers().count(),
        standby_links: core.standby_links(),
        stats: core.stats().clone(),
    }
}

/// A duration in seconds, cut to whole milliseconds (so that JSON shows
/// `29.99`, not `29.990000000000002`).
pub(crate) fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// The wall-clock time of a core instant, given a reading of both clocks
/// taken together (the core reads no clock of its own): RFC 3339, UTC,
/// to the millisecond.
pub(crate) fn wall_time(at: Instant, now: Instant, wall_now: SystemTime) -> String {
    let ago = now.saturating_duration_since(at);
    let then = wall_now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(then).to_string()
}

/// Pool sizes, for the metrics.
pub(crate) fn pool_sizes(core: &RegistrarCore) -> Vec<(usize, PoolHandle)> {
    let hs = core.handlespace();
    hs.pool_handles()
        .map(|h| (hs.pool(h).map_or(0, |p| p.len()), h.clone()))
        .collect()
}

/// A pool handle as lossy UTF-8 text and as hex.
fn handle_text(h: &PoolHandle) -> (String, String) {
    (
        String::from_utf8_lossy(h.as_bytes()).into_owned(),
        hex::encode(h.as_bytes()),
    )
}

fn hex32(v: impl std::fmt::LowerHex) -> String {
    format!("{v:#010x}")
}

/// A transport parameter (rserpoolENRPUserTransport*, rserpoolENRPUserAddrTable).
#[derive(Debug, Serialize)]
pub(crate) struct TransportView {
    protocol: &'static str,
    /// IANA protocol number (rserpoolENRPUserTransportProto); none for opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol_number: Option<u8>,
    port: u16,
    addresses: Vec<IpAddr>,
    transport_use: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_hex: Option<String>,
}

impl TransportView {
    fn new(t: &Transport) -> Self {
        let number = match t {
            Transport::Sctp { .. } => Some(132),
            Transport::Tcp { .. } => Some(6),
            Transport::Udp { .. } => Some(17),
            Transport::UdpLite { .. } => Some(136),
            Transport::Dccp { .. } => Some(33),
            Transport::Opaque { .. } => None,
        };
        TransportView {
            protocol: crate::protocol_name(t),
            protocol_number: number,
            port: t.port(),
            addresses: t.addresses().to_vec(),
            transport_use: match t.transport_use() {
                TransportUse::DataOnly => "data_only",
                TransportUse::DataPlusControl => "data_plus_control",
            },
            service_code: match t {
                Transport::Dccp { service_code, .. } => Some(*service_code),
                _ => None,
            },
            data_hex: match t {
                Transport::Opaque { data } => Some(hex::encode(data)),
                _ => None,
            },
        }
    }
}

/// A PE's policy: rserpoolENRPPolicyID (`id`), rserpoolENRPPolicyDescription
/// (`name`), rserpoolENRPPolicyWeight (`weight`), rserpoolENRPPolicyLoad
/// (`load`), rserpoolENRPPolicyLoadDeg (`load_deg`); `priority` and the
/// distance values have no MIB object. Loads are fractions of 0xFFFFFFFF
/// (RFC 5356 section 3.1). Values a policy does not have are left out.
#[derive(Debug, Default, Serialize)]
pub(crate) struct PolicyView {
    id: u32,
    id_hex: String,
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_deg: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_dpf: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_dpf: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_hex: Option<String>,
}

impl PolicyView {
    fn new(p: &Policy) -> Self {
        let v = p.parameters();
        PolicyView {
            id: p.policy_type(),
            id_hex: hex32(p.policy_type()),
            name: p.name(),
            weight: v.weight,
            load: v.load,
            load_deg: v.load_degradation,
            priority: v.priority,
            weight_dpf: v.weight_dpf,
            load_dpf: v.load_dpf,
            distance: v.distance,
            data_hex: match p {
                Policy::Unknown { data, .. } => Some(hex::encode(data)),
                _ => None,
            },
        }
    }
}

/// One PE (a row of rserpoolENRPPoolElementTable, and more).
#[derive(Debug, Serialize)]
pub(crate) struct PoolElementView {
    identifier: PeId,
    identifier_hex: String,
    /// The identity that registered it and owns it (RFC 5355 binding).
    identity: Option<String>,
    home_registrar: ServerId,
    home_registrar_hex: String,
    /// The ASAP connection it registered over (see `/v1/connections`).
    connection: Option<ConnId>,
    user_transport: TransportView,
    asap_transport: Option<TransportView>,
    policy: PolicyView,
    registration_life_ms: i32,
    /// Seconds until its registration life ends (none: never).
    expires_in_seconds: Option<f64>,
    /// Drained by an operator: registered, not handed out.
    drained: bool,
    /// Seconds until the drain times out and the PE is removed (none: not
    /// drained, or no timeout).
    drain_ends_in_seconds: Option<f64>,
    /// Seconds since its first registration (re-registrations do not
    /// reset it).
    registered_seconds: f64,
    /// The time of its first registration (RFC 3339, UTC).
    registered_at: String,
}

impl PoolElementView {
    fn new(e: &PoolElementEntry, now: Instant, wall_now: SystemTime) -> Self {
        PoolElementView {
            identifier: e.identifier,
            identifier_hex: hex32(e.identifier),
            identity: e.identity.as_ref().map(|i| i.0.to_string()),
            home_registrar: e.home,
            home_registrar_hex: hex32(e.home),
            connection: e.connection,
            user_transport: TransportView::new(&e.user_transport),
            asap_transport: e.asap_transport.as_ref().map(TransportView::new),
            policy: PolicyView::new(&e.policy),
            registration_life_ms: e.registration_life,
            expires_in_seconds: e.expires.map(|t| seconds(t.saturating_duration_since(now))),
            drained: e.drained,
            drain_ends_in_seconds: e
                .drain_ends
                .map(|t| seconds(t.saturating_duration_since(now))),
            registered_seconds: seconds(now.saturating_duration_since(e.registered_at)),
            registered_at: wall_time(e.registered_at, now, wall_now),
        }
    }
}

/// One pool (a row of rserpoolENRPPoolTable with its PEs).
#[derive(Debug, Serialize)]
pub(crate) struct PoolView {
    handle: String,
    handle_hex: String,
    policy: &'static str,
    policy_id: u32,
    pool_elements_total: usize,
    /// Of those, drained (not handed out).
    pool_elements_drained: usize,
    pool_elements: Vec<PoolElementView>,
}

/// `GET /v1/handlespace`.
#[derive(Debug, Serialize)]
pub(crate) struct HandlespaceView {
    pools_total: usize,
    pool_elements_total: usize,
    pool_elements_shown: usize,
    limit: usize,
    /// Some PEs (and maybe pools) were left out because of `limit`.
    truncated: bool,
    pools: Vec<PoolView>,
}

/// The pools to list, in handle order.
pub(crate) enum PoolSelection {
    All,
    One(PoolHandle),
}

/// The handlespace document, at most `limit` PEs; `None` when the one
/// pool asked for does not exist. `now` and `wall_now` are one reading
/// of both clocks.
pub(crate) fn handlespace(
    core: &RegistrarCore,
    which: &PoolSelection,
    limit: usize,
    elements: bool,
    now: Instant,
    wall_now: SystemTime,
) -> Option<HandlespaceView> {
    let hs = core.handlespace();
    let handles: Vec<&PoolHandle> = match which {
        PoolSelection::All => hs.pool_handles().collect(),
        PoolSelection::One(h) => {
            hs.pool(h)?;
            vec![h]
        }
    };
    let mut left = limit;
    let mut truncated = false;
    let mut pools = Vec::new();
    for h in handles {
        if left == 0 {
            truncated = true;
            break;
        }
        let total = hs.pool(h).map_or(0, |p| p.len());
        let pool_elements: Vec<PoolElementView> = if elements {
            hs.pool_elements(h)
                .take(left)
                .map(|e| PoolElementView::new(e, now, wall_now))
                .collect()
        } else {
            Vec::new()
        };
        if elements {
            left -= pool_elements.len();
            truncated |= pool_elements.len() < total;
        } else {
            // Without PEs, the limit counts pools.
            left -= 1;
        }
        let (handle, handle_hex) = handle_text(h);
        let first_policy = hs.pool_elements(h).next().map(|e| e.policy.name());
        pools.push(PoolView {
            handle,
            handle_hex,
            policy: first_policy.unwrap_or("unknown"),
            policy_id: hs.pool(h).map_or(0, |p| p.policy_type()),
            pool_elements_total: total,
            pool_elements_drained: hs.pool(h).map_or(0, |p| p.drained()),
            pool_elements,
        });
    }
    Some(HandlespaceView {
        pools_total: hs.pool_count(),
        pool_elements_total: hs.len(),
        pool_elements_shown: if elements { limit - left } else { 0 },
        limit,
        truncated,
        pools,
    })
}

/// A PE as listed under its connection.
#[derive(Debug, Serialize)]
struct PeRef {
    pool: String,
    pool_hex: String,
    identifier: PeId,
    identifier_hex: String,
}

/// One ASAP connection.
#[derive(Debug, Serialize)]
struct ConnectionView {
    connection: ConnId,
    identity: String,
    address: SocketAddr,
    may_register: bool,
    connected_seconds: f64,
    pool_elements_total: usize,
    pool_elements: Vec<PeRef>,
}

/// `GET /v1/peers`: the ENRP peer table (after RFC 5525's
/// rserpoolENRPPeerTable): each peer registrar with its association,
/// identity, last heard, PE count and whether its checksum agrees.
#[derive(Debug, Serialize)]
pub(crate) struct PeerTableView {
    peers_total: usize,
    peers_up: usize,
    /// Whether pool users are served (the initial table download from
    /// a mentor is done, or none was needed).
    serving: bool,
    peers: Vec<PeerRowView>,
}

/// One peer of `/v1/peers`.
#[derive(Debug, Serialize)]
pub(crate) struct PeerRowView {
    server_id: u32,
    server_id_hex: String,
    address: SocketAddr,
    advertised: Option<SocketAddr>,
    identity: String,
    state: &'static str,
    last_heard_ms_ago: u64,
    pool_elements: usize,
    checksum: Option<u16>,
    checksum_agrees: bool,
    auditing: bool,
}

/// The peer table at `now`.
pub(crate) fn peers(core: &RegistrarCore, now: Instant) -> PeerTableView {
    let peers: Vec<PeerRowView> = core
        .peers()
        .map(|p| PeerRowView {
            server_id: p.server_id.get(),
            server_id_hex: format!("{:#010x}", p.server_id.get()),
            address: p.address,
            advertised: p.advertised,
            identity: p.identity,
            state: if p.up { "up" } else { "down" },
            last_heard_ms_ago: now.saturating_duration_since(p.last_heard).as_millis() as u64,
            pool_elements: p.pes,
            checksum: p.checksum,
            checksum_agrees: p.checksum_agrees,
            auditing: p.auditing,
        })
        .collect();
    PeerTableView {
        peers_total: peers.len(),
        peers_up: peers.iter().filter(|p| p.state == "up").count(),
        serving: core.serves_pool_users(),
        peers,
    }
}

/// `GET /v1/connections`: the ASAP connections.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectionsView {
    connections_total: usize,
    pool_elements_shown: usize,
    limit: usize,
    truncated: bool,
    asap_connections: Vec<ConnectionView>,
}

/// The connections document, at most `limit` PEs over all connections.
pub(crate) fn connections(core: &RegistrarCore, limit: usize, now: Instant) -> ConnectionsView {
    let hs = core.handlespace();
    // ENRP connections are peers (/v1/peers), not ASAP connections.
    let mut conns: Vec<_> = core
        .open_connections()
        .filter(|c| c.kind.protocol() == crate::Protocol::Asap)
        .collect();
    conns.sort_unstable_by_key(|c| c.conn);
    let mut left = limit;
    let mut truncated = false;
    let asap_connections = conns
        .iter()
        .map(|c| {
            let mut total = 0;
            let mut pool_elements = Vec::new();
            for (h, e) in hs.by_connection(c.conn) {
                total += 1;
                if left == 0 {
                    truncated = true;
                    continue;
                }
                left -= 1;
                let (pool, pool_hex) = handle_text(h);
                pool_elements.push(PeRef {
                    pool,
                    pool_hex,
                    identifier: e.identifier,
                    identifier_hex: hex32(e.identifier),
                });
            }
            ConnectionView {
                connection: c.conn,
                identity: c.identity.0.to_string(),
                address: c.address,
                may_register: c.may_register,
                connected_seconds: seconds(now.saturating_duration_since(c.connected_at)),
                pool_elements_total: total,
                pool_elements,
            }
        })
        .collect();
    ConnectionsView {
        connections_total: conns.len(),
        pool_elements_shown: limit - left,
        limit,
        truncated,
        asap_connections,
    }
}

/// The answer to an operator's action on a PE (`/v1/pools/{pool}/elements/{id}/...`).
#[derive(Debug, Serialize)]
pub(crate) struct PeActionView {
    pool: String,
    pool_hex: String,
    identifier: PeId,
    identifier_hex: String,
    #[serde(flatten)]
    outcome: PeActionOutcome,
}

/// What the action did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum PeActionOutcome {
    Drained {
        drained: bool,
        drain_ends_in_seconds: Option<f64>,
    },
    Undrained {
        drained: bool,
        was_drained: bool,
    },
    Removed {
        removed: bool,
    },
}

impl PeActionView {
    pub(crate) fn new(pool: &PoolHandle, identifier: PeId, outcome: PeActionOutcome) -> Self {
        let (pool, pool_hex) = handle_text(pool);
        PeActionView {
            pool,
            pool_hex,
            identifier,
            identifier_hex: hex32(identifier),
            outcome,
        }
    }
}
