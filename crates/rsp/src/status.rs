//! `rsp status`: one screen about a running registrar, read from its
//! admin API (`GET /v1/status`), or that document as JSON with `--json`.

use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use crate::admin_client::{AdminArgs, AdminClient};
use crate::display::plural;

/// Flags of `rsp status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let status = client.get_json("/v1/status").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", summary(&status));
    }
    Ok(())
}

/// A number field (0 when missing: the summary shows what there is).
fn n(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

fn text<'a>(v: &'a Value, key: &str) -> std::borrow::Cow<'a, str> {
    crate::display::printable(v[key].as_str().unwrap_or("?"))
}

/// The human-readable summary.
pub fn summary(s: &Value) -> String {
    let mut o = String::new();
    let listen: Vec<&str> = s["listen"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let uptime = humantime::format_duration(Duration::from_secs(n(s, &["uptime_seconds"])));
    let _ = writeln!(
        o,
        "registrar {}  version {}, {} mode",
        text(s, "server_id_hex"),
        text(s, "version"),
        text(s, "mode")
    );
    let _ = writeln!(o, "  up            {uptime}, ASAP on {}", listen.join(", "));
    let _ = writeln!(
        o,
        "  handlespace   {}, {}; {}",
        plural(n(s, &["pools"]), "pool", "pools"),
        plural(n(s, &["pool_elements"]), "PE", "PEs"),
        plural(
            n(s, &["connections"]),
            "ASAP connection",
            "ASAP connections"
        )
    );
    let peers = s["peers"]["peers"].as_array().cloned().unwrap_or_default();
    if !peers.is_empty() {
        let _ = writeln!(
            o,
            "  cluster       {} of {} up{}",
            n(s, &["peers", "peers_up"]),
            plural(peers.len() as u64, "peer registrar", "peer registrars"),
            if s["peers"]["serving"].as_bool() == Some(false) {
                "; NOT serving pool users yet (handle table download from a mentor)"
            } else {
                ""
            }
        );
        for p in &peers {
            let agree = match (p["checksum"].is_null(), p["checksum_agrees"].as_bool()) {
                (true, _) => "no checksum yet",
                (false, Some(true)) => "checksum agrees",
                _ => "checksum DIFFERS",
            };
            let _ = writeln!(
                o,
                "    {} {} at {} ({}), heard {} ms ago, {}, {}{}",
                text(p, "server_id_hex"),
                text(p, "state"),
                text(p, "address"),
                text(p, "identity"),
                n(p, &["last_heard_ms_ago"]),
                plural(n(p, &["pool_elements"]), "PE", "PEs"),
                agree,
                if p["auditing"].as_bool() == Some(true) {
                    ", auditing"
                } else {
                    ""
                }
            );
        }
    }
    let c = |k: &str| n(s, &["core", k]);
    let _ = writeln!(
        o,
        "  registrations {} new, {} renewed, {} deregistered; {} resolutions",
        c("registrations"),
        c("reregistrations"),
        c("deregistrations"),
        c("resolutions")
    );
    let _ = writeln!(
        o,
        "  removals      {} keep-alive failures ({} keep-alives sent), {} lifetimes expired, \
         {} unreachable ({} reports)",
        c("keep_alive_failures"),
        c("keep_alives_sent"),
        c("lifetime_expiries"),
        c("unreachable_removals"),
        c("unreachable_reports")
    );
    let _ = writeln!(
        o,
        "  refused       {} security, {} rate limited, {} invalid, {} inconsistent; {} malformed",
        c("refused_security"),
        c("refused_rate_limited"),
        c("refused_invalid"),
        c("refused_inconsistent"),
        c("malformed")
    );
    let errors: Vec<String> = s["core"]["errors_sent"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "  errors sent   {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        }
    );
    let v = |k: &str| n(s, &["service", k]);
    let _ = writeln!(
        o,
        "  connections   {} open, {} accepted, {} refused over the limit; TLS handshakes {} \
         failed, {} timed out",
        v("connections_open"),
        v("connections_accepted"),
        v("connections_refused_limit"),
        v("tls_handshake_failures"),
        v("tls_handshake_timeouts")
    );
    let _ = writeln!(
        o,
        "  admin API     {} authentication failures",
        n(s, &["admin", "auth_failures"])
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_shows_the_key_figures_and_tolerates_missing_fields() {
        let s = serde_json::json!({
            "server_id_hex": "0x00000001", "version": "0.1.0", "mode": "secure",
            "listen": ["127.0.0.1:3864"], "uptime_seconds": 3723,
            "pools": 2, "pool_elements": 5, "connections": 3,
            "core": {"registrations": 5, "refused_security": 1,
                     "errors_sent": {"Rejected due to security considerations": 1}},
            "service": {"connections_open": 3},
            "admin": {"auth_failures": 0}
        });
        let text = summary(&s);
        assert!(text.contains("registrar 0x00000001"), "{text}");
        assert!(text.contains("secure mode"), "{text}");
        assert!(text.contains("up            1h 2m 3s"), "{text}");
        assert!(
            text.contains("2 pools, 5 PEs; 3 ASAP connections"),
            "{text}"
        );
        assert!(text.contains("1 security"), "{text}");
        assert!(
            text.contains("Rejected due to security considerations 1"),
            "{text}"
        );
        let one = summary(&serde_json::json!({"pools": 1, "pool_elements": 1, "connections": 1}));
        assert!(one.contains("1 pool, 1 PE; 1 ASAP connection\n"), "{one}");
        let empty = summary(&serde_json::json!({}));
        assert!(empty.contains("errors sent   none"), "{empty}");
    }
}
