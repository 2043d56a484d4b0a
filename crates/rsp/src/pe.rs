//! `rsp pe`: pool elements. `rsp pe POOL` serves echo on a TCP port and
//! registers it under POOL with the first registrar that answers, keeps
//! the registration alive, follows registrar changes and deregisters on
//! SIGINT/SIGTERM. `rsp pe register` does the same for a service that
//! already runs (`pe_register`); `rsp pe drain|undrain|remove` act on a
//! registered PE through a registrar's admin API (`pe_admin`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use rserpool::{PeEvent, PoolElement, PoolElementSpec};
use rserpool_wire::{Policy, PoolHandle};
use tokio::net::TcpListener;

use crate::client_args::{parse_policy, ClientArgs};
use crate::duration::parse_duration;

/// Flags of `rsp pe`: a subcommand, or the echo server's flags.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<PeCommand>,
    #[command(flatten)]
    pub echo: EchoArgs,
}

/// What `rsp pe` can do besides serving echo.
#[derive(Debug, clap::Subcommand)]
pub enum PeCommand {
    /// Register a service that already runs on this host (it serves
    /// nothing itself): keep-alives, re-registration, registrar failover,
    /// an optional health check; deregisters on SIGINT/SIGTERM.
    Register(crate::pe_register::Args),
    /// Stop handing a PE out (admin API); it stays registered until it
    /// deregisters or the drain timeout ends.
    Drain(crate::pe_admin::DrainArgs),
    /// Hand a drained PE out again (admin API).
    Undrain(crate::pe_admin::TargetArgs),
    /// Deregister a PE now, whatever it does (admin API).
    Remove(crate::pe_admin::TargetArgs),
}

impl Args {
    /// The client and admin flags of the command given, for the client
    /// file's defaults.
    pub fn client_sections(
        &mut self,
    ) -> (
        Option<&mut ClientArgs>,
        Option<&mut crate::admin_client::AdminArgs>,
    ) {
        match &mut self.command {
            None => (Some(&mut self.echo.client), None),
            Some(PeCommand::Register(_)) => (None, None),
            Some(PeCommand::Drain(a)) => (None, Some(&mut a.target.admin)),
            Some(PeCommand::Undrain(a) | PeCommand::Remove(a)) => (None, Some(&mut a.admin)),
        }
    }
}

/// Run `rsp pe`.
pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    match &args.command {
        None => run_echo(&args.echo, json).await,
        Some(PeCommand::Register(a)) => crate::pe_register::run(a).await,
        Some(PeCommand::Drain(a)) => crate::pe_admin::drain(a, json).await,
        Some(PeCommand::Undrain(a)) => crate::pe_admin::undrain(a, json).await,
        Some(PeCommand::Remove(a)) => crate::pe_admin::remove(a, json).await,
    }
}

/// Flags of `rsp pe POOL` (the echo server).
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Pool handle to register under (required without a subcommand;
    /// optional here only because clap cannot combine a required argument
    /// with subcommands).
    #[arg(value_name = "HANDLE")]
    pub handle: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Selection policy and value: rr, wrr:W, rand, wrand:W, pri:P, lu:L,
    /// rlu:L, lud:L:D, plu:L:D (loads as numbers or percentages).
    #[arg(long, value_parser = parse_policy, default_value = "rr")]
    pub policy: Policy,
    /// Port of the echo service (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address the echo service listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// PE identifier (hex with 0x, or decimal); random by default.
    #[arg(long, value_parser = parse_id)]
    pub id: Option<u32>,
    /// Registration lifetime (re-registration happens before it ends).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub lifetime: Duration,
    /// How long to wait for the deregistration to be confirmed on exit.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub shutdown_timeout: Duration,
}

fn parse_id(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?} is not a 32-bit PE identifier: {e}"))
}

async fn run_echo(args: &EchoArgs, json: bool) -> anyhow::Result<()> {
    let Some(handle_text) = args.handle.as_deref() else {
        anyhow::bail!(
            "rsp pe: give a pool handle (rsp pe POOL serves echo in POOL) or a subcommand \
             (register, drain, undrain, remove; see rsp pe --help)"
        );
    };
    // Signal handlers first: a SIGTERM right after "registered" is printed
    // must deregister, not kill.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let handle = PoolHandle::new(handle_text.as_bytes().to_vec())
        .context("the pool handle must not be empty")?;
    let config = args.client.config()?;
    let listener = TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| {
            format!(
                "--port {}: cannot listen on {}:{}",
                args.port, args.bind, args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let echo = tokio::spawn(crate::echo::serve(listener));
    let spec = PoolElementSpec {
        identifier: args.id,
        lifetime: Some(args.lifetime),
        ..PoolElementSpec::new(handle.clone(), args.policy.clone(), port)
    };
    let pe = PoolElement::start(config, spec).await?;
    let mut events = pe.events();
    let id = pe.identifier();
    let status = pe.status();
    let out = Printer { json, id };
    out.line(
        serde_json::json!({
            "event": "registered", "pool_handle": handle_text, "identifier": id,
            "port": port, "policy": args.policy.name(),
            "registrar": status.registrar.map(|a| a.to_string()),
        }),
        format!(
            "PE {id:#010x} registered in pool {:?} (policy {}), echo on port {port}, registrar {}",
            handle_text,
            args.policy.name(),
            status.registrar.map_or("?".to_string(), |a| a.to_string())
        ),
    );
    loop {
        tokio::select! {
            _ = &mut stop => break,
            e = events.recv() => match e {
                Ok(e) => out.event(&e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
        }
    }
    // RFC 5352 3.2 allows T3 (30 s) for the answer; an operator stopping a
    // PE waits at most --shutdown-timeout. Unconfirmed, the registrar
    // removes the PE after its keep-alive timeout anyway.
    let result = tokio::time::timeout(args.shutdown_timeout, pe.shutdown()).await;
    echo.abort();
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "no answer within {:?}; the registrar drops the PE after its keep-alive timeout",
            args.shutdown_timeout
        )),
    };
    match failure {
        None => out.line(
            serde_json::json!({"event": "deregistered", "identifier": id}),
            format!("PE {id:#010x} deregistered"),
        ),
        Some(e) => out.line(
            serde_json::json!({"event": "deregistration_failed", "identifier": id, "error": e}),
            format!("PE {id:#010x}: deregistration not confirmed: {e}"),
        ),
    }
    Ok(())
}

struct Printer {
    json: bool,
    id: u32,
}

impl Printer {
    fn line(&self, json: serde_json::Value, text: String) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }

    fn event(&self, e: &PeEvent) {
        let id = self.id;
        let (json, text) = match e {
            PeEvent::Registered {
                registrar,
                home_server_id,
                ..
            } => (
                serde_json::json!({"event": "reregistered", "identifier": id, "registrar": registrar.to_string(), "home_server_id": home_server_id}),
                format!("PE {id:#010x} registered with {registrar}"),
            ),
            PeEvent::RegistrationRefused {
                registrar, cause, ..
            } => (
                serde_json::json!({"event": "refused", "identifier": id, "registrar": registrar.to_string(), "cause": cause.name()}),
                format!(
                    "PE {id:#010x}: registrar {registrar} refused the registration: {}",
                    cause.name()
                ),
            ),
            PeEvent::RegistrationFailed { error, .. } => (
                serde_json::json!({"event": "registration_failed", "identifier": id, "error": error.to_string()}),
                format!("PE {id:#010x}: registration failed: {error}"),
            ),
            PeEvent::RegistrarLost { registrar, reason } => (
                serde_json::json!({"event": "registrar_lost", "identifier": id, "registrar": registrar.to_string(), "reason": reason}),
                format!("PE {id:#010x}: lost registrar {registrar}: {reason}; hunting"),
            ),
            PeEvent::NoRegistrar { failures } => (
                serde_json::json!({"event": "no_registrar", "identifier": id, "failures": failures.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>()}),
                format!(
                    "PE {id:#010x}: no registrar reachable ({} tried); retrying",
                    failures.len()
                ),
            ),
            PeEvent::Rehomed {
                registrar,
                server_id,
            } => (
                serde_json::json!({"event": "rehomed", "identifier": id, "registrar": registrar.to_string(), "server_id": server_id}),
                format!("PE {id:#010x}: new home registrar {server_id:#010x} at {registrar}"),
            ),
            other => (
                serde_json::json!({"event": "other", "identifier": id, "detail": format!("{other:?}")}),
                format!("PE {id:#010x}: {other:?}"),
            ),
        };
        self.line(json, text);
    }
}
