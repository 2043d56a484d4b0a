//! `rsp pe register POOL --port P`: hold the registration of a service
//! that runs on its own. (Placeholder: filled in by the pe_register work.)

/// Flags of `rsp pe register`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pool handle to register under.
    pub handle: String,
}

/// Run `rsp pe register`.
pub async fn run(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("rsp pe register: not implemented yet")
}
