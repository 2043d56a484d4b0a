//! RFC 5355 2.1: registrations and deregistrations flooded in on behalf
//! of PEs that do not exist, by a node that has no key. Mechanism: TLS
//! with a PSK before any state (an unknown identity, a wrong key and
//! plain TCP never get past the handshake), and in certificate mode the
//! anonymous clients that may connect without a secret may only be pool
//! users.

use rserpool::{ClientError, PoolElement};
use rserpool_registrar::{CoreConfig, ServiceConfig};
use rserpool_security::Psk;
use rserpool_wire::CauseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_key_cannot_register_and_the_registrar_keeps_serving() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let failures_before = lab.registrar.service_stats().tls_handshake_failures;

    // An identity the registrar does not know, and a known one with a
    // wrong key: the handshake fails, nothing is read.
    let stranger = Psk::generate("mallory").expect("key");
    let e = Client::psk(lab.addr, stranger.clone())
        .await
        .err()
        .expect("unknown identity refused");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    let mut wrong = lab.key("pe-b");
    wrong.key[0] ^= 1;
    let e = Client::psk(lab.addr, wrong.clone())
        .await
        .err()
        .expect("wrong key refused");
    assert!(e.to_string().contains("TLS handshake"), "{e}");

    // The client library with the wrong key: no registrar at all.
    let mut c = config(vec![lab.addr], Some(psk_client(&wrong)));
    c.timers.max_reg_attempts = 1;
    let err = within(PoolElement::start(c, spec(HANDLE, 2, 7)))
        .await
        .expect_err("not registered");
    assert!(matches!(err, ClientError::NoRegistrar(_)), "{err}");

    // Plain TCP: 50 registrations of PEs that do not exist, written
    // before any handshake. Nothing but (at most) a TLS alert comes back.
    let mut tcp = TcpStream::connect(lab.addr).await.expect("connect");
    let mut flood = Vec::new();
    for id in 0..50 {
        registration(HANDLE, pe(100 + id, "127.0.0.1", 7))
            .encode(&mut flood)
            .expect("encode");
    }
    let _ = tcp.write_all(&flood).await;
    let mut answer = Vec::new();
    within(tcp.read_to_end(&mut answer)).await.ok();
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "plain client got {answer:02x?}"
    );

    wait_until("the registrar counts the failed handshakes", || async {
        lab.registrar.service_stats().tls_handshake_failures >= failures_before + 3
    })
    .await;
    assert_eq!(lab.stats().await.registrations, 1, "only the legitimate PE");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_client_flooding_registrations_is_rejected_for_security_and_creates_nothing() {
    let lab = Lab::with_certificate(ServiceConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // In certificate mode a client needs no secret to connect (a pool
    // user): 100 registrations of PEs that do not exist, pipelined, and
    // deregistrations of the legitimate one.
    let mut anon = lab
        .anonymous_from(loopback(1))
        .await
        .expect("anonymous TLS");
    let mut flood = Vec::new();
    for id in 0..100 {
        registration(HANDLE, pe(100 + id, "127.0.0.1", 7))
            .encode(&mut flood)
            .expect("encode");
    }
    // A few kilobytes each way: the socket buffers hold them.
    anon.send_raw(&flood).await;
    for _ in 0..100 {
        match anon.recv().await {
            Some(rserpool_wire::AsapMessage::RegistrationResponse {
                reject: true,
                error: Some(e),
                ..
            }) => assert_eq!(e.causes[0].code, CauseCode::RejectedSecurity),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Nor may it take the legitimate PE away.
    match anon
        .request(&rserpool_wire::AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: rserpool_wire::PeId::new(PE_A),
        })
        .await
    {
        rserpool_wire::AsapMessage::DeregistrationResponse { error: Some(e), .. } => {
            assert_eq!(e.causes[0].code, CauseCode::RejectedSecurity)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    let ca = &lab.ca.as_ref().expect("certificate lab").1;
    assert_eq!(
        resolve_with(config(vec![lab.addr], Some(ca_client(ca))), HANDLE).await,
        vec![PE_A],
        "an anonymous pool user is still served"
    );
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}
