//! `rsp pe drain|undrain|remove POOL ID`: act on a registered PE through
//! a registrar's admin API (`POST /v1/pools/{pool}/elements/{id}/drain`,
//! `…/undrain`, `DELETE /v1/pools/{pool}/elements/{id}`; docs/admin.md).
//! Each prints what the registrar did, or its answer as JSON with
//! `--json`.

use reqwest::Method;
use rserpool_wire::PeId;
use serde_json::Value;

use crate::admin_client::{percent_encode, AdminArgs, AdminClient};
use crate::client_args::parse_pe_id;

/// The PE to act on, and the admin API to ask.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Pool handle.
    pub handle: String,
    /// PE identifier (hex with 0x, or decimal), as `rsp pool POOL` shows.
    #[arg(value_parser = parse_pe_id)]
    pub id: PeId,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp pe drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Remove the PE this long after the drain began unless it
    /// deregisters first or is undrained ("none": never).
    #[arg(long, value_name = "DURATION|none", value_parser = parse_timeout)]
    pub timeout: Option<DrainTimeout>,
}

/// `--timeout` of `rsp pe drain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainTimeout {
    /// No timeout.
    Never,
    /// A timeout, as given (humantime).
    After(String),
}

fn parse_timeout(s: &str) -> Result<DrainTimeout, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(DrainTimeout::Never);
    }
    crate::duration::parse_duration(s)?;
    Ok(DrainTimeout::After(s.to_string()))
}

fn pe_path(t: &TargetArgs) -> String {
    format!(
        "/v1/pools/{}/elements/{:#010x}",
        percent_encode(t.handle.as_bytes()),
        t.id
    )
}

fn describe(t: &TargetArgs) -> String {
    format!("PE {:#010x} of pool {:?}", t.id, t.handle)
}

async fn act(t: &TargetArgs, method: Method, path: String, json: bool) -> anyhow::Result<Value> {
    if t.handle == "." || t.handle == ".." {
        // URL parsers (WHATWG, as reqwest's) resolve these path segments,
        // even percent-encoded.
        anyhow::bail!(
            "a pool named {:?} cannot be named in a URL path; send the request with \
             `curl --path-as-is -X POST` to .../v1/pools/{}/elements/ID/drain (or undrain, \
             or -X DELETE .../elements/ID)",
            t.handle,
            t.handle.replace('.', "%2E")
        );
    }
    let client = AdminClient::new(&t.admin)?;
    let answer = client.json(method, &path).await?;
    if json {
        println!("{answer}");
    }
    Ok(answer)
}

/// Run `rsp pe drain`.
pub async fn drain(args: &DrainArgs, json: bool) -> anyhow::Result<()> {
    let t = &args.target;
    let mut path = format!("{}/drain", pe_path(t));
    match &args.timeout {
        None => {}
        Some(DrainTimeout::Never) => path.push_str("?timeout=none"),
        Some(DrainTimeout::After(d)) => {
            path.push_str(&format!("?timeout={}", percent_encode(d.as_bytes())))
        }
    }
    let answer = act(t, Method::POST, path, json).await?;
    if !json {
        let until = match answer["drain_ends_in_seconds"].as_f64() {
            Some(s) => format!(
                "the registrar removes it in {} unless it deregisters first or is undrained",
                crate::duration::show_seconds(s)
            ),
            None => "it stays registered until it deregisters or is undrained".to_string(),
        };
        println!(
            "{} drained: no longer handed out to pool users; {until}",
            describe(t)
        );
    }
    Ok(())
}

/// Run `rsp pe undrain`.
pub async fn undrain(args: &TargetArgs, json: bool) -> anyhow::Result<()> {
    let answer = act(
        args,
        Method::POST,
        format!("{}/undrain", pe_path(args)),
        json,
    )
    .await?;
    if !json {
        if answer["was_drained"].as_bool() == Some(false) {
            println!("{} was not drained; nothing changed", describe(args));
        } else {
            println!("{} undrained: handed out again", describe(args));
        }
    }
    Ok(())
}

/// Run `rsp pe remove`.
pub async fn remove(args: &TargetArgs, json: bool) -> anyhow::Result<()> {
    act(args, Method::DELETE, pe_path(args), json).await?;
    if !json {
        println!(
            "{} removed from the handlespace. If it still runs, it registers again at its next \
             re-registration: stop it, or revoke its key, to keep it out",
            describe(args)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("none"), Ok(DrainTimeout::Never));
        assert_eq!(parse_timeout("90s"), Ok(DrainTimeout::After("90s".into())));
        assert!(parse_timeout("soon").is_err());
    }
}
