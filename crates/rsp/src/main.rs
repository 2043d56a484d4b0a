//! `rsp`: the RSerPool command-line tool. One subcommand per job; each
//! prints human-readable output or JSON, and exits non-zero with a message
//! that names what is wrong.

mod admin_client;
mod bench;
mod bench_connections;
mod ca;
mod client_args;
mod decode;
mod demo;
mod duration;
mod echo;
mod fd_limit;
mod generate;
mod keygen;
mod pe;
mod pe_admin;
mod pe_register;
mod registrar;
mod registrar_config;
mod reload;
mod resolve;
mod status;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// jemalloc for the whole process: on Linux it also replaces the C library's
// `malloc`, so OpenSSL's per-connection buffers come from it too, and its
// background thread gives freed memory back to the system (10 s decay;
// MALLOC_CONF tunes it). With glibc's malloc the registrar kept ~260 MiB
// after three floods of 4000 connections had closed; with this, ~7 MiB
// (`rsp bench connections`, docs/operations.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The global allocator, as `rsp bench connections` reports it.
pub(crate) const ALLOCATOR: &str = if cfg!(target_env = "msvc") {
    "system"
} else {
    "jemalloc (malloc too, background threads)"
};

/// The RSerPool suite: registrar, pool elements, pool users, tools.
#[derive(Debug, Parser)]
#[command(name = "rsp", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log filter for stderr (tracing syntax, e.g. "info" or
    /// "rserpool_registrar=debug"); RUST_LOG works too. Default: info
    /// (warn for the demo, whose own output tells the story).
    #[arg(long, global = true)]
    log: Option<String>,
    /// Log format on stderr: human-readable text, or one JSON object per
    /// line for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Text for people (coloured when stderr is a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a secure pool with failover on this machine: a registrar, echo
    /// PEs and a pool user; one PE is killed on the way.
    Demo(demo::Args),
    /// Decode one ASAP or ENRP message given in hex and print it as JSON.
    Decode(decode::Args),
    /// Generate credentials.
    #[command(subcommand)]
    Keygen(keygen::Args),
    /// Run a registrar (ENRP server, ASAP side).
    Registrar(registrar::Args),
    /// Run a pool element serving echo under a pool handle, register an
    /// existing service, or drain/undrain/remove a PE.
    Pe(pe::Args),
    /// Resolve a pool handle and print its PEs (optionally send an echo).
    Resolve(resolve::Args),
    /// A small certificate authority for labs: create it, issue certificates.
    #[command(subcommand)]
    Ca(ca::Args),
    /// Measure performance (prints figures; --json for JSON).
    #[command(subcommand)]
    Bench(bench::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionArgs),
    /// Write man pages for rsp and every subcommand to a directory.
    Man(generate::ManArgs),
    /// Show a running registrar's state (through its admin API).
    Status(status::Args),
    /// Follow a running registrar's events (through its admin API).
    Watch(watch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log.as_deref().unwrap_or(default_filter), cli.log_format);
    let result = match &cli.command {
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Decode(args) => decode::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Registrar(args) => runtime().and_then(|rt| rt.block_on(registrar::run(args))),
        Command::Pe(args) => runtime().and_then(|rt| rt.block_on(pe::run(args))),
        Command::Resolve(args) => runtime().and_then(|rt| rt.block_on(resolve::run(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
        Command::Status(args) => runtime().and_then(|rt| rt.block_on(status::run(args))),
        Command::Watch(args) => runtime().and_then(|rt| rt.block_on(watch::run(args))),
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

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are
/// installed when this is called (not when the future is first polled),
/// so a signal that arrives in between is not lost. Call it once per run,
/// inside the runtime, and pin the future.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot install signal handlers; stop with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
