//! Handlespace benchmark: operations per second for the scenarios RSPLIB's
//! handlespace was measured on, one thread, and memory per PE.
//!
//! `cargo run --release -p rserpool-handlespace --example hsbench -- [--json] [--quick] [--only GROUP]`
//!
//! `--json` prints one object per line with `scenario`, `policy`, `pools`,
//! `pes_per_pool`, `operation`, `ops_per_sec` (and `bytes_per_pe` for the
//! memory line). `--quick` runs smaller sizes (a smoke test, not figures).
//! `--only handlespace|resolution|memory` runs one group (for profiling).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_handlespace::{Config, Handlespace, Registration};
use rserpool_wire::{Policy, PoolElement, PoolHandle, Transport};

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

impl Out {
    fn line(&self, scenario: &str, policy: &str, pools: usize, per: usize, op: &str, ops: f64) {
        if self.json {
            emit(format_args!(
                "{{\"scenario\":\"{scenario}\",\"policy\":\"{policy}\",\"pools\":{pools},\"pes_per_pool\":{per},\"operation\":\"{op}\",\"ops_per_sec\":{ops:.0}}}"
            ));
        } else {
            emit(format_args!(
                "{scenario:<18} {policy:<6} {pools:>6} x {per:<7} {op:<20} {:>12}",
                human(ops)
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
        identifier: id,
        home_registrar: 1,
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
                home: 1,
                expires: Some(now + Duration::from_secs(300)),
                keep_alive_due: Some(now + Duration::from_secs(5)),
                connection: Some(u64::from(id)),
                identity: None,
                distance: 0,
                registered_at: now,
            });
        }
    }
    v
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn registration_scenarios(out: &Out, sizes: &[(usize, usize)]) {
    for &(pools, per) in sizes {
        let now = Instant::now();
        let mut hs = Handlespace::new(Config::default());
        let regs = registrations(pools, per, now, &|_| Policy::RoundRobin);
        let keys: Vec<(PoolHandle, u32)> = regs
            .iter()
            .map(|r| (r.pool_handle.clone(), r.element.identifier))
            .collect();
        let again = regs.clone();
        let n = regs.len();

        let mut timed = |op: &str, work: &mut dyn FnMut(&mut Handlespace)| {
            let t = Instant::now();
            work(&mut hs);
            out.line("handlespace", "RR", pools, per, op, rate(n, t.elapsed()));
        };
        let mut regs = Some(regs);
        timed("registration", &mut |hs| {
            for r in regs.take().into_iter().flatten() {
                let _ = hs.register(r);
            }
        });
        let mut again = Some(again);
        timed("re-registration", &mut |hs| {
            for r in again.take().into_iter().flatten() {
                let _ = hs.register(r);
            }
        });
        timed("find", &mut |hs| {
            let found = keys
                .iter()
                .filter(|(h, id)| hs.find(h, *id).is_some())
                .count();
            assert_eq!(found, n);
        });
        timed("deregistration", &mut |hs| {
            for (h, id) in &keys {
                let _ = hs.deregister(h, *id);
            }
        });
        assert!(hs.is_empty());
    }
}

fn resolution_scenarios(out: &Out, sizes: &[(usize, usize)], resolutions: usize) {
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
        for &(pools, per) in sizes {
            let now = Instant::now();
            let mut hs = Handlespace::new(Config::default());
            for r in registrations(pools, per, now, policy) {
                let _ = hs.register(r);
            }
            let handles: Vec<PoolHandle> = (0..pools).map(handle).collect();
            let mut rng = SmallRng::seed_from_u64(42);
            // Warm up (caches, branch predictors, clock) before timing.
            for i in 0..resolutions / 10 {
                hs.resolve_each(&handles[i % pools], Some(3), &mut rng, |e| {
                    std::hint::black_box(e);
                });
            }
            let t = Instant::now();
            let mut got = 0usize;
            for i in 0..resolutions {
                let h = &handles[i % pools];
                got += hs
                    .resolve_each(h, Some(3), &mut rng, |e| {
                        std::hint::black_box(e);
                    })
                    .unwrap_or(0);
            }
            assert_eq!(got, resolutions * 3.min(per));
            out.line(
                "resolution",
                name,
                pools,
                per,
                "handle_resolution_3",
                rate(resolutions, t.elapsed()),
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
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let runs = |group: &str| only.as_deref().map_or(true, |g| g == group);
    let out = Out { json };
    if !out.json {
        emit(format_args!(
            "{:<18} {:<6} {:>6}   {:<7} {:<20} {:>12}",
            "scenario", "policy", "pools", "PEs", "operation", "rate"
        ));
    }
    let (reg_sizes, res_sizes, resolutions, mem) = if quick {
        (
            vec![(1, 1000), (10, 10)],
            vec![(1, 10), (10, 10), (1, 1000)],
            10_000,
            10_000,
        )
    } else {
        (
            vec![(1, 10_000), (1, 100_000), (100, 100), (1000, 10)],
            vec![(1, 10), (1000, 10), (1, 10_000)],
            100_000,
            1_000_000,
        )
    };
    if runs("handlespace") {
        registration_scenarios(&out, &reg_sizes);
    }
    if runs("resolution") {
        resolution_scenarios(&out, &res_sizes, resolutions);
    }
    if runs("memory") {
        memory_scenario(&out, mem);
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("hsbench: {problem}\nusage: hsbench [--json] [--quick] [--only handlespace|resolution|memory]");
    std::process::exit(2);
}
