//! Test support: a registrar on loopback with PSK identities, and a raw
//! ASAP client (TLS or plain) that sends and receives single messages.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rserpool_registrar::{CoreConfig, Event, Registrar, ServiceConfig};
use rserpool_security::pki::CertificateAuthority;
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{
    AsapMessage, CauseCode, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport,
    TransportUse, WireMessage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any single wait may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The identities every test registrar knows.
pub const IDENTITIES: [&str; 8] = [
    "pe-a",
    "pe-b",
    "pu-1",
    "pu-2",
    "pu-3",
    "flooder",
    "registrar-x",
    "registrar-y",
];

pub struct Lab {
    pub registrar: Registrar,
    pub addr: SocketAddr,
    pub keys: Vec<Psk>,
    /// Certificate mode: the CA that signed the registrar's certificate
    /// (its directory lives as long as the lab).
    pub ca: Option<(tempfile::TempDir, std::path::PathBuf)>,
}

/// A certificate for 127.0.0.1 and its CA, in a temporary directory.
fn registrar_certificate() -> (tempfile::TempDir, std::path::PathBuf, CertificateFiles) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::generate("lab CA", 1).expect("ca");
    ca.issued().write_files(dir.path(), "ca").expect("write");
    let cert = ca
        .issue("registrar", &[], &["127.0.0.1".parse().unwrap()], 1)
        .expect("issue")
        .write_files(dir.path(), "registrar")
        .expect("write");
    let ca_path = dir.path().join("ca.pem");
    (dir, ca_path, cert)
}

impl Lab {
    pub async fn start(core: CoreConfig) -> Lab {
        Lab::with_service(ServiceConfig {
            core,
            ..ServiceConfig::default()
        })
        .await
    }

    /// A registrar with these settings, on loopback, with the PSKs of
    /// [`IDENTITIES`].
    pub async fn with_service(service: ServiceConfig) -> Lab {
        Lab::build(service, false).await
    }

    /// The same with a registrar certificate too: clients without a PSK
    /// verify it and connect anonymously (pool users).
    pub async fn with_certificate(service: ServiceConfig) -> Lab {
        Lab::build(service, true).await
    }

    /// A registrar with these settings and the keys of another lab (the
    /// registrars of one cluster know the same keys).
    pub async fn with_keys(service: ServiceConfig, keys: Vec<Psk>) -> Lab {
        Lab::build_with(service, false, keys).await
    }

    async fn build(service: ServiceConfig, certificate: bool) -> Lab {
        let keys: Vec<Psk> = IDENTITIES
            .iter()
            .map(|i| Psk::generate(i).expect("key"))
            .collect();
        Lab::build_with(service, certificate, keys).await
    }

    async fn build_with(service: ServiceConfig, certificate: bool, keys: Vec<Psk>) -> Lab {
        let mut store = PskStore::default();
        for k in &keys {
            store.insert(k.clone()).expect("unique");
        }
        let (ca, cert) = if certificate {
            let (dir, ca, cert) = registrar_certificate();
            (Some((dir, ca)), Some(cert))
        } else {
            (None, None)
        };
        let tls = TlsServer::new(&TlsServerConfig {
            psks: Some(Arc::new(store)),
            certificate: cert,
            ..TlsServerConfig::default()
        })
        .expect("tls");
        let registrar = Registrar::start(ServiceConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            tls: Some(Arc::new(tls)),
            ..service
        })
        .await
        .expect("registrar starts");
        let addr = registrar.local_addrs()[0];
        Lab {
            registrar,
            addr,
            keys,
            ca,
        }
    }

    /// A PSK client connecting from `from` (any 127.x.y.z on Linux).
    pub async fn client_from(
        &self,
        identity: &str,
        from: IpAddr,
    ) -> Result<Client<tokio_openssl::SslStream<TcpStream>>, rserpool_security::SecurityError> {
        self.client_at(self.addr, identity, from).await
    }

    /// A PSK client connecting from `from` to the listener at `to`.
    pub async fn client_at(
        &self,
        to: SocketAddr,
        identity: &str,
        from: IpAddr,
    ) -> Result<Client<tokio_openssl::SslStream<TcpStream>>, rserpool_security::SecurityError> {
        let tls = TlsClient::new(&TlsClientConfig {
            psk: Some(self.key(identity)),
            ..TlsClientConfig::default()
        })?;
        let tcp = tcp_from(to, from).await.expect("connect");
        let (s, _) = tls.connect(tcp, &to.ip().to_string()).await?;
        Ok(Client::new(s))
    }

    /// An anonymous pool user (certificate mode): it verifies the
    /// registrar's certificate and shows none of its own.
    pub async fn anonymous_from(
        &self,
        from: IpAddr,
    ) -> Result<Client<tokio_openssl::SslStream<TcpStream>>, rserpool_security::SecurityError> {
        let (_, ca) = self.ca.as_ref().expect("a certificate lab");
        let tls = TlsClient::new(&TlsClientConfig {
            ca: Some(ca.clone()),
            ..TlsClientConfig::default()
        })?;
        let tcp = tcp_from(self.addr, from).await.expect("connect");
        let (s, _) = tls.connect(tcp, &self.addr.ip().to_string()).await?;
        Ok(Client::new(s))
    }

    pub async fn stats(&self) -> rserpool_registrar::Stats {
        self.registrar
            .query(|c| c.stats().clone())
            .await
            .expect("registrar answers")
    }

    pub fn key(&self, identity: &str) -> Psk {
        self.keys
            .iter()
            .find(|k| k.identity == identity)
            .expect("known identity")
            .clone()
    }

    pub async fn client(&self, identity: &str) -> Client<tokio_openssl::SslStream<TcpStream>> {
        Client::psk(self.addr, self.key(identity))
            .await
            .expect("handshake")
    }

    pub async fn pe_count(&self) -> usize {
        self.registrar
            .query(|c| c.handlespace().len())
            .await
            .expect("registrar answers")
    }

    /// The PEs of a pool, by identifier.
    pub async fn pool_ids(&self, handle: &str) -> Vec<u32> {
        let h = PoolHandle::new(handle.as_bytes().to_vec()).expect("handle");
        self.registrar
            .query(move |c| {
                let mut v: Vec<u32> = c
                    .handlespace()
                    .pool(&h)
                    .map(|_| {
                        c.handlespace()
                            .pool_elements(&h)
                            .map(|e| e.identifier.get())
                            .collect()
                    })
                    .unwrap_or_default();
                v.sort_unstable();
                v
            })
            .await
            .expect("registrar answers")
    }
}

/// A TCP connection to `to` from source address `from`.
pub async fn tcp_from(to: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Loopback source address 127.0.0.n.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Raise this process's file descriptor limit as far as it goes (flood
/// tests hold both ends of thousands of connections).
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Wait until `f` holds, polling the registrar; panics after [`LIMIT`].
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait for the first event that `f` accepts.
pub async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    mut f: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if f(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("event within the limit")
}

pub struct Client<S> {
    pub stream: S,
    buf: BytesMut,
    codec: ChannelCodec,
}

impl Client<tokio_openssl::SslStream<TcpStream>> {
    pub async fn psk(addr: SocketAddr, psk: Psk) -> Result<Self, rserpool_security::SecurityError> {
        let tls = TlsClient::new(&TlsClientConfig {
            psk: Some(psk),
            ..TlsClientConfig::default()
        })?;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (s, _) = tls.connect(tcp, &addr.ip().to_string()).await?;
        Ok(Client::new(s))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: BytesMut::new(),
            codec: ChannelCodec::new(ChannelCodec::ABSOLUTE_MAX),
        }
    }

    pub async fn send(&mut self, msg: &AsapMessage) {
        let b = msg.to_bytes().expect("encode");
        self.send_raw(&b).await;
    }

    pub async fn send_raw(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// The next message, or `None` when the registrar closed the connection.
    pub async fn recv(&mut self) -> Option<AsapMessage> {
        tokio::time::timeout(LIMIT, async {
            loop {
                if let Some(frame) = self.codec.decode(&mut self.buf).expect("framing") {
                    return Some(AsapMessage::decode(&frame).expect("decode").message);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("answer within the limit")
    }

    pub async fn request(&mut self, msg: &AsapMessage) -> AsapMessage {
        self.send(msg).await;
        self.recv().await.expect("an answer")
    }

    /// Register a PE; returns the cause of a refusal.
    pub async fn register(&mut self, handle: &str, pe: PoolElement) -> Option<CauseCode> {
        match self.request(&registration(handle, pe)).await {
            AsapMessage::RegistrationResponse { reject, error, .. } => {
                assert_eq!(reject, error.is_some());
                error.map(|e| e.causes[0].code)
            }
            other => panic!("expected a registration response, got {other:?}"),
        }
    }

    /// Resolve a handle: the PE identifiers or the error cause.
    pub async fn resolve(&mut self, handle: &str) -> Result<Vec<u32>, CauseCode> {
        let msg = AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool_handle(handle),
            items: Some(128),
        };
        match self.request(&msg).await {
            AsapMessage::HandleResolutionResponse {
                pool_elements,
                error: None,
                ..
            } => Ok(pool_elements.iter().map(|p| p.identifier.get()).collect()),
            AsapMessage::HandleResolutionResponse { error: Some(e), .. } => Err(e.causes[0].code),
            other => panic!("expected a resolution response, got {other:?}"),
        }
    }
}

pub fn pool_handle(h: &str) -> PoolHandle {
    PoolHandle::new(h.as_bytes().to_vec()).expect("handle")
}

pub fn registration(handle: &str, pe: PoolElement) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: pool_handle(handle),
        pool_element: pe,
    }
}

pub fn pe(id: u32, address: &str, port: u16) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::UNDETERMINED,
        registration_life: 30_000,
        user_transport: Transport::Tcp {
            port,
            transport_use: TransportUse::DataOnly,
            address: address.parse().expect("address"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}
