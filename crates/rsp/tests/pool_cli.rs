//! The suite as processes on loopback, secure mode: `rsp registrar`, `rsp
//! pe` and `rsp resolve --echo`. A PE registers, a PU resolves it and gets
//! its echo; the PE is killed and the registrar removes it after the
//! keep-alive timeout; a PE stopped with SIGTERM deregisters; errors name
//! the file or registrar at fault.

mod common;

use std::process::{Command, Output};

use common::{json, rsp, Setup};

fn resolve(addr: &str, key: &str, extra: &[&str]) -> Output {
    rsp()
        .args(["resolve", "echo", "-r", addr, "--psk-file", key, "--json"])
        .args(extra)
        .output()
        .expect("rsp resolve runs")
}

#[test]
fn a_pe_serves_then_dies_and_is_removed() {
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let (reg, addr) = keys.registrar(&[]);
    let (pe, id) = keys.echo_pe(&addr);
    assert_eq!(reg.wait_event("registered")["identifier"], id);

    let v = json(&resolve(
        &addr,
        &keys.key("pu-1"),
        &["--echo", "hello pool"],
    ));
    assert_eq!(v["pool_elements"][0]["identifier"], id);
    assert_eq!(v["echo"]["identifier"], id);
    assert_eq!(v["echo"]["reply"], "hello pool");

    // Killed without a word: removed after the keep-alive timeout.
    pe.signal("-KILL");
    let removed = reg.wait_event("removed");
    assert_eq!(removed["identifier"], id);
    assert_eq!(removed["reason"], "keep_alive_timeout");
    let o = resolve(&addr, &keys.key("pu-1"), &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown"));
}

#[test]
fn a_pe_stopped_by_sigterm_deregisters() {
    let keys = Setup::new(&["pe-1"]);
    let (reg, addr) = keys.registrar(&[]);
    let (pe, id) = keys.echo_pe(&addr);
    pe.signal("-TERM");
    assert_eq!(pe.wait_event("deregistered")["identifier"], id);
    let removed = reg.wait_event("removed");
    assert_eq!(removed["reason"], "deregistered");
}

#[test]
fn errors_name_what_is_wrong() {
    let keys = Setup::new(&["pe-1", "stranger"]);
    let (_reg, addr) = keys.registrar(&[]);
    // A missing key file.
    let o = resolve(&addr, "/nonexistent/pu.key", &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/pu.key"));
    // An unreachable registrar (a port nobody listens on).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let o = resolve(&free, &keys.key("pe-1"), &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&free), "{err}");
    // A key the registrar does not know.
    let other = tempfile::tempdir().expect("tempdir");
    let unknown = other.path().join("mallory.key");
    rserpool_security::Psk::generate("mallory")
        .expect("key")
        .write_new(&unknown)
        .expect("write");
    let o = resolve(&addr, &unknown.display().to_string(), &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&addr) && err.contains("handshake"), "{err}");
}

/// `curl` (software we did not write) fetches an admin API path.
fn curl(url: &str, token: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-w", "\n%{http_code}", "--max-time", "10", url]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let o = c.output().expect("curl runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).expect("UTF-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status code"), body.to_string())
}

/// The metric's value in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_registrar_process_serves_its_admin_api_and_metrics() {
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let token_file = keys.path("admin.token");
    let o = rsp()
        .args(["keygen", "token", "--out"])
        .arg(&token_file)
        .output()
        .expect("keygen runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = std::fs::read_to_string(&token_file).expect("token");
    let token = token.trim();
    let token_arg = token_file.display().to_string();
    let (reg, addr) = keys.registrar(&["--admin=127.0.0.1:0", "--admin-token-file", &token_arg]);
    let admin = format!(
        "http://{}",
        reg.wait_event("admin_listening")["address"]
            .as_str()
            .expect("admin address")
    );
    let (pe, id) = keys.echo_pe(&addr);
    assert_eq!(reg.wait_event("registered")["identifier"], id);

    // Without the token: 401, and nothing else.
    let (code, body) = curl(&format!("{admin}/metrics"), None);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("rserpool_registrar_pool_elements"));

    let (code, text) = curl(&format!("{admin}/metrics"), Some(token));
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        metric(&text, "rserpool_registrar_registrations_total"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "rserpool_registrar_pool_elements"), Some(1.0));
    assert_eq!(metric(&text, "rserpool_registrar_pools"), Some(1.0));
    assert_eq!(
        metric(&text, "rserpool_registrar_admin_auth_failures_total"),
        Some(1.0)
    );

    let (code, body) = curl(&format!("{admin}/v1/handlespace"), Some(token));
    assert_eq!(code, 200, "{body}");
    let hs: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let pe_json = &hs["pools"][0]["pool_elements"][0];
    assert_eq!(pe_json["identifier"], id, "{hs}");
    assert_eq!(pe_json["identity"], "psk:pe-1", "{hs}");

    let status = rsp()
        .args(["status", "--admin", &admin, "--token-file"])
        .arg(&token_file)
        .arg("--json")
        .output()
        .expect("status runs");
    let v = json(&status);
    assert_eq!(v["pool_elements"], 1, "{v}");
    assert_eq!(v["core"]["registrations"], 1, "{v}");

    // A crash: the keep-alive failure shows in the metrics.
    pe.signal("-KILL");
    assert_eq!(reg.wait_event("removed")["reason"], "keep_alive_timeout");
    let (_, text) = curl(&format!("{admin}/metrics"), Some(token));
    assert_eq!(
        metric(&text, "rserpool_registrar_keep_alive_failures_total"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "rserpool_registrar_pool_elements"), Some(0.0));
}
