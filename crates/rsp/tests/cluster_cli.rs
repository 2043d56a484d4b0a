//! `rsp registrar` in a cluster (processes on loopback): two registrars
//! with their own keys find each other from `--peer`, a PE registered
//! at one resolves at the other, a restarted one downloads the table
//! again, and the settings say what the cluster is.

mod common;

use std::path::Path;

use common::*;

/// Write a key file for registrar `name` in `dir`.
fn registrar_key(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.key"));
    rserpool_security::Psk::generate(name)
        .expect("key")
        .write_new(&path)
        .expect("write");
    arg(&path)
}

/// `rsp registrar` `name`, knowing `peer_key`, dialling `peers`: the
/// process, its ASAP and its ENRP address.
fn registrar(keys: &Setup, name: &str, peer_key: &str, peers: &[&str]) -> (Proc, String, String) {
    let own = arg(&keys.path(&format!("{name}.key")));
    let mut cmd = rsp();
    cmd.args(["registrar", "--listen", "127.0.0.1:0", "--psk-file"])
        .arg(keys.path("registrar.keys"))
        .args(["--enrp-listen", "127.0.0.1:0", "--enrp-psk-file", &own])
        .args(["--peer-psk-file", peer_key, "--json"]);
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

fn resolve_at(keys: &Setup, addr: &str) -> serde_json::Value {
    let o = rsp()
        .args(["resolve", "echo", "-r", addr, "--psk-file"])
        .arg(keys.key("pu-1"))
        .args(["--json", "--echo", "hello"])
        .output()
        .expect("rsp resolve runs");
    json(&o)
}

#[test]
fn a_pe_registered_at_one_registrar_resolves_at_its_peer() {
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let a_key = registrar_key(keys.dir.path(), "reg-a");
    let b_key = registrar_key(keys.dir.path(), "reg-b");
    let (a, a_asap, a_enrp) = registrar(&keys, "reg-a", &b_key, &[]);
    let (b, b_asap, _) = registrar(&keys, "reg-b", &a_key, &[&a_enrp]);
    // A knows B by the key B dialled with; B knows A as a holder of its
    // own key (TLS PSK names the client only).
    let up = a.wait_event("peer_up");
    assert_eq!(up["identity"], "psk:reg-b");
    b.wait_event("peer_up");
    let (_pe, id) = keys.echo_pe(&a_asap);
    // Updates travel at once; the resolution at B finds the PE.
    let v = loop_until(|| {
        let v = resolve_at(&keys, &b_asap);
        (v["pool_elements"][0]["identifier"] == id).then_some(v)
    });
    assert_eq!(v["echo"]["reply"], "hello");

    // B restarts and downloads the table from A.
    drop(b);
    let (b, b_asap, _) = registrar(&keys, "reg-b", &a_key, &[&a_enrp]);
    b.wait_event("table_synced");
    let v = resolve_at(&keys, &b_asap);
    assert_eq!(v["pool_elements"][0]["identifier"], id);
}

#[test]
fn the_settings_show_the_cluster_and_a_peer_needs_the_registrars_own_key() {
    let keys = Setup::new(&["pe-1"]);
    let b_key = registrar_key(keys.dir.path(), "reg-b");
    let o = run(&[
        "registrar",
        "--psk-file",
        &arg(&keys.path("registrar.keys")),
        "--peer",
        "127.0.0.1:9902",
        "--peer-psk-file",
        &b_key,
        "--check-config",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--enrp-psk-file"), "{err}");
    let a_key = registrar_key(keys.dir.path(), "reg-a");
    let o = run(&[
        "registrar",
        "--psk-file",
        &arg(&keys.path("registrar.keys")),
        "--peer",
        "127.0.0.1:9902",
        "--enrp-psk-file",
        &a_key,
        "--peer-psk-file",
        &b_key,
        "--check-config",
        "--json",
    ]);
    let v = json(&o);
    assert_eq!(v["peers"], serde_json::json!(["127.0.0.1:9902"]));
    assert_eq!(v["enrp"]["listen"], serde_json::json!(["0.0.0.0:9902"]));
    assert_eq!(v["enrp"]["psk_file"], serde_json::json!(a_key));
}

/// Retry `f` until it gives a value, within the tests' limit.
fn loop_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "not within {LIMIT:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
