//! Merging the registrar's settings: a flag given wins over the
//! configuration file, which wins over the built-in default. The defaults
//! are those of `ServiceConfig`, `CoreConfig` and `AnnounceConfig` (one
//! source of truth; the help text shows them via [`help_with_default`]).
//! Every value remembers where it came from, so the checks here name the
//! flag or the file line of a bad value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rserpool_registrar::announce::AnnounceConfig;
use rserpool_registrar::ServiceConfig;
use rserpool_security::rate_limit::Rate;
use toml::Spanned;

use super::file::{FileConfig, HumanDuration, Located, RateSpec};
use super::locate::{line_of, Origin, Origins};
use super::Toggle;
use crate::registrar::Args;

/// Where a bare `--admin` listens.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3865";

/// ASAP over plain TCP (IANA), the default port in insecure mode;
/// `ServiceConfig`'s default listener is ASAP over TLS (3864).
const ASAP_PLAIN_PORT: u16 = 3863;

/// Smallest `max_message_size` accepted: room for a registration.
const MIN_MESSAGE_SIZE: usize = 256;

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
    fn is_empty(&self) -> bool {
        self.psk_files.is_empty()
            && self.cert.is_none()
            && self.key.is_none()
            && self.client_ca.is_none()
            && !self.require_client_cert
    }
}

/// The merged settings before any file they name is read.
#[derive(Debug)]
pub struct Merged {
    /// The service settings (without TLS; `core.server_id` is set from
    /// [`Self::server_id`] later).
    pub service: ServiceConfig,
    /// The server identifier; `None`: draw one.
    pub server_id: Option<u32>,
    /// Plain TCP instead of TLS.
    pub insecure: bool,
    /// Credential files (secure mode).
    pub tls: TlsFiles,
    /// Listen address of the admin API, when on.
    pub admin: Option<SocketAddr>,
    /// Token file of the admin API.
    pub admin_token_file: Option<PathBuf>,
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

    let core = &mut service.core;
    if let Some(v) = p.pick(
        "keep_alive.interval",
        "--keep-alive-interval",
        args.keep_alive_interval,
        duration(f.keep_alive.interval),
    ) {
        core.keep_alive_interval = v;
    }
    if let Some(v) = p.pick(
        "keep_alive.timeout",
        "--keep-alive-timeout",
        args.keep_alive_timeout,
        duration(f.keep_alive.timeout),
    ) {
        core.keep_alive_timeout = v;
    }
    if let Some(v) = p.pick(
        "max_bad_pe_reports",
        "--max-bad-pe-reports",
        args.max_bad_pe_reports,
        f.max_bad_pe_reports,
    ) {
        core.max_bad_pe_reports = v;
    }
    if let Some(v) = p.pick(
        "allow_foreign_addresses",
        "--allow-foreign-addresses",
        args.allow_foreign_addresses,
        f.allow_foreign_addresses,
    ) {
        core.allow_foreign_addresses = v;
    }
    let r = f.registration;
    if let Some(v) = p.file("registration.min_lifetime", duration(r.min_lifetime)) {
        core.min_registration_life = v;
    }
    if let Some(v) = p.file("registration.max_lifetime", duration(r.max_lifetime)) {
        core.max_registration_life = v;
    }
    if let Some(v) = p.file("registration.max_pes_per_identity", r.max_pes_per_identity) {
        core.max_pes_per_identity = v;
    }
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
    ] {
        if let Some(v) = p.file(key, rate(value)) {
            *slot = v;
        }
    }
    if let Some(v) = p.file(
        "limits.max_malformed_per_connection",
        l.max_malformed_per_connection,
    ) {
        core.max_malformed_per_connection = v;
    }
    if let Some(v) = p.file("limits.max_limiter_keys", l.max_limiter_keys) {
        core.max_limiter_keys = v;
    }

    let c = f.connections;
    if let Some(v) = p.pick(
        "connections.max",
        "--max-connections",
        args.max_connections,
        c.max,
    ) {
        service.max_connections = v;
    }
    if let Some(v) = p.pick(
        "connections.max_message_size",
        "--max-message-size",
        args.max_message_size,
        c.max_message_size,
    ) {
        service.max_message_size = v;
    }
    if let Some(v) = p.pick(
        "connections.idle_timeout",
        "--idle-timeout",
        args.idle_timeout,
        duration(c.idle_timeout),
    ) {
        service.idle_timeout = v;
    }
    if let Some(v) = p.pick(
        "connections.handshake_timeout",
        "--handshake-timeout",
        args.handshake_timeout,
        duration(c.handshake_timeout),
    ) {
        service.handshake_timeout = v;
    }

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
    Merged {
        service,
        server_id,
        insecure,
        tls,
        admin,
        admin_token_file,
        json,
        origins: p.origins,
    }
}

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
        if r.per_second.is_nan() || r.per_second <= 0.0 {
            return Err(o.error(key, "per_second must be more than 0 (inf: no limit)"));
        }
        if r.burst.is_nan() || r.burst < 1.0 {
            return Err(o.error(key, "burst must be at least 1"));
        }
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
        "allow_foreign_addresses" => core.allow_foreign_addresses.to_string(),
        "server_id" => "random".into(),
        "keep_alive_interval" => time(core.keep_alive_interval),
        "keep_alive_timeout" => time(core.keep_alive_timeout),
        "max_bad_pe_reports" => core.max_bad_pe_reports.to_string(),
        "max_connections" => service.max_connections.to_string(),
        "max_message_size" => service.max_message_size.to_string(),
        "idle_timeout" => time(service.idle_timeout),
        "handshake_timeout" => time(service.handshake_timeout),
        "announce" => "off".into(),
        "announce_interval" => time(announce.interval),
        "admin" => format!("off; bare --admin: {DEFAULT_ADMIN_LISTEN}"),
        _ => return arg,
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}
