//! Model-based property test: random sequences of registrations,
//! re-registrations, deregistrations, deadline moves, drains and undrains
//! (with and without a timeout), expiries and resolutions against a plain
//! model (a map of PEs). After every step the handlespace must agree with
//! the model on membership, the drained PEs, the owner, connection and
//! identity indices, the per-owner checksums and the next deadline;
//! expiries must come out in time order, and resolutions never return a
//! drained PE.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rserpool_handlespace::{Config, DeadlineKind, Handlespace, Identity, PeChecksum, Registration};
use rserpool_wire::{ConnId, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport};

#[derive(Debug, Clone)]
enum Op {
    Register {
        pool: u8,
        id: u8,
        owner: u8,
        conn: u8,
        who: u8,
        life: Option<u16>,
        keep: Option<u16>,
    },
    Deregister {
        pool: u8,
        id: u8,
    },
    Move {
        pool: u8,
        id: u8,
        keep: Option<u16>,
    },
    Expire {
        advance: u16,
    },
    Resolve {
        pool: u8,
        n: u8,
    },
    Drain {
        pool: u8,
        id: u8,
        ends: Option<u16>,
    },
    Undrain {
        pool: u8,
        id: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..12u8, 0..3u8, 0..4u8, 0..3u8, proptest::option::of(0..500u16), proptest::option::of(0..500u16))
            .prop_map(|(pool, id, owner, conn, who, life, keep)| Op::Register { pool, id, owner, conn, who, life, keep }),
        2 => (0..3u8, 0..12u8).prop_map(|(pool, id)| Op::Deregister { pool, id }),
        2 => (0..3u8, 0..12u8, proptest::option::of(0..500u16)).prop_map(|(pool, id, keep)| Op::Move { pool, id, keep }),
        1 => (0..200u16).prop_map(|advance| Op::Expire { advance }),
        2 => (0..3u8, 0..5u8).prop_map(|(pool, n)| Op::Resolve { pool, n }),
        2 => (0..3u8, 0..12u8, proptest::option::of(0..500u16)).prop_map(|(pool, id, ends)| Op::Drain { pool, id, ends }),
        1 => (0..3u8, 0..12u8).prop_map(|(pool, id)| Op::Undrain { pool, id }),
    ]
}

#[derive(Debug, Clone)]
struct ModelPe {
    owner: u32,
    conn: u64,
    who: u8,
    life: Option<Instant>,
    keep: Option<Instant>,
    drained: bool,
    drain: Option<Instant>,
}

/// Every pool uses the same policy per pool index, so all registrations
/// are consistent.
fn policy_of(pool: u8) -> Policy {
    match pool {
        0 => Policy::RoundRobin,
        1 => Policy::LeastUsedDegradation {
            load: 10,
            load_degradation: 5,
        },
        _ => Policy::WeightedRandom { weight: 3 },
    }
}

fn handle(pool: u8) -> PoolHandle {
    PoolHandle::new(format!("pool-{pool}")).expect("non-empty")
}

fn identity(who: u8) -> Identity {
    Identity(format!("id-{who}").into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn handlespace_agrees_with_a_plain_model(ops in proptest::collection::vec(op(), 1..80)) {
        let t0 = Instant::now();
        let mut now = t0;
        let at = |ms: u16| t0 + Duration::from_millis(u64::from(ms));
        let mut hs = Handlespace::new(Config::default());
        let mut rng = SmallRng::seed_from_u64(1);
        let mut model: BTreeMap<(u8, u32), ModelPe> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Register { pool, id, owner, conn, who, life, keep } => {
                    let id = u32::from(id);
                    // A re-registration does not undrain.
                    let (drained, drain) = model
                        .get(&(pool, id))
                        .map_or((false, None), |pe| (pe.drained, pe.drain));
                    let pe = ModelPe {
                        owner: u32::from(owner),
                        conn: u64::from(conn),
                        who,
                        life: life.map(at),
                        keep: keep.map(at),
                        drained,
                        drain,
                    };
                    hs.register(Registration {
                        pool_handle: handle(pool),
                        element: PoolElement {
                            identifier: PeId::new(id),
                            home_registrar: ServerId::new(pe.owner),
                            registration_life: 300,
                            user_transport: Transport::Udp { port: 7, address: IpAddr::from([192, 0, 2, 1]) },
                            policy: policy_of(pool),
                            asap_transport: None,
                        },
                        home: ServerId::new(pe.owner),
                        expires: pe.life,
                        keep_alive_due: pe.keep,
                        connection: Some(ConnId::new(pe.conn)),
                        identity: Some(identity(who)),
                        distance: 0,
                        epoch: 0,
                        registered_at: now,
                    }).expect("consistent");
                    model.insert((pool, id), pe);
                }
                Op::Deregister { pool, id } => {
                    let id = u32::from(id);
                    let got = hs.deregister(&handle(pool), PeId::new(id));
                    prop_assert_eq!(got.is_some(), model.remove(&(pool, id)).is_some());
                }
                Op::Move { pool, id, keep } => {
                    let id = u32::from(id);
                    let moved = hs.set_deadline(&handle(pool), PeId::new(id), DeadlineKind::KeepAlive, keep.map(at));
                    match model.get_mut(&(pool, id)) {
                        Some(pe) => { prop_assert!(moved); pe.keep = keep.map(at); }
                        None => prop_assert!(!moved),
                    }
                }
                Op::Expire { advance } => {
                    now += Duration::from_millis(u64::from(advance));
                    let expired = hs.pop_expired(now);
                    let mut last = None;
                    for x in &expired {
                        let pool = (0..3u8).find(|p| handle(*p) == x.pool_handle).expect("known pool");
                        let pe = model.get_mut(&(pool, x.identifier.get())).expect("expired PE exists");
                        let t = match x.kind {
                            DeadlineKind::Lifetime => pe.life.take(),
                            DeadlineKind::KeepAlive => pe.keep.take(),
                            DeadlineKind::Drain => {
                                prop_assert!(pe.drained, "a drain deadline of a drained PE");
                                pe.drain.take()
                            }
                        };
                        let t = t.expect("model had that deadline");
                        prop_assert!(t <= now);
                        prop_assert!(last.map_or(true, |l| l <= t), "expiries in time order");
                        last = Some(t);
                    }
                    // Nothing else was due.
                    for pe in model.values() {
                        prop_assert!(pe.life.map_or(true, |t| t > now));
                        prop_assert!(pe.keep.map_or(true, |t| t > now));
                        prop_assert!(pe.drain.map_or(true, |t| t > now));
                    }
                }
                Op::Resolve { pool, n } => {
                    let members = model.keys().filter(|(p, _)| *p == pool).count();
                    let live = model.iter().filter(|((p, _), pe)| *p == pool && !pe.drained).count();
                    let mut got = Vec::new();
                    let r = hs.resolve_each(&handle(pool), Some(u32::from(n)), &mut rng, |e| got.push(e.identifier.get()));
                    prop_assert_eq!(r.is_some(), members > 0);
                    prop_assert_eq!(got.len(), live.min(usize::from(n)));
                    for id in &got {
                        prop_assert!(!model[&(pool, *id)].drained, "a drained PE was handed out");
                    }
                    got.sort_unstable();
                    got.dedup();
                    prop_assert_eq!(got.len(), live.min(usize::from(n)), "distinct PEs");
                }
                Op::Drain { pool, id, ends } => {
                    let id = u32::from(id);
                    let was = hs.drain(&handle(pool), PeId::new(id), ends.map(at));
                    match model.get_mut(&(pool, id)) {
                        Some(pe) => {
                            prop_assert_eq!(was, Some(pe.drained));
                            pe.drained = true;
                            pe.drain = ends.map(at);
                        }
                        None => prop_assert_eq!(was, None),
                    }
                }
                Op::Undrain { pool, id } => {
                    let id = u32::from(id);
                    let was = hs.undrain(&handle(pool), PeId::new(id));
                    match model.get_mut(&(pool, id)) {
                        Some(pe) => {
                            prop_assert_eq!(was, Some(pe.drained));
                            pe.drained = false;
                            pe.drain = None;
                        }
                        None => prop_assert_eq!(was, None),
                    }
                }
            }
            // Membership and lookups.
            prop_assert_eq!(hs.len(), model.len());
            for ((pool, id), pe) in &model {
                let e = hs.find(&handle(*pool), PeId::new(*id)).expect("registered");
                prop_assert_eq!(e.home, ServerId::new(pe.owner));
                prop_assert_eq!(e.expires, pe.life);
                prop_assert_eq!(e.keep_alive_due, pe.keep);
                prop_assert_eq!(e.drained, pe.drained);
                prop_assert_eq!(e.drain_ends, pe.drain);
            }
            prop_assert_eq!(hs.drained_count(), model.values().filter(|pe| pe.drained).count());
            for pool in 0..3u8 {
                let drained = model.iter().filter(|((p, _), pe)| *p == pool && pe.drained).count();
                prop_assert_eq!(hs.pool(&handle(pool)).map_or(0, |p| p.drained()), drained);
            }
            // Indices and checksums.
            for owner in 0..3u32 {
                let mut want: Vec<(u8, u32)> = model.iter().filter(|(_, pe)| pe.owner == owner).map(|(k, _)| *k).collect();
                let mut got: Vec<(u8, u32)> = hs.by_owner(ServerId::new(owner))
                    .map(|(h, e)| ((0..3u8).find(|p| handle(*p) == *h).expect("pool"), e.identifier.get()))
                    .collect();
                want.sort_unstable();
                got.sort_unstable();
                prop_assert_eq!(&got, &want);
                let mut sum = PeChecksum::default();
                for (pool, id) in &want {
                    sum.add(&handle(*pool), PeId::new(*id));
                }
                prop_assert_eq!(hs.checksum(ServerId::new(owner)), sum.value());
            }
            for conn in 0..4u64 {
                prop_assert_eq!(hs.by_connection(ConnId::new(conn)).count(), model.values().filter(|pe| pe.conn == conn).count());
            }
            for who in 0..3u8 {
                prop_assert_eq!(hs.by_identity(&identity(who)).count(), model.values().filter(|pe| pe.who == who).count());
            }
            let next = model.values().flat_map(|pe| [pe.life, pe.keep, pe.drain]).flatten().min();
            prop_assert_eq!(hs.next_deadline(), next);
        }
    }
}
