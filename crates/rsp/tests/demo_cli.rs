//! `rsp demo` end to end, shortened: keys, registrar, three PE processes,
//! the pool user, the kill, the failover, the removal and a clean stop.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The demo must finish well within this (it runs about 1.5 s).
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
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(["demo", "--phase", "60s", "--json"])
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
    let next = |name: &str| loop {
        let v = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("no {name:?} event"));
        if v["event"] == name {
            return v;
        }
    };
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(next("pe_registered")["pid"].as_u64().expect("pid"));
    }
    next("pool_user_started");
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok);
    next("interrupted");
    let stopped = next("stopped");
    assert_eq!(stopped["deregistered"], 3, "{stopped}");
    let status = child.wait().expect("exits");
    assert!(status.success(), "{status}");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "PE process {pid} outlived the demo"
        );
    }
}
