//! RFC 5355 2.9: security lost when a PU fails over. The RFC's case is
//! the PU-PE session (PE A with a security context, PE B without); the
//! client library has no PU-PE sessions yet (no failover notification,
//! no security level of a session, DESIGN section 4), so this row is a
//! gap (docs/threat-matrix.md). What exists is tested here: a PU that
//! fails over between registrars keeps their security (it never falls
//! back to plain TCP, where anyone could answer), and a PU that fails
//! over between PEs takes the next one from what an authenticated
//! registrar handed out.

use rserpool::{ClientError, PoolElement, PoolUser, ReportOutcome};
use rserpool_registrar::{CoreConfig, ServiceConfig};
use rserpool_security::Psk;
use tokio::net::TcpStream;

use crate::common::*;

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
