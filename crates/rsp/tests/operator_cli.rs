//! What an operator reaches for in the first hour, against a registrar
//! with its admin API: `rsp pools` and `rsp pool` (tables and JSON),
//! `rsp pe drain|undrain|remove` as `rsp watch` and `rsp pool` see them,
//! watch's changes-only output, the
//! defaults from `RSP_REGISTRAR` / `RSP_ADMIN` / `RSP_ADMIN_TOKEN_FILE`
//! and from the client file, `--admin HOST:PORT` without a scheme, and
//! errors as one JSON object on stderr under `--json`.

mod common;

use std::path::Path;
use std::process::Output;

use common::lab::Lab;
use common::{failure, json, rsp, Proc};
use rserpool_wire::Policy;

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lab's admin address without the scheme: what people type.
fn admin_address(lab: &Lab) -> String {
    lab.url.trim_start_matches("http://").to_string()
}

fn write_key(lab: &Lab, dir: &Path) -> String {
    let path = dir.join("pe-1.key");
    lab.psk.write_new(&path).unwrap();
    path.display().to_string()
}

#[test]
fn pools_and_pool_show_tables_and_json() {
    let mut lab = Lab::start();
    lab.register("echo", Policy::RoundRobin, 7, 0x0a0b_0c0d);
    lab.register("echo", Policy::RoundRobin, 7, 0x0000_0002);
    lab.register(
        "web",
        Policy::WeightedRoundRobin { weight: 3 },
        8080,
        0x0000_0003,
    );
    let admin = admin_address(&lab);
    let token = lab.token_file();
    let base = ["--admin", admin.as_str(), "--token-file", token.as_str()];

    let table = stdout(&rsp().arg("pools").args(base).output().unwrap());
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("POOL"), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("echo") && l.contains("RR") && l.contains(" 2 ")),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web") && l.contains("WRR") && l.contains(" 1 ")),
        "{table}"
    );
    assert!(table.contains("2 pools, 3 PEs"), "{table}");

    let v = json(&rsp().args(["pools", "--json"]).args(base).output().unwrap());
    assert_eq!(v["pools_total"], 2);
    assert_eq!(v["pools"][0]["handle"], "echo");
    assert_eq!(v["pools"][0]["pool_elements"], 2);
    assert_eq!(v["pools"][1]["policy"], "WRR");

    let table = stdout(&rsp().args(["pool", "web"]).args(base).output().unwrap());
    assert!(
        table.starts_with("pool \"web\": policy WRR, 1 PE\n"),
        "{table}"
    );
    let row = table.lines().nth(2).unwrap_or_default();
    for want in [
        "0x00000003",
        "127.0.0.1",
        "8080",
        "WRR weight 3",
        "psk:pe-1",
    ] {
        assert!(row.contains(want), "{want} missing: {table}");
    }
    let v = json(
        &rsp()
            .args(["pool", "echo", "--json"])
            .args(base)
            .output()
            .unwrap(),
    );
    assert_eq!(v["handle"], "echo");
    assert_eq!(v["pool_elements"].as_array().map(Vec::len), Some(2));

    let err = failure(&rsp().args(["pool", "nope"]).args(base).output().unwrap());
    assert!(err.contains("nope") && err.contains("404"), "{err}");
}

#[test]
fn environment_and_client_file_supply_the_flags() {
    let mut lab = Lab::start();
    lab.register_pe(0x0000_0042);
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_address(&lab);
    let token = lab.token_file();

    // RSP_ADMIN (no scheme) and RSP_ADMIN_TOKEN_FILE.
    let out = rsp()
        .arg("status")
        .env("RSP_ADMIN", &admin)
        .env("RSP_ADMIN_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert!(stdout(&out).contains("registrar 0x00c0ffee"));

    // A flag beats its variable.
    let out = rsp()
        .args(["status", "--admin", &admin])
        .env("RSP_ADMIN", "127.0.0.1:1")
        .env("RSP_ADMIN_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert!(stdout(&out).contains("registrar 0x00c0ffee"));

    // Nothing says where the token is: the error says how to say it.
    let err = failure(&rsp().args(["status", "--admin", &admin]).output().unwrap());
    assert!(
        err.contains("--token-file") && err.contains("RSP_ADMIN_TOKEN_FILE"),
        "{err}"
    );

    // RSP_REGISTRAR: a comma-separated list, tried in order (the first
    // refuses connections).
    let key = write_key(&lab, dir.path());
    let registrars = format!("127.0.0.1:1,{}", lab.asap_addr());
    let out = rsp()
        .args(["resolve", "echo", "--psk-file", &key, "--json"])
        .env("RSP_REGISTRAR", &registrars)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["pool_elements"][0]["identifier"], 0x42);

    // The client file, with paths relative to it: everything at once.
    std::fs::copy(&token, dir.path().join("admin.token")).unwrap();
    common::chmod(&dir.path().join("admin.token"), 0o600);
    let file = dir.path().join("client.toml");
    std::fs::write(
        &file,
        format!(
            "registrars = [\"{}\"]\npsk_file = \"pe-1.key\"\nadmin = \"{admin}\"\n\
             admin_token_file = \"admin.token\"\n",
            lab.asap_addr()
        ),
    )
    .unwrap();
    let client_config = file.display().to_string();
    let out = rsp()
        .args(["--client-config", &client_config, "pools"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("1 pool, 1 PE"));
    // An empty variable is no value: the file still counts.
    let out = rsp()
        .args(["--client-config", &client_config, "pools"])
        .env("RSP_ADMIN_TOKEN_FILE", "")
        .env("RSP_ADMIN", "")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("1 pool, 1 PE"));
    let out = rsp()
        .args(["resolve", "echo", "--client-config", &client_config])
        .env("RSP_REGISTRAR", "")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("0x00000042"));

    // ... found at ~/.config/rsp/client.toml ($XDG_CONFIG_HOME) by default.
    let config_home = tempfile::tempdir().unwrap();
    std::fs::create_dir(config_home.path().join("rsp")).unwrap();
    std::fs::copy(&file, config_home.path().join("rsp/client.toml")).unwrap();
    // The relative paths now point next to the copy: make them absolute.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"pe-1.key\"", &format!("{key:?}"))
        .replace(
            "\"admin.token\"",
            &format!("{:?}", dir.path().join("admin.token").display().to_string()),
        );
    std::fs::write(config_home.path().join("rsp/client.toml"), text).unwrap();
    let out = rsp()
        .args(["resolve", "echo"])
        .env("XDG_CONFIG_HOME", config_home.path())
        .output()
        .unwrap();
    assert!(stdout(&out).contains("0x00000042"));

    // An explicit file that is not there, or not valid, is an error.
    let err = failure(
        &rsp()
            .args(["pools", "--client-config", "/nonexistent/client.toml"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("/nonexistent/client.toml"), "{err}");
    std::fs::write(&file, "registrar = \"x:1\"\n").unwrap();
    let err = failure(
        &rsp()
            .args(["--client-config", &client_config, "pools"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("client.toml") && err.contains("registrar"),
        "{err}"
    );
}

#[test]
fn errors_are_one_json_object_under_json() {
    // A run-time error.
    let o = rsp()
        .args([
            "--json",
            "resolve",
            "echo",
            "-r",
            "127.0.0.1:1",
            "--insecure",
        ])
        .output()
        .unwrap();
    let err = failure(&o);
    // Everything on stderr is JSON (the log lines too); the error is the
    // last object.
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let v = lines.last().expect("an error object").clone();
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1:1")),
        "{v}"
    );
    assert!(v["causes"].is_array(), "{v}");

    // A command line clap refuses.
    let o = rsp().args(["resolve", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stderr).expect("one JSON object for a usage error");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("HANDLE")),
        "{v}"
    );

    // Without --json: text.
    let err = failure(
        &rsp()
            .args(["resolve", "echo", "-r", "127.0.0.1:1", "--insecure"])
            .output()
            .unwrap(),
    );
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("rsp: no registrar reachable")),
        "{err}"
    );
}

#[test]
fn reporting_commands_take_json() {
    // decode: one line with --json, indented without.
    let hex = "0100003400090008 6563686f000a0028 1122334400000000 0000012c00050010 1f90000000010008 c000020100080008 00000001";
    let one = stdout(
        &rsp()
            .args(["decode", "--proto", "asap", hex, "--json"])
            .output()
            .unwrap(),
    );
    let pretty = stdout(
        &rsp()
            .args(["decode", "--proto", "asap", hex])
            .output()
            .unwrap(),
    );
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(pretty.lines().count() > 1, "{pretty}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one).unwrap(),
        serde_json::from_str::<serde_json::Value>(&pretty).unwrap()
    );
    // man: the pages written.
    let dir = tempfile::tempdir().unwrap();
    let out = rsp()
        .args(["--json", "man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["written"].as_array().is_some_and(|a| a
        .iter()
        .any(|p| p.as_str().is_some_and(|p| p.ends_with("rsp-pools.1")))));
    // completions: a script whatever --json says.
    let out = rsp()
        .args(["completions", "bash", "--json"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("complete -F _rsp"));
}

/// `rsp watch` on the lab, subscribed (it logs "watching" once the API
/// answered /v1/events, which subscribes before it answers).
fn watch(lab: &Lab, extra: &[&str]) -> Proc {
    let token = lab.token_file();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rsp"));
    common::isolate(&mut cmd);
    cmd.args([
        "--log",
        "info",
        "watch",
        "--admin",
        &lab.url,
        "--token-file",
        &token,
    ])
    .args(extra);
    let p = Proc::spawn(&mut cmd);
    p.wait_stderr("watching the registrar's events");
    p
}

#[test]
fn drain_undrain_and_remove_as_watch_and_pool_see_them() {
    let mut lab = Lab::start();
    lab.register_pe(0x0000_0001);
    lab.register_pe(0x0000_0002);
    let w = watch(&lab, &[]);
    let token = lab.token_file();
    let admin = ["--admin", lab.url.as_str(), "--token-file", token.as_str()];
    let with_admin = |args: &[&str]| rsp().args(args).args(admin).output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(&lab, dir.path());
    let asap = lab.asap_addr().to_string();
    let resolved = || -> Vec<u64> {
        let out = rsp()
            .args(["resolve", "echo", "-r", &asap, "--psk-file", &key, "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["pool_elements"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["identifier"].as_u64())
            .collect()
    };
    assert_eq!(resolved().len(), 2);

    // Drain 0x1: announced, shown, no longer handed out.
    let out = stdout(&with_admin(&[
        "pe",
        "drain",
        "echo",
        "0x1",
        "--timeout",
        "5m",
    ]));
    assert!(
        out.contains("PE 0x00000001 of pool \"echo\" drained"),
        "{out}"
    );
    assert!(out.contains("removes it in 5m"), "{out}");
    let line = w.line();
    assert!(
        line.contains("> echo 0x00000001 drained by admin API from 127.0.0.1")
            && line.contains("removed in 5m"),
        "{line}"
    );
    let table = stdout(&with_admin(&["pool", "echo"]));
    assert!(table.contains("2 PEs (1 drained)"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("0x00000001") && l.contains("drained (removed in")),
        "{table}"
    );
    assert_eq!(resolved(), [2]);

    // Undrain: handed out again; a second undrain changes nothing.
    let out = stdout(&with_admin(&["pe", "undrain", "echo", "1"]));
    assert!(out.contains("undrained: handed out again"), "{out}");
    assert!(w
        .line()
        .contains("< echo 0x00000001 undrained by admin API"));
    let out = stdout(&with_admin(&["pe", "undrain", "echo", "1"]));
    assert!(out.contains("was not drained"), "{out}");
    assert_eq!(resolved().len(), 2);

    // Remove 0x2 (JSON answer), seen as an operator's removal.
    let v = json(&with_admin(&["pe", "remove", "echo", "0x2", "--json"]));
    assert_eq!(v["removed"], true);
    assert_eq!(v["identifier"], 2);
    let line = w.line();
    assert!(
        line.contains("- echo 0x00000002 removed by an operator"),
        "{line}"
    );
    assert_eq!(resolved(), [1]);

    // Unknown pools and PEs are errors that name them.
    let err = failure(&with_admin(&["pe", "drain", "nope", "1"]));
    assert!(err.contains("nope"), "{err}");
    let err = failure(&with_admin(&["pe", "remove", "echo", "0x99"]));
    assert!(err.contains("0x00000099"), "{err}");
}

#[test]
fn watch_shows_changes_with_addresses_and_refreshes_only_when_verbose() {
    let mut lab = Lab::start();
    let quiet = watch(&lab, &[]);
    let verbose = watch(&lab, &["--verbose"]);
    lab.register("echo", Policy::RoundRobin, 7, 9);
    for w in [&quiet, &verbose] {
        let line = w.line();
        assert!(
            line.contains(" + echo 0x00000009 127.0.0.1:7 psk:pe-1 registered (RR)"),
            "{line}"
        );
    }
    // The same PE from another connection, on another port: a change.
    lab.register("echo", Policy::RoundRobin, 8, 9);
    for w in [&quiet, &verbose] {
        let line = w.line();
        assert!(
            line.contains(" ~ echo 0x00000009 127.0.0.1:8 psk:pe-1 re-registered with changes"),
            "{line}"
        );
    }
    // Once more, unchanged: a refresh, shown only with --verbose.
    lab.register("echo", Policy::RoundRobin, 8, 9);
    let line = verbose.line();
    assert!(
        line.contains("echo 0x00000009 127.0.0.1:8 psk:pe-1 refreshed its registration"),
        "{line}"
    );
    // The next line the quiet watcher prints is the next change.
    lab.register("web", Policy::RoundRobin, 80, 10);
    let line = quiet.line();
    assert!(line.contains(" + web 0x0000000a"), "{line}");
}

#[test]
fn a_pe_with_the_wrong_policy_is_told_the_pool_policy() {
    let mut lab = Lab::start();
    lab.register_pe(0x0000_0001);
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(&lab, dir.path());
    let asap = lab.asap_addr().to_string();
    let out = rsp()
        .args([
            "pe",
            "echo",
            "-r",
            &asap,
            "--psk-file",
            &key,
            "--policy",
            "wrr:2",
        ])
        .args(["--bind", "127.0.0.1"])
        .output()
        .unwrap();
    let err = failure(&out);
    assert!(
        err.contains("Inconsistent Pooling Policy (0x5): the pool uses round robin (rr)"),
        "{err}"
    );
}
