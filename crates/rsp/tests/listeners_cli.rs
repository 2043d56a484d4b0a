//! `rsp registrar --pool-user-listen` and `[[listener]]`: a listener for
//! pool users only refuses a PE's registration with the reason and
//! serves resolutions; a bad source filter is named with its place.

mod common;

use common::{failure, json, rsp, Proc, Setup};

#[test]
fn a_pool_user_listener_refuses_pes_and_serves_pool_users() {
    let s = Setup::new(&["pe-1", "pu-1"]);
    let (reg, addr) = s.registrar(&["--pool-user-listen", "127.0.0.1:0"]);
    let v = reg.wait_event("listening");
    assert_eq!(v["pool_users_only"], true, "{v}");
    let pu_addr = v["address"].as_str().unwrap().to_string();
    // A PE on the plain listener registers.
    let pe = Proc::spawn(rsp().args([
        "pe",
        "echo",
        "-r",
        &addr,
        "--psk-file",
        &s.key("pe-1"),
        "--json",
    ]));
    pe.wait_event("registered");
    // The same key on the pool-user listener is refused.
    let mut other = Proc::spawn(rsp().args([
        "pe",
        "echo",
        "-r",
        &pu_addr,
        "--psk-file",
        &s.key("pe-1"),
        "--json",
    ]));
    other.wait_stderr("Rejected due to security considerations");
    other.signal("-TERM");
    let _ = other.exit();
    // A pool user resolves there.
    let o = rsp()
        .args([
            "resolve",
            "echo",
            "-r",
            &pu_addr,
            "--psk-file",
            &s.key("pu-1"),
            "--json",
        ])
        .output()
        .unwrap();
    let v = json(&o);
    assert_eq!(v["pool_elements"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn a_bad_source_filter_is_named() {
    let s = Setup::new(&["pe-1"]);
    let keys = common::arg(&s.path("registrar.keys"));
    let text =
        "[[listener]]\naddress = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n";
    let e = failure(&s.check(text, &["--psk-file", &keys]));
    assert!(
        e.contains("listener[0].allow[1]") && e.contains("10.0.0.0/99"),
        "{e}"
    );
    let ok = "[[listener]]\naddress = \"127.0.0.1:0\"\npool_users_only = true\nallow = [\"127.0.0.0/8\"]\n";
    let v = json(&s.check(ok, &["--psk-file", &keys, "--json"]));
    assert_eq!(v["listener"][0]["pool_users_only"], true, "{v}");
    assert_eq!(v["listener"][0]["allow"][0], "127.0.0.0/8", "{v}");
}
