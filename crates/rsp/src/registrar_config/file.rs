//! The registrar's configuration file: its TOML layout as types (every
//! table refuses unknown keys; every value keeps its place in the file for
//! error messages) and reading it, with syntax and type errors reported as
//! `FILE:LINE: key: what is wrong`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rserpool_wire::ServerId;
use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::locate::line_of;

/// A value and where it is in the file.
pub type Located<T> = Option<Spanned<T>>;

/// The whole file. Every key is optional: what is missing comes from the
/// flags or the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Located<Vec<SocketAddr>>,
    pub server_id: Located<ServerId>,
    pub insecure: Located<bool>,
    pub json: Located<bool>,
    pub allow_foreign_addresses: Located<bool>,
    pub apd: Located<PathBuf>,
    pub listener: Located<Vec<Listener>>,
    pub max_bad_pe_reports: Located<usize>,
    pub bad_pe_report_window: Located<HumanDuration>,
    pub count_anonymous_reports: Located<bool>,
    pub log_summary_interval: Located<HumanDuration>,
    pub peers: Located<Vec<SocketAddr>>,
    pub tls: Tls,
    pub enrp: Enrp,
    pub keep_alive: KeepAlive,
    pub connections: Connections,
    pub announce: Announce,
    pub registration: Registration,
    pub limits: Limits,
    pub admin: Admin,
}

/// `[[listener]]`: a listener with options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: SocketAddr,
    #[serde(default)]
    pub pool_users_only: bool,
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `[tls]`: credentials of secure mode.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub psk_files: Located<Vec<PathBuf>>,
    pub cert: Located<PathBuf>,
    pub key: Located<PathBuf>,
    pub client_ca: Located<PathBuf>,
    pub require_client_cert: Located<bool>,
}

/// `[enrp]`: the cluster (RFC 5353): listeners, keys, timers.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Enrp {
    pub listen: Located<Vec<SocketAddr>>,
    pub multicast: Located<SocketAddr>,
    pub psk_file: Located<PathBuf>,
    pub peer_psk_files: Located<Vec<PathBuf>>,
    pub heartbeat_cycle: Located<HumanDuration>,
    pub max_time_last_heard: Located<HumanDuration>,
    pub max_time_no_response: Located<HumanDuration>,
}

/// `[keep_alive]`: probing registered PEs.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepAlive {
    pub interval: Located<HumanDuration>,
    pub timeout: Located<HumanDuration>,
    pub max_per_interval: Located<usize>,
}

/// `[connections]`: what each client connection may use.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Connections {
    pub max: Located<usize>,
    pub max_per_address: Located<usize>,
    pub max_per_identity: Located<usize>,
    pub max_handshakes: Located<usize>,
    pub max_handshakes_per_address: Located<usize>,
    pub max_message_size: Located<usize>,
    pub idle_timeout: Located<HumanDuration>,
    pub handshake_timeout: Located<HumanDuration>,
    pub message_timeout: Located<HumanDuration>,
}

/// `[announce]`: ASAP_SERVER_ANNOUNCE (on when `group` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Announce {
    pub group: Located<SocketAddr>,
    pub interval: Located<HumanDuration>,
}

/// `[registration]`: what a registration may ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    pub min_lifetime: Located<HumanDuration>,
    pub max_lifetime: Located<HumanDuration>,
    pub max_pes_per_identity: Located<usize>,
}

/// `[limits]`: rate limits (RFC 5355 2.1, 2.2, 2.13) and bounds.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub registrations_per_identity: Located<RateSpec>,
    pub registrations_per_address: Located<RateSpec>,
    pub resolutions_per_identity: Located<RateSpec>,
    pub resolutions_per_address: Located<RateSpec>,
    pub reports_per_identity: Located<RateSpec>,
    pub reports_per_address: Located<RateSpec>,
    pub registrations_global: Located<RateSpec>,
    pub resolutions_global: Located<RateSpec>,
    pub reports_global: Located<RateSpec>,
    pub max_malformed_per_connection: Located<u32>,
    pub max_limiter_keys: Located<usize>,
}

/// `[admin]`: the admin HTTP API (on when `listen` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    pub listen: Located<SocketAddr>,
    pub token_file: Located<PathBuf>,
    pub https: Located<bool>,
    pub client_ca: Located<PathBuf>,
    pub header_timeout: Located<HumanDuration>,
    pub max_connections: Located<usize>,
    pub max_connections_per_address: Located<usize>,
    pub max_event_streams: Located<usize>,
}

/// A token bucket: `{ per_second = 100, burst = 200 }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    pub per_second: f64,
    pub burst: f64,
}

/// A duration written as in humantime: "250ms", "5s", "2m", "1h 30m".
#[derive(Debug, Clone, Copy)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Read and parse the configuration file at `path`; also returns its
/// text, to which the values' spans refer. Relative paths in the file are
/// taken relative to the file's directory.
pub fn read(path: &Path) -> anyhow::Result<(FileConfig, String)> {
    // Read like a credential file: a FIFO or a device cannot hang it.
    let bytes = rserpool_security::read_credential_file(path)
        .map_err(|e| anyhow::anyhow!("cannot read the configuration: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the configuration is not UTF-8 text", path.display()))?;
    let mut config = parse(path, &text)?;
    if let Some(base) = path.parent() {
        config.resolve_paths(base);
    }
    Ok((config, text))
}

impl FileConfig {
    /// Make the file names in the configuration relative to `base`.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for files in [&mut self.tls.psk_files, &mut self.enrp.peer_psk_files]
            .into_iter()
            .flatten()
        {
            files.get_mut().iter_mut().for_each(fix);
        }
        for p in [
            &mut self.enrp.psk_file,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.client_ca,
            &mut self.admin.token_file,
            &mut self.admin.client_ca,
            &mut self.apd,
        ]
        .into_iter()
        .flatten()
        {
            fix(p.get_mut());
        }
    }
}

/// Parse configuration text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<FileConfig> {
    toml::from_str::<FileConfig>(text).map_err(|e| describe(path, text, &e))
}

/// `FILE:LINE: key: message` for a TOML error.
fn describe(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = e.message().replace("unknown field", "unknown key");
    let Some(span) = e.span() else {
        return anyhow::anyhow!("{}: {message}", path.display());
    };
    let line = line_of(text, span.start);
    match key_at(text, span.start) {
        Some(key) => anyhow::anyhow!("{}:{line}: {key}: {message}", path.display()),
        None => anyhow::anyhow!("{}:{line}: {message}", path.display()),
    }
}

/// The dotted key whose name or value covers byte `offset` (the document
/// must parse as TOML).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn covers(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if find_in_value(value, offset, path) || covers(key.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, offset, path) || covers(value.span(), offset),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(last) = path.last_mut() {
                    let base = last.clone();
                    *last = format!("{base}[{i}]");
                    if find_in_value(item, offset, path) {
                        return true;
                    }
                    if let Some(last) = path.last_mut() {
                        *last = base;
                    }
                }
            }
            covers(value.span(), offset)
        }
        _ => covers(value.span(), offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("r.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn key_files_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(
            &path,
            "[tls]\npsk_files = [\"pe.key\"]\n\
             [enrp]\npsk_file = \"own.key\"\npeer_psk_files = [\"peer.key\", \"/abs.key\"]\n",
        )
        .unwrap();
        let (c, _) = read(&path).unwrap();
        let files = |v: Located<Vec<PathBuf>>| v.unwrap().into_inner();
        assert_eq!(files(c.tls.psk_files), [dir.path().join("pe.key")]);
        assert_eq!(
            c.enrp.psk_file.unwrap().into_inner(),
            dir.path().join("own.key")
        );
        assert_eq!(
            files(c.enrp.peer_psk_files),
            [dir.path().join("peer.key"), PathBuf::from("/abs.key")]
        );
    }

    #[test]
    fn a_full_file_parses() {
        let c = parse(
            Path::new("r.toml"),
            r#"
listen = ["127.0.0.1:3864", "[::1]:3864"]
server_id = 0x1234
[tls]
psk_files = ["/etc/rsp/psk.keys"]
[keep_alive]
interval = "250ms"
[limits]
registrations_per_identity = { per_second = 10, burst = 20.5 }
[admin]
listen = "127.0.0.1:3865"
"#,
        )
        .unwrap();
        assert_eq!(c.listen.unwrap().into_inner().len(), 2);
        assert_eq!(*c.server_id.unwrap().get_ref(), ServerId::new(0x1234));
        assert_eq!(
            c.keep_alive.interval.unwrap().get_ref().0,
            Duration::from_millis(250)
        );
        let r = c.limits.registrations_per_identity.unwrap().into_inner();
        assert_eq!((r.per_second, r.burst), (10.0, 20.5));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            err("json = true\n[keep_alive]\ninterval = 5\n"),
            "r.toml:3: keep_alive.interval: invalid type: integer `5`, expected a string"
        );
        let e = err("[keep_alive]\nintervall = \"5s\"\n");
        assert!(
            e.starts_with("r.toml:2: keep_alive.intervall: unknown key `intervall`"),
            "{e}"
        );
        let e = err("[limits]\n\nresolutions_per_address = { per_second = \"x\", burst = 1 }\n");
        assert!(
            e.starts_with("r.toml:3: limits.resolutions_per_address.per_second: invalid type"),
            "{e}"
        );
        let e = err("listen = [\"127.0.0.1:1\", \"nonsense\"]\n");
        assert!(
            e.starts_with("r.toml:1: listen[1]: invalid socket address"),
            "{e}"
        );
        let e = err("[keep_alive]\ntimeout = \"5 parsecs\"\n");
        assert!(
            e.starts_with("r.toml:2: keep_alive.timeout: \"5 parsecs\""),
            "{e}"
        );
        let e = err("a = 1\n[tls\n");
        assert!(e.starts_with("r.toml:2: "), "{e}");
    }
}
