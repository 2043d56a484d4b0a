//! The simulator's own tests: the scenarios pass on a few seeds, a seed
//! replays bit for bit, and the checks do fire when their rule is broken.

use std::time::Duration;

use rserpool_sim::check::Rule;
use rserpool_sim::scenario::{by_name, FaultMix, Scenario, SCENARIOS};
use rserpool_sim::trace::TraceMode;

#[test]
fn every_scenario_passes_a_few_seeds() {
    for (name, build) in SCENARIOS {
        for seed in 1..=5 {
            let outcome = build(seed).run();
            assert!(
                outcome.passed(),
                "{name} seed {seed}: {:?}\n{}",
                outcome.violations,
                outcome.trace.join("\n")
            );
            assert!(
                outcome.stats.uses_ok > 0,
                "{name} seed {seed}: nothing was used"
            );
        }
    }
}

#[test]
fn a_seed_replays_the_same_trace() {
    let run = || {
        by_name("lossy", 11)
            .expect("scenario")
            .trace(TraceMode::Last(100_000))
            .run()
    };
    let (a, b) = (run(), run());
    assert!(
        a.trace.len() > 1000,
        "a real trace: {} lines",
        a.trace.len()
    );
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.stats, b.stats);
    let other = by_name("lossy", 12)
        .expect("scenario")
        .trace(TraceMode::Last(100_000))
        .run();
    assert_ne!(a.trace, other.trace, "another seed, another run");
}

#[test]
fn faults_are_injected_and_pool_users_fail_over() {
    let outcome = by_name("pe-faults", 3).expect("scenario").run();
    assert!(outcome.passed(), "{:?}", outcome.violations);
    assert!(outcome.stats.faults > 20, "{:?}", outcome.stats);
    assert!(outcome.stats.failovers > 0, "{:?}", outcome.stats);
}

#[test]
fn the_dead_pe_check_fires_when_the_bound_is_too_tight() {
    // With no allowance at all, a registrar that learns of a death by a
    // keep-alive timeout hands the PE out meanwhile: the check must see it.
    let outcome = Scenario::new(5)
        .pes(20)
        .pus(10)
        .faults(FaultMix {
            pe_per_minute: 10.0,
            ..FaultMix::NONE
        })
        .duration(Duration::from_secs(400))
        .dead_bound(Duration::ZERO)
        .run();
    assert!(
        outcome
            .violations
            .iter()
            .any(|v| matches!(v.rule, Rule::DeadPeResolved | Rule::FailoverToDead)),
        "{:?}",
        outcome.violations
    );
    assert!(outcome.replay_command().contains("--seed 5"));
}
