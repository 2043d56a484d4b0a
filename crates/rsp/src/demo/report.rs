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

use super::lab::RegistrarProcess;
use super::Tally;
use crate::echo::Answered;

/// The demo's output.
pub struct Report {
    json: bool,
}

/// What the summary says besides the pool user's tally.
pub enum Outcome {
    /// `rsp demo`: whether the registrar removed the killed PE.
    PeRemoved(bool),
    /// `rsp demo --cluster`.
    Rehomed {
        /// The registrar killed, if it came to that.
        registrar_killed: Option<String>,
        /// Its PEs.
        pes_of_killed: usize,
        /// Time from the kill to every PE re-homed, and the homes then.
        rehomed: Option<(Duration, BTreeMap<PeId, String>)>,
        /// PEs started.
        pes: usize,
        /// PEs missing at a survivor at the end (most of either).
        lost: usize,
        /// PEs each survivor handed out at the end.
        at_survivors: BTreeMap<String, usize>,
    },
}

/// "a", "a and b", "a, b and c"; "none" for none.
fn and_list(items: &[impl AsRef<str>]) -> String {
    match items {
        [] => "none".into(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
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
    pub fn new(json: bool, cluster: bool) -> Report {
        if !json {
            if cluster {
                println!(
                    "rsp demo --cluster: a secure RSerPool pool with three registrars and registrar failover, on this machine\n"
                );
            } else {
                println!("rsp demo: a secure RSerPool pool with failover, on this machine\n");
            }
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

    pub fn credentials(&self, dir: &Path, pes: &[String], pu: &str, registrars: &[String]) {
        self.emit(
            json!({"event": "credentials", "directory": dir.display().to_string(),
                   "identities": pes.iter().chain(registrars).map(String::as_str).chain([pu]).collect::<Vec<_>>()}),
            || {
                let clients = format!("{}, {pu}", pes.join(", "));
                let who = if registrars.is_empty() {
                    format!("{} and {pu}", pes.join(", "))
                } else {
                    format!("{clients} and the registrars {}", and_list(registrars))
                };
                format!(
                    "  keys       {}: a pre-shared key each for {who} (TLS 1.3, files mode 0600)",
                    dir.display(),
                )
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub fn registrar_process(
        &self,
        name: &str,
        server_id: ServerId,
        asap: SocketAddr,
        enrp: SocketAddr,
        pid: Option<u32>,
        peers: &[SocketAddr],
        keep_alive: Duration,
    ) {
        self.emit(
            json!({"event": "registrar_started", "name": name, "server_id": server_id,
                   "address": asap.to_string(), "enrp_address": enrp.to_string(), "pid": pid,
                   "peers": peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                   "keep_alive_ms": ms(keep_alive)}),
            || {
                let dials = if peers.is_empty() {
                    String::new()
                } else {
                    format!(", dials {}", peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                };
                format!(
                    "  {name:<9}  registrar {server_id:#010x} (process {}): ASAP on {asap}, ENRP on {enrp}{dials}; TLS with PSKs, keep-alive every {}",
                    pid.map_or("?".into(), |p| p.to_string()),
                    humantime::format_duration(keep_alive)
                )
            },
        );
    }

    pub fn cluster_formed(&self, names: &[String]) {
        self.emit(json!({"event": "cluster_formed", "registrars": names}), || {
            format!(
                "  cluster    {} are peers of each other (ENRP over mutual TLS); PEs and the pool user get all three",
                and_list(names)
            )
        });
    }

    pub fn homes(&self, names: &[String], pes: &[Vec<String>]) {
        let by: BTreeMap<&str, &Vec<String>> =
            names.iter().map(String::as_str).zip(pes.iter()).collect();
        self.emit(json!({"event": "homes", "pes_by_registrar": by}), || {
            let each: Vec<String> = by
                .iter()
                .map(|(r, p)| {
                    format!(
                        "{r}: {}",
                        if p.is_empty() {
                            "none".to_string()
                        } else {
                            p.join(", ")
                        }
                    )
                })
                .collect();
            format!(
                "  homes      {} (each registrar hands out every PE, and all agree)",
                each.join("; ")
            )
        });
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

    pub fn pe_started(
        &self,
        pe: &str,
        identifier: PeId,
        address: SocketAddr,
        pid: Option<u32>,
        registrar: Option<&str>,
    ) {
        self.emit(
            json!({"event": "pe_registered", "name": pe, "identifier": identifier,
                   "address": address.to_string(), "pid": pid, "registrar": registrar}),
            || {
                format!(
                    "  {pe:<9}  PE {identifier:#010x}, echo on {address}, registered{} (process {})",
                    registrar.map(|r| format!(" with {r}")).unwrap_or_default(),
                    pid.map_or("?".into(), |p| p.to_string())
                )
            },
        );
    }

    pub fn pool_user(&self, pool: &str, interval: Duration, registrars: &[RegistrarProcess]) {
        let names: Vec<&str> = registrars.iter().map(|r| r.name.as_str()).collect();
        let mut event =
            json!({"event": "pool_user_started", "pool_handle": pool, "interval_ms": ms(interval)});
        if !names.is_empty() {
            event["registrars"] = json!(names);
        }
        self.emit(event, || {
            let of = if names.is_empty() {
                String::new()
            } else {
                format!("; registrars {}, in this order", names.join(", "))
            };
            format!(
                "  pool user  an echo request to pool {pool:?} every {}, PE picked round robin{of}\n\n     time  requests  lost  answered by",
                humantime::format_duration(interval)
            )
        });
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

    pub fn registrar_killing(
        &self,
        start: Instant,
        name: &str,
        server_id: ServerId,
        pid: Option<u32>,
        pes: &[String],
    ) {
        self.emit(
            json!({"event": "registrar_killed", "seconds": secs(start), "name": name,
                   "server_id": server_id, "pid": pid, "signal": "SIGKILL", "home_of": pes}),
            || {
                format!(
                    ">>{:>6.1}s  killing registrar {name} (process {}) with SIGKILL, the home of {}: its connections reset, it hands nothing over",
                    secs(start),
                    pid.map_or("?".into(), |p| p.to_string()),
                    and_list(pes)
                )
            },
        );
    }

    pub fn peer_down(&self, start: Instant, reporter: &str, dead: &str, reason: &str) {
        self.emit(
            json!({"event": "peer_down", "seconds": secs(start), "registrar": reporter,
                   "peer": dead, "reason": reason}),
            || {
                format!(
                    "--{:>6.1}s  {reporter}: peer {dead} down ({reason})",
                    secs(start)
                )
            },
        );
    }

    pub fn taken_over(&self, start: Instant, reporter: &str, target: &str, winner: &str, pes: u64) {
        self.emit(
            json!({"event": "taken_over", "seconds": secs(start), "registrar": reporter,
                   "target": target, "winner": winner, "pes": pes}),
            || {
                let what = if reporter == winner {
                    format!("took {target} over")
                } else {
                    format!("{winner} took {target} over")
                };
                format!(
                    "--{:>6.1}s  {reporter}: {what}, {} homed at {winner} now",
                    secs(start),
                    crate::display::plural(pes, "PE", "PEs")
                )
            },
        );
    }

    /// A line of a PE process after the kill (`v`: the PE's own JSON).
    pub fn pe_event(
        &self,
        start: Instant,
        pe: &str,
        event: &str,
        registrar: Option<&str>,
        v: &serde_json::Value,
    ) {
        let reg = registrar.unwrap_or("?");
        let detail = ["reason", "error", "cause"]
            .iter()
            .find_map(|k| v[k].as_str())
            .unwrap_or("");
        self.emit(
            json!({"event": format!("pe_{event}"), "seconds": secs(start), "name": pe,
                   "registrar": registrar, "detail": detail}),
            || {
                let what = match event {
                    "registrar_lost" => format!("lost its registrar {reg} ({detail}); hunting"),
                    "reregistered" => format!("registered with {reg}"),
                    "rehomed" => format!("told by {reg} that {reg} is its home now"),
                    "no_registrar" => "no registrar answered; retrying".to_string(),
                    "removed_by_registrar" => format!("{reg} removed it; registering again"),
                    other => format!("{other} {detail}"),
                };
                format!("--{:>6.1}s  {pe}: {what}", secs(start))
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rehomed(
        &self,
        start: Instant,
        names: &BTreeMap<PeId, String>,
        moved: &[PeId],
        homes: &BTreeMap<PeId, String>,
        mismatched: &[(PeId, String)],
        survivors: &[&str],
        after: Duration,
    ) {
        let new_homes: BTreeMap<String, &str> = moved
            .iter()
            .map(|pe| (name(names, *pe), homes.get(pe).map_or("?", String::as_str)))
            .collect();
        self.emit(
            json!({"event": "pes_rehomed", "seconds": secs(start), "pes": new_homes,
                   "after_kill_ms": ms(after), "survivors": survivors,
                   "pes_at_each": homes.len(),
                   "registered_elsewhere": mismatched.iter().map(|(pe, r)| (name(names, *pe), r.as_str())).collect::<BTreeMap<_, _>>()}),
            || {
                let each: Vec<String> = new_homes
                    .iter()
                    .map(|(pe, h)| format!("{pe} at {h}"))
                    .collect();
                let differs: String = mismatched
                    .iter()
                    .map(|(id, with)| {
                        let pe = name(names, *id);
                        let home = homes.get(id).map_or("?", String::as_str);
                        format!(
                            "\n           ({pe} is registered with {with}, but the takeover's claim won: homed at {home} until its next re-registration)"
                        )
                    })
                    .collect();
                format!(
                    "==>{:>5.1}s  every PE re-homed {:.3} s after the kill: {}; {} both hand out all {} PEs with these homes: none lost{differs}",
                    secs(start),
                    after.as_secs_f64(),
                    and_list(&each),
                    and_list(survivors),
                    homes.len()
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

    pub fn summary(&self, t: &Tally, names: &BTreeMap<PeId, String>, outcome: Outcome) {
        let by: BTreeMap<String, u64> = names
            .iter()
            .map(|(id, n)| (n.clone(), t.answers.get(id).copied().unwrap_or(0)))
            .collect();
        let answered: u64 = t.answers.values().sum();
        let mut event = json!({"event": "summary", "requests": t.sent, "answered": answered, "lost": t.lost,
               "failovers": t.failovers, "longest_failover_ms": ms(t.longest_failover),
               "answered_by": by});
        let cluster = match &outcome {
            Outcome::PeRemoved(removed) => {
                event["dead_pe_removed"] = json!(removed);
                String::new()
            }
            Outcome::Rehomed {
                registrar_killed,
                pes_of_killed,
                rehomed,
                pes,
                lost,
                at_survivors,
            } => {
                event["registrar_killed"] = json!(registrar_killed);
                event["pes"] = json!(pes);
                event["pes_of_killed_registrar"] = json!(pes_of_killed);
                event["pes_rehomed"] = json!(rehomed.as_ref().map_or(0, |_| *pes_of_killed));
                event["rehome_ms"] = json!(rehomed.as_ref().map(|r| ms(r.0)));
                event["homes"] = json!(rehomed.as_ref().map(|r| {
                    r.1.iter()
                        .map(|(pe, h)| (name(names, *pe), h.clone()))
                        .collect::<BTreeMap<_, _>>()
                }));
                event["pes_lost"] = json!(lost);
                event["pes_at_survivors"] = json!(at_survivors);
                let at: Vec<String> = at_survivors
                    .iter()
                    .map(|(r, n)| format!("{n} at {r}"))
                    .collect();
                match (registrar_killed, rehomed) {
                    (Some(k), Some((after, _))) => format!(
                        "\n         registrar {k} killed: its {} re-homed in {:.3} s; of {pes} PEs {}: {lost} lost",
                        crate::display::plural(*pes_of_killed as u64, "PE", "PEs"),
                        after.as_secs_f64(),
                        and_list(&at)
                    ),
                    (Some(k), None) => format!(
                        "\n         registrar {k} killed: its {} NOT all re-homed; of {pes} PEs {}",
                        crate::display::plural(*pes_of_killed as u64, "PE", "PEs"),
                        and_list(&at)
                    ),
                    (None, _) => String::new(),
                }
            }
        };
        self.emit(event, || {
            let by: Vec<String> = by.iter().map(|(n, c)| format!("{n} {c}")).collect();
            format!(
                "\nsummary: {} requests, {answered} answered, {} lost; {} failover(s), the longest took {:.1} ms\n         answered by {}{cluster}",
                t.sent,
                t.lost,
                t.failovers,
                ms(t.longest_failover),
                by.join(", ")
            )
        });
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

    pub fn registrar_failed(&self, registrar: &str, why: &str, stderr: &str) {
        self.emit(
            json!({"event": "registrar_failed", "name": registrar, "error": why, "stderr": stderr}),
            || format!("!! {registrar}: {why}\n{stderr}"),
        );
    }

    pub fn pe_stopped(&self, names: &BTreeMap<PeId, String>, identifier: PeId, reason: Removal) {
        let pe = name(names, identifier);
        self.emit(
            json!({"event": "pe_stopped", "name": pe, "identifier": identifier, "reason": reason}),
            || format!("   {pe}: {}", super::removal_text(reason)),
        );
    }

    pub fn stopped(&self, deregistered: usize, registrars: usize, dir: &Path) {
        self.emit(
            json!({"event": "stopped", "deregistered": deregistered, "keys_removed": dir.display().to_string()}),
            || {
                let who = if registrars > 1 {
                    "registrars"
                } else {
                    "registrar"
                };
                format!("   {who} stopped; keys in {} removed. Done.", dir.display())
            },
        );
    }
}
