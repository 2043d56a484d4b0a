//! What the demo shows: short lines a newcomer can follow, or one JSON
//! object per line (`--json`, each with an "event" field).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rserpool_registrar::Removal;
use serde_json::json;

use crate::duration::json_millis as ms;

use rserpool_wire::{PeId, ServerId};

use super::Tally;
use crate::echo::Answered;

/// The demo's output.
pub struct Report {
    json: bool,
}

fn secs(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e3).round() / 1e3
}

fn name(names: &BTreeMap<PeId, String>, id: PeId) -> String {
    names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("PE {id:#010x}"))
}

impl Report {
    pub fn new(json: bool) -> Report {
        if !json {
            println!("rsp demo: a secure RSerPool pool with failover, on this machine\n");
        }
        Report { json }
    }

    fn emit(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    pub fn credentials(&self, dir: &Path, pes: &[String], pu: &str) {
        self.emit(
            json!({"event": "credentials", "directory": dir.display().to_string(),
                   "identities": pes.iter().map(String::as_str).chain([pu]).collect::<Vec<_>>()}),
            || {
                format!(
                    "  keys       {}: a pre-shared key each for {} and {pu} (TLS 1.3, files mode 0600)",
                    dir.display(),
                    pes.join(", ")
                )
            },
        );
    }

    pub fn registrar(&self, server_id: ServerId, address: SocketAddr, keep_alive: Duration) {
        self.emit(
            json!({"event": "registrar_started", "server_id": server_id, "address": address.to_string(),
                   "keep_alive_ms": ms(keep_alive)}),
            || {
                format!(
                    "  registrar  {server_id:#010x} on {address}, TLS with PSKs, keep-alive every {} (timeout the same)",
                    humantime::format_duration(keep_alive)
                )
            },
        );
    }

    pub fn pe_started(&self, pe: &str, identifier: PeId, address: SocketAddr, pid: Option<u32>) {
        self.emit(
            json!({"event": "pe_registered", "name": pe, "identifier": identifier,
                   "address": address.to_string(), "pid": pid}),
            || {
                format!(
                    "  {pe:<9}  PE {identifier:#010x}, echo on {address}, registered (process {})",
                    pid.map_or("?".into(), |p| p.to_string())
                )
            },
        );
    }

    pub fn pool_user(&self, pool: &str, interval: Duration) {
        self.emit(
            json!({"event": "pool_user_started", "pool_handle": pool, "interval_ms": ms(interval)}),
            || {
                format!(
                    "  pool user  an echo request to pool {pool:?} every {}, PE picked round robin\n\n     time  requests  lost  answered by",
                    humantime::format_duration(interval)
                )
            },
        );
    }

    pub fn progress(&self, start: Instant, tick: &Tally, names: &BTreeMap<PeId, String>) {
        let by: BTreeMap<String, u64> = names
            .iter()
            .map(|(id, n)| (n.clone(), tick.answers.get(id).copied().unwrap_or(0)))
            .collect();
        self.emit(
            json!({"event": "progress", "seconds": secs(start), "requests": tick.sent,
                   "lost": tick.lost, "answered_by": by}),
            || {
                let by: Vec<String> = by.iter().map(|(n, c)| format!("{n} {c:>3}")).collect();
                format!(
                    "  {:>6.1}s  {:>8}  {:>4}  {}",
                    secs(start),
                    tick.sent,
                    tick.lost,
                    by.join("  ")
                )
            },
        );
    }

    pub fn killing(&self, start: Instant, pe: &str, identifier: PeId, pid: Option<u32>) {
        self.emit(
            json!({"event": "pe_killed", "seconds": secs(start), "name": pe,
                   "identifier": identifier, "pid": pid, "signal": "SIGKILL"}),
            || {
                format!(
                    ">>{:>6.1}s  killing {pe} (process {}) with SIGKILL: it cannot deregister",
                    secs(start),
                    pid.map_or("?".into(), |p| p.to_string())
                )
            },
        );
    }

    pub fn failover(&self, start: Instant, n: u64, a: &Answered, names: &BTreeMap<PeId, String>) {
        let failed: Vec<String> = a.failed.iter().map(|(id, _)| name(names, *id)).collect();
        let to = name(names, a.pe.identifier);
        let why = a.failed.first().map(|(_, e)| e.as_str()).unwrap_or("");
        self.emit(
            json!({"event": "failover", "seconds": secs(start), "request": n, "failed": failed,
                   "error": why, "answered_by": to, "milliseconds": ms(a.took)}),
            || {
                format!(
                    "!!{:>6.1}s  request {n}: {} failed ({why}); the pool user reported it and {to} answered: failover took {:.1} ms",
                    secs(start),
                    failed.join(", "),
                    ms(a.took)
                )
            },
        );
    }

    pub fn lost(&self, start: Instant, n: u64, e: &anyhow::Error) {
        self.emit(
            json!({"event": "lost", "seconds": secs(start), "request": n, "error": format!("{e:#}")}),
            || format!("!!{:>6.1}s  request {n} lost: {e:#}", secs(start)),
        );
    }

    pub fn removed(
        &self,
        start: Instant,
        names: &BTreeMap<PeId, String>,
        identifier: PeId,
        reason: Removal,
        since_kill: Duration,
    ) {
        let pe = name(names, identifier);
        self.emit(
            json!({"event": "pe_removed", "seconds": secs(start), "name": pe, "identifier": identifier,
                   "reason": reason, "after_kill_ms": ms(since_kill)}),
            || {
                format!(
                    "--{:>6.1}s  the registrar removed {pe} ({}), {:.1} s after the kill",
                    secs(start),
                    super::removal_text(reason),
                    since_kill.as_secs_f64()
                )
            },
        );
    }

    pub fn interrupted(&self) {
        self.emit(json!({"event": "interrupted"}), || {
            "interrupted: stopping".into()
        });
    }

    pub fn summary(&self, t: &Tally, names: &BTreeMap<PeId, String>, removed: bool) {
        let by: BTreeMap<String, u64> = names
            .iter()
            .map(|(id, n)| (n.clone(), t.answers.get(id).copied().unwrap_or(0)))
            .collect();
        let answered: u64 = t.answers.values().sum();
        self.emit(
            json!({"event": "summary", "requests": t.sent, "answered": answered, "lost": t.lost,
                   "failovers": t.failovers, "longest_failover_ms": ms(t.longest_failover),
                   "answered_by": by, "dead_pe_removed": removed}),
            || {
                let by: Vec<String> = by.iter().map(|(n, c)| format!("{n} {c}")).collect();
                format!(
                    "\nsummary: {} requests, {answered} answered, {} lost; {} failover(s), the longest took {:.1} ms\n         answered by {}",
                    t.sent,
                    t.lost,
                    t.failovers,
                    ms(t.longest_failover),
                    by.join(", ")
                )
            },
        );
    }

    pub fn stopping(&self, pes: &[String]) {
        self.emit(json!({"event": "stopping", "pes": pes}), || {
            format!(
                "\nstopping: SIGTERM to {}; they deregister before they exit",
                pes.join(", ")
            )
        });
    }

    pub fn pe_failed(&self, pe: &str, why: &str, stderr: &str) {
        self.emit(
            json!({"event": "pe_failed", "name": pe, "error": why, "stderr": stderr}),
            || format!("!! {pe}: {why}\n{stderr}"),
        );
    }

    pub fn pe_stopped(&self, names: &BTreeMap<PeId, String>, identifier: PeId, reason: Removal) {
        let pe = name(names, identifier);
        self.emit(
            json!({"event": "pe_stopped", "name": pe, "identifier": identifier, "reason": reason}),
            || format!("   {pe}: {}", super::removal_text(reason)),
        );
    }

    pub fn stopped(&self, deregistered: usize, dir: &Path) {
        self.emit(
            json!({"event": "stopped", "deregistered": deregistered, "keys_removed": dir.display().to_string()}),
            || format!("   registrar stopped; keys in {} removed. Done.", dir.display()),
        );
    }
}
