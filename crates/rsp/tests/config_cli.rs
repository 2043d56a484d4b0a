//! `rsp registrar --config FILE` and `--check-config` as processes: errors
//! name the file, the line and the key (syntax, unknown keys, types,
//! values, missing files); flags override the file; `--check-config`
//! binds nothing; the shipped example passes and documents the defaults;
//! a registrar started with a file runs with its values.

mod common;

use std::path::Path;

use common::{arg, chmod, failure, json, rsp, run, Proc, Setup};

/// The set-up of these tests: keys of pe-1 and pu-1.
fn setup() -> Setup {
    Setup::new(&["pe-1", "pu-1"])
}

/// A minimal valid secure configuration (PSK file relative to the config).
const BASE: &str = "listen = [\"127.0.0.1:3864\"]\n[tls]\npsk_files = [\"registrar.keys\"]\n";

#[test]
fn syntax_errors_name_the_file_and_line() {
    let s = setup();
    let e = failure(&s.check(
        "listen = [\"127.0.0.1:3864\"]\n[keep_alive]\ninterval = \"5s\n",
        &[],
    ));
    let file = arg(&s.path("registrar.toml"));
    assert!(e.contains(&format!("{file}:3: ")), "{e}");
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let s = setup();
    let e = failure(&s.check(&format!("{BASE}[keep_alive]\nintervall = \"5s\"\n"), &[]));
    let file = arg(&s.path("registrar.toml"));
    assert!(
        e.contains(&format!("{file}:5: keep_alive.intervall: unknown key")),
        "{e}"
    );
    let e = failure(&s.check(&format!("verbose = true\n{BASE}"), &[]));
    assert!(
        e.contains(&format!("{file}:1: verbose: unknown key")),
        "{e}"
    );
}

#[test]
fn wrong_types_name_the_key_and_line() {
    let s = setup();
    let file = arg(&s.path("registrar.toml"));
    let e = failure(&s.check(&format!("{BASE}max_bad_pe_reports = \"three\"\n"), &[]));
    // A top-level key after a table header belongs to [tls].
    assert!(
        e.contains(&format!("{file}:4: tls.max_bad_pe_reports: unknown key")),
        "{e}"
    );
    let e = failure(&s.check(&format!("max_bad_pe_reports = \"three\"\n{BASE}"), &[]));
    assert!(
        e.contains(&format!("{file}:1: max_bad_pe_reports: invalid type")),
        "{e}"
    );
    let e = failure(&s.check(
        &format!("{BASE}[limits]\nreports_per_address = {{ per_second = \"x\", burst = 5 }}\n"),
        &[],
    ));
    assert!(
        e.contains(&format!(
            "{file}:5: limits.reports_per_address.per_second: invalid type"
        )),
        "{e}"
    );
    let e = failure(&s.check(
        &format!("{BASE}[connections]\nidle_timeout = \"soon\"\n"),
        &[],
    ));
    assert!(
        e.contains(&format!("{file}:5: connections.idle_timeout: \"soon\"")),
        "{e}"
    );
}

#[test]
fn bad_values_name_the_key_and_line() {
    let s = setup();
    let file = arg(&s.path("registrar.toml"));
    let e = failure(&s.check(&format!("{BASE}[keep_alive]\ninterval = \"0s\"\n"), &[]));
    assert!(
        e.contains(&format!(
            "{file}:5: keep_alive.interval: 0s is outside the allowed range 100ms ..= 1h"
        )),
        "{e}"
    );
    let e = failure(&s.check(
        &format!("{BASE}[registration]\nmin_lifetime = \"2h\"\nmax_lifetime = \"1h\"\n"),
        &[],
    ));
    assert!(
        e.contains(&format!(
            "{file}:5: registration.min_lifetime: registration.min_lifetime (2h) must not be more \
             than registration.max_lifetime (1h)"
        )),
        "{e}"
    );
    let e = failure(&s.check(&format!("insecure = true\n{BASE}"), &[]));
    assert!(
        e.contains(&format!(
            "{file}:4: tls.psk_files: TLS settings are not allowed in insecure mode"
        )),
        "{e}"
    );
    let e = failure(&s.check(&format!("server_id = 0\n{BASE}"), &[]));
    assert!(
        e.contains(&format!("{file}:1: server_id: must not be 0")),
        "{e}"
    );
    // A bad value from a flag names the flag.
    let e = failure(&s.check(BASE, &["--keep-alive-timeout", "0s"]));
    assert!(
        e.contains("--keep-alive-timeout: 0s is outside the allowed range 100ms ..= 1h"),
        "{e}"
    );
}

#[test]
fn a_missing_psk_file_is_named() {
    let s = setup();
    let file = arg(&s.path("registrar.toml"));
    let e = failure(&s.check(
        "[tls]\npsk_files = [\"registrar.keys\", \"/nonexistent/pe.keys\"]\n",
        &[],
    ));
    assert!(
        e.contains(&format!("{file}:2: tls.psk_files: /nonexistent/pe.keys")),
        "{e}"
    );
    // A certificate that does not exist names its key too.
    let e = failure(&s.check(
        "[tls]\ncert = \"/nonexistent/r.pem\"\nkey = \"/nonexistent/r.key\"\n",
        &[],
    ));
    assert!(
        e.contains(&format!("{file}:2: tls.cert: /nonexistent/r.pem")),
        "{e}"
    );
    // And a missing configuration file is named.
    let e = failure(&run(&[
        "registrar",
        "--config",
        "/nonexistent/registrar.toml",
        "--check-config",
    ]));
    assert!(e.contains("/nonexistent/registrar.toml"), "{e}");
}

#[test]
fn flags_override_the_file() {
    let s = setup();
    let token = s.path("admin.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    chmod(&token, 0o600);
    let text = format!(
        "{BASE}[keep_alive]\ninterval = \"2s\"\ntimeout = \"7s\"\n[connections]\nmax = 5\n\
         [admin]\nlisten = \"127.0.0.1:9000\"\ntoken_file = \"admin.token\"\n"
    );
    let v = json(&s.check(&text, &["--json"]));
    assert_eq!(v["listen"][0], "127.0.0.1:3864");
    assert_eq!(v["keep_alive"]["interval"], "2s");
    assert_eq!(v["admin"]["listen"], "127.0.0.1:9000");
    assert_eq!(v["admin"]["token_file"], arg(&token));

    let v = json(&s.check(
        &text,
        &[
            "--json",
            "--listen",
            "127.0.0.1:4000",
            "--keep-alive-interval",
            "3s",
            "--admin=off",
        ],
    ));
    assert_eq!(v["listen"], serde_json::json!(["127.0.0.1:4000"]));
    assert_eq!(v["keep_alive"]["interval"], "3s"); // flag
    assert_eq!(v["keep_alive"]["timeout"], "7s"); // file
    assert_eq!(v["connections"]["max"], 5); // file
    assert_eq!(v["connections"]["idle_timeout"], "2m"); // default
    assert_eq!(v["admin"], serde_json::Value::Null);
    assert_eq!(v["tls"]["psk_identities"], 2);
    // json = true in the file, and --json=false over it.
    let o = s.check(&format!("json = true\n{BASE}"), &["--json=false"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("configuration OK"));
}

#[test]
fn check_config_binds_nothing() {
    let s = setup();
    // A port in use by someone else: checking must not try to bind it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let file = s.config(&format!(
        "listen = [\"{addr}\"]\n[tls]\npsk_files = [\"registrar.keys\"]\n"
    ));
    let children: Vec<_> = (0..2)
        .map(|_| {
            rsp()
                .args(["registrar", "--config", &file, "--check-config"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&addr));
    }
}

#[test]
fn the_admin_api_needs_a_token_file() {
    let s = setup();
    let file = arg(&s.path("registrar.toml"));
    let e = failure(&s.check(BASE, &["--admin"]));
    assert!(
        e.contains("--admin: the admin API needs a token file"),
        "{e}"
    );
    let e = failure(&s.check(
        &format!("{BASE}[admin]\nlisten = \"127.0.0.1:3865\"\n"),
        &[],
    ));
    assert!(
        e.contains(&format!(
            "{file}:5: admin.listen: the admin API needs a token file"
        )),
        "{e}"
    );
    // A token file others can read is refused; a private one works, and
    // a bare --admin listens on 127.0.0.1:3865.
    let token = s.path("admin.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    chmod(&token, 0o644);
    let t = arg(&token);
    let e = failure(&s.check(BASE, &["--admin", "--admin-token-file", &t]));
    assert!(e.contains(&t) && e.contains("chmod 600"), "{e}");
    chmod(&token, 0o600);
    let v = json(&s.check(BASE, &["--admin", "--admin-token-file", &t, "--json"]));
    assert_eq!(v["admin"]["listen"], "127.0.0.1:3865");
    // A guessable token is refused.
    std::fs::write(&token, "s3cret\n").unwrap();
    let e = failure(&s.check(BASE, &["--admin", "--admin-token-file", &t]));
    assert!(e.contains(&t) && e.contains("at least 32"), "{e}");
}

/// The shipped example with its /etc/rsp/ files made in `dir`.
fn example_in(dir: &Path) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/registrar.toml");
    let text = std::fs::read_to_string(example).expect("packaging/registrar.toml");
    let ca = rserpool_security::pki::CertificateAuthority::generate("test CA", 1).unwrap();
    ca.issue("registrar", &["localhost"], &[], 1)
        .unwrap()
        .write_files(dir, "registrar")
        .unwrap();
    std::fs::rename(dir.join("registrar.keys"), dir.join("psk.keys")).unwrap();
    text.replace("/etc/rsp/", &format!("{}/", dir.display()))
}

#[test]
fn the_shipped_example_passes_and_documents_the_defaults() {
    let s = setup();
    let text = example_in(s.dir.path());
    let as_shipped = json(&s.check(&text, &["--json"]));
    assert_eq!(as_shipped["mode"], "secure");
    assert_eq!(as_shipped["tls"]["psk_identities"], 2);
    assert_eq!(as_shipped["tls"]["cert"], arg(&s.path("registrar.pem")));

    // Every "#key = value" line is the default: uncommented, nothing changes.
    let mut uncommented = 0;
    let all: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                uncommented += 1;
                format!("{rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(uncommented > 20, "{uncommented}");
    assert_eq!(json(&s.check(&all, &["--json"])), as_shipped);

    // Every option is in the example.
    let mut keys = Vec::new();
    for (section, value) in as_shipped.as_object().unwrap() {
        match value.as_object() {
            Some(o) if section != "tls" => keys.extend(o.keys().cloned()),
            _ => keys.push(section.clone()),
        }
    }
    for key in keys {
        // Not options, or sections that are off (their keys follow).
        let skip = [
            "config_file",
            "mode",
            "psk_identities",
            "tls",
            "announce",
            "admin",
            "apd_entries",
            // An array of tables: [[listener]] in the example.
            "listener",
        ];
        if skip.contains(&key.as_str()) {
            continue;
        }
        assert!(
            text.contains(&format!("{key} = ")),
            "{key} is not in the example"
        );
    }
    for needle in [
        "[[listener]]",
        "pool_users_only = ",
        "client_ca = ",
        "require_client_cert = ",
        "group = ",
        "listen = \"127.0.0.1:3865\"",
        "token_file = ",
    ] {
        assert!(text.contains(needle), "{needle} is not in the example");
    }
}

#[test]
fn a_registrar_started_with_a_config_uses_it() {
    let s = setup();
    // Relative file names are relative to the file; json = true without
    // --json; one resolution per identity.
    let file = s.config(
        "listen = [\"127.0.0.1:0\"]\nserver_id = 0x1234\njson = true\n\
         [tls]\npsk_files = [\"registrar.keys\"]\n\
         [limits]\nresolutions_per_identity = { per_second = 0.001, burst = 1 }\n",
    );
    let reg =
        Proc::spawn(
            rsp()
                .current_dir(std::env::temp_dir())
                .args(["registrar", "--config", &file]),
        );
    let listening = reg.wait_event("listening");
    assert_eq!(listening["server_id"], 0x1234);
    assert_eq!(listening["secure"], true);
    let addr = listening["address"].as_str().unwrap().to_string();

    let (_pe, id) = s.echo_pe(&addr);
    assert_eq!(reg.wait_event("registered")["identifier"], id);

    let resolve = || {
        run(&[
            "resolve",
            "echo",
            "-r",
            &addr,
            "--psk-file",
            &arg(&s.path("pu-1.key")),
            "--json",
        ])
    };
    let v = json(&resolve());
    assert_eq!(v["pool_elements"][0]["identifier"], id);
    assert_eq!(v["pool_elements"][0]["home_registrar"], 0x1234);
    // The file's resolution limit: the second resolution is refused.
    let e = failure(&resolve());
    assert!(e.contains("Lack of Resources"), "{e}");
    let refused = reg.wait_event("refused");
    assert_eq!(refused["refusal"], "rate_limited");
    assert_eq!(refused["identity"], "psk:pu-1");
}

/// The `code` span a table cell starts with.
fn code(cell: &str) -> Option<&str> {
    let rest = cell.trim_start().strip_prefix('`')?;
    Some(&rest[..rest.find('`')?])
}

#[test]
fn the_documented_defaults_are_the_real_ones() {
    let s = setup();
    // Announcements and the admin API on, for their settings.
    let token = s.path("admin.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    chmod(&token, 0o600);
    let on = format!(
        "{BASE}[announce]\ngroup = \"239.0.0.50:3863\"\n\
         [admin]\nlisten = \"127.0.0.1:3865\"\ntoken_file = \"admin.token\"\n"
    );
    let defaults = json(&s.check(&on, &["--json"]));
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    let doc = std::fs::read_to_string(doc).expect("docs/operations.md");
    let table = doc
        .split("## Registrar options")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .expect("the options table");
    let mut checked = 0;
    for row in table.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let (Some(key), Some(default)) = (
            cells.get(1).and_then(|c| code(c)),
            cells.get(2).and_then(|c| code(c)),
        ) else {
            continue;
        };
        if key == "listen" || key == "json" {
            // Set by this test (the help shows their defaults).
            continue;
        }
        // A TOML value, or a bare duration like 5s.
        let documented = match toml::from_str::<toml::Table>(&format!("v = {default}")) {
            Ok(t) => serde_json::to_value(&t["v"]).unwrap(),
            Err(_) => serde_json::Value::String(default.to_string()),
        };
        let actual = key.split('.').fold(&defaults, |v, k| &v[k]);
        assert_eq!(&documented, actual, "{key}");
        checked += 1;
    }
    assert_eq!(checked, 42);
}

/// The command lines of the systemd unit, with the unit's paths replaced:
/// `/usr/local/bin/rsp` by the binary under test, `/etc/rsp/` by `dir`.
fn unit_commands(dir: &Path) -> Vec<(String, Vec<String>)> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/rsp-registrar.service");
    let text = std::fs::read_to_string(unit).expect("packaging/rsp-registrar.service");
    text.lines()
        .filter_map(|l| {
            let (key, cmd) = l.split_once('=')?;
            // ExecReload is kill(1), not rsp.
            if !key.starts_with("ExecStart") {
                return None;
            }
            let mut words = cmd.split_whitespace();
            assert_eq!(words.next(), Some("/usr/local/bin/rsp"), "{l}");
            let args = words
                .map(|w| w.replace("/etc/rsp/", &format!("{}/", dir.display())))
                .collect();
            Some((key.to_string(), args))
        })
        .collect()
}

#[test]
fn the_systemd_unit_runs_the_shipped_example() {
    let s = setup();
    let text = example_in(s.dir.path());
    s.config(&text);
    let commands = unit_commands(s.dir.path());
    let keys: Vec<&str> = commands.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["ExecStartPre", "ExecStart"]);
    // ExecStartPre checks the configuration, as written in the unit.
    let pre: Vec<&str> = commands[0].1.iter().map(String::as_str).collect();
    assert!(pre.contains(&"--check-config"), "{pre:?}");
    let out = run(&pre);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ExecStart's command line is accepted too (checked, not run: it
    // would bind the ports of the example).
    let mut start: Vec<&str> = commands[1].1.iter().map(String::as_str).collect();
    start.push("--check-config");
    let out = run(&start);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
