//! TLS handshakes over loopback: PSK and certificate handshakes between
//! our server and client, every refusal, every server configuration
//! against every kind of client, the server's self-test, how credential
//! files are read, and interop with the `openssl` command line tool
//! (software we did not write) in both directions.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rserpool_security::pki::CertificateAuthority;
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{
    ClientCertificates, FileKind, PeerIdentity, Psk, PskStore, SecurityError, TlsClient,
    TlsClientConfig, TlsServer, TlsServerConfig,
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

/// What a handshake ends with: the identity the server saw and the one
/// the client saw, or a refusal (by both sides).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted {
        server_saw: PeerIdentity,
        client_saw: PeerIdentity,
    },
    Refused,
}

/// A server configuration: PSKs, a certificate, a client CA, client
/// certificates required.
type Combination = (bool, bool, bool, bool);

/// Every server configuration `TlsServer::new` accepts (PSKs and/or a
/// certificate; a client CA; client certificates required, which needs a
/// client CA) against each kind of client: a PE with a PSK only, a PU with
/// the CA only, a PU with the CA and its certificate (`pu-7`). The PSK +
/// client CA rows failed with "session id context uninitialized" before
/// the server set a session id context. Every accepted configuration also
/// passes its self-test.
#[tokio::test]
async fn every_server_configuration_against_every_client() {
    let p = pki();
    let pe = Psk::generate("pe-1").expect("key");
    let psk = || Outcome::Accepted {
        server_saw: PeerIdentity::Psk("pe-1".into()),
        client_saw: PeerIdentity::Psk("pe-1".into()),
    };
    let registrar = || PeerIdentity::Certificate("registrar-1".into());
    let anon = || Outcome::Accepted {
        server_saw: PeerIdentity::Anonymous,
        client_saw: registrar(),
    };
    let cert = || Outcome::Accepted {
        server_saw: PeerIdentity::Certificate("pu-7".into()),
        client_saw: registrar(),
    };
    let no = || Outcome::Refused;
    // psks, certificate, client CA, required:
    //   PSK client, CA client, CA client with certificate.
    #[rustfmt::skip]
    let table: [(Combination, [Outcome; 3]); 9] = [
        ((true,  false, false, false), [psk(), no(),   no()]),
        ((true,  false, true,  false), [psk(), no(),   no()]),
        ((true,  false, true,  true),  [psk(), no(),   no()]),
        ((false, true,  false, false), [no(),  anon(), anon()]),
        ((false, true,  true,  false), [no(),  anon(), cert()]),
        ((false, true,  true,  true),  [no(),  no(),   cert()]),
        ((true,  true,  false, false), [psk(), anon(), anon()]),
        ((true,  true,  true,  false), [psk(), anon(), cert()]),
        ((true,  true,  true,  true),  [psk(), no(),   cert()]),
    ];
    let config =
        |(psks, certificate, client_ca, require): (bool, bool, bool, bool)| TlsServerConfig {
            psks: psks.then(|| store(&[&pe])),
            certificate: certificate.then(|| p.registrar.clone()),
            client_ca: client_ca.then(|| p.ca.clone()),
            require_client_certificate: require,
        };
    // The other seven combinations authenticate nobody or require client
    // certificates without a CA to check them.
    let mut accepted = 0;
    for bits in 0..16u8 {
        let combination = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        let listed = table.iter().any(|(c, _)| *c == combination);
        match TlsServer::new(&config(combination)) {
            Ok(_) => {
                assert!(listed, "{combination:?} is accepted but not in the table");
                accepted += 1;
            }
            Err(e) => {
                assert!(!listed, "{combination:?}: {e}");
                assert!(matches!(e, SecurityError::Config(_)), "{e}");
            }
        }
    }
    assert_eq!(accepted, table.len());
    let clients = [
        ("PSK client", psk_client(&pe)),
        ("CA client", ca_client(&p, None)),
        (
            "CA client with a certificate",
            ca_client(&p, Some(p.pu.clone())),
        ),
    ];
    for (combination, outcomes) in &table {
        let server = server(config(*combination));
        assert_eq!(server.has_psks(), combination.0);
        assert_eq!(server.has_certificate(), combination.1);
        assert_eq!(
            server.client_certificates(),
            match (combination.2, combination.3) {
                (false, _) => ClientCertificates::NotRequested,
                (true, false) => ClientCertificates::Optional,
                (true, true) => ClientCertificates::Required,
            }
        );
        assert_eq!(server.client_certificates().accepted(), combination.2);
        server
            .self_test()
            .await
            .unwrap_or_else(|e| panic!("{combination:?}: {e}"));
        for ((kind, client), expected) in clients.iter().zip(outcomes) {
            let (s, c) = handshake(&server, client, "127.0.0.1").await;
            let got = match (s, c) {
                (Ok(server_saw), Ok(client_saw)) => Outcome::Accepted {
                    server_saw,
                    client_saw,
                },
                (Err(_), Err(_)) => Outcome::Refused,
                (s, c) => panic!("{combination:?}, {kind}: one side only: {s:?} / {c:?}"),
            };
            assert_eq!(&got, expected, "server {combination:?}, {kind}");
        }
    }
}

/// A certificate and a key, written by hand (not through `pki`), with the
/// key's mode set after writing.
fn loose_key_files(p: &Pki, dir: &std::path::Path, mode: u32) -> CertificateFiles {
    use std::os::unix::fs::PermissionsExt;
    let chain = dir.join("reg.pem");
    let key = dir.join("reg.key");
    std::fs::copy(&p.registrar.chain, &chain).expect("copy");
    std::fs::copy(&p.registrar.key, &key).expect("copy");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
    CertificateFiles { chain, key }
}

#[test]
fn a_tls_private_key_others_can_read_is_refused() {
    let p = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in [0o644, 0o640] {
        let files = loose_key_files(&p, dir.path(), mode);
        let refusals = [
            TlsServer::new(&TlsServerConfig {
                certificate: Some(files.clone()),
                ..Default::default()
            })
            .expect_err("server refuses"),
            TlsClient::new(&TlsClientConfig {
                ca: Some(p.ca.clone()),
                certificate: Some(files.clone()),
                ..Default::default()
            })
            .expect_err("client refuses"),
        ];
        for e in refusals {
            assert!(
                matches!(&e, SecurityError::KeyFileMode { mode: m, path } if *m == mode && *path == files.key),
                "{e:?}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
            assert_eq!(e.path(), Some(files.key.as_path()));
        }
    }
    let files = loose_key_files(&p, dir.path(), 0o600);
    TlsServer::new(&TlsServerConfig {
        certificate: Some(files),
        ..Default::default()
    })
    .expect("mode 0600 is fine");
}

#[test]
fn credential_paths_that_are_not_files_are_refused_at_once() {
    let p = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("chain.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let with = |chain: PathBuf, key: PathBuf, client_ca: Option<PathBuf>| TlsServerConfig {
        certificate: Some(CertificateFiles { chain, key }),
        client_ca,
        ..Default::default()
    };
    let dev_null = PathBuf::from("/dev/null");
    let d = dir.path().to_owned();
    let cases = [
        (
            with(fifo.clone(), p.registrar.key.clone(), None),
            &fifo,
            FileKind::Fifo,
        ),
        (
            with(p.registrar.chain.clone(), fifo.clone(), None),
            &fifo,
            FileKind::Fifo,
        ),
        (
            with(p.registrar.chain.clone(), dev_null.clone(), None),
            &dev_null,
            FileKind::CharacterDevice,
        ),
        (
            with(
                p.registrar.chain.clone(),
                p.registrar.key.clone(),
                Some(d.clone()),
            ),
            &d,
            FileKind::Directory,
        ),
    ];
    for (cfg, path, kind) in cases {
        // Were the FIFO opened for blocking reads, this would never return.
        let e = TlsServer::new(&cfg).expect_err("refused");
        assert!(
            matches!(&e, SecurityError::NotAFile { path: p, kind: k } if p == path && *k == kind),
            "{e:?}"
        );
        assert!(e.to_string().contains("a regular file is needed"), "{e}");
        assert!(!e.to_string().contains("chmod"), "{e}");
    }
    let e = TlsClient::new(&TlsClientConfig {
        ca: Some(fifo.clone()),
        ..Default::default()
    })
    .expect_err("a FIFO CA");
    assert!(e.to_string().contains("is a FIFO (named pipe)"), "{e}");
}

#[test]
fn empty_garbage_and_encrypted_credentials_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let p = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let e = TlsClient::new(&TlsClientConfig {
        ca: Some(empty.clone()),
        ..Default::default()
    })
    .expect_err("an empty CA file");
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    assert_eq!(e.path(), Some(empty.as_path()));
    // A private key encrypted with a pass phrase: refused without asking
    // for the pass phrase.
    let key_pem = std::fs::read(&p.registrar.key).expect("read");
    let key = openssl::pkey::PKey::private_key_from_pem(&key_pem).expect("key");
    let encrypted = key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"secret")
        .expect("encrypt");
    let enc = dir.path().join("enc.key");
    std::fs::write(&enc, encrypted).expect("write");
    std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("write");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for (key, expect) in [(&enc, "encrypted"), (&garbage, "")] {
        let e = TlsServer::new(&TlsServerConfig {
            certificate: Some(CertificateFiles {
                chain: p.registrar.chain.clone(),
                key: key.clone(),
            }),
            ..Default::default()
        })
        .expect_err("refused");
        assert!(
            matches!(&e, SecurityError::Certificate { path, .. } if path == key),
            "{e:?}"
        );
        assert!(e.to_string().contains(expect), "{e}");
    }
    // The wrong key for the certificate.
    let e = TlsServer::new(&TlsServerConfig {
        certificate: Some(CertificateFiles {
            chain: p.registrar.chain.clone(),
            key: p.pu.key.clone(),
        }),
        ..Default::default()
    })
    .expect_err("mismatched key");
    assert_eq!(e.path(), Some(p.pu.key.as_path()), "{e}");
}

#[tokio::test]
async fn a_chain_file_serves_its_intermediate_certificates() {
    // A chain file with the leaf and, after it, the CA: the extra
    // certificate travels in the handshake and the client still verifies.
    let p = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = std::fs::read(&p.registrar.chain).expect("read");
    chain.extend(std::fs::read(&p.ca).expect("read"));
    let chain_path = dir.path().join("chain.pem");
    std::fs::write(&chain_path, chain).expect("write");
    let server = server(TlsServerConfig {
        certificate: Some(CertificateFiles {
            chain: chain_path,
            key: p.registrar.key.clone(),
        }),
        ..Default::default()
    });
    let (s, c) = handshake(&server, &ca_client(&p, None), "registrar.test").await;
    assert_eq!(s.expect("server"), PeerIdentity::Anonymous);
    assert_eq!(
        c.expect("client"),
        PeerIdentity::Certificate("registrar-1".into())
    );
    server.self_test().await.expect("self-test");
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

/// Run `openssl s_client` with `args` against `server`: s_client sends a
/// line, the server answers with another; returns who the server saw.
async fn s_client_exchange(server: TlsServer, args: &[&str]) -> PeerIdentity {
    assert!(
        openssl_available(),
        "the openssl command is needed (apt-get install openssl)"
    );
    let (addr, serve) = serve_once(server, |mut s| async move {
        let mut line = String::new();
        BufReader::new(&mut s)
            .read_line(&mut line)
            .await
            .expect("read");
        assert_eq!(line, "hello from s_client\n");
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
            "-ciphersuites",
            "TLS_AES_128_GCM_SHA256",
            "-quiet",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"hello from s_client\n")
        .await
        .expect("write");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("s_client prints our line")
        .expect("read");
    assert_eq!(line.as_deref(), Some("greetings from rserpool"));
    let id = finished(serve).await.expect("handshake");
    drop(stdin);
    let _ = child.kill().await;
    id
}

#[tokio::test]
async fn openssl_s_client_psk_handshakes_with_a_client_ca_configured() {
    let p = pki();
    let pe = Psk::generate("pe-ossl").expect("key");
    let key = hex::encode(pe.key);
    for certificate in [None, Some(p.registrar.clone())] {
        for require_client_certificate in [false, true] {
            let server = server(TlsServerConfig {
                psks: Some(store(&[&pe])),
                certificate: certificate.clone(),
                client_ca: Some(p.ca.clone()),
                require_client_certificate,
            });
            let id = s_client_exchange(server, &["-psk_identity", "pe-ossl", "-psk", &key]).await;
            assert_eq!(id, PeerIdentity::Psk("pe-ossl".into()));
        }
    }
}

#[tokio::test]
async fn openssl_s_client_with_a_certificate_is_named_by_a_psk_and_certificate_server() {
    let p = pki();
    let pe = Psk::generate("pe-ossl").expect("key");
    let path = |p: &PathBuf| p.to_str().expect("UTF-8 path").to_owned();
    let (ca, cert, key) = (path(&p.ca), path(&p.pu.chain), path(&p.pu.key));
    for require_client_certificate in [false, true] {
        let server = server(TlsServerConfig {
            psks: Some(store(&[&pe])),
            certificate: Some(p.registrar.clone()),
            client_ca: Some(p.ca.clone()),
            require_client_certificate,
        });
        let args = [
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-cert",
            &cert,
            "-key",
            &key,
        ];
        let id = s_client_exchange(server, &args).await;
        assert_eq!(id, PeerIdentity::Certificate("pu-7".into()));
    }
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
