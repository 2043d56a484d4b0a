//! `rsp registrar`: run a registrar (ASAP server side) in secure mode
//! (TLS with PSKs and/or a certificate) or, with `--insecure`, plain TCP
//! for labs. Settings come from flags, a TOML file (`--config`) and
//! built-in defaults, in that order (see `registrar_config`);
//! `--check-config` validates them and exits. Logs go to stderr; `--json`
//! prints one JSON event per line on stdout (registrations, removals,
//! refusals).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rserpool_registrar::admin::AdminServer;
use rserpool_registrar::Registrar;
use rserpool_wire::ServerId;

use crate::duration::parse_duration;
use crate::registrar_config::{self, Toggle};

/// Flags of `rsp registrar`. Every setting is optional: a flag given
/// overrides the configuration file, which overrides the default shown in
/// the help text.
#[derive(Debug, Default, clap::Args)]
#[command(mut_args(registrar_config::help_with_default))]
pub struct Args {
    /// Configuration file (TOML; layout in docs/operations.md).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the settings (files, keys, certificates included), print the
    /// effective settings and exit 0, or print the error and exit 1.
    /// Binds no socket.
    #[arg(long)]
    pub check_config: bool,
    /// An ASAP listener for pool users only (repeatable; replaces the
    /// file's [[listener]] tables): handle resolutions and unreachable
    /// reports; registrations there are refused. Source filters: in the
    /// file (`allow` of a [[listener]]).
    #[arg(long, value_name = "ADDR")]
    pub pool_user_listen: Vec<SocketAddr>,
    /// ASAP listen address (repeatable; replaces the file's list).
    #[arg(short, long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Key file with pre-shared keys of PEs and PUs (repeatable; replaces
    /// the file's list; format in docs/security.md).
    #[arg(long, value_name = "FILE")]
    pub psk_file: Vec<PathBuf>,
    /// Registrar certificate chain (PEM), for clients that verify it.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA that signs client certificates (enables client certificates).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Refuse certificate clients without a client certificate.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub require_client_cert: Option<bool>,
    /// Plain TCP, no authentication at all: for labs only.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: Option<bool>,
    /// Server identifier (hex with 0x, or decimal; not 0).
    #[arg(long, value_name = "ID", value_parser = parse_server_id)]
    pub server_id: Option<ServerId>,
    /// Mean time between keep-alives to a PE.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_alive_interval: Option<Duration>,
    /// Time a PE has to answer a keep-alive.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_alive_timeout: Option<Duration>,
    /// Reports from distinct pool users that make the registrar check a PE
    /// (MAX-BAD-PE-REPORT); it is removed only if it does not answer.
    #[arg(long, value_name = "N")]
    pub max_bad_pe_reports: Option<usize>,
    /// Count unreachable reports from pool users that proved no identity
    /// (one per source address).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub count_anonymous_reports: Option<bool>,
    /// The authorised peer database (TOML; `rsp apd init` writes one):
    /// who may be PE, PU, registrar or admin, in which pools, from which
    /// addresses. Without it every key may be PE and PU, registering only
    /// its own address, and only the peer keys (--peer-psk-file) may be
    /// registrars (said once at start). Reloaded on SIGHUP;
    /// changes through the admin API are written back to it.
    #[arg(long, value_name = "FILE")]
    pub apd: Option<PathBuf>,
    /// Without --apd only: PEs may register addresses other than their
    /// own (the permissive default with `addresses = ["any"]`). Replaced
    /// by the database: refused together with --apd.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_foreign_addresses: Option<bool>,
    /// Most open connections.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most open connections from one source address (IPv6: one /64).
    #[arg(long, value_name = "N")]
    pub max_connections_per_address: Option<usize>,
    /// Most open connections of one authenticated identity.
    #[arg(long, value_name = "N")]
    pub max_connections_per_identity: Option<usize>,
    /// Largest message a client may send, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Close connections silent for this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Time a client has to complete its TLS handshake.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Time a client has to complete a message from its first byte.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub message_timeout: Option<Duration>,
    /// A peer registrar's ENRP address (repeatable; replaces the file's
    /// `peers`): dialled until it answers (RFC 5353 3.2.2.1, the first is
    /// the mentor). Needs --enrp-psk-file in secure mode.
    #[arg(long, value_name = "HOST:PORT")]
    pub peer: Vec<SocketAddr>,
    /// ENRP listen address for peer registrars (repeatable). Default, in
    /// a cluster (peers or peer keys given): 0.0.0.0:9902, 9901 insecure.
    #[arg(long, value_name = "ADDR")]
    pub enrp_listen: Vec<SocketAddr>,
    /// This registrar's own pre-shared key, with which it dials its peers
    /// (its identity must be a peer key of theirs).
    #[arg(long, value_name = "FILE")]
    pub enrp_psk_file: Option<PathBuf>,
    /// Key file of a peer registrar (repeatable): accepted on the ENRP
    /// listener; without an authorised peer database these identities,
    /// and only these, may be registrars (a PE or PU key never speaks
    /// ENRP).
    #[arg(long, value_name = "FILE")]
    pub peer_psk_file: Vec<PathBuf>,
    /// Multicast this registrar's ENRP_PRESENCE to this UDP group (e.g.
    /// 239.0.0.51:9901) and dial the registrars heard there (a hint: they
    /// must authenticate), or "off".
    #[arg(long, value_name = "GROUP", value_parser = registrar_config::parse_toggle::<SocketAddr>)]
    pub enrp_multicast: Option<Toggle<SocketAddr>>,
    /// Send ASAP_SERVER_ANNOUNCE to this UDP group (e.g. 239.0.0.50:3863),
    /// or "off".
    #[arg(long, value_name = "GROUP", value_parser = registrar_config::parse_toggle::<SocketAddr>)]
    pub announce: Option<Toggle<SocketAddr>>,
    /// Time between server announcements.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub announce_interval: Option<Duration>,
    /// Serve the admin HTTP API on ADDR, or "off" (a bare --admin listens
    /// on the address in brackets). Needs --admin-token-file.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true,
          default_missing_value = registrar_config::DEFAULT_ADMIN_LISTEN,
          value_parser = registrar_config::parse_toggle::<SocketAddr>)]
    pub admin: Option<Toggle<SocketAddr>>,
    /// File holding the bearer token of the admin API (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the admin API over HTTPS with the registrar's certificate
    /// (--cert, --key); needed on any address but loopback.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub admin_https: Option<bool>,
    /// With --admin-https: require admin clients to show a certificate
    /// signed by this CA (besides the token).
    #[arg(long, value_name = "FILE")]
    pub admin_client_ca: Option<PathBuf>,
    /// `--json` (a global flag, copied here by `main`): events and
    /// --check-config's summary as JSON lines on stdout; overrides `json`
    /// of the file either way.
    #[arg(skip)]
    pub json: Option<bool>,
}

fn parse_server_id(s: &str) -> Result<ServerId, String> {
    let v = s
        .parse::<ServerId>()
        .map_err(|_| format!("{s:?} is not a 32-bit number (decimal, or hex with 0x)"))?;
    if v.is_undetermined() {
        return Err("the server id must not be 0".into());
    }
    Ok(v)
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    // Signal handlers before anything is printed: a SIGTERM right after
    // "listening" must stop the registrar cleanly, not kill it, and a
    // SIGHUP reloads instead of killing it.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let mut hangup = hangup_signal()?;
    let mut settings = registrar_config::load(args)?;
    if args.check_config {
        if let Some(tls) = &settings.service.tls {
            // What passes here must also complete handshakes at start.
            tls.self_test()
                .await
                .map_err(|e| anyhow::anyhow!("TLS set-up does not work: {e}"))?;
        }
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", registrar_config::summary(&settings))?;
        return Ok(());
    }
    let json = settings.json;
    let secure = settings.service.tls.is_some();
    let server_id = settings.service.core.server_id;
    let mode = if secure {
        "secure (TLS 1.3)"
    } else {
        "INSECURE (plain TCP, no authentication)"
    };
    fit_descriptors(&mut settings);
    let registrar = Registrar::start(settings.service.clone()).await?;
    let admin = match &settings.admin {
        Some(a) => Some(AdminServer::start(a.config.clone(), registrar.handle()).await?),
        None => None,
    };
    let mut events = registrar.events();
    for a in registrar.local_addrs() {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "listening", "address": a.to_string(), "server_id": server_id, "secure": secure})
            );
        } else {
            println!("registrar {server_id:#010x} listening on {a}, {mode}");
        }
    }
    for a in registrar.pool_user_addrs() {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "listening", "address": a.to_string(), "server_id": server_id, "secure": secure, "pool_users_only": true})
            );
        } else {
            println!("registrar {server_id:#010x} listening for pool users only on {a}, {mode}");
        }
    }
    for a in registrar.handle().enrp_addrs() {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "enrp_listening", "address": a.to_string(), "server_id": server_id, "secure": secure})
            );
        } else {
            println!(
                "registrar {server_id:#010x} listening for peer registrars (ENRP) on {a}, {mode}"
            );
        }
    }
    if let Some(a) = &admin {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "admin_listening", "address": a.local_addr().to_string(), "https": settings.admin.as_ref().is_some_and(|a| a.config.tls.is_some())})
            );
        } else {
            let scheme = match settings.admin.as_ref().and_then(|a| a.config.tls.as_ref()) {
                Some(_) => "https",
                None => "http",
            };
            println!("admin API and /metrics on {scheme}://{}", a.local_addr());
        }
    }
    let handle = registrar.handle();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => {
                let outcome = crate::reload::reload(args, &mut settings, &handle, admin.as_ref()).await;
                print_reload(json, outcome);
            }
            e = events.recv() => match e {
                Ok(e) => {
                    if json {
                        println!("{}", serde_json::to_string(&e)?);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} events not shown (output too slow)");
                }
                Err(_) => break,
            },
        }
    }
    eprintln!("rsp: registrar stopping");
    if let Some(a) = admin {
        a.shutdown().await;
    }
    registrar.shutdown().await;
    Ok(())
}

/// SIGHUP, installed at once (a reload asked for early is not lost).
fn hangup_signal() -> anyhow::Result<Hangup> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Hangup(signal(SignalKind::hangup()).map_err(|e| {
            anyhow::anyhow!("cannot install the SIGHUP handler: {e}")
        })?))
    }
    #[cfg(not(unix))]
    {
        Ok(Hangup)
    }
}

#[cfg(unix)]
struct Hangup(tokio::signal::unix::Signal);
#[cfg(not(unix))]
struct Hangup;

impl Hangup {
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.0.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}

/// Raise the descriptor limit and lower the connection limit if it still
/// does not fit (see `fd_limit`).
fn fit_descriptors(settings: &mut registrar_config::RegistrarSettings) {
    let admin = settings
        .admin
        .as_ref()
        .map_or(0, |a| a.config.max_file_descriptors());
    let Some(limit) = crate::fd_limit::raise() else {
        return;
    };
    let svc = &mut settings.service;
    if let Some(fits) = crate::fd_limit::fit(svc.max_connections, admin, limit) {
        tracing::warn!(
            wanted = svc.max_connections,
            fits,
            descriptors = limit,
            "the file descriptor limit (RLIMIT_NOFILE) cannot hold max_connections: lowered \
             to {fits}; raise the limit (systemd: LimitNOFILE=) for more"
        );
        svc.max_connections = fits;
        svc.max_connections_per_address = svc.max_connections_per_address.min(fits);
    }
}

/// Report a reload: a line on stdout (JSON with `--json`) and a log line.
fn print_reload(json: bool, outcome: anyhow::Result<crate::reload::Reloaded>) {
    match outcome {
        Ok(r) => {
            let closed = r.report.connections();
            let removed = r.report.pes_removed.len();
            let (apd_closed, apd_removed) = r.apd.as_ref().map_or((0, 0), |a| {
                (a.connections_closed.len(), a.pes_removed.len())
            });
            if r.restart_needed {
                tracing::warn!(
                    "settings other than credentials changed: they take effect at the next restart"
                );
            }
            tracing::info!(
                connections_closed = closed,
                pes_removed = removed,
                "credentials reloaded"
            );
            if let Some(a) = &r.apd {
                tracing::info!(
                    entries = a.entries,
                    connections_closed = apd_closed,
                    pes_removed = apd_removed,
                    removed = %a
                        .pes_removed
                        .iter()
                        .map(|p| format!("{}/{:#010x} ({})", p.pool_handle, p.identifier, p.identity))
                        .collect::<Vec<_>>()
                        .join(", "),
                    "authorised peer database reloaded"
                );
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "reloaded",
                        "connections_closed": r.report.connections_closed,
                        "pes_removed": r.report.pes_removed,
                        "apd": r.apd,
                        "restart_needed": r.restart_needed,
                    })
                );
            } else {
                let apd = match &r.apd {
                    Some(a) => format!(
                        "; database: {} entries, {apd_closed} connections closed, {apd_removed} PEs removed",
                        a.entries
                    ),
                    None => "; database file changed: it takes effect at the next restart".into(),
                };
                println!(
                    "reloaded: credentials replaced; {closed} connections closed, {removed} PEs removed{apd}{}",
                    if r.restart_needed {
                        "; other changes need a restart"
                    } else {
                        ""
                    }
                );
            }
        }
        Err(e) => {
            tracing::error!("reload failed, nothing changed: {e:#}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "reload_failed", "error": format!("{e:#}")})
                );
            } else {
                println!("reload failed, nothing changed: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, Command};

    use super::Args;

    #[test]
    fn every_setting_flag_shows_its_default() {
        let cmd = Args::augment_args(Command::new("registrar"));
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if ["config", "check_config"].contains(&id) {
                continue;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains("[default: "), "--{id}: {help}");
        }
    }
}
