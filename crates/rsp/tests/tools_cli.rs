//! The packaging helpers and logging switches of `rsp`: completions, man
//! pages, JSON logs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn rsp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rsp"))
}

#[test]
fn bash_completions_are_valid_bash() {
    let out = rsp().args(["completions", "bash"]).output().expect("runs");
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(script.contains("complete -F _rsp"), "{script}");
    for sub in ["registrar", "demo", "resolve", "pe"] {
        assert!(script.contains(sub), "{sub} missing");
    }
    // bash itself parses it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rsp.bash");
    std::fs::write(&path, &script).unwrap();
    let ok = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .expect("bash runs");
    assert!(ok.success(), "bash -n rejected the completion script");
}

#[test]
fn other_shells_get_scripts_and_unknown_ones_an_error() {
    for shell in ["zsh", "fish"] {
        let out = rsp().args(["completions", shell]).output().expect("runs");
        assert!(out.status.success(), "{shell}");
        assert!(!out.stdout.is_empty(), "{shell}");
    }
    let out = rsp().args(["completions", "tcsh"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = rsp()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "rsp",
        "rsp-registrar",
        "rsp-demo",
        "rsp-pe",
        "rsp-resolve",
        "rsp-keygen-psk",
    ] {
        let text = std::fs::read_to_string(dir.path().join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}.1 is not a man page"
        );
    }
    let registrar = std::fs::read_to_string(dir.path().join("rsp-registrar.1")).unwrap();
    assert!(registrar.contains("keep\\-alive\\-interval"), "{registrar}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = rsp()
        .args([
            "--log-format",
            "json",
            "registrar",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The insecure-mode warning is the first thing it logs.
    let mut seen = Vec::new();
    let warning = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no insecure warning; saw {seen:?}"));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        if v["level"] == "WARN" {
            break v;
        }
        seen.push(v);
    };
    let _ = child.kill();
    let _ = child.wait();
    let message = warning["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.to_lowercase().contains("insecure"), "{warning}");
}
