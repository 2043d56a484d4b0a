//! The built-in defaults in the help text of `rsp registrar`, computed
//! from the defaults the settings use (`ServiceConfig`, `CoreConfig`,
//! `AnnounceConfig`), so the help cannot drift from them.

use std::time::Duration;

use rserpool_registrar::announce::AnnounceConfig;
use rserpool_registrar::ServiceConfig;

use super::merge::{ASAP_PLAIN_PORT, DEFAULT_ADMIN_LISTEN};

/// Append the built-in default of a `rsp registrar` flag to its help.
pub fn help_with_default(arg: clap::Arg) -> clap::Arg {
    let service = ServiceConfig::default();
    let core = &service.core;
    let announce = AnnounceConfig::default();
    let time = |d: Duration| humantime::format_duration(d).to_string();
    let default = match arg.get_id().as_str() {
        "listen" => format!(
            "{}; port {ASAP_PLAIN_PORT} with --insecure",
            service
                .listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "psk_file" | "cert" | "key" | "client_ca" | "admin_token_file" => "none".into(),
        "require_client_cert" | "insecure" | "json" => bool::default().to_string(),
        "allow_foreign_addresses" => bool::default().to_string(),
        "apd" => "none: the permissive default".into(),
        "pool_user_listen" | "admin_client_ca" => "none".into(),
        "peer" | "enrp_psk_file" | "peer_psk_file" => "none".into(),
        "enrp_listen" => "none; 0.0.0.0:9902 (9901 insecure) in a cluster".into(),
        "admin_https" => bool::default().to_string(),
        "count_anonymous_reports" => core.count_anonymous_reports.to_string(),
        "max_connections_per_address" => service.max_connections_per_address.to_string(),
        "max_connections_per_identity" => core.max_connections_per_identity.to_string(),
        "message_timeout" => time(service.message_timeout),
        "server_id" => "random".into(),
        "keep_alive_interval" => time(core.keep_alive_interval),
        "keep_alive_timeout" => time(core.keep_alive_timeout),
        "max_bad_pe_reports" => core.max_bad_pe_reports.to_string(),
        "max_connections" => service.max_connections.to_string(),
        "max_message_size" => service.max_message_size.to_string(),
        "idle_timeout" => time(service.idle_timeout),
        "handshake_timeout" => time(service.handshake_timeout),
        "announce" => "off".into(),
        "enrp_multicast" => "off".into(),
        "announce_interval" => time(announce.interval),
        "admin" => format!("off; bare --admin: {DEFAULT_ADMIN_LISTEN}"),
        _ => return arg,
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}
