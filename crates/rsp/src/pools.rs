//! `rsp pools` (each pool: handle, policy, PE count) and `rsp pool POOL`
//! (its PEs: identifier, address, port, policy value, owner identity,
//! registered since, drained or not), read from a registrar's admin API
//! (`GET /v1/handlespace`), as tables or, with `--json`, as JSON.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::admin_client::{percent_encode, AdminArgs, AdminClient};
use crate::display::{plural, printable};
use crate::duration::show_seconds;

/// Most PEs (`rsp pool`) or pools (`rsp pools`) one document lists (the
/// API's maximum `limit`).
const MAX_LISTED: u32 = 100_000;

/// Flags of `rsp pools`.
#[derive(Debug, clap::Args)]
pub struct PoolsArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Flags of `rsp pool`.
#[derive(Debug, clap::Args)]
pub struct PoolArgs {
    /// Pool handle.
    pub handle: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// A field for a table: text made printable, `-` for nothing.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => printable(s).into_owned(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Run `rsp pools`.
pub async fn pools(args: &PoolsArgs, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let doc = client
        .get_json(&format!(
            "/v1/handlespace?elements=false&limit={MAX_LISTED}"
        ))
        .await?;
    let pools: Vec<Value> = doc["pools"]
        .as_array()
        .map(|a| a.iter().map(pool_summary).collect())
        .unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "pools_total": doc["pools_total"],
                "pool_elements_total": doc["pool_elements_total"],
                "truncated": doc["truncated"],
                "pools": pools,
            }))?
        );
    } else {
        print!("{}", pools_table(&doc, &pools));
    }
    Ok(())
}

/// One pool without its PEs.
fn pool_summary(p: &Value) -> Value {
    json!({
        "handle": p["handle"],
        "handle_hex": p["handle_hex"],
        "policy": p["policy"],
        "pool_elements": p["pool_elements_total"],
        "pool_elements_drained": p["pool_elements_drained"],
    })
}

fn pools_table(doc: &Value, pools: &[Value]) -> String {
    let mut o = String::new();
    if pools.is_empty() {
        o.push_str("no pools\n");
        return o;
    }
    let width = pools
        .iter()
        .map(|p| text(&p["handle"]).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        o,
        "{:<width$}  {:<6}  {:>5}  {:>7}",
        "POOL", "POLICY", "PES", "DRAINED"
    );
    for p in pools {
        let _ = writeln!(
            o,
            "{:<width$}  {:<6}  {:>5}  {:>7}",
            text(&p["handle"]),
            text(&p["policy"]),
            p["pool_elements"].as_u64().unwrap_or(0),
            p["pool_elements_drained"].as_u64().unwrap_or(0),
        );
    }
    let _ = writeln!(
        o,
        "{}, {}",
        plural(doc["pools_total"].as_u64().unwrap_or(0), "pool", "pools"),
        plural(
            doc["pool_elements_total"].as_u64().unwrap_or(0),
            "PE",
            "PEs"
        )
    );
    if doc["truncated"].as_bool() == Some(true) {
        let _ = writeln!(o, "(more than {MAX_LISTED} pools: the list is incomplete)");
    }
    o
}

/// Run `rsp pool`.
pub async fn pool(args: &PoolArgs, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let path = format!(
        "/v1/handlespace?pool={}&limit={MAX_LISTED}",
        percent_encode(args.handle.as_bytes())
    );
    let doc = client.get_json(&path).await?;
    let pool = doc["pools"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the admin API at {} has no pool {:?}",
                client.base(),
                args.handle
            )
        })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pool)?);
    } else {
        print!("{}", pool_table(&pool));
    }
    Ok(())
}

/// The policy and its values: "RR", "WRR weight 3", "LU load 25%".
fn policy_text(p: &Value) -> String {
    let mut s = text(&p["name"]);
    let percent = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{:.0}%", x / f64::from(u32::MAX) * 100.0))
    };
    for (key, label, as_percent) in [
        ("weight", "weight", false),
        ("priority", "priority", false),
        ("load", "load", true),
        ("load_deg", "degradation", true),
    ] {
        let v = &p[key];
        if v.is_null() {
            continue;
        }
        let shown = if as_percent {
            percent(v).unwrap_or_else(|| text(v))
        } else {
            text(v)
        };
        let _ = write!(s, " {label} {shown}");
    }
    s
}

fn pool_table(pool: &Value) -> String {
    let mut o = String::new();
    let total = pool["pool_elements_total"].as_u64().unwrap_or(0);
    let drained = pool["pool_elements_drained"].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "pool {:?}: policy {}, {}{}",
        text(&pool["handle"]),
        text(&pool["policy"]),
        plural(total, "PE", "PEs"),
        if drained > 0 {
            format!(" ({drained} drained)")
        } else {
            String::new()
        }
    );
    let pes = pool["pool_elements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if pes.is_empty() {
        return o;
    }
    let rows: Vec<[String; 7]> = pes.iter().map(pe_row).collect();
    let header = [
        "PE",
        "ADDRESS",
        "PORT",
        "POLICY",
        "OWNER",
        "REGISTERED",
        "STATE",
    ]
    .map(str::to_string);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i == 2 {
                let _ = write!(line, "{c:>w$}  ");
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        let _ = writeln!(o, "{}", line.trim_end());
    }
    if (pes.len() as u64) < total {
        let _ = writeln!(o, "({} of {total} PEs shown)", pes.len());
    }
    o
}

fn pe_row(pe: &Value) -> [String; 7] {
    let ut = &pe["user_transport"];
    let addresses = ut["addresses"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_string());
    let registered = match pe["registered_seconds"].as_f64() {
        Some(s) => format!("{} ago", show_seconds(s)),
        None => "-".to_string(),
    };
    let state = if pe["drained"].as_bool() == Some(true) {
        match pe["drain_ends_in_seconds"].as_f64() {
            Some(s) => format!("drained (removed in {})", show_seconds(s)),
            None => "drained".to_string(),
        }
    } else {
        "active".to_string()
    };
    [
        text(&pe["identifier_hex"]),
        addresses,
        text(&ut["port"]),
        policy_text(&pe["policy"]),
        text(&pe["identity"]),
        registered,
        state,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({"pools_total":1,"pool_elements_total":2,"truncated":false,
          "pools":[{"handle":"echo","handle_hex":"6563686f","policy":"WRR","pool_elements_total":2,
            "pool_elements_drained":1,
            "pool_elements":[
              {"identifier_hex":"0x0a0b0c0d","identity":"psk:pe-a",
               "user_transport":{"port":7,"addresses":["127.0.0.1"]},
               "policy":{"name":"WRR","weight":3},"registered_seconds":125.2,
               "drained":false,"drain_ends_in_seconds":null},
              {"identifier_hex":"0x00000002","identity":"psk:pe-b",
               "user_transport":{"port":8080,"addresses":["10.0.0.2","10.0.0.3"]},
               "policy":{"name":"WRR","weight":1},"registered_seconds":3.0,
               "drained":true,"drain_ends_in_seconds":600.0}]}]})
    }

    #[test]
    fn pools_table_counts_with_plurals() {
        let doc = sample();
        let pools: Vec<Value> = doc["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(pool_summary)
            .collect();
        let t = pools_table(&doc, &pools);
        assert!(t.contains("POOL  POLICY"), "{t}");
        assert!(t.contains("echo  WRR         2        1"), "{t}");
        assert!(t.ends_with("1 pool, 2 PEs\n"), "{t}");
        assert_eq!(pools_table(&json!({}), &[]), "no pools\n");
        // A registrant's handle cannot drive the operator's terminal.
        let evil = vec![json!({"handle": "evil\u{1b}]0;pwned\u{7}", "policy": "RR"})];
        let t = pools_table(&json!({"pools_total": 1}), &evil);
        assert!(
            !t.contains('\u{1b}') && t.contains("evil\\u{1b}]0;pwned\\u{7}"),
            "{t:?}"
        );
    }

    #[test]
    fn pool_table_shows_every_column() {
        let t = pool_table(&sample()["pools"][0]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "pool \"echo\": policy WRR, 2 PEs (1 drained)");
        assert!(lines[1].starts_with("PE          ADDRESS"), "{t}");
        assert!(
            lines[2].contains("0x0a0b0c0d") && lines[2].contains("127.0.0.1"),
            "{t}"
        );
        assert!(
            lines[2].contains("WRR weight 3") && lines[2].contains("psk:pe-a"),
            "{t}"
        );
        assert!(
            lines[2].contains("2m 5s ago") && lines[2].ends_with("active"),
            "{t}"
        );
        assert!(
            lines[3].contains("10.0.0.2,10.0.0.3") && lines[3].contains("8080"),
            "{t}"
        );
        assert!(lines[3].ends_with("drained (removed in 10m)"), "{t}");
    }

    #[test]
    fn policy_values_for_people() {
        assert_eq!(policy_text(&json!({"name":"RR"})), "RR");
        assert_eq!(
            policy_text(&json!({"name":"LUD","load":1073741824u32,"load_deg":0})),
            "LUD load 25% degradation 0%"
        );
        assert_eq!(
            policy_text(&json!({"name":"PRI","priority":2})),
            "PRI priority 2"
        );
    }
}
