//! Where a setting came from (a flag, a line of the configuration file, or
//! the built-in default), so that an error about it names that place:
//! `FILE:LINE: key: what is wrong`, or `--flag: what is wrong`.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The source of one setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A command-line flag.
    Flag(&'static str),
    /// A line (1-based) of the configuration file.
    File(usize),
}

/// The origin of every setting, by configuration key.
#[derive(Debug, Default)]
pub struct Origins {
    file: Option<PathBuf>,
    by_key: HashMap<&'static str, Origin>,
}

impl Origins {
    /// Origins of settings read from `file` (if any) and flags.
    pub fn new(file: Option<&Path>) -> Self {
        Origins {
            file: file.map(Path::to_owned),
            by_key: HashMap::new(),
        }
    }

    /// The configuration file, if there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Record where `key`'s value came from.
    pub fn set(&mut self, key: &'static str, origin: Origin) {
        self.by_key.insert(key, origin);
    }

    /// Where `key`'s value came from.
    pub fn get(&self, key: &str) -> Origin {
        self.by_key.get(key).copied().unwrap_or(Origin::Default)
    }

    /// Whether `key` was set by a flag or the file.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key) != Origin::Default
    }

    /// An error about `key`, placed where its value came from.
    pub fn error(&self, key: &str, what: impl Display) -> anyhow::Error {
        match (self.get(key), &self.file) {
            (Origin::Flag(flag), _) => anyhow::anyhow!("{flag}: {what}"),
            (Origin::File(line), Some(file)) => {
                anyhow::anyhow!("{}:{line}: {key}: {what}", file.display())
            }
            (_, Some(file)) => anyhow::anyhow!("{}: {what}", file.display()),
            (_, None) => anyhow::anyhow!("{what}"),
        }
    }

    /// The name of `key` as its origin knows it: the flag, or the key.
    pub fn name(&self, key: &'static str) -> &'static str {
        match self.get(key) {
            Origin::Flag(flag) => flag,
            _ => key,
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let t = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 6), 2);
        assert_eq!(line_of(t, 13), 4);
        assert_eq!(line_of(t, 1000), 4);
    }

    #[test]
    fn errors_name_their_origin() {
        let mut o = Origins::new(Some(Path::new("/etc/rsp/registrar.toml")));
        o.set("keep_alive.interval", Origin::File(12));
        o.set("listen", Origin::Flag("--listen"));
        assert_eq!(
            o.error("keep_alive.interval", "must be more than 0")
                .to_string(),
            "/etc/rsp/registrar.toml:12: keep_alive.interval: must be more than 0"
        );
        assert_eq!(o.error("listen", "empty").to_string(), "--listen: empty");
        assert_eq!(
            o.error("tls", "no keys").to_string(),
            "/etc/rsp/registrar.toml: no keys"
        );
    }
}
