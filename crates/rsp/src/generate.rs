//! Files generated from the command-line definition itself, so they never
//! drift from it: shell completions (`rsp completions SHELL`) and man
//! pages (`rsp man --out DIR`, one page per subcommand).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

/// Flags of `rsp completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `rsp man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Print the completion script for a shell on stdout.
pub fn completions(args: &CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "rsp", &mut std::io::stdout());
    Ok(())
}

/// Write `rsp.1` and `rsp-SUBCOMMAND.1` (nested ones too) to a directory.
pub fn man(args: &ManArgs, json: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, "rsp", &args.out, &mut written)?;
    if json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("{}", serde_json::json!({ "written": files }));
    } else {
        for p in &written {
            println!("{}", p.display());
        }
    }
    Ok(())
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
