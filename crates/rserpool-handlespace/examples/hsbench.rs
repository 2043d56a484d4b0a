//! Handlespace benchmark: operations per second for the scenarios RSPLIB's
//! handlespace was measured on, one thread, and memory per PE.
//!
//! `cargo run --release -p rserpool-handlespace --example hsbench -- [--json] [--quick] [--only GROUP] [--policy NAME]`
//!
//! Method (RSPLIB's harness): each figure is the median of 15 timed
//! repetitions on the same handlespace, after one untimed warm-up, so
//! that the structure's memory is reused (page faults on fresh memory
//! are not what is timed). A registration repetition registers, then
//! re-registers, finds and deregisters the PEs, each timed; a resolution
//! repetition is 100,000 handle resolutions of 3 PEs. Registrations carry
//! a lifetime and a keep-alive deadline, as the registrar gives them.
//!
//! `--json` prints one object per line with `scenario`, `policy`, `pools`,
//! `pes_per_pool`, `operation`, `ops_per_sec` (the median),
//! `repetitions`, `min_ops_per_sec`, `max_ops_per_sec` and `spread`
//! ((max - min) / median) of the wall-clock rates, and `cpu_ops_per_sec`,
//! the median by the thread's CPU time (on a loaded machine the wall
//! clock also counts the time other processes ran); the memory line has
//! `bytes_per_pe` instead.
//! `--quick` runs smaller sizes and 3 repetitions (a smoke test, not
//! figures).
//! `--only handlespace|resolution|memory` runs one group and `--policy
//! NAME` the resolutions of one policy (for profiling).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_handlespace::{Config, Handlespace, Registration};
use rserpool_wire::{ConnId, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport};

/// Timed repetitions per figure (RSPLIB's harness takes the median of 15).
const REPETITIONS: usize = 15;

/// Counts the bytes currently allocated, for the memory figure.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        ALLOCATED.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new, Ordering::Relaxed);
        ALLOCATED.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Print a line; a closed stdout (`hsbench | head`) ends the run quietly.
fn emit(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").is_err() {
        std::process::exit(0);
    }
}

struct Out {
    json: bool,
}

/// What the repetitions of one timed operation gave: the median rate
/// (the figure) and the slowest and fastest repetition (the spread).
#[derive(Debug, Clone, Copy)]
struct Rates {
    median: f64,
    min: f64,
    max: f64,
    reps: usize,
    /// The median rate by the thread's CPU time (what the machine's other
    /// load does not inflate).
    cpu_median: f64,
}

/// The median of some rates (0 for none).
fn median(r: &mut [f64]) -> f64 {
    r.sort_by(f64::total_cmp);
    let k = r.len();
    match k {
        0 => 0.0,
        _ if k % 2 == 1 => r[k / 2],
        _ => (r[k / 2 - 1] + r[k / 2]) / 2.0,
    }
}

impl Rates {
    /// Rates of `n` operations in each of the repetitions measured.
    fn of(n: usize, times: &[Took]) -> Rates {
        let mut wall: Vec<f64> = times.iter().map(|t| rate(n, t.wall)).collect();
        let mut cpu: Vec<f64> = times.iter().map(|t| rate(n, t.cpu)).collect();
        let median_wall = median(&mut wall);
        Rates {
            median: median_wall,
            min: wall.first().copied().unwrap_or(0.0),
            max: wall.last().copied().unwrap_or(0.0),
            reps: wall.len(),
            cpu_median: median(&mut cpu),
        }
    }

    /// (max - min) / median: the spread of the repetitions.
    fn spread(&self) -> f64 {
        (self.max - self.min) / self.median.max(1e-9)
    }
}

impl Out {
    fn line(&self, scenario: &str, policy: &str, pools: usize, per: usize, op: &str, r: Rates) {
        if self.json {
            emit(format_args!(
                "{{\"scenario\":\"{scenario}\",\"policy\":\"{policy}\",\"pools\":{pools},\"pes_per_pool\":{per},\"operation\":\"{op}\",\"ops_per_sec\":{:.0},\"repetitions\":{},\"min_ops_per_sec\":{:.0},\"max_ops_per_sec\":{:.0},\"spread\":{:.3},\"cpu_ops_per_sec\":{:.0}}}",
                r.median, r.reps, r.min, r.max, r.spread(), r.cpu_median
            ));
        } else {
            emit(format_args!(
                "{scenario:<18} {policy:<6} {pools:>6} x {per:<7} {op:<20} {:>12}  {:>5.1}%",
                human(r.median),
                100.0 * r.spread()
            ));
        }
    }
}

fn human(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.2} M/s", ops / 1e6)
    } else {
        format!("{:.0} k/s", ops / 1e3)
    }
}

fn handle(i: usize) -> PoolHandle {
    PoolHandle::new(format!("pool-{i:06}")).expect("non-empty")
}

fn element(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::new(1),
        registration_life: 300,
        user_transport: Transport::Udp {
            port: 7,
            address: IpAddr::from(id.to_be_bytes()),
        },
        policy,
        asap_transport: None,
    }
}

fn registrations(
    pools: usize,
    per: usize,
    now: Instant,
    policy: &dyn Fn(u32) -> Policy,
) -> Vec<Registration> {
    let mut v = Vec::with_capacity(pools * per);
    for p in 0..pools {
        let h = handle(p);
        for i in 0..per {
            let id = (p * per + i) as u32 + 1;
            v.push(Registration {
                pool_handle: h.clone(),
                element: element(id, policy(id)),
                home: ServerId::new(1),
                expires: Some(now + Duration::from_secs(300)),
                keep_alive_due: Some(now + Duration::from_secs(5)),
                connection: Some(ConnId::new(u64::from(id))),
                identity: None,
                distance: 0,
                epoch: 0,
                registered_at: now,
            });
        }
    }
    v
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// One repetition's wall-clock and thread CPU time.
#[derive(Debug, Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

/// The CPU time this thread has used (Linux's CLOCK_THREAD_CPUTIME_ID,
/// from the C library std links anyway: no dependency for one call).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec of the platform's layout
    // (64-bit Linux) for the duration of the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    (rc == 0).then(|| Duration::new(secs, nanos))
}

/// No thread CPU clock here: the CPU figures repeat the wall clock's.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// Time `work` once.
fn time(work: impl FnOnce()) -> Took {
    let (t, c) = (Instant::now(), thread_cpu());
    work();
    let wall = t.elapsed();
    let cpu = match (c, thread_cpu()) {
        (Some(c0), Some(c1)) => c1.saturating_sub(c0),
        _ => wall,
    };
    Took { wall, cpu }
}

/// Registration, re-registration, find and deregistration of `pools x
/// per` PEs, each timed in every repetition on the same handlespace (the
/// registrations are cloned before the clock starts; the structure's
/// memory is reused from the second repetition on, as in RSPLIB's
/// harness, so that page faults on fresh memory are not what is timed).
fn registration_scenarios(out: &Out, sizes: &[(usize, usize)], reps: usize) {
    const OPS: [&str; 4] = ["registration", "re-registration", "find", "deregistration"];
    for &(pools, per) in sizes {
        let now = Instant::now();
        let mut hs = Handlespace::new(Config::default());
        let regs = registrations(pools, per, now, &|_| Policy::RoundRobin);
        let keys: Vec<(PoolHandle, PeId)> = regs
            .iter()
            .map(|r| (r.pool_handle.clone(), r.element.identifier))
            .collect();
        let n = regs.len();
        let mut times: [Vec<Took>; 4] = Default::default();
        // One warm-up repetition, untimed.
        for rep in 0..=reps {
            let (first, again) = (regs.clone(), regs.clone());
            let t = [
                time(|| {
                    for r in first {
                        let _ = hs.register(r);
                    }
                }),
                time(|| {
                    for r in again {
                        let _ = hs.register(r);
                    }
                }),
                time(|| {
                    let found = keys
                        .iter()
                        .filter(|(h, id)| hs.find(h, *id).is_some())
                        .count();
                    assert_eq!(found, n);
                }),
                time(|| {
                    for (h, id) in &keys {
                        let _ = hs.deregister(h, *id);
                    }
                }),
            ];
            assert!(hs.is_empty());
            if rep > 0 {
                for (v, d) in times.iter_mut().zip(t) {
                    v.push(d);
                }
            }
        }
        for (op, t) in OPS.iter().zip(&times) {
            out.line("handlespace", "RR", pools, per, op, Rates::of(n, t));
        }
    }
}

/// `resolutions` handle resolutions of 3 PEs, round robin over the
/// pools, timed `reps` times on the same handlespace after one warm-up.
fn resolution_scenarios(
    out: &Out,
    sizes: &[(usize, usize)],
    resolutions: usize,
    reps: usize,
    only: Option<&str>,
) {
    let policies: [(&str, &dyn Fn(u32) -> Policy); 6] = [
        ("RR", &|_| Policy::RoundRobin),
        ("LU", &|id| Policy::LeastUsed {
            load: id.wrapping_mul(2_654_435_761) % 1000,
        }),
        ("PRI", &|id| Policy::Priority { priority: id % 17 }),
        ("RAND", &|_| Policy::Random),
        ("WRAND", &|id| Policy::WeightedRandom {
            weight: 1 + id % 10,
        }),
        ("RLU", &|id| Policy::RandomizedLeastUsed {
            load: id.wrapping_mul(2_654_435_761),
        }),
    ];
    for (name, policy) in policies {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        for &(pools, per) in sizes {
            let now = Instant::now();
            let mut hs = Handlespace::new(Config::default());
            for r in registrations(pools, per, now, policy) {
                let _ = hs.register(r);
            }
            let handles: Vec<PoolHandle> = (0..pools).map(handle).collect();
            let mut rng = SmallRng::seed_from_u64(42);
            let mut times = Vec::with_capacity(reps);
            for rep in 0..=reps {
                let mut got = 0usize;
                let d = time(|| {
                    for i in 0..resolutions {
                        let h = &handles[i % pools];
                        got += hs
                            .resolve_each(h, Some(3), &mut rng, |e| {
                                std::hint::black_box(e);
                            })
                            .unwrap_or(0);
                    }
                });
                assert_eq!(got, resolutions * 3.min(per));
                if rep > 0 {
                    times.push(d);
                }
            }
            out.line(
                "resolution",
                name,
                pools,
                per,
                "handle_resolution_3",
                Rates::of(resolutions, &times),
            );
        }
    }
}

fn memory_scenario(out: &Out, total: usize) {
    let now = Instant::now();
    let regs = registrations(1, total, now, &|_| Policy::RoundRobin);
    let mut hs = Handlespace::new(Config::default());
    for r in regs {
        let _ = hs.register(r);
    }
    // What the handlespace holds is exactly what dropping it frees.
    let with = ALLOCATED.load(Ordering::Relaxed);
    drop(hs);
    let without = ALLOCATED.load(Ordering::Relaxed);
    let bytes = with.saturating_sub(without) as f64 / total as f64;
    if out.json {
        emit(format_args!(
            "{{\"scenario\":\"memory\",\"policy\":\"RR\",\"pools\":1,\"pes_per_pool\":{total},\"operation\":\"memory\",\"ops_per_sec\":null,\"bytes_per_pe\":{bytes:.0}}}"
        ));
    } else {
        emit(format_args!(
            "memory             RR          1 x {total:<7} bytes per PE         {bytes:>12.0}"
        ));
    }
}

fn main() {
    let mut json = false;
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut policy: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--quick" => quick = true,
            "--only" => match args.next() {
                Some(g) if ["handlespace", "resolution", "memory"].contains(&g.as_str()) => {
                    only = Some(g)
                }
                other => usage(&format!(
                    "--only takes handlespace, resolution or memory, not {other:?}"
                )),
            },
            "--policy" => match args.next() {
                Some(p) => policy = Some(p),
                None => usage("--policy takes a policy name (RR, LU, PRI, RAND, WRAND, RLU)"),
            },
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let runs = |group: &str| only.as_deref().map_or(true, |g| g == group);
    let out = Out { json };
    if !out.json {
        emit(format_args!(
            "{:<18} {:<6} {:>6}   {:<7} {:<20} {:>12}  {:>6}",
            "scenario", "policy", "pools", "PEs", "operation", "median", "spread"
        ));
    }
    let (reg_sizes, res_sizes, resolutions, mem, reps) = if quick {
        (
            vec![(1, 1000), (10, 10)],
            vec![(1, 10), (10, 10), (1, 1000)],
            10_000,
            10_000,
            3,
        )
    } else {
        (
            vec![(1, 10_000), (1, 100_000), (100, 100), (1000, 10)],
            vec![(1, 10), (1000, 10), (1, 10_000)],
            100_000,
            1_000_000,
            REPETITIONS,
        )
    };
    if runs("handlespace") {
        registration_scenarios(&out, &reg_sizes, reps);
    }
    if runs("resolution") {
        resolution_scenarios(&out, &res_sizes, resolutions, reps, policy.as_deref());
    }
    if runs("memory") {
        memory_scenario(&out, mem);
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("hsbench: {problem}\nusage: hsbench [--json] [--quick] [--only handlespace|resolution|memory] [--policy RR|LU|PRI|RAND|WRAND|RLU]");
    std::process::exit(2);
}
