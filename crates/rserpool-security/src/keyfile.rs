//! Pre-shared key files.
//!
//! A key file is TOML with one or more `[[psk]]` tables:
//!
//! ```toml
//! # rserpool pre-shared key: keep this file secret (mode 0600)
//! [[psk]]
//! identity = "pe-echo-1"
//! key = "8f0c…64 hex digits…"
//! ```
//!
//! `identity` is the PSK identity (1-128 printable ASCII characters: it
//! names who holds the key, and the registrar binds PE registrations to
//! it); `key` is 32 bytes in hex. A PE or PU uses the first entry of its
//! file; a registrar loads the entries of every file it is given.
//!
//! Refused, each with the file's name: a path that is not a regular file
//! (a directory, a FIFO, a device), a file larger than
//! [`crate::MAX_FILE_LEN`], a file that group or others can access (RFC
//! 5355 section 4: the keys are the secrets the registrar's
//! authentication rests on), an identity defined twice, and a key that is
//! one byte repeated (an all-zero placeholder is no secret).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::files::{self, Access, Existing};
use crate::SecurityError;

/// Bytes of a pre-shared key.
pub const KEY_LEN: usize = 32;

/// Longest PSK identity.
pub const MAX_IDENTITY_LEN: usize = 128;

/// A pre-shared key and the identity it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    /// The PSK identity.
    pub identity: String,
    /// The key.
    pub key: [u8; KEY_LEN],
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Psk")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Psk {
    /// A new random key for `identity` (OpenSSL's CSPRNG).
    pub fn generate(identity: &str) -> Result<Psk, SecurityError> {
        check_identity(identity).map_err(SecurityError::Invalid)?;
        let mut key = [0u8; KEY_LEN];
        openssl::rand::rand_bytes(&mut key)?;
        Ok(Psk {
            identity: identity.to_owned(),
            key,
        })
    }

    /// The key file text for this key.
    pub fn to_file_text(&self) -> String {
        format!(
            "# rserpool pre-shared key: keep this file secret (mode 0600)\n[[psk]]\nidentity = \"{}\"\nkey = \"{}\"\n",
            self.identity,
            hex::encode(self.key)
        )
    }

    /// Write a new key file, readable by its owner only. An existing file
    /// is not overwritten ([`SecurityError::FileExists`]).
    pub fn write_new(&self, path: &Path) -> Result<(), SecurityError> {
        self.write(path, Existing::Refuse)
    }

    /// Write a key file, readable by its owner only; `existing` says
    /// whether it may replace a file that is there.
    pub fn write(&self, path: &Path, existing: Existing) -> Result<(), SecurityError> {
        crate::write_secret_file(path, self.to_file_text().as_bytes(), existing)
    }

    /// The keys of a key file, in file order (at least one). The file is
    /// read with [`crate::read_secret_file`]'s checks.
    pub fn read_file(path: &Path) -> Result<Vec<Psk>, SecurityError> {
        let bytes = files::read(path, Access::Secret)?;
        let text = String::from_utf8(bytes).map_err(|_| SecurityError::KeyFileFormat {
            path: path.to_owned(),
            reason: "not UTF-8 text".into(),
        })?;
        parse(path, &text)
    }

    /// Whether the key is one byte repeated (all zeros, say).
    fn is_weak(&self) -> bool {
        let [first, rest @ ..] = &self.key;
        rest.iter().all(|b| b == first)
    }
}

fn check_identity(identity: &str) -> Result<(), String> {
    if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
        return Err(format!(
            "PSK identity must have 1 to {MAX_IDENTITY_LEN} characters, {:?} has {}",
            identity,
            identity.len()
        ));
    }
    if !identity.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "PSK identity {identity:?} must be printable ASCII without spaces"
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    psk: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    identity: String,
    key: String,
}

fn parse(path: &Path, text: &str) -> Result<Vec<Psk>, SecurityError> {
    let bad = |reason: String| SecurityError::KeyFileFormat {
        path: path.to_owned(),
        reason,
    };
    let file: File = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
    if file.psk.is_empty() {
        return Err(bad("no [[psk]] entry".into()));
    }
    file.psk
        .into_iter()
        .map(|e| {
            check_identity(&e.identity).map_err(&bad)?;
            let bytes = hex::decode(e.key.trim())
                .map_err(|err| bad(format!("key of {:?} is not hex: {err}", e.identity)))?;
            let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                bad(format!(
                    "key of {:?} has {} bytes, a key has {KEY_LEN} ({} hex digits)",
                    e.identity,
                    bytes.len(),
                    2 * KEY_LEN
                ))
            })?;
            let psk = Psk {
                identity: e.identity,
                key,
            };
            if psk.is_weak() {
                return Err(SecurityError::WeakKey {
                    path: path.to_owned(),
                    identity: psk.identity,
                });
            }
            Ok(psk)
        })
        .collect()
}

/// The keys a registrar knows, by identity (kept in identity order, so
/// everything listed from it is deterministic).
#[derive(Debug, Clone, Default)]
pub struct PskStore {
    keys: BTreeMap<String, Psk>,
}

/// How a new set of keys differs from the current one (what a reload of
/// the key files changes). Each list is sorted by identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PskStoreDiff {
    /// Identities the new store does not have: their connections lose
    /// their authentication.
    pub removed: Vec<String>,
    /// Identities in both whose key differs: their connections were
    /// authenticated with a key that is no longer valid.
    pub changed: Vec<String>,
    /// Identities only the new store has.
    pub added: Vec<String>,
}

impl PskStoreDiff {
    /// Whether the two stores hold the same keys.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.changed.is_empty() && self.added.is_empty()
    }
}

impl PskStore {
    /// Load every key of every file. An identity defined twice is an error.
    pub fn load(paths: &[PathBuf]) -> Result<PskStore, SecurityError> {
        let mut store = PskStore::default();
        for path in paths {
            for psk in Psk::read_file(path)? {
                store
                    .insert(psk)
                    .map_err(|identity| SecurityError::DuplicateIdentity {
                        path: path.clone(),
                        identity,
                    })?;
            }
        }
        Ok(store)
    }

    /// Add a key; `Err(identity)` if the identity is taken.
    pub fn insert(&mut self, psk: Psk) -> Result<(), String> {
        if self.keys.contains_key(&psk.identity) {
            return Err(psk.identity);
        }
        self.keys.insert(psk.identity.clone(), psk);
        Ok(())
    }

    /// The key of an identity.
    pub fn get(&self, identity: &str) -> Option<&Psk> {
        self.keys.get(identity)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, sorted by identity.
    pub fn iter(&self) -> impl Iterator<Item = &Psk> + '_ {
        self.keys.values()
    }

    /// What changes when `new` replaces this store: the identities removed,
    /// those whose key changed, and those added, each sorted.
    pub fn diff(&self, new: &PskStore) -> PskStoreDiff {
        let mut d = PskStoreDiff::default();
        for (identity, old) in &self.keys {
            match new.keys.get(identity) {
                None => d.removed.push(identity.clone()),
                Some(k) if !openssl::memcmp::eq(&k.key, &old.key) => {
                    d.changed.push(identity.clone())
                }
                Some(_) => {}
            }
        }
        d.added = new
            .keys
            .keys()
            .filter(|i| !self.keys.contains_key(*i))
            .cloned()
            .collect();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        p
    }

    #[test]
    fn generated_keys_round_trip_through_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let psk = Psk::generate("pe-1").expect("generate");
        let path = dir.path().join("pe-1.key");
        psk.write_new(&path).expect("write");
        assert_eq!(Psk::read_file(&path).expect("read"), vec![psk.clone()]);
        // Not overwritten.
        let e = psk.write_new(&path).unwrap_err();
        assert!(matches!(e, SecurityError::FileExists { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("{} exists; not overwriting it", path.display())
        );
        // Replaced on request, still private.
        let other = Psk::generate("pe-1").expect("generate");
        other.write(&path, Existing::Replace).expect("replace");
        assert_eq!(Psk::read_file(&path).expect("read"), vec![other]);
        assert!(!format!("{psk:?}").contains(&hex::encode(psk.key)));
    }

    #[test]
    fn files_others_can_read_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = Psk::generate("pe-2").expect("generate").to_file_text();
        let p = write(dir.path(), "open.key", &text, 0o644);
        let err = Psk::read_file(&p).expect_err("mode 644");
        assert!(
            matches!(err, SecurityError::KeyFileMode { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("open.key"));
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, expect) in [
            ("[[psk]]\nidentity = \"a\"\nkey = \"zz\"\n", "not hex"),
            ("[[psk]]\nidentity = \"a\"\nkey = \"00ff\"\n", "has 2 bytes"),
            ("[[psk]]\nidentity = \"\"\nkey = \"00\"\n", "1 to 128"),
            ("[[psk]]\nidentity = \"a b\"\nkey = \"00\"\n", "printable"),
            ("psk = []\n", "no [[psk]] entry"),
            ("[[psk]]\nidentity = \"a\"\n", "missing field"),
            ("garbage", "expected"),
        ] {
            let p = write(dir.path(), "bad.key", text, 0o600);
            let err = Psk::read_file(&p).expect_err(text).to_string();
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(err.contains("bad.key"), "{err}");
        }
    }

    #[test]
    fn repeated_byte_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for byte in ["00", "ff", "5a"] {
            let text = format!(
                "[[psk]]\nidentity = \"pe-ok\"\nkey = \"{}\"\n[[psk]]\nidentity = \"pe-lazy\"\nkey = \"{}\"\n",
                hex::encode(Psk::generate("x").expect("generate").key),
                byte.repeat(KEY_LEN)
            );
            let p = write(dir.path(), "weak.key", &text, 0o600);
            let err = Psk::read_file(&p).expect_err(byte);
            assert!(
                matches!(&err, SecurityError::WeakKey { identity, .. } if identity == "pe-lazy"),
                "{err:?}"
            );
            let msg = err.to_string();
            for part in ["weak.key", "\"pe-lazy\"", "rsp keygen psk pe-lazy"] {
                assert!(msg.contains(part), "{msg}");
            }
            assert!(PskStore::load(&[p]).is_err());
        }
        // Two distinct bytes are enough not to be a placeholder.
        let mut key = [0u8; KEY_LEN];
        key[KEY_LEN - 1] = 1;
        let text = format!(
            "[[psk]]\nidentity = \"a\"\nkey = \"{}\"\n",
            hex::encode(key)
        );
        let p = write(dir.path(), "odd.key", &text, 0o600);
        assert_eq!(Psk::read_file(&p).expect("read")[0].key, key);
    }

    #[test]
    fn key_files_must_be_regular_text_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Psk::read_file(Path::new("/dev/null")).expect_err("a device");
        assert!(e.to_string().contains("is a character device"), "{e}");
        let e = Psk::read_file(dir.path()).expect_err("a directory");
        assert!(e.to_string().contains("is a directory"), "{e}");
        let p = dir.path().join("bin.key");
        std::fs::write(&p, [0xff, 0xfe, 0x00]).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let e = Psk::read_file(&p).expect_err("binary");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    fn store_of(keys: &[&Psk]) -> PskStore {
        let mut s = PskStore::default();
        for k in keys {
            s.insert((*k).clone()).expect("unique");
        }
        s
    }

    #[test]
    fn stores_list_identities_in_order_and_diff() {
        let k = |id: &str| Psk::generate(id).expect("generate");
        let (a, b, c, d) = (k("a"), k("b"), k("c"), k("d"));
        let mut b2 = b.clone();
        b2.key[0] ^= 0x80;
        let old = store_of(&[&d, &b, &a, &c]);
        assert_eq!(
            old.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        let (e, f) = (k("e"), k("0f"));
        let new = store_of(&[&f, &e, &c, &b2]);
        let diff = old.diff(&new);
        assert_eq!(
            diff,
            PskStoreDiff {
                removed: vec!["a".into(), "d".into()],
                changed: vec!["b".into()],
                added: vec!["0f".into(), "e".into()],
            }
        );
        assert!(!diff.is_empty());
        // The other way round.
        let back = new.diff(&old);
        assert_eq!(back.removed, ["0f", "e"]);
        assert_eq!(back.changed, ["b"]);
        assert_eq!(back.added, ["a", "d"]);
        assert!(old.diff(&old.clone()).is_empty());
        assert_eq!(PskStore::default().diff(&old).added.len(), 4);
    }

    #[test]
    fn a_store_refuses_an_identity_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Psk::generate("a").expect("generate");
        let p1 = write(dir.path(), "1.key", &a.to_file_text(), 0o600);
        let p2 = write(dir.path(), "2.key", &a.to_file_text(), 0o600);
        let store = PskStore::load(std::slice::from_ref(&p1)).expect("load");
        assert_eq!(store.get("a"), Some(&a));
        assert!(matches!(
            PskStore::load(&[p1, p2]),
            Err(SecurityError::DuplicateIdentity { .. })
        ));
    }
}
