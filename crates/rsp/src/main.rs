//! `rsp`: the RSerPool command-line tool. One subcommand per job; each
//! prints human-readable output or JSON, and exits non-zero with a message
//! that names what is wrong.

mod admin_client;
mod apd;
mod bench;
mod bench_child;
mod bench_cluster;
mod bench_connections;
mod bench_rehoming;
mod ca;
mod client_args;
mod client_file;
mod decode;
mod demo;
mod display;
mod duration;
mod echo;
mod fd_limit;
mod generate;
mod keygen;
mod pe;
mod pe_admin;
mod pe_register;
mod pools;
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
    /// "rserpool_registrar=debug"); RUST_LOG when it is not given. Default: info
    /// (warn for the demo, whose own output tells the story).
    #[arg(long, global = true)]
    log: Option<String>,
    /// Log format on stderr: human-readable text, or one JSON object per
    /// line for log collectors. Default: text, or json with --json (so
    /// that everything on stderr is JSON).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// JSON instead of text on stdout (one object, or one per line for
    /// streams), and errors as one JSON object on stderr. `--json=false`
    /// overrides `json = true` of a registrar's configuration file.
    /// (`completions` prints a script either way.)
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    json: Option<bool>,
    /// Client file with defaults for -r, the credentials, --admin and
    /// --token-file (default: ~/.config/rsp/client.toml when it exists).
    #[arg(long, global = true, value_name = "FILE", env = "RSP_CLIENT_CONFIG")]
    client_config: Option<std::path::PathBuf>,
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
    /// PEs and a pool user; one PE is killed on the way (--cluster: three
    /// registrars, and the one home to most PEs is killed).
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
    /// List a registrar's pools: handle, policy, PE count (admin API).
    Pools(pools::PoolsArgs),
    /// List the PEs of one pool: identifier, address, port, policy value,
    /// owner, registered since, drained (admin API).
    Pool(pools::PoolArgs),
    /// Follow a running registrar's events (through its admin API).
    Watch(watch::Args),
    /// The authorised peer database: write a starting file, check one,
    /// list and change a registrar's (admin API).
    #[command(subcommand)]
    Apd(apd::Args),
}

/// The variables that give flags their defaults (docs/operations.md,
/// "Client commands").
const DEFAULT_VARIABLES: [&str; 4] = [
    "RSP_REGISTRAR",
    "RSP_ADMIN",
    "RSP_ADMIN_TOKEN_FILE",
    "RSP_CLIENT_CONFIG",
];

fn main() -> ExitCode {
    // An empty variable means "not set" (clap would take it for an empty
    // value and never look further, at the client file). Single-threaded
    // here: nothing else reads the environment yet.
    for v in DEFAULT_VARIABLES {
        if std::env::var_os(v).is_some_and(|x| x.is_empty()) {
            std::env::remove_var(v);
        }
    }
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.json.unwrap_or(false);
    let default_filter = match cli.command {
        // Their own output tells the story; a benchmark's registrar would
        // log a line per request.
        Command::Demo(_) | Command::Bench(_) => "warn",
        _ => "info",
    };
    let log_format = cli.log_format.unwrap_or(if json {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    init_logging(cli.log.as_deref(), default_filter, log_format);
    if let Command::Registrar(a) = &mut cli.command {
        // The registrar merges it with its configuration file.
        a.json = cli.json;
    }
    let result = apply_client_file(&mut cli).and_then(|()| run(&cli.command, json));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

fn run(command: &Command, json: bool) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => runtime()?.block_on(demo::run(args, json)),
        Command::Decode(args) => decode::run(args, json),
        Command::Keygen(args) => keygen::run(args, json),
        Command::Registrar(args) => runtime()?.block_on(registrar::run(args)),
        Command::Pe(args) => runtime()?.block_on(pe::run(args, json)),
        Command::Resolve(args) => runtime()?.block_on(resolve::run(args, json)),
        Command::Bench(args) => runtime()?.block_on(bench::run(args, json)),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args, json),
        Command::Status(args) => runtime()?.block_on(status::run(args, json)),
        Command::Pools(args) => runtime()?.block_on(pools::pools(args, json)),
        Command::Pool(args) => runtime()?.block_on(pools::pool(args, json)),
        Command::Watch(args) => runtime()?.block_on(watch::run(args, json)),
        Command::Apd(args) => runtime()?.block_on(apd::run(args, json)),
        Command::Ca(args) => ca::run(args, json),
    }
}

/// Give the client commands the defaults of the client file (the flags
/// and their environment variables come first). Commands without client
/// flags do not read it.
fn apply_client_file(cli: &mut Cli) -> anyhow::Result<()> {
    let (client, admin) = match &mut cli.command {
        Command::Pe(a) => a.client_sections(),
        Command::Resolve(a) => (Some(&mut a.client), None),
        Command::Status(a) => (None, Some(&mut a.admin)),
        Command::Watch(a) => (None, Some(&mut a.admin)),
        Command::Pools(a) => (None, Some(&mut a.admin)),
        Command::Pool(a) => (None, Some(&mut a.admin)),
        Command::Apd(a) => (None, a.admin_mut()),
        _ => (None, None),
    };
    if client.is_none() && admin.is_none() {
        return Ok(());
    }
    let file = client_file::load(cli.client_config.as_deref())?;
    if let Some(c) = client {
        c.apply(&file);
    }
    if let Some(a) = admin {
        a.apply(&file);
    }
    Ok(())
}

/// An error for the user: `rsp: message: cause: cause` on stderr, or with
/// `--json` one object `{"error": message, "causes": [...]}`.
fn report_error(e: &anyhow::Error, json: bool) {
    if json {
        let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
        eprintln!(
            "{}",
            serde_json::json!({ "error": e.to_string(), "causes": causes })
        );
    } else {
        eprintln!("rsp: {e:#}");
    }
}

/// A command line clap refused: its own message, or under `--json` (seen
/// in the raw arguments, since parsing failed) one JSON object.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = std::env::args()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json" || a == "--json=true");
    if wants_json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let text = e.render().to_string();
        // The message is what comes before the usage paragraph.
        let head = text.split("\n\n").next().unwrap_or("invalid command line");
        let message = head
            .trim_start_matches("error: ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!(
            "{}",
            serde_json::json!({ "error": message, "usage": text.trim_end() })
        );
        return ExitCode::from(2);
    }
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// A multi-thread runtime: one worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Logging to stderr with `--log`'s filter, else RUST_LOG's, else
/// `default`.
fn init_logging(flag: Option<&str>, default: &str, format: LogFormat) {
    let filter = match flag {
        Some(f) => tracing_subscriber::EnvFilter::try_new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .or_else(|_| tracing_subscriber::EnvFilter::try_new(default)),
    }
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
