//! A scripted registrar for the client tests: a loopback listener (plain
//! TCP or TLS) that decodes the ASAP messages it receives and hands them
//! to the test, and sends what the test tells it to.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rserpool::{ClientConfig, RegistrarEndpoint, Timers};
use rserpool_security::TlsServer;
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{AsapMessage, PoolElement, PoolHandle, WireMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for anything before failing.
pub const LIMIT: Duration = Duration::from_secs(10);

/// What the fake registrar saw.
#[derive(Debug)]
pub enum Seen {
    Accepted(u64),
    Message(u64, AsapMessage),
    Closed(u64),
}

enum Out {
    Message(AsapMessage),
    Raw(Vec<u8>),
    Close,
}

pub struct FakeRegistrar {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    conns: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Out>>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeRegistrar {
    /// A plain TCP registrar on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A TLS registrar.
    pub async fn start_tls(server: TlsServer) -> Self {
        Self::start_with(Some(server)).await
    }

    async fn start_with(tls: Option<TlsServer>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let conns: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Out>>>> = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c2, t2) = (conns.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            let mut next = 1u64;
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    return;
                };
                let id = next;
                next += 1;
                let (out_tx, out_rx) = mpsc::unbounded_channel();
                c2.lock().expect("lock").insert(id, out_tx);
                let seen_tx = seen_tx.clone();
                let tls = tls.clone();
                let task = tokio::spawn(async move {
                    match tls {
                        Some(tls) => match tls.accept(tcp, &peer.to_string()).await {
                            Ok((s, _)) => serve(id, s, seen_tx, out_rx).await,
                            Err(_) => {
                                let _ = seen_tx.send(Seen::Closed(id));
                            }
                        },
                        None => serve(id, tcp, seen_tx, out_rx).await,
                    }
                });
                t2.lock().expect("lock").push(task);
            }
        });
        tasks.lock().expect("lock").push(accept);
        FakeRegistrar {
            addr,
            seen,
            conns,
            tasks,
        }
    }

    pub fn endpoint(&self) -> RegistrarEndpoint {
        RegistrarEndpoint::new(self.addr)
    }

    /// The next thing seen.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(LIMIT, self.seen.recv())
            .await
            .expect("the registrar sees something in time")
            .expect("registrar running")
    }

    /// The next message, skipping accepted connections.
    pub async fn message(&mut self) -> (u64, AsapMessage) {
        loop {
            match self.next().await {
                Seen::Accepted(_) => continue,
                Seen::Message(c, m) => return (c, m),
                Seen::Closed(c) => panic!("connection {c} closed while a message was expected"),
            }
        }
    }

    /// The next registration; answered with acceptance.
    pub async fn accept_registration(&mut self) -> (u64, PoolHandle, PoolElement) {
        let (c, m) = self.message().await;
        let AsapMessage::Registration {
            pool_handle,
            pool_element,
        } = m
        else {
            panic!("expected a registration, got {m:?}");
        };
        self.send(
            c,
            AsapMessage::RegistrationResponse {
                reject: false,
                pool_handle: pool_handle.clone(),
                identifier: pool_element.identifier,
                error: None,
            },
        );
        (c, pool_handle, pool_element)
    }

    pub fn send(&self, conn: u64, message: AsapMessage) {
        if let Some(tx) = self.conns.lock().expect("lock").get(&conn) {
            let _ = tx.send(Out::Message(message));
        }
    }

    /// Send bytes as they are (broken messages).
    pub fn send_raw(&self, conn: u64, bytes: &[u8]) {
        if let Some(tx) = self.conns.lock().expect("lock").get(&conn) {
            let _ = tx.send(Out::Raw(bytes.to_vec()));
        }
    }

    pub fn close(&self, conn: u64) {
        if let Some(tx) = self.conns.lock().expect("lock").remove(&conn) {
            let _ = tx.send(Out::Close);
        }
    }

    /// Stop listening and drop every connection.
    pub fn stop(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

impl Drop for FakeRegistrar {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    id: u64,
    stream: S,
    seen: mpsc::UnboundedSender<Seen>,
    mut out: mpsc::UnboundedReceiver<Out>,
) {
    let _ = seen.send(Seen::Accepted(id));
    let (mut r, mut w) = tokio::io::split(stream);
    let mut codec = ChannelCodec::new(65535);
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let m = AsapMessage::decode(&frame).expect("the client sends valid ASAP");
            let _ = seen.send(Seen::Message(id, m.message));
        }
        tokio::select! {
            n = r.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            o = out.recv() => match o {
                Some(Out::Message(m)) => {
                    let bytes = m.to_bytes().expect("encode");
                    if w.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Out::Raw(bytes)) => {
                    if w.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close) | None => {
                    let _ = w.shutdown().await;
                    break;
                }
            },
        }
    }
    let _ = seen.send(Seen::Closed(id));
}

/// A loopback address nobody listens on.
pub async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

/// Timers short enough for tests that exercise them.
pub fn short_timers() -> Timers {
    Timers {
        t1_request: Duration::from_millis(300),
        t2_registration: Duration::from_millis(500),
        t3_deregistration: Duration::from_millis(300),
        t5_server_hunt: Duration::from_millis(100),
        retran_max: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(2000),
        ..Timers::default()
    }
}

pub fn insecure(endpoints: Vec<RegistrarEndpoint>) -> ClientConfig {
    ClientConfig::insecure(endpoints)
}

/// Wait for a future or fail the test.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}
