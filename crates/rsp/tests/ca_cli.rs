//! `rsp ca init|issue` as processes: file modes, no overwriting, the
//! certificates checked by `openssl verify` (software we did not write)
//! for their purposes, and a registrar, a PE and a PU using them over TLS.

mod common;

use std::path::Path;
use std::process::Command;

use common::{arg, chmod, failure, json, mode, rsp, run, Proc};

fn openssl_verify(ca: &Path, purpose: &str, cert: &Path) -> (bool, String) {
    let o = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &arg(ca),
            "-purpose",
            purpose,
            &arg(cert),
        ])
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// `rsp ca init --dir DIR --json`.
fn init(dir: &Path) -> serde_json::Value {
    json(&run(&["ca", "init", "--dir", &arg(dir), "--json"]))
}

/// `rsp ca issue --dir DIR NAME ARGS... --json`.
fn issue(dir: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let d = arg(dir);
    let mut all = vec!["ca", "issue", "--dir", &d, name, "--json"];
    all.extend_from_slice(args);
    json(&run(&all))
}

#[test]
fn init_makes_a_private_directory_and_never_overwrites() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab-ca");
    let v = init(&dir);
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    assert_eq!(v["certificate"], arg(&cert));
    assert_eq!(v["key"], arg(&key));
    assert_eq!(v["name"], "rsp lab CA");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&cert), 0o644);
    assert_eq!(mode(&key), 0o600);
    let before = std::fs::read(&key).unwrap();

    let e = failure(&run(&["ca", "init", "--dir", &arg(&dir)]));
    assert!(e.contains(&arg(&cert)) && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // --force replaces the CA; the key is still private.
    chmod(&key, 0o640);
    json(&run(&[
        "ca",
        "init",
        "--dir",
        &arg(&dir),
        "--name",
        "other CA",
        "--force",
        "--json",
    ]));
    assert_ne!(std::fs::read(&key).unwrap(), before);
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn openssl_verifies_issued_certificates_for_their_purpose() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    init(dir);
    let ca = dir.join("ca.pem");
    let reg = issue(
        dir,
        "registrar-1",
        &[
            "--role",
            "registrar",
            "--dns",
            "registrar.test",
            "--ip",
            "127.0.0.1",
        ],
    );
    let out = t.path().join("pes");
    let pe = issue(
        dir,
        "pe-1",
        &["--role", "pe", "--out", &arg(&out), "--days", "30"],
    );
    let pu = issue(dir, "pu-1", &["--role", "pu"]);
    assert_eq!(reg["role"], "registrar");
    assert_eq!(reg["certificate"], arg(&dir.join("registrar-1.pem")));
    assert_eq!(pe["certificate"], arg(&out.join("pe-1.pem")));
    assert_eq!(pe["key"], arg(&out.join("pe-1.key")));
    assert_eq!(pu["ca"], arg(&ca));

    let reg_cert = dir.join("registrar-1.pem");
    let pe_cert = out.join("pe-1.pem");
    let pu_cert = dir.join("pu-1.pem");
    for (cert, purpose) in [
        (&reg_cert, "sslserver"),
        (&reg_cert, "sslclient"),
        (&pe_cert, "sslclient"),
        (&pu_cert, "sslclient"),
    ] {
        let (ok, text) = openssl_verify(&ca, purpose, cert);
        assert!(ok && text.contains(": OK"), "{purpose}: {text}");
    }
    // A PE or PU certificate is no server certificate.
    let (ok, text) = openssl_verify(&ca, "sslserver", &pe_cert);
    assert!(!ok, "{text}");
    // Another CA does not vouch for them.
    let other = t.path().join("other");
    init(&other);
    let (ok, _) = openssl_verify(&other.join("ca.pem"), "sslserver", &reg_cert);
    assert!(!ok);

    // The names are in the certificate.
    let o = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
        ])
        .arg(&reg_cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("DNS:registrar.test"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");

    for key in [
        dir.join("registrar-1.key"),
        out.join("pe-1.key"),
        dir.join("pu-1.key"),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert_eq!(mode(&pe_cert), 0o644);
    assert_eq!(mode(&out), 0o700);
    // Issuing the same name again is refused.
    let d = arg(dir);
    let e = failure(&run(&["ca", "issue", "--dir", &d, "pu-1", "--role", "pu"]));
    assert!(e.contains("pu-1.pem") && e.contains("--force"), "{e}");
}

#[test]
fn issue_errors_name_what_is_wrong() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let d = arg(dir);
    // No CA yet.
    let e = failure(&run(&["ca", "issue", "--dir", &d, "pe-1"]));
    assert!(e.contains(&arg(&dir.join("ca.pem"))), "{e}");
    init(dir);
    // A registrar certificate without a name to check.
    let e = failure(&run(&[
        "ca",
        "issue",
        "--dir",
        &d,
        "r",
        "--role",
        "registrar",
    ]));
    assert!(e.contains("--dns") && e.contains("--ip"), "{e}");
    // A name that is no file name.
    let e = failure(&run(&["ca", "issue", "--dir", &d, "../evil"]));
    assert!(e.contains("../evil"), "{e}");
    let e = failure(&run(&[
        "ca",
        "issue",
        "--dir",
        &d,
        "x",
        "--dns",
        "not a name",
    ]));
    assert!(e.contains("not a name"), "{e}");
    // A CA key others can read.
    chmod(&dir.join("ca.key"), 0o644);
    let e = failure(&run(&["ca", "issue", "--dir", &d, "pe-1"]));
    assert!(e.contains("ca.key") && e.contains("chmod 600"), "{e}");
}

#[test]
fn a_registrar_pe_and_pu_work_with_issued_certificates() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    init(dir);
    issue(
        dir,
        "registrar-1",
        &["--role", "registrar", "--ip", "127.0.0.1"],
    );
    issue(dir, "pe-1", &["--role", "pe"]);
    let f = |name: &str| arg(&dir.join(name));
    let reg = Proc::spawn(rsp().args([
        "registrar",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        &f("registrar-1.pem"),
        "--key",
        &f("registrar-1.key"),
        "--client-ca",
        &f("ca.pem"),
        "--json",
    ]));
    let addr = reg.listening_address();
    // The PE authenticates with its certificate.
    let pe = Proc::spawn(rsp().args([
        "pe",
        "echo",
        "-r",
        &addr,
        "--ca",
        &f("ca.pem"),
        "--cert",
        &f("pe-1.pem"),
        "--key",
        &f("pe-1.key"),
        "--json",
    ]));
    let id = pe.wait_event("registered")["identifier"].clone();
    let registered = reg.wait_event("registered");
    assert_eq!(registered["identifier"], id);
    assert_eq!(registered["identity"], "cert:pe-1");
    // A PU with only the CA certificate verifies the registrar and resolves.
    let v = json(&run(&[
        "resolve",
        "echo",
        "-r",
        &addr,
        "--ca",
        &f("ca.pem"),
        "--json",
    ]));
    assert_eq!(v["pool_elements"][0]["identifier"], id);
    // A PU trusting another CA refuses the registrar.
    let other = dir.join("other");
    init(&other);
    let e = failure(&run(&[
        "resolve",
        "echo",
        "-r",
        &addr,
        "--ca",
        &arg(&other.join("ca.pem")),
    ]));
    assert!(e.contains(&addr), "{e}");
}

/// `rsp registrar` with its certificate in a cluster, the database
/// `apd.toml` of `dir`, and `peers` to dial: the process, ASAP and ENRP
/// addresses.
fn cert_registrar(dir: &Path, name: &str, peers: &[&str]) -> (Proc, String, String) {
    let f = |n: &str| arg(&dir.join(n));
    let mut cmd = rsp();
    cmd.args(["registrar", "--listen", "127.0.0.1:0"])
        .args(["--cert", &f(&format!("{name}.pem"))])
        .args(["--key", &f(&format!("{name}.key"))])
        .args(["--client-ca", &f("ca.pem"), "--apd", &f("apd.toml")])
        .args(["--enrp-listen", "127.0.0.1:0", "--json"]);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    let reg = Proc::spawn(&mut cmd);
    let asap = reg.listening_address();
    let enrp = reg.wait_event("enrp_listening")["address"]
        .as_str()
        .expect("an address")
        .to_string();
    (reg, asap, enrp)
}

#[test]
fn registrars_peer_with_their_certificates_and_a_pe_certificate_cannot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    init(dir);
    for name in ["reg-a", "reg-b"] {
        issue(dir, name, &["--role", "registrar", "--ip", "127.0.0.1"]);
    }
    issue(dir, "pe-1", &["--role", "pe"]);
    std::fs::write(
        dir.join("apd.toml"),
        r#"
[[entry]]
name = "registrars"
action = "allow"
namespace = "cert"
identity = "reg-*"
roles = ["registrar"]

[[entry]]
name = "pes"
action = "allow"
namespace = "cert"
identity = "pe-*"
roles = ["pe", "pu"]
pools = ["echo"]
"#,
    )
    .unwrap();
    let f = |name: &str| arg(&dir.join(name));
    // Without a database, no certificate may be a registrar: refused.
    let e = failure(&run(&[
        "registrar",
        "--cert",
        &f("reg-a.pem"),
        "--key",
        &f("reg-a.key"),
        "--client-ca",
        &f("ca.pem"),
        "--peer",
        "127.0.0.1:9902",
        "--check-config",
    ]));
    assert!(e.contains("--apd"), "{e}");

    let (a, a_asap, a_enrp) = cert_registrar(dir, "reg-a", &[]);
    let (b, b_asap, _) = cert_registrar(dir, "reg-b", &[&a_enrp]);
    // Each knows the other by its certificate (mutual TLS, RFC 5355 2.5).
    assert_eq!(a.wait_event("peer_up")["identity"], "cert:reg-b");
    assert_eq!(b.wait_event("peer_up")["identity"], "cert:reg-a");
    b.wait_event("table_synced");
    let pe = Proc::spawn(rsp().args([
        "pe",
        "echo",
        "-r",
        &a_asap,
        "--ca",
        &f("ca.pem"),
        "--cert",
        &f("pe-1.pem"),
        "--key",
        &f("pe-1.key"),
        "--json",
    ]));
    let id = pe.wait_event("registered")["identifier"].clone();
    let resolve_at_b = || {
        json(&run(&[
            "resolve",
            "echo",
            "-r",
            &b_asap,
            "--ca",
            &f("ca.pem"),
            "--cert",
            &f("pe-1.pem"),
            "--key",
            &f("pe-1.key"),
            "--json",
        ]))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while resolve_at_b()["pool_elements"][0]["identifier"] != id {
        assert!(
            std::time::Instant::now() < deadline,
            "the PE never reached B"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A PE's certificate (the database gives it no registrar role) that
    // dials A's ENRP listener as a registrar is refused, and changes
    // nothing.
    std::fs::copy(dir.join("pe-1.pem"), dir.join("rogue.pem")).unwrap();
    std::fs::copy(dir.join("pe-1.key"), dir.join("rogue.key")).unwrap();
    let (rogue, _, _) = cert_registrar(dir, "rogue", &[&a_enrp]);
    let refused = a.wait_event("refused");
    assert_eq!(refused["identity"], "cert:pe-1", "{refused}");
    drop(rogue);
    assert_eq!(resolve_at_b()["pool_elements"][0]["identifier"], id);
}
