//! The client file: defaults for the flags the client commands repeat
//! (`-r`, the credentials, `--admin`, `--token-file`), read from
//! `--client-config FILE` (or `RSP_CLIENT_CONFIG`), else from
//! `$XDG_CONFIG_HOME/rsp/client.toml` (`~/.config/rsp/client.toml`) when
//! that exists. Order of precedence, highest first: the flag, its
//! environment variable (`RSP_REGISTRAR`, `RSP_ADMIN`,
//! `RSP_ADMIN_TOKEN_FILE`), the client file, the built-in default.
//!
//! ```toml
//! registrars = ["reg-1.example.net:3864", "reg-2.example.net:3864"]
//! psk_file = "pu-1.key"          # relative to this file's directory
//! # identity = "pu-1"            # when psk_file holds several keys
//! # ca = "ca.pem"                # registrar certificates
//! # cert = "pe-1.pem"  key = "pe-1.key"
//! admin = "127.0.0.1:3865"
//! admin_token_file = "admin.token"
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The settings of a client file; every one optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Registrars as HOST:PORT, tried in order.
    #[serde(default)]
    pub registrars: Vec<String>,
    /// Key file of this client.
    pub psk_file: Option<PathBuf>,
    /// Which identity of `psk_file`.
    pub identity: Option<String>,
    /// CA certificate that signs registrar certificates.
    pub ca: Option<PathBuf>,
    /// Client certificate chain.
    pub cert: Option<PathBuf>,
    /// Private key of `cert`.
    pub key: Option<PathBuf>,
    /// Address or URL of a registrar's admin API.
    pub admin: Option<String>,
    /// File with the admin API's bearer token.
    pub admin_token_file: Option<PathBuf>,
}

/// The default client file: `$XDG_CONFIG_HOME/rsp/client.toml`, else
/// `$HOME/.config/rsp/client.toml`; `None` without either variable.
pub fn default_path() -> Option<PathBuf> {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    non_empty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|dir| dir.join("rsp").join("client.toml"))
}

/// Load the client file: `explicit` must exist; the default file is used
/// only when it exists (no file: no defaults).
pub fn load(explicit: Option<&Path>) -> anyhow::Result<ClientFile> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.exists() => p,
            _ => return Ok(ClientFile::default()),
        },
    };
    read(&path)
}

/// Read and parse a client file; relative paths in it are taken relative
/// to its directory.
pub fn read(path: &Path) -> anyhow::Result<ClientFile> {
    // Read like a credential file: a FIFO or a device cannot hang it, and
    // it is at most 1 MiB.
    let bytes = rserpool_security::read_credential_file(path)
        .map_err(|e| anyhow::anyhow!("cannot read the client file: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the client file is not UTF-8 text", path.display()))?;
    let mut file: ClientFile = toml::from_str(&text)
        .with_context(|| format!("{}: not a valid client file", path.display()))?;
    if let Some(base) = path.parent() {
        for p in [
            &mut file.psk_file,
            &mut file.ca,
            &mut file.cert,
            &mut file.key,
            &mut file.admin_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            "registrars = [\"a:1\", \"b:2\"]\npsk_file = \"pu.key\"\nca = \"/etc/ca.pem\"\n\
             admin = \"127.0.0.1:3865\"\nadmin_token_file = \"t\"\n",
        )
        .unwrap();
        let f = read(&path).unwrap();
        assert_eq!(f.registrars, ["a:1", "b:2"]);
        assert_eq!(f.psk_file, Some(dir.path().join("pu.key")));
        assert_eq!(f.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(f.admin_token_file, Some(dir.path().join("t")));
        assert_eq!(f.admin.as_deref(), Some("127.0.0.1:3865"));
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "registrar = \"a:1\"\n").unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.contains("client.toml") && e.contains("registrar"), "{e}");
        std::fs::write(&path, "registrars = 5\n").unwrap();
        assert!(read(&path).is_err());
    }

    #[test]
    fn an_explicit_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(format!("{e:#}").contains("nope.toml"), "{e:#}");
    }
}
