//! The admin API over HTTPS (issue 14): `rsp registrar --admin-https`
//! serves it with the registrar's certificate, optionally requiring
//! client certificates (`--admin-client-ca`); the bearer token is needed
//! either way; `rsp status`, `rsp pools` and `rsp apd` take https:// URLs
//! with `--admin-ca` (and `--admin-cert`/`--admin-key`); plain HTTP is
//! for loopback only, on both sides.

mod common;

use common::{arg, failure, json, registrar_certificate, rsp, run, Proc, Setup};

/// A registrar with the lab certificate of `s` (made by
/// `registrar_certificate`) and its admin API on HTTPS (`extra` adds
/// flags); the process, the admin URL and the token file.
fn https_registrar(s: &Setup, extra: &[&str]) -> (Proc, String, String) {
    let token = arg(&s.path("admin.token"));
    assert!(run(&["keygen", "token", "--out", &token]).status.success());
    let mut flags = vec![
        "--cert".to_string(),
        arg(&s.path("registrar-1.pem")),
        "--key".into(),
        arg(&s.path("registrar-1.key")),
        "--admin=127.0.0.1:0".into(),
        "--admin-token-file".into(),
        token.clone(),
        "--admin-https".into(),
    ];
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (reg, _) = s.registrar(&flags);
    let admin = reg.wait_event("admin_listening")["address"]
        .as_str()
        .unwrap()
        .to_string();
    (reg, format!("https://{admin}"), token)
}

#[test]
fn status_and_apd_work_over_https_with_the_registrars_ca_only() {
    let s = Setup::new(&["pe-1"]);
    registrar_certificate(s.dir.path());
    let (_reg, url, token) = https_registrar(&s, &[]);
    let ca = arg(&s.path("ca.pem"));
    let v = json(
        &rsp()
            .args([
                "status",
                "--json",
                "--admin",
                &url,
                "--admin-ca",
                &ca,
                "--token-file",
                &token,
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(v["mode"], "secure", "{v}");
    let o = rsp()
        .args([
            "apd",
            "list",
            "--admin",
            &url,
            "--admin-ca",
            &ca,
            "--token-file",
            &token,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Without the CA the certificate is not trusted.
    let e = failure(
        &rsp()
            .args(["status", "--admin", &url, "--token-file", &token])
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("cannot reach") || e.contains("certificate"),
        "{e}"
    );
    // The token is still needed.
    let other = arg(&s.path("other.token"));
    assert!(run(&["keygen", "token", "--out", &other]).status.success());
    let e = failure(
        &rsp()
            .args([
                "status",
                "--admin",
                &url,
                "--admin-ca",
                &ca,
                "--token-file",
                &other,
            ])
            .output()
            .unwrap(),
    );
    assert!(e.contains("401"), "{e}");
    // Plain http to it: no answer (it speaks TLS).
    let plain = url.replace("https://", "http://");
    let e = failure(
        &rsp()
            .args(["status", "--admin", &plain, "--token-file", &token])
            .output()
            .unwrap(),
    );
    assert!(!e.is_empty());
}

#[test]
fn a_client_certificate_can_be_required() {
    let s = Setup::new(&["pe-1"]);
    registrar_certificate(s.dir.path());
    let dir = arg(s.dir.path());
    let o = run(&["ca", "issue", "--dir", &dir, "operator", "--role", "pu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ca = arg(&s.path("ca.pem"));
    let (_reg, url, token) = https_registrar(&s, &["--admin-client-ca", &ca]);
    let base = [
        "--admin",
        url.as_str(),
        "--admin-ca",
        ca.as_str(),
        "--token-file",
        token.as_str(),
    ];
    // Without a certificate: refused in the handshake.
    let o = rsp().arg("status").args(base).output().unwrap();
    assert!(!o.status.success());
    // With one of the CA: served.
    let (cert, key) = (arg(&s.path("operator.pem")), arg(&s.path("operator.key")));
    let o = rsp()
        .args(["status", "--json"])
        .args(base)
        .args(["--admin-cert", &cert, "--admin-key", &key])
        .output()
        .unwrap();
    assert_eq!(json(&o)["mode"], "secure");
}

#[test]
fn plain_http_is_for_loopback_only() {
    let s = Setup::new(&["pe-1"]);
    let token = arg(&s.path("admin.token"));
    assert!(run(&["keygen", "token", "--out", &token]).status.success());
    let keys = arg(&s.path("registrar.keys"));
    let e = failure(&run(&[
        "registrar",
        "--psk-file",
        &keys,
        "--admin=0.0.0.0:3865",
        "--admin-token-file",
        &token,
        "--check-config",
    ]));
    assert!(e.contains("plain HTTP is for loopback only"), "{e}");
    let e = failure(&run(&[
        "registrar",
        "--psk-file",
        &keys,
        "--admin=127.0.0.1:3865",
        "--admin-token-file",
        &token,
        "--admin-https",
        "--check-config",
    ]));
    assert!(e.contains("tls.cert"), "{e}");
    // The client refuses to send the token in clear to another host.
    let e = failure(
        &rsp()
            .args([
                "status",
                "--admin",
                "http://192.0.2.1:3865",
                "--token-file",
                &token,
            ])
            .output()
            .unwrap(),
    );
    assert!(e.contains("plain http only to loopback"), "{e}");
}
