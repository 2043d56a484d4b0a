//! The effective settings, as `rsp registrar --check-config` prints them:
//! a few lines of text, or JSON in the layout of the configuration file.

use rserpool_security::apd::Origin;
use rserpool_security::rate_limit::Rate;
use serde_json::{json, Value};

use super::build::RegistrarSettings;

fn time(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn rate(r: Rate) -> Value {
    json!({ "per_second": r.per_second, "burst": r.burst })
}

/// The effective settings as JSON (keys as in the configuration file).
pub fn to_json(s: &RegistrarSettings) -> Value {
    let svc = &s.service;
    let c = &svc.core;
    let d = &s.details;
    json!({
        "config_file": d.config_file.as_ref().map(|p| p.display().to_string()),
        "mode": if svc.tls.is_some() { "secure" } else { "insecure" },
        "listen": svc.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": c.enrp.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "enrp": {
            "listen": svc.enrp_listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "multicast": svc.enrp_multicast.as_ref().map(|m| m.group.to_string()),
            "psk_file": d.enrp.own_psk.as_ref().map(|p| p.display().to_string()),
            "peer_psk_files": d.enrp.peer_psks.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "heartbeat_cycle": time(c.enrp.heartbeat_cycle),
            "max_time_last_heard": time(c.enrp.max_time_last_heard),
            "max_time_no_response": time(c.enrp.max_time_no_response),
        },
        "listener": svc.listeners.iter().map(|l| json!({
            "address": l.address.to_string(),
            "pool_users_only": l.pool_users_only,
            "allow": l.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "server_id": if d.random_server_id { Value::Null } else { json!(c.server_id) },
        "insecure": svc.tls.is_none(),
        "json": s.json,
        "allow_foreign_addresses": matches!(
            svc.apd.origin(),
            Origin::Permissive { allow_foreign_addresses: true, .. }
        ),
        "apd": svc.apd_file.as_ref().map(|p| p.display().to_string()),
        "apd_entries": svc.apd_file.as_ref().map(|_| svc.apd.len()),
        "max_bad_pe_reports": c.max_bad_pe_reports,
        "bad_pe_report_window": time(c.bad_pe_report_window),
        "count_anonymous_reports": c.count_anonymous_reports,
        "log_summary_interval": time(svc.log_summary_interval),
        "tls": d.tls.as_ref().map(|t| json!({
            "psk_files": t.psk_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "psk_identities": d.psk_identities,
            "cert": t.cert.as_ref().map(|p| p.display().to_string()),
            "key": t.key.as_ref().map(|p| p.display().to_string()),
            "client_ca": t.client_ca.as_ref().map(|p| p.display().to_string()),
            "require_client_cert": t.require_client_cert,
        })),
        "keep_alive": {
            "interval": time(c.keep_alive_interval),
            "timeout": time(c.keep_alive_timeout),
            "max_per_interval": c.max_keep_alives_per_interval,
        },
        "connections": {
            "max": svc.max_connections,
            "max_per_address": svc.max_connections_per_address,
            "max_per_identity": c.max_connections_per_identity,
            "max_handshakes": svc.max_handshakes,
            "max_handshakes_per_address": svc.max_handshakes_per_address,
            "max_message_size": svc.max_message_size,
            "handshake_timeout": time(svc.handshake_timeout),
            "message_timeout": time(svc.message_timeout),
            "idle_timeout": time(svc.idle_timeout),
        },
        "announce": svc.announce.as_ref().map(|a| json!({
            "group": a.group.to_string(),
            "interval": time(a.interval),
        })),
        "registration": {
            "min_lifetime": time(c.min_registration_life),
            "max_lifetime": time(c.max_registration_life),
            "max_pes_per_identity": c.max_pes_per_identity,
        },
        "limits": {
            "registrations_per_identity": rate(c.registration_rate),
            "registrations_per_address": rate(c.registration_rate_per_address),
            "resolutions_per_identity": rate(c.resolution_rate),
            "resolutions_per_address": rate(c.resolution_rate_per_address),
            "reports_per_identity": rate(c.report_rate),
            "reports_per_address": rate(c.report_rate_per_address),
            "registrations_global": rate(c.registration_rate_global),
            "resolutions_global": rate(c.resolution_rate_global),
            "reports_global": rate(c.report_rate_global),
            "max_malformed_per_connection": c.max_malformed_per_connection,
            "max_limiter_keys": c.max_limiter_keys,
        },
        "admin": s.admin.as_ref().map(|a| json!({
            "listen": a.listen.to_string(),
            "https": a.config.tls.is_some(),
            "token_file": a.token_file.display().to_string(),
            "header_timeout": time(a.config.header_timeout),
            "max_connections": a.config.max_connections,
            "max_connections_per_address": a.config.max_connections_per_address,
            "max_event_streams": a.config.max_event_streams,
        })),
    })
}

/// A short human-readable summary.
pub fn to_text(s: &RegistrarSettings) -> String {
    let svc = &s.service;
    let c = &svc.core;
    let d = &s.details;
    let mut out = Vec::new();
    out.push(match &d.config_file {
        Some(f) => format!("configuration OK ({})", f.display()),
        None => "configuration OK (flags and defaults)".to_string(),
    });
    let mode = match &d.tls {
        None => "INSECURE (plain TCP, no authentication; labs only)".to_string(),
        Some(t) => {
            let mut parts = Vec::new();
            if !t.psk_files.is_empty() {
                parts.push(format!(
                    "{} PSK identities from {} file(s)",
                    d.psk_identities,
                    t.psk_files.len()
                ));
            }
            if let Some(cert) = &t.cert {
                parts.push(format!("certificate {}", cert.display()));
            }
            if let Some(ca) = &t.client_ca {
                let how = if t.require_client_cert {
                    "required"
                } else {
                    "optional"
                };
                parts.push(format!("client certificates {how} (CA {})", ca.display()));
            }
            format!("secure (TLS 1.3): {}", parts.join(", "))
        }
    };
    out.push(format!("mode:        {mode}"));
    out.push(format!(
        "listen:      {}",
        svc.listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !svc.enrp_listen.is_empty() || !c.enrp.peers.is_empty() {
        let list = |v: &[std::net::SocketAddr]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        out.push(format!("enrp listen: {}", list(&svc.enrp_listen)));
        out.push(format!("peers:       {}", list(&c.enrp.peers)));
        if let Some(m) = &svc.enrp_multicast {
            out.push(format!(
                "enrp multicast: {} (presences sent and heard: hints only)",
                m.group
            ));
        }
    }
    for l in &svc.listeners {
        out.push(format!(
            "listener:    {}{}{}",
            l.address,
            if l.pool_users_only {
                ", pool users only"
            } else {
                ""
            },
            if l.allow.is_empty() {
                String::new()
            } else {
                format!(
                    ", from {}",
                    l.allow
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    out.push(if d.random_server_id {
        "server id:   random at start".to_string()
    } else {
        format!("server id:   {:#010x}", c.server_id)
    });
    out.push(format!(
        "keep-alive:  every {}, timeout {}; {} bad-PE reports trigger a check",
        time(c.keep_alive_interval),
        time(c.keep_alive_timeout),
        c.max_bad_pe_reports
    ));
    out.push(format!(
        "connections: at most {} ({} per address, {} per identity), messages up to {} bytes",
        svc.max_connections,
        svc.max_connections_per_address,
        c.max_connections_per_identity,
        svc.max_message_size,
    ));
    out.push(format!(
        "deadlines:   handshake {}, message {}, idle {}",
        time(svc.handshake_timeout),
        time(svc.message_timeout),
        time(svc.idle_timeout)
    ));
    out.push(match &svc.apd_file {
        Some(f) => format!(
            "database:    {} entries from {} (changes are written back to it)",
            svc.apd.len(),
            f.display()
        ),
        None => format!("database:    none: {}", svc.apd.origin()),
    });
    out.push(match &svc.announce {
        Some(a) => format!("announce:    to {} every {}", a.group, time(a.interval)),
        None => "announce:    off".to_string(),
    });
    out.push(match &s.admin {
        Some(a) => format!(
            "admin API:   on {} (token {})",
            a.listen,
            a.token_file.display()
        ),
        None => "admin API:   off".to_string(),
    });
    out.join("\n")
}
