//! Unit tests of the handlespace operations and policies.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_wire::{Policy, PoolElement, PoolHandle, Transport, TransportUse};

use super::*;

fn pe(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        identifier: id,
        home_registrar: 0,
        registration_life: 300,
        user_transport: Transport::Tcp {
            port: 7,
            transport_use: TransportUse::DataOnly,
            address: IpAddr::from([192, 0, 2, (id % 250) as u8]),
        },
        policy,
        asap_transport: None,
    }
}

fn reg(h: &PoolHandle, id: u32, policy: Policy) -> Registration {
    Registration {
        pool_handle: h.clone(),
        element: pe(id, policy),
        home: 1,
        expires: None,
        keep_alive_due: None,
        connection: Some(u64::from(id)),
        identity: None,
        distance: 0,
    }
}

fn ids(v: &[PoolElement]) -> Vec<u32> {
    v.iter().map(|p| p.identifier).collect()
}

#[test]
fn register_find_update_deregister() {
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("echo");
    assert_eq!(
        hs.register(reg(&h, 1, Policy::RoundRobin)),
        Ok(Registered::New)
    );
    assert_eq!(
        hs.register(reg(&h, 1, Policy::RoundRobin)),
        Ok(Registered::Updated)
    );
    assert_eq!(
        hs.register(reg(&h, 2, Policy::RoundRobin)),
        Ok(Registered::New)
    );
    assert_eq!((hs.len(), hs.pool_count()), (2, 1));
    assert!(hs.find(&h, 1).is_some());
    assert_eq!(hs.by_connection(2).count(), 1);
    assert!(hs.deregister(&h, 1).is_some());
    assert!(hs.deregister(&h, 1).is_none());
    assert!(hs.deregister(&h, 2).is_some());
    assert_eq!((hs.len(), hs.pool_count()), (0, 0));
    assert_eq!(hs.by_owner(1).count(), 0);
}

#[test]
fn inconsistent_registrations_are_refused_without_change() {
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("p");
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("first");
    hs.register(reg(&h, 2, Policy::RoundRobin)).expect("second");
    assert_eq!(
        hs.register(reg(&h, 3, Policy::LeastUsed { load: 0 })),
        Err(Inconsistency::Policy(Policy::RoundRobin))
    );
    let mut r = reg(&h, 3, Policy::RoundRobin);
    r.element.user_transport = Transport::Udp {
        port: 7,
        address: IpAddr::from([192, 0, 2, 9]),
    };
    assert!(matches!(hs.register(r), Err(Inconsistency::Transport(_))));
    let mut r = reg(&h, 3, Policy::RoundRobin);
    r.element.user_transport = Transport::Tcp {
        port: 7,
        transport_use: TransportUse::DataPlusControl,
        address: IpAddr::from([192, 0, 2, 9]),
    };
    assert_eq!(hs.register(r), Err(Inconsistency::DataControl));
    assert_eq!(hs.len(), 2);
}

#[test]
fn round_robin_head_advances_by_one() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("rr");
    for id in 1..=4 {
        hs.register(reg(&h, id, Policy::RoundRobin)).expect("ok");
    }
    let got: Vec<Vec<u32>> = (0..5)
        .map(|_| ids(&hs.resolve(&h, Some(2), &mut rng).expect("pool")))
        .collect();
    assert_eq!(
        got,
        vec![vec![1, 2], vec![2, 3], vec![3, 4], vec![4, 1], vec![1, 2]]
    );
}

#[test]
fn least_used_sorts_by_load_and_rotates_among_equals() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("lu");
    hs.register(reg(&h, 1, Policy::LeastUsed { load: 50 }))
        .expect("ok");
    hs.register(reg(&h, 2, Policy::LeastUsed { load: 10 }))
        .expect("ok");
    hs.register(reg(&h, 3, Policy::LeastUsed { load: 10 }))
        .expect("ok");
    assert_eq!(
        ids(&hs.resolve(&h, Some(3), &mut rng).expect("pool")),
        vec![2, 3, 1]
    );
    assert_eq!(
        ids(&hs.resolve(&h, Some(3), &mut rng).expect("pool")),
        vec![3, 2, 1]
    );
}

#[test]
fn least_used_with_degradation_spreads_between_load_updates() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("lud");
    let p = |load| Policy::LeastUsedDegradation {
        load,
        load_degradation: 100,
    };
    hs.register(reg(&h, 1, p(0))).expect("ok");
    hs.register(reg(&h, 2, p(150))).expect("ok");
    let picks: Vec<u32> = (0..4)
        .map(|_| ids(&hs.resolve(&h, Some(1), &mut rng).expect("pool"))[0])
        .collect();
    // 1 (0), 1 (100), 2 (150 < 200), 1 (200 < 250)
    assert_eq!(picks, vec![1, 1, 2, 1]);
}

#[test]
fn priority_picks_the_highest() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("prio");
    for (id, priority) in [(1, 5), (2, 9), (3, 1)] {
        hs.register(reg(&h, id, Policy::Priority { priority }))
            .expect("ok");
    }
    assert_eq!(
        ids(&hs.resolve(&h, Some(3), &mut rng).expect("pool")),
        vec![2, 1, 3]
    );
}

#[test]
fn weighted_round_robin_shares_follow_weights() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("wrr");
    for (id, weight) in [(1, 1), (2, 2), (3, 5)] {
        hs.register(reg(&h, id, Policy::WeightedRoundRobin { weight }))
            .expect("ok");
    }
    let mut count = [0u32; 4];
    for _ in 0..800 {
        count[ids(&hs.resolve(&h, Some(1), &mut rng).expect("pool"))[0] as usize] += 1;
    }
    assert_eq!(&count[1..], &[100, 200, 500]);
}

#[test]
fn weighted_random_returns_distinct_pes_in_proportion() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(7);
    let h = PoolHandle::from_static("wrand");
    for (id, weight) in [(1, 1), (2, 3), (3, 0)] {
        hs.register(reg(&h, id, Policy::WeightedRandom { weight }))
            .expect("ok");
    }
    let mut count = [0u32; 4];
    for _ in 0..40_000 {
        let got = ids(&hs.resolve(&h, Some(1), &mut rng).expect("pool"));
        count[got[0] as usize] += 1;
    }
    assert_eq!(count[3], 0);
    let share = f64::from(count[2]) / 40_000.0;
    assert!((share - 0.75).abs() < 0.01, "share {share}");
    let both = ids(&hs.resolve(&h, Some(3), &mut rng).expect("pool"));
    let mut sorted = both.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![1, 2],
        "weight 0 is never returned, no duplicates"
    );
}

#[test]
fn checksum_follows_registrations_per_owner() {
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("echo");
    let empty = hs.checksum(1);
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("ok");
    let one = hs.checksum(1);
    let mut reference = PeChecksum::default();
    reference.add(&h, 1);
    assert_eq!(one, reference.value());
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("update");
    assert_eq!(hs.checksum(1), one, "re-registration leaves the checksum");
    hs.deregister(&h, 1);
    assert_eq!(hs.checksum(1), empty);
}

#[test]
fn deadlines_pop_in_order() {
    let mut hs = Handlespace::new(Config::default());
    let t0 = Instant::now();
    let h = PoolHandle::from_static("d");
    let mut r = reg(&h, 1, Policy::RoundRobin);
    r.expires = Some(t0 + Duration::from_secs(300));
    r.keep_alive_due = Some(t0 + Duration::from_secs(5));
    hs.register(r).expect("ok");
    assert_eq!(hs.next_deadline(), Some(t0 + Duration::from_secs(5)));
    assert!(hs.pop_expired(t0 + Duration::from_secs(4)).is_empty());
    let e = hs.pop_expired(t0 + Duration::from_secs(5));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, DeadlineKind::KeepAlive);
    assert_eq!(hs.next_deadline(), Some(t0 + Duration::from_secs(300)));
    hs.deregister(&h, 1);
    assert_eq!(hs.next_deadline(), None);
}
