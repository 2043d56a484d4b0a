//! The Prometheus exposition of `GET /metrics`: built fresh on each scrape
//! from one snapshot of the core and the service (no metric state lives
//! between scrapes), in the OpenMetrics text format of the
//! `prometheus-client` crate. Names and their RFC 5525 counterparts are
//! listed in `docs/admin.md`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use rserpool_security::rate_limit::Rate;
use rserpool_wire::{CauseCode, PoolHandle, ServerId};

use super::views::AdminStats;
use super::Limits;
use crate::service::ServiceLimits;
use crate::{ServiceStats, Stats};

/// Content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most pools with their own `pool_elements_by_pool` series.
pub(crate) const MAX_POOL_SERIES: usize = 1000;

/// Metric name prefix.
const P: &str = "rserpool_registrar";

/// What one scrape shows.
#[derive(Debug, Clone)]
pub(crate) struct MetricsInput {
    pub stats: Stats,
    pub service: ServiceStats,
    pub admin: AdminStats,
    pub limits: Limits,
    pub service_limits: ServiceLimits,
    pub pools: usize,
    pub pool_elements: usize,
    pub pool_elements_drained: usize,
    pub connections: usize,
    /// Peer registrars with an association up.
    pub peers_up: usize,
    /// Peer registrars known.
    pub peers_known: usize,
    /// PEs named on a standby link here.
    pub standby_links: usize,
    /// Pool sizes (all pools; the largest [`MAX_POOL_SERIES`] are shown).
    pub pool_sizes: Vec<(usize, PoolHandle)>,
    pub uptime: Duration,
    pub server_id: ServerId,
    pub secure: bool,
}

type Labels = Vec<(String, String)>;

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    r.register(format!("{P}_{name}"), help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: usize) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    r.register(format!("{P}_{name}"), help, g);
}

fn counter_family(r: &mut Registry, name: &str, help: &str, key: &str, values: &[(&str, u64)]) {
    let f: Family<Labels, Counter> = Family::default();
    for (v, n) in values {
        f.get_or_create(&label(key, v)).inc_by(*n);
    }
    r.register(format!("{P}_{name}"), help, f);
}

/// A counter family with two labels: `(first, second, value)`.
fn counter_family2(
    r: &mut Registry,
    name: &str,
    help: &str,
    keys: (&str, &str),
    values: &[(&str, &str, u64)],
) {
    let f: Family<Labels, Counter> = Family::default();
    for (a, b, n) in values {
        let labels = vec![
            (keys.0.to_string(), a.to_string()),
            (keys.1.to_string(), b.to_string()),
        ];
        f.get_or_create(&labels).inc_by(*n);
    }
    r.register(format!("{P}_{name}"), help, f);
}

fn gauge_f64(r: &mut Registry, name: &str, help: &str, v: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(v);
    r.register(format!("{P}_{name}"), help, g);
}

/// The admin API's own counters, and its limits as gauges.
fn admin_series(r: &mut Registry, a: &AdminStats, l: &Limits) {
    counter(
        r,
        "admin_auth_failures",
        "Admin API requests with a missing or wrong bearer token (401 and 429)",
        a.auth_failures,
    );
    counter(
        r,
        "admin_auth_rate_limited",
        "Admin API requests with a missing or wrong token answered 429 (over the failure budget)",
        a.auth_rate_limited,
    );
    gauge(
        r,
        "admin_connections",
        "Admin API connections open now",
        a.connections_open as usize,
    );
    gauge(
        r,
        "admin_connections_peak",
        "Most admin API connections open at once since start",
        a.connections_peak as usize,
    );
    counter(
        r,
        "admin_connections_accepted",
        "Admin API connections accepted within the caps",
        a.connections_accepted,
    );
    counter_family(
        r,
        "admin_connections_refused",
        "Admin API connections closed at once because every slot of the cap was busy in a handler, by cap",
        "reason",
        &[
            ("limit", a.connections_refused_limit),
            ("address_limit", a.connections_refused_address_limit),
        ],
    );
    counter_family(
        r,
        "admin_connections_evicted",
        "Admin API connections still waiting for their request closed to make room for a new one, by cap",
        "reason",
        &[
            ("limit", a.connections_evicted_limit),
            ("address_limit", a.connections_evicted_address_limit),
        ],
    );
    counter(
        r,
        "admin_tls_failures",
        "Admin API HTTPS connections whose TLS handshake failed or did not complete in time",
        a.tls_failures,
    );
    counter(
        r,
        "admin_header_timeouts",
        "Admin API connections closed because their request headers did not arrive in time",
        a.header_timeouts,
    );
    counter(
        r,
        "admin_accept_errors",
        "Failed accept calls of the admin API listener",
        a.accept_errors,
    );
    gauge(
        r,
        "admin_event_streams",
        "Admin API event streams open now",
        a.event_streams_open as usize,
    );
    counter(
        r,
        "admin_event_streams_refused",
        "Admin API event streams refused at the stream cap",
        a.event_streams_refused,
    );
    gauge(
        r,
        "admin_max_connections",
        "Limit: admin API connections open at once",
        l.max_connections,
    );
    gauge(
        r,
        "admin_max_connections_per_address",
        "Limit: admin API connections from one source address",
        l.max_connections_per_address,
    );
    gauge(
        r,
        "admin_max_event_streams",
        "Limit: admin API event streams open at once",
        l.max_event_streams,
    );
    gauge_f64(
        r,
        "admin_header_timeout_seconds",
        "Limit: time from accept to the end of the request headers",
        l.header_timeout.as_secs_f64(),
    );
    for (name, help, f) in [
        (
            "admin_auth_failure_rate_per_second",
            "Limit: failed authentications earned back per second, by scope",
            (|r: &Rate| r.per_second) as fn(&Rate) -> f64,
        ),
        (
            "admin_auth_failure_burst",
            "Limit: failed authentications in a burst, by scope",
            |r: &Rate| r.burst,
        ),
    ] {
        let family: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
        for (scope, rate) in [
            ("address", &l.auth_failure_rate),
            ("global", &l.auth_failure_global_rate),
        ] {
            family.get_or_create(&label("scope", scope)).set(f(rate));
        }
        r.register(format!("{P}_{name}"), help, family);
    }
}

/// The exposition text.
pub(crate) fn render(mut m: MetricsInput) -> Result<String, std::fmt::Error> {
    let mut r = Registry::default();
    let s = &m.stats;
    counter(
        &mut r,
        "registrations",
        "PEs registered for the first time (RFC 5352 section 3.1)",
        s.registrations,
    );
    counter(
        &mut r,
        "reregistrations",
        "Re-registrations of registered PEs (RFC 5352 section 3.1)",
        s.reregistrations,
    );
    counter(
        &mut r,
        "deregistrations",
        "PEs deregistered (RFC 5352 section 3.2)",
        s.deregistrations,
    );
    counter(
        &mut r,
        "resolutions",
        "Handle resolutions answered, unknown pools included (RFC 5352 section 3.3)",
        s.resolutions,
    );
    counter(
        &mut r,
        "keep_alives_sent",
        "ASAP_ENDPOINT_KEEP_ALIVE messages sent (RFC 5352 section 3.4)",
        s.keep_alives_sent,
    );
    counter(
        &mut r,
        "standby_calls",
        "H-flag keep-alives sent over PEs' standby links after a takeover",
        s.standby_calls,
    );
    counter(
        &mut r,
        "standby_claims_refused",
        "Standby link claims not recorded (not the PE's registrant, or over the bound)",
        s.standby_claims_refused,
    );
    counter(
        &mut r,
        "keep_alive_failures",
        "PEs removed for not answering a keep-alive in time",
        s.keep_alive_failures,
    );
    counter(
        &mut r,
        "lifetime_expiries",
        "PEs removed at the end of their registration life",
        s.lifetime_expiries,
    );
    gauge(
        &mut r,
        "peers_up",
        "Peer registrars with an ENRP association up",
        m.peers_up,
    );
    gauge(
        &mut r,
        "peers_known",
        "Peer registrars known (up or being waited for)",
        m.peers_known,
    );
    gauge(
        &mut r,
        "standby_links",
        "PEs registered elsewhere that named a standby link to this registrar",
        m.standby_links,
    );
    let e = &s.enrp;
    for (name, help, value) in [
        ("enrp_messages_sent", "ENRP messages sent to peer registrars", e.sent),
        ("enrp_messages_received", "ENRP messages received from bound peer registrars", e.received),
        ("enrp_messages_spoofed", "ENRP messages dropped: they named another sender than their association's peer, or an identifier bound to another identity", e.spoofed),
        ("handle_updates_sent", "ENRP_HANDLE_UPDATE messages sent (one per peer)", e.updates_sent),
        ("handle_updates_received", "ENRP_HANDLE_UPDATE messages received", e.updates_received),
        ("handle_updates_refused", "ENRP_HANDLE_UPDATE messages refused (rate, scope, identity binding, home)", e.updates_refused),
        ("handle_table_pages_sent", "ENRP_HANDLE_TABLE_RESPONSE pages sent", e.pages_sent),
        ("handle_table_pages_received", "ENRP_HANDLE_TABLE_RESPONSE pages received", e.pages_received),
        ("handle_table_entries_refused", "PEs of handle table pages refused", e.table_entries_refused),
        ("audits", "Audits of a peer's PEs started after a checksum mismatch (RFC 5353 3.6)", e.audits),
        ("takeovers_won", "Takeovers of a failed peer registrar won (RFC 5353 3.5)", e.takeovers_won),
        ("takeovers_lost", "Takeovers started and lost to a peer with a larger server identifier", e.takeovers_lost),
        ("takeovers_refused", "Takeover messages refused: for this registrar or for a peer it still hears", e.takeovers_refused),
    ] {
        counter(&mut r, name, help, value);
    }
    counter(
        &mut r,
        "outbound_connects",
        "Outbound connections the registrar opened or tried to open",
        s.connects,
    );
    counter(
        &mut r,
        "outbound_connect_failures",
        "Outbound connections that could not be opened",
        s.connect_failures,
    );
    counter(
        &mut r,
        "unreachable_reports",
        "ASAP_ENDPOINT_UNREACHABLE reports accepted (RFC 5352 section 3.5)",
        s.unreachable_reports,
    );
    counter(
        &mut r,
        "unreachable_probes",
        "Keep-alives sent to check a PE that MAX-BAD-PE-REPORT distinct reporters reported unreachable",
        s.unreachable_probes,
    );
    counter(
        &mut r,
        "unreachable_refuted",
        "Reported PEs that answered the keep-alive checking them (and stayed)",
        s.unreachable_refuted,
    );
    counter(
        &mut r,
        "unreachable_removals",
        "Reported PEs removed because the keep-alive checking them went unanswered",
        s.unreachable_removals,
    );
    counter(
        &mut r,
        "revocation_removals",
        "PEs removed because their registrant's credentials were revoked (reload)",
        s.revocation_removals,
    );
    let l = &s.rate_limited;
    let mut limited = Vec::new();
    for (request, by) in [
        ("registration", l.registrations),
        ("resolution", l.resolutions),
        ("report", l.reports),
    ] {
        limited.push((request, "identity", by.identity));
        limited.push((request, "address", by.address));
        limited.push((request, "global", by.global));
    }
    counter_family2(
        &mut r,
        "rate_limited",
        "Requests refused by a rate limit, by request and by the layer that refused",
        ("request", "layer"),
        &limited,
    );
    counter(
        &mut r,
        "apd_changes",
        "Changes of the authorised peer database (admin API, reload)",
        s.apd_changes,
    );
    counter(
        &mut r,
        "apd_removals",
        "PEs removed because a change of the authorised peer database denies them",
        s.apd_removals,
    );
    counter(
        &mut r,
        "apd_connections_closed",
        "Connections closed because a change of the authorised peer database denies them",
        s.apd_connections_closed,
    );
    counter(
        &mut r,
        "refused_unauthorised",
        "Requests the authorised peer database denied (also in refused_total{reason=\"security\"})",
        s.refused_unauthorised,
    );
    counter(
        &mut r,
        "operator_removals",
        "PEs removed by an operator (admin API)",
        s.operator_removals,
    );
    counter(
        &mut r,
        "drain_timeout_removals",
        "Drained PEs removed because they were still registered when the drain timed out",
        s.drain_timeout_removals,
    );
    counter_family(
        &mut r,
        "admin_actions",
        "Operator actions on PEs carried out through the admin API, by action",
        "action",
        &[
            ("drain", s.operator_drains),
            ("undrain", s.operator_undrains),
            ("remove", s.operator_removals),
        ],
    );
    counter_family(
        &mut r,
        "refused",
        "Requests refused, by reason",
        "reason",
        &[
            ("security", s.refused_security),
            ("rate_limited", s.refused_rate_limited),
            ("invalid", s.refused_invalid),
            ("inconsistent", s.refused_inconsistent),
        ],
    );
    // Every cause of RFC 5354 section 3.12 is exported from the start, so
    // that rates work from the first error on.
    let mut causes: Vec<(&str, u64)> = (0..=0xa)
        .map(|c| CauseCode::from_code(c).name())
        .map(|name| (name, s.errors_sent.get(name).copied().unwrap_or(0)))
        .collect();
    for (name, n) in &s.errors_sent {
        if !causes.iter().any(|(c, _)| c == name) {
            causes.push((name, *n));
        }
    }
    counter_family(
        &mut r,
        "errors_sent",
        "Error causes sent to clients, by RFC 5354 cause name",
        "cause",
        &causes,
    );
    counter(
        &mut r,
        "malformed_messages",
        "Messages that could not be framed or decoded",
        s.malformed,
    );
    counter(
        &mut r,
        "connections_established",
        "ASAP connections established (after the TLS handshake in secure mode)",
        s.connections,
    );
    let v = &m.service;
    counter(
        &mut r,
        "connections_accepted",
        "TCP connections accepted within the connection limit",
        v.connections_accepted,
    );
    counter_family(
        &mut r,
        "connections_refused",
        "Connections closed at once, by the cap they met: limit (max_connections), per_address, \
         source (the listener's source filter), handshakes_per_address, per_identity (after \
         the handshake, with an error)",
        "reason",
        &[
            ("limit", v.connections_refused_limit),
            ("per_address", v.connections_refused_per_address),
            ("source", v.connections_refused_source),
            (
                "handshakes_per_address",
                v.connections_refused_handshakes_per_address,
            ),
            ("per_identity", s.connections_refused_per_identity),
        ],
    );
    counter_family(
        &mut r,
        "tls_handshake_failures",
        "TLS handshakes that did not complete, by reason: failed, timeout, evicted (the oldest \
         when every handshake slot was taken), superseded (credentials reloaded meanwhile)",
        "reason",
        &[
            ("failed", v.tls_handshake_failures),
            ("timeout", v.tls_handshake_timeouts),
            ("evicted", v.tls_handshakes_evicted),
            ("superseded", v.tls_handshakes_superseded),
        ],
    );
    counter_family(
        &mut r,
        "connections_closed",
        "Connections the registrar closed for a deadline or a slow reader, by reason",
        "reason",
        &[
            ("message_timeout", v.message_timeouts),
            ("idle", v.idle_closed),
            ("not_reading", v.slow_clients_closed),
        ],
    );
    gauge(
        &mut r,
        "tcp_connections",
        "TCP connections open now, handshakes included",
        v.connections_open as usize,
    );
    gauge(
        &mut r,
        "handshakes_in_progress",
        "TLS handshakes in progress now",
        v.handshakes_in_progress as usize,
    );
    let l = &m.service_limits;
    for (name, help, value) in [
        (
            "max_connections",
            "Limit: connections open at once",
            l.max_connections,
        ),
        (
            "max_connections_per_address",
            "Limit: connections from one source address (IPv6: one /64)",
            l.max_connections_per_address,
        ),
        (
            "max_connections_per_identity",
            "Limit: connections of one authenticated identity",
            l.max_connections_per_identity,
        ),
        (
            "max_handshakes",
            "Limit: TLS handshakes in progress",
            l.max_handshakes,
        ),
        (
            "max_handshakes_per_address",
            "Limit: TLS handshakes in progress from one source address",
            l.max_handshakes_per_address,
        ),
        (
            "max_message_size_bytes",
            "Limit: largest message a client may send",
            l.max_message_size,
        ),
    ] {
        gauge(&mut r, name, help, value);
    }
    for (name, help, value) in [
        (
            "handshake_timeout_seconds",
            "Limit: time to complete a TLS handshake",
            l.handshake_timeout,
        ),
        (
            "message_timeout_seconds",
            "Limit: time to complete a message from its first byte",
            l.message_timeout,
        ),
        (
            "idle_timeout_seconds",
            "Limit: silence after which a connection is closed",
            l.idle_timeout,
        ),
    ] {
        gauge_f64(&mut r, name, help, value.as_secs_f64());
    }
    counter(
        &mut r,
        "accept_errors",
        "Failed accept calls (out of file descriptors and the like)",
        v.accept_errors,
    );
    counter(
        &mut r,
        "slow_clients_closed",
        "Connections closed because they did not read their answers",
        v.slow_clients_closed,
    );
    admin_series(&mut r, &m.admin, &m.limits);
    gauge(
        &mut r,
        "pools",
        "Pools in the handlespace (rows of rserpoolENRPPoolTable)",
        m.pools,
    );
    gauge(
        &mut r,
        "pool_elements",
        "PEs in the handlespace (rows of rserpoolENRPPoolElementTable)",
        m.pool_elements,
    );
    gauge(
        &mut r,
        "pool_elements_drained",
        "Of those, PEs drained by an operator (registered, not handed out)",
        m.pool_elements_drained,
    );
    // The largest MAX_POOL_SERIES pools (ties in handle order).
    m.pool_sizes
        .sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    m.pool_sizes.truncate(MAX_POOL_SERIES);
    let by_pool: Family<Labels, Gauge> = Family::default();
    for (n, h) in &m.pool_sizes {
        by_pool
            .get_or_create(&label("pool", &h.to_string()))
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    r.register(
        format!("{P}_pool_elements_by_pool"),
        format!("PEs per pool (the {MAX_POOL_SERIES} largest pools only)"),
        by_pool,
    );
    gauge(
        &mut r,
        "connections",
        "ASAP connections open now (established)",
        m.connections,
    );
    let uptime: Gauge<f64, AtomicU64> = Gauge::default();
    uptime.set(m.uptime.as_secs_f64());
    r.register(
        format!("{P}_uptime_seconds"),
        "Time since the registrar started (rserpoolENRPUptime)",
        uptime,
    );
    let info = Info::new(vec![
        ("server_id".to_string(), format!("{:#010x}", m.server_id)),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (
            "mode".to_string(),
            if m.secure { "secure" } else { "insecure" }.to_string(),
        ),
    ]);
    r.register(
        P,
        "Server identifier (rserpoolENRPIdentifier), version and security mode",
        info,
    );
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> MetricsInput {
        let mut stats = Stats {
            registrations: 3,
            refused_security: 2,
            operator_drains: 4,
            operator_removals: 1,
            drain_timeout_removals: 2,
            ..Stats::default()
        };
        stats
            .errors_sent
            .insert(CauseCode::RejectedSecurity.name(), 2);
        stats.errors_sent.insert(CauseCode::Other(0x99).name(), 1);
        MetricsInput {
            stats,
            service: ServiceStats::default(),
            service_limits: crate::ServiceConfig::default().limits(),
            admin: AdminStats::default(),
            limits: crate::admin::AdminConfig::new(
                "127.0.0.1:0".parse().unwrap(),
                crate::admin::AdminToken::new("0123456789abcdef0123456789abcdef").unwrap(),
            )
            .limits(),
            pools: 2,
            pool_elements: 3,
            pool_elements_drained: 1,
            connections: 1,
            peers_up: 1,
            peers_known: 2,
            standby_links: 1,
            pool_sizes: vec![
                (1, PoolHandle::from_static("small")),
                (2, PoolHandle::from_static("big\"one")),
            ],
            uptime: Duration::from_secs(5),
            server_id: ServerId::new(0x1234),
            secure: true,
        }
    }

    #[test]
    fn exposition_has_the_documented_series() {
        let text = render(input()).unwrap();
        for line in [
            "rserpool_registrar_registrations_total 3",
            "rserpool_registrar_refused_total{reason=\"security\"} 2",
            "rserpool_registrar_refused_total{reason=\"inconsistent\"} 0",
            "rserpool_registrar_errors_sent_total{cause=\"Rejected due to security considerations\"} 2",
            "rserpool_registrar_errors_sent_total{cause=\"Unknown Pool Handle\"} 0",
            "rserpool_registrar_errors_sent_total{cause=\"Other\"} 1",
            "rserpool_registrar_connections_refused_total{reason=\"limit\"} 0",
            "rserpool_registrar_connections_refused_total{reason=\"per_identity\"} 0",
            "rserpool_registrar_tls_handshake_failures_total{reason=\"evicted\"} 0",
            "rserpool_registrar_connections_closed_total{reason=\"message_timeout\"} 0",
            "rserpool_registrar_max_connections_per_address 256",
            "rserpool_registrar_message_timeout_seconds 10.0",
            "rserpool_registrar_unreachable_probes_total 0",
            "rserpool_registrar_handle_updates_refused_total 0",
            "rserpool_registrar_outbound_connects_total 0",
            "rserpool_registrar_outbound_connect_failures_total 0",
            "rserpool_registrar_tls_handshake_failures_total{reason=\"timeout\"} 0",
            "rserpool_registrar_admin_auth_failures_total 0",
            "rserpool_registrar_admin_connections_refused_total{reason=\"address_limit\"} 0",
            "rserpool_registrar_admin_connections_evicted_total{reason=\"limit\"} 0",
            "rserpool_registrar_admin_header_timeouts_total 0",
            "rserpool_registrar_admin_max_connections 64",
            "rserpool_registrar_admin_max_connections_per_address 8",
            "rserpool_registrar_admin_max_event_streams 16",
            "rserpool_registrar_admin_header_timeout_seconds 10.0",
            "rserpool_registrar_admin_auth_failure_burst{scope=\"address\"} 10.0",
            "rserpool_registrar_admin_auth_failure_rate_per_second{scope=\"global\"} 10.0",
            "rserpool_registrar_pools 2",
            "rserpool_registrar_pool_elements 3",
            "rserpool_registrar_pool_elements_drained 1",
            "rserpool_registrar_admin_actions_total{action=\"drain\"} 4",
            "rserpool_registrar_admin_actions_total{action=\"undrain\"} 0",
            "rserpool_registrar_admin_actions_total{action=\"remove\"} 1",
            "rserpool_registrar_operator_removals_total 1",
            "rserpool_registrar_drain_timeout_removals_total 2",
            "rserpool_registrar_pool_elements_by_pool{pool=\"big\\\"one\"} 2",
            "rserpool_registrar_pool_elements_by_pool{pool=\"small\"} 1",
            "rserpool_registrar_connections 1",
            "rserpool_registrar_uptime_seconds 5.0",
            "rserpool_registrar_info{server_id=\"0x00001234\",version=\"",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn pool_series_are_capped() {
        let mut m = input();
        m.pool_sizes = (0..MAX_POOL_SERIES + 5)
            .map(|i| (i, PoolHandle::new(format!("p{i}")).unwrap()))
            .collect();
        let text = render(m).unwrap();
        let n = text
            .lines()
            .filter(|l| l.starts_with("rserpool_registrar_pool_elements_by_pool{"))
            .count();
        assert_eq!(n, MAX_POOL_SERIES);
        assert!(!text.contains("pool=\"p0\""), "the smallest pools go");
    }
}
