//! `rsp pe drain|undrain|remove POOL ID`: act on a registered PE through
//! a registrar's admin API. (Placeholder: filled in by the admin-writes
//! work.)

/// The PE to act on.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Pool handle.
    pub handle: String,
    /// PE identifier.
    pub id: String,
}

/// Flags of `rsp pe drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Run `rsp pe drain`.
pub async fn drain(_args: &DrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Run `rsp pe undrain`.
pub async fn undrain(_args: &TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Run `rsp pe remove`.
pub async fn remove(_args: &TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
