#![cfg(feature = "driver")]
//! Registrars learned from ASAP_SERVER_ANNOUNCE over a real UDP multicast
//! group (RFC 5352 3.6), against the real registrar over TLS, and the
//! attacks on it (RFC 5355 2.12): a rogue announcer's flood leaves the
//! client's list bounded and its configured registrar in use, a learned
//! address that does not pass TLS is skipped, and nothing sent to the
//! group moves a PE's home registrar.
//!
//! The groups are joined, and announcements sent, on the loopback
//! interface (the registrar's `AnnounceConfig::interface`), so no
//! multicast route of the machine is needed.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use rserpool::{
    AnnounceConfig, ClientConfig, Discovery, PeEvent, PoolElement, PoolElementSpec, PoolUser,
    RegistrarEndpoint, RegistrarOrigin, Timers,
};
use rserpool_registrar::announce::AnnounceConfig as RegistrarAnnounce;
use rserpool_registrar::{CoreConfig, Registrar, ServiceConfig};
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{
    AsapMessage, Policy, PoolHandle, ServerId, Transport, TransportUse, WireMessage,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(15);
/// The registrars' server identifier.
const SERVER_ID: ServerId = ServerId::new(0x5e01);

/// A free UDP port (bound and released).
fn free_udp_port() -> u16 {
    StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// A loopback TCP address nobody listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

/// A sender to `group` over the loopback interface.
fn loopback_sender() -> StdUdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("multicast interface");
    s.set_multicast_loop_v4(true).expect("loop");
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    s.into()
}

fn announcement(server_id: u32, addresses: &[SocketAddr]) -> Vec<u8> {
    AsapMessage::ServerAnnounce {
        server_id: ServerId::new(server_id),
        transports: addresses
            .iter()
            .map(|a| Transport::Tcp {
                port: a.port(),
                transport_use: TransportUse::DataPlusControl,
                address: a.ip(),
            })
            .collect(),
    }
    .to_bytes()
    .expect("encodes")
}

struct Keys {
    pe: Psk,
    pu: Psk,
}

fn keys() -> Keys {
    Keys {
        pe: Psk::generate("pe-1").expect("key"),
        pu: Psk::generate("pu-1").expect("key"),
    }
}

async fn registrar(keys: &Keys, announce: Option<SocketAddr>) -> Registrar {
    let mut store = PskStore::default();
    store.insert(keys.pe.clone()).expect("insert");
    store.insert(keys.pu.clone()).expect("insert");
    let tls = TlsServer::new(&TlsServerConfig {
        psks: Some(Arc::new(store)),
        ..TlsServerConfig::default()
    })
    .expect("tls");
    Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        tls: Some(Arc::new(tls)),
        announce: announce.map(|group| RegistrarAnnounce {
            group,
            interval: Duration::from_millis(100),
            advertised_address: None,
            // Out by loopback, where the tests join: no multicast route
            // of the machine needed.
            interface: Some(Ipv4Addr::LOCALHOST),
        }),
        core: CoreConfig {
            server_id: SERVER_ID,
            keep_alive_interval: Duration::from_millis(200),
            keep_alive_timeout: Duration::from_millis(600),
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await
    .expect("registrar")
}

fn client(
    psk: &Psk,
    registrars: Vec<SocketAddr>,
    announce: Option<AnnounceConfig>,
) -> ClientConfig {
    let tls = TlsClient::new(&TlsClientConfig {
        psk: Some(psk.clone()),
        ..TlsClientConfig::default()
    })
    .expect("tls");
    let mut c = ClientConfig::new(
        registrars.into_iter().map(RegistrarEndpoint::new).collect(),
        Some(tls),
    );
    c.timers = Timers {
        t5_server_hunt: Duration::from_millis(200),
        retran_max: Duration::from_millis(800),
        connect_timeout: Duration::from_secs(2),
        t1_request: Duration::from_secs(2),
        ..Timers::default()
    };
    c.announcements = announce;
    c
}

fn learned(d: &Discovery) -> Vec<SocketAddr> {
    d.registrars
        .iter()
        .filter(|e| matches!(e.origin, RegistrarOrigin::Learned { .. }))
        .map(|e| e.address)
        .collect()
}

/// Ask `probe` until `done` holds (every 10 ms), or fail after LIMIT.
async fn until<T, F, Fut>(what: &str, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let r = tokio::time::timeout(LIMIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            let v = probe().await;
            if done(&v) {
                return v;
            }
        }
    })
    .await;
    match r {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pu_with_a_wrong_static_list_learns_the_registrar_and_resolves_over_tls() {
    let keys = keys();
    let group = SocketAddr::from(([239, 255, 51, 1], free_udp_port()));
    let r = registrar(&keys, Some(group)).await;
    let handle = PoolHandle::from_static("echo");
    let pe = PoolElement::start(
        client(&keys.pe, vec![r.local_addrs()[0]], None),
        PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007),
    )
    .await
    .expect("registered");
    // The PU's only configured registrar is wrong; the registrar's own
    // announcements (sent and joined on loopback) name the right one.
    let wrong = closed_port().await;
    let announce = AnnounceConfig {
        interface: Some(Ipv4Addr::LOCALHOST),
        ..AnnounceConfig::new(group)
    };
    let pu = PoolUser::new(client(&keys.pu, vec![wrong], Some(announce))).expect("pool user");
    let d = until(
        "the registrar's announcement (sent on loopback)",
        || async { pu.discovery().await.expect("discovery") },
        |d| !learned(d).is_empty(),
    )
    .await;
    assert_eq!(learned(&d), vec![r.local_addrs()[0]]);
    assert_eq!(
        d.registrars[0].address, wrong,
        "the static entry stays first"
    );
    assert!(matches!(
        d.registrars[1].origin,
        RegistrarOrigin::Learned { server_id, .. } if server_id == SERVER_ID
    ));
    // The hunt fails at the static entry, then the learned one passes
    // the same TLS authentication and answers.
    let pes = tokio::time::timeout(LIMIT, pu.resolve(&handle))
        .await
        .expect("in time")
        .expect("resolved");
    assert_eq!(pes.len(), 1);
    assert_eq!(pes[0].identifier, pe.identifier());
    pe.shutdown().await.expect("deregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_address_that_fails_tls_is_skipped_for_the_next() {
    let keys = keys();
    let group = SocketAddr::from(([239, 255, 51, 2], free_udp_port()));
    // A rogue "registrar": accepts TCP, cannot prove the PU's key.
    let rogue = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let rogue_addr = rogue.local_addr().expect("addr");
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let rogue_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = rogue.accept().await {
            let _ = seen_tx.send(());
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
        }
    });
    let announce = AnnounceConfig {
        interface: Some(Ipv4Addr::LOCALHOST),
        ..AnnounceConfig::new(group)
    };
    let wrong = closed_port().await;
    let pu = PoolUser::new(client(&keys.pu, vec![wrong], Some(announce))).expect("pool user");
    let tx = loopback_sender();
    // The rogue is learned first, the real registrar second.
    until(
        "the rogue's announcement",
        || async {
            tx.send_to(&announcement(666, &[rogue_addr]), group)
                .expect("send");
            pu.discovery().await.expect("discovery")
        },
        |d| learned(d) == vec![rogue_addr],
    )
    .await;
    let r = registrar(&keys, None).await;
    let real = r.local_addrs()[0];
    until(
        "the real registrar's announcement",
        || async {
            tx.send_to(&announcement(SERVER_ID.get(), &[real]), group)
                .expect("send");
            pu.discovery().await.expect("discovery")
        },
        |d| learned(d) == vec![rogue_addr, real],
    )
    .await;
    let handle = PoolHandle::from_static("echo");
    let pe = PoolElement::start(
        client(&keys.pe, vec![real], None),
        PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007),
    )
    .await
    .expect("registered");
    let pes = tokio::time::timeout(LIMIT, pu.resolve(&handle))
        .await
        .expect("in time")
        .expect("resolved through the real registrar");
    assert_eq!(pes[0].identifier, pe.identifier());
    // The rogue was tried (its TCP was accepted) and refused by TLS.
    assert!(seen.try_recv().is_ok(), "the rogue address was tried");
    rogue_task.abort();
    pe.shutdown().await.expect("deregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_rogue_announcer_flood_stays_bounded_and_the_static_registrar_is_used() {
    let keys = keys();
    let group = SocketAddr::from(([239, 255, 51, 3], free_udp_port()));
    let r = registrar(&keys, None).await;
    let handle = PoolHandle::from_static("echo");
    let pe = PoolElement::start(
        client(&keys.pe, vec![r.local_addrs()[0]], None),
        PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007),
    )
    .await
    .expect("registered");
    let announce = AnnounceConfig {
        interface: Some(Ipv4Addr::LOCALHOST),
        max_learned: 8,
        ..AnnounceConfig::new(group)
    };
    let pu = PoolUser::new(client(&keys.pu, vec![r.local_addrs()[0]], Some(announce)))
        .expect("pool user");
    // The flood: thousands of announcements of distinct addresses, some
    // naming hundreds at once, garbage and messages that have no place
    // on the group, in bursts until the PU has taken in thousands (UDP
    // drops what its buffer cannot hold).
    let tx = loopback_sender();
    let datagram = |i: u32| match i % 10 {
        0 => vec![0xff; 37],
        1 => AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ServerId::new(i),
            pool_handle: PoolHandle::from_static("echo"),
            identifier: None,
        }
        .to_bytes()
        .expect("encodes"),
        2 => {
            let many: Vec<SocketAddr> = (0..300u32)
                .map(|j| {
                    SocketAddr::from((Ipv4Addr::from(0x7f20_0000 + (i * 300 + j) % 0x10_0000), 9))
                })
                .collect();
            announcement(i, &many)
        }
        _ => announcement(
            i,
            &[SocketAddr::from((Ipv4Addr::from(0x7f10_0000 + i), 3864))],
        ),
    };
    let mut i = 0u32;
    let d = until(
        "the flood to arrive",
        || {
            for _ in 0..200 {
                tx.send_to(&datagram(i), group).expect("send");
                i += 1;
            }
            pu.discovery()
        },
        |d| d.as_ref().is_ok_and(|d| d.stats.datagrams >= 3000),
    )
    .await
    .expect("discovery");
    assert!(
        d.registrars.len() <= 1 + 8,
        "bounded: {}",
        d.registrars.len()
    );
    assert_eq!(d.registrars[0].address, r.local_addrs()[0]);
    assert_eq!(d.registrars[0].origin, RegistrarOrigin::Static);
    assert!(d.stats.undecodable > 0 && d.stats.unexpected > 0 && d.stats.replaced > 0);
    // The static registrar answers.
    let pes = tokio::time::timeout(LIMIT, pu.resolve(&handle))
        .await
        .expect("in time")
        .expect("resolved through the static registrar");
    assert_eq!(pes[0].identifier, pe.identifier());
    pe.shutdown().await.expect("deregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_nothing_sent_to_the_group_moves_a_pe() {
    let keys = keys();
    let group = SocketAddr::from(([239, 255, 51, 4], free_udp_port()));
    let r = registrar(&keys, None).await;
    let handle = PoolHandle::from_static("echo");
    let announce = AnnounceConfig {
        interface: Some(Ipv4Addr::LOCALHOST),
        max_learned: 4,
        ..AnnounceConfig::new(group)
    };
    let pe = PoolElement::start(
        client(&keys.pe, vec![r.local_addrs()[0]], Some(announce)),
        PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007),
    )
    .await
    .expect("registered");
    let mut events = pe.events();
    let home = until(
        "the registrar's keep-alive naming the home",
        || async { pe.status() },
        |s| s.home_server_id.is_some(),
    )
    .await;
    assert_eq!(home.home_server_id, Some(SERVER_ID));
    // Keep-alives with the H flag for the PE, and announcements of a
    // rogue "home", over the group.
    let tx = loopback_sender();
    let rogue = closed_port().await;
    let d = until(
        "the rogue datagrams to arrive",
        || async {
            for id in [None, Some(pe.identifier())] {
                let ka = AsapMessage::EndpointKeepAlive {
                    home: true,
                    server_id: ServerId::new(0x0bad),
                    pool_handle: handle.clone(),
                    identifier: id,
                }
                .to_bytes()
                .expect("encodes");
                tx.send_to(&ka, group).expect("send");
            }
            tx.send_to(&announcement(0x0bad, &[rogue]), group)
                .expect("send");
            pe.discovery().await.expect("discovery")
        },
        |d| d.stats.unexpected >= 10 && d.stats.announcements >= 5,
    )
    .await;
    assert_eq!(learned(&d), vec![rogue], "only an address to try");
    let s = pe.status();
    assert!(s.registered);
    assert_eq!(s.registrar, Some(r.local_addrs()[0]));
    assert_eq!(s.home_server_id, Some(SERVER_ID));
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, PeEvent::Rehomed { .. }), "{e:?}");
    }
    pe.shutdown().await.expect("deregistered");
}
