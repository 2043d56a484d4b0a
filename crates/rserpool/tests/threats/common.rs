//! What the attacks share: the registrar lab of rserpool-registrar's
//! tests (a real registrar with the PSKs of `IDENTITIES`, raw ASAP
//! clients), the client library's PEs and PUs configured for it, rogue
//! registrars, and a TCP proxy that records or tampers with the bytes on
//! the wire.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rserpool::{ClientConfig, ClientError, PoolElementSpec, PoolUser, RegistrarEndpoint, Timers};
use rserpool_registrar::{Registrar, ServiceConfig};
use rserpool_security::apd::Apd;
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{AsapMessage, Policy, PoolHandle, WireMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use crate::client_support::within;
pub use crate::support::*;

/// The pool the legitimate PEs serve.
pub const HANDLE: &str = "echo";

/// Timers for clients in these tests: short hunts, and every attempt
/// bounded by a connect timeout long enough that a handshake on a loaded
/// machine fails the way the attack makes it fail, not by timing out.
pub fn timers() -> Timers {
    Timers {
        t5_server_hunt: Duration::from_secs(2),
        retran_max: Duration::from_secs(2),
        t1_request: Duration::from_secs(2),
        ..crate::client_support::short_timers()
    }
}

/// A TLS client with a PSK.
pub fn psk_client(key: &Psk) -> TlsClient {
    TlsClient::new(&TlsClientConfig {
        psk: Some(key.clone()),
        ..TlsClientConfig::default()
    })
    .expect("TLS client")
}

/// A TLS client that verifies registrar certificates of the CA at `ca`
/// and shows none of its own (an anonymous pool user).
pub fn ca_client(ca: &std::path::Path) -> TlsClient {
    TlsClient::new(&TlsClientConfig {
        ca: Some(ca.to_path_buf()),
        ..TlsClientConfig::default()
    })
    .expect("TLS client")
}

/// A client configuration for `registrars` with `tls` and [`timers`].
pub fn config(registrars: Vec<SocketAddr>, tls: Option<TlsClient>) -> ClientConfig {
    let mut c = ClientConfig::new(
        registrars.into_iter().map(RegistrarEndpoint::new).collect(),
        tls,
    );
    c.timers = timers();
    c
}

/// The client configuration of PSK identity `identity` of `lab`.
pub fn lab_config(lab: &Lab, identity: &str) -> ClientConfig {
    config(vec![lab.addr], Some(psk_client(&lab.key(identity))))
}

/// A data-only TCP PE of `handle` at `port` with identifier `id`.
pub fn spec(handle: &str, id: u32, port: u16) -> PoolElementSpec {
    let mut s = PoolElementSpec::new(
        PoolHandle::new(handle.as_bytes().to_vec()).expect("handle"),
        Policy::RoundRobin,
        port,
    );
    s.identifier = Some(rserpool_wire::PeId::new(id));
    s
}

/// A PE of the client library, registered with `lab` as `identity`.
pub async fn library_pe(lab: &Lab, identity: &str, id: u32) -> rserpool::PoolElement {
    within(rserpool::PoolElement::start(
        lab_config(lab, identity),
        spec(HANDLE, id, 7),
    ))
    .await
    .expect("the legitimate PE registers")
}

/// The PE identifiers a pool user of the client library (PSK identity
/// `identity`) gets for `handle` from `lab`: none for an unknown pool.
pub async fn served(lab: &Lab, identity: &str, handle: &str) -> Vec<u32> {
    resolve_with(lab_config(lab, identity), handle).await
}

/// The PE identifiers a new pool user with `config` gets for `handle`.
pub async fn resolve_with(config: ClientConfig, handle: &str) -> Vec<u32> {
    let pu = PoolUser::new(config).expect("pool user");
    let h = PoolHandle::new(handle.as_bytes().to_vec()).expect("handle");
    match within(pu.resolve(&h)).await {
        Ok(pes) => {
            let mut ids: Vec<u32> = pes.iter().map(|p| p.identifier.get()).collect();
            ids.sort_unstable();
            ids
        }
        Err(ClientError::UnknownPoolHandle(_)) => Vec::new(),
        Err(e) => panic!("the legitimate pool user is not served: {e}"),
    }
}

/// Wait (within the limit) until `lab` holds exactly PEs `ids` in `pool`.
pub async fn until_pool_ids(lab: &Lab, pool: &str, ids: Vec<u32>) {
    within(async {
        while lab.pool_ids(pool).await != ids {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// An authorised peer database from its TOML text.
pub fn apd(text: &str) -> Apd {
    Apd::from_toml(text).expect("a valid database")
}

/// A registrar on a free loopback port with this TLS server and
/// otherwise the defaults of `service`.
pub async fn registrar_with(tls: Option<TlsServer>, service: ServiceConfig) -> Registrar {
    Registrar::start(ServiceConfig {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        tls: tls.map(Arc::new),
        ..service
    })
    .await
    .expect("registrar starts")
}

/// A TLS server that knows these keys.
pub fn psk_server(keys: &[Psk]) -> TlsServer {
    let mut store = PskStore::default();
    for k in keys {
        store.insert(k.clone()).expect("unique");
    }
    TlsServer::new(&TlsServerConfig {
        psks: Some(Arc::new(store)),
        ..TlsServerConfig::default()
    })
    .expect("TLS server")
}

/// A TLS server with this certificate only.
pub fn certificate_server(c: &CertificateFiles) -> TlsServer {
    TlsServer::new(&TlsServerConfig {
        certificate: Some(c.clone()),
        ..TlsServerConfig::default()
    })
    .expect("TLS server")
}

/// A rogue registrar: a real one whose keys carry the lab's identities
/// but other secrets (what an attacker who knows the names, not the keys,
/// can set up). It accepts and serves whoever authenticates.
pub async fn rogue_psk_registrar() -> Registrar {
    let keys: Vec<Psk> = IDENTITIES
        .iter()
        .map(|i| Psk::generate(i).expect("key"))
        .collect();
    registrar_with(Some(psk_server(&keys)), ServiceConfig::default()).await
}

/// The number of PEs a registrar holds.
pub async fn pes_of(r: &Registrar) -> usize {
    r.query(|c| c.handlespace().len())
        .await
        .expect("registrar answers")
}

/// A spoofer at a listed registrar address: plain TCP, it answers
/// whatever connects with a forged handle resolution response naming
/// `pe` as the pool's only PE, and keeps the connection open.
pub struct Spoofer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Spoofer {
    pub async fn start(pe: rserpool_wire::PoolElement) -> Spoofer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let forged = AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: pool_handle(HANDLE),
            policy: None,
            pool_elements: vec![pe],
            error: None,
        }
        .to_bytes()
        .expect("encode");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.write_all(&forged).await;
                held.push(tcp);
            }
        });
        Spoofer { addr, task }
    }
}

impl Drop for Spoofer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bytes of one proxied connection, each direction as it passed.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// Client to registrar.
    pub up: Vec<u8>,
    /// Registrar to client.
    pub down: Vec<u8>,
}

/// Which TLS record a [`Proxy`] corrupts, on every connection. `up`:
/// the `n`th (from 0) record of content type application data (23) from
/// the client; in TLS 1.3 the client's first such record is its
/// encrypted Finished, so 1 is its first message. `answer`: the first
/// application data record from the registrar after the client's first
/// message went up (the answer to it). `replay_up`: the `n`th client
/// record is forwarded twice (a replay within the connection).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tamper {
    pub up: Option<usize>,
    pub answer: bool,
    pub replay_up: Option<usize>,
}

/// A TCP proxy in front of `target` that records what passes and may
/// flip one byte of a chosen TLS record ([`Tamper`]): an attacker on
/// the path.
pub struct Proxy {
    pub addr: SocketAddr,
    captured: Arc<Mutex<Vec<Arc<Mutex<Captured>>>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, tamper: Tamper) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let captured: Arc<Mutex<Vec<Arc<Mutex<Captured>>>>> = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c2, t2) = (captured.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let cap = Arc::new(Mutex::new(Captured::default()));
                c2.lock().expect("lock").push(cap.clone());
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                // Nothing to corrupt: forward the bytes as they come
                // (also plain TCP).
                let raw = tamper.up.is_none() && !tamper.answer && tamper.replay_up.is_none();
                // Set once the client's first message went up.
                let sent = Arc::new(AtomicBool::new(false));
                let up = tokio::spawn(pump(
                    cr,
                    sw,
                    cap.clone(),
                    Direction::Up {
                        tamper: tamper.up,
                        replay: tamper.replay_up,
                        sent: sent.clone(),
                    },
                    raw,
                ));
                let down = tokio::spawn(pump(
                    sr,
                    cw,
                    cap,
                    Direction::Down {
                        tamper: tamper.answer,
                        sent,
                    },
                    raw,
                ));
                t2.lock().expect("lock").extend([up, down]);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Proxy {
            addr,
            captured,
            tasks,
        }
    }

    /// What passed on each connection so far, in the order they came.
    pub fn captured(&self) -> Vec<Captured> {
        self.captured
            .lock()
            .expect("lock")
            .iter()
            .map(|c| c.lock().expect("lock").clone())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

/// A direction of a proxied connection and what to corrupt in it.
enum Direction {
    Up {
        tamper: Option<usize>,
        replay: Option<usize>,
        sent: Arc<AtomicBool>,
    },
    Down {
        tamper: bool,
        sent: Arc<AtomicBool>,
    },
}

/// Forward one direction, record it, and unless `raw`, forward whole TLS
/// records at a time and flip the last byte (the end of the AEAD tag) of
/// the record [`Tamper`] chose, or send it twice.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cap: Arc<Mutex<Captured>>,
    direction: Direction,
    raw: bool,
) {
    let mut pending = Vec::new();
    let mut records = 0usize;
    let mut tampered = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut c = cap.lock().expect("lock");
            let side = match direction {
                Direction::Up { .. } => &mut c.up,
                Direction::Down { .. } => &mut c.down,
            };
            side.extend_from_slice(&buf[..n]);
        }
        if raw {
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        while pending.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([pending[3], pending[4]]));
            if pending.len() < 5 + len {
                break;
            }
            let mut record: Vec<u8> = pending.drain(..5 + len).collect();
            let mut twice = false;
            if record[0] == 23 && len > 0 {
                let flip = match &direction {
                    Direction::Up {
                        tamper,
                        replay,
                        sent,
                    } => {
                        twice = *replay == Some(records);
                        if records >= 1 {
                            sent.store(true, Ordering::SeqCst);
                        }
                        *tamper == Some(records)
                    }
                    Direction::Down { tamper, sent } => {
                        *tamper && !tampered && sent.load(Ordering::SeqCst)
                    }
                };
                if flip {
                    *record.last_mut().expect("non-empty") ^= 0x01;
                    tampered = true;
                }
                records += 1;
            }
            out.extend_from_slice(&record);
            if twice {
                out.extend_from_slice(&record);
            }
        }
        if to.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
