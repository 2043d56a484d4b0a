//! `rsp status`, `rsp watch` and `rsp keygen token` against an in-process
//! registrar (TLS PSK) with its admin API on loopback: status prints the
//! server id, watch --json prints a `registered` line for a PE that
//! registers after it started and an error when the registrar goes away,
//! SIGTERM ends watch cleanly, and wrong tokens and unreachable addresses
//! give errors that name the file or the address.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::lab::{Lab, SERVER_ID};
use common::{run, Proc};
use rserpool_registrar::admin::AdminToken;

/// `rsp watch` on the lab, subscribed: it logs "watching" once the admin
/// API answered /v1/events, and the API subscribes before it answers.
fn watch(lab: &Lab, json: bool) -> Proc {
    let token = lab.token_file();
    let mut args = vec!["watch", "--admin", &lab.url, "--token-file", &token];
    if json {
        args.push("--json");
    }
    // Logs at info (the default rsp() sets warn) for the "watching" line.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsp"));
    let p = Proc::spawn(cmd.args(["--log", "info"]).args(&args));
    p.wait_stderr("watching the registrar's events");
    p
}

#[test]
fn status_prints_the_server_id_and_json_on_request() {
    let mut lab = Lab::start();
    lab.register_pe(0x0000_0042);
    let out = run(&[
        "status",
        "--admin",
        &lab.url,
        "--token-file",
        &lab.token_file(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("registrar 0x00c0ffee"), "{text}");
    assert!(text.contains("secure mode"), "{text}");
    assert!(text.contains("1 pool, 1 PE"), "{text}");

    let out = run(&[
        "status",
        "--admin",
        &lab.url,
        "--token-file",
        &lab.token_file(),
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["server_id"], SERVER_ID);
    assert_eq!(v["pool_elements"], 1);
    assert_eq!(v["core"]["registrations"], 1);
}

#[test]
fn watch_prints_registrations_and_stops_on_sigterm() {
    let mut lab = Lab::start();
    let mut w = watch(&lab, true);
    lab.register_pe(0x0000_0007);
    let v: serde_json::Value = serde_json::from_str(&w.line()).expect("one JSON object per line");
    assert_eq!(v["event"], "registered");
    assert_eq!(v["pool_handle"], "echo");
    assert_eq!(v["identifier"], 7);
    assert_eq!(v["identity"], "psk:pe-1");
    assert_eq!(v["new"], true);
    w.signal("-TERM");
    let (code, err) = w.exit();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn watch_says_when_the_registrar_goes_away() {
    let mut lab = Lab::start();
    let mut w = watch(&lab, false);
    lab.register_pe(0x0000_0007);
    let line = w.line();
    assert!(
        line.contains(" + echo 0x00000007 127.0.0.1:7 psk:pe-1 registered (RR)"),
        "{line}"
    );
    lab.stop_registrar();
    let (code, err) = w.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the registrar went away"), "{err}");
    assert!(err.contains(&lab.url), "{err}");
}

#[test]
fn a_wrong_token_file_is_named() {
    let lab = Lab::start();
    let wrong: PathBuf = lab.dir.path().join("wrong.token");
    AdminToken::write_new(&wrong).unwrap();
    let wrong = wrong.display().to_string();
    for cmd in ["status", "watch"] {
        let out = run(&[cmd, "--admin", &lab.url, "--token-file", &wrong]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&wrong), "{cmd}: {err}");
        assert!(err.contains("401"), "{cmd}: {err}");
    }
    let missing = lab.dir.path().join("missing.token").display().to_string();
    let out = run(&["status", "--admin", &lab.url, "--token-file", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing));
}

#[test]
fn an_unreachable_admin_address_is_named() {
    let lab = Lab::start();
    // A port that was free a moment ago: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    for cmd in ["status", "watch"] {
        let out = run(&[cmd, "--admin", &url, "--token-file", &lab.token_file()]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot reach"), "{cmd}: {err}");
        assert!(err.contains(&url), "{cmd}: {err}");
    }
}

#[test]
fn keygen_token_writes_a_usable_token_once() {
    let lab = Lab::start();
    let path = lab.dir.path().join("new.token");
    let p = path.display().to_string();
    let out = run(&["keygen", "token", "--out", &p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = AdminToken::load(&path).expect("a valid token");
    assert_eq!(token.as_str().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let out = run(&["keygen", "token", "--out", &p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not overwriting"));
    assert_eq!(AdminToken::load(&path).unwrap(), token);
}

#[test]
fn watch_gives_up_on_an_admin_address_that_never_answers() {
    // Accepts connections (the kernel does, from the listen queue) and
    // never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let lab = Lab::start();
    let out = run(&["watch", "--admin", &url, "--token-file", &lab.token_file()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not answer /v1/events within 10s"),
        "{err}"
    );
}
