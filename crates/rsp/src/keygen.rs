//! `rsp keygen psk IDENTITY`: write a new pre-shared key file (format in
//! `docs/security.md`), readable by its owner only. `rsp keygen token
//! --out FILE`: write a new bearer token for the registrar's admin API
//! (`docs/admin.md`), readable by its owner only.

use std::path::PathBuf;

use clap::Subcommand;
use rserpool_registrar::admin::AdminToken;
use rserpool_security::Psk;

/// What to generate.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// A TLS 1.3 pre-shared key (32 random bytes) for an identity.
    Psk {
        /// The PSK identity (printable ASCII, no spaces, up to 128 characters).
        identity: String,
        /// The key file to create (default: IDENTITY.key); never overwritten.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A bearer token for the registrar's admin API (32 random bytes, hex).
    Token {
        /// The token file to create; never overwritten.
        #[arg(short, long, value_name = "FILE")]
        out: PathBuf,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match args {
        Args::Psk {
            identity,
            output,
            json,
        } => {
            let path = output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{identity}.key")));
            let psk = Psk::generate(identity)?;
            psk.write_new(&path)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({ "identity": identity, "file": path.display().to_string(), "mode": "0600" })
                );
            } else {
                println!(
                    "wrote PSK for identity {identity:?} to {} (mode 0600)",
                    path.display()
                );
            }
            Ok(())
        }
        Args::Token { out, json } => {
            AdminToken::write_new(out)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({ "file": out.display().to_string(), "mode": "0600" })
                );
            } else {
                println!("wrote an admin token to {} (mode 0600)", out.display());
            }
            Ok(())
        }
    }
}
