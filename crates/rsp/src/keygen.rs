//! `rsp keygen psk IDENTITY`: write a new pre-shared key file (format in
//! `docs/security.md`), readable by its owner only. `rsp keygen token
//! --output FILE`: write a new bearer token for the registrar's admin API
//! (`docs/admin.md`), readable by its owner only. Neither overwrites a
//! file unless `--force` says so.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use rserpool_registrar::admin::{AdminError, AdminToken};
use rserpool_security::{Existing, Psk, SecurityError};

/// What to generate.
#[derive(Debug, Subcommand)]
pub enum Args {
    /// A TLS 1.3 pre-shared key (32 random bytes) for an identity.
    Psk {
        /// The PSK identity (printable ASCII, no spaces, up to 128 characters).
        identity: String,
        /// The key file to create (default: IDENTITY.key).
        #[arg(short, long, visible_alias = "out", value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// A bearer token for the registrar's admin API (32 random bytes, hex).
    Token {
        /// The token file to create.
        #[arg(short, long, visible_alias = "out", value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Flags both kinds share.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Replace the file if it exists (by default an existing file is never
    /// overwritten: it may be a key in use).
    #[arg(long)]
    force: bool,
}

impl WriteArgs {
    fn existing(&self) -> Existing {
        if self.force {
            Existing::Replace
        } else {
            Existing::Refuse
        }
    }
}

fn refused_overwrite(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} exists; not overwriting it (it may be a key in use): choose another file with \
         --output, or replace it with --force",
        path.display()
    )
}

pub fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    match args {
        Args::Psk {
            identity,
            output,
            write,
        } => {
            let path = output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{identity}.key")));
            let psk = Psk::generate(identity)
                .map_err(|e| anyhow::anyhow!("cannot make a key for identity {identity:?}: {e}"))?;
            psk.write(&path, write.existing()).map_err(|e| match e {
                SecurityError::FileExists { .. } => refused_overwrite(&path),
                e => e.into(),
            })?;
            if json {
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
        Args::Token { output, write } => {
            AdminToken::write(output, write.existing()).map_err(|e| match e {
                AdminError::TokenExists { .. } => refused_overwrite(output),
                e => e.into(),
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "file": output.display().to_string(), "mode": "0600" })
                );
            } else {
                println!("wrote an admin token to {} (mode 0600)", output.display());
            }
            Ok(())
        }
    }
}
