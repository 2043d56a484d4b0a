//! The settings of `rsp registrar`: flags over a TOML configuration file
//! over built-in defaults, checked with errors that name the flag or the
//! file line at fault, then turned into a [`RegistrarSettings`].
//!
//! * `file`: the file's layout and reading it (syntax and type errors).
//! * `locate`: where each value came from, for error messages.
//! * `merge`: precedence and defaults.
//! * `check`: the checks of the merged values.
//! * `build`: reading the files the settings name, the TLS context.
//! * `help`: the defaults in `--help`.
//! * `summary`: the effective settings as text or JSON.

mod build;
mod check;
mod file;
mod help;
mod locate;
mod merge;
mod summary;

use std::str::FromStr;

pub use build::{Credentials, RegistrarSettings};
// The API of the settings, for the modules that serve them (admin API).
#[allow(unused_imports)]
pub use build::{AdminSettings, Details};
pub use help::help_with_default;
pub use merge::DEFAULT_ADMIN_LISTEN;

use crate::registrar::Args;

/// A flag value that may also be "off".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toggle<T> {
    /// On, with this value.
    On(T),
    /// Off (overrides the file).
    Off,
}

/// Parse `off` or a value.
pub fn parse_toggle<T>(s: &str) -> Result<Toggle<T>, String>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    if s.eq_ignore_ascii_case("off") {
        return Ok(Toggle::Off);
    }
    s.parse()
        .map(Toggle::On)
        .map_err(|e| format!("{s:?}: {e} (or \"off\")"))
}

/// The registrar's settings from its flags and `--config` file.
pub fn load(args: &Args) -> anyhow::Result<RegistrarSettings> {
    let merged = match &args.config {
        Some(path) => {
            let (config, text) = file::read(path)?;
            merge::merge(args, Some((path, config, &text)))
        }
        None => merge::merge(args, None),
    };
    build::build(merged)
}

/// The summary `--check-config` prints (JSON with `json` on).
pub fn summary(settings: &RegistrarSettings) -> String {
    if settings.json {
        summary::to_json(settings).to_string()
    } else {
        summary::to_text(settings)
    }
}

/// Whether `new` changes settings other than those a reload applies (the
/// credentials, the admin token and the database; the database's file
/// is compared by the reload): they wait for a restart.
pub fn restart_needed(old: &RegistrarSettings, new: &RegistrarSettings) -> bool {
    let fixed = |s: &RegistrarSettings| {
        let mut v = summary::to_json(s);
        if let Some(o) = v.as_object_mut() {
            // Reloaded, or drawn again at every load.
            for key in ["tls", "admin", "server_id", "config_file", "apd"] {
                o.remove(key);
            }
        }
        v
    };
    let (mut a, mut b) = (fixed(old), fixed(new));
    if !new.details.random_server_id || !old.details.random_server_id {
        a["server_id"] = serde_json::json!(old.service.core.server_id);
        b["server_id"] = serde_json::json!(new.service.core.server_id);
    }
    a != b
}
