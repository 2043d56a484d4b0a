//! `rsp`: the RSerPool command-line tool. One subcommand per job; each
//! prints human-readable output or JSON, and exits non-zero with a message
//! that names what is wrong.

mod bench;
mod ca;
mod client_args;
mod decode;
mod duration;
mod echo;
mod keygen;
mod pe;
mod registrar;
mod registrar_config;
mod resolve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The RSerPool suite: registrar, pool elements, pool users, tools.
#[derive(Debug, Parser)]
#[command(name = "rsp", version, about, propagate_version = true)]
struct Cli {
    /// Log filter for stderr (tracing syntax, e.g. "info" or
    /// "rserpool_registrar=debug"); RUST_LOG works too.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode one ASAP or ENRP message given in hex and print it as JSON.
    Decode(decode::Args),
    /// Generate credentials.
    #[command(subcommand)]
    Keygen(keygen::Args),
    /// Run a registrar (ENRP server, ASAP side).
    Registrar(registrar::Args),
    /// Run a pool element serving echo, registered under a pool handle.
    Pe(pe::Args),
    /// Resolve a pool handle and print its PEs (optionally send an echo).
    Resolve(resolve::Args),
    /// A small certificate authority for labs: create it, issue certificates.
    #[command(subcommand)]
    Ca(ca::Args),
    /// Measure performance (prints figures; --json for JSON).
    #[command(subcommand)]
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let result = match &cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Registrar(args) => runtime().and_then(|rt| rt.block_on(registrar::run(args))),
        Command::Pe(args) => runtime().and_then(|rt| rt.block_on(pe::run(args))),
        Command::Resolve(args) => runtime().and_then(|rt| rt.block_on(resolve::run(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
        Command::Ca(args) => ca::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-thread runtime: one worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
