//! `rsp decode` as an operator runs it: hex in (argument or stdin), JSON
//! out, typed errors with offsets and exit code 1.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn rsp(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsp starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("rsp finishes")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

#[test]
fn decodes_a_registration_from_an_argument() {
    let o = rsp(
        &[
            "decode",
            "--proto",
            "asap",
            "01000034 00090008 6563686f 000a0028 11223344 00000000 0000012c
             00050010 1f900000 00010008 c0000201 00080008 00000001",
        ],
        None,
    );
    let v = json(&o);
    assert_eq!(v["protocol"], "asap");
    assert_eq!(v["type"], "ASAP_REGISTRATION");
    assert_eq!(v["flags"], "0x00");
    assert_eq!(v["length"], 52);
    assert_eq!(v["pool_handle"], "echo");
    let pe = &v["pool_element"];
    assert_eq!(pe["identifier"], 0x1122_3344);
    assert_eq!(pe["registration_life"], 300);
    assert_eq!(pe["user_transport"]["protocol"], "tcp");
    assert_eq!(pe["user_transport"]["port"], 8080);
    assert_eq!(pe["user_transport"]["address"], "192.0.2.1");
    assert_eq!(pe["policy"]["policy"], "round_robin");
}

#[test]
fn decodes_enrp_from_stdin_and_shows_binary_handles_as_hex() {
    let o = rsp(
        &["decode", "--proto", "enrp"],
        Some("04 01 00 40\n11111111 22222222 0001 0000\n0009 0008 00ff0102\n000a 0028 11223344 00000000 0000012c 0005 0010 1f90 0000 0001 0008 c0000201 0008 0008 00000001\n"),
    );
    let v = json(&o);
    assert_eq!(v["type"], "ENRP_HANDLE_UPDATE");
    assert_eq!(v["takeover_suggested"], true);
    assert_eq!(v["action"], "DEL_PE");
    assert_eq!(v["pool_handle"]["hex"], "00ff0102");
}

#[test]
fn reports_unrecognized_parameters_to_be_reported() {
    let o = rsp(
        &[
            "decode",
            "--proto",
            "asap",
            "05000013 00090008 6563686f c1230007 aabbcc",
        ],
        None,
    );
    let v = json(&o);
    assert_eq!(v["unrecognized_parameters"][0]["offset"], 12);
    assert_eq!(v["unrecognized_parameters"][0]["tlv"], "c1230007aabbcc");
}

#[test]
fn decoding_errors_name_the_offset_and_exit_1() {
    let o = rsp(
        &["decode", "--proto", "asap", "0500000c 00090009 6563686f"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("runs past the end"), "{err}");
    assert!(err.contains("at offset 4"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_hex_is_refused() {
    let o = rsp(&["decode", "--proto", "enrp", "0x12"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not hex"));
}
