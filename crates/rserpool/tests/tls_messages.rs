#![cfg(feature = "driver")]
//! What a client says when it cannot use a registrar: real registrars (the
//! rserpool-registrar service, in process) in each configuration that a
//! client's credentials do not fit, and the kind of failure the client
//! reports, whose text names the setting (the `rsp` flag) that fixes it
//! and keeps OpenSSL's words.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{short_timers, within};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder};
use rserpool::connection::{connect, LinkError};
use rserpool::diagnose::CertificateProblem;
use rserpool::{ClientConfig, ClientError, FailureKind, PoolUser, RegistrarEndpoint, Timers};
use rserpool_registrar::{Registrar, ServiceConfig};
use rserpool_security::pki::{CertificateAuthority, Issued};
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{AsapMessage, PoolHandle};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const MAX_MESSAGE: usize = 65_536;

/// A lab PKI: the CA, a registrar certificate (`registrar-1`, for
/// registrar.test and 127.0.0.1), one from another CA, client
/// certificates from each CA and an expired one, and the PE's key.
struct Lab {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    registrar: CertificateFiles,
    rogue: CertificateFiles,
    pu: CertificateFiles,
    stranger_pu: CertificateFiles,
    expired_pu: CertificateFiles,
    pe: Psk,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = CertificateAuthority::generate("lab CA", 1).expect("ca");
    ca.issued().write_files(d, "ca").expect("write");
    let registrar = ca
        .issue("registrar-1", &["registrar.test"], &[LOCALHOST], 1)
        .expect("issue")
        .write_files(d, "registrar")
        .expect("write");
    let pu = ca
        .issue("pu-7", &[], &[], 1)
        .expect("issue")
        .write_files(d, "pu")
        .expect("write");
    let other = CertificateAuthority::generate("rogue CA", 1).expect("ca");
    let rogue = other
        .issue("registrar-1", &["registrar.test"], &[LOCALHOST], 1)
        .expect("issue")
        .write_files(d, "rogue")
        .expect("write");
    let stranger_pu = other
        .issue("pu-9", &[], &[], 1)
        .expect("issue")
        .write_files(d, "stranger-pu")
        .expect("write");
    let expired_pu = expired(&ca, "pu-old")
        .write_files(d, "expired-pu")
        .expect("write");
    Lab {
        ca: d.join("ca.pem"),
        registrar,
        rogue,
        pu,
        stranger_pu,
        expired_pu,
        pe: Psk::generate("pe-1").expect("key"),
        _dir: dir,
    }
}

/// A client certificate of `ca` that expired yesterday (the CA tooling
/// refuses to make one).
fn expired(ca: &CertificateAuthority, cn: &str) -> Issued {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("key");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
    let name = name.build();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(ca.issued().certificate.subject_name())
        .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now - 2 * 86_400).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::from_unix(now - 86_400).expect("time"))
        .expect("not after");
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .expect("ku"),
    )
    .expect("ku");
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().expect("eku"))
        .expect("eku");
    let san = SubjectAlternativeName::new()
        .dns("pu-old.test")
        .build(&b.x509v3_context(Some(&ca.issued().certificate), None))
        .expect("san");
    b.append_extension(san).expect("san");
    b.sign(&ca.issued().key, MessageDigest::sha256())
        .expect("sign");
    Issued {
        certificate: b.build(),
        key,
    }
}

/// What a registrar authenticates with.
#[derive(Default)]
struct Server<'a> {
    psk: Option<&'a Psk>,
    certificate: Option<&'a CertificateFiles>,
    client_ca: Option<&'a PathBuf>,
    require_client_certificate: bool,
}

/// A registrar on a free loopback port: TLS with `server`, or plain TCP
/// (`None`); at most `max_connections` connections.
async fn registrar(server: Option<Server<'_>>, max_connections: usize) -> Registrar {
    let tls = server.map(|s| {
        let psks = s.psk.map(|k| {
            let mut store = PskStore::default();
            store.insert(k.clone()).expect("unique");
            Arc::new(store)
        });
        Arc::new(
            TlsServer::new(&TlsServerConfig {
                psks,
                certificate: s.certificate.cloned(),
                client_ca: s.client_ca.cloned(),
                require_client_certificate: s.require_client_certificate,
            })
            .expect("TLS server"),
        )
    });
    Registrar::start(ServiceConfig {
        listen: vec![SocketAddr::new(LOCALHOST, 0)],
        tls,
        max_connections,
        max_connections_per_address: max_connections,
        max_handshakes: max_connections,
        max_handshakes_per_address: max_connections,
        ..ServiceConfig::default()
    })
    .await
    .expect("registrar starts")
}

fn endpoint(r: &Registrar) -> RegistrarEndpoint {
    RegistrarEndpoint::new(r.local_addrs()[0])
}

/// A client with these credentials.
fn client(psk: Option<&Psk>, ca: Option<&PathBuf>, cert: Option<&CertificateFiles>) -> TlsClient {
    TlsClient::new(&TlsClientConfig {
        psk: psk.cloned(),
        ca: ca.cloned(),
        certificate: cert.cloned(),
    })
    .expect("client")
}

/// A pool user's resolution through `endpoints` fails: the kind of the
/// first failure and the error's text.
async fn resolve_fails(
    endpoints: Vec<RegistrarEndpoint>,
    tls: Option<TlsClient>,
) -> (Option<FailureKind>, String) {
    let mut config = match tls {
        Some(tls) => ClientConfig::new(endpoints, Some(tls)),
        None => ClientConfig::insecure(endpoints),
    };
    // Each attempt ends at T5 at the latest (RFC 5352 3.6), and T5 is
    // capped at RETRAN-MAX: long deadlines (8 s) let a handshake on a
    // loaded machine (the whole suite on two cores) end the way this
    // case is about, not in a timeout; a failing case ends at once.
    config.timers = Timers {
        t5_server_hunt: Duration::from_secs(8),
        retran_max: Duration::from_secs(8),
        connect_timeout: Duration::from_secs(8),
        ..short_timers()
    };
    let pu = PoolUser::new(config).expect("pool user");
    let err = within(pu.resolve(&PoolHandle::from_static("echo")))
        .await
        .expect_err("no registrar");
    let ClientError::NoRegistrar(failures) = &err else {
        panic!("{err}")
    };
    (failures[0].kind.clone(), err.to_string())
}

/// A pool user's resolution through `endpoints` is answered (the pool
/// is unknown: the registrar says so).
async fn answered(endpoints: Vec<RegistrarEndpoint>, tls: TlsClient) {
    let mut config = ClientConfig::new(endpoints, Some(tls));
    config.timers = short_timers();
    let pu = PoolUser::new(config).expect("pool user");
    match within(pu.resolve(&PoolHandle::from_static("echo"))).await {
        Ok(pes) => assert!(pes.is_empty(), "{pes:?}"),
        Err(ClientError::UnknownPoolHandle(_)) => {}
        Err(e) => panic!("not answered: {e}"),
    }
}

/// The connection is made, then ends before the registrar's first
/// answer (after the TLS handshake, or in plain TCP): what the client
/// makes of it.
async fn ends_before_answer(e: &RegistrarEndpoint, tls: Option<&TlsClient>) -> FailureKind {
    let mut conn = within(connect(e, tls, Duration::from_secs(5), MAX_MESSAGE))
        .await
        .expect("connected");
    let request = AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: PoolHandle::from_static("echo"),
        items: None,
    };
    // The write may find the connection gone already; the read tells why.
    let _ = conn.send(&request).await;
    match within(conn.recv()).await {
        Err(LinkError::EndedBeforeAnswer { diagnosis, .. }) => diagnosis.kind,
        other => panic!("expected the end before an answer, got {other:?}"),
    }
}

fn assert_names(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{n:?} missing from: {text}");
    }
}

#[tokio::test]
async fn case_1_a_psk_client_at_a_certificate_only_registrar_is_told_to_give_a_ca() {
    let l = lab();
    let r = registrar(
        Some(Server {
            certificate: Some(&l.registrar),
            ..Server::default()
        }),
        16,
    )
    .await;
    let (kind, text) =
        resolve_fails(vec![endpoint(&r)], Some(client(Some(&l.pe), None, None))).await;
    assert_eq!(
        kind,
        Some(FailureKind::CertificateInsteadOfPsk {
            identity: "pe-1".into()
        })
    );
    assert_names(
        &text,
        &[
            "did not accept pre-shared key identity \"pe-1\"",
            "(--ca FILE)",
            "--psk-file",
            "OpenSSL: certificate verify failed: unable to get local issuer certificate",
        ],
    );
}

#[tokio::test]
async fn case_2_certificate_clients_at_a_psk_only_registrar_are_told_to_give_a_psk() {
    let l = lab();
    let r = registrar(
        Some(Server {
            psk: Some(&l.pe),
            ..Server::default()
        }),
        16,
    )
    .await;
    // With a certificate of its own, and an anonymous PU (the CA only).
    for tls in [
        client(None, Some(&l.ca), Some(&l.pu)),
        client(None, Some(&l.ca), None),
    ] {
        let (kind, text) = resolve_fails(vec![endpoint(&r)], Some(tls)).await;
        assert_eq!(kind, Some(FailureKind::PskRequired));
        assert_names(
            &text,
            &[
                "accepts pre-shared keys only",
                "--psk-file FILE",
                "OpenSSL: sslv3 alert handshake failure",
            ],
        );
    }
}

#[tokio::test]
async fn case_3_a_wrong_key_and_an_unknown_identity() {
    let l = lab();
    let r = registrar(
        Some(Server {
            psk: Some(&l.pe),
            ..Server::default()
        }),
        16,
    )
    .await;
    let mut forged = l.pe.clone();
    forged.key[0] ^= 1;
    let (kind, text) =
        resolve_fails(vec![endpoint(&r)], Some(client(Some(&forged), None, None))).await;
    assert_eq!(
        kind,
        Some(FailureKind::WrongPsk {
            identity: "pe-1".into()
        })
    );
    assert_names(&text, &["another key", "--psk-file", "OpenSSL: "]);

    let stranger = Psk::generate("stranger").expect("key");
    let (kind, text) = resolve_fails(
        vec![endpoint(&r)],
        Some(client(Some(&stranger), None, None)),
    )
    .await;
    assert_eq!(
        kind,
        Some(FailureKind::UnknownPskIdentity {
            identity: "stranger".into()
        })
    );
    assert_names(&text, &["does not know", "--identity", "--psk-file"]);

    // A registrar with a certificate too offers it instead: the client
    // cannot tell an unknown identity from a registrar without PSKs.
    let both = registrar(
        Some(Server {
            psk: Some(&l.pe),
            certificate: Some(&l.registrar),
            ..Server::default()
        }),
        16,
    )
    .await;
    let (kind, text) = resolve_fails(
        vec![endpoint(&both)],
        Some(client(Some(&stranger), None, None)),
    )
    .await;
    assert_eq!(
        kind,
        Some(FailureKind::CertificateInsteadOfPsk {
            identity: "stranger".into()
        })
    );
    assert_names(&text, &["--identity", "--ca"]);
}

#[tokio::test]
async fn case_4_a_registrar_certificate_from_another_ca() {
    let l = lab();
    let r = registrar(
        Some(Server {
            certificate: Some(&l.rogue),
            ..Server::default()
        }),
        16,
    )
    .await;
    let (kind, text) =
        resolve_fails(vec![endpoint(&r)], Some(client(None, Some(&l.ca), None))).await;
    assert_eq!(
        kind,
        Some(FailureKind::UntrustedCertificate {
            subject: "registrar-1".into(),
            issuer: "rogue CA".into(),
            identity: None,
        })
    );
    assert_names(
        &text,
        &[
            "not signed by the CA of --ca",
            "give the CA that signed it (--ca FILE)",
            "OpenSSL: certificate verify failed",
        ],
    );
}

#[tokio::test]
async fn case_5_a_host_the_registrar_certificate_does_not_name() {
    let l = lab();
    let r = registrar(
        Some(Server {
            certificate: Some(&l.registrar),
            ..Server::default()
        }),
        16,
    )
    .await;
    let addr = r.local_addrs()[0];
    for (asked, expected) in [
        ("localhost", "hostname mismatch"),
        ("127.0.0.2", "IP address mismatch"),
    ] {
        let e = RegistrarEndpoint::with_name(addr, asked);
        let (kind, text) = resolve_fails(vec![e], Some(client(None, Some(&l.ca), None))).await;
        assert_eq!(
            kind,
            Some(FailureKind::NameMismatch {
                requested: asked.into(),
                names: vec!["registrar.test".into(), "127.0.0.1".into()],
                port: addr.port(),
            })
        );
        assert_names(
            &text,
            &[
                "is for registrar.test, 127.0.0.1",
                &format!("-r registrar.test:{}", addr.port()),
                expected,
            ],
        );
    }
}

#[tokio::test]
async fn case_6_tls_and_plain_tcp_do_not_meet() {
    let l = lab();
    // A TLS client at a plain TCP registrar: it answers the ClientHello
    // with an ASAP error, which is no TLS record.
    let plain = registrar(None, 16).await;
    let (kind, text) = resolve_fails(
        vec![endpoint(&plain)],
        Some(client(Some(&l.pe), None, None)),
    )
    .await;
    assert_eq!(kind, Some(FailureKind::NotTls));
    assert_names(
        &text,
        &[
            "does not speak TLS",
            "--insecure",
            "OpenSSL: wrong version number",
        ],
    );

    // A plain (--insecure) client at a TLS registrar: the TCP connection
    // is made; the registrar's TLS refuses the first message and closes.
    let secure = registrar(
        Some(Server {
            psk: Some(&l.pe),
            ..Server::default()
        }),
        16,
    )
    .await;
    let kind = ends_before_answer(&endpoint(&secure), None).await;
    assert!(
        matches!(
            kind,
            FailureKind::ClosedBeforeAnswer { tls: false } | FailureKind::RegistrarSpeaksTls
        ),
        "{kind:?}"
    );
    let (kind, text) = resolve_fails(vec![endpoint(&secure)], None).await;
    // Reported from the connection's end, not from the hunt: unclassified.
    assert_eq!(kind, None);
    assert_names(&text, &["give --psk-file or --ca instead of --insecure"]);
}

#[tokio::test]
async fn case_7_a_client_certificate_the_registrar_refuses() {
    let l = lab();
    let r = registrar(
        Some(Server {
            certificate: Some(&l.registrar),
            client_ca: Some(&l.ca),
            require_client_certificate: true,
            ..Server::default()
        }),
        16,
    )
    .await;
    let e = endpoint(&r);
    // The good certificate works (the set-up is right).
    let good = client(None, Some(&l.ca), Some(&l.pu));
    answered(vec![e.clone()], good).await;
    // TLS 1.3: the refusal arrives after the client's handshake, with the
    // first read.
    for (cert, problem, flag, openssl) in [
        (
            &l.stranger_pu,
            CertificateProblem::UnknownCa,
            "use a certificate issued by the registrar's client CA (--cert FILE --key FILE)",
            "OpenSSL: tlsv1 alert unknown ca",
        ),
        (
            &l.expired_pu,
            CertificateProblem::Expired,
            "renew it (--cert FILE --key FILE)",
            "OpenSSL: sslv3 alert certificate expired",
        ),
    ] {
        let tls = client(None, Some(&l.ca), Some(cert));
        let kind = ends_before_answer(&e, Some(&tls)).await;
        assert_eq!(kind, FailureKind::ClientCertificateRefused { problem });
        let (_, text) = resolve_fails(vec![e.clone()], Some(tls)).await;
        assert_names(&text, &["refused this client's certificate", flag, openssl]);
    }
    // No certificate at all.
    let tls = client(None, Some(&l.ca), None);
    assert_eq!(
        ends_before_answer(&e, Some(&tls)).await,
        FailureKind::ClientCertificateRequired
    );
    let (_, text) = resolve_fails(vec![e], Some(tls)).await;
    assert_names(
        &text,
        &[
            "requires a client certificate",
            "--cert FILE --key FILE",
            "certificate required",
        ],
    );
}

#[tokio::test]
async fn case_8_a_full_registrar_and_one_that_drops_connections() {
    let l = lab();
    let tls = client(Some(&l.pe), None, None);
    let full = registrar(
        Some(Server {
            psk: Some(&l.pe),
            ..Server::default()
        }),
        1,
    )
    .await;
    // The one connection it takes.
    let _held = within(connect(
        &endpoint(&full),
        Some(&tls),
        Duration::from_secs(5),
        MAX_MESSAGE,
    ))
    .await
    .expect("the first connection");
    let (kind, text) = resolve_fails(vec![endpoint(&full)], Some(tls.clone())).await;
    assert_eq!(kind, Some(FailureKind::ClosedDuringHandshake));
    assert_names(
        &text,
        &[
            "closed the connection before the TLS handshake finished",
            "connection limit",
            "add another one (-r HOST:PORT, repeatable)",
        ],
    );

    // Any listener that accepts and drops at once.
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    let dropper = RegistrarEndpoint::new(listener.local_addr().expect("addr"));
    let accepting = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let (kind, _) = resolve_fails(vec![dropper.clone()], Some(tls.clone())).await;
    assert_eq!(kind, Some(FailureKind::ClosedDuringHandshake));

    // With another registrar given, the advice is not repeated, and a
    // working one is used.
    let (_, text) = resolve_fails(vec![dropper.clone(), endpoint(&full)], Some(tls.clone())).await;
    assert!(!text.contains("add another"), "{text}");
    let working = registrar(
        Some(Server {
            psk: Some(&l.pe),
            ..Server::default()
        }),
        16,
    )
    .await;
    answered(vec![dropper, endpoint(&working)], tls).await;
    accepting.abort();
}
