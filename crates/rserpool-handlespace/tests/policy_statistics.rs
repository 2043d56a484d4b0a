//! Statistical and behavioural tests of every selection policy through the
//! public handlespace API, with fixed seeds: shares are checked with a
//! chi-square test at p = 0.001 (the critical values are those of the
//! chi-square distribution for the given degrees of freedom), orders
//! exactly.

use std::net::IpAddr;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_handlespace::selection::MAX_LOAD;
use rserpool_handlespace::{Config, Handlespace, PoolUserSelection, Registration};
use rserpool_wire::{ConnId, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport};

/// Chi-square critical values at p = 0.001 by degrees of freedom.
fn critical(df: usize) -> f64 {
    match df {
        1 => 10.828,
        2 => 13.816,
        3 => 16.266,
        4 => 18.467,
        9 => 27.877,
        39 => 72.055,
        _ => panic!("no critical value for {df} degrees of freedom"),
    }
}

/// Chi-square statistic of `observed` counts against `expected` shares.
fn chi_square(observed: &[u64], expected: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    let total: f64 = expected.iter().sum();
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &e)| {
            let e = e / total * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

fn assert_shares(observed: &[u64], expected: &[f64]) {
    let x2 = chi_square(observed, expected);
    let limit = critical(observed.len() - 1);
    assert!(
        x2 < limit,
        "chi-square {x2:.2} >= {limit} for {observed:?} against {expected:?}"
    );
}

struct Pool {
    hs: Handlespace,
    handle: PoolHandle,
    rng: SmallRng,
}

impl Pool {
    fn new(seed: u64) -> Self {
        Pool {
            hs: Handlespace::new(Config::default()),
            handle: PoolHandle::from_static("stats"),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn add(&mut self, id: u32, policy: Policy, distance: u32) {
        let r = Registration {
            pool_handle: self.handle.clone(),
            element: PoolElement {
                identifier: PeId::new(id),
                home_registrar: ServerId::new(1),
                registration_life: 300,
                user_transport: Transport::Udp {
                    port: 7,
                    address: IpAddr::from([192, 0, 2, id as u8]),
                },
                policy,
                asap_transport: None,
            },
            home: ServerId::new(1),
            expires: None,
            keep_alive_due: None,
            connection: Some(ConnId::new(u64::from(id))),
            identity: None,
            distance,
            epoch: 0,
            registered_at: std::time::Instant::now(),
        };
        self.hs.register(r).expect("consistent registration");
    }

    fn resolve(&mut self, n: u32) -> Vec<u32> {
        let mut ids = Vec::new();
        self.hs
            .resolve_each(&self.handle, Some(n), &mut self.rng, |e| {
                ids.push(e.identifier.get())
            })
            .expect("pool exists");
        ids
    }

    /// The heads of `k` single-item resolutions, in order.
    fn heads(&mut self, k: usize) -> Vec<u32> {
        (0..k).map(|_| self.resolve(1)[0]).collect()
    }

    /// How often each identifier in `1..=max_id` heads `rounds` resolutions
    /// of `n` items.
    fn head_counts(&mut self, rounds: usize, n: u32, max_id: u32) -> Vec<u64> {
        let mut count = vec![0u64; max_id as usize + 1];
        for _ in 0..rounds {
            count[self.resolve(n)[0] as usize] += 1;
        }
        count.remove(0);
        count
    }
}

fn distinct(ids: &[u32]) -> bool {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.windows(2).all(|w| w[0] != w[1])
}

#[test]
fn random_is_uniform_at_every_position() {
    let mut p = Pool::new(11);
    for id in 1..=10 {
        p.add(id, Policy::Random, 0);
    }
    assert_shares(&p.head_counts(100_000, 1, 10), &[1.0; 10]);
    // Three distinct PEs per answer; each PE in 3/10 of the answers, and
    // uniform at each position.
    let mut any = vec![0u64; 10];
    let mut third = vec![0u64; 10];
    for _ in 0..50_000 {
        let got = p.resolve(3);
        assert_eq!(got.len(), 3);
        assert!(distinct(&got), "{got:?}");
        for id in &got {
            any[*id as usize - 1] += 1;
        }
        third[got[2] as usize - 1] += 1;
    }
    assert_shares(&any, &[1.0; 10]);
    assert_shares(&third, &[1.0; 10]);
}

#[test]
fn random_stays_uniform_after_deregistrations() {
    let mut p = Pool::new(12);
    for id in 1..=50 {
        p.add(id, Policy::Random, 0);
    }
    // Remove ten PEs from the middle and the ends of the dense array.
    for id in [1, 5, 17, 18, 25, 33, 40, 44, 49, 50] {
        assert!(p.hs.deregister(&p.handle, PeId::new(id)).is_some());
    }
    let mut any = vec![0u64; 51];
    for _ in 0..40_000 {
        let got = p.resolve(5);
        assert!(distinct(&got));
        for id in got {
            any[id as usize] += 1;
        }
    }
    let remaining: Vec<u64> = (1..=50)
        .filter(|id| p.hs.find(&p.handle, PeId::new(*id)).is_some())
        .map(|id| any[id as usize])
        .collect();
    assert_eq!(remaining.len(), 40);
    assert_eq!(any.iter().sum::<u64>(), remaining.iter().sum::<u64>());
    assert_shares(&remaining, &[1.0; 40]);
}

#[test]
fn weighted_random_shares_follow_weights() {
    let mut p = Pool::new(13);
    for id in 1..=5 {
        p.add(id, Policy::WeightedRandom { weight: id * 10 }, 0);
    }
    assert_shares(
        &p.head_counts(100_000, 1, 5),
        &[10.0, 20.0, 30.0, 40.0, 50.0],
    );
    // Multi-item answers stay distinct and complete.
    for _ in 0..1000 {
        let got = p.resolve(5);
        assert_eq!(got.len(), 5);
        assert!(distinct(&got));
    }
}

#[test]
fn weighted_round_robin_gives_exact_shares_evenly_spread() {
    let mut p = Pool::new(14);
    for (id, weight) in [(1, 1), (2, 2), (3, 4)] {
        p.add(id, Policy::WeightedRoundRobin { weight }, 0);
    }
    let heads = p.heads(700);
    for window in heads.chunks(7) {
        let mut c = [0; 4];
        for id in window {
            c[*id as usize] += 1;
        }
        // Every cycle of 7 hand-outs holds each PE weight times.
        assert_eq!(&c[1..], &[1, 2, 4], "cycle {window:?}");
    }
}

#[test]
fn priority_returns_decreasing_priorities_and_rotates_among_the_highest() {
    let mut p = Pool::new(15);
    for (id, priority) in [(1, 9), (2, 3), (3, 9), (4, 7)] {
        p.add(id, Policy::Priority { priority }, 0);
    }
    let lists: Vec<Vec<u32>> = (0..4).map(|_| p.resolve(4)).collect();
    assert_eq!(
        lists,
        vec![
            vec![1, 3, 4, 2],
            vec![3, 1, 4, 2],
            vec![1, 3, 4, 2],
            vec![3, 1, 4, 2]
        ]
    );
}

#[test]
fn least_used_picks_the_lowest_and_rotates_among_equals() {
    let mut p = Pool::new(16);
    for (id, load) in [(1, 500), (2, 100), (3, 100), (4, 100), (5, 900)] {
        p.add(id, Policy::LeastUsed { load }, 0);
    }
    let heads: Vec<u32> = (0..6).map(|_| p.resolve(2)[0]).collect();
    assert_eq!(heads, vec![2, 3, 4, 2, 3, 4]);
    // The last head was 4: the equal-load group wraps to 2.
    assert_eq!(p.resolve(5), vec![2, 3, 4, 1, 5]);
    // A load update re-sorts.
    p.add(5, Policy::LeastUsed { load: 0 }, 0);
    assert_eq!(p.resolve(1), vec![5]);
}

#[test]
fn priority_least_used_sorts_by_load_plus_degradation() {
    let mut p = Pool::new(17);
    // RFC 5356 5.3.1's example: A 50+10 beats B 50+50.
    let plu = |load, load_degradation| Policy::PriorityLeastUsed {
        load,
        load_degradation,
    };
    p.add(1, plu(50, 50), 0);
    p.add(2, plu(50, 10), 0);
    p.add(3, plu(40, 30), 0);
    // Sums: 1 = 100, 2 = 60, 3 = 70.
    assert_eq!(p.resolve(3), vec![2, 3, 1]);
}

#[test]
fn least_used_with_degradation_resets_on_re_registration() {
    let mut p = Pool::new(18);
    let lud = |load| Policy::LeastUsedDegradation {
        load,
        load_degradation: 100,
    };
    p.add(1, lud(0), 0);
    p.add(2, lud(250), 0);
    // 1 at 0, 100, 200 beats 2 at 250; then 2 (250 < 300).
    let heads = p.heads(4);
    assert_eq!(heads, vec![1, 1, 1, 2]);
    // Re-registration sets the counter back to 0 (RFC 5356 5.2.2).
    p.add(1, lud(0), 0);
    assert_eq!(p.resolve(1), vec![1]);
    // Every PE of a multi-item answer is counted.
    let mut q = Pool::new(19);
    q.add(1, lud(0), 0);
    q.add(2, lud(0), 0);
    q.add(3, lud(50), 0);
    assert_eq!(q.resolve(2), vec![1, 2]);
    assert_eq!(q.resolve(1), vec![3], "1 and 2 are at 100 now");
}

#[test]
fn priority_least_used_with_degradation_counts_the_next_request() {
    // 0xb0001003: load + (counter + 1) x degradation.
    let mut p = Pool::new(20);
    let plud = |load, load_degradation| Policy::PriorityLeastUsedDegradation {
        load,
        load_degradation,
    };
    p.add(1, plud(0, 100), 0);
    p.add(2, plud(60, 50), 0);
    // 1: 100, 200, 300; 2: 110, 160, 210.
    let heads = p.heads(5);
    assert_eq!(heads, vec![1, 2, 2, 1, 2]);
}

#[test]
fn randomized_least_used_favours_low_load() {
    let mut p = Pool::new(21);
    let q = (MAX_LOAD + 1) / 4;
    for (id, quarter) in [(1u32, 0u64), (2, 1), (3, 2), (4, 3)] {
        p.add(
            id,
            Policy::RandomizedLeastUsed {
                load: (quarter * q) as u32,
            },
            0,
        );
    }
    let expected: Vec<f64> = (0..4).map(|k| (MAX_LOAD - k * q) as f64).collect();
    assert_shares(&p.head_counts(100_000, 1, 4), &expected);
}

#[test]
fn randomized_priority_least_used_weighs_load_plus_degradation() {
    let mut p = Pool::new(22);
    let rplu = |load: u64, deg: u64| Policy::RandomizedPriorityLeastUsed {
        load: load as u32,
        load_degradation: deg as u32,
    };
    let q = (MAX_LOAD + 1) / 4;
    p.add(1, rplu(0, 0), 0);
    p.add(2, rplu(q, q), 0);
    p.add(3, rplu(2 * q, q), 0);
    let expected = [
        MAX_LOAD as f64,
        (MAX_LOAD - 2 * q) as f64,
        (MAX_LOAD - 3 * q) as f64,
    ];
    assert_shares(&p.head_counts(100_000, 1, 3), &expected);
}

#[test]
fn randomized_degradation_variants_shift_picks_away_from_used_pes() {
    // Both PEs idle, large degradation: the PE handed out loses weight
    // until re-registration, so hand-outs alternate far more than chance.
    for policy in [
        Policy::RandomizedLeastUsedDegradation {
            load: 0,
            load_degradation: 0x7000_0000,
        },
        Policy::RandomizedPriorityLeastUsedDegradation {
            load: 0,
            load_degradation: 0x3800_0000,
        },
    ] {
        let mut p = Pool::new(23);
        p.add(1, policy.clone(), 0);
        p.add(2, policy.clone(), 0);
        let heads = p.heads(4);
        let ones = heads.iter().filter(|&&id| id == 1).count();
        assert!((1..=3).contains(&ones), "{policy:?}: {heads:?}");
        // Saturated: still answers (weights bottom out at 1, not 0).
        for _ in 0..100 {
            assert_eq!(p.resolve(2).len(), 2);
        }
        // Re-registration gives the weight back: over fresh pools the
        // first pick is a fair coin.
        let mut first = [0u64; 2];
        for seed in 0..2000 {
            let mut f = Pool::new(seed);
            f.add(1, policy.clone(), 0);
            f.add(2, policy.clone(), 0);
            first[f.resolve(1)[0] as usize - 1] += 1;
        }
        assert_shares(&first, &[1.0, 1.0]);
    }
}

#[test]
fn distance_penalty_prefers_near_pes() {
    // LU-DPF: equal load, the nearer PE first.
    let mut p = Pool::new(24);
    let ludpf = |load| Policy::LeastUsedDpf {
        load,
        load_dpf: 1000,
        distance: 0,
    };
    p.add(1, ludpf(5000), 20);
    p.add(2, ludpf(5000), 2);
    p.add(3, ludpf(10_000), 0);
    // Keys: 1 = 25000, 2 = 7000, 3 = 10000.
    assert_eq!(p.resolve(3), vec![2, 3, 1]);

    // LUD-DPF: degradation and distance together.
    let mut p = Pool::new(25);
    let luddpf = |load| Policy::LeastUsedDegradationDpf {
        load,
        load_degradation: 3000,
        load_dpf: 1000,
        distance: 0,
    };
    p.add(1, luddpf(0), 5);
    p.add(2, luddpf(1000), 0);
    // 1: 5000, 8000; 2: 1000, 4000, 7000, 10000.
    let heads = p.heads(4);
    assert_eq!(heads, vec![2, 2, 1, 2]);

    // WRAND-DPF: half the weight at the distance where the penalty is 1/2.
    let mut p = Pool::new(26);
    let wdpf = |weight_dpf| Policy::WeightedRandomDpf {
        weight: 1000,
        weight_dpf,
        distance: 0,
    };
    p.add(1, wdpf(0), 0);
    p.add(2, wdpf(((MAX_LOAD + 1) / 20) as u32), 10);
    assert_shares(&p.head_counts(60_000, 1, 2), &[2.0, 1.0]);
}

#[test]
fn pool_user_selection_over_a_resolution_follows_the_policy() {
    // The PU side of weighted random over a registrar answer: shares
    // follow weights again (RFC 5356 4.4.3).
    let mut p = Pool::new(27);
    for id in 1..=3 {
        p.add(id, Policy::WeightedRandom { weight: id }, 0);
    }
    let list =
        p.hs.resolve(&p.handle.clone(), Some(3), &mut p.rng)
            .expect("pool");
    let mut pu = PoolUserSelection::new(list);
    let mut count = vec![0u64; 3];
    let mut rng = SmallRng::seed_from_u64(28);
    for _ in 0..60_000 {
        let id = pu.select(&mut rng).expect("active").identifier;
        count[id.get() as usize - 1] += 1;
    }
    assert_shares(&count, &[1.0, 2.0, 3.0]);
}
