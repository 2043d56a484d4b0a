//! `rsp pe`: pool elements. `rsp pe POOL` serves echo on a TCP port and
//! registers it under POOL with the first registrar that answers, keeps
//! the registration alive, follows registrar changes and deregisters on
//! SIGINT/SIGTERM. `rsp pe register` does the same for a service that
//! already runs (`pe_register`); `rsp pe drain|undrain|remove` act on a
//! registered PE through a registrar's admin API (`pe_admin`).
//!
//! Both forms that register share their flags ([`PeArgs`]) and their
//! life ([`hold`]: events printed by [`printer`], deregistration on a
//! signal); `rsp pe register` adds a health check ([`check`] runs it,
//! [`health`] decides).

pub mod check;
pub mod health;
pub mod hold;
pub mod printer;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use rserpool::PoolElementSpec;
use rserpool_wire::{PeId, Policy, PoolHandle};
use tokio::net::TcpListener;

use crate::client_args::{parse_pe_id, parse_policy, ClientArgs};
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
    Register(Box<crate::pe_register::Args>),
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
            None => (Some(&mut self.echo.pe.client), None),
            Some(PeCommand::Register(a)) => (Some(&mut a.pe.client), None),
            Some(PeCommand::Drain(a)) => (None, Some(&mut a.target.admin)),
            Some(PeCommand::Undrain(a) | PeCommand::Remove(a)) => (None, Some(&mut a.admin)),
        }
    }
}

/// Run `rsp pe`; `json`: events as JSON lines.
pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    match &args.command {
        None => run_echo(&args.echo, json).await,
        Some(PeCommand::Register(a)) => crate::pe_register::run(a, json).await,
        Some(PeCommand::Drain(a)) => crate::pe_admin::drain(a, json).await,
        Some(PeCommand::Undrain(a)) => crate::pe_admin::undrain(a, json).await,
        Some(PeCommand::Remove(a)) => crate::pe_admin::remove(a, json).await,
    }
}

/// The flags of every PE that registers: `rsp pe POOL` and `rsp pe
/// register POOL`.
#[derive(Debug, clap::Args)]
pub struct PeArgs {
    /// Pool handle to register under (required; `rsp pe` takes it as
    /// optional only because clap cannot combine a required argument with
    /// subcommands).
    #[arg(value_name = "HANDLE")]
    pub handle: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Selection policy and value: rr, wrr:W, rand, wrand:W, pri:P, lu:L,
    /// rlu:L, lud:L:D, plu:L:D (loads as numbers or percentages).
    #[arg(long, value_parser = parse_policy, default_value = "rr")]
    pub policy: Policy,
    /// PE identifier (hex with 0x, or decimal); random by default.
    #[arg(long, value_parser = parse_pe_id)]
    pub id: Option<PeId>,
    /// Registration lifetime (re-registration happens before it ends).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub lifetime: Duration,
    /// How long to wait for the deregistration to be confirmed on exit.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub shutdown_timeout: Duration,
}

impl PeArgs {
    /// What to register for a service on `port` (`address`: the one PUs
    /// reach it at, `None` for this end's address on the registrar
    /// connection), described as `service` in the "registered" line;
    /// `json`: events as JSON lines.
    pub fn plan(
        &self,
        port: u16,
        address: Option<IpAddr>,
        service: String,
        json: bool,
    ) -> anyhow::Result<hold::Plan> {
        let Some(handle) = self.handle.clone() else {
            anyhow::bail!(
                "rsp pe: give a pool handle (rsp pe POOL serves echo in POOL) or a subcommand \
                 (register, drain, undrain, remove; see rsp pe --help)"
            );
        };
        let pool_handle = PoolHandle::new(handle.as_bytes().to_vec())
            .context("the pool handle must not be empty")?;
        let spec = PoolElementSpec {
            identifier: Some(self.id.unwrap_or_else(hold::random_identifier)),
            lifetime: Some(self.lifetime),
            address,
            ..PoolElementSpec::new(pool_handle, self.policy.clone(), port)
        };
        Ok(hold::Plan {
            config: self.client.config()?,
            spec,
            handle,
            service,
            shutdown_timeout: self.shutdown_timeout,
            json,
        })
    }
}

/// Flags of `rsp pe POOL` (the echo server).
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub pe: PeArgs,
    /// Port of the echo service (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address the echo service listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
}

async fn run_echo(args: &EchoArgs, json: bool) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM right after "registered" is printed
    // must deregister, not kill.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    // Check the flags before listening.
    let mut plan = args.pe.plan(args.port, None, String::new(), json)?;
    let listener = TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| {
            format!(
                "--port {}: cannot listen on {}:{}",
                args.port, args.bind, args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    plan.spec.port = port;
    plan.service = format!("echo on port {port}");
    let echo = tokio::spawn(crate::echo::serve(listener));
    let result = hold::hold(plan, None, stop).await;
    echo.abort();
    result
}
