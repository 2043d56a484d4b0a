//! TLS handshakes over loopback: PSK and certificate handshakes between
//! our server and client, every refusal, and interop with the `openssl`
//! command line tool (software we did not write) in both directions.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rserpool_security::pki::CertificateAuthority;
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{
    PeerIdentity, Psk, PskStore, SecurityError, TlsClient, TlsClientConfig, TlsServer,
    TlsServerConfig,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LIMIT: Duration = Duration::from_secs(20);

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    registrar: CertificateFiles,
    pu: CertificateFiles,
    rogue: CertificateFiles,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = CertificateAuthority::generate("test CA", 1).expect("ca");
    ca.issued().write_files(d, "ca").expect("write");
    let issue = |ca: &CertificateAuthority, cn: &str, dns: &[&str], ips: &[IpAddr], name: &str| {
        ca.issue(cn, dns, ips, 1)
            .expect("issue")
            .write_files(d, name)
            .expect("write")
    };
    let registrar = issue(
        &ca,
        "registrar-1",
        &["registrar.test"],
        &[LOCALHOST],
        "registrar",
    );
    let pu = issue(&ca, "pu-7", &[], &[], "pu");
    // Signed by another CA.
    let other = CertificateAuthority::generate("other CA", 1).expect("ca");
    let rogue = issue(
        &other,
        "registrar-1",
        &["registrar.test"],
        &[LOCALHOST],
        "rogue",
    );
    Pki {
        ca: d.join("ca.pem"),
        registrar,
        pu,
        rogue,
        _dir: dir,
    }
}

fn store(keys: &[&Psk]) -> Arc<PskStore> {
    let mut s = PskStore::default();
    for k in keys {
        s.insert((*k).clone()).expect("unique");
    }
    Arc::new(s)
}

/// Run one handshake between `server` and `client` on loopback; on
/// success exchange a line both ways. Returns what each side saw.
async fn handshake(
    server: &TlsServer,
    client: &TlsClient,
    name: &str,
) -> (
    Result<PeerIdentity, SecurityError>,
    Result<PeerIdentity, SecurityError>,
) {
    let (addr, serve) = serve_once(server.clone(), |mut s| async move {
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.expect("read");
        s.write_all(&buf).await.expect("echo");
        s.shutdown().await.ok();
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    // In TLS 1.3 the client finishes before the server has checked the
    // client's certificate: a refusal may show only at the first read.
    let client_side = match client.connect(tcp, name).await {
        Ok((mut s, id)) => {
            let mut buf = [0u8; 5];
            let exchanged = async {
                s.write_all(b"hello").await?;
                s.read_exact(&mut buf).await
            };
            match exchanged.await {
                Ok(_) => {
                    assert_eq!(&buf, b"hello");
                    Ok(id)
                }
                Err(e) => Err(SecurityError::Handshake {
                    peer: name.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        Err(e) => Err(e),
    };
    (finished(serve).await, client_side)
}

/// Accept one connection on a fresh loopback port, run the server side of
/// the handshake and then `then` on the stream. Returns the address to
/// connect to and the task, which yields the identity the client proved.
fn serve_once<F, Fut>(
    server: TlsServer,
    then: F,
) -> (SocketAddr, JoinHandle<Result<PeerIdentity, SecurityError>>)
where
    F: FnOnce(SslStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let (tcp, peer) = listener.accept().await.expect("accept");
        let (s, id) = server.accept(tcp, &peer.to_string()).await?;
        then(s).await;
        Ok(id)
    });
    (addr, task)
}

/// What the server side of [`serve_once`] ended with.
async fn finished(
    task: JoinHandle<Result<PeerIdentity, SecurityError>>,
) -> Result<PeerIdentity, SecurityError> {
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("server side finishes")
        .expect("server task")
}

/// A registrar that knows these PSKs only.
fn psk_server(keys: &[&Psk]) -> TlsServer {
    server(TlsServerConfig {
        psks: Some(store(keys)),
        ..Default::default()
    })
}

fn server(cfg: TlsServerConfig) -> TlsServer {
    TlsServer::new(&cfg).expect("server")
}

/// A PU that trusts the test CA, optionally with its own certificate.
fn ca_client(p: &Pki, certificate: Option<CertificateFiles>) -> TlsClient {
    TlsClient::new(&TlsClientConfig {
        ca: Some(p.ca.clone()),
        certificate,
        ..Default::default()
    })
    .expect("client")
}

fn psk_client(psk: &Psk) -> TlsClient {
    TlsClient::new(&TlsClientConfig {
        psk: Some(psk.clone()),
        ..Default::default()
    })
    .expect("client")
}

#[tokio::test]
async fn psk_handshake_authenticates_both_ends() {
    let pe = Psk::generate("pe-1").expect("key");
    let server = psk_server(&[&pe]);
    let (s, c) = handshake(&server, &psk_client(&pe), "127.0.0.1").await;
    assert_eq!(s.expect("server"), PeerIdentity::Psk("pe-1".into()));
    assert_eq!(c.expect("client"), PeerIdentity::Psk("pe-1".into()));
}

#[tokio::test]
async fn a_wrong_key_or_an_unknown_identity_is_refused() {
    let pe = Psk::generate("pe-1").expect("key");
    let mut forged = Psk::generate("pe-1").expect("key");
    forged.key[0] ^= 1;
    let stranger = Psk::generate("stranger").expect("key");
    let p = pki();
    for certificate in [None, Some(p.registrar.clone())] {
        let server = server(TlsServerConfig {
            psks: Some(store(&[&pe])),
            certificate,
            ..Default::default()
        });
        for bad in [&forged, &stranger] {
            let (s, c) = handshake(&server, &psk_client(bad), "127.0.0.1").await;
            let s = s.expect_err("server refuses");
            assert!(matches!(s, SecurityError::Handshake { .. }), "{s}");
            let c = c.expect_err("client refuses");
            assert!(c.to_string().contains("127.0.0.1"), "{c}");
        }
    }
}

#[tokio::test]
async fn certificate_handshakes_verify_the_registrar_and_name_the_client() {
    let p = pki();
    let server = server(TlsServerConfig {
        certificate: Some(p.registrar.clone()),
        client_ca: Some(p.ca.clone()),
        ..Default::default()
    });
    // A PU with the CA only.
    let pu = ca_client(&p, None);
    for name in ["127.0.0.1", "registrar.test"] {
        let (s, c) = handshake(&server, &pu, name).await;
        assert_eq!(s.expect("server"), PeerIdentity::Anonymous);
        assert_eq!(
            c.expect("client"),
            PeerIdentity::Certificate("registrar-1".into())
        );
    }
    // The wrong name is refused by the client.
    let (_, c) = handshake(&server, &pu, "other.test").await;
    assert!(c.is_err());
    // With a client certificate the server learns its subject.
    let pu_cert = ca_client(&p, Some(p.pu.clone()));
    let (s, _) = handshake(&server, &pu_cert, "127.0.0.1").await;
    assert_eq!(s.expect("server"), PeerIdentity::Certificate("pu-7".into()));
}

#[tokio::test]
async fn a_rogue_registrar_certificate_is_refused() {
    let p = pki();
    let rogue = server(TlsServerConfig {
        certificate: Some(p.rogue.clone()),
        ..Default::default()
    });
    let pu = ca_client(&p, None);
    let (_, c) = handshake(&rogue, &pu, "127.0.0.1").await;
    let e = c.expect_err("rogue refused").to_string();
    assert!(e.contains("certificate verify failed"), "{e}");
    // A PSK-only PE never accepts a certificate handshake, even a valid one.
    let pe = Psk::generate("pe-1").expect("key");
    let genuine = server(TlsServerConfig {
        certificate: Some(p.registrar.clone()),
        ..Default::default()
    });
    let (_, c) = handshake(&genuine, &psk_client(&pe), "127.0.0.1").await;
    assert!(c.is_err());
}

#[tokio::test]
async fn required_client_certificates_are_enforced() {
    let p = pki();
    let server = server(TlsServerConfig {
        certificate: Some(p.registrar.clone()),
        client_ca: Some(p.ca.clone()),
        require_client_certificate: true,
        ..Default::default()
    });
    let pu = ca_client(&p, None);
    let (s, c) = handshake(&server, &pu, "127.0.0.1").await;
    assert!(s.is_err());
    let c = c.expect_err("client learns it").to_string();
    assert!(c.contains("certificate required"), "{c}");
}

#[tokio::test]
async fn plain_bytes_to_a_tls_listener_fail_the_handshake() {
    let pe = Psk::generate("pe-1").expect("key");
    let (addr, serve) = serve_once(psk_server(&[&pe]), |_| async {});
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // An ASAP handle resolution for "echo", in the clear.
    let plain = [
        0x05, 0, 0, 0x14, 0, 0x09, 0, 0x08, b'e', b'c', b'h', b'o', 0x80, 0x3f, 0, 0x08, 0, 0, 0, 3,
    ];
    tcp.write_all(&plain).await.expect("write");
    let e = finished(serve).await.expect_err("refused");
    assert!(matches!(e, SecurityError::Handshake { .. }), "{e}");
}

#[test]
fn configurations_that_authenticate_nobody_are_refused() {
    assert!(matches!(
        TlsServer::new(&TlsServerConfig::default()),
        Err(SecurityError::Config(_))
    ));
    assert!(matches!(
        TlsClient::new(&TlsClientConfig::default()),
        Err(SecurityError::Config(_))
    ));
    let e = TlsServer::new(&TlsServerConfig {
        certificate: Some(CertificateFiles {
            chain: "/nonexistent/registrar.pem".into(),
            key: "/nonexistent/registrar.key".into(),
        }),
        ..Default::default()
    })
    .expect_err("missing files");
    assert!(e.to_string().contains("/nonexistent/registrar.pem"), "{e}");
}

fn openssl_available() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn openssl_s_client_completes_a_psk_handshake_with_our_server() {
    assert!(
        openssl_available(),
        "the openssl command is needed (apt-get install openssl)"
    );
    let pe = Psk::generate("pe-ossl").expect("key");
    let (addr, serve) = serve_once(psk_server(&[&pe]), |mut s| async move {
        s.write_all(b"greetings from rserpool\n")
            .await
            .expect("write");
        s.shutdown().await.ok();
    });
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-tls1_3",
            "-quiet",
        ])
        .args(["-psk_identity", "pe-ossl", "-psk", &hex::encode(pe.key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("s_client prints our line")
        .expect("read");
    assert_eq!(line.as_deref(), Some("greetings from rserpool"));
    let id = finished(serve).await.expect("handshake");
    assert_eq!(id, PeerIdentity::Psk("pe-ossl".into()));
    drop(child.stdin.take());
    let _ = child.kill().await;
}

#[tokio::test]
async fn our_client_completes_a_psk_handshake_with_openssl_s_server() {
    assert!(
        openssl_available(),
        "the openssl command is needed (apt-get install openssl)"
    );
    let pe = Psk::generate("pe-ossl").expect("key");
    // A free port: bind, note it, release it for s_server.
    let port = std::net::TcpListener::bind((LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-nocert",
        ])
        .args([
            "-psk_identity",
            "pe-ossl",
            "-psk",
            &hex::encode(pe.key),
            "-rev",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    // Wait until it says it listens.
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    tokio::time::timeout(LIMIT, async {
        while let Some(l) = out.next_line().await.expect("read") {
            if l.contains("ACCEPT") {
                return;
            }
        }
        panic!("s_server ended");
    })
    .await
    .expect("s_server listens");
    let tcp = TcpStream::connect((LOCALHOST, port))
        .await
        .expect("connect");
    let (mut s, id) = tokio::time::timeout(LIMIT, psk_client(&pe).connect(tcp, "127.0.0.1"))
        .await
        .expect("handshake finishes")
        .expect("handshake");
    assert_eq!(id, PeerIdentity::Psk("pe-ossl".into()));
    // -rev answers each line reversed.
    s.write_all(b"rserpool\n").await.expect("write");
    let mut lines = BufReader::new(s).lines();
    let got = tokio::time::timeout(LIMIT, async {
        loop {
            match lines.next_line().await.expect("read") {
                Some(l) if l.contains("loopresr") => return l,
                Some(_) => continue,
                None => panic!("s_server closed"),
            }
        }
    })
    .await
    .expect("answer");
    assert!(got.contains("loopresr"), "{got}");
    let _ = child.kill().await;
}
