//! `rsp registrar`: run a registrar (ASAP server side) in secure mode
//! (TLS with PSKs and/or a certificate) or, with `--insecure`, plain TCP
//! for labs. Logs go to stderr; `--json` prints one JSON event per line
//! on stdout (registrations, removals, refusals).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rserpool_registrar::announce::AnnounceConfig;
use rserpool_registrar::{CoreConfig, Registrar, ServiceConfig};
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{PskStore, TlsServer, TlsServerConfig};

use crate::duration::parse_duration;

/// Flags of `rsp registrar`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// ASAP listen address (repeatable). Default 0.0.0.0:3864 (ASAP over
    /// TLS), or 0.0.0.0:3863 with --insecure.
    #[arg(short, long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Key file with pre-shared keys of PEs and PUs (repeatable; format in
    /// docs/security.md).
    #[arg(long, value_name = "FILE")]
    pub psk_file: Vec<PathBuf>,
    /// Registrar certificate chain (PEM), for clients that verify it.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// CA that signs client certificates (enables client certificates).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Refuse certificate clients without a client certificate.
    #[arg(long, requires = "client_ca")]
    pub require_client_cert: bool,
    /// Plain TCP, no authentication at all: for labs only.
    #[arg(long, conflicts_with_all = ["psk_file", "cert", "client_ca"])]
    pub insecure: bool,
    /// Server identifier (default: random).
    #[arg(long, value_parser = parse_server_id)]
    pub server_id: Option<u32>,
    /// Mean time between keep-alives to a PE.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub keep_alive_interval: Duration,
    /// Time a PE has to answer a keep-alive.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub keep_alive_timeout: Duration,
    /// Reports from distinct pool users that remove a PE (MAX-BAD-PE-REPORT).
    #[arg(long, default_value_t = 3)]
    pub max_bad_pe_reports: usize,
    /// Accept registered addresses other than the PE's own.
    #[arg(long)]
    pub allow_foreign_addresses: bool,
    /// Most open connections.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest message a client may send, in bytes.
    #[arg(long, default_value_t = 4096)]
    pub max_message_size: usize,
    /// Close connections silent for this long.
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub idle_timeout: Duration,
    /// Send ASAP_SERVER_ANNOUNCE to this UDP group (e.g. 239.0.0.50:3863).
    #[arg(long, value_name = "GROUP")]
    pub announce: Option<SocketAddr>,
    /// Print events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_server_id(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?} is not a 32-bit number: {e}"))?;
    if v == 0 {
        return Err("the server id must not be 0".into());
    }
    Ok(v)
}

/// Build the service configuration from the flags.
pub fn service_config(args: &Args) -> anyhow::Result<ServiceConfig> {
    let tls = if args.insecure {
        None
    } else {
        let psks = if args.psk_file.is_empty() {
            None
        } else {
            Some(Arc::new(PskStore::load(&args.psk_file)?))
        };
        let certificate = match (&args.cert, &args.key) {
            (Some(chain), Some(key)) => Some(CertificateFiles {
                chain: chain.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        if psks.is_none() && certificate.is_none() {
            anyhow::bail!(
                "a secure registrar needs --psk-file or --cert/--key (or --insecure for a lab)"
            );
        }
        let cfg = TlsServerConfig {
            psks,
            certificate,
            client_ca: args.client_ca.clone(),
            require_client_certificate: args.require_client_cert,
        };
        Some(Arc::new(TlsServer::new(&cfg)?))
    };
    let default_port = if args.insecure { 3863 } else { 3864 };
    let listen = if args.listen.is_empty() {
        vec![SocketAddr::from(([0, 0, 0, 0], default_port))]
    } else {
        args.listen.clone()
    };
    let server_id = match args.server_id {
        Some(id) => id,
        None => loop {
            let mut b = [0u8; 4];
            rserpool_security::random_bytes(&mut b).context("cannot draw a random server id")?;
            let id = u32::from_be_bytes(b);
            if id != 0 {
                break id;
            }
        },
    };
    Ok(ServiceConfig {
        listen,
        tls,
        max_connections: args.max_connections,
        max_message_size: args.max_message_size,
        idle_timeout: args.idle_timeout,
        announce: args.announce.map(|group| AnnounceConfig {
            group,
            ..AnnounceConfig::default()
        }),
        core: CoreConfig {
            server_id,
            keep_alive_interval: args.keep_alive_interval,
            keep_alive_timeout: args.keep_alive_timeout,
            max_bad_pe_reports: args.max_bad_pe_reports,
            allow_foreign_addresses: args.allow_foreign_addresses,
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let cfg = service_config(args)?;
    let server_id = cfg.core.server_id;
    let mode = if cfg.tls.is_some() {
        "secure (TLS 1.3)"
    } else {
        "INSECURE (plain TCP, no authentication)"
    };
    let registrar = Registrar::start(cfg).await?;
    let mut events = registrar.events();
    for a in registrar.local_addrs() {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"event": "listening", "address": a.to_string(), "server_id": server_id, "secure": !args.insecure})
            );
        } else {
            println!("registrar {server_id:#010x} listening on {a}, {mode}");
        }
    }
    loop {
        tokio::select! {
            _ = crate::shutdown_signal() => break,
            e = events.recv() => match e {
                Ok(e) => {
                    if args.json {
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
    registrar.shutdown().await;
    Ok(())
}
