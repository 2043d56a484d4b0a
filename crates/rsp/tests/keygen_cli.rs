//! `rsp keygen psk` writes a private key file that the security layer
//! loads, and refuses to overwrite one.

use std::process::Command;

fn rsp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args)
        .output()
        .expect("rsp runs")
}

#[test]
fn keygen_writes_a_private_loadable_key_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pe-1.key");
    let p = path.to_str().expect("utf-8 path");
    let o = rsp(&["keygen", "psk", "pe-1", "--output", p, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["identity"], "pe-1");
    let keys = rserpool_security::Psk::read_file(&path).expect("loads");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].identity, "pe-1");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = rsp(&["keygen", "psk", "pe-1", "--output", p]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("pe-1.key") && err.contains("exists"), "{err}");
    assert_eq!(
        rserpool_security::Psk::read_file(&path).expect("unchanged"),
        keys
    );

    let bad = rsp(&["keygen", "psk", "has space", "--output", p]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("printable"));
}
