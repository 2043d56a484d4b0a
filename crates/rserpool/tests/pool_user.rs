#![cfg(feature = "driver")]
//! The pool user API against a scripted registrar over loopback TCP:
//! resolution and caching, unknown handles, T1 retransmission and
//! failover, selection and unreachable reports.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{dead_address, insecure, short_timers, within, FakeRegistrar, Seen};
use rserpool::{ClientError, PoolUser, RegistrarEndpoint, ReportOutcome};
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, OperationError, PeId, Policy, PoolElement, PoolHandle, ServerId,
    Transport, TransportUse,
};

fn pe(id: u32) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::new(1),
        registration_life: 30_000,
        user_transport: Transport::Tcp {
            port: 7000 + id as u16,
            transport_use: TransportUse::DataOnly,
            address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn answer(h: &PoolHandle, ids: &[u32]) -> AsapMessage {
    AsapMessage::HandleResolutionResponse {
        accept_updates: false,
        pool_handle: h.clone(),
        policy: None,
        pool_elements: ids.iter().map(|&i| pe(i)).collect(),
        error: None,
    }
}

/// The next handle resolution the registrar sees.
async fn resolution(reg: &mut FakeRegistrar) -> (u64, PoolHandle) {
    let (c, m) = reg.message().await;
    match m {
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle,
            ..
        } => (c, pool_handle),
        other => panic!("expected a handle resolution, got {other:?}"),
    }
}

#[tokio::test]
async fn resolves_and_serves_fresh_answers_from_the_cache() {
    let mut reg = FakeRegistrar::start().await;
    let mut config = insecure(vec![reg.endpoint()]);
    config.pool_user.stale_timeout = Duration::from_secs(60);
    let pu = PoolUser::new(config).expect("pool user");
    let a = PoolHandle::from_static("a");
    let b = PoolHandle::from_static("b");

    let q = tokio::spawn({
        let (pu, a) = (pu.clone(), a.clone());
        async move { pu.resolve(&a).await }
    });
    let (c, h) = resolution(&mut reg).await;
    assert_eq!(h, a);
    reg.send(c, answer(&a, &[1, 2]));
    let got = within(q).await.expect("task").expect("resolved");
    assert_eq!(got, vec![pe(1), pe(2)]);

    // From the cache: no request. The next one on the wire is for b.
    assert_eq!(
        within(pu.resolve(&a)).await.expect("cached"),
        vec![pe(1), pe(2)]
    );
    let q = tokio::spawn({
        let (pu, b) = (pu.clone(), b.clone());
        async move { pu.resolve(&b).await }
    });
    let (c, h) = resolution(&mut reg).await;
    assert_eq!(h, b);
    reg.send(
        c,
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: b.clone(),
            policy: None,
            pool_elements: Vec::new(),
            error: Some(OperationError::single(Cause::new(
                CauseCode::UnknownPoolHandle,
            ))),
        },
    );
    assert_eq!(
        within(q).await.expect("task"),
        Err(ClientError::UnknownPoolHandle(b))
    );

    // Purged: asked again.
    pu.purge(&a).await.expect("purge");
    let q = tokio::spawn({
        let (pu, a) = (pu.clone(), a.clone());
        async move { pu.resolve(&a).await }
    });
    let (c, _) = resolution(&mut reg).await;
    reg.send(c, answer(&a, &[3]));
    assert_eq!(
        within(q).await.expect("task").expect("resolved"),
        vec![pe(3)]
    );
}

#[tokio::test]
async fn t1_retransmits_then_another_registrar_answers() {
    let mut silent = FakeRegistrar::start().await;
    let mut good = FakeRegistrar::start().await;
    let mut config = insecure(vec![silent.endpoint(), good.endpoint()]);
    config.timers = short_timers();
    let pu = PoolUser::new(config).expect("pool user");
    let h = PoolHandle::from_static("echo");
    let q = tokio::spawn({
        let (pu, h) = (pu.clone(), h.clone());
        async move { pu.resolve(&h).await }
    });
    // The first transmission and MAX-REQUEST-RETRANSMIT (2) re-sends.
    for _ in 0..3 {
        assert_eq!(resolution(&mut silent).await.1, h);
    }
    assert!(matches!(silent.next().await, Seen::Closed(_)));
    let (c, _) = resolution(&mut good).await;
    good.send(c, answer(&h, &[9]));
    assert_eq!(
        within(q).await.expect("task").expect("resolved"),
        vec![pe(9)]
    );
}

#[tokio::test]
async fn select_skips_reported_pes_and_reports_once() {
    let mut reg = FakeRegistrar::start().await;
    let mut config = insecure(vec![reg.endpoint()]);
    config.pool_user.stale_timeout = Duration::from_secs(60);
    config.reports.per_pe_interval = Duration::from_secs(60);
    let pu = PoolUser::new(config).expect("pool user");
    let h = PoolHandle::from_static("echo");
    let q = tokio::spawn({
        let (pu, h) = (pu.clone(), h.clone());
        async move { pu.select(&h).await }
    });
    let (c, _) = resolution(&mut reg).await;
    reg.send(c, answer(&h, &[1, 2]));
    let first = within(q).await.expect("task").expect("selected");
    assert_eq!(first.identifier, PeId::new(1));

    assert_eq!(
        pu.report_unreachable(&h, PeId::new(1))
            .await
            .expect("report"),
        ReportOutcome::Reported
    );
    assert_eq!(
        reg.message().await.1,
        AsapMessage::EndpointUnreachable {
            pool_handle: h.clone(),
            identifier: PeId::new(1)
        }
    );
    assert_eq!(
        pu.report_unreachable(&h, PeId::new(1))
            .await
            .expect("report"),
        ReportOutcome::AlreadyReported
    );
    assert_eq!(
        pu.report_unreachable(&h, PeId::new(77))
            .await
            .expect("report"),
        ReportOutcome::NotResolved
    );
    // The report invalidated the cache: the next message on the wire is a
    // new resolution (no second report); the registrar still lists PE 1.
    let q = tokio::spawn({
        let (pu, h) = (pu.clone(), h.clone());
        async move { pu.select(&h).await }
    });
    let (c, _) = resolution(&mut reg).await;
    reg.send(c, answer(&h, &[1, 2]));
    let next = within(q).await.expect("task").expect("selected");
    assert_eq!(next.identifier, PeId::new(2));
}

#[tokio::test]
async fn no_registrar_is_a_typed_error_naming_them() {
    let a = dead_address().await;
    let mut config = insecure(vec![RegistrarEndpoint::new(a)]);
    config.timers = short_timers();
    let pu = PoolUser::new(config).expect("pool user");
    let h = PoolHandle::from_static("echo");
    let err = within(pu.resolve(&h)).await.expect_err("nobody there");
    let ClientError::NoRegistrar(failures) = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].registrar, a);
    assert!(failures[0].reason.contains("TCP connect failed"), "{err}");
    // The next request tries again at once (no T5 back-off for a PU).
    let err = within(pu.resolve(&h)).await.expect_err("still nobody");
    assert!(matches!(err, ClientError::NoRegistrar(_)));
}

#[tokio::test]
async fn a_closed_idle_connection_is_replaced_when_needed() {
    let mut reg = FakeRegistrar::start().await;
    let mut config = insecure(vec![reg.endpoint()]);
    // Never fresh: every resolution asks the registrar.
    config.pool_user.stale_timeout = Duration::ZERO;
    let pu = PoolUser::new(config).expect("pool user");
    let h = PoolHandle::from_static("echo");
    let q = tokio::spawn({
        let (pu, h) = (pu.clone(), h.clone());
        async move { pu.resolve(&h).await }
    });
    let (c1, _) = resolution(&mut reg).await;
    reg.send(c1, answer(&h, &[1]));
    within(q).await.expect("task").expect("resolved");
    // The registrar's idle timeout.
    reg.close(c1);
    assert!(matches!(reg.next().await, Seen::Closed(_)));
    let q = tokio::spawn({
        let (pu, h) = (pu.clone(), h.clone());
        async move { pu.resolve(&h).await }
    });
    let (c2, _) = resolution(&mut reg).await;
    assert_ne!(c1, c2);
    reg.send(c2, answer(&h, &[2]));
    assert_eq!(
        within(q).await.expect("task").expect("resolved"),
        vec![pe(2)]
    );
}
