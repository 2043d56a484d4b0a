//! Scenarios: how many registrars, PEs, PUs and pools, the network, and
//! a fault plan, all drawn from one seed. A run plays the faults, then a
//! fault-free settling time (every fault has ended by then), and checks
//! the quiescent state.
//!
//! ```
//! use rserpool_sim::Scenario;
//!
//! let outcome = Scenario::new(7).registrars(1).pes(10).pus(3).run();
//! assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
//! ```

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rserpool_wire::{PoolHandle, ServerId};

use crate::check::{Rule, Violation};
use crate::net::{NetConfig, NodeId};
use crate::trace::TraceMode;
use crate::world::{Fault, Settings, Stats, World};

/// What a scenario injects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultMix {
    /// PE faults per simulated minute (crash, vanish, freeze, cut, stop,
    /// each followed by its recovery; some crashes are for good).
    pub pe_per_minute: f64,
    /// Registrar faults in the run (crash and restart, freeze and thaw,
    /// cut and heal).
    pub registrar_faults: usize,
    /// Whether the first registrar dies for good at some point (the
    /// others take over its clients).
    pub registrar_dies: bool,
}

impl FaultMix {
    /// No faults.
    pub const NONE: FaultMix = FaultMix {
        pe_per_minute: 0.0,
        registrar_faults: 0,
        registrar_dies: false,
    };
}

/// A simulation to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name (in replay command lines).
    pub name: &'static str,
    /// The seed every draw comes from.
    pub seed: u64,
    registrars: usize,
    pes: usize,
    pus: usize,
    pools: usize,
    duration: Duration,
    settle: Duration,
    faults: FaultMix,
    settings: Settings,
    trace: TraceMode,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// Its seed.
    pub seed: u64,
    /// What did not hold.
    pub violations: Vec<Violation>,
    /// The trace around the first violation (the last lines kept).
    pub trace: Vec<String>,
    /// Counters.
    pub stats: Stats,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command line that replays this run with its whole trace.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p rserpool-sim -- --seed {} --scenario {} --trace",
            self.seed, self.name
        )
    }
}

impl Scenario {
    /// A small fault-free scenario (1 registrar, 10 PEs in 2 pools, 2
    /// PUs, 5 simulated minutes) drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Scenario {
            name: "custom",
            seed,
            registrars: 1,
            pes: 10,
            pus: 2,
            pools: 2,
            duration: Duration::from_secs(300),
            settle: Duration::from_secs(150),
            faults: FaultMix::NONE,
            settings: Settings::default(),
            trace: TraceMode::Last(60),
        }
    }

    /// Name it.
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Number of registrars.
    pub fn registrars(mut self, n: usize) -> Self {
        self.registrars = n.max(1);
        self
    }

    /// The registrars form an ENRP cluster.
    pub fn cluster(mut self) -> Self {
        self.settings.cluster = true;
        self
    }

    /// Number of PEs.
    pub fn pes(mut self, n: usize) -> Self {
        self.pes = n;
        self
    }

    /// Number of PUs.
    pub fn pus(mut self, n: usize) -> Self {
        self.pus = n;
        self
    }

    /// Number of pools the PEs are spread over.
    pub fn pools(mut self, n: usize) -> Self {
        self.pools = n.max(1);
        self
    }

    /// Simulated time, the settling time at the end included.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// The faults.
    pub fn faults(mut self, f: FaultMix) -> Self {
        self.faults = f;
        self
    }

    /// The network.
    pub fn network(mut self, net: NetConfig) -> Self {
        self.settings.net = net;
        self
    }

    /// How the trace is kept.
    pub fn trace(mut self, mode: TraceMode) -> Self {
        self.trace = mode;
        self
    }

    /// How long a registrar may still hand out a dead PE (the default
    /// follows the keep-alive timers; tests shrink it to see the check
    /// fire).
    pub fn dead_bound(mut self, d: Duration) -> Self {
        self.settings.dead_bound = d;
        self
    }

    /// Whether to check the registrars' bookkeeping every ten seconds.
    pub fn periodic_checks(mut self, on: bool) -> Self {
        self.settings.periodic_checks = on;
        self
    }

    /// Build the world: registrars, PEs, PUs and the fault plan.
    pub fn build(&self) -> World {
        let mut w = World::new(self.seed, self.settings.clone(), self.trace);
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x0066_6175_6c74);
        let registrars: Vec<NodeId> = (0..self.registrars)
            .map(|i| w.add_registrar(ServerId::new(0x0100_0000 + i as u32 + 1)))
            .collect();
        let pools: Vec<PoolHandle> = (0..self.pools)
            .filter_map(|i| PoolHandle::new(format!("pool-{i}").into_bytes()))
            .collect();
        let pes: Vec<NodeId> = (0..self.pes)
            .map(|i| w.add_pe(pools[i % pools.len()].clone()))
            .collect();
        for _ in 0..self.pus {
            w.add_pu();
        }
        w.start_checks();
        self.plan(&mut w, &mut rng, &registrars, &pes);
        w
    }

    /// The fault plan: faults start after 10 s and every one has ended
    /// before the settling time; a node has one fault at a time.
    fn plan(&self, w: &mut World, rng: &mut SmallRng, registrars: &[NodeId], pes: &[NodeId]) {
        let start = Duration::from_secs(10);
        let Some(last) = self.duration.checked_sub(self.settle) else {
            return;
        };
        if last <= start {
            return;
        }
        let window = last - start;
        let mut busy_until = vec![Duration::ZERO; w.nodes.len()];
        let draw = |rng: &mut SmallRng, busy: &mut Vec<Duration>, n: NodeId, kinds: &[u8]| {
            let at = start + window.mul_f64(rng.random_range(0.0..1.0));
            if busy[n] > at {
                return None;
            }
            let length = Duration::from_millis(rng.random_range(500..60_000));
            let end = (at + length).min(last);
            busy[n] = end + Duration::from_secs(1);
            let kind = kinds[rng.random_range(0..kinds.len())];
            Some((at, end, kind))
        };
        let pe_faults = (self.faults.pe_per_minute * window.as_secs_f64() / 60.0).round() as usize;
        for _ in 0..pe_faults {
            if pes.is_empty() {
                break;
            }
            let n = pes[rng.random_range(0..pes.len())];
            let Some((at, end, kind)) = draw(rng, &mut busy_until, n, &[0, 1, 2, 3, 4, 5]) else {
                continue;
            };
            let (f, undo) = match kind {
                0 => (Fault::Crash(n), Some(Fault::Restart(n))),
                1 => (Fault::Vanish(n), Some(Fault::Restart(n))),
                2 => (Fault::Freeze(n), Some(Fault::Thaw(n))),
                3 => (Fault::Cut(n), Some(Fault::Heal(n))),
                4 => (Fault::Stop(n), Some(Fault::Start(n))),
                _ => (Fault::Crash(n), None),
            };
            w.schedule_fault(at, f);
            if let Some(u) = undo {
                w.schedule_fault(end, u);
            }
        }
        for _ in 0..self.faults.registrar_faults {
            let n = registrars[rng.random_range(0..registrars.len())];
            let Some((at, end, kind)) = draw(rng, &mut busy_until, n, &[0, 1, 2]) else {
                continue;
            };
            let (f, undo) = match kind {
                0 => (Fault::Crash(n), Fault::Restart(n)),
                1 => (Fault::Freeze(n), Fault::Thaw(n)),
                _ => (Fault::Cut(n), Fault::Heal(n)),
            };
            w.schedule_fault(at, f);
            w.schedule_fault(end, undo);
        }
        if self.faults.registrar_dies && registrars.len() > 1 {
            let n = registrars[0];
            let at = start + window.mul_f64(rng.random_range(0.0..1.0));
            if busy_until[n] <= at {
                let f = if rng.random_bool(0.5) {
                    Fault::Crash(n)
                } else {
                    Fault::Vanish(n)
                };
                w.schedule_fault(at, f);
            }
        }
    }

    /// Run it: the faults, the settling time, the quiescent checks. A
    /// panic in a core is a violation, not a crash of the simulator.
    pub fn run(&self) -> Outcome {
        let mut world = None;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let w = world.insert(self.build());
            w.run_until(self.duration);
            w.check_quiescent();
        }));
        let (mut violations, trace, stats) = match world {
            Some(w) => (
                w.violations,
                w.trace.lines().map(str::to_owned).collect(),
                w.stats,
            ),
            None => (Vec::new(), Vec::new(), Stats::default()),
        };
        if let Err(p) = result {
            let text = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            violations.push(Violation {
                at: Duration::ZERO,
                rule: Rule::Panic,
                detail: text,
            });
        }
        Outcome {
            name: self.name,
            seed: self.seed,
            violations,
            trace,
            stats,
        }
    }
}

/// Builds a scenario from a seed.
pub type Builder = fn(u64) -> Scenario;

/// The named scenarios, each built from a seed.
pub const SCENARIOS: &[(&str, Builder)] = &[
    ("steady", steady),
    ("pe-faults", pe_faults),
    ("registrar-restart", registrar_restart),
    ("registrar-failover", registrar_failover),
    ("lossy", lossy),
    ("cluster", cluster),
];

/// The scenario called `name`.
pub fn by_name(name: &str, seed: u64) -> Option<Scenario> {
    SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f(seed))
}

/// No faults: everything registers, stays registered, is found.
fn steady(seed: u64) -> Scenario {
    Scenario::new(seed)
        .named("steady")
        .pes(30)
        .pus(6)
        .pools(3)
        .duration(Duration::from_secs(300))
}

/// PEs crash, vanish, freeze, are cut off and leave; PUs fail over.
fn pe_faults(seed: u64) -> Scenario {
    Scenario::new(seed)
        .named("pe-faults")
        .pes(30)
        .pus(6)
        .pools(3)
        .duration(Duration::from_secs(600))
        .faults(FaultMix {
            pe_per_minute: 6.0,
            ..FaultMix::NONE
        })
}

/// The only registrar crashes and restarts, freezes, is cut off; PEs
/// register again, PUs resolve again.
fn registrar_restart(seed: u64) -> Scenario {
    Scenario::new(seed)
        .named("registrar-restart")
        .pes(20)
        .pus(5)
        .pools(2)
        .duration(Duration::from_secs(600))
        .faults(FaultMix {
            pe_per_minute: 2.0,
            registrar_faults: 3,
            registrar_dies: false,
        })
}

/// Two registrars; the first dies for good (crash or silent), on a
/// network that loses 1% of segments. Everybody moves to the second.
fn registrar_failover(seed: u64) -> Scenario {
    Scenario::new(seed)
        .named("registrar-failover")
        .registrars(2)
        .pes(20)
        .pus(5)
        .pools(2)
        .duration(Duration::from_secs(600))
        .network(NetConfig {
            loss: 0.01,
            ..NetConfig::default()
        })
        .faults(FaultMix {
            pe_per_minute: 2.0,
            registrar_faults: 0,
            registrar_dies: true,
        })
}

/// 5% loss and 30 ms of jitter, with PE faults.
fn lossy(seed: u64) -> Scenario {
    Scenario::new(seed)
        .named("lossy")
        .pes(30)
        .pus(6)
        .pools(3)
        .duration(Duration::from_secs(600))
        .network(NetConfig {
            loss: 0.05,
            jitter: Duration::from_millis(30),
            ..NetConfig::default()
        })
        .faults(FaultMix {
            pe_per_minute: 4.0,
            ..FaultMix::NONE
        })
}

/// Three registrars in an ENRP cluster on a network that loses 1% of
/// segments; registrars crash and restart, freeze and are cut off, PEs
/// fail; the registrars take over and audit each other, and at the end
/// agree on every PE and its home.
fn cluster(seed: u64) -> Scenario {
    Scenario::new(seed)
        .named("cluster")
        .cluster()
        .registrars(3)
        .pes(20)
        .pus(5)
        .pools(2)
        .duration(Duration::from_secs(600))
        .network(NetConfig {
            loss: 0.01,
            ..NetConfig::default()
        })
        .faults(FaultMix {
            pe_per_minute: 2.0,
            registrar_faults: 3,
            registrar_dies: false,
        })
}
