//! RFC 5355 2.8: a node on the path records a session and replays it.
//! Mechanism: TLS 1.3: every handshake mixes fresh randoms and key shares
//! from both sides, so recorded bytes do not complete a handshake on a
//! new connection; the registrar issues no session tickets and accepts
//! no early data (0-RTT), so there is nothing to resume or send early.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openssl::ssl::{SslConnector, SslMethod, SslSessionCacheMode, SslVersion};
use rserpool_registrar::CoreConfig;
use rserpool_wire::{AsapMessage, PeId, WireMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;
const REPLAYED: u32 = 0x0000_0002;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_registration_session_replayed_on_a_new_connection_fails_the_handshake() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let proxy = Proxy::start(lab.addr, Tamper::default()).await;
    // The session to record: pe-b registers REPLAYED through the proxy.
    let mut victim = Client::psk(proxy.addr, lab.key("pe-b"))
        .await
        .expect("handshake through the proxy");
    assert_eq!(
        victim.register(HANDLE, pe(REPLAYED, "127.0.0.1", 7)).await,
        None
    );
    drop(victim);
    let recorded = proxy.captured()[0].up.clone();
    // Its owner deregisters it (what the replay would undo).
    let mut owner = lab.client("pe-b").await;
    match owner
        .request(&AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: PeId::new(REPLAYED),
        })
        .await
    {
        AsapMessage::DeregistrationResponse { error: None, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    let failures = lab.registrar.service_stats().tls_handshake_failures;
    let registrations = lab.stats().await.registrations;

    // The replay: every byte the client sent, on a new connection.
    let mut tcp = TcpStream::connect(lab.addr).await.expect("connect");
    let _ = tcp.write_all(&recorded).await;
    let mut answer = Vec::new();
    within(tcp.read_to_end(&mut answer)).await.ok();
    wait_until("the replayed handshake fails", || async {
        lab.registrar.service_stats().tls_handshake_failures > failures
    })
    .await;
    assert_eq!(lab.stats().await.registrations, registrations);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_replayed_within_its_connection_ends_it_and_is_not_applied_twice() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // The client's first message (record 1, after its Finished) is
    // forwarded twice.
    let proxy = Proxy::start(
        lab.addr,
        Tamper {
            replay_up: Some(1),
            ..Tamper::default()
        },
    )
    .await;
    let mut pe_b = Client::psk(proxy.addr, lab.key("pe-b"))
        .await
        .expect("handshake through the proxy");
    pe_b.send(&registration(HANDLE, pe(REPLAYED, "127.0.0.1", 7)))
        .await;
    // The copy fails the record's sequence number and ends the
    // connection (whether the genuine record's answer gets out first
    // depends on when the registrar reads the copy).
    loop {
        match pe_b.recv().await {
            Some(AsapMessage::RegistrationResponse { error: None, .. }) => {}
            None => break,
            Some(other) => panic!("{other:?}"),
        }
    }
    // The genuine record was applied once, its copy not at all.
    let s = lab.stats().await;
    assert_eq!((s.registrations, s.reregistrations), (2, 0), "{s:?}");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![REPLAYED, PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![REPLAYED, PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registrar_issues_no_session_tickets_and_accepts_no_early_data() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let key = lab.key("pu-1");
    let addr = lab.addr;
    // A client of our own on OpenSSL that would keep any ticket the
    // registrar sends (the library's client keeps none).
    let (tickets, early) = tokio::task::spawn_blocking(move || {
        let tickets = Arc::new(AtomicUsize::new(0));
        let mut b = SslConnector::builder(SslMethod::tls_client()).expect("builder");
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .expect("v");
        b.set_ciphersuites("TLS_AES_128_GCM_SHA256")
            .expect("suites");
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let t = tickets.clone();
        b.set_new_session_callback(move |_, _| {
            t.fetch_add(1, Ordering::SeqCst);
        });
        let (id, secret) = (key.identity.clone(), key.key);
        b.set_psk_client_callback(move |_, _, identity, psk| {
            let id = id.as_bytes();
            identity[..id.len()].copy_from_slice(id);
            identity[id.len()] = 0;
            psk[..secret.len()].copy_from_slice(&secret);
            Ok(secret.len())
        });
        let mut c = b.build().configure().expect("configure");
        c.set_verify_hostname(false);
        c.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(LIMIT)).expect("timeout");
        let mut s = c.connect("127.0.0.1", tcp).expect("PSK handshake");
        // A request and its answer: tickets come after the handshake.
        let req = AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool_handle(HANDLE),
            items: None,
        }
        .to_bytes()
        .expect("encode");
        std::io::Write::write_all(&mut s, &req).expect("write");
        let mut head = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut head).expect("an answer");
        let early = s.ssl().session().map(|x| x.max_early_data()).unwrap_or(0);
        (tickets.load(Ordering::SeqCst), early)
    })
    .await
    .expect("client");
    assert_eq!(tickets, 0, "no session ticket: nothing to resume");
    assert_eq!(early, 0, "no early data (0-RTT) allowed");
}
