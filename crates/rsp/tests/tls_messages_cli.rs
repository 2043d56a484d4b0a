//! What `rsp resolve` prints when the registrar does not fit its
//! credentials: the problem, the flag that fixes it, and OpenSSL's words
//! (issue 12). Real `rsp registrar` processes in each configuration.

mod common;

use common::{arg, failure, registrar_certificate, rsp, run, Proc, Setup};

/// A running `rsp registrar` with this `[tls]` section (paths relative to
/// the set-up's directory) and extra flags; its address.
fn registrar(s: &Setup, tls: &str, extra: &[&str]) -> (Proc, String) {
    let file = s.config(&format!(
        "listen = [\"127.0.0.1:0\"]\njson = true\n[tls]\n{tls}"
    ));
    let reg = Proc::spawn(rsp().args(["registrar", "--config", &file]).args(extra));
    let addr = reg.listening_address();
    (reg, addr)
}

/// `rsp resolve echo -r ADDR CREDENTIALS...` fails: its stderr.
fn resolve_fails(addr: &str, credentials: &[&str]) -> String {
    let mut args = vec!["resolve", "echo", "-r", addr];
    args.extend_from_slice(credentials);
    failure(&run(&args))
}

fn assert_names(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{n:?} missing from: {text}");
    }
}

/// Case 1: a PSK client at a registrar with a certificate only.
#[test]
fn a_psk_client_at_a_certificate_only_registrar_is_told_about_ca() {
    let s = Setup::new(&["pu-1"]);
    registrar_certificate(&s.path("ca"));
    let (_reg, addr) = registrar(
        &s,
        "cert = \"ca/registrar-1.pem\"\nkey = \"ca/registrar-1.key\"\n",
        &[],
    );
    let err = resolve_fails(&addr, &["--psk-file", &arg(&s.path("pu-1.key"))]);
    assert_names(
        &err,
        &[
            &format!("rsp: no registrar reachable: {addr}: the registrar did not accept pre-shared key identity \"pu-1\""),
            "give the CA that signed its certificate (--ca FILE)",
            "(OpenSSL: certificate verify failed: unable to get local issuer certificate)",
        ],
    );
}

/// Case 2: certificate clients (with a certificate, and with the CA
/// only) at a registrar with pre-shared keys only.
#[test]
fn certificate_clients_at_a_psk_only_registrar_are_told_about_psk_file() {
    let s = Setup::new(&["pe-1"]);
    let ca = s.path("ca");
    registrar_certificate(&ca);
    let o = run(&["ca", "issue", "--dir", &arg(&ca), "pu-7", "--role", "pu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_reg, addr) = registrar(&s, "psk_files = [\"registrar.keys\"]\n", &[]);
    let ca_file = arg(&ca.join("ca.pem"));
    let (cert, key) = (arg(&ca.join("pu-7.pem")), arg(&ca.join("pu-7.key")));
    for credentials in [
        vec!["--ca", &ca_file, "--cert", &cert, "--key", &key],
        vec!["--ca", &ca_file],
    ] {
        let err = resolve_fails(&addr, &credentials);
        assert_names(
            &err,
            &[
                &format!("rsp: no registrar reachable: {addr}: the registrar accepts pre-shared keys only"),
                "give a key the registrar knows (--psk-file FILE",
                "(OpenSSL: sslv3 alert handshake failure)",
            ],
        );
    }
    // And a plain TCP client: the registrar's TLS refuses its message.
    let err = resolve_fails(&addr, &["--insecure"]);
    assert_names(
        &err,
        &[
            "closed the connection before answering",
            "give --psk-file or --ca instead of --insecure",
        ],
    );
}

/// Case 8: a registrar at its connection limit (a PE holds the only
/// connection) closes new ones at once.
#[test]
fn a_full_registrar_is_named_and_another_registrar_suggested() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let (reg, addr) = registrar(
        &s,
        "psk_files = [\"registrar.keys\"]\n",
        &["--max-connections", "1"],
    );
    let (_pe, _) = s.echo_pe(&addr);
    let err = resolve_fails(&addr, &["--psk-file", &arg(&s.path("pu-1.key"))]);
    assert_names(
        &err,
        &[
            &format!("rsp: no registrar reachable: {addr}: the registrar closed the connection before the TLS handshake finished: it may be at its connection limit (or not speak TLS)"),
            "only this registrar was given: add another one (-r HOST:PORT, repeatable)",
        ],
    );
    // The registrar said why too.
    reg.wait_stderr("connection limit");
}
