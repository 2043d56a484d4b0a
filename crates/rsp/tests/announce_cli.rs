//! `--announce GROUP` on the client commands, as processes on loopback in
//! secure mode: `rsp registrar --announce GROUP` announces itself, and a
//! PE (`rsp pe`) and a PU (`rsp resolve`) given no registrar at all learn
//! it from the group and use it over TLS (RFC 5352 3.6). The registrar
//! sends by the system's multicast route and the clients join by it.

mod common;

use common::{json, rsp, Proc, Setup};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn a_pe_and_a_pu_without_registrars_learn_one_from_its_announcements() {
    let keys = Setup::new(&["pe-1", "pu-1"]);
    let group = format!("239.255.52.1:{}", free_udp_port());
    let (reg, _addr) = keys.registrar(&["--announce", &group, "--announce-interval", "100ms"]);
    let pe = Proc::spawn(rsp().args([
        "pe",
        "echo",
        "--announce",
        &group,
        "--psk-file",
        &keys.key("pe-1"),
        "--json",
    ]));
    let id = pe.wait_event("registered")["identifier"]
        .as_u64()
        .expect("id");
    assert_eq!(reg.wait_event("registered")["identifier"], id);
    let o = rsp()
        .args(["resolve", "echo", "--announce", &group, "--psk-file"])
        .arg(keys.key("pu-1"))
        .args(["--json", "--echo", "hello"])
        .output()
        .expect("rsp resolve runs");
    let v = json(&o);
    assert_eq!(v["pool_elements"][0]["identifier"], id);
    assert_eq!(v["echo"]["reply"], "hello");
    // Without --announce (and without -r) there is nothing to use.
    let o = rsp()
        .args(["resolve", "echo", "--psk-file"])
        .arg(keys.key("pu-1"))
        .env_remove("RSP_REGISTRAR")
        .output()
        .expect("rsp resolve runs");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--announce GROUP"));
}
