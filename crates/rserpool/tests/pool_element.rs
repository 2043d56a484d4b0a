#![cfg(feature = "driver")]
//! The pool element API against a scripted registrar over loopback TCP:
//! registration, keep-alives, re-homing, re-registration, failover to
//! another registrar, refusals and deregistration.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{dead_address, insecure, short_timers, within, FakeRegistrar, Seen};
use rserpool::{ClientError, PeEvent, PoolElement, PoolElementSpec};
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, OperationError, PeId, Policy, PoolHandle, ServerId, Transport,
    TransportUse,
};
use tokio::sync::broadcast;

fn handle() -> PoolHandle {
    PoolHandle::from_static("echo")
}

fn spec() -> PoolElementSpec {
    PoolElementSpec::new(handle(), Policy::RoundRobin, 7007)
}

async fn event(rx: &mut broadcast::Receiver<PeEvent>) -> PeEvent {
    within(rx.recv()).await.expect("event")
}

#[tokio::test]
async fn registers_answers_keep_alives_rehomes_and_deregisters() {
    let mut reg = FakeRegistrar::start().await;
    let config = insecure(vec![reg.endpoint()]);
    let start = tokio::spawn(PoolElement::start(config, spec()));
    let (conn, pool_handle, pe) = reg.accept_registration().await;
    let pe_handle = within(start).await.expect("task").expect("registered");
    assert_eq!(pool_handle, handle());
    assert_ne!(pe.identifier, PeId::new(0));
    assert_eq!(pe.identifier, pe_handle.identifier());
    assert_eq!(pe.home_registrar, ServerId::UNDETERMINED);
    assert_eq!(pe.registration_life, 30_000, "milliseconds");
    assert_eq!(
        pe.user_transport,
        Transport::Tcp {
            port: 7007,
            transport_use: TransportUse::DataOnly,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    );
    assert!(pe_handle.status().registered);
    assert_eq!(pe_handle.status().registrar, Some(reg.addr));
    let mut events = pe_handle.events();

    // KA1: a keep-alive for another pool is silently discarded; the next
    // message the registrar sees is the ack of the one for our pool.
    let ka = |home, server_id, h: &'static str| AsapMessage::EndpointKeepAlive {
        home,
        server_id,
        pool_handle: PoolHandle::from_static(h),
        identifier: None,
    };
    reg.send(conn, ka(false, ServerId::new(5), "other"));
    reg.send(conn, ka(false, ServerId::new(5), "echo"));
    let ack = AsapMessage::EndpointKeepAliveAck {
        pool_handle: handle(),
        identifier: pe.identifier,
    };
    assert_eq!(reg.message().await, (conn, ack.clone()));
    // KA2.4: the H flag from another server identifier re-homes.
    reg.send(conn, ka(true, ServerId::new(77), "echo"));
    assert_eq!(reg.message().await, (conn, ack));
    assert_eq!(
        event(&mut events).await,
        PeEvent::Rehomed {
            registrar: reg.addr,
            server_id: ServerId::new(77)
        }
    );
    assert_eq!(pe_handle.status().home_server_id, Some(ServerId::new(77)));

    // A policy update re-registers at once, naming the new home.
    let update = tokio::spawn({
        let p = Policy::RoundRobin;
        async move {
            pe_handle.update_policy(p).await.expect("update");
            pe_handle
        }
    });
    let (_, _, again) = reg.accept_registration().await;
    let pe_handle = within(update).await.expect("task");
    assert_eq!(again.identifier, pe.identifier);
    assert_eq!(again.home_registrar, ServerId::new(77));

    let id = pe_handle.identifier();
    let shutdown = tokio::spawn(pe_handle.shutdown());
    let (c, m) = reg.message().await;
    assert_eq!(
        m,
        AsapMessage::Deregistration {
            pool_handle: handle(),
            identifier: id
        }
    );
    reg.send(
        c,
        AsapMessage::DeregistrationResponse {
            pool_handle: handle(),
            identifier: id,
            error: None,
        },
    );
    within(shutdown).await.expect("task").expect("deregistered");
    assert!(matches!(reg.next().await, Seen::Closed(_)));
}

#[tokio::test]
async fn a_refusal_is_a_typed_error() {
    let mut reg = FakeRegistrar::start().await;
    let start = tokio::spawn(PoolElement::start(insecure(vec![reg.endpoint()]), spec()));
    let (c, m) = reg.message().await;
    let AsapMessage::Registration { pool_element, .. } = m else {
        panic!("{m:?}")
    };
    reg.send(
        c,
        AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: handle(),
            identifier: pool_element.identifier,
            error: Some(OperationError::single(Cause::new(
                CauseCode::RejectedSecurity,
            ))),
        },
    );
    let err = within(start).await.expect("task").expect_err("refused");
    assert_eq!(
        err,
        ClientError::RegistrationRefused {
            registrar: reg.addr,
            identifier: pool_element.identifier,
            cause: CauseCode::RejectedSecurity,
            detail: None,
        }
    );
}

#[tokio::test]
async fn a_lost_registrar_is_replaced_and_the_identifier_kept() {
    let mut r1 = FakeRegistrar::start().await;
    let mut r2 = FakeRegistrar::start().await;
    let mut config = insecure(vec![r1.endpoint(), r2.endpoint()]);
    // The server hunt (the standby link has its own tests below).
    config.standby_link = false;
    let start = tokio::spawn(PoolElement::start(
        config,
        PoolElementSpec {
            identifier: Some(PeId::new(0x1234_5678)),
            ..spec()
        },
    ));
    let (c1, _, first) = r1.accept_registration().await;
    let pe = within(start).await.expect("task").expect("registered");
    assert_eq!(first.identifier, PeId::new(0x1234_5678));
    let mut events = pe.events();
    // The registrar closes the connection (idle timeout, restart...).
    r1.close(c1);
    assert_eq!(
        event(&mut events).await,
        PeEvent::RegistrarLost {
            registrar: r1.addr,
            reason: "connection closed by the registrar".into()
        }
    );
    // RFC 5352 3.6: a different registrar; the same identifier (3.1).
    let (_, _, second) = r2.accept_registration().await;
    assert_eq!(second.identifier, PeId::new(0x1234_5678));
    assert_eq!(
        event(&mut events).await,
        PeEvent::Registered {
            identifier: PeId::new(0x1234_5678),
            registrar: r2.addr,
            home_server_id: None
        }
    );
    assert_eq!(pe.status().registrar, Some(r2.addr));
    // Dropping the handle deregisters in the background.
    drop(pe);
    let (_, m) = r2.message().await;
    assert!(matches!(
        m,
        AsapMessage::Deregistration {
            identifier,
            ..
        } if identifier == PeId::new(0x1234_5678)
    ));
}

/// The standby link (docs/tcp-mapping.md): the PE names itself on a
/// connection to the second registrar; returns that connection.
async fn standby_claim(r2: &mut FakeRegistrar, id: PeId) -> u64 {
    let (c, m) = r2.message().await;
    assert_eq!(
        m,
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle(),
            identifier: id
        },
        "the PE names itself on its standby link"
    );
    c
}

#[tokio::test]
async fn a_lost_registrar_is_replaced_over_the_standby_link_without_a_hunt() {
    let mut r1 = FakeRegistrar::start().await;
    let mut r2 = FakeRegistrar::start().await;
    let start = tokio::spawn(PoolElement::start(
        insecure(vec![r1.endpoint(), r2.endpoint()]),
        spec(),
    ));
    let (c1, _, first) = r1.accept_registration().await;
    let pe = within(start).await.expect("task").expect("registered");
    let standby = standby_claim(&mut r2, first.identifier).await;
    let mut events = pe.events();
    r1.close(c1);
    assert!(matches!(
        event(&mut events).await,
        PeEvent::RegistrarLost { registrar, .. } if registrar == r1.addr
    ));
    // RFC 5352 3.6 without the hunt: the standby link is a connection
    // made already.
    let (c2, _, second) = r2.accept_registration().await;
    assert_eq!(c2, standby, "registered over the standby link");
    assert_eq!(second.identifier, first.identifier);
    assert_eq!(pe.status().registrar, Some(r2.addr));
}

#[tokio::test]
async fn a_registrar_that_took_the_home_over_calls_the_pe_home_over_its_standby_link() {
    let mut r1 = FakeRegistrar::start().await;
    let mut r2 = FakeRegistrar::start().await;
    let start = tokio::spawn(PoolElement::start(
        insecure(vec![r1.endpoint(), r2.endpoint()]),
        spec(),
    ));
    let (c1, _, first) = r1.accept_registration().await;
    let pe = within(start).await.expect("task").expect("registered");
    let standby = standby_claim(&mut r2, first.identifier).await;
    let mut events = pe.events();
    // r1 is frozen (it answers nothing); r2 took it over and sends the
    // H-flag keep-alive of RFC 5353 3.5.2 over the standby link.
    r2.send(
        standby,
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ServerId::new(0x2222),
            pool_handle: handle(),
            identifier: Some(first.identifier),
        },
    );
    // KA2: answered on the link it came over.
    assert_eq!(
        r2.message().await,
        (
            standby,
            AsapMessage::EndpointKeepAliveAck {
                pool_handle: handle(),
                identifier: first.identifier
            }
        )
    );
    assert_eq!(
        event(&mut events).await,
        PeEvent::Rehomed {
            registrar: r2.addr,
            server_id: ServerId::new(0x2222)
        }
    );
    // KA2.4: it registers with its new home, over that link, naming it.
    let (c2, _, again) = r2.accept_registration().await;
    assert_eq!(c2, standby);
    assert_eq!(again.home_registrar, ServerId::new(0x2222));
    // The old registrar connection is closed.
    loop {
        match r1.next().await {
            Seen::Closed(c) if c == c1 => break,
            Seen::Closed(_) | Seen::Accepted(_) => {}
            // A new standby link to r1 may come: it names the PE.
            Seen::Message(_, m) => assert!(
                matches!(m, AsapMessage::EndpointKeepAliveAck { .. }),
                "{m:?}"
            ),
        }
    }
    assert_eq!(pe.status().home_server_id, Some(ServerId::new(0x2222)));
}

#[tokio::test]
async fn a_registrar_that_does_not_answer_is_left_after_t2() {
    let mut silent = FakeRegistrar::start().await;
    let mut good = FakeRegistrar::start().await;
    let mut config = insecure(vec![silent.endpoint(), good.endpoint()]);
    config.timers = short_timers();
    let start = tokio::spawn(PoolElement::start(config, spec()));
    let (_, m) = silent.message().await;
    assert!(matches!(m, AsapMessage::Registration { .. }));
    // No answer within T2: RFC 5352 3.1, server hunt.
    good.accept_registration().await;
    let pe = within(start).await.expect("task").expect("registered");
    assert_eq!(pe.status().registrar, Some(good.addr));
    assert!(matches!(silent.next().await, Seen::Closed(_)));
}

#[tokio::test]
async fn t4_reregisters_before_the_lifetime_ends() {
    let mut reg = FakeRegistrar::start().await;
    let start = tokio::spawn(PoolElement::start(
        insecure(vec![reg.endpoint()]),
        PoolElementSpec {
            lifetime: Some(Duration::from_millis(400)),
            ..spec()
        },
    ));
    let (c, _, first) = reg.accept_registration().await;
    let pe = within(start).await.expect("task").expect("registered");
    assert_eq!(first.registration_life, 400);
    for _ in 0..2 {
        let (c2, _, again) = reg.accept_registration().await;
        assert_eq!((c2, again.identifier), (c, first.identifier));
    }
    assert!(pe.status().registered);
}

#[tokio::test]
async fn no_registrar_reachable_names_each_one() {
    let a = dead_address().await;
    let b = dead_address().await;
    let mut config = insecure(vec![
        rserpool::RegistrarEndpoint::new(a),
        rserpool::RegistrarEndpoint::new(b),
    ]);
    config.timers = short_timers();
    let err = within(PoolElement::start(config, spec()))
        .await
        .expect_err("nobody there");
    let ClientError::NoRegistrar(failures) = &err else {
        panic!("{err}")
    };
    let addrs: Vec<_> = failures.iter().map(|f| f.registrar).collect();
    assert_eq!(addrs, vec![a, b]);
    let text = err.to_string();
    assert!(
        text.contains(&a.to_string()) && text.contains(&b.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn an_unanswered_deregistration_times_out_after_t3() {
    let mut reg = FakeRegistrar::start().await;
    let mut config = insecure(vec![reg.endpoint()]);
    config.timers = short_timers();
    config.timers.t2_registration = Duration::from_secs(30);
    config.registration_lifetime = Duration::from_secs(60);
    let start = tokio::spawn(PoolElement::start(config, spec()));
    reg.accept_registration().await;
    let pe = within(start).await.expect("task").expect("registered");
    let shutdown = tokio::spawn(pe.shutdown());
    let (_, m) = reg.message().await;
    assert!(matches!(m, AsapMessage::Deregistration { .. }));
    let err = within(shutdown)
        .await
        .expect("task")
        .expect_err("no answer");
    assert!(
        matches!(&err, ClientError::Timeout { operation: "deregistration", registrars } if registrars == &[reg.addr]),
        "{err}"
    );
}

#[tokio::test]
async fn broken_messages_are_skipped_and_a_broken_stream_drops_the_registrar() {
    let mut r1 = FakeRegistrar::start().await;
    let mut r2 = FakeRegistrar::start().await;
    let mut config = insecure(vec![r1.endpoint(), r2.endpoint()]);
    config.standby_link = false;
    let start = tokio::spawn(PoolElement::start(config, spec()));
    let (c, _, pe) = r1.accept_registration().await;
    let pe_handle = within(start).await.expect("task").expect("registered");
    let mut events = pe_handle.events();
    // A registration without parameters: framed, but it does not decode.
    // It is answered as a registrar answers it (RFC 5354 3.12), and
    // skipped.
    r1.send_raw(c, &[0x01, 0, 0, 4]);
    r1.send(
        c,
        AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: ServerId::new(1),
            pool_handle: handle(),
            identifier: Some(pe.identifier),
        },
    );
    let (_, report) = r1.message().await;
    assert!(
        matches!(&report, AsapMessage::Error { error } if error.causes[0].code == CauseCode::InvalidValues),
        "{report:?}"
    );
    assert!(matches!(
        r1.message().await.1,
        AsapMessage::EndpointKeepAliveAck { .. }
    ));
    // A length below the header cannot be framed: the registrar is lost.
    r1.send_raw(c, &[0x07, 0, 0, 2]);
    let PeEvent::RegistrarLost { registrar, reason } = event(&mut events).await else {
        panic!("expected the registrar to be lost")
    };
    assert_eq!(registrar, r1.addr);
    assert!(
        reason.contains("shorter than the 4-byte header"),
        "{reason}"
    );
    let (_, _, again) = r2.accept_registration().await;
    assert_eq!(again.identifier, pe.identifier);
}

#[tokio::test]
async fn spawn_returns_at_once_reports_by_events_and_stops_when_refused() {
    let mut reg = FakeRegistrar::start().await;
    let (pe, mut events) =
        PoolElement::spawn(insecure(vec![reg.endpoint()]), spec()).expect("spawned");
    assert!(!pe.status().registered);
    let (c, m) = reg.message().await;
    let AsapMessage::Registration { pool_element, .. } = m else {
        panic!("{m:?}")
    };
    assert_eq!(pool_element.identifier, pe.identifier());
    reg.send(
        c,
        AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: handle(),
            identifier: pe.identifier(),
            error: Some(OperationError::single(Cause::new(
                CauseCode::RejectedSecurity,
            ))),
        },
    );
    assert_eq!(
        event(&mut events).await,
        PeEvent::RegistrationRefused {
            identifier: pe.identifier(),
            registrar: reg.addr,
            cause: CauseCode::RejectedSecurity,
            detail: None,
        }
    );
    within(pe.stopped()).await;
    assert_eq!(within(pe.shutdown()).await, Ok(()));
}

#[tokio::test]
async fn a_spawned_pe_shuts_down_before_any_registrar_answered() {
    let mut config = insecure(vec![rserpool::RegistrarEndpoint::new(dead_address().await)]);
    config.timers = short_timers();
    config.timers.max_reg_attempts = 1000;
    let (pe, _events) = PoolElement::spawn(config, spec()).expect("spawned");
    let stopped = pe.stopped();
    assert_eq!(within(pe.shutdown()).await, Ok(()));
    within(stopped).await;
}
