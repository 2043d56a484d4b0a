//! `rsp resolve HANDLE`: ask a registrar for the PEs of a pool and print
//! them; with `--echo TEXT`, also act as a pool user: pick a PE by the
//! pool's policy, send TEXT to its echo service and fail over to the next
//! PE (reporting the failed one, RFC 5352 3.5) until one answers.

use std::time::Duration;

use anyhow::Context;
use rserpool::PoolUser;
use rserpool_wire::{PoolElement, PoolHandle};
use serde_json::json;

use crate::client_args::ClientArgs;
use crate::duration::parse_duration;
use crate::echo::user_address;

/// Flags of `rsp resolve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pool handle to resolve.
    pub handle: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// PEs to ask for (the 0x803f option; the registrar caps it at 128).
    #[arg(long)]
    pub items: Option<u32>,
    /// Send TEXT to a PE's echo service (chosen by the pool policy, with
    /// failover) and print the answer.
    #[arg(long, value_name = "TEXT")]
    pub echo: Option<String>,
    /// Time each echo attempt may take.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub echo_timeout: Duration,
}

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    let handle = PoolHandle::new(args.handle.as_bytes().to_vec())
        .context("the pool handle must not be empty")?;
    let mut config = args.client.config()?;
    config.pool_user.items = args.items;
    let pu = PoolUser::new(config)?;
    let pes = pu.resolve(&handle).await?;
    let mut out = json!({
        "pool_handle": args.handle,
        "pool_elements": pes.iter().map(pe_json).collect::<Vec<_>>(),
    });
    if !json {
        println!(
            "pool {:?}: {}",
            args.handle,
            crate::display::plural(pes.len() as u64, "PE", "PEs")
        );
        println!(
            "  {:<10}  {:<22}  {:<8}  {:<10}",
            "PE", "address", "policy", "home"
        );
        for p in &pes {
            println!(
                "  {:#010x}  {:<22}  {:<8}  {:#010x}",
                p.identifier,
                user_address(p).map_or("(not TCP)".to_string(), |a| a.to_string()),
                p.policy.name(),
                p.home_registrar
            );
        }
    }
    if let Some(text) = &args.echo {
        let crate::echo::Answered {
            pe,
            reply,
            failed,
            took,
        } = crate::echo::request_with_failover(&pu, &handle, text.as_bytes(), args.echo_timeout)
            .await?;
        out["echo"] = json!({
            "identifier": pe.identifier,
            "address": user_address(&pe).map(|a| a.to_string()),
            "reply": String::from_utf8_lossy(&reply),
            "failed": failed.iter().map(|(id, e)| json!({"identifier": id, "error": e})).collect::<Vec<_>>(),
            "milliseconds": crate::duration::json_millis(took),
        });
        if !json {
            for (id, e) in &failed {
                println!("PE {id:#010x} failed ({e}); reported it and tried the next");
            }
            println!(
                "echo from PE {:#010x} in {:.1} ms: {}",
                pe.identifier,
                took.as_secs_f64() * 1000.0,
                String::from_utf8_lossy(&reply)
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn pe_json(p: &PoolElement) -> serde_json::Value {
    json!({
        "identifier": p.identifier,
        "address": user_address(p).map(|a| a.to_string()),
        "policy": p.policy,
        "home_registrar": p.home_registrar,
        "registration_life_ms": p.registration_life,
    })
}
