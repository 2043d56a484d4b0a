//! `rsp`: the RSerPool command-line tool. One subcommand per job; each
//! prints human-readable output or JSON, and exits non-zero with a message
//! that names what is wrong.

mod decode;
mod keygen;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The RSerPool suite: registrar, pool elements, pool users, tools.
#[derive(Debug, Parser)]
#[command(name = "rsp", version, about, propagate_version = true)]
struct Cli {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Keygen(args) => keygen::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsp: {e:#}");
            ExitCode::FAILURE
        }
    }
}
