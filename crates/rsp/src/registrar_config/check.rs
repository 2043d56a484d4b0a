//! Checks of the merged registrar settings for values the registrar
//! cannot work with, and for combinations that make no sense (TLS
//! settings in insecure mode, a certificate without its key, the admin
//! API without a token). Each error names the flag or the file line of the
//! value at fault.

use std::time::Duration;

use super::merge::Merged;

/// Smallest `max_message_size` accepted: room for a registration.
const MIN_MESSAGE_SIZE: usize = 256;

/// Check the merged values for what the registrar cannot work with; the
/// error names the flag or the file line of the value at fault.
pub fn check(m: &Merged) -> anyhow::Result<()> {
    let o = &m.origins;
    let s = &m.service;
    let c = &s.core;
    let positive = |key: &str, d: Duration| {
        if d.is_zero() {
            Err(o.error(key, "must be more than 0"))
        } else {
            Ok(())
        }
    };
    let at_least_one = |key: &str, n: usize| {
        if n == 0 {
            Err(o.error(key, "must be at least 1"))
        } else {
            Ok(())
        }
    };
    if s.listen.is_empty() {
        return Err(o.error("listen", "needs at least one address"));
    }
    if m.server_id == Some(0) {
        return Err(o.error("server_id", "must not be 0"));
    }
    positive("keep_alive.interval", c.keep_alive_interval)?;
    positive("keep_alive.timeout", c.keep_alive_timeout)?;
    at_least_one("max_bad_pe_reports", c.max_bad_pe_reports)?;
    at_least_one("connections.max", s.max_connections)?;
    let max = rserpool_wire::framing::ChannelCodec::ABSOLUTE_MAX;
    if !(MIN_MESSAGE_SIZE..=max).contains(&s.max_message_size) {
        return Err(o.error(
            "connections.max_message_size",
            format!("must be between {MIN_MESSAGE_SIZE} and {max} bytes"),
        ));
    }
    positive("connections.idle_timeout", s.idle_timeout)?;
    positive("connections.handshake_timeout", s.handshake_timeout)?;
    // An interval without a group is kept for a later `--announce`.
    if let Some(a) = &s.announce {
        positive("announce.interval", a.interval)?;
    }
    positive("registration.max_lifetime", c.max_registration_life)?;
    if c.min_registration_life > c.max_registration_life {
        let (key, what) = if o.is_set("registration.max_lifetime") {
            ("registration.max_lifetime", "less than")
        } else {
            ("registration.min_lifetime", "more than")
        };
        return Err(o.error(
            key,
            format!(
                "registration.min_lifetime ({}) is {what} registration.max_lifetime ({})",
                humantime::format_duration(c.min_registration_life),
                humantime::format_duration(c.max_registration_life)
            ),
        ));
    }
    at_least_one("registration.max_pes_per_identity", c.max_pes_per_identity)?;
    for (key, r) in [
        ("limits.registrations_per_identity", c.registration_rate),
        (
            "limits.registrations_per_address",
            c.registration_rate_per_address,
        ),
        ("limits.resolutions_per_identity", c.resolution_rate),
        (
            "limits.resolutions_per_address",
            c.resolution_rate_per_address,
        ),
        ("limits.reports_per_identity", c.report_rate),
        ("limits.reports_per_address", c.report_rate_per_address),
    ] {
        r.check().map_err(|e| o.error(key, e))?;
    }
    at_least_one("limits.max_limiter_keys", c.max_limiter_keys)?;
    check_tls(m)?;
    if m.admin.is_some() && m.admin_token_file.is_none() {
        return Err(o.error(
            "admin.listen",
            "the admin API needs a token file: set admin.token_file (--admin-token-file)",
        ));
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
