//! `rsp pe register` as a process against a real `rsp registrar` (PSK,
//! loopback): it registers a service it does not serve (a listener this
//! test owns), follows a TCP or command health check (deregistered while
//! failing, registered again with the same identifier when it passes),
//! explains a refused --address, and deregisters on SIGTERM.

mod common;

use std::net::TcpListener;
use std::process::Output;

use common::{arg, failure, json, rsp, Proc, Setup};

/// `rsp pe register web -r ADDR` with pe-1's key and `extra` flags.
fn register(s: &Setup, addr: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        rsp()
            .args(["pe", "register", "web", "-r", addr, "--psk-file"])
            .arg(s.path("pe-1.key"))
            .args(extra),
    )
}

/// `rsp resolve web --json` as pu-1.
fn resolve(s: &Setup, addr: &str) -> Output {
    rsp()
        .args(["resolve", "web", "-r", addr, "--json", "--psk-file"])
        .arg(s.path("pu-1.key"))
        .output()
        .expect("rsp resolve runs")
}

/// The PEs of pool "web" as (identifier, address) pairs.
fn resolved(s: &Setup, addr: &str) -> Vec<(u64, String)> {
    let v = json(&resolve(s, addr));
    v["pool_elements"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|pe| {
            let id = pe["identifier"].as_u64().expect("identifier");
            let a = pe["address"].as_str().expect("address").to_string();
            (id, a)
        })
        .collect()
}

/// Pool "web" is not known to the registrar (no PE in it).
fn not_resolved(s: &Setup, addr: &str) {
    let e = failure(&resolve(s, addr));
    assert!(e.contains("unknown"), "{e}");
}

/// A listener on a free loopback port, and the port.
fn service() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = l.local_addr().expect("address").port();
    (l, port)
}

/// The next stdout line containing `text`.
fn wait_line(p: &Proc, text: &str) -> String {
    loop {
        let line = p.line();
        if line.contains(text) {
            return line;
        }
    }
}

#[test]
fn a_running_service_is_registered_with_its_port_and_deregistered_on_sigterm() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let (reg, addr) = s.registrar(&[]);
    let (_service, port) = service();
    let port_arg = port.to_string();
    let mut pe = register(
        &s,
        &addr,
        &["--port", &port_arg, "--policy", "wrr:3", "--json"],
    );
    let registered = pe.wait_event("registered");
    let id = registered["identifier"].as_u64().expect("identifier");
    assert_eq!(registered["port"], port);
    assert_eq!(registered["pool_handle"], "web");
    assert_eq!(registered["policy"], "WRR");
    assert_eq!(reg.wait_event("registered")["identifier"], id);
    assert_eq!(resolved(&s, &addr), vec![(id, format!("127.0.0.1:{port}"))]);

    pe.signal("-TERM");
    let gone = pe.wait_event("deregistered");
    assert_eq!(gone["identifier"], id);
    let (code, err) = pe.exit();
    assert_eq!(code, Some(0), "{err}");
    let removed = reg.wait_event("removed");
    assert_eq!(removed["identifier"], id);
    assert_eq!(removed["reason"], "deregistered");
    not_resolved(&s, &addr);
}

#[test]
fn a_tcp_check_deregisters_a_dead_service_and_registers_it_again() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let (_reg, addr) = s.registrar(&[]);
    // The port stays this test's while nothing listens on it.
    let held = common::HeldPort::new();
    let port = held.port;
    let listener = held.listen();
    let port_arg = port.to_string();
    let pe = register(
        &s,
        &addr,
        &[
            "--port",
            &port_arg,
            "--check-tcp",
            "--check-interval",
            "100ms",
        ],
    );
    let first = wait_line(&pe, " registered in pool \"web\"");
    assert!(
        first.contains(&format!("service on port {port}")),
        "{first}"
    );
    let id = resolved(&s, &addr)[0].0;
    assert!(first.starts_with(&format!("PE {id:#010x} ")), "{first}");

    drop(listener);
    let down = wait_line(&pe, "deregistered");
    assert_eq!(
        down,
        format!(
            "PE {id:#010x} deregistered: health check failed 3 times: \
             connect to 127.0.0.1:{port}: Connection refused"
        )
    );
    not_resolved(&s, &addr);

    let _listener = held.listen();
    let back = wait_line(&pe, "passed in a row");
    assert_eq!(
        back,
        format!("PE {id:#010x}: 2 checks passed in a row; registering again")
    );
    let again = wait_line(&pe, " registered in pool \"web\"");
    assert!(again.starts_with(&format!("PE {id:#010x} ")), "{again}");
    assert_eq!(resolved(&s, &addr), vec![(id, format!("127.0.0.1:{port}"))]);
}

#[test]
fn a_command_check_holds_the_registration_back_until_it_passes() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let (reg, addr) = s.registrar(&[]);
    let ready = s.path("ready");
    let check = format!("test -e {}", arg(&ready));
    let mut pe = register(
        &s,
        &addr,
        &[
            "--port",
            "8080",
            "--check-command",
            &check,
            "--check-interval",
            "100ms",
            "--check-failures",
            "2",
            "--check-successes",
            "1",
            "--json",
        ],
    );
    // Down at start: not registered.
    let failed = pe.wait_event("health_failed");
    assert_eq!(failed["registered"], false);
    assert_eq!(failed["failures"], 1);
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("exit status: 1"),
        "{failed}"
    );
    let id = failed["identifier"].clone();
    not_resolved(&s, &addr);

    std::fs::write(&ready, "").expect("write");
    let recovered = pe.wait_event("health_recovered");
    assert_eq!(recovered["identifier"], id);
    assert_eq!(recovered["passes"], 1);
    let registered = pe.wait_event("registered");
    assert_eq!(registered["identifier"], id);
    assert_eq!(registered["port"], 8080);
    assert_eq!(reg.wait_event("registered")["identifier"], id);
    assert_eq!(
        resolved(&s, &addr),
        vec![(id.as_u64().expect("id"), "127.0.0.1:8080".to_string())]
    );

    std::fs::remove_file(&ready).expect("remove");
    let failed = pe.wait_event("health_failed");
    assert_eq!(failed["registered"], true);
    assert_eq!(failed["failures"], 2);
    let gone = pe.wait_event("deregistered");
    assert_eq!(gone["identifier"], id);
    assert!(
        gone["reason"]
            .as_str()
            .expect("reason")
            .starts_with("health check failed 2 times: "),
        "{gone}"
    );
    assert_eq!(reg.wait_event("removed")["reason"], "deregistered");
    not_resolved(&s, &addr);

    // Deregistered for its health, it just exits on SIGTERM.
    pe.signal("-TERM");
    let (code, err) = pe.exit();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_foreign_address_is_refused_with_the_reason_unless_the_registrar_allows_it() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let (_reg, addr) = s.registrar(&[]);
    let mut pe = register(&s, &addr, &["--port", "80", "--address", "192.0.2.7"]);
    let (code, err) = pe.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Rejected due to security considerations")
            && err.contains("--address 192.0.2.7")
            && err.contains("--allow-foreign-addresses"),
        "{err}"
    );

    let (_reg, addr) = s.registrar(&["--allow-foreign-addresses"]);
    let pe = register(
        &s,
        &addr,
        &["--port", "80", "--address", "192.0.2.7", "--json"],
    );
    let registered = pe.wait_event("registered");
    assert_eq!(registered["address"], "192.0.2.7");
    let id = registered["identifier"].as_u64().expect("identifier");
    assert_eq!(resolved(&s, &addr), vec![(id, "192.0.2.7:80".to_string())]);
}

#[test]
fn bad_flags_are_refused_with_the_reason_before_anything_runs() {
    let s = Setup::new(&["pe-1"]);
    let key = arg(&s.path("pe-1.key"));
    let base = [
        "pe",
        "register",
        "web",
        "-r",
        "127.0.0.1:1",
        "--psk-file",
        &key,
    ];
    let run = |extra: &[&str]| rsp().args(base).args(extra).output().expect("rsp runs");

    let e = failure(&run(&["--port", "0"]));
    assert!(e.contains("0 is not in 1..=65535"), "{e}");
    let e = failure(&run(&["--port", "80", "--check-interval", "1s"]));
    assert!(
        e.contains("--check-tcp") && e.contains("--check-command"),
        "{e}"
    );
    let e = failure(&run(&["--port", "80", "--check-tcp=localhost"]));
    assert!(e.contains("expected HOST:PORT"), "{e}");
    let e = failure(&run(&[
        "--port",
        "80",
        "--check-command",
        "true",
        "--check-interval",
        "0s",
    ]));
    assert!(e.contains("must be longer than 0"), "{e}");
    // Found at start, not when the first check passes (never, here).
    let mut pe = Proc::spawn(rsp().args(base).args([
        "--port",
        "80",
        "--check-command",
        "false",
        "--lifetime",
        "0s",
    ]));
    let (code, e) = pe.exit();
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("registration lifetime"), "{e}");
}
