//! Checks of the merged registrar settings for values the registrar
//! cannot work with, and for combinations that make no sense (TLS
//! settings in insecure mode, a certificate without its key, the admin
//! API without a token). Each error names the flag or the file line of the
//! value at fault.

use rserpool_registrar::config::show_duration;
use rserpool_wire::ServerId;

use super::merge::Merged;

/// The configuration key of each setting `ServiceConfig::validate` and
/// `CoreConfig::validate` name by field.
const KEYS: &[(&str, &str)] = &[
    ("server_id", "server_id"),
    ("listen", "listen"),
    ("keep_alive_interval", "keep_alive.interval"),
    ("keep_alive_timeout", "keep_alive.timeout"),
    (
        "max_keep_alives_per_interval",
        "keep_alive.max_per_interval",
    ),
    ("max_bad_pe_reports", "max_bad_pe_reports"),
    ("bad_pe_report_window", "bad_pe_report_window"),
    ("min_registration_life", "registration.min_lifetime"),
    ("max_registration_life", "registration.max_lifetime"),
    ("max_pes_per_identity", "registration.max_pes_per_identity"),
    ("max_connections", "connections.max"),
    ("max_connections_per_address", "connections.max_per_address"),
    (
        "max_connections_per_identity",
        "connections.max_per_identity",
    ),
    ("max_handshakes", "connections.max_handshakes"),
    (
        "max_handshakes_per_address",
        "connections.max_handshakes_per_address",
    ),
    ("max_message_size", "connections.max_message_size"),
    ("handshake_timeout", "connections.handshake_timeout"),
    ("message_timeout", "connections.message_timeout"),
    ("idle_timeout", "connections.idle_timeout"),
    ("announce_interval", "announce.interval"),
    ("log_summary_interval", "log_summary_interval"),
    ("registration_rate", "limits.registrations_per_identity"),
    (
        "registration_rate_per_address",
        "limits.registrations_per_address",
    ),
    ("resolution_rate", "limits.resolutions_per_identity"),
    (
        "resolution_rate_per_address",
        "limits.resolutions_per_address",
    ),
    ("report_rate", "limits.reports_per_identity"),
    ("report_rate_per_address", "limits.reports_per_address"),
    ("registration_rate_global", "limits.registrations_global"),
    ("resolution_rate_global", "limits.resolutions_global"),
    ("report_rate_global", "limits.reports_global"),
    (
        "max_malformed_per_connection",
        "limits.max_malformed_per_connection",
    ),
    ("max_limiter_keys", "limits.max_limiter_keys"),
];

/// The configuration key of a setting's field name.
fn key_of(field: &str) -> &str {
    KEYS.iter()
        .find(|(f, _)| *f == field)
        .map_or(field, |(_, k)| k)
}

/// Check the merged values for what the registrar cannot work with; the
/// error names the flag or the file line of the value at fault. The
/// ranges are the registrar's own (`rserpool_registrar::config::bounds`),
/// checked by the same code at start.
pub fn check(m: &Merged) -> anyhow::Result<()> {
    let o = &m.origins;
    let s = &m.service;
    let c = &s.core;
    if m.server_id == Some(ServerId::UNDETERMINED) {
        return Err(o.error("server_id", "must not be 0"));
    }
    if m.apd_file.is_some() && m.allow_foreign_addresses.is_some() {
        return Err(o.error(
            "allow_foreign_addresses",
            format!(
                "is replaced by the authorised peer database ({}): remove it, and give \
                 addresses = [\"any\"] (or the CIDR ranges) in the entries that may register \
                 other addresses than their own",
                o.name("apd")
            ),
        ));
    }
    if m.apd_file.is_some() && m.insecure {
        return Err(o.error(
            "apd",
            "an authorised peer database needs secure mode: insecure mode proves no identity \
             for its entries to match (give keys or certificates, or no database)",
        ));
    }
    if c.min_registration_life > c.max_registration_life {
        // Name the value that was set: the other one is the default.
        let key = if o.is_set("registration.min_lifetime") {
            "registration.min_lifetime"
        } else {
            "registration.max_lifetime"
        };
        return Err(o.error(
            key,
            format!(
                "registration.min_lifetime ({}) must not be more than registration.max_lifetime ({})",
                show_duration(c.min_registration_life),
                show_duration(c.max_registration_life)
            ),
        ));
    }
    let mut service = s.clone();
    service.core.server_id = m.server_id.unwrap_or(ServerId::new(1));
    if let Err(e) = service.validate() {
        let key = key_of(e.setting);
        if o.is_set(key) {
            return Err(o.error(key, e.problem));
        }
        // A default that does not fit the other settings.
        return Err(o.error(
            key,
            format!("{key} (default): {}; set it to fit", e.problem),
        ));
    }
    check_tls(m)?;
    if let Some(admin) = m.admin {
        if m.admin_token_file.is_none() {
            return Err(o.error(
                "admin.listen",
                "the admin API needs a token file: set admin.token_file (--admin-token-file)",
            ));
        }
        if s.listen
            .iter()
            .any(|l| rserpool_registrar::service::addresses_overlap(l, &admin))
        {
            return Err(o.error(
                "admin.listen",
                format!("{admin} overlaps an ASAP listen address"),
            ));
        }
    }
    Ok(())
}

fn check_tls(m: &Merged) -> anyhow::Result<()> {
    let o = &m.origins;
    let t = &m.tls;
    if m.insecure {
        if t.is_empty() {
            return Ok(());
        }
        let key = [
            "tls.psk_files",
            "tls.cert",
            "tls.key",
            "tls.client_ca",
            "tls.require_client_cert",
        ]
        .into_iter()
        .find(|k| o.is_set(k))
        .unwrap_or("tls");
        return Err(o.error(
            key,
            format!(
                "TLS settings are not allowed in insecure mode ({} is on: plain TCP, no TLS)",
                o.name("insecure")
            ),
        ));
    }
    match (&t.cert, &t.key) {
        (Some(_), None) => {
            return Err(o.error(
                "tls.cert",
                "a certificate needs its private key: set tls.key (--key)",
            ))
        }
        (None, Some(_)) => {
            return Err(o.error(
                "tls.key",
                "a private key needs its certificate: set tls.cert (--cert)",
            ))
        }
        _ => {}
    }
    if t.require_client_cert && t.client_ca.is_none() {
        return Err(o.error(
            "tls.require_client_cert",
            "client certificates need a CA to check them: set tls.client_ca (--client-ca)",
        ));
    }
    if t.psk_files.is_empty() && t.cert.is_none() {
        return Err(o.error(
            "tls",
            "a secure registrar needs pre-shared keys or a certificate: set tls.psk_files \
             (--psk-file) or tls.cert and tls.key (--cert, --key), or insecure = true \
             (--insecure) for a lab",
        ));
    }
    Ok(())
}
