//! RFC 5355 2.9: security lost when a PU fails over from PE A (with a
//! security context) to PE B (without one). A session
//! (`rserpool::session`) never fails over to a PE whose session is
//! weaker than the one it replaces: a PE that offers less is passed over
//! (it is alive, so it is not reported), and when only weaker PEs are
//! left the failover fails with a security downgrade the application
//! hears of; a failover that happens is told to the application with the
//! new PE's level and identity (2.9.3). Around sessions: a PU failing
//! over between registrars never falls back to plain TCP, and a PU
//! failing over between PEs takes the next one from what an
//! authenticated registrar handed out.

use std::sync::Arc;

use rserpool::session::{SecurityLevel, Session, SessionConfig, SessionError};
use rserpool::{ClientError, PoolElement, PoolUser, ReportOutcome};
use rserpool_registrar::{CoreConfig, ServiceConfig};
use rserpool_security::pki::CertificateAuthority;
use rserpool_security::{Psk, TlsClient, TlsClientConfig};
use tokio::net::TcpStream;

use crate::common::*;
use crate::session_lab::*;

const PE_S: u32 = 0x5ec0_0001;
const FORGED: u32 = 0x0bad_0bad;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pu_failing_over_between_registrars_never_falls_back_to_plain_tcp() {
    let (pe_key, pu_key) = (
        Psk::generate("pe-9").expect("key"),
        Psk::generate("pu-9").expect("key"),
    );
    let secure = registrar_with(
        Some(psk_server(&[pe_key.clone(), pu_key.clone()])),
        ServiceConfig::default(),
    )
    .await;
    let s_addr = secure.local_addrs()[0];
    // The insecure registrar holds a PE anyone could have put there.
    let plain = registrar_with(None, ServiceConfig::default()).await;
    let p_addr = plain.local_addrs()[0];
    let mut forger = Client::new(TcpStream::connect(p_addr).await.expect("connect"));
    assert_eq!(
        forger.register(HANDLE, pe(FORGED, "127.0.0.1", 7)).await,
        None
    );

    let _pe = within(PoolElement::start(
        config(vec![s_addr], Some(psk_client(&pe_key))),
        spec(HANDLE, PE_S, 7),
    ))
    .await
    .expect("registered");
    // The insecure registrar first: passed over.
    let first_plain = config(vec![p_addr, s_addr], Some(psk_client(&pu_key)));
    assert_eq!(resolve_with(first_plain, HANDLE).await, vec![PE_S]);

    // The secure one first; it dies while the PU uses it.
    let pu =
        PoolUser::new(config(vec![s_addr, p_addr], Some(psk_client(&pu_key)))).expect("pool user");
    let h = pool_handle(HANDLE);
    let got = within(pu.resolve(&h)).await.expect("resolved");
    assert_eq!(got[0].identifier.get(), PE_S);
    secure.shutdown().await;
    within(pu.purge(&h)).await.expect("purged");
    let err = within(pu.resolve(&h))
        .await
        .expect_err("no secure registrar left");
    let ClientError::NoRegistrar(failures) = &err else {
        panic!("{err}")
    };
    let at_plain = failures
        .iter()
        .find(|f| f.registrar == p_addr)
        .expect("the plain registrar was tried");
    assert!(at_plain.reason.contains("TLS"), "{}", at_plain.reason);
    assert_eq!(
        pes_of(&plain).await,
        1,
        "the forged PE was never handed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pu_failing_over_between_pes_takes_the_next_from_its_authenticated_registrar() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _a = library_pe(&lab, "pe-a", 1).await;
    let _b = library_pe(&lab, "pe-b", 2).await;
    let pu = PoolUser::new(lab_config(&lab, "pu-1")).expect("pool user");
    let h = pool_handle(HANDLE);
    let first = within(pu.select(&h)).await.expect("a PE");
    assert_eq!(
        within(pu.report_unreachable(&h, first.identifier))
            .await
            .expect("reported"),
        ReportOutcome::Reported
    );
    let next = within(pu.select(&h)).await.expect("another PE");
    assert_ne!(next.identifier, first.identifier, "failed over");
    // One report is a hint: both PEs stay registered.
    assert_eq!(lab.pool_ids(HANDLE).await, vec![1, 2]);
}

const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;

/// A PE session server with only a certificate for 127.0.0.1 (no
/// pre-shared keys): sessions with it are server-authenticated only.
/// Returns it with the CA file pool users verify it with.
fn certificate_only(dir: &std::path::Path) -> (Serving, std::path::PathBuf) {
    let ca = CertificateAuthority::generate("pool CA", 1).expect("ca");
    let ca_file = ca.issued().write_files(dir, "ca").expect("write").chain;
    let files = ca
        .issue("pe-b", &[], &["127.0.0.1".parse().expect("ip")], 1)
        .expect("issue")
        .write_files(dir, "pe-b")
        .expect("write");
    let serving = Serving {
        tls: Some(Arc::new(certificate_server(&files))),
        cookie_keys: None,
    };
    (serving, ca_file)
}

/// A session of `pu` of `lab` that offers its pre-shared key and also
/// verifies PE certificates of `ca`.
async fn session_with_ca(lab: &Lab, pu: &str, ca: &std::path::Path) -> Session {
    let tls = TlsClient::new(&TlsClientConfig {
        psk: Some(lab.key(pu)),
        ca: Some(ca.to_path_buf()),
        ..TlsClientConfig::default()
    })
    .expect("TLS client");
    let user = PoolUser::new(lab_config(lab, pu)).expect("pool user");
    within(Session::open(
        user,
        pool_handle(HANDLE),
        SessionConfig::new(tls),
    ))
    .await
    .expect("session opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_passes_over_a_weaker_pe_and_tells_the_application_where_it_went() {
    let lab = Lab::start(CoreConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (weak, ca) = certificate_only(dir.path());
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    let mut s = session_with_ca(&lab, "pu-1", &ca).await;
    assert_eq!(s.peer().pe.identifier.get(), A);
    assert_eq!(s.peer().security, SecurityLevel::MutuallyAuthenticated);
    let b = CountingPe::start(lab_config(&lab, "pe-b"), HANDLE, B, weak).await;
    let _c = CountingPe::start(
        lab_config(&lab, "pe-b"),
        HANDLE,
        C,
        serving(&lab, &pool_key),
    )
    .await;
    assert_eq!(ask(&mut s, "m1").await, format!("{A}:1:m1"));
    // A recommends the weak B first: the session still refuses it.
    within(s.send(7, format!("card:{B},{C}").as_bytes()))
        .await
        .expect("sent");
    assert!(matches!(
        within(s.recv()).await.expect("the card"),
        rserpool::session::SessionEvent::BusinessCard { .. }
    ));

    a.kill().await;
    let f = failed_over(&mut s).await;
    assert_eq!((f.from.get(), f.to.pe.identifier.get()), (A, C));
    assert_eq!(f.to.security, SecurityLevel::MutuallyAuthenticated);
    assert!(f.to.identity.is_some(), "the application learns who C is");
    let passed = f
        .skipped
        .iter()
        .find(|k| k.pe.get() == B)
        .expect("B was tried first and passed over");
    assert!(
        passed.reason.contains("PE authenticated"),
        "{}",
        passed.reason
    );
    assert_eq!(s.floor(), SecurityLevel::MutuallyAuthenticated);
    assert_eq!(ask(&mut s, "m2").await, format!("{C}:2:m2"));
    // B was alive: handshaken with, sent nothing, not reported.
    assert_eq!(
        b.seen(),
        vec![Seen::Established(SecurityLevel::ServerAuthenticated)]
    );
    assert_eq!(lab.pool_ids(HANDLE).await, vec![B, C]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_with_only_weaker_pes_left_fails_with_a_security_downgrade() {
    let lab = Lab::start(CoreConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (weak, ca) = certificate_only(dir.path());
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    let mut s = session_with_ca(&lab, "pu-1", &ca).await;
    let b = CountingPe::start(lab_config(&lab, "pe-b"), HANDLE, B, weak).await;
    assert_eq!(ask(&mut s, "m1").await, format!("{A}:1:m1"));

    a.kill().await;
    match within(s.recv()).await {
        Err(SessionError::SecurityDowngrade { floor, tried, .. }) => {
            assert_eq!(floor, SecurityLevel::MutuallyAuthenticated);
            assert!(tried.iter().any(|t| t.pe.get() == B), "{tried:?}");
        }
        other => panic!("expected a security downgrade, got {other:?}"),
    }
    // Nothing was sent to B; B stays registered and serves sessions
    // that accept its level.
    assert!(!b.seen().iter().any(|e| matches!(e, Seen::Counted(_))));
    assert!(lab.pool_ids(HANDLE).await.contains(&B));
    let mut lenient = session_with_ca(&lab, "pu-2", &ca).await;
    assert_eq!(lenient.peer().security, SecurityLevel::ServerAuthenticated);
    assert_eq!(ask(&mut lenient, "hi").await, format!("{B}:1:hi"));

    // A session that asks for mutual authentication from the start
    // refuses B at once.
    let tls = TlsClient::new(&TlsClientConfig {
        psk: Some(lab.key("pu-2")),
        ca: Some(ca.clone()),
        ..TlsClientConfig::default()
    })
    .expect("TLS client");
    let mut strict = SessionConfig::new(tls);
    strict.min_security = SecurityLevel::MutuallyAuthenticated;
    let user = PoolUser::new(lab_config(&lab, "pu-2")).expect("pool user");
    let err = within(Session::open(user, pool_handle(HANDLE), strict))
        .await
        .expect_err("only a weaker PE");
    assert!(
        matches!(err, SessionError::SecurityDowngrade { .. }),
        "{err}"
    );
}
