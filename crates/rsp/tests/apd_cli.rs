//! The authorised peer database end to end, with real processes: `rsp
//! apd init` writes a strict file, `rsp registrar --apd` enforces it
//! (the attack of issue 14: any PE key joining pool "echo" and taking
//! other pools' names first), `rsp apd list|add|insert|move|modify|delete`
//! change it through the admin API and report what the registrar
//! removed, the file is written back, SIGHUP reads it again, and the old
//! `allow_foreign_addresses` switch and insecure mode are refused with
//! it.

mod common;

use std::process::Output;

use common::{arg, failure, json, rsp, run, Proc, Setup};

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A registrar with the database at `apd`, its admin API on a free
/// port: the process, its ASAP address and the admin flags.
fn registrar(s: &Setup, apd: &str) -> (Proc, String, Vec<String>) {
    let token = arg(&s.path("admin.token"));
    if !s.path("admin.token").exists() {
        stdout(&run(&["keygen", "token", "--out", &token]));
    }
    let (reg, addr) = s.registrar(&[
        "--apd",
        apd,
        "--admin=127.0.0.1:0",
        "--admin-token-file",
        &token,
    ]);
    let admin = reg.wait_event("admin_listening")["address"]
        .as_str()
        .expect("admin address")
        .to_string();
    (
        reg,
        addr,
        vec!["--admin".into(), admin, "--token-file".into(), token],
    )
}

/// `rsp apd ARGS... ADMIN...`.
fn apd(args: &[&str], admin: &[String]) -> Output {
    rsp()
        .arg("apd")
        .args(args)
        .args(admin)
        .output()
        .expect("rsp")
}

/// `rsp pe echo POOL` with `id`'s key: the process.
fn pe(s: &Setup, addr: &str, id: &str, pool: &str) -> Proc {
    Proc::spawn(rsp().args(["pe", pool, "-r", addr, "--psk-file", &s.key(id), "--json"]))
}

#[test]
fn a_strict_database_confines_each_key_and_changes_report_what_they_remove() {
    let s = Setup::new(&["pe-echo", "pe-db", "pu-echo"]);
    let db = arg(&s.path("apd.toml"));
    // pe-echo may register in echo only, pe-db in db only, pu-echo
    // resolve echo only.
    let out = stdout(&run(&[
        "apd",
        "init",
        "--grant",
        "psk:pe-echo=pe",
        "--grant",
        "psk:pe-db=pe",
        "--grant",
        "psk:pu-echo=pu",
        "--output",
        &db,
    ]));
    assert!(out.contains("wrote 4 entries"), "{out}");
    // Confine the PE keys to their pools (modify the generated entries
    // in the file: `rsp apd check` reads it back).
    let text = std::fs::read_to_string(s.path("apd.toml")).unwrap();
    let text = text
        .replacen(
            "identity = \"pe-echo\"\nroles = [\"pe\"]\npools = [\"*\"]",
            "identity = \"pe-echo\"\nroles = [\"pe\"]\npools = [\"echo\"]",
            1,
        )
        .replacen(
            "identity = \"pe-db\"\nroles = [\"pe\"]\npools = [\"*\"]",
            "identity = \"pe-db\"\nroles = [\"pe\"]\npools = [\"db\"]",
            1,
        )
        .replacen(
            "identity = \"pu-echo\"\nroles = [\"pu\"]\npools = [\"*\"]",
            "identity = \"pu-echo\"\nroles = [\"pu\"]\npools = [\"echo\"]",
            1,
        );
    std::fs::write(s.path("apd.toml"), text).unwrap();
    let checked = stdout(&run(&["apd", "check", &db]));
    assert!(checked.contains("valid, 4 entries"), "{checked}");

    let (_reg, addr, admin) = registrar(&s, &db);
    let echo = pe(&s, &addr, "pe-echo", "echo");
    let echo_id = echo.wait_event("registered")["identifier"]
        .as_u64()
        .unwrap();
    // The attack: pe-db's key tries to join echo. Refused, with the
    // reason; the legitimate PE is alone in the pool.
    let mut intruder = pe(&s, &addr, "pe-db", "echo");
    intruder.wait_stderr("Rejected due to security considerations");
    intruder.signal("-TERM");
    let _ = intruder.exit();
    let resolved = json(
        &rsp()
            .args([
                "resolve",
                "echo",
                "-r",
                &addr,
                "--psk-file",
                &s.key("pu-echo"),
                "--json",
            ])
            .output()
            .unwrap(),
    );
    let ids: Vec<u64> = resolved["pool_elements"]
        .as_array()
        .expect("PEs")
        .iter()
        .map(|p| p["identifier"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![echo_id]);
    // pu-echo may not see db (whether it exists or not).
    let o = rsp()
        .args([
            "resolve",
            "db",
            "-r",
            &addr,
            "--psk-file",
            &s.key("pu-echo"),
        ])
        .output()
        .unwrap();
    assert!(
        failure(&o).contains("Rejected due to security considerations"),
        "{}",
        failure(&o)
    );

    // list: the four entries in order.
    let list = stdout(&apd(&["list"], &admin));
    assert!(list.contains("4 entries"), "{list}");
    assert!(list.contains("allow-psk-pe-echo"), "{list}");
    let v = json(&apd(&["list", "--json"], &admin));
    assert_eq!(v["entries"].as_array().unwrap().len(), 4);
    assert_eq!(v["entries"][3]["name"], "deny-everyone-else");

    // add after the closing deny: never decides (nothing removed).
    let out = stdout(&apd(
        &[
            "add",
            "--name",
            "late",
            "--identity",
            "pe-db",
            "--roles",
            "pe",
        ],
        &admin,
    ));
    assert!(
        out.starts_with("added (position 4); the database has 5 entries, written to"),
        "{out}"
    );
    // insert, move, modify: each answered with what it did.
    let out = stdout(&apd(
        &[
            "insert",
            "0",
            "--name",
            "pu-db",
            "--identity",
            "pu-echo",
            "--roles",
            "pu",
            "--pools",
            "db",
        ],
        &admin,
    ));
    assert!(out.starts_with("inserted (position 0)"), "{out}");
    let out = stdout(&apd(&["move", "pu-db", "3"], &admin));
    assert!(out.starts_with("moved (position 3)"), "{out}");
    let out = stdout(&apd(
        &[
            "modify",
            "late",
            "--name",
            "late2",
            "--identity",
            "pe-db",
            "--roles",
            "pe",
        ],
        &admin,
    ));
    assert!(out.starts_with("modified (position 5)"), "{out}");
    // An invalid change changes nothing and says why.
    let o = apd(&["move", "late2", "99"], &admin);
    assert!(
        failure(&o).contains("position 99 is out of range"),
        "{}",
        failure(&o)
    );
    let o = apd(&["delete", "nothere"], &admin);
    assert!(
        failure(&o).contains("no entry named \"nothere\""),
        "{}",
        failure(&o)
    );

    // delete pe-echo's entry: its PE is removed, and the answer says so.
    let v = json(&apd(&["delete", "allow-psk-pe-echo", "--json"], &admin));
    assert_eq!(v["change"], "deleted");
    let removed = v["pes_removed"].as_array().expect("removed");
    assert_eq!(removed.len(), 1, "{v}");
    assert_eq!(removed[0]["identifier"].as_u64(), Some(echo_id));
    assert_eq!(removed[0]["identity"], "psk:pe-echo");
    // The file holds the change (written before it applied).
    let written = std::fs::read_to_string(s.path("apd.toml")).unwrap();
    assert!(!written.contains("allow-psk-pe-echo"), "{written}");
    assert!(written.contains("late2"), "{written}");
}

#[test]
fn sighup_reads_the_database_again_and_a_bad_file_changes_nothing() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let db = arg(&s.path("apd.toml"));
    stdout(&run(&[
        "apd",
        "init",
        "--psk-file",
        &arg(&s.path("registrar.keys")),
        "--roles",
        "pe,pu",
        "--output",
        &db,
    ]));
    let (reg, addr, admin) = registrar(&s, &db);
    let p = pe(&s, &addr, "pe-1", "echo");
    p.wait_event("registered");

    // A broken file: the reload fails and names the line; nothing changed.
    std::fs::write(s.path("apd.toml"), "[[entry]]\nname = 7\n").unwrap();
    reg.signal("-HUP");
    let r = reg.wait_event("reload_failed");
    assert!(r["error"].as_str().unwrap().contains("line 2"), "{r}");
    let v = json(&apd(&["list", "--json"], &admin));
    assert_eq!(v["entries"].as_array().unwrap().len(), 3);

    // A file that no longer allows pe-1: its PE goes at the reload.
    stdout(&run(&[
        "apd",
        "init",
        "--grant",
        "psk:pu-1=pu",
        "--output",
        &db,
        "--force",
    ]));
    reg.signal("-HUP");
    let r = reg.wait_event("reloaded");
    assert_eq!(r["apd"]["entries"], 2, "{r}");
    assert_eq!(r["apd"]["pes_removed"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn the_old_switch_and_insecure_mode_are_refused_with_a_database() {
    let s = Setup::new(&["pe-1"]);
    let db = arg(&s.path("apd.toml"));
    stdout(&run(&[
        "apd",
        "init",
        "--grant",
        "psk:pe-1=pe",
        "--output",
        &db,
    ]));
    // init refuses to overwrite without --force.
    let o = run(&["apd", "init", "--grant", "psk:pe-1=pe", "--output", &db]);
    assert!(failure(&o).contains("--force"), "{}", failure(&o));
    let keys = arg(&s.path("registrar.keys"));
    let o = run(&[
        "registrar",
        "--psk-file",
        &keys,
        "--apd",
        &db,
        "--allow-foreign-addresses",
        "--check-config",
    ]);
    let e = failure(&o);
    assert!(
        e.contains("--allow-foreign-addresses: is replaced by the authorised peer database")
            && e.contains("addresses = [\"any\"]"),
        "{e}"
    );
    let o = run(&["registrar", "--insecure", "--apd", &db, "--check-config"]);
    assert!(failure(&o).contains("needs secure mode"), "{}", failure(&o));
    // A config file with the switch and no database migrates: the
    // permissive default with any address, said in the summary.
    let o = s.check("allow_foreign_addresses = true\n", &["--psk-file", &keys]);
    let out = stdout(&o);
    assert!(out.contains("registering any address"), "{out}");
    let o = s.check(&format!("apd = {db:?}\n"), &["--psk-file", &keys, "--json"]);
    let v = json(&o);
    assert_eq!(v["apd"], db.as_str(), "{v}");
    assert_eq!(v["apd_entries"], 2, "{v}");
}
