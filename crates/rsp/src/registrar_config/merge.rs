//! Merging the registrar's settings: a flag given wins over the
//! configuration file, which wins over the built-in default. The defaults
//! are those of `ServiceConfig`, `CoreConfig` and `AnnounceConfig` (one
//! source of truth; `help` shows them in `--help`).
//! Every value remembers where it came from, so that the checks
//! (`check`) can name the flag or the file line of a bad value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rserpool_registrar::admin::AdminConfig;
use rserpool_registrar::announce::AnnounceConfig;
use rserpool_registrar::ServiceConfig;
use rserpool_security::rate_limit::Rate;
use rserpool_wire::ServerId;
use toml::Spanned;

use super::file::{FileConfig, HumanDuration, Listener, Located, RateSpec};
use super::locate::{line_of, Origin, Origins};
use super::Toggle;
use crate::registrar::Args;

/// Where a bare `--admin` listens.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3865";

/// ASAP over plain TCP (IANA), the default port in insecure mode;
/// `ServiceConfig`'s default listener is ASAP over TLS (3864).
pub const ASAP_PLAIN_PORT: u16 = 3863;

/// The credential files of secure mode.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PSK key files.
    pub psk_files: Vec<PathBuf>,
    /// Registrar certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// CA of client certificates.
    pub client_ca: Option<PathBuf>,
    /// Refuse certificate clients without a certificate.
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// Whether no TLS setting is made.
    pub fn is_empty(&self) -> bool {
        self.psk_files.is_empty()
            && self.cert.is_none()
            && self.key.is_none()
            && self.client_ca.is_none()
            && !self.require_client_cert
    }
}

/// ENRP port over TLS (by analogy with ASAP's; IANA has SCTP/UDP only).
pub const ENRP_TLS_PORT: u16 = 9902;
/// ENRP port over plain TCP.
pub const ENRP_PLAIN_PORT: u16 = 9901;

/// The cluster's settings that name files or depend on the mode.
#[derive(Debug, Clone, Default)]
pub struct EnrpFiles {
    /// ENRP listeners given (`None`: the default when in a cluster).
    pub listen: Option<Vec<SocketAddr>>,
    /// This registrar's own key, to dial its peers.
    pub own_psk: Option<PathBuf>,
    /// The peers' keys.
    pub peer_psks: Vec<PathBuf>,
}

impl EnrpFiles {
    /// Whether this registrar is part of a cluster: peers, keys or an
    /// ENRP listener given.
    pub fn clustered(&self, peers: &[SocketAddr]) -> bool {
        !peers.is_empty()
            || self.listen.is_some()
            || self.own_psk.is_some()
            || !self.peer_psks.is_empty()
    }
}

/// The admin API's limits (`AdminConfig`'s, without its address and token).
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_event_streams: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_timeout: AdminConfig::DEFAULT_HEADER_TIMEOUT,
            max_connections: AdminConfig::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: AdminConfig::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_event_streams: AdminConfig::DEFAULT_MAX_EVENT_STREAMS,
        }
    }
}

/// The merged settings before any file they name is read.
#[derive(Debug)]
pub struct Merged {
    /// The service settings (without TLS; `core.server_id` is set from
    /// [`Self::server_id`] later).
    pub service: ServiceConfig,
    /// Listeners with options, before their source filters are parsed.
    pub listeners: Vec<Listener>,
    /// The authorised peer database file, if any.
    pub apd_file: Option<PathBuf>,
    /// The old switch, if given (without a database: the permissive
    /// default's address scope; with one: refused).
    pub allow_foreign_addresses: Option<bool>,
    /// The server identifier; `None`: draw one.
    pub server_id: Option<ServerId>,
    /// Plain TCP instead of TLS.
    pub insecure: bool,
    /// Credential files (secure mode).
    pub tls: TlsFiles,
    /// The cluster's listeners and keys.
    pub enrp: EnrpFiles,
    /// Listen address of the admin API, when on.
    pub admin: Option<SocketAddr>,
    /// Token file of the admin API.
    pub admin_token_file: Option<PathBuf>,
    /// HTTPS for the admin API, with the registrar's certificate.
    pub admin_https: bool,
    /// CA of the admin clients' certificates (HTTPS only).
    pub admin_client_ca: Option<PathBuf>,
    /// Limits of the admin API.
    pub admin_limits: AdminLimits,
    /// JSON output.
    pub json: bool,
    /// Where each value came from.
    pub origins: Origins,
}

/// Picks each value from a flag, the file or nothing, and notes where it
/// came from.
struct Picker<'a> {
    text: &'a str,
    origins: Origins,
}

impl Picker<'_> {
    fn pick<T>(
        &mut self,
        key: &'static str,
        flag: &'static str,
        from_flag: Option<T>,
        from_file: Located<T>,
    ) -> Option<T> {
        if let Some(v) = from_flag {
            self.origins.set(key, Origin::Flag(flag));
            return Some(v);
        }
        self.file(key, from_file)
    }

    /// [`Picker::pick`] into a setting: it keeps its value (the
    /// default) when neither the flag nor the file gives one.
    fn pick_into<T>(
        &mut self,
        slot: &mut T,
        key: &'static str,
        flag: &'static str,
        from_flag: Option<T>,
        from_file: Located<T>,
    ) {
        if let Some(v) = self.pick(key, flag, from_flag, from_file) {
            *slot = v;
        }
    }

    /// [`Picker::file`] into a setting.
    fn file_into<T>(&mut self, slot: &mut T, key: &'static str, from_file: Located<T>) {
        if let Some(v) = self.file(key, from_file) {
            *slot = v;
        }
    }

    fn file<T>(&mut self, key: &'static str, from_file: Located<T>) -> Option<T> {
        let s = from_file?;
        self.origins
            .set(key, Origin::File(line_of(self.text, s.span().start)));
        Some(s.into_inner())
    }
}

fn list<T: Clone>(flag: &[T]) -> Option<Vec<T>> {
    (!flag.is_empty()).then(|| flag.to_vec())
}

fn duration(v: Located<HumanDuration>) -> Located<Duration> {
    v.map(|s| Spanned::new(s.span(), s.into_inner().0))
}

fn rate(v: Located<RateSpec>) -> Located<Rate> {
    v.map(|s| {
        let r = s.get_ref();
        Spanned::new(s.span(), Rate::new(r.per_second, r.burst))
    })
}

fn toggle<T>(v: Option<Toggle<T>>) -> Option<Option<T>> {
    v.map(|t| match t {
        Toggle::On(v) => Some(v),
        Toggle::Off => None,
    })
}

fn on<T>(v: Located<T>) -> Located<Option<T>> {
    v.map(|s| {
        let span = s.span();
        Spanned::new(span, Some(s.into_inner()))
    })
}

/// Merge the flags over the file (given with its text) over the defaults.
pub fn merge(args: &Args, file: Option<(&std::path::Path, FileConfig, &str)>) -> Merged {
    let (path, f, text) = match file {
        Some((path, f, text)) => (Some(path), f, text),
        None => (None, FileConfig::default(), ""),
    };
    let mut p = Picker {
        text,
        origins: Origins::new(path),
    };
    let mut service = ServiceConfig::default();
    let insecure = p
        .pick("insecure", "--insecure", args.insecure, f.insecure)
        .unwrap_or_default();
    let json = p
        .pick("json", "--json", args.json, f.json)
        .unwrap_or_default();
    if let Some(l) = p.pick("listen", "--listen", list(&args.listen), f.listen) {
        service.listen = l;
    } else if insecure {
        for a in &mut service.listen {
            a.set_port(ASAP_PLAIN_PORT);
        }
    }
    let server_id = p.pick("server_id", "--server-id", args.server_id, f.server_id);
    let tls = TlsFiles {
        psk_files: p
            .pick(
                "tls.psk_files",
                "--psk-file",
                list(&args.psk_file),
                f.tls.psk_files,
            )
            .unwrap_or_default(),
        cert: p.pick("tls.cert", "--cert", args.cert.clone(), f.tls.cert),
        key: p.pick("tls.key", "--key", args.key.clone(), f.tls.key),
        client_ca: p.pick(
            "tls.client_ca",
            "--client-ca",
            args.client_ca.clone(),
            f.tls.client_ca,
        ),
        require_client_cert: p
            .pick(
                "tls.require_client_cert",
                "--require-client-cert",
                args.require_client_cert,
                f.tls.require_client_cert,
            )
            .unwrap_or_default(),
    };

    let enrp = EnrpFiles {
        listen: p.pick(
            "enrp.listen",
            "--enrp-listen",
            list(&args.enrp_listen),
            f.enrp.listen,
        ),
        own_psk: p.pick(
            "enrp.psk_file",
            "--enrp-psk-file",
            args.enrp_psk_file.clone(),
            f.enrp.psk_file,
        ),
        peer_psks: p
            .pick(
                "enrp.peer_psk_files",
                "--peer-psk-file",
                list(&args.peer_psk_file),
                f.enrp.peer_psk_files,
            )
            .unwrap_or_default(),
    };
    let core = &mut service.core;
    p.pick_into(
        &mut core.enrp.peers,
        "peers",
        "--peer",
        list(&args.peer),
        f.peers,
    );
    p.file_into(
        &mut core.enrp.heartbeat_cycle,
        "enrp.heartbeat_cycle",
        duration(f.enrp.heartbeat_cycle),
    );
    p.file_into(
        &mut core.enrp.max_time_last_heard,
        "enrp.max_time_last_heard",
        duration(f.enrp.max_time_last_heard),
    );
    p.file_into(
        &mut core.enrp.max_time_no_response,
        "enrp.max_time_no_response",
        duration(f.enrp.max_time_no_response),
    );
    p.pick_into(
        &mut core.keep_alive_interval,
        "keep_alive.interval",
        "--keep-alive-interval",
        args.keep_alive_interval,
        duration(f.keep_alive.interval),
    );
    p.pick_into(
        &mut core.keep_alive_timeout,
        "keep_alive.timeout",
        "--keep-alive-timeout",
        args.keep_alive_timeout,
        duration(f.keep_alive.timeout),
    );
    p.pick_into(
        &mut core.max_bad_pe_reports,
        "max_bad_pe_reports",
        "--max-bad-pe-reports",
        args.max_bad_pe_reports,
        f.max_bad_pe_reports,
    );
    p.pick_into(
        &mut core.count_anonymous_reports,
        "count_anonymous_reports",
        "--count-anonymous-reports",
        args.count_anonymous_reports,
        f.count_anonymous_reports,
    );
    p.file_into(
        &mut core.bad_pe_report_window,
        "bad_pe_report_window",
        duration(f.bad_pe_report_window),
    );
    p.file_into(
        &mut core.max_keep_alives_per_interval,
        "keep_alive.max_per_interval",
        f.keep_alive.max_per_interval,
    );
    let allow_foreign_addresses = p.pick(
        "allow_foreign_addresses",
        "--allow-foreign-addresses",
        args.allow_foreign_addresses,
        f.allow_foreign_addresses,
    );
    let apd_file = p.pick("apd", "--apd", args.apd.clone(), f.apd);
    let flag_listeners = (!args.pool_user_listen.is_empty()).then(|| {
        args.pool_user_listen
            .iter()
            .map(|&address| Listener {
                address,
                pool_users_only: true,
                allow: Vec::new(),
            })
            .collect()
    });
    let listeners = p
        .pick("listener", "--pool-user-listen", flag_listeners, f.listener)
        .unwrap_or_default();
    let r = f.registration;
    p.file_into(
        &mut core.min_registration_life,
        "registration.min_lifetime",
        duration(r.min_lifetime),
    );
    p.file_into(
        &mut core.max_registration_life,
        "registration.max_lifetime",
        duration(r.max_lifetime),
    );
    p.file_into(
        &mut core.max_pes_per_identity,
        "registration.max_pes_per_identity",
        r.max_pes_per_identity,
    );
    let l = f.limits;
    for (key, value, slot) in [
        (
            "limits.registrations_per_identity",
            l.registrations_per_identity,
            &mut core.registration_rate,
        ),
        (
            "limits.registrations_per_address",
            l.registrations_per_address,
            &mut core.registration_rate_per_address,
        ),
        (
            "limits.resolutions_per_identity",
            l.resolutions_per_identity,
            &mut core.resolution_rate,
        ),
        (
            "limits.resolutions_per_address",
            l.resolutions_per_address,
            &mut core.resolution_rate_per_address,
        ),
        (
            "limits.reports_per_identity",
            l.reports_per_identity,
            &mut core.report_rate,
        ),
        (
            "limits.reports_per_address",
            l.reports_per_address,
            &mut core.report_rate_per_address,
        ),
        (
            "limits.registrations_global",
            l.registrations_global,
            &mut core.registration_rate_global,
        ),
        (
            "limits.resolutions_global",
            l.resolutions_global,
            &mut core.resolution_rate_global,
        ),
        (
            "limits.reports_global",
            l.reports_global,
            &mut core.report_rate_global,
        ),
    ] {
        p.file_into(slot, key, rate(value));
    }
    p.file_into(
        &mut core.max_malformed_per_connection,
        "limits.max_malformed_per_connection",
        l.max_malformed_per_connection,
    );
    p.file_into(
        &mut core.max_limiter_keys,
        "limits.max_limiter_keys",
        l.max_limiter_keys,
    );

    let c = f.connections;
    p.pick_into(
        &mut core.max_connections_per_identity,
        "connections.max_per_identity",
        "--max-connections-per-identity",
        args.max_connections_per_identity,
        c.max_per_identity,
    );
    p.pick_into(
        &mut service.max_connections,
        "connections.max",
        "--max-connections",
        args.max_connections,
        c.max,
    );
    p.pick_into(
        &mut service.max_connections_per_address,
        "connections.max_per_address",
        "--max-connections-per-address",
        args.max_connections_per_address,
        c.max_per_address,
    );
    if !p.origins.is_set("connections.max_per_address") {
        // The default share fits a smaller total.
        service.max_connections_per_address = service
            .max_connections_per_address
            .min(service.max_connections);
    }
    p.file_into(
        &mut service.max_handshakes,
        "connections.max_handshakes",
        c.max_handshakes,
    );
    p.file_into(
        &mut service.max_handshakes_per_address,
        "connections.max_handshakes_per_address",
        c.max_handshakes_per_address,
    );
    if !p.origins.is_set("connections.max_handshakes_per_address") {
        service.max_handshakes_per_address = service
            .max_handshakes_per_address
            .min(service.max_handshakes);
    }
    p.pick_into(
        &mut service.message_timeout,
        "connections.message_timeout",
        "--message-timeout",
        args.message_timeout,
        duration(c.message_timeout),
    );
    p.file_into(
        &mut service.log_summary_interval,
        "log_summary_interval",
        duration(f.log_summary_interval),
    );
    p.pick_into(
        &mut service.max_message_size,
        "connections.max_message_size",
        "--max-message-size",
        args.max_message_size,
        c.max_message_size,
    );
    p.pick_into(
        &mut service.idle_timeout,
        "connections.idle_timeout",
        "--idle-timeout",
        args.idle_timeout,
        duration(c.idle_timeout),
    );
    p.pick_into(
        &mut service.handshake_timeout,
        "connections.handshake_timeout",
        "--handshake-timeout",
        args.handshake_timeout,
        duration(c.handshake_timeout),
    );

    service.enrp_multicast = p
        .pick(
            "enrp.multicast",
            "--enrp-multicast",
            toggle(args.enrp_multicast.clone()),
            on(f.enrp.multicast),
        )
        .flatten()
        .map(|group| rserpool_registrar::enrp_multicast::EnrpMulticast {
            group,
            interface: None,
        });
    let group = p
        .pick(
            "announce.group",
            "--announce",
            toggle(args.announce.clone()),
            on(f.announce.group),
        )
        .flatten();
    let interval = p.pick(
        "announce.interval",
        "--announce-interval",
        args.announce_interval,
        duration(f.announce.interval),
    );
    service.announce = group.map(|group| {
        let mut a = AnnounceConfig {
            group,
            ..AnnounceConfig::default()
        };
        if let Some(i) = interval {
            a.interval = i;
        }
        a
    });

    let admin = p
        .pick(
            "admin.listen",
            "--admin",
            toggle(args.admin.clone()),
            on(f.admin.listen),
        )
        .flatten();
    let admin_token_file = p.pick(
        "admin.token_file",
        "--admin-token-file",
        args.admin_token_file.clone(),
        f.admin.token_file,
    );
    let admin_https = p
        .pick(
            "admin.https",
            "--admin-https",
            args.admin_https,
            f.admin.https,
        )
        .unwrap_or(false);
    let admin_client_ca = p.pick(
        "admin.client_ca",
        "--admin-client-ca",
        args.admin_client_ca.clone(),
        f.admin.client_ca,
    );
    let mut admin_limits = AdminLimits::default();
    p.file_into(
        &mut admin_limits.header_timeout,
        "admin.header_timeout",
        duration(f.admin.header_timeout),
    );
    p.file_into(
        &mut admin_limits.max_connections,
        "admin.max_connections",
        f.admin.max_connections,
    );
    p.file_into(
        &mut admin_limits.max_connections_per_address,
        "admin.max_connections_per_address",
        f.admin.max_connections_per_address,
    );
    p.file_into(
        &mut admin_limits.max_event_streams,
        "admin.max_event_streams",
        f.admin.max_event_streams,
    );
    Merged {
        service,
        listeners,
        apd_file,
        allow_foreign_addresses,
        server_id,
        insecure,
        tls,
        enrp,
        admin,
        admin_token_file,
        admin_https,
        admin_client_ca,
        admin_limits,
        json,
        origins: p.origins,
    }
}
