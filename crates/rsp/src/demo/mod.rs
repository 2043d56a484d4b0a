//! `rsp demo`: a secure pool with failover on this machine, with no
//! set-up. It writes pre-shared keys to a temporary directory, starts a
//! registrar (TLS 1.3 with PSKs) in this process and the echo PEs as `rsp
//! pe` child processes, and runs a pool user that sends an echo request
//! every `--interval`. After `--phase` it kills one PE with SIGKILL (no
//! deregistration: a crash), shows the pool user failing over and the
//! registrar removing the dead PE, runs another `--phase`, then stops the
//! PEs with SIGTERM (they deregister) and the registrar.
//!
//! `rsp demo --cluster` runs three registrars instead, as `rsp registrar`
//! child processes peered with each other (ENRP over TLS with PSKs), and
//! gives every PE and the pool user all three. After `--phase` it kills
//! the registrar that is home to most PEs with SIGKILL and shows the
//! survivors seeing it down and taking it over, each PE re-homed (by its
//! own server hunt and the takeover), every PE still resolvable at both
//! survivors, and the pool user still served; then it stops the PEs and
//! the surviving registrars with SIGTERM.
//!
//! The orchestration is here ([`drive`], the same for both: the pool
//! user, the phases, the tallies) and in the two scripts that say what is
//! killed and what follows ([`PeCrash`] here, [`cluster`] for
//! `--cluster`); [`lab`] owns the credentials and processes, [`report`]
//! the output.

mod cluster;
mod lab;
mod report;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use rserpool::PoolUser;
use rserpool_registrar::{Event, Removal};
use rserpool_wire::{PeId, PoolHandle};
use tokio::sync::broadcast::{self, error::RecvError};
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
    /// How long the pool runs before a PE (or registrar) is killed, and
    /// again after.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub phase: Duration,
    /// Time between two echo requests of the pool user.
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    pub interval: Duration,
    /// The registrar's keep-alive interval and timeout: a killed PE is
    /// gone from the handlespace about this long after its death.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub keep_alive: Duration,
    /// Three registrars (processes, peered with ENRP) instead of one;
    /// the registrar that is home to most PEs is killed instead of a PE.
    #[arg(long)]
    pub cluster: bool,
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

/// What a demo kills and what it waits for afterwards; [`drive`] runs
/// the pool user around it.
trait Script {
    /// What [`Script::next`] hands to [`Script::on`].
    type Watched;

    /// Before the pool user starts (after the lab did).
    async fn prepare(&mut self, lab: &mut Lab, report: &Report) -> anyhow::Result<()>;

    /// Kill the victim.
    async fn kill(&mut self, lab: &mut Lab, report: &Report, start: Instant) -> anyhow::Result<()>;

    /// The next thing to look at (cancel-safe: it runs in a select).
    async fn next(&mut self) -> anyhow::Result<Self::Watched>;

    /// Look at it.
    fn on(&mut self, w: Self::Watched, lab: &Lab, report: &Report, start: Instant);

    /// Whether what the demo shows after the kill happened.
    fn settled(&self) -> bool;

    /// The summary: the pool user's tally and what the script saw.
    fn summary(&self, tally: &Tally, lab: &Lab, report: &Report);

    /// After the kill, if it did not settle: what is missing.
    fn unsettled(&self) -> &'static str;
}

pub async fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    if args.interval.is_zero() || args.phase.is_zero() || args.keep_alive.is_zero() {
        anyhow::bail!("--interval, --phase and --keep-alive must be more than 0");
    }
    // Ctrl-C from here on stops the demo cleanly, even during set-up.
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let report = Report::new(json, args.cluster);
    let mut lab = tokio::select! {
        lab = Lab::start(args.pes, args.keep_alive, args.cluster, &report) => lab?,
        _ = &mut stop => {
            report.interrupted();
            return Ok(());
        }
    };
    let outcome = if args.cluster {
        let mut script = cluster::RegistrarCrash::new(&mut lab)?;
        drive(args, &mut lab, &report, stop, &mut script).await
    } else {
        let mut script = PeCrash::new(&lab);
        drive(args, &mut lab, &report, stop, &mut script).await
    };
    lab.stop(&report).await;
    outcome
}

/// Run the pool user through both phases and the kill.
async fn drive(
    args: &Args,
    lab: &mut Lab,
    report: &Report,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    script: &mut impl Script,
) -> anyhow::Result<()> {
    let handle =
        PoolHandle::new(POOL.as_bytes().to_vec()).context("the demo pool handle is empty")?;
    tokio::select! {
        r = script.prepare(lab, report) => r?,
        _ = stop.as_mut() => {
            report.interrupted();
            return Ok(());
        }
    }
    let pu = PoolUser::new(lab.pool_user_config()?)?;
    report.pool_user(POOL, args.interval, lab.registrars());

    let start = Instant::now();
    let kill_at = start + args.phase;
    let end_at = kill_at + args.phase;
    // What follows the kill is waited for past the second phase, but not
    // forever.
    let give_up_at = end_at + 4 * args.keep_alive + Duration::from_secs(5);
    let mut requests = tokio::time::interval(args.interval);
    requests.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress = tokio::time::interval(progress_period(args.phase));
    progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
    progress.reset();

    let mut tally = Tally::default();
    let mut since_tick = Tally::default();
    let mut killed = false;
    let request_timeout = Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if !killed && now >= kill_at {
            script.kill(lab, report, start).await?;
            killed = true;
        }
        if now >= end_at && (script.settled() || now >= give_up_at) {
            break;
        }
        let watched = tokio::select! {
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
                None
            }
            _ = progress.tick() => {
                report.progress(start, &since_tick, lab.names());
                since_tick = Tally::default();
                None
            }
            w = script.next() => Some(w?),
        };
        if let Some(w) = watched {
            script.on(w, lab, report, start);
        }
    }
    if since_tick.sent > 0 {
        report.progress(start, &since_tick, lab.names());
    }
    script.summary(&tally, lab, report);
    if killed && !script.settled() {
        anyhow::bail!("{}", script.unsettled());
    }
    Ok(())
}

/// `rsp demo`: kill a PE, wait for the registrar to remove it.
struct PeCrash {
    events: broadcast::Receiver<Event>,
    killed: Option<(PeId, Instant)>,
    removed: bool,
}

impl PeCrash {
    fn new(lab: &Lab) -> PeCrash {
        PeCrash {
            events: lab.registrar_events(),
            killed: None,
            removed: false,
        }
    }
}

impl Script for PeCrash {
    type Watched = Event;

    async fn prepare(&mut self, _lab: &mut Lab, _report: &Report) -> anyhow::Result<()> {
        Ok(())
    }

    async fn kill(&mut self, lab: &mut Lab, report: &Report, start: Instant) -> anyhow::Result<()> {
        let victim = lab.victim();
        self.killed = Some((lab.kill(victim, report, start).await?, Instant::now()));
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Event> {
        loop {
            match self.events.recv().await {
                Ok(e) => return Ok(e),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => anyhow::bail!("the registrar stopped"),
            }
        }
    }

    fn on(&mut self, e: Event, lab: &Lab, report: &Report, start: Instant) {
        if let Event::Removed {
            identifier, reason, ..
        } = e
        {
            if let Some((victim, at)) = self.killed {
                if victim == identifier {
                    self.removed = true;
                    report.removed(start, lab.names(), identifier, reason, at.elapsed());
                }
            }
        }
    }

    fn settled(&self) -> bool {
        self.removed
    }

    fn summary(&self, tally: &Tally, lab: &Lab, report: &Report) {
        report.summary(
            tally,
            lab.names(),
            report::Outcome::PeRemoved(self.killed.is_some() && self.removed),
        );
    }

    fn unsettled(&self) -> &'static str {
        "the registrar did not remove the killed PE in time"
    }
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
