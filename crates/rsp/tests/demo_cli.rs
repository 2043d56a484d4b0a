//! `rsp demo` end to end, shortened: keys, registrar, three PE processes,
//! the pool user, the kill, the failover, the removal and a clean stop;
//! and `rsp demo --cluster`: three registrar processes, the registrar
//! home to most PEs killed, its PEs re-homed, none lost, the pool user
//! still served.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The demo must finish well within this (it runs about 1.5 s, 3 s with
/// `--cluster`).
const LIMIT: Duration = Duration::from_secs(60);

fn run_demo(extra: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args([
            "demo",
            "--phase",
            "400ms",
            "--interval",
            "5ms",
            "--keep-alive",
            "300ms",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsp starts");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out.expect("rsp runs"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("rsp demo did not finish within {LIMIT:?}");
        }
    }
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn find<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn demo_fails_over_and_stops_cleanly() {
    let out = run_demo(&["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let ev = events(&out);

    let keys = find(&ev, "credentials");
    assert_eq!(keys.len(), 1);
    let dir = keys[0]["directory"]
        .as_str()
        .expect("directory")
        .to_string();
    assert_eq!(find(&ev, "registrar_started").len(), 1);
    let pes = find(&ev, "pe_registered");
    assert_eq!(pes.len(), 3, "{ev:?}");

    let killed = find(&ev, "pe_killed");
    assert_eq!(killed.len(), 1);
    let victim = killed[0]["name"].as_str().expect("name");

    // The pool user noticed the dead PE and another PE answered instead.
    let failovers = find(&ev, "failover");
    assert!(!failovers.is_empty(), "no failover in {ev:?}");
    assert_eq!(failovers[0]["failed"][0], victim);
    assert_ne!(failovers[0]["answered_by"], victim);

    // The registrar removed it because its keep-alives went unanswered.
    let removed = find(&ev, "pe_removed");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["name"], victim);
    assert_eq!(removed[0]["reason"], "keep_alive_timeout");

    let summary = find(&ev, "summary");
    assert_eq!(summary.len(), 1);
    let s = summary[0];
    assert_eq!(s["lost"], 0, "{s}");
    assert!(s["requests"].as_u64().expect("requests") > 20, "{s}");
    assert_eq!(s["answered"], s["requests"]);
    assert_eq!(s["dead_pe_removed"], true);
    // Every PE answered some requests, and the survivors answered after
    // the kill: the progress lines after it show no answers from the dead
    // PE but answers from the others.
    for (name, count) in s["answered_by"].as_object().expect("answered_by") {
        assert!(
            count.as_u64().expect("count") > 0,
            "{name} never answered: {s}"
        );
    }

    // Clean stop: both survivors deregistered, the keys are gone.
    let stopped = find(&ev, "pe_stopped");
    assert_eq!(stopped.len(), 2, "{ev:?}");
    assert!(stopped.iter().all(|e| e["reason"] == "deregistered"));
    assert_eq!(find(&ev, "stopped")[0]["deregistered"], 2);
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} still exists after the demo"
    );
    assert!(find(&ev, "lost").is_empty());
    assert!(find(&ev, "pe_failed").is_empty(), "{ev:?}");
}

#[test]
fn demo_text_output_tells_the_story() {
    let out = run_demo(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for phrase in [
        "registrar",
        "TLS with PSKs",
        "pe-1",
        "pe-3",
        "killing pe-2",
        "with SIGKILL",
        "failover took",
        "the registrar removed pe-2",
        "0 lost",
        "deregistered",
        "Done.",
    ] {
        assert!(
            stdout.contains(phrase),
            "{phrase:?} missing from:\n{stdout}"
        );
    }
    // No log noise on stdout or stderr by default.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(" INFO "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ctrl_c_stops_the_demo_and_its_pes() {
    let (stopped, pids) = interrupt(&[]);
    assert_eq!(stopped["deregistered"], 3, "{stopped}");
    assert_eq!(pids.len(), 3);
    all_gone(&pids);
}

#[test]
fn ctrl_c_stops_the_cluster_demo_its_pes_and_its_registrars() {
    let (stopped, pids) = interrupt(&["--cluster"]);
    assert_eq!(stopped["deregistered"], 3, "{stopped}");
    assert_eq!(pids.len(), 6, "three registrars and three PEs");
    all_gone(&pids);
}

/// Start `rsp demo --phase 60s --json EXTRA`, send SIGINT once the pool
/// user started; the "stopped" event and the process ids of the demo's
/// children (registrars and PEs).
fn interrupt(extra: &[&str]) -> (serde_json::Value, Vec<u64>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(["demo", "--phase", "60s", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rsp starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let next = |name: &str, pids: &mut Vec<u64>| loop {
        let v = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("no {name:?} event"));
        if let Some(pid) = v["pid"].as_u64() {
            pids.push(pid);
        }
        if v["event"] == name {
            return v;
        }
    };
    let mut pids = Vec::new();
    next("pool_user_started", &mut pids);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok);
    next("interrupted", &mut pids);
    let stopped = next("stopped", &mut pids);
    let status = child.wait().expect("exits");
    assert!(status.success(), "{status}");
    (stopped, pids)
}

fn all_gone(pids: &[u64]) {
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child process {pid} outlived the demo"
        );
    }
}

#[test]
fn cluster_demo_re_homes_the_pes_of_the_killed_registrar_and_loses_none() {
    let out = run_demo(&["--cluster", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let ev = events(&out);

    let dir = find(&ev, "credentials")[0]["directory"]
        .as_str()
        .expect("directory")
        .to_string();
    let registrars = find(&ev, "registrar_started");
    assert_eq!(registrars.len(), 3, "{ev:?}");
    let pids: Vec<u64> = ev.iter().filter_map(|e| e["pid"].as_u64()).collect();
    assert_eq!(find(&ev, "cluster_formed").len(), 1);
    assert_eq!(find(&ev, "pe_registered").len(), 3, "{ev:?}");

    // The registrar killed is the home of most PEs.
    let homes = find(&ev, "homes");
    assert_eq!(homes.len(), 1);
    let by = homes[0]["pes_by_registrar"]
        .as_object()
        .expect("pes_by_registrar");
    let most = by
        .values()
        .map(|p| p.as_array().expect("PEs").len())
        .max()
        .expect("registrars");
    let killed = find(&ev, "registrar_killed");
    assert_eq!(killed.len(), 1, "{ev:?}");
    let victim = killed[0]["name"].as_str().expect("name");
    assert_eq!(killed[0]["signal"], "SIGKILL");
    let its_pes = killed[0]["home_of"].as_array().expect("home_of");
    assert_eq!(its_pes.len(), most, "{ev:?}");
    assert_eq!(&by[victim], &killed[0]["home_of"]);
    assert!(find(&ev, "pe_killed").is_empty());

    // Both survivors saw it down.
    let mut down: Vec<&str> = find(&ev, "peer_down")
        .iter()
        .filter(|e| e["peer"] == victim)
        .filter_map(|e| e["registrar"].as_str())
        .collect();
    down.sort_unstable();
    down.dedup();
    assert_eq!(down.len(), 2, "{ev:?}");
    assert!(!down.contains(&victim));
    // Each of its PEs lost it and registered with a survivor.
    for pe in its_pes {
        let again: Vec<_> = find(&ev, "pe_reregistered")
            .into_iter()
            .filter(|e| &e["name"] == pe)
            .collect();
        assert!(!again.is_empty(), "{pe} did not register again: {ev:?}");
        assert_ne!(again[0]["registrar"], victim);
    }

    // Every PE re-homed at a survivor, both survivors agreeing.
    let rehomed = find(&ev, "pes_rehomed");
    assert_eq!(rehomed.len(), 1, "{ev:?}");
    let r = rehomed[0];
    assert_eq!(
        r["pes"].as_object().expect("pes").len(),
        its_pes.len(),
        "{r}"
    );
    for (pe, home) in r["pes"].as_object().expect("pes") {
        assert_ne!(home, victim, "{pe} still homed at the dead registrar: {r}");
    }
    assert_eq!(r["pes_at_each"], 3, "{r}");

    let s = find(&ev, "summary");
    assert_eq!(s.len(), 1);
    let s = s[0];
    assert_eq!(s["registrar_killed"], victim, "{s}");
    assert_eq!(s["pes_rehomed"].as_u64(), Some(its_pes.len() as u64), "{s}");
    assert!(s["rehome_ms"].as_f64().is_some(), "{s}");
    assert_eq!(s["pes_lost"], 0, "{s}");
    for (reg, n) in s["pes_at_survivors"].as_object().expect("pes_at_survivors") {
        assert_ne!(reg, victim);
        assert_eq!(n, 3, "{s}");
    }
    assert_eq!(s["pes_at_survivors"].as_object().map(|o| o.len()), Some(2));
    for (pe, home) in s["homes"].as_object().expect("homes") {
        assert_ne!(home, victim, "{pe}: {s}");
    }
    // The pool user was served throughout, and after the kill too.
    assert_eq!(s["lost"], 0, "{s}");
    assert!(s["requests"].as_u64().expect("requests") > 20, "{s}");
    assert_eq!(s["answered"], s["requests"]);
    assert!(find(&ev, "lost").is_empty());
    let kill_at = killed[0]["seconds"].as_f64().expect("seconds");
    let after: u64 = find(&ev, "progress")
        .iter()
        .filter(|p| p["seconds"].as_f64().expect("seconds") > kill_at)
        .map(|p| {
            assert_eq!(p["lost"], 0, "{p}");
            p["answered_by"]
                .as_object()
                .expect("answered_by")
                .values()
                .filter_map(serde_json::Value::as_u64)
                .sum::<u64>()
        })
        .sum();
    assert!(after > 10, "answers after the kill: {after}: {ev:?}");

    // Clean stop: every PE deregistered, the keys and processes gone.
    let stopped = find(&ev, "pe_stopped");
    assert_eq!(stopped.len(), 3, "{ev:?}");
    assert!(stopped.iter().all(|e| e["reason"] == "deregistered"));
    assert_eq!(find(&ev, "stopped")[0]["deregistered"], 3);
    assert!(find(&ev, "pe_failed").is_empty(), "{ev:?}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} still exists");
    all_gone(&pids);
}

#[test]
fn cluster_demo_text_output_tells_the_story() {
    let out = run_demo(&["--cluster"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for phrase in [
        "three registrars",
        "reg-1",
        "reg-3",
        "are peers of each other",
        "homes",
        "killing registrar reg-1",
        "with SIGKILL",
        "peer reg-1 down",
        // No "took reg-1 over" required: the PEs register over their
        // standby links at once, often before the survivors find reg-1
        // down, and a registrar with no PEs left is not taken over.
        "lost its registrar reg-1",
        "every PE re-homed",
        "none lost",
        "0 lost",
        "registrars stopped",
        "Done.",
    ] {
        assert!(
            stdout.contains(phrase),
            "{phrase:?} missing from:\n{stdout}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(" INFO "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
