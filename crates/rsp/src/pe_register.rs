//! `rsp pe register POOL --port P`: hold the registration of a service
//! that runs on its own (this process serves nothing), as Consul's agent
//! does for its services: keep-alives, re-registration and registrar
//! failover come from the library; an optional health check (a TCP
//! connect or a command) deregisters the service while it fails and
//! registers it again, with the same identifier, when it passes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::pe::check::{Check, Checker};
use crate::pe::health::{HealthGate, Thresholds};
use crate::pe::hold::{self, Health};
use crate::pe::PeArgs;

/// A check takes at most this long unless --check-timeout says otherwise
/// (by default it is the interval, capped at this).
const TIMEOUT_CAP: Duration = Duration::from_secs(5);

/// Flags of `rsp pe register`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("handle", |a| a.required(true).help("Pool handle to register the service under")))]
pub struct Args {
    #[command(flatten)]
    pub pe: PeArgs,
    /// TCP port of the service (1-65535).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Address pool users reach the service at. Default: this host's
    /// address on the registrar connection; a registrar refuses any other
    /// unless it allows foreign addresses.
    #[arg(long)]
    pub address: Option<IpAddr>,
    #[command(flatten)]
    pub check: CheckArgs,
}

/// The health check flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("check").args(["check_tcp", "check_command"])))]
pub struct CheckArgs {
    /// Check the service with a TCP connect: to --address (127.0.0.1
    /// without it) and --port, or to another endpoint with
    /// --check-tcp=HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, require_equals = true,
          default_missing_value = "", value_parser = parse_target)]
    pub check_tcp: Option<String>,
    /// Check the service by running CMD with `sh -c`: it passes when CMD
    /// exits with 0 (only the first bytes of its output are kept, for the
    /// failure message).
    #[arg(long, value_name = "CMD")]
    pub check_command: Option<String>,
    /// Time from the start of one check to the start of the next.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive, default_value = "10s", requires = "check")]
    pub check_interval: Duration,
    /// How long a check may take. Default: the interval, at most 5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive, requires = "check")]
    pub check_timeout: Option<Duration>,
    /// Failed checks in a row that deregister the service.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..), requires = "check")]
    pub check_failures: u32,
    /// Passed checks in a row that register it again after it failed
    /// (at start, the first check that passes registers it).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..), requires = "check")]
    pub check_successes: u32,
}

/// `--check-tcp=HOST:PORT` (empty: the service's own address).
fn parse_target(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let port = s
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("{s:?}: {port:?} is not a port (1-65535)")),
    }
}

fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be longer than 0"));
    }
    Ok(d)
}

impl CheckArgs {
    /// The check these flags ask for, if any; `service` is where the
    /// service listens.
    fn check(&self, service: SocketAddr) -> Option<Check> {
        match (&self.check_tcp, &self.check_command) {
            (Some(t), _) if t.is_empty() => Some(Check::Tcp(service.to_string())),
            (Some(t), _) => Some(Check::Tcp(t.clone())),
            (None, Some(cmd)) => Some(Check::Command(cmd.clone())),
            (None, None) => None,
        }
    }

    fn timeout(&self) -> Duration {
        self.check_timeout
            .unwrap_or(self.check_interval.min(TIMEOUT_CAP))
    }
}

/// Run `rsp pe register`.
pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM at any time must deregister.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let service = match args.address {
        Some(a) => format!("service at {}", SocketAddr::new(a, args.port)),
        None => format!("service on port {}", args.port),
    };
    let plan = args.pe.plan(args.port, args.address, service, json)?;
    let local = SocketAddr::new(
        args.address.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        args.port,
    );
    let health = args.check.check(local).map(|check| {
        let what = check.describe();
        if matches!(check, Check::Command(_)) && std::process::id() == 1 {
            // Processes a killed check command leaves behind are re-parented
            // to PID 1, which must reap them.
            tracing::warn!(
                "running as PID 1: run rsp under an init (docker run --init, tini) so that \
                 what a timed-out --check-command leaves behind is reaped"
            );
        }
        tracing::info!(
            "health check: {what} every {:?}, timeout {:?}",
            args.check.check_interval,
            args.check.timeout()
        );
        Health {
            checker: Checker::spawn(check, args.check.check_interval, args.check.timeout()),
            gate: HealthGate::new(Thresholds {
                failures: args.check.check_failures,
                successes: args.check.check_successes,
            }),
            what,
            successes: args.check.check_successes,
        }
    });
    hold::hold(plan, health, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_targets_need_a_host_and_a_port() {
        assert_eq!(parse_target(""), Ok(String::new()));
        assert_eq!(
            parse_target("db.example:5432"),
            Ok("db.example:5432".into())
        );
        assert_eq!(parse_target("[::1]:80"), Ok("[::1]:80".into()));
        assert!(parse_target("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(parse_target(":80").unwrap_err().contains("HOST:PORT"));
        assert!(parse_target("h:0").unwrap_err().contains("not a port"));
        assert!(parse_target("h:http").unwrap_err().contains("not a port"));
        assert!(parse_positive("0s").unwrap_err().contains("longer than 0"));
    }
}
