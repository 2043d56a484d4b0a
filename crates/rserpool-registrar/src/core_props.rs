//! Property test of the registrar core: random sequences of connections,
//! requests (valid, invalid, unauthorised, garbage bytes) and time never
//! panic, answer every request exactly once on its connection, never let
//! a PE change hands, and keep the core's bookkeeping consistent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rserpool_security::PeerIdentity;
use rserpool_wire::{
    AsapMessage, ConnId, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport, TransportUse,
    WireMessage,
};

use crate::{ClientInfo, ConnKind, CoreConfig, Output, RegistrarCore};

#[derive(Debug, Clone)]
enum Op {
    Connect {
        conn: u64,
        who: u8,
        addr: u8,
    },
    Disconnect {
        conn: u64,
    },
    Register {
        conn: u64,
        pool: u8,
        id: u32,
        lu: bool,
        foreign: bool,
        life: i32,
    },
    Deregister {
        conn: u64,
        pool: u8,
        id: u32,
    },
    Resolve {
        conn: u64,
        pool: u8,
        items: Option<u32>,
    },
    Ack {
        conn: u64,
        pool: u8,
        id: u32,
    },
    Report {
        conn: u64,
        pool: u8,
        id: u32,
    },
    Garbage {
        conn: u64,
        bytes: Vec<u8>,
    },
    Mutated {
        conn: u64,
        at: usize,
        byte: u8,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0u64..6;
    let pool = 0u8..2;
    let id = 0u32..6;
    prop_oneof![
        (conn.clone(), 0u8..5, 0u8..2).prop_map(|(conn, who, addr)| Op::Connect {
            conn,
            who,
            addr
        }),
        conn.clone().prop_map(|conn| Op::Disconnect { conn }),
        (
            conn.clone(),
            pool.clone(),
            id.clone(),
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop_oneof![Just(30_000), Just(0), Just(-1), Just(500), Just(i32::MAX)]
        )
            .prop_map(|(conn, pool, id, lu, foreign, life)| Op::Register {
                conn,
                pool,
                id,
                lu,
                foreign,
                life
            }),
        (conn.clone(), pool.clone(), id.clone()).prop_map(|(conn, pool, id)| Op::Deregister {
            conn,
            pool,
            id
        }),
        (conn.clone(), pool.clone(), prop::option::of(0u32..200))
            .prop_map(|(conn, pool, items)| Op::Resolve { conn, pool, items }),
        (conn.clone(), pool.clone(), id.clone()).prop_map(|(conn, pool, id)| Op::Ack {
            conn,
            pool,
            id
        }),
        (conn.clone(), pool.clone(), id.clone()).prop_map(|(conn, pool, id)| Op::Report {
            conn,
            pool,
            id
        }),
        (conn.clone(), prop::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(conn, bytes)| Op::Garbage { conn, bytes }),
        (conn.clone(), 0usize..80, any::<u8>()).prop_map(|(conn, at, byte)| Op::Mutated {
            conn,
            at,
            byte
        }),
        (0u64..8_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn handle(pool: u8) -> PoolHandle {
    PoolHandle::new(vec![b'p', b'0' + pool]).unwrap()
}

fn addr(a: u8) -> std::net::IpAddr {
    [10, 0, 0, a + 1].into()
}

fn registration(pool: u8, id: u32, lu: bool, ip: std::net::IpAddr, life: i32) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: handle(pool),
        pool_element: PoolElement {
            identifier: PeId::new(id),
            home_registrar: ServerId::UNDETERMINED,
            registration_life: life,
            user_transport: Transport::Tcp {
                port: 7,
                transport_use: TransportUse::DataOnly,
                address: ip,
            },
            policy: if lu {
                Policy::LeastUsed { load: 1 }
            } else {
                Policy::RoundRobin
            },
            asap_transport: None,
        },
    }
}

/// The response type a request must get exactly one of.
fn response_type(m: &AsapMessage) -> Option<u8> {
    match m {
        AsapMessage::Registration { .. } => Some(0x03),
        AsapMessage::Deregistration { .. } => Some(0x04),
        AsapMessage::HandleResolution { .. } => Some(0x06),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_core_survives_any_input(ops in prop::collection::vec(op(), 1..120)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut core = RegistrarCore::new(CoreConfig { seed: 3, ..CoreConfig::default() }, now).unwrap();
        // conn -> (identity text, address)
        let mut conns: HashMap<u64, (String, std::net::IpAddr)> = HashMap::new();
        let mut generation = 0u64; // fresh ConnIds after a disconnect
        let mut ids: HashMap<u64, u64> = HashMap::new();
        // (pool, id) -> identity that owns it while it exists
        let mut owners: HashMap<(Vec<u8>, PeId), String> = HashMap::new();
        for op in ops {
            let mut expect: Option<(u64, u8)> = None;
            match op {
                Op::Connect { conn, who, addr: a } => {
                    if conns.contains_key(&conn) { continue; }
                    generation += 1;
                    ids.insert(conn, generation);
                    let identity = match who {
                        0 => Some(PeerIdentity::Psk("pe-a".into())),
                        1 => Some(PeerIdentity::Psk("pe-b".into())),
                        2 => Some(PeerIdentity::Certificate("pe-c".into())),
                        3 => Some(PeerIdentity::Anonymous),
                        _ => None,
                    };
                    let text = identity.as_ref().map_or("insecure".to_string(), |i| i.to_string());
                    core.handle_connect(now, ConnId::new(generation), ClientInfo::new(identity, (addr(a), 4000).into(), ConnKind::Asap));
                    conns.insert(conn, (text, addr(a)));
                }
                Op::Disconnect { conn } => {
                    if conns.remove(&conn).is_some() {
                        core.handle_disconnect(now, ConnId::new(ids[&conn]));
                    }
                }
                Op::Advance { ms } => {
                    now += Duration::from_millis(ms);
                    while let Some(t) = core.poll_timeout().filter(|t| *t <= now) {
                        core.handle_timeout(t.max(t0));
                    }
                    core.handle_timeout(now);
                }
                Op::Garbage { conn, bytes } => {
                    if let Some(&c) = ids.get(&conn).filter(|_| conns.contains_key(&conn)) {
                        core.handle_frame(now, ConnId::new(c), &bytes);
                    }
                }
                Op::Mutated { conn, at, byte } => {
                    if let Some((_, ip)) = conns.get(&conn) {
                        let mut b = registration(0, 1, false, *ip, 30_000).to_bytes().unwrap();
                        let i = at % b.len();
                        b[i] = byte;
                        core.handle_frame(now, ConnId::new(ids[&conn]), &b);
                    }
                }
                other => {
                    let (conn, msg) = match other {
                        Op::Register { conn, pool, id, lu, foreign, life } => {
                            let Some((_, ip)) = conns.get(&conn) else { continue };
                            let ip = if foreign { addr(9) } else { *ip };
                            (conn, registration(pool, id, lu, ip, life))
                        }
                        Op::Deregister { conn, pool, id } => (conn, AsapMessage::Deregistration { pool_handle: handle(pool), identifier: PeId::new(id) }),
                        Op::Resolve { conn, pool, items } => (conn, AsapMessage::HandleResolution { subscribe: false, pool_handle: handle(pool), items }),
                        Op::Ack { conn, pool, id } => (conn, AsapMessage::EndpointKeepAliveAck { pool_handle: handle(pool), identifier: PeId::new(id) }),
                        Op::Report { conn, pool, id } => (conn, AsapMessage::EndpointUnreachable { pool_handle: handle(pool), identifier: PeId::new(id) }),
                        _ => unreachable!(),
                    };
                    if !conns.contains_key(&conn) { continue; }
                    expect = response_type(&msg).map(|t| (ids[&conn], t));
                    core.handle_message(now, ConnId::new(ids[&conn]), msg);
                }
            }
            // Outputs: sends only to known connections, one answer per request,
            // at most one close per connection.
            let live: Vec<u64> = conns.keys().map(|c| ids[c]).collect();
            let mut answers = 0;
            let mut closed = Vec::new();
            while let Some(o) = core.poll_output() {
                match &o {
                    Output::Send { conn, msg } => {
                        prop_assert!(live.contains(&conn.get()), "send to a closed connection: {o:?}");
                        prop_assert!(!closed.contains(conn), "send after the close: {o:?}");
                        if let Some((c, t)) = expect {
                            if *conn == ConnId::new(c) && msg.as_asap().is_some_and(|m| m.msg_type() == t) { answers += 1; }
                        }
                    }
                    Output::Close { conn, .. } => {
                        prop_assert!(!closed.contains(conn), "a second close: {o:?}");
                        closed.push(*conn);
                    }
                    Output::Event(_) | Output::Connect { .. } => {}
                }
            }
            if expect.is_some() {
                prop_assert_eq!(answers, 1);
            }
            // The driver closes what the core closed.
            for c in closed {
                if let Some(k) = conns.keys().copied().find(|k| ids.get(k) == Some(&c.get())) {
                    conns.remove(&k);
                    core.handle_disconnect(now, c);
                }
            }
            // Ownership never changes while a PE exists.
            let hs = core.handlespace();
            let mut present = HashMap::new();
            for h in hs.pool_handles() {
                for e in hs.pool_elements(h) {
                    let who = e.identity.as_ref().unwrap().0.to_string();
                    present.insert((h.as_bytes().to_vec(), e.identifier), who);
                }
            }
            for (k, who) in &present {
                if let Some(prev) = owners.get(k) {
                    prop_assert_eq!(prev, who, "PE {:?} changed hands", k);
                }
            }
            owners = present;
            core.check_invariants();
        }
    }
}
