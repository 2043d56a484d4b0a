//! Unit tests of the handlespace operations and policies.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_wire::{Policy, PoolElement, PoolHandle, Transport, TransportUse};

use super::*;

/// A PE with a TCP user transport (also the pool-user tests' fixture).
pub(crate) fn pe(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::UNDETERMINED,
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
        home: ServerId::new(1),
        expires: None,
        keep_alive_due: None,
        connection: Some(ConnId::new(u64::from(id))),
        identity: None,
        distance: 0,
        epoch: 0,
        registered_at: Instant::now(),
    }
}

fn ids(v: &[PoolElement]) -> Vec<u32> {
    v.iter().map(|p| p.identifier.get()).collect()
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
        Ok(Registered::Updated { changed: false })
    );
    assert_eq!(
        hs.register(reg(&h, 2, Policy::RoundRobin)),
        Ok(Registered::New)
    );
    assert_eq!((hs.len(), hs.pool_count()), (2, 1));
    assert!(hs.find(&h, PeId::new(1)).is_some());
    assert_eq!(hs.by_connection(ConnId::new(2)).count(), 1);
    assert!(hs.deregister(&h, PeId::new(1)).is_some());
    assert!(hs.deregister(&h, PeId::new(1)).is_none());
    assert!(hs.deregister(&h, PeId::new(2)).is_some());
    assert_eq!((hs.len(), hs.pool_count()), (0, 0));
    assert_eq!(hs.by_owner(ServerId::new(1)).count(), 0);
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
    let empty = hs.checksum(ServerId::new(1));
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("ok");
    let one = hs.checksum(ServerId::new(1));
    let mut reference = PeChecksum::default();
    reference.add(&h, PeId::new(1));
    assert_eq!(one, reference.value());
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("update");
    assert_eq!(
        hs.checksum(ServerId::new(1)),
        one,
        "re-registration leaves the checksum"
    );
    hs.deregister(&h, PeId::new(1));
    assert_eq!(hs.checksum(ServerId::new(1)), empty);
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
    hs.deregister(&h, PeId::new(1));
    assert_eq!(hs.next_deadline(), None);
}

#[test]
fn deadlines_of_equal_time_pop_by_kind_then_slot() {
    // One queue item per PE holds its earliest deadline; the order is
    // still that of every deadline queued on its own: time, then kind
    // (lifetime, keep-alive, drain), then slot.
    let mut hs = Handlespace::new(Config::default());
    let t0 = Instant::now();
    let t = t0 + Duration::from_secs(5);
    let h = PoolHandle::from_static("d");
    let mut a = reg(&h, 1, Policy::RoundRobin);
    a.expires = Some(t);
    a.keep_alive_due = Some(t);
    hs.register(a).expect("ok");
    let mut b = reg(&h, 2, Policy::RoundRobin);
    b.expires = Some(t + Duration::from_secs(1));
    b.keep_alive_due = Some(t);
    hs.register(b).expect("ok");
    let mut c = reg(&h, 3, Policy::RoundRobin);
    c.expires = Some(t);
    hs.register(c).expect("ok");
    hs.drain(&h, PeId::new(2), Some(t)).expect("known");
    // A keep-alive moved away and back leaves a stale item.
    assert!(hs.set_deadline(&h, PeId::new(1), DeadlineKind::KeepAlive, Some(t0)));
    assert!(hs.set_deadline(&h, PeId::new(1), DeadlineKind::KeepAlive, Some(t)));
    let got: Vec<(u32, DeadlineKind)> = hs
        .pop_expired(t)
        .iter()
        .map(|e| (e.identifier.get(), e.kind))
        .collect();
    use DeadlineKind::*;
    assert_eq!(
        got,
        [
            (1, Lifetime),
            (3, Lifetime),
            (1, KeepAlive),
            (2, KeepAlive),
            (2, Drain)
        ]
    );
    assert_eq!(hs.next_deadline(), Some(t + Duration::from_secs(1)));
    let e = hs.pop_expired(t + Duration::from_secs(1));
    assert_eq!(
        (e.len(), e[0].identifier.get(), e[0].kind),
        (1, 2, Lifetime)
    );
    assert_eq!(hs.next_deadline(), None);
}

#[test]
fn table_pages_cover_everything_once_in_order() {
    let mut hs = Handlespace::new(Config::default());
    for (h, n) in [("a", 3u32), ("b", 1), ("c", 4)] {
        let h = PoolHandle::new(h).expect("non-empty");
        for id in 1..=n {
            let mut r = reg(&h, id * 10, Policy::RoundRobin);
            r.home = ServerId::new(id % 2);
            hs.register(r).expect("ok");
        }
    }
    // Room for three PEs and two one-letter handles.
    let pe_len = hs
        .find(&PoolHandle::new("a").expect("non-empty"), PeId::new(10))
        .expect("registered")
        .to_wire()
        .encoded_len()
        .expect("encodes");
    let budget = 3 * pe_len + 2 * 8;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = hs.table_page(cursor.as_ref(), budget, None);
        pages += 1;
        let mut bytes = 0;
        for p in &page.pools {
            assert!(!p.pool_elements.is_empty());
            bytes += p.pool_handle.encoded_len();
            for pe in &p.pool_elements {
                bytes += pe.encoded_len().expect("encodes");
                seen.push((p.pool_handle.to_string(), pe.identifier.get()));
            }
        }
        assert!(bytes <= budget, "page {pages}: {bytes} > {budget}");
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<(String, u32)> = [
        ("a", 10),
        ("a", 20),
        ("a", 30),
        ("b", 10),
        ("c", 10),
        ("c", 20),
        ("c", 30),
        ("c", 40),
    ]
    .iter()
    .map(|(h, i)| (h.to_string(), *i))
    .collect();
    assert_eq!(seen, expected);
    // Only the PEs of owner 0 (the W flag).
    let own = hs.table_page(None, 1 << 20, Some(ServerId::new(0)));
    let ids: Vec<u32> = own
        .pools
        .iter()
        .flat_map(|p| p.pool_elements.iter().map(|e| e.identifier.get()))
        .collect();
    assert_eq!(ids, vec![20, 20, 40]);
    assert!(own.next.is_none());
}

#[test]
fn table_pages_fill_a_message_not_a_count() {
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::new("pool").expect("non-empty");
    for id in 1..=300 {
        hs.register(reg(&h, id, Policy::RoundRobin)).expect("ok");
    }
    let pe_len = hs
        .find(&h, PeId::new(1))
        .expect("registered")
        .to_wire()
        .encoded_len()
        .expect("encodes");
    let page = hs.table_page(None, 4096, None);
    let n = page.pools[0].pool_elements.len();
    // As many as fit, and not one more: far from a fixed 128.
    assert!(h.encoded_len() + n * pe_len <= 4096);
    assert!(
        h.encoded_len() + (n + 1) * pe_len > 4096,
        "{n} PEs of {pe_len} bytes"
    );
    assert!(page.next.is_some());
    // A budget smaller than one PE still moves on, one PE a page.
    let tiny = hs.table_page(None, 1, None);
    assert_eq!(tiny.pools[0].pool_elements.len(), 1);
}

#[test]
fn deadlines_can_be_moved() {
    let mut hs = Handlespace::new(Config::default());
    let t0 = Instant::now();
    let h = PoolHandle::from_static("k");
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("ok");
    assert!(hs.set_deadline(
        &h,
        PeId::new(1),
        DeadlineKind::KeepAlive,
        Some(t0 + Duration::from_secs(5))
    ));
    assert!(hs.set_deadline(
        &h,
        PeId::new(1),
        DeadlineKind::KeepAlive,
        Some(t0 + Duration::from_secs(9))
    ));
    assert_eq!(hs.next_deadline(), Some(t0 + Duration::from_secs(9)));
    assert!(hs.set_deadline(&h, PeId::new(1), DeadlineKind::KeepAlive, None));
    assert_eq!(hs.next_deadline(), None);
    assert!(!hs.set_deadline(&h, PeId::new(7), DeadlineKind::KeepAlive, None));
}

#[test]
fn owner_connection_and_identity_indices_follow_changes() {
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("idx");
    let alice = Identity("alice".into());
    let bob = Identity("bob".into());
    for id in 1..=6 {
        let mut r = reg(&h, id, Policy::RoundRobin);
        r.home = ServerId::new(10 + id % 2);
        r.connection = Some(ConnId::new(u64::from(id % 3)));
        r.identity = Some(if id <= 4 { alice.clone() } else { bob.clone() });
        hs.register(r).expect("ok");
    }
    let ids_of = |it: &mut dyn Iterator<Item = (&PoolHandle, &PoolElementEntry)>| {
        let mut v: Vec<u32> = it.map(|(_, e)| e.identifier.get()).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(ids_of(&mut hs.by_owner(ServerId::new(11))), vec![1, 3, 5]);
    assert_eq!(ids_of(&mut hs.by_connection(ConnId::new(0))), vec![3, 6]);
    assert_eq!(ids_of(&mut hs.by_identity(&alice)), vec![1, 2, 3, 4]);
    // Re-registration moves a PE between lists.
    let mut r = reg(&h, 3, Policy::RoundRobin);
    r.home = ServerId::new(12);
    r.connection = Some(ConnId::new(7));
    r.identity = Some(bob.clone());
    assert_eq!(hs.register(r), Ok(Registered::Updated { changed: false }));
    assert_eq!(ids_of(&mut hs.by_owner(ServerId::new(11))), vec![1, 5]);
    assert_eq!(ids_of(&mut hs.by_owner(ServerId::new(12))), vec![3]);
    assert_eq!(ids_of(&mut hs.by_connection(ConnId::new(0))), vec![6]);
    assert_eq!(ids_of(&mut hs.by_connection(ConnId::new(7))), vec![3]);
    assert_eq!(ids_of(&mut hs.by_identity(&bob)), vec![3, 5, 6]);
    // Removing from the head, the middle and the tail of a list.
    for id in [6, 2, 1, 4, 3, 5] {
        hs.deregister(&h, PeId::new(id)).expect("registered");
        for owner in 10..=12 {
            assert!(hs
                .by_owner(ServerId::new(owner))
                .all(|(_, e)| e.identifier != PeId::new(id)));
        }
    }
    assert_eq!(hs.by_owner.keys(), 0);
    assert_eq!(hs.by_connection.keys(), 0);
    assert_eq!(hs.by_identity.keys(), 0);
}

#[test]
fn counts_per_identity_and_connection_and_keep_alive_state_live_with_the_pe() {
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("cnt");
    let alice = Identity("alice".into());
    let bob = Identity("bob".into());
    for id in 1..=5 {
        let mut r = reg(&h, id, Policy::RoundRobin);
        r.connection = Some(ConnId::new(u64::from(id % 2)));
        r.identity = Some(if id <= 3 { alice.clone() } else { bob.clone() });
        hs.register(r).expect("ok");
    }
    let counts = |hs: &Handlespace| {
        (
            hs.count_by_identity(&alice),
            hs.count_by_identity(&bob),
            hs.count_by_connection(ConnId::new(0)),
            hs.count_by_connection(ConnId::new(1)),
        )
    };
    assert_eq!(counts(&hs), (3, 2, 2, 3));
    hs.keep_alive_mut(&h, PeId::new(2))
        .expect("a PE")
        .outstanding = true;
    assert!(hs.keep_alive_mut(&h, PeId::new(9)).is_none());
    // A re-registration moves the counts and keeps the keep-alive state.
    let mut r = reg(&h, 2, Policy::RoundRobin);
    r.connection = Some(ConnId::new(1));
    r.identity = Some(bob.clone());
    hs.register(r).expect("ok");
    assert_eq!(counts(&hs), (2, 3, 1, 4));
    assert!(hs
        .find(&h, PeId::new(2))
        .and_then(|e| e.keep_alive.as_ref())
        .is_some_and(|k| k.outstanding));
    for id in [1, 3, 2] {
        hs.deregister(&h, PeId::new(id)).expect("registered");
    }
    assert_eq!(counts(&hs), (0, 2, 1, 1));
    // The state goes with the PE: a new PE of that identifier has none.
    hs.register(reg(&h, 2, Policy::RoundRobin)).expect("ok");
    assert!(hs
        .find(&h, PeId::new(2))
        .is_some_and(|e| e.keep_alive.is_none()));
}

/// One policy of each engine (and the degradation variant of two).
fn one_policy_per_engine() -> Vec<Policy> {
    vec![
        Policy::RoundRobin,
        Policy::Random,
        Policy::WeightedRoundRobin { weight: 2 },
        Policy::WeightedRandom { weight: 3 },
        Policy::Priority { priority: 4 },
        Policy::LeastUsed { load: 10 },
        Policy::LeastUsedDegradation {
            load: 10,
            load_degradation: 5,
        },
        Policy::RandomizedLeastUsedDegradation {
            load: 10,
            load_degradation: 5,
        },
    ]
}

#[test]
fn a_drained_pe_is_never_handed_out_by_any_policy_and_comes_back_when_undrained() {
    for policy in one_policy_per_engine() {
        let mut hs = Handlespace::new(Config::default());
        let mut rng = SmallRng::seed_from_u64(3);
        let h = PoolHandle::from_static("p");
        for id in 1..=4 {
            hs.register(reg(&h, id, policy.clone())).expect("ok");
        }
        assert_eq!(hs.drain(&h, PeId::new(2), None), Some(false), "{policy:?}");
        assert_eq!(
            hs.drain(&h, PeId::new(2), None),
            Some(true),
            "drained already"
        );
        assert_eq!(hs.drain(&h, PeId::new(9), None), None, "unknown PE");
        assert_eq!(hs.drained_count(), 1);
        assert_eq!(hs.pool(&h).map(|p| (p.len(), p.drained())), Some((4, 1)));
        let mut seen = [0u32; 5];
        for _ in 0..200 {
            let got = ids(&hs.resolve(&h, Some(4), &mut rng).expect("pool"));
            assert_eq!(got.len(), 3, "{policy:?}: the three others, {got:?}");
            for id in got {
                seen[id as usize] += 1;
            }
        }
        assert_eq!(seen[2], 0, "{policy:?} handed out a drained PE");
        // Still registered: found, re-registered, kept drained.
        assert!(hs.find(&h, PeId::new(2)).is_some_and(|e| e.drained));
        hs.register(reg(&h, 2, policy.clone())).expect("ok");
        assert!(
            hs.find(&h, PeId::new(2)).is_some_and(|e| e.drained),
            "{policy:?}"
        );
        assert_eq!(hs.undrain(&h, PeId::new(2)), Some(true));
        assert_eq!(hs.undrain(&h, PeId::new(2)), Some(false), "idempotent");
        assert_eq!(hs.drained_count(), 0);
        let back =
            (0..50).any(|_| ids(&hs.resolve(&h, Some(4), &mut rng).expect("pool")).contains(&2));
        assert!(back, "{policy:?}: the undrained PE is handed out again");
    }
}

#[test]
fn round_robin_steps_over_a_drained_pe_without_losing_its_place() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("rr");
    for id in 1..=4 {
        hs.register(reg(&h, id, Policy::RoundRobin)).expect("ok");
    }
    let mut heads = |hs: &mut Handlespace, n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| ids(&hs.resolve(&h, Some(1), &mut rng).expect("pool"))[0])
            .collect()
    };
    assert_eq!(heads(&mut hs, 1), [1]);
    hs.drain(&h, PeId::new(2), None);
    assert_eq!(heads(&mut hs, 4), [3, 4, 1, 3]);
    hs.undrain(&h, PeId::new(2));
    assert_eq!(heads(&mut hs, 4), [4, 1, 2, 3]);
}

#[test]
fn an_undrained_weighted_round_robin_pe_takes_no_burst_of_turns() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("wrr");
    for id in 1..=3 {
        hs.register(reg(&h, id, Policy::WeightedRoundRobin { weight: 1 }))
            .expect("ok");
    }
    hs.drain(&h, PeId::new(3), None);
    for _ in 0..100 {
        hs.resolve(&h, Some(1), &mut rng);
    }
    hs.undrain(&h, PeId::new(3));
    // Equal weights: the next 30 turns go round, 10 each, instead of
    // PE 3 catching up on the 50 turns it missed.
    let mut count = [0u32; 4];
    for _ in 0..30 {
        count[ids(&hs.resolve(&h, Some(1), &mut rng).expect("pool"))[0] as usize] += 1;
    }
    assert_eq!(&count[1..], &[10, 10, 10]);
}

#[test]
fn a_pool_whose_pes_are_all_drained_exists_and_answers_none() {
    let mut hs = Handlespace::new(Config::default());
    let mut rng = SmallRng::seed_from_u64(1);
    let h = PoolHandle::from_static("p");
    for id in 1..=2 {
        hs.register(reg(&h, id, Policy::WeightedRandom { weight: 1 }))
            .expect("ok");
        hs.drain(&h, PeId::new(id), None);
    }
    assert_eq!(hs.resolve(&h, Some(5), &mut rng), Some(Vec::new()));
    // A drained PE's deregistration counts it out.
    assert!(hs.deregister(&h, PeId::new(1)).is_some_and(|e| e.drained));
    assert_eq!(hs.drained_count(), 1);
    assert!(hs.deregister(&h, PeId::new(2)).is_some());
    assert_eq!((hs.drained_count(), hs.pool_count()), (0, 0));
    assert_eq!(hs.resolve(&h, Some(5), &mut rng), None);
}

#[test]
fn a_drain_timeout_is_a_deadline_that_the_latest_drain_sets() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("p");
    hs.register(reg(&h, 1, Policy::RoundRobin)).expect("ok");
    hs.drain(&h, PeId::new(1), Some(t0 + Duration::from_secs(10)));
    assert_eq!(hs.next_deadline(), Some(t0 + Duration::from_secs(10)));
    // Draining again replaces the timeout.
    hs.drain(&h, PeId::new(1), Some(t0 + Duration::from_secs(20)));
    assert!(hs.pop_expired(t0 + Duration::from_secs(15)).is_empty());
    let expired = hs.pop_expired(t0 + Duration::from_secs(20));
    assert_eq!(
        expired,
        vec![Expired {
            pool_handle: h.clone(),
            identifier: PeId::new(1),
            kind: DeadlineKind::Drain,
            pe: hs.locate(&h, PeId::new(1)).expect("registered"),
        }]
    );
    // The PE stays, drained, until the caller removes it.
    assert!(hs
        .find(&h, PeId::new(1))
        .is_some_and(|e| e.drained && e.drain_ends.is_none()));
    // An undrain cancels the timeout.
    hs.drain(&h, PeId::new(1), Some(t0 + Duration::from_secs(30)));
    hs.undrain(&h, PeId::new(1));
    assert_eq!(hs.next_deadline(), None);
    assert!(hs.pop_expired(t0 + Duration::from_secs(60)).is_empty());
}

#[test]
fn a_reregistration_keeps_the_first_registration_time_and_says_what_changed() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new(Config::default());
    let h = PoolHandle::from_static("p");
    let mut r = reg(&h, 1, Policy::WeightedRoundRobin { weight: 1 });
    r.registered_at = t0;
    assert_eq!(hs.register(r.clone()), Ok(Registered::New));
    r.registered_at = t0 + Duration::from_secs(5);
    r.expires = Some(t0 + Duration::from_secs(300));
    assert_eq!(
        hs.register(r.clone()),
        Ok(Registered::Updated { changed: false })
    );
    r.element.policy = Policy::WeightedRoundRobin { weight: 2 };
    assert_eq!(
        hs.register(r.clone()),
        Ok(Registered::Updated { changed: true })
    );
    r.element.user_transport = Transport::Tcp {
        port: 8,
        transport_use: TransportUse::DataOnly,
        address: IpAddr::from([192, 0, 2, 1]),
    };
    assert_eq!(hs.register(r), Ok(Registered::Updated { changed: true }));
    assert_eq!(hs.find(&h, PeId::new(1)).map(|e| e.registered_at), Some(t0));
}

#[test]
fn a_pe_ref_names_its_pe_only_while_it_is_registered() {
    let t0 = Instant::now();
    let mut hs = Handlespace::new(Config::default());
    let (a, b) = (PoolHandle::from_static("a"), PoolHandle::from_static("b"));
    hs.register(reg(&a, 1, Policy::RoundRobin)).expect("ok");
    let r = hs.locate(&a, PeId::new(1)).expect("registered");
    assert_eq!(hs.get(r).map(|e| e.identifier), Some(PeId::new(1)));
    assert!(hs.set_deadline_at(r, DeadlineKind::KeepAlive, Some(t0)));
    assert!(hs.keep_alive_at(r).is_some());
    assert!(hs.locate(&a, PeId::new(2)).is_none());
    hs.deregister(&a, PeId::new(1));
    assert!(hs.get(r).is_none());
    assert!(!hs.set_deadline_at(r, DeadlineKind::KeepAlive, Some(t0)));
    assert!(hs.keep_alive_at(r).is_none());
    // Another PE in the freed slot is not the one named.
    hs.register(reg(&b, 1, Policy::RoundRobin)).expect("ok");
    assert!(hs.get(r).is_none());
    assert!(hs.locate(&b, PeId::new(1)).is_some());
}
