//! `rsp registrar` refuses what cannot work and reloads what can change:
//! values outside their documented ranges, overlapping listeners, key
//! files that are not private regular files (a FIFO used to hang
//! `--check-config`), weak keys; PSKs together with a client CA on one
//! listener (broken before); SIGHUP reloads keys and the admin token,
//! ending what a revoked key covered, and an invalid new file changes
//! nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::{arg, chmod, failure, json, registrar_certificate, rsp, run, Proc, Setup};

/// A minimal valid secure configuration (PSK file relative to the config).
const BASE: &str = "listen = [\"127.0.0.1:3864\"]\n[tls]\npsk_files = [\"registrar.keys\"]\n";

/// `--check-config` fails with `expect` in its error.
fn refused(s: &Setup, text: &str, extra: &[&str], expect: &str) {
    let (code, err) = s.check_bounded(text, extra);
    assert_eq!(code, Some(1), "{text:?} {extra:?}: {err}");
    assert!(err.contains(expect), "{text:?} {extra:?}: {err}");
}

#[test]
fn values_outside_their_ranges_are_refused() {
    let s = Setup::new(&["pe-1"]);
    replace_private(&s.path("admin.token"), "0123456789abcdef0123456789abcdef\n");
    let file = arg(&s.path("registrar.toml"));
    for (extra, expect) in [
        // Overflowed into a negative range before.
        (
            "[registration]\nmax_lifetime = \"300000000years\"\n",
            ":5: registration.max_lifetime: ",
        ),
        // A 1 ns keep-alive made PEs flap.
        ("[keep_alive]\ninterval = \"1ns\"\n", ":5: keep_alive.interval: 1ns is outside the allowed range 100ms ..= 1h"),
        // A 1 ns announce interval used most of a core.
        (
            "[announce]\ngroup = \"239.0.0.50:3863\"\ninterval = \"1ns\"\n",
            ":6: announce.interval: 1ns is outside the allowed range 100ms ..= 1h",
        ),
        (
            "[connections]\nidle_timeout = \"5s\"\n",
            ":5: connections.idle_timeout: 5s would close PEs between keep-alives",
        ),
        (
            "[connections]\nmessage_timeout = \"10m\"\n",
            ":5: connections.message_timeout: 10m is outside the allowed range 100ms ..= 5m",
        ),
        (
            "[limits]\nreports_per_identity = { per_second = 1e12, burst = 1 }\n",
            ":5: limits.reports_per_identity: per_second must be at most 1e9",
        ),
        (
            "[connections]\nmax = 100\nmax_per_address = 200\n",
            ":6: connections.max_per_address: 200 is outside the allowed range 1 ..= 100",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:3864\"\ntoken_file = \"registrar.keys\"\n",
            ":5: admin.listen: 127.0.0.1:3864 overlaps an ASAP listen address",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:3865\"\ntoken_file = \"admin.token\"\nheader_timeout = \"2h\"\n",
            ":7: admin.header_timeout: 2h is outside the allowed range 100ms ..= 1h",
        ),
    ] {
        refused(&s, &format!("{BASE}{extra}"), &[], &format!("{file}{expect}"));
    }
    // The inverted lifetime range says which way it is wrong.
    refused(
        &s,
        &format!("{BASE}[registration]\nmin_lifetime = \"2days\"\n"),
        &[],
        "registration.min_lifetime (2d) must not be more than registration.max_lifetime (1d)",
    );
    // The same listener twice, or a wildcard and an address of it: the
    // check says so instead of the start failing.
    for (a, b) in [
        ("127.0.0.1:3864", "127.0.0.1:3864"),
        ("0.0.0.0:3864", "127.0.0.1:3864"),
        ("[::]:3864", "127.0.0.1:3864"),
    ] {
        refused(
            &s,
            BASE,
            &["--listen", a, "--listen", b],
            &format!("--listen: {b} overlaps {a}: both cannot be bound"),
        );
    }
    // Port 0 twice is two free ports.
    let (code, err) = s.check_bounded(
        BASE,
        &["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(0), "{err}");
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs")
        .success();
    assert!(ok);
}

#[test]
fn key_files_must_be_private_regular_files_with_real_keys() {
    let s = Setup::new(&["pe-1"]);
    let check_psk = |path: &str, expect: &str| {
        refused(
            &s,
            "listen = [\"127.0.0.1:3864\"]\n",
            &["--psk-file", path],
            expect,
        )
    };
    // A FIFO made --check-config hang, deaf to SIGTERM.
    let fifo = s.path("fifo.keys");
    mkfifo(&fifo);
    check_psk(&arg(&fifo), "is a FIFO (named pipe)");
    // /dev/null and a directory: what is wrong, not "run chmod 600".
    for (path, what) in [
        ("/dev/null", "is a character device"),
        ("/tmp", "is a directory"),
    ] {
        let (code, err) = s.check_bounded("listen = [\"127.0.0.1:3864\"]\n", &["--psk-file", path]);
        assert_eq!(code, Some(1));
        assert!(err.contains(what), "{path}: {err}");
        assert!(!err.contains("chmod"), "{path}: {err}");
    }
    // The configuration file itself as a FIFO.
    let fifo_conf = s.path("fifo.toml");
    mkfifo(&fifo_conf);
    let mut p =
        Proc::spawn(rsp().args(["registrar", "--config", &arg(&fifo_conf), "--check-config"]));
    let (code, err) = p.exit();
    assert_eq!(code, Some(1));
    assert!(err.contains("is a FIFO"), "{err}");
    // An all-zero key.
    let zero = s.path("zero.keys");
    std::fs::write(
        &zero,
        format!(
            "[[psk]]\nidentity = \"pe-0\"\nkey = \"{}\"\n",
            "00".repeat(32)
        ),
    )
    .unwrap();
    chmod(&zero, 0o600);
    check_psk(&arg(&zero), "is one byte repeated, which is no secret");
    // A TLS private key others can read.
    let ca = s.path("ca");
    registrar_certificate(&ca);
    let key = ca.join("registrar-1.key");
    chmod(&key, 0o644);
    let (code, err) = s.check_bounded(
        &format!(
            "listen = [\"127.0.0.1:3864\"]\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            arg(&ca.join("registrar-1.pem")),
            arg(&key)
        ),
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("tls.key") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn pre_shared_keys_and_a_client_ca_work_on_one_listener() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let ca = s.path("ca");
    registrar_certificate(&ca);
    let text = "listen = [\"127.0.0.1:0\"]\njson = true\n[tls]\npsk_files = [\"registrar.keys\"]\n\
         cert = \"ca/registrar-1.pem\"\nkey = \"ca/registrar-1.key\"\nclient_ca = \"ca/ca.pem\"\n";
    let (code, err) = s.check_bounded(text, &[]);
    assert_eq!(code, Some(0), "{err}");
    let file = s.config(text);
    let reg = Proc::spawn(rsp().args(["registrar", "--config", &file]));
    let addr = reg.listening_address();
    // Every PSK client failed with alert 80 here before.
    let (_pe, id) = s.echo_pe(&addr);
    let v = json(&run(&[
        "resolve",
        "echo",
        "-r",
        &addr,
        "--psk-file",
        &arg(&s.path("pu-1.key")),
        "--json",
    ]));
    assert_eq!(v["pool_elements"][0]["identifier"], id);
    // And a certificate client (the CA only, anonymous) too.
    let v = json(&run(&[
        "resolve",
        "echo",
        "-r",
        &addr,
        "--ca",
        &arg(&ca.join("ca.pem")),
        "--json",
    ]));
    assert_eq!(v["pool_elements"][0]["identifier"], id);
}

/// Replace a private file's contents (written aside and renamed).
fn replace_private(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    chmod(&tmp, 0o600);
    std::fs::rename(&tmp, path).unwrap();
}

fn key_text(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{id}.key"))).unwrap()
}

#[test]
fn sighup_reloads_keys_and_the_token_and_ends_what_a_revoked_key_covered() {
    let s = Setup::new(&["pe-1", "pe-2", "pu-1"]);
    let d = s.dir.path();
    // A key for later, not known to the registrar yet.
    let pu2 = rserpool_security::Psk::generate("pu-2").unwrap();
    pu2.write_new(&s.path("pu-2.key")).unwrap();
    let token = s.path("admin.token");
    replace_private(&token, "0123456789abcdef0123456789abcdef\n");
    let file = s.config(
        "listen = [\"127.0.0.1:0\"]\njson = true\n[tls]\npsk_files = [\"registrar.keys\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n",
    );
    let reg = Proc::spawn(rsp().args(["registrar", "--config", &file]));
    let addr = reg.listening_address();
    let admin = reg.wait_event("admin_listening")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let pe = |id: &str| {
        Proc::spawn(rsp().args([
            "pe",
            "echo",
            "-r",
            &addr,
            "--psk-file",
            &arg(&s.path(&format!("{id}.key"))),
            "--json",
        ]))
    };
    let (pe1, pe2) = (pe("pe-1"), pe("pe-2"));
    let id1 = pe1.wait_event("registered")["identifier"].clone();
    let id2 = pe2.wait_event("registered")["identifier"].clone();
    let resolve = |key: &str| {
        run(&[
            "resolve",
            "echo",
            "-r",
            &addr,
            "--psk-file",
            &arg(&s.path(key)),
            "--json",
        ])
    };
    let status = |tok: &Path| {
        run(&[
            "status",
            "--admin",
            &format!("http://{admin}"),
            "--token-file",
            &arg(tok),
            "--json",
        ])
    };
    assert!(status(&token).status.success());

    // Revoke pe-2, add pu-2, new admin token: SIGHUP.
    replace_private(
        &s.path("registrar.keys"),
        &[key_text(d, "pe-1"), key_text(d, "pu-1"), pu2.to_file_text()].concat(),
    );
    let old_token = s.path("old.token");
    std::fs::copy(&token, &old_token).unwrap();
    chmod(&old_token, 0o600);
    replace_private(&token, "fedcba9876543210fedcba9876543210\n");
    reg.signal("-HUP");
    let r = reg.wait_event("reloaded");
    assert_eq!(r["pes_removed"][0]["identifier"], id2, "{r}");
    assert_eq!(r["pes_removed"][0]["identity"], "psk:pe-2");
    assert_eq!(r["connections_closed"][0][0], "psk:pe-2", "{r}");
    let v = json(&resolve("pu-2.key"));
    let ids: Vec<_> = v["pool_elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identifier"].clone())
        .collect();
    assert_eq!(ids, vec![id1.clone()], "pe-2 is gone, pu-2 is in");
    assert!(status(&token).status.success(), "the new token works");
    assert!(!status(&old_token).status.success(), "the old one does not");

    // An invalid new file (others may read it) changes nothing.
    chmod(&s.path("registrar.keys"), 0o644);
    reg.signal("-HUP");
    let f = reg.wait_event("reload_failed");
    assert!(f["error"].as_str().unwrap().contains("chmod 600"), "{f}");
    let v = json(&resolve("pu-2.key"));
    assert_eq!(v["pool_elements"][0]["identifier"], id1);
    // And pe-2 cannot come back with the revoked key.
    let e = failure(&resolve("pe-2.key"));
    assert!(e.contains(&addr), "{e}");
}
