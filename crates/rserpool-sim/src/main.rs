//! `rserpool-sim`: run simulated seeds of every scenario, replay one, or
//! time one simulated hour of a large pool.
//!
//! * `rserpool-sim --seeds N [--first S] [--scenario NAME]`: seeds S..S+N
//!   of every scenario (or one); a failing run prints its violations, the
//!   trace before the first one, and the command line that replays it.
//!   The last line is `N seeds, F failed` (F: seeds with a failed run).
//! * `rserpool-sim --seed S --scenario NAME --trace`: one run with its
//!   whole trace (two runs print the same).
//! * `rserpool-sim bench [--json] [--pes 10000] [--pus 1000]`: the
//!   wall-clock seconds one simulated hour takes (`simulated_hour_s`).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rserpool_sim::scenario::{by_name, Scenario, SCENARIOS};
use rserpool_sim::trace::TraceMode;

#[derive(Parser)]
#[command(name = "rserpool-sim", about = "Deterministic simulation of RSerPool")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// How many seeds of each scenario to run.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Run this seed only (with --scenario).
    #[arg(long)]
    seed: Option<u64>,
    /// Only this scenario.
    #[arg(long)]
    scenario: Option<String>,
    /// Print every step of the run (with --seed).
    #[arg(long)]
    trace: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Time one simulated hour of a large system.
    Bench {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Pool elements.
        #[arg(long, default_value_t = 10_000)]
        pes: usize,
        /// Pool users.
        #[arg(long, default_value_t = 1_000)]
        pus: usize,
        /// Pools.
        #[arg(long, default_value_t = 100)]
        pools: usize,
        /// Simulated minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Bench {
        json,
        pes,
        pus,
        pools,
        minutes,
    }) = args.command
    {
        return bench(json, pes, pus, pools, minutes);
    }
    let names: Vec<&str> = match &args.scenario {
        Some(n) if by_name(n, 0).is_none() => {
            eprintln!(
                "no scenario {n:?}; there are: {}",
                SCENARIOS.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
            );
            return ExitCode::from(2);
        }
        Some(n) => vec![n.as_str()],
        None => SCENARIOS.iter().map(|s| s.0).collect(),
    };
    // A core's panic is reported as a violation of the run; the default
    // hook would print it a second time.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(seed) = args.seed {
        let mut failed = false;
        for name in &names {
            let Some(s) = by_name(name, seed) else {
                continue;
            };
            let mode = if args.trace {
                TraceMode::Print
            } else {
                TraceMode::Last(60)
            };
            let outcome = s.trace(mode).run();
            failed |= !report(&outcome, !args.trace);
            if outcome.passed() {
                println!("{name} seed {seed}: ok ({:?})", outcome.stats);
            }
        }
        println!("1 seeds, {} failed", u8::from(failed));
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let mut failed_seeds = std::collections::BTreeSet::new();
    for name in &names {
        let started = Instant::now();
        let mut failed = 0;
        for seed in args.first..args.first + args.seeds {
            let Some(s) = by_name(name, seed) else {
                continue;
            };
            let outcome = s.run();
            if !report(&outcome, true) {
                failed += 1;
                failed_seeds.insert(seed);
            }
        }
        println!(
            "{name}: {} seeds, {failed} failed ({:.1} s)",
            args.seeds,
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
    }
    println!("{} seeds, {} failed", args.seeds, failed_seeds.len());
    if failed_seeds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Print a failed run; whether it passed.
fn report(outcome: &rserpool_sim::Outcome, with_trace: bool) -> bool {
    if outcome.passed() {
        return true;
    }
    println!(
        "FAILED {} seed {}: {} violations",
        outcome.name,
        outcome.seed,
        outcome.violations.len()
    );
    for v in outcome.violations.iter().take(10) {
        println!("  {v}");
    }
    if with_trace {
        println!("  the trace before it:");
        for line in &outcome.trace {
            println!("    {line}");
        }
    }
    println!("  replay: {}", outcome.replay_command());
    false
}

fn bench(json: bool, pes: usize, pus: usize, pools: usize, minutes: u64) -> ExitCode {
    let simulated = Duration::from_secs(minutes * 60);
    let s = Scenario::new(1)
        .named("bench")
        .pes(pes)
        .pus(pus)
        .pools(pools)
        .duration(simulated)
        .trace(TraceMode::Off)
        .periodic_checks(false);
    if !json {
        eprintln!(
            "simulating {minutes} min of {pes} PEs and {pus} PUs in {pools} pools, 1 registrar..."
        );
    }
    let started = Instant::now();
    let outcome = s.run();
    let wall = started.elapsed().as_secs_f64();
    let per_hour = wall * 3600.0 / simulated.as_secs_f64().max(1.0);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "simulated_hour_s": (per_hour * 1000.0).round() / 1000.0,
                "wall_s": (wall * 1000.0).round() / 1000.0,
                "simulated_s": simulated.as_secs(),
                "pes": pes,
                "pus": pus,
                "pools": pools,
                "events": outcome.stats.events,
                "messages": outcome.stats.messages,
                "uses_ok": outcome.stats.uses_ok,
                "violations": outcome.violations.len(),
            })
        );
    } else {
        println!(
            "simulated_hour_s {per_hour:.2} ({wall:.2} s for {minutes} min; {} events, {} messages, {} uses, {} violations)",
            outcome.stats.events,
            outcome.stats.messages,
            outcome.stats.uses_ok,
            outcome.violations.len()
        );
        report(&outcome, false);
    }
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
