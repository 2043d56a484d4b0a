//! Flags shared by the client subcommands (`rsp pe`, `rsp pe register`,
//! `rsp resolve`): the registrar list, the credentials and the optional
//! learning of registrars from announcements (`--announce GROUP`, the
//! group `rsp registrar --announce` sends to), turned into a
//! [`rserpool::ClientConfig`]; and the policy syntax of `--policy`.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rserpool::{AnnounceConfig, ClientConfig, RegistrarEndpoint};
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{Psk, TlsClient, TlsClientConfig};
use rserpool_wire::{PeId, Policy};

use crate::client_file::ClientFile;
use crate::duration::parse_duration;

/// How to reach and authenticate registrars. Each flag's default comes
/// from its environment variable, then from the client file
/// ([`crate::client_file`]).
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Registrar as HOST:PORT (repeatable, or comma-separated; tried in
    /// order, RFC 5352 3.6). With --ca, HOST is the name its certificate
    /// must carry. Default: RSP_REGISTRAR, then `registrars` of the client
    /// file.
    #[arg(
        short,
        long = "registrar",
        value_name = "HOST:PORT",
        env = "RSP_REGISTRAR",
        value_delimiter = ','
    )]
    pub registrars: Vec<String>,
    /// Key file with this client's pre-shared key (docs/security.md).
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,
    /// Which identity of --psk-file to use (needed when it holds several).
    #[arg(long)]
    pub identity: Option<String>,
    /// CA certificate (PEM) that signs registrar certificates.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Plain TCP to an insecure (lab) registrar: no authentication at all
    /// (the client file's credentials are not used).
    #[arg(long, conflicts_with_all = ["psk_file", "ca", "cert"])]
    pub insecure: bool,
    /// Also learn registrars from ASAP_SERVER_ANNOUNCE on this UDP group
    /// (e.g. 239.0.0.50:3863, where `rsp registrar --announce` sends).
    /// Learned registrars are tried after the -r ones and authenticated
    /// the same way; with --announce, -r may be left out.
    #[arg(long, value_name = "GROUP")]
    pub announce: Option<SocketAddr>,
    /// Local IPv4 address of the interface to join the --announce group
    /// on (default: the system's choice by its routes).
    #[arg(long, value_name = "ADDR", requires = "announce")]
    pub announce_interface: Option<Ipv4Addr>,
    /// Most registrars learned from announcements at once (the -r ones
    /// are always kept).
    #[arg(long, value_name = "N", default_value_t = 16, requires = "announce")]
    pub announce_max: usize,
    /// Forget a learned registrar not announced again for this long
    /// (T7-ENRPoutdate).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          default_value = "5s", requires = "announce")]
    pub announce_expiry: Duration,
}

impl ClientArgs {
    /// Fill what the command line and the environment left open from the
    /// client file. A file's `identity` only goes with its own `psk_file`,
    /// and its `key` with its own `cert`: they describe that file.
    pub fn apply(&mut self, file: &ClientFile) {
        if self.registrars.is_empty() {
            self.registrars = file.registrars.clone();
        }
        if self.insecure {
            return;
        }
        if self.psk_file.is_none() {
            if let Some(p) = &file.psk_file {
                self.psk_file = Some(p.clone());
                if self.identity.is_none() {
                    self.identity = file.identity.clone();
                }
            }
        }
        if self.ca.is_none() {
            self.ca = file.ca.clone();
        }
        if self.cert.is_none() {
            if let (Some(c), Some(k)) = (&file.cert, &file.key) {
                self.cert = Some(c.clone());
                self.key = Some(k.clone());
            }
        }
    }

    /// The client configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.registrar_config()?;
        config.announcements = self.announce.map(|group| AnnounceConfig {
            interface: self.announce_interface,
            max_learned: self.announce_max,
            expiry: self.announce_expiry,
            ..AnnounceConfig::new(group)
        });
        if let Some(a) = &config.announcements {
            a.validate()
                .map_err(|e| anyhow::anyhow!("--announce-max / --announce-expiry: {e}"))?;
        }
        Ok(config)
    }

    /// The registrars and credentials.
    fn registrar_config(&self) -> anyhow::Result<ClientConfig> {
        if self.registrars.is_empty() && self.announce.is_none() {
            anyhow::bail!(
                "no registrar given: use -r HOST:PORT (or set RSP_REGISTRAR, or `registrars` in \
                 the client file {}), or learn them with --announce GROUP",
                crate::client_file::default_path()
                    .map_or("--client-config FILE".to_string(), |p| p
                        .display()
                        .to_string())
            );
        }
        let mut registrars = Vec::new();
        for r in &self.registrars {
            let host = r
                .rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                .with_context(|| format!("--registrar {r:?}: expected HOST:PORT"))?;
            let addrs = r
                .to_socket_addrs()
                .with_context(|| format!("--registrar {r:?}: cannot resolve"))?;
            for address in addrs {
                registrars.push(RegistrarEndpoint::with_name(address, host));
            }
        }
        if self.insecure {
            return Ok(ClientConfig::insecure(registrars));
        }
        let psk = match &self.psk_file {
            Some(path) => Some(pick_psk(
                Psk::read_file(path)?,
                self.identity.as_deref(),
                path,
            )?),
            None => None,
        };
        if self.identity.is_some() && self.psk_file.is_none() {
            anyhow::bail!("--identity picks a key of --psk-file, and there is no --psk-file");
        }
        if psk.is_none() && self.ca.is_none() {
            anyhow::bail!(
                "no way to authenticate the registrar: give --psk-file or --ca (or --insecure for a lab registrar)"
            );
        }
        let certificate = match (&self.cert, &self.key) {
            (Some(chain), Some(key)) => Some(CertificateFiles {
                chain: chain.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let tls = TlsClient::new(&TlsClientConfig {
            psk,
            ca: self.ca.clone(),
            certificate,
        })?;
        Ok(ClientConfig::new(registrars, Some(tls)))
    }
}

fn pick_psk(keys: Vec<Psk>, identity: Option<&str>, path: &std::path::Path) -> anyhow::Result<Psk> {
    match identity {
        Some(id) => keys
            .into_iter()
            .find(|k| k.identity == id)
            .with_context(|| format!("{}: no key for identity {id:?}", path.display())),
        None => {
            let n = keys.len();
            let mut it = keys.into_iter();
            match (it.next(), n) {
                (Some(k), 1) => Ok(k),
                (None, _) => anyhow::bail!("{}: no key in the file", path.display()),
                _ => anyhow::bail!(
                    "{}: {n} keys in the file; choose one with --identity",
                    path.display()
                ),
            }
        }
    }
}

/// A PE identifier on the command line: `0x` and hex digits, or decimal.
pub fn parse_pe_id(s: &str) -> Result<PeId, String> {
    s.parse::<PeId>()
        .map_err(|_| format!("{s:?} is not a 32-bit PE identifier (decimal, or hex with 0x)"))
}

/// `--policy` syntax: `NAME[:VALUE[:VALUE]]`, the names of RFC 5356
/// (rr, wrr:WEIGHT, rand, wrand:WEIGHT, pri:PRIORITY, lu:LOAD,
/// lud:LOAD:DEGRADATION, plu:LOAD:DEGRADATION, rlu:LOAD). Loads and
/// degradations are fractions of 2^32-1, or percentages with `%`.
pub fn parse_policy(s: &str) -> Result<Policy, String> {
    let mut parts = s.split(':');
    let name = parts.next().unwrap_or_default().to_ascii_lowercase();
    let values: Vec<&str> = parts.collect();
    let want = |n: usize| -> Result<Vec<u32>, String> {
        if values.len() != n {
            return Err(format!(
                "policy {name} takes {n} value(s), got {}",
                values.len()
            ));
        }
        values.iter().map(|v| parse_value(v)).collect()
    };
    Ok(match name.as_str() {
        "rr" | "round-robin" => {
            want(0)?;
            Policy::RoundRobin
        }
        "rand" | "random" => {
            want(0)?;
            Policy::Random
        }
        "wrr" => Policy::WeightedRoundRobin { weight: want(1)?[0] },
        "wrand" => Policy::WeightedRandom { weight: want(1)?[0] },
        "pri" | "priority" => Policy::Priority { priority: want(1)?[0] },
        "lu" => Policy::LeastUsed { load: want(1)?[0] },
        "rlu" => Policy::RandomizedLeastUsed { load: want(1)?[0] },
        "lud" => {
            let v = want(2)?;
            Policy::LeastUsedDegradation { load: v[0], load_degradation: v[1] }
        }
        "plu" => {
            let v = want(2)?;
            Policy::PriorityLeastUsed { load: v[0], load_degradation: v[1] }
        }
        other => {
            return Err(format!(
                "unknown policy {other:?}: use rr, wrr:W, rand, wrand:W, pri:P, lu:L, rlu:L, lud:L:D or plu:L:D"
            ))
        }
    })
}

fn parse_value(v: &str) -> Result<u32, String> {
    match v.strip_suffix('%') {
        Some(p) => {
            let f: f64 = p
                .parse()
                .map_err(|_| format!("{v:?} is not a percentage"))?;
            if !(0.0..=100.0).contains(&f) {
                return Err(format!("{v:?} is not between 0% and 100%"));
            }
            Ok((f / 100.0 * f64::from(u32::MAX)).round() as u32)
        }
        None => v
            .parse()
            .map_err(|_| format!("{v:?} is not a 32-bit number")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    #[test]
    fn announce_flags_make_an_announce_config_and_may_stand_for_the_registrar_list() {
        let cli = Cli::try_parse_from(["t", "--insecure", "--announce", "239.0.0.50:3863"])
            .expect("parses");
        let c = cli.client.config().expect("config");
        assert!(c.registrars.is_empty());
        let a = c.announcements.expect("on");
        assert_eq!(a.group, "239.0.0.50:3863".parse().expect("addr"));
        assert_eq!((a.max_learned, a.expiry), (16, Duration::from_secs(5)));
        let cli = Cli::try_parse_from([
            "t",
            "--insecure",
            "-r",
            "127.0.0.1:3863",
            "--announce",
            "239.0.0.50:3863",
            "--announce-interface",
            "127.0.0.1",
            "--announce-max",
            "3",
            "--announce-expiry",
            "2s",
        ])
        .expect("parses");
        let c = cli.client.config().expect("config");
        assert_eq!(c.registrars.len(), 1);
        let a = c.announcements.expect("on");
        assert_eq!(a.interface, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((a.max_learned, a.expiry), (3, Duration::from_secs(2)));
        // Off by default; without either, no registrar at all.
        let cli = Cli::try_parse_from(["t", "--insecure"]).expect("parses");
        assert!(cli.client.config().is_err());
        let cli = Cli::try_parse_from(["t", "--insecure", "-r", "127.0.0.1:3863"]).expect("parses");
        assert!(cli.client.config().expect("config").announcements.is_none());
        // The settings need the group, and a cap of 0 is refused.
        assert!(Cli::try_parse_from(["t", "--insecure", "--announce-max", "3"]).is_err());
        let cli = Cli::try_parse_from([
            "t",
            "--insecure",
            "--announce",
            "239.0.0.50:3863",
            "--announce-max",
            "0",
        ])
        .expect("parses");
        assert!(cli.client.config().is_err());
    }

    #[test]
    fn policies_parse() {
        assert_eq!(parse_policy("rr"), Ok(Policy::RoundRobin));
        assert_eq!(
            parse_policy("WRR:3"),
            Ok(Policy::WeightedRoundRobin { weight: 3 })
        );
        assert_eq!(
            parse_policy("lu:100%"),
            Ok(Policy::LeastUsed { load: u32::MAX })
        );
        assert_eq!(
            parse_policy("lud:0:50%"),
            Ok(Policy::LeastUsedDegradation {
                load: 0,
                load_degradation: 2_147_483_648
            })
        );
        assert!(parse_policy("lu").unwrap_err().contains("1 value"));
        assert!(parse_policy("fastest")
            .unwrap_err()
            .contains("unknown policy"));
        assert!(parse_policy("lu:120%").is_err());
    }
}
