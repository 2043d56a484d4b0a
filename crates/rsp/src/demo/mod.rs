//! `rsp demo`: a secure pool with failover on this machine, with no
//! set-up. It writes pre-shared keys to a temporary directory, starts a
//! registrar (TLS 1.3 with PSKs) in this process and the echo PEs as `rsp
//! pe` child processes, and runs a pool user that sends an echo request
//! every `--interval`. After `--phase` it kills one PE with SIGKILL (no
//! deregistration: a crash), shows the pool user failing over and the
//! registrar removing the dead PE, runs another `--phase`, then stops the
//! PEs with SIGTERM (they deregister) and the registrar.
//!
//! The orchestration is here; [`lab`] owns the credentials and processes,
//! [`report`] the output.

mod lab;
mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rserpool::PoolUser;
use rserpool_registrar::{Event, Removal};
use rserpool_wire::{PeId, PoolHandle};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::MissedTickBehavior;

use crate::duration::parse_duration;
use lab::Lab;
use report::Report;

/// The pool the demo PEs register under.
const POOL: &str = "echo";

/// Flags of `rsp demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Echo PEs to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=16))]
    pub pes: u8,
    /// How long the pool runs before a PE is killed, and again after.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub phase: Duration,
    /// Time between two echo requests of the pool user.
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    pub interval: Duration,
    /// The registrar's keep-alive interval and timeout: a killed PE is
    /// gone from the handlespace about this long after its death.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub keep_alive: Duration,
}

/// What the pool user has seen so far.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    lost: u64,
    answers: BTreeMap<PeId, u64>,
    failovers: u64,
    longest_failover: Duration,
}

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    if args.interval.is_zero() || args.phase.is_zero() || args.keep_alive.is_zero() {
        anyhow::bail!("--interval, --phase and --keep-alive must be more than 0");
    }
    // Ctrl-C from here on stops the demo cleanly, even during set-up.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let report = Report::new(json);
    let mut lab = tokio::select! {
        lab = Lab::start(args.pes, args.keep_alive, &report) => lab?,
        _ = &mut stop => {
            report.interrupted();
            return Ok(());
        }
    };
    let outcome = drive(args, &mut lab, &report, stop).await;
    lab.stop(&report).await;
    outcome
}

/// Run the pool user through both phases and the kill.
async fn drive(
    args: &Args,
    lab: &mut Lab,
    report: &Report,
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> anyhow::Result<()> {
    let handle =
        PoolHandle::new(POOL.as_bytes().to_vec()).context("the demo pool handle is empty")?;
    let pu = PoolUser::new(lab.pool_user_config()?)?;
    let mut events = lab.registrar_events();
    report.pool_user(POOL, args.interval);

    let start = Instant::now();
    let kill_at = start + args.phase;
    let end_at = kill_at + args.phase;
    // The removal is waited for past the second phase, but not forever.
    let give_up_at = end_at + 4 * args.keep_alive + Duration::from_secs(5);
    let mut requests = tokio::time::interval(args.interval);
    requests.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress = tokio::time::interval(progress_period(args.phase));
    progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
    progress.reset();

    let mut tally = Tally::default();
    let mut since_tick = Tally::default();
    let mut killed: Option<(PeId, Instant)> = None;
    let mut removed = false;
    let request_timeout = Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if killed.is_none() && now >= kill_at {
            let victim = lab.victim();
            killed = Some((lab.kill(victim, report, start).await?, Instant::now()));
        }
        if now >= end_at && (removed || now >= give_up_at) {
            break;
        }
        tokio::select! {
            _ = stop.as_mut() => {
                report.interrupted();
                break;
            }
            _ = requests.tick() => {
                tally.sent += 1;
                since_tick.sent += 1;
                let n = tally.sent;
                match crate::echo::request_with_failover(&pu, &handle, &n.to_be_bytes(), request_timeout).await {
                    Ok(a) => {
                        *tally.answers.entry(a.pe.identifier).or_default() += 1;
                        *since_tick.answers.entry(a.pe.identifier).or_default() += 1;
                        if !a.failed.is_empty() {
                            tally.failovers += 1;
                            tally.longest_failover = tally.longest_failover.max(a.took);
                            report.failover(start, n, &a, lab.names());
                        }
                    }
                    Err(e) => {
                        tally.lost += 1;
                        since_tick.lost += 1;
                        report.lost(start, n, &e);
                    }
                }
            }
            _ = progress.tick() => {
                report.progress(start, &since_tick, lab.names());
                since_tick = Tally::default();
            }
            e = events.recv() => match e {
                Ok(Event::Removed { identifier, reason, .. }) => {
                    if let Some((victim, at)) = killed {
                        if victim == identifier {
                            removed = true;
                            report.removed(start, lab.names(), identifier, reason, at.elapsed());
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => anyhow::bail!("the registrar stopped"),
            },
        }
    }
    if since_tick.sent > 0 {
        report.progress(start, &since_tick, lab.names());
    }
    report.summary(&tally, lab.names(), killed.is_some() && removed);
    if killed.is_some() && !removed {
        anyhow::bail!("the registrar did not remove the killed PE in time");
    }
    Ok(())
}

/// A few progress lines per phase: one a second, or three per phase for
/// short phases, but not more than ten a second.
fn progress_period(phase: Duration) -> Duration {
    (phase / 3).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// The reason text the registrar gives for a removal.
fn removal_text(r: Removal) -> &'static str {
    r.describe()
}
