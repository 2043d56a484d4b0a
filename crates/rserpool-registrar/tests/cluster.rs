//! A cluster of real registrars (the service, in process, on loopback,
//! TLS with a key per registrar): ENRP associations come up from the
//! static peer lists, a PE registered at one resolves at the others, a
//! restarted registrar downloads the table again, and a PE key can
//! never speak ENRP.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rserpool_registrar::{CoreConfig, EnrpConfig, Registrar, ServiceConfig};
use rserpool_security::apd::Apd;
use rserpool_security::{
    PeerIdentity, Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig,
};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{CauseCode, EnrpMessage, ServerId, WireMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{pe, Client, LIMIT};

const REGISTRARS: [&str; 3] = ["reg-0", "reg-1", "reg-2"];
const CLIENTS: [&str; 3] = ["pe-1", "pe-2", "pu-1"];

struct Keys {
    all: Vec<Psk>,
}

impl Keys {
    fn new() -> Keys {
        let all = REGISTRARS
            .iter()
            .chain(CLIENTS.iter())
            .map(|n| Psk::generate(n).expect("key"))
            .collect();
        Keys { all }
    }

    fn key(&self, name: &str) -> Psk {
        self.all
            .iter()
            .find(|k| k.identity == name)
            .expect("a key")
            .clone()
    }

    fn tls(&self, name: &str) -> TlsClient {
        TlsClient::new(&TlsClientConfig {
            psk: Some(self.key(name)),
            ..TlsClientConfig::default()
        })
        .expect("TLS client")
    }

    /// Registrar `i`, dialling `peers`.
    async fn registrar(&self, i: usize, peers: Vec<SocketAddr>) -> Registrar {
        self.registrar_with(i, peers, |_| {}).await
    }

    /// The same with `tweak` applied to its configuration.
    async fn registrar_with(
        &self,
        i: usize,
        peers: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut ServiceConfig),
    ) -> Registrar {
        let mut store = PskStore::default();
        for k in &self.all {
            store.insert(k.clone()).expect("unique");
        }
        let tls = TlsServer::new(&TlsServerConfig {
            psks: Some(Arc::new(store)),
            ..TlsServerConfig::default()
        })
        .expect("TLS server");
        let registrars: Vec<PeerIdentity> = REGISTRARS
            .iter()
            .map(|n| PeerIdentity::Psk((*n).into()))
            .collect();
        let mut config = ServiceConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            enrp_listen: vec!["127.0.0.1:0".parse().unwrap()],
            tls: Some(Arc::new(tls)),
            tls_client: Some(Arc::new(self.tls(REGISTRARS[i]))),
            apd: Apd::permissive_with_registrars(false, &registrars),
            core: CoreConfig {
                server_id: ServerId::new(0x100 + i as u32),
                enrp: EnrpConfig {
                    peers,
                    ..EnrpConfig::default()
                },
                ..CoreConfig::default()
            },
            ..ServiceConfig::default()
        };
        tweak(&mut config);
        Registrar::start(config).await.expect("registrar starts")
    }

    async fn client(
        &self,
        r: &Registrar,
        name: &str,
    ) -> Client<tokio_openssl::SslStream<TcpStream>> {
        let to = r.local_addrs()[0];
        let tcp = TcpStream::connect(to).await.expect("connect");
        let (s, _) = self.tls(name).connect(tcp, "127.0.0.1").await.expect("TLS");
        Client::new(s)
    }
}

/// Wait until `f` holds of registrar `r`.
async fn until(
    r: &Registrar,
    what: &str,
    f: impl Fn(&rserpool_registrar::RegistrarCore) -> bool + Clone + Send + 'static,
) {
    tokio::time::timeout(LIMIT, async {
        loop {
            let g = f.clone();
            if r.query(move |c| g(c)).await == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within {LIMIT:?}: {what}"));
}

fn peers_up(c: &rserpool_registrar::RegistrarCore) -> usize {
    c.peers().filter(|p| p.up).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_registered_at_one_registrar_resolves_at_the_others() {
    let keys = Keys::new();
    let a = keys.registrar(0, vec![]).await;
    let b = keys.registrar(1, vec![a.handle().enrp_addrs()[0]]).await;
    let c = keys
        .registrar(
            2,
            vec![a.handle().enrp_addrs()[0], b.handle().enrp_addrs()[0]],
        )
        .await;
    for r in [&a, &b, &c] {
        until(r, "both peers up", |c| {
            peers_up(c) == 2 && c.serves_pool_users()
        })
        .await;
    }
    let mut pe_client = keys.client(&a, "pe-1").await;
    assert_eq!(
        pe_client.register("echo", pe(7, "127.0.0.1", 7)).await,
        None
    );
    for r in [&b, &c] {
        until(r, "the PE arrived", |c| c.handlespace().len() == 1).await;
        let mut pu = keys.client(r, "pu-1").await;
        assert_eq!(pu.resolve("echo").await, Ok(vec![7]));
    }
    // Another identity cannot take the PE over at another registrar.
    let mut other = keys.client(&b, "pe-2").await;
    assert_eq!(
        other.register("echo", pe(7, "127.0.0.1", 7)).await,
        Some(CauseCode::RejectedSecurity)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_registrar_rejoins_and_downloads_the_table() {
    let keys = Keys::new();
    let a = keys.registrar(0, vec![]).await;
    let a_enrp = a.handle().enrp_addrs()[0];
    let b = keys.registrar(1, vec![a_enrp]).await;
    until(&a, "B up", |c| peers_up(c) == 1).await;
    let mut pe_client = keys.client(&a, "pe-1").await;
    for id in 1..=50 {
        assert_eq!(
            pe_client.register("echo", pe(id, "127.0.0.1", 7)).await,
            None
        );
    }
    until(&b, "50 PEs", |c| c.handlespace().len() == 50).await;
    b.shutdown().await;
    until(&a, "B down", |c| peers_up(c) == 0).await;
    let b = keys.registrar(1, vec![a_enrp]).await;
    until(&b, "the table downloaded", |c| {
        c.serves_pool_users() && c.handlespace().len() == 50
    })
    .await;
    let mut pu = keys.client(&b, "pu-1").await;
    assert_eq!(pu.resolve("echo").await.map(|v| v.len()), Ok(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_key_cannot_speak_enrp_and_garbage_closes_only_its_connection() {
    let keys = Keys::new();
    let a = keys.registrar(0, vec![]).await;
    let b = keys.registrar(1, vec![a.handle().enrp_addrs()[0]]).await;
    until(&a, "B up", |c| peers_up(c) == 1).await;
    // A PE key on the ENRP listener: refused before any ENRP.
    let tcp = TcpStream::connect(a.handle().enrp_addrs()[0])
        .await
        .expect("connect");
    let (mut s, _) = keys
        .tls("pe-1")
        .connect(tcp, "127.0.0.1")
        .await
        .expect("TLS");
    let hello = EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(0x666),
        receiver: ServerId::UNDETERMINED,
        checksum: None,
        server_info: None,
    };
    let mut out = BytesMut::new();
    ChannelCodec::new(65_535)
        .encode(&hello.to_bytes().unwrap(), &mut out)
        .unwrap();
    let _ = s.write_all(&out).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut got)).await;
    let mut buf = BytesMut::from(&got[..]);
    let answer = ChannelCodec::new(65_535)
        .decode(&mut buf)
        .unwrap()
        .expect("an answer");
    match EnrpMessage::decode(&answer).map(|d| d.message) {
        Ok(EnrpMessage::Error { error, .. }) => {
            assert_eq!(error.causes[0].code, CauseCode::RejectedSecurity)
        }
        other => panic!("expected an ENRP_ERROR, got {other:?}"),
    }
    // Garbage from a peer key (undecodable presences): that connection
    // only, closed after the malformed limit.
    let tcp = TcpStream::connect(a.handle().enrp_addrs()[0])
        .await
        .expect("connect");
    let (mut s, _) = keys
        .tls("reg-2")
        .connect(tcp, "127.0.0.1")
        .await
        .expect("TLS");
    let junk: Vec<u8> = [0x01u8, 0, 0, 8, 0xff, 0xff, 0xff, 0xff].repeat(16);
    let _ = s.write_all(&junk).await;
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut Vec::new())).await;
    // The cluster goes on: an update still flows from A to B.
    let mut pe_client = keys.client(&a, "pe-1").await;
    assert_eq!(
        pe_client.register("echo", pe(9, "127.0.0.1", 7)).await,
        None
    );
    until(&b, "the PE arrived", |c| c.handlespace().len() == 1).await;
    let stats = a.query(|c| c.stats().clone()).await.expect("stats");
    assert!(stats.refused_security >= 1);
    assert_eq!(a.query(peers_up).await, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrars_without_peers_find_each_other_by_multicast_presence() {
    // By the system's multicast route, as `rsp registrar` does: the
    // presences leave with the host's address, and the ENRP listeners
    // (on every address) are announced as "the address I came from".
    let port = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let group: SocketAddr = format!("239.255.53.1:{port}").parse().unwrap();
    let keys = Keys::new();
    let multicast = |c: &mut ServiceConfig| {
        c.enrp_listen = vec!["0.0.0.0:0".parse().unwrap()];
        c.enrp_multicast = Some(rserpool_registrar::enrp_multicast::EnrpMulticast {
            group,
            interface: None,
        });
        c.core.enrp.heartbeat_cycle = Duration::from_millis(200);
        c.core.enrp.max_time_last_heard = Duration::from_millis(2_000);
    };
    let a = keys.registrar_with(0, vec![], multicast).await;
    let b = keys.registrar_with(1, vec![], multicast).await;
    for r in [&a, &b] {
        until(r, "the other found by its presence and up", |c| {
            peers_up(c) == 1 && c.stats().enrp.presence_hints > 0
        })
        .await;
    }
    let mut pe_client = keys.client(&a, "pe-1").await;
    assert_eq!(
        pe_client.register("echo", pe(9, "127.0.0.1", 9)).await,
        None
    );
    until(&b, "the PE arrived", |c| c.handlespace().len() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_flooding_the_enrp_multicast_group_is_cut_before_the_core() {
    // The group is a unicast address here (the registrar binds it), so
    // that the flood reaches only this registrar.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let group: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let keys = Keys::new();
    let r = keys
        .registrar_with(0, vec![], |c| {
            c.enrp_multicast = Some(rserpool_registrar::enrp_multicast::EnrpMulticast {
                group,
                interface: None,
            });
        })
        .await;
    // One host without a key: 20,000 presences naming itself, as fast
    // as it can.
    let flood = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let datagram = EnrpMessage::Presence {
        reply_required: false,
        sender: ServerId::new(0x6666),
        receiver: ServerId::UNDETERMINED,
        checksum: None,
        server_info: None,
    }
    .to_bytes()
    .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..20_000 {
        let _ = flood.send_to(&datagram, group).await;
    }
    until(&r, "some datagrams reached the core", |c| {
        c.stats().enrp.presence_hints > 0
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let rate = rserpool_registrar::enrp_multicast::HINT_RATE;
    let bound = (rate.burst + rate.per_second * (seconds + 1.0)) as u64;
    let heard = r.query(|c| c.stats().enrp.presence_hints).await.unwrap();
    assert!(
        heard <= bound,
        "{heard} datagrams reached the core in {seconds:.2} s"
    );
    // The registrar serves everyone else meanwhile.
    let mut pe_client = keys.client(&r, "pe-1").await;
    assert_eq!(
        pe_client.register("echo", pe(5, "127.0.0.1", 5)).await,
        None
    );
}
