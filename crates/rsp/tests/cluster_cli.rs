//! `rsp registrar` in a cluster (processes on loopback): two registrars
//! with their own keys find each other from `--peer`, a PE registered
//! at one resolves at the other, a restarted one downloads the table
//! again, and the settings say what the cluster is.

mod common;

use common::*;

/// The cluster tests start three registrars and their PEs each: one at a
/// time, so that on a small machine their timers are not starved.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// `rsp registrar` `name`, knowing `peer_key`, dialling `peers`: the
/// process, its ASAP and its ENRP address.
fn registrar(keys: &Setup, name: &str, peer_key: &str, peers: &[&str]) -> (Proc, String, String) {
    registrar_of(keys, name, &[peer_key], peers)
}

/// The same with several peer keys.
fn registrar_of(
    keys: &Setup,
    name: &str,
    peer_keys: &[&str],
    peers: &[&str],
) -> (Proc, String, String) {
    let own = arg(&keys.path(&format!("{name}.key")));
    let mut cmd = rsp();
    cmd.args(["registrar", "--listen", "127.0.0.1:0", "--psk-file"])
        .arg(keys.path("registrar.keys"))
        .args(["--enrp-listen", "127.0.0.1:0", "--enrp-psk-file", &own])
        .arg("--json");
    for k in peer_keys {
        cmd.args(["--peer-psk-file", k]);
    }
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
    let _serial = one_at_a_time();
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
    let _serial = one_at_a_time();
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
    assert!(v["enrp"]["multicast"].is_null());
    // The multicast channel is off unless given; given, the registrar
    // is in a cluster (its ENRP listener opens) with no peer listed.
    let o = run(&[
        "registrar",
        "--psk-file",
        &arg(&keys.path("registrar.keys")),
        "--enrp-psk-file",
        &a_key,
        "--enrp-multicast",
        "239.0.0.51:9901",
        "--check-config",
        "--json",
    ]);
    let v = json(&o);
    assert_eq!(v["enrp"]["multicast"], "239.0.0.51:9901");
    assert_eq!(v["enrp"]["listen"], serde_json::json!(["0.0.0.0:9902"]));
}

/// Retry `f` until it gives a value, within the tests' limit.
fn loop_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop_until_seen(|| f().ok_or(()))
}

/// Retry `f` until it gives `Ok`, within the tests' limit; on timeout the
/// panic shows the last `Err`, what was seen instead.
fn loop_until_seen<T, S: std::fmt::Debug>(mut f: impl FnMut() -> Result<T, S>) -> T {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "not within {LIMIT:?}; last seen: {seen:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Three registrars with a key each, each knowing the others' keys; B
/// dials A, C dials A and B; both downloaded the table.
struct Three {
    a: Proc,
    a_asap: String,
    b_asap: String,
    c_asap: String,
    _b: Proc,
    _c: Proc,
}

fn three_registrars(keys: &Setup) -> Three {
    let k: Vec<String> = ["reg-a", "reg-b", "reg-c"]
        .iter()
        .map(|n| registrar_key(keys.dir.path(), n))
        .collect();
    let (a, a_asap, a_enrp) = registrar_of(keys, "reg-a", &[&k[1], &k[2]], &[]);
    let (b, b_asap, b_enrp) = registrar_of(keys, "reg-b", &[&k[0], &k[2]], &[&a_enrp]);
    let (c, c_asap, _) = registrar_of(keys, "reg-c", &[&k[0], &k[1]], &[&a_enrp, &b_enrp]);
    for r in [&b, &c] {
        r.wait_event("table_synced");
    }
    Three {
        a,
        a_asap,
        b_asap,
        c_asap,
        _b: b,
        _c: c,
    }
}

/// The PEs of pool `echo` a resolution at `addr` returns: identifier and
/// home.
fn pes_and_homes(keys: &Setup, addr: &str) -> Vec<(u64, u64)> {
    let o = rsp()
        .args(["resolve", "echo", "-r", addr, "--psk-file"])
        .arg(keys.key("pu-1"))
        .args(["--json", "--items", "32"])
        .output()
        .expect("rsp resolve runs");
    if !o.status.success() {
        return Vec::new();
    }
    let v = json(&o);
    let mut pes: Vec<(u64, u64)> = v["pool_elements"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["identifier"].as_u64()?, p["home_registrar"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    pes.sort_unstable();
    pes
}

#[test]
fn a_killed_registrars_pes_are_taken_over_and_re_home_and_none_is_lost() {
    let _serial = one_at_a_time();
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let Three {
        a,
        a_asap,
        b_asap,
        c_asap,
        // Kept running to the end of the test.
        _b: _b_runs,
        _c: _c_runs,
    } = three_registrars(&keys);
    // Three PEs that know all three registrars register at the first.
    let list = format!("{a_asap},{b_asap},{c_asap}");
    let mut ids = Vec::new();
    let mut pes = Vec::new();
    for _ in 0..3 {
        let pe = Proc::spawn(rsp().args([
            "pe",
            "echo",
            "-r",
            &list,
            "--psk-file",
            &keys.key("pe-1"),
            "--json",
        ]));
        ids.push(
            pe.wait_event("registered")["identifier"]
                .as_u64()
                .expect("id"),
        );
        pes.push(pe);
    }
    ids.sort_unstable();
    let at_c = loop_until(|| {
        let p = pes_and_homes(&keys, &c_asap);
        (p.len() == 3).then_some(p)
    });
    let a_home = at_c[0].1;
    assert!(
        at_c.iter().all(|&(_, h)| h == a_home),
        "all homed at A: {at_c:?}"
    );

    a.signal("-KILL");
    // The survivors take A's PEs over; the PEs, their connection reset,
    // re-register with the next registrar of their list. At the end both
    // survivors hand out all three, homed at a live registrar, the same.
    let settled = loop_until(|| {
        let (at_b, at_c) = (pes_and_homes(&keys, &b_asap), pes_and_homes(&keys, &c_asap));
        let ok = at_b.len() == 3 && at_b == at_c && at_b.iter().all(|&(_, h)| h != a_home);
        ok.then_some(at_b)
    });
    assert_eq!(
        settled.iter().map(|p| p.0).collect::<Vec<_>>(),
        ids,
        "none lost"
    );
    // And they answer.
    let o = rsp()
        .args(["resolve", "echo", "-r", &b_asap, "--psk-file"])
        .arg(keys.key("pu-1"))
        .args(["--json", "--echo", "still here"])
        .output()
        .expect("rsp resolve runs");
    assert_eq!(json(&o)["echo"]["reply"], "still here");
}

#[test]
fn a_frozen_registrar_is_taken_over_within_the_silence_bound_and_its_pes_stay_served() {
    let _serial = one_at_a_time();
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let Three {
        a,
        a_asap,
        b_asap,
        c_asap,
        // Kept running to the end of the test.
        _b: _b_runs,
        _c: _c_runs,
    } = three_registrars(&keys);
    let list = format!("{a_asap},{b_asap},{c_asap}");
    let pe = Proc::spawn(rsp().args([
        "pe",
        "echo",
        "-r",
        &list,
        "--psk-file",
        &keys.key("pe-1"),
        "--json",
    ]));
    let id = pe.wait_event("registered")["identifier"]
        .as_u64()
        .expect("id");
    let a_home = loop_until(|| pes_and_homes(&keys, &c_asap).first().map(|p| p.1));
    a.signal("-STOP");
    let frozen_at = std::time::Instant::now();
    // Silent past MAX-TIME-LAST-HEARD (2 s) and MAX-TIME-NO-RESPONSE (1 s):
    // one survivor takes the PE over; both agree, and it is still served.
    let moved = loop_until(|| {
        let (at_b, at_c) = (pes_and_homes(&keys, &b_asap), pes_and_homes(&keys, &c_asap));
        (at_b.len() == 1 && at_b == at_c && at_b[0].1 != a_home).then_some(at_b)
    });
    let took = frozen_at.elapsed();
    assert_eq!(moved[0].0, id);
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    // The PE's connection to A stays open (A is frozen, not dead): the
    // registrar that holds its standby link calls it home with the H
    // flag (docs/tcp-mapping.md), and the PE agrees with the cluster.
    let rehomed = pe.wait_event("rehomed");
    let new_home = rehomed["server_id"].as_u64().expect("server id");
    assert_ne!(new_home, a_home);
    let agreed = loop_until(|| {
        let (at_b, at_c) = (pes_and_homes(&keys, &b_asap), pes_and_homes(&keys, &c_asap));
        (at_b == vec![(id, new_home)] && at_b == at_c).then_some(at_b)
    });
    assert_eq!(agreed.len(), 1);
    let o = rsp()
        .args(["resolve", "echo", "-r", &c_asap, "--psk-file"])
        .arg(keys.key("pu-1"))
        .args(["--json", "--echo", "thawed?"])
        .output()
        .expect("rsp resolve runs");
    assert_eq!(json(&o)["echo"]["reply"], "thawed?");
    // A thaws: its stale claim loses; all three agree on the PE's home.
    a.signal("-CONT");
    loop_until_seen(|| {
        let all = [&a_asap, &b_asap, &c_asap].map(|r| pes_and_homes(&keys, r));
        if all.iter().all(|p| *p == vec![(id, new_home)]) {
            Ok(())
        } else {
            Err(all)
        }
    });
}

#[test]
fn with_two_registrars_a_killed_or_frozen_home_is_replaced_by_the_survivor() {
    let _serial = one_at_a_time();
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let a_key = registrar_key(keys.dir.path(), "reg-a");
    let b_key = registrar_key(keys.dir.path(), "reg-b");
    for signal in ["-KILL", "-STOP"] {
        let (a, a_asap, a_enrp) = registrar(&keys, "reg-a", &b_key, &[]);
        let (b, b_asap, _) = registrar(&keys, "reg-b", &a_key, &[&a_enrp]);
        b.wait_event("table_synced");
        let list = format!("{a_asap},{b_asap}");
        let pe = Proc::spawn(rsp().args([
            "pe",
            "echo",
            "-r",
            &list,
            "--psk-file",
            &keys.key("pe-1"),
            "--json",
        ]));
        let id = pe.wait_event("registered")["identifier"]
            .as_u64()
            .expect("id");
        let a_home = loop_until(|| pes_and_homes(&keys, &b_asap).first().map(|p| p.1));
        a.signal(signal);
        // The survivor takes the PE over at once (RFC 5353 3.5 with two
        // registrars); the PE registers with it over its standby link
        // (killed: its connection reset; frozen: called home).
        let at_b = loop_until(|| {
            let p = pes_and_homes(&keys, &b_asap);
            (p.len() == 1 && p[0].1 != a_home).then_some(p)
        });
        assert_eq!(at_b[0].0, id, "{signal}: none lost");
        if signal == "-STOP" {
            assert_eq!(
                pe.wait_event("rehomed")["server_id"].as_u64(),
                Some(at_b[0].1)
            );
        }
        let v = resolve_at(&keys, &b_asap);
        assert_eq!(v["echo"]["reply"], "hello", "{signal}: still served");
        a.signal("-CONT");
        drop(pe);
        drop(b);
        drop(a);
    }
}
