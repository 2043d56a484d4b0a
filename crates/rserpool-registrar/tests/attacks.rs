//! Attacks from outside against a real registrar on loopback (issue:
//! "what an outside attacker breaks today"): each test performs the
//! attack and checks the defence: legitimate PEs stay registered,
//! legitimate PUs stay served, the attacker gets a clear refusal, and the
//! counters say what happened. RFC 5355 sections 2.1, 2.13 and 2.14;
//! DESIGN section 4 (caps and deadlines on every stage).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rserpool_registrar::{CoreConfig, Event, Removal, ServiceConfig};
use rserpool_security::rate_limit::Rate;
use rserpool_wire::{AsapMessage, CauseCode, PeId};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDLE: &str = "echo";
const PE_ID: u32 = 0x0a0b_0c0d;

type Tls = tokio_openssl::SslStream<TcpStream>;

/// A PE of `pe-a` that answers keep-alives while `answer` is set.
async fn answering_pe(lab: &Lab) -> Arc<AtomicBool> {
    let mut pe_a = lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    let answer = Arc::new(AtomicBool::new(true));
    let on = answer.clone();
    tokio::spawn(async move {
        while let Some(msg) = pe_a.recv().await {
            if let AsapMessage::EndpointKeepAlive {
                pool_handle,
                identifier: Some(identifier),
                ..
            } = msg
            {
                if on.load(Ordering::Relaxed) {
                    pe_a.send(&AsapMessage::EndpointKeepAliveAck {
                        pool_handle,
                        identifier,
                    })
                    .await;
                }
            }
        }
    });
    answer
}

fn report() -> AsapMessage {
    AsapMessage::EndpointUnreachable {
        pool_handle: pool_handle(HANDLE),
        identifier: PeId::new(PE_ID),
    }
}

/// Keep-alive timers short enough that a removal would show within the
/// test.
/// Regular keep-alives too rare to matter within a test: only a check of
/// reports can remove a PE that does not answer.
fn rare_keep_alives() -> CoreConfig {
    CoreConfig {
        keep_alive_interval: Duration::from_secs(60),
        ..quick_core()
    }
}

fn quick_core() -> CoreConfig {
    CoreConfig {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_millis(500),
        report_rate: Rate::new(20.0, 40.0),
        ..CoreConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_keys_reporting_cannot_remove_a_pe_that_answers() {
    let lab = Lab::start(quick_core()).await;
    let mut events = lab.registrar.events();
    let answer = answering_pe(&lab).await;
    let mut reporters = Vec::new();
    for name in ["pu-1", "pu-2", "pu-3"] {
        reporters.push(lab.client(name).await);
    }
    let mut pu = lab.client("pe-b").await;
    // Five reports a second from each of three keys for three seconds:
    // before, this kept the pool empty nearly all the time.
    let mut served = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for _ in 0..15 {
        tick.tick().await;
        for r in &mut reporters {
            r.send(&report()).await;
        }
        assert_eq!(
            pu.resolve(HANDLE).await,
            Ok(vec![PE_ID]),
            "the PU is served"
        );
        served += 1;
    }
    assert_eq!(served, 15);
    let checked = wait_event(&mut events, |e| matches!(e, Event::ReportsRefuted { .. })).await;
    let Event::ReportsRefuted {
        reporters: named, ..
    } = checked
    else {
        unreachable!()
    };
    assert_eq!(named.len(), 3, "the log names the reporters: {named:?}");
    assert!(named.iter().all(|n| n.starts_with("psk:pu-")), "{named:?}");
    let s = lab.stats().await;
    assert!(s.unreachable_probes >= 1, "{s:?}");
    assert_eq!(s.unreachable_removals, 0);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_ID]);

    // The same reports about a PE that stopped answering remove it, once
    // a keep-alive goes unanswered (the one that checks the reports, or a
    // regular one that was out already).
    answer.store(false, Ordering::Relaxed);
    for r in &mut reporters {
        r.send(&report()).await;
    }
    let removed = wait_event(&mut events, |e| matches!(e, Event::Removed { .. })).await;
    assert!(
        matches!(
            removed,
            Event::Removed {
                reason: Removal::Unreachable | Removal::KeepAliveTimeout,
                ..
            }
        ),
        "{removed:?}"
    );
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_reporters_count_once_per_address_in_certificate_mode() {
    let lab = Lab::with_certificate(ServiceConfig {
        core: rare_keep_alives(),
        ..ServiceConfig::default()
    })
    .await;
    let mut events = lab.registrar.events();
    // A PE that does not answer: any check would remove it.
    let answer = answering_pe(&lab).await;
    answer.store(false, Ordering::Relaxed);
    // Twenty anonymous connections from one host, no secret needed.
    let mut anon = Vec::new();
    for _ in 0..20 {
        let mut c = lab
            .anonymous_from(loopback(1))
            .await
            .expect("anonymous TLS");
        c.send(&report()).await;
        // Answered after the report: the report was handled.
        assert_eq!(c.resolve(HANDLE).await, Ok(vec![PE_ID]));
        anon.push(c);
    }
    let s = lab.stats().await;
    assert_eq!(s.unreachable_reports, 20);
    assert_eq!(s.unreachable_probes, 0, "one host is one reporter");
    // Two more hosts make MAX-BAD-PE-REPORT: now the PE is checked, and
    // removed because it does not answer.
    for n in [2, 3] {
        let mut c = lab
            .anonymous_from(loopback(n))
            .await
            .expect("anonymous TLS");
        c.send(&report()).await;
        anon.push(c);
    }
    let e = wait_event(&mut events, |e| {
        matches!(e, Event::ReportedUnreachable { .. })
    })
    .await;
    let Event::ReportedUnreachable { mut reporters, .. } = e else {
        unreachable!()
    };
    reporters.sort();
    assert_eq!(
        reporters,
        [
            "anonymous@127.0.0.1",
            "anonymous@127.0.0.2",
            "anonymous@127.0.0.3"
        ]
    );
    wait_event(&mut events, |e| {
        matches!(
            e,
            Event::Removed {
                reason: Removal::Unreachable,
                ..
            }
        )
    })
    .await;

    // Configured not to count them at all: each report is refused.
    let lab = Lab::with_certificate(ServiceConfig {
        core: CoreConfig {
            count_anonymous_reports: false,
            ..rare_keep_alives()
        },
        ..ServiceConfig::default()
    })
    .await;
    let answer = answering_pe(&lab).await;
    answer.store(false, Ordering::Relaxed);
    for n in 1..=3 {
        let mut c = lab
            .anonymous_from(loopback(n))
            .await
            .expect("anonymous TLS");
        match c.request(&report()).await {
            AsapMessage::Error { error } => {
                assert_eq!(error.causes[0].code, CauseCode::RejectedSecurity)
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    let s = lab.stats().await;
    assert_eq!((s.unreachable_reports, s.unreachable_probes), (0, 0));
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_ID]);
}

/// TCP connections from `from` that never start a handshake.
async fn stalled(lab: &Lab, from: u8, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        // A connect the kernel's listen queue dropped is no connection.
        if let Ok(s) = tcp_from(lab.addr, loopback(from)).await {
            v.push(s);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_a_key_cannot_take_the_connection_slots() {
    raise_fd_limit();
    let lab = Lab::with_service(ServiceConfig {
        handshake_timeout: Duration::from_secs(60),
        max_handshakes: 128,
        ..ServiceConfig::default()
    })
    .await;
    let defaults = ServiceConfig::default();
    // 1,200 connections from one address that never finish a handshake.
    let one = stalled(&lab, 1, 1_200).await;
    assert!(one.len() > 1_000, "{} connects", one.len());
    wait_until("the flood is refused", || async {
        let s = lab.registrar.service_stats();
        s.connections_refused_handshakes_per_address as usize
            >= one.len() - defaults.max_handshakes_per_address
    })
    .await;
    let s = lab.registrar.service_stats();
    assert_eq!(
        s.handshakes_in_progress as usize,
        defaults.max_handshakes_per_address
    );
    // A pool user from another address is served.
    let mut pu = lab
        .client_from("pu-1", loopback(2))
        .await
        .expect("pu-1 connects");
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));

    // Five more addresses fill every handshake slot (128): the oldest
    // stalled handshakes are evicted for new ones, so a real handshake,
    // which finishes in milliseconds, still gets through.
    let mut many = Vec::new();
    for from in 10..15 {
        many.push(stalled(&lab, from, 32).await);
    }
    wait_until("the slots are full", || async {
        let s = lab.registrar.service_stats();
        s.tls_handshakes_evicted > 0
    })
    .await;
    let mut pu = lab
        .client_from("pu-2", loopback(3))
        .await
        .expect("pu-2 connects");
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
    let s = lab.registrar.service_stats();
    assert!(s.handshakes_in_progress <= 128, "{s:?}");
    drop((one, many));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_of_connections_and_others_get_in() {
    let lab = Lab::with_service(ServiceConfig {
        max_connections_per_address: 20,
        ..ServiceConfig::default()
    })
    .await;
    // Keys of several identities behind one address: 20 connections.
    let mut held = Vec::new();
    for i in 0..20 {
        let name = ["pu-1", "pu-2", "pu-3", "flooder"][i % 4];
        held.push(
            lab.client_from(name, loopback(1))
                .await
                .expect("within the share"),
        );
    }
    // The 21st from that address is closed at once, before any TLS.
    for _ in 0..5 {
        let mut tcp = tcp_from(lab.addr, loopback(1)).await.expect("connect");
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(LIMIT, tcp.read(&mut b))
            .await
            .expect("closed within the limit");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert_eq!(
        lab.registrar
            .service_stats()
            .connections_refused_per_address,
        5
    );
    // Another address is served, and so is a held connection.
    let mut pu = lab
        .client_from("pu-1", loopback(2))
        .await
        .expect("pu-1 connects");
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
    assert_eq!(
        held[0].resolve(HANDLE).await,
        Err(CauseCode::UnknownPoolHandle)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_take_the_connection_slots() {
    let lab = Lab::with_service(ServiceConfig {
        core: CoreConfig {
            max_connections_per_identity: 40,
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await;
    let mut held: Vec<Client<Tls>> = Vec::new();
    for _ in 0..40 {
        let mut c = lab.client("flooder").await;
        assert_eq!(c.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
        held.push(c);
    }
    // The 41st: an error that says why, then the connection closes.
    for _ in 0..10 {
        let mut c = lab.client("flooder").await;
        match c.recv().await {
            Some(AsapMessage::Error { error }) => {
                assert_eq!(error.causes[0].code, CauseCode::LackOfResources);
                let info = String::from_utf8_lossy(&error.causes[0].info).to_string();
                assert!(
                    info.contains("psk:flooder already has 40 connections"),
                    "{info}"
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(c.recv().await.is_none(), "closed");
    }
    assert_eq!(lab.stats().await.connections_refused_per_identity, 10);
    let mut pu = lab.client("pu-1").await;
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_trickled_byte_by_byte_is_cut_off() {
    let lab = Lab::with_service(ServiceConfig {
        message_timeout: Duration::from_secs(1),
        ..ServiceConfig::default()
    })
    .await;
    let mut slow = lab.client("pe-a").await;
    // A header claiming 4,096 bytes, then one byte every 300 ms: each byte
    // resets the idle timer, but not the message's deadline.
    slow.send_raw(&[0x01, 0x00, 0x10, 0x00]).await;
    let closed = tokio::time::timeout(LIMIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if slow.stream.write_all(&[0]).await.is_err() {
                        return;
                    }
                }
                r = slow.stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the registrar closed the connection");
    assert_eq!(lab.registrar.service_stats().message_timeouts, 1);
    let mut pu = lab.client("pu-1").await;
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_and_a_silent_connection_are_closed() {
    let lab = Lab::with_service(ServiceConfig {
        handshake_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(1),
        core: CoreConfig {
            keep_alive_interval: Duration::from_millis(200),
            keep_alive_timeout: Duration::from_millis(200),
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await;
    let mut tcp = TcpStream::connect(lab.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(LIMIT, tcp.read(&mut buf))
        .await
        .expect("closed within the limit");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(lab.registrar.service_stats().tls_handshake_timeouts, 1);
    let mut quiet = lab.client("pu-1").await;
    assert!(
        quiet.recv().await.is_none(),
        "closed after the idle timeout"
    );
    assert_eq!(lab.registrar.service_stats().idle_closed, 1);
}
