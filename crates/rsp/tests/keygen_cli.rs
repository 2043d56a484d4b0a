//! `rsp keygen psk` and `rsp keygen token` write private files that the
//! security layer loads, refuse to overwrite one unless `--force` says
//! so, and say which file and which flag.

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
    assert!(err.contains("--force"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    assert_eq!(
        rserpool_security::Psk::read_file(&path).expect("unchanged"),
        keys
    );

    let bad = rsp(&["keygen", "psk", "has space", "--output", p]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("printable"), "{err}");
    assert!(!err.contains("TLS configuration"), "{err}");

    // --force replaces it with a new key, still private.
    let forced = rsp(&["keygen", "psk", "pe-1", "--out", p, "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let new = rserpool_security::Psk::read_file(&path).expect("loads");
    assert_ne!(new, keys, "a new key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn token_takes_the_same_output_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.token");
    let p = path.to_str().expect("utf-8 path");
    for flag in ["--output", "-o"] {
        let _ = std::fs::remove_file(&path);
        let o = rsp(&["keygen", "token", flag, p]);
        assert!(
            o.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let first = std::fs::read_to_string(&path).unwrap();
    let again = rsp(&["keygen", "token", "--out", p]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("admin.token") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "unchanged");
    let forced = rsp(&["keygen", "token", "--out", p, "--force", "--json"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&forced.stdout).expect("json");
    assert_eq!(v["mode"], "0600");
    assert_ne!(std::fs::read_to_string(&path).unwrap(), first, "replaced");
    rserpool_registrar::admin::AdminToken::load(&path).expect("a token");
}
