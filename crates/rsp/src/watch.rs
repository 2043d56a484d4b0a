//! `rsp watch`: follow a registrar's events (`GET /v1/events`, Server-Sent
//! Events) and print one line per change: time, a marker (`+` registered,
//! `~` re-registered with a new address or policy value, `-` removed, `>`
//! drained, `<` undrained, `!` refused, malformed, revoked or missed, `?`
//! reported unreachable, `=` a reported PE answered its check), pool, PE
//! identifier, its address, identity, reason. Re-registrations that change
//! nothing (every PE refreshes its registration about every 15 s) are
//! shown only with `--verbose`. `--json` prints each event's JSON object
//! on a line. Ends cleanly on SIGINT/SIGTERM, with an error when the
//! stream ends.

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail};
use serde_json::Value;

use crate::admin_client::{AdminArgs, AdminClient};

/// Flags of `rsp watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Also print the periodic re-registrations that change nothing.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Largest event accepted (bytes); the registrar's are far smaller.
const MAX_EVENT: usize = 1 << 20;

/// The registrar sends a keep-alive comment every 15 s (axum's default);
/// a stream silent for three of them is dead (a half-open connection, a
/// registrar that hangs).
const IDLE_LIMIT: Duration = Duration::from_secs(45);

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    // Signal handlers first: SIGTERM while connecting ends cleanly too.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let client = AdminClient::new(&args.admin)?;
    let mut resp = tokio::select! {
        _ = &mut stop => return Ok(()),
        r = client.events() => r?,
    };
    tracing::info!(admin = client.base(), "watching the registrar's events");
    let mut parser = SseParser::default();
    loop {
        let chunk = tokio::select! {
            _ = &mut stop => return Ok(()),
            c = tokio::time::timeout(IDLE_LIMIT, resp.chunk()) => match c {
                Ok(c) => c,
                Err(_) => bail!(
                    "the event stream from {} was silent for {}s (not even a keep-alive): the \
                     connection or the registrar is stuck",
                    client.base(),
                    IDLE_LIMIT.as_secs()
                ),
            },
        };
        match chunk {
            Ok(Some(bytes)) => {
                for (name, data) in parser.push(&bytes)? {
                    let v: Value = serde_json::from_str(&data).map_err(|e| {
                        anyhow!(
                            "the admin API at {} sent a {name:?} event that is not JSON ({e})",
                            client.base()
                        )
                    })?;
                    if !args.verbose && is_refresh(&name, &v) {
                        continue;
                    }
                    if json {
                        println!("{v}");
                    } else {
                        // Handles, identities and reasons come from the
                        // network: no escape sequence reaches the terminal.
                        let text = line(&name, &v, SystemTime::now());
                        println!("{}", crate::display::printable(&text));
                    }
                }
            }
            Ok(None) => bail!(
                "the event stream from {} ended: the registrar went away",
                client.base()
            ),
            Err(e) => bail!("the event stream from {} broke: {e}", client.base()),
        }
    }
}

/// Cuts a Server-Sent Events byte stream into (event name, data) pairs
/// (WHATWG HTML "server-sent events": blocks end with a blank line, `:`
/// lines are comments, data lines are joined with newlines).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no block end (so that a long event
    /// arriving in many chunks is scanned once, not once per chunk).
    scanned: usize,
}

impl SseParser {
    /// Add bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
        self.buf
            .extend(bytes.iter().copied().filter(|&b| b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.buf[self.scanned..]
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| i + self.scanned)
        {
            self.scanned = 0;
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let mut name = String::from("message");
            let mut data: Vec<&str> = Vec::new();
            let mut any = false;
            for l in block.lines() {
                let (field, value) = match l.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (l, ""),
                };
                match field {
                    "" => {} // comment (keep-alive)
                    "event" => {
                        name = value.to_string();
                        any = true;
                    }
                    "data" => {
                        data.push(value);
                        any = true;
                    }
                    _ => {}
                }
            }
            if any {
                out.push((name, data.join("\n")));
            }
        }
        // The last byte may be the first of a block end.
        self.scanned = self.buf.len().saturating_sub(1);
        if self.buf.len() > MAX_EVENT {
            bail!("an event of more than {MAX_EVENT} bytes: not a registrar's event stream");
        }
        Ok(out)
    }
}

fn pool_of(v: &Value) -> String {
    match &v["pool_handle"] {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("hex").and_then(Value::as_str) {
            Some(h) => format!("0x{h}"),
            None => "?".into(),
        },
        _ => "?".into(),
    }
}

fn pe_of(v: &Value) -> String {
    match v["identifier"].as_u64() {
        Some(id) => format!("{id:#010x}"),
        None => "?".into(),
    }
}

/// A list of strings, comma-separated.
fn list(v: &Value, key: &str) -> String {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A re-registration that changed nothing (an older registrar that does
/// not say whether it changed anything: every re-registration).
pub fn is_refresh(name: &str, v: &Value) -> bool {
    name == "registered"
        && v["new"].as_bool() == Some(false)
        && v["changed"].as_bool() != Some(true)
}

/// Where pool users reach the PE: `ADDRESS:PORT` (several addresses
/// comma-separated), or nothing when the event does not say.
fn reach(v: &Value) -> String {
    let addresses: Vec<String> = v["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|a| {
                    if a.contains(':') {
                        format!("[{a}]")
                    } else {
                        a.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    match (addresses.is_empty(), v["port"].as_u64()) {
        (false, Some(port)) => format!(" {}:{port}", addresses.join(",")),
        (false, None) => format!(" {}", addresses.join(",")),
        (true, _) => String::new(),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("?")
}

/// A server identifier field as hex.
fn hex_id(v: &Value, key: &str) -> String {
    v[key]
        .as_u64()
        .map_or_else(|| "?".into(), |id| format!("{id:#010x}"))
}

/// One readable line for an event.
pub fn line(name: &str, v: &Value, at: SystemTime) -> String {
    let t = humantime::format_rfc3339_seconds(at);
    match name {
        "registered" => {
            let (marker, what) = if v["new"].as_bool() != Some(false) {
                ("+", "registered")
            } else if v["changed"].as_bool() == Some(true) {
                ("~", "re-registered with changes")
            } else {
                (" ", "refreshed its registration")
            };
            let policy = v["policy"]
                .as_str()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            format!(
                "{t} {marker} {} {}{} {} {what}{policy}",
                pool_of(v),
                pe_of(v),
                reach(v),
                s(v, "identity"),
            )
        }
        "removed" => format!(
            "{t} - {} {} {}",
            pool_of(v),
            pe_of(v),
            match s(v, "reason") {
                "operator" => "removed by an operator".to_string(),
                "drain_timeout" => "removed at the end of its drain".to_string(),
                other => other.replace('_', " "),
            }
        ),
        "drained" => format!(
            "{t} > {} {} drained by {}: no longer handed out{}",
            pool_of(v),
            pe_of(v),
            s(v, "by"),
            match v["timeout_seconds"].as_f64() {
                Some(secs) => format!(
                    ", removed in {} unless it deregisters first",
                    crate::duration::show_seconds(secs)
                ),
                None => String::new(),
            }
        ),
        "undrained" => format!(
            "{t} < {} {} undrained by {}: handed out again",
            pool_of(v),
            pe_of(v),
            s(v, "by")
        ),
        "refused" => format!(
            "{t} ! {} {} refused ({}): {}: {} [connection {}]",
            s(v, "identity"),
            s(v, "request"),
            s(v, "refusal").replace('_', " "),
            s(v, "cause"),
            s(v, "detail"),
            v["conn"]
        ),
        "peer_up" => format!(
            "{t} + peer registrar {} up at {} ({})",
            hex_id(v, "server_id"),
            s(v, "address"),
            s(v, "identity")
        ),
        "peer_down" => format!(
            "{t} - peer registrar {} down: {}",
            hex_id(v, "server_id"),
            s(v, "reason")
        ),
        "taken_over" => format!(
            "{t} * registrar {} taken over by {}: {} re-homed there",
            hex_id(v, "target"),
            hex_id(v, "winner"),
            crate::display::plural(v["pes"].as_u64().unwrap_or(0), "PE", "PEs")
        ),
        "table_synced" => format!(
            "{t} = handle table {} peer {}: {} in {}{}",
            if v["audit"].as_bool() == Some(true) { "audit of" } else { "downloaded from" },
            hex_id(v, "from"),
            crate::display::plural(v["pes"].as_u64().unwrap_or(0), "PE", "PEs"),
            crate::display::plural(v["pages"].as_u64().unwrap_or(0), "page", "pages"),
            match v["removed"].as_u64() {
                Some(r) if r > 0 => format!(", {r} stale removed"),
                _ => String::new(),
            }
        ),
        "malformed" => format!(
            "{t} ! {} malformed message: {} [connection {}]",
            s(v, "identity"),
            s(v, "error"),
            v["conn"]
        ),
        "reported_unreachable" => format!(
            "{t} ? {} {} reported unreachable by {}: {}",
            pool_of(v),
            pe_of(v),
            list(v, "reporters"),
            match s(v, "check") {
                "probing" => "checking it with a keep-alive",
                "outstanding" => "a keep-alive is out already",
                "unconnected" => "no connection to check it on (taken over, not re-homed yet): removed",
                _ => "keep-alive limit reached, the next regular keep-alive checks it",
            }
        ),
        "reports_refuted" => format!(
            "{t} = {} {} answered the check: stays (reported by {})",
            pool_of(v),
            pe_of(v),
            list(v, "reporters")
        ),
        "revoked" => format!(
            "{t} ! credentials reloaded: revoked [{}], re-authenticate [{}]: {} connections closed, {} PEs removed",
            list(v, "identities"),
            list(v, "reauthenticate"),
            v["connections_closed"],
            v["pes_removed"]
        ),
        "lagged" => format!(
            "{t} ! missed {} events (this watcher fell behind)",
            v["missed"]
        ),
        other => format!("{t} ? {other} {v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_split_chunks_comments_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: regis").unwrap().is_empty());
        let got = p
            .push(b"tered\r\ndata: {\"a\":1}\r\n\r\nevent:lagged\ndata:{}\n\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("registered".to_string(), "{\"a\":1}".to_string()),
                ("lagged".to_string(), "{}".to_string())
            ]
        );
        // A block end split across chunks.
        assert!(p.push(b"event: a\ndata: 1\n").unwrap().is_empty());
        assert_eq!(
            p.push(b"\n").unwrap(),
            vec![("a".to_string(), "1".to_string())]
        );
        assert!(p.push(&vec![b'x'; MAX_EVENT + 1]).is_err());
    }

    #[test]
    fn lines_carry_marker_pool_pe_identity_and_reason() {
        let at = SystemTime::UNIX_EPOCH;
        let reg = serde_json::json!({"event":"registered","pool_handle":"echo",
            "identifier":168496141u32,"identity":"psk:pe-a","new":true,"changed":true,
            "addresses":["127.0.0.1"],"port":8080,"policy":"RR"});
        assert_eq!(
            line("registered", &reg, at),
            "1970-01-01T00:00:00Z + echo 0x0a0b0c0d 127.0.0.1:8080 psk:pe-a registered (RR)"
        );
        assert!(!is_refresh("registered", &reg));
        let mut changed = reg.clone();
        changed["new"] = false.into();
        changed["addresses"] = serde_json::json!(["::1", "10.0.0.1"]);
        assert_eq!(
            line("registered", &changed, at),
            "1970-01-01T00:00:00Z ~ echo 0x0a0b0c0d [::1],10.0.0.1:8080 psk:pe-a \
             re-registered with changes (RR)"
        );
        assert!(!is_refresh("registered", &changed));
        let mut refresh = changed.clone();
        refresh["changed"] = false.into();
        assert!(is_refresh("registered", &refresh));
        assert!(line("registered", &refresh, at).contains("refreshed its registration"));
        let old = serde_json::json!({"event":"registered","pool_handle":"echo",
            "identifier":1,"identity":"psk:pe-a","new":false});
        assert!(
            is_refresh("registered", &old),
            "an older registrar's re-registration"
        );
        let drained = serde_json::json!({"event":"drained","pool_handle":"echo",
            "identifier":1,"by":"admin API from 127.0.0.1","timeout_seconds":600.0});
        assert_eq!(
            line("drained", &drained, at),
            "1970-01-01T00:00:00Z > echo 0x00000001 drained by admin API from 127.0.0.1: \
             no longer handed out, removed in 10m unless it deregisters first"
        );
        let undrained = serde_json::json!({"event":"undrained","pool_handle":"echo",
            "identifier":1,"by":"admin API from 127.0.0.1"});
        assert!(line("undrained", &undrained, at).contains("< echo 0x00000001 undrained"));
        let op = serde_json::json!({"event":"removed","pool_handle":"echo",
            "identifier":1,"reason":"operator"});
        assert!(line("removed", &op, at).ends_with("removed by an operator"));
        let rem = serde_json::json!({"event":"removed","pool_handle":{"hex":"00ff"},
            "identifier":1,"reason":"keep_alive_timeout"});
        assert_eq!(
            line("removed", &rem, at),
            "1970-01-01T00:00:00Z - 0x00ff 0x00000001 keep alive timeout"
        );
        let refused = serde_json::json!({"event":"refused","conn":3,"identity":"psk:pe-b",
            "request":"ASAP_REGISTRATION","refusal":"security",
            "cause":"Rejected due to security considerations","detail":"not yours"});
        assert_eq!(
            line("refused", &refused, at),
            "1970-01-01T00:00:00Z ! psk:pe-b ASAP_REGISTRATION refused (security): \
             Rejected due to security considerations: not yours [connection 3]"
        );
        assert!(line("lagged", &serde_json::json!({"missed": 7}), at).contains("missed 7"));
        let taken = serde_json::json!({"event":"taken_over","target":256,"winner":258,"pes":3});
        assert_eq!(
            line("taken_over", &taken, at),
            "1970-01-01T00:00:00Z * registrar 0x00000100 taken over by 0x00000102: 3 PEs re-homed there"
        );
        let down = serde_json::json!({"event":"peer_down","server_id":256,"reason":"no answer"});
        assert!(line("peer_down", &down, at).ends_with("peer registrar 0x00000100 down: no answer"));
    }
}
