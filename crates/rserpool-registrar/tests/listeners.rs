//! Listeners with options (DESIGN section 4, after PIM's passive mode): a
//! listener for pool users only serves resolutions and unreachable
//! reports and refuses registrations and deregistrations; a listener's
//! source filter closes connections from other addresses before any TLS,
//! and counts them.

mod support;

use rserpool_registrar::{ListenerConfig, ServiceConfig};
use rserpool_wire::{AsapMessage, CauseCode};
use support::*;
use tokio::io::AsyncReadExt;

const HANDLE: &str = "echo";

/// A registrar with a plain listener, a pool-user listener for 127.0.0.0/8
/// and a listener for 10.0.0.0/8 only; their addresses.
async fn lab() -> (Lab, std::net::SocketAddr, std::net::SocketAddr) {
    let lab = Lab::with_service(ServiceConfig {
        listeners: vec![
            ListenerConfig {
                address: "127.0.0.1:0".parse().unwrap(),
                pool_users_only: true,
                allow: vec!["127.0.0.0/8".parse().unwrap()],
            },
            ListenerConfig {
                address: "127.0.0.1:0".parse().unwrap(),
                pool_users_only: false,
                allow: vec!["10.0.0.0/8".parse().unwrap()],
            },
        ],
        ..ServiceConfig::default()
    })
    .await;
    let pu_only = lab.registrar.pool_user_addrs()[0];
    let elsewhere = lab.registrar.local_addrs()[1];
    (lab, pu_only, elsewhere)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_user_listener_serves_resolutions_and_refuses_registrations() {
    let (lab, pu_only, _) = lab().await;
    let mut pe = lab.client("pe-a").await;
    assert_eq!(
        pe.register(HANDLE, support::pe(1, "127.0.0.1", 7)).await,
        None
    );

    // A PE key on the pool-user listener: its registration is refused,
    // and so is a deregistration of the registered PE.
    let mut there = lab
        .client_at(pu_only, "pe-a", loopback(1))
        .await
        .expect("handshake");
    assert_eq!(
        there.register(HANDLE, support::pe(2, "127.0.0.1", 8)).await,
        Some(CauseCode::RejectedSecurity)
    );
    let resp = there
        .request(&AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: rserpool_wire::PeId::new(1),
        })
        .await;
    assert!(
        matches!(
            resp,
            AsapMessage::DeregistrationResponse { error: Some(_), .. }
        ),
        "{resp:?}"
    );
    // Nothing false created, nothing true removed; resolutions served.
    assert_eq!(lab.pool_ids(HANDLE).await, vec![1]);
    let mut pu = lab
        .client_at(pu_only, "pu-1", loopback(1))
        .await
        .expect("handshake");
    assert_eq!(pu.resolve(HANDLE).await, Ok(vec![1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_closes_connections_from_sources_it_does_not_serve() {
    let (lab, _, elsewhere) = lab().await;
    // 127.0.0.1 is not in 10.0.0.0/8: closed before any TLS byte.
    let mut tcp = tcp_from(elsewhere, loopback(1)).await.expect("connect");
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut b))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the listener answered");
    wait_until("the refusal is counted", || async {
        lab.registrar
            .handle()
            .service_stats()
            .connections_refused_source
            == 1
    })
    .await;
    // The plain listener serves the same source.
    let mut pu = lab.client("pu-1").await;
    assert_eq!(pu.resolve(HANDLE).await, Err(CauseCode::UnknownPoolHandle));
}
