#![cfg(feature = "driver")]
//! PU-PE sessions (RFC 5351 section 3, RFC 5352 3.8 and 3.9) against a
//! real registrar on loopback, over TLS: data flows, a session fails
//! over when its PE dies and the next PE continues from the echoed
//! cookie, the next PE is the one the business card named, and plain
//! TCP needs the insecure configuration. The attacks on sessions (RFC
//! 5355 2.9 and 2.16) are in the threat suite.

/// The scripted registrar and timers of the client tests.
#[path = "../common/mod.rs"]
mod client_support;
/// The threat suite's helpers (lab configurations, TLS servers).
#[path = "../threats/common.rs"]
mod common;
/// The registrar's test lab.
#[path = "../../../rserpool-registrar/tests/support/mod.rs"]
mod support;

mod session_lab;

use rserpool::session::{SecurityLevel, Session, SessionConfig, SessionError, SessionEvent};
use rserpool::PoolUser;
use rserpool_registrar::CoreConfig;
use rserpool_security::Psk;

use common::*;
use session_lab::*;

const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_fails_over_and_the_next_pe_continues_from_the_cookie() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    let mut s = session(&lab, "pu-1").await;
    let first = s.peer().pe.identifier.get();
    assert_eq!(first, A, "A is the only PE yet");
    assert_eq!(s.peer().security, SecurityLevel::MutuallyAuthenticated);
    let b = CountingPe::start(
        lab_config(&lab, "pe-b"),
        HANDLE,
        B,
        serving(&lab, &pool_key),
    )
    .await;
    for n in 1..=3 {
        assert_eq!(ask(&mut s, &format!("m{n}")).await, format!("{A}:{n}:m{n}"));
    }
    assert!(s.cookie().is_some(), "A sent its cookie");

    a.kill().await;
    let f = failed_over(&mut s).await;
    assert_eq!((f.from.get(), f.to.pe.identifier.get()), (A, B));
    assert!(f.cookie_echoed);
    assert_eq!(f.to.security, SecurityLevel::MutuallyAuthenticated);
    assert_eq!(s.failovers(), 1);
    // B continues the count A kept.
    assert_eq!(ask(&mut s, "m4").await, format!("{B}:4:m4"));
    assert_eq!(
        b.seen(),
        vec![
            Seen::Established(SecurityLevel::MutuallyAuthenticated),
            Seen::Resumed(3),
            Seen::Counted(4)
        ]
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_pe_is_the_one_the_business_card_names() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    let mut s1 = session(&lab, "pu-1").await;
    let mut s2 = session(&lab, "pu-2").await;
    let _b = CountingPe::start(
        lab_config(&lab, "pe-b"),
        HANDLE,
        B,
        serving(&lab, &pool_key),
    )
    .await;
    let _c = CountingPe::start(
        lab_config(&lab, "pe-b"),
        HANDLE,
        C,
        serving(&lab, &pool_key),
    )
    .await;
    // Opposite orders: the pool's policy cannot satisfy both.
    for (s, card) in [
        (&mut s1, format!("card:{C},{B}")),
        (&mut s2, format!("card:{B},{C}")),
    ] {
        within(s.send(7, card.as_bytes())).await.expect("sent");
        match within(s.recv()).await.expect("an event") {
            SessionEvent::BusinessCard { order, .. } => {
                assert_eq!(order.len(), 2, "{order:?}")
            }
            other => panic!("expected a business card, got {other:?}"),
        }
    }
    a.kill().await;
    assert_eq!(failed_over(&mut s1).await.to.pe.identifier.get(), C);
    assert_eq!(failed_over(&mut s2).await.to.pe.identifier.get(), B);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sessions_need_the_insecure_configuration() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _a = CountingPe::start(lab_config(&lab, "pe-a"), HANDLE, A, Serving::default()).await;
    let mut refused = SessionConfig::insecure();
    refused.min_security = SecurityLevel::ServerAuthenticated;
    let user = PoolUser::new(lab_config(&lab, "pu-1")).expect("pool user");
    let err = within(Session::open(user, pool_handle(HANDLE), refused))
        .await
        .expect_err("no TLS, but a secure floor");
    assert!(matches!(err, SessionError::Usage(_)), "{err}");

    let user = PoolUser::new(lab_config(&lab, "pu-1")).expect("pool user");
    let mut s = within(Session::open(
        user,
        pool_handle(HANDLE),
        SessionConfig::insecure(),
    ))
    .await
    .expect("an insecure session");
    assert_eq!(s.peer().security, SecurityLevel::Plain);
    assert!(s.peer().identity.is_none());
    assert_eq!(ask(&mut s, "hi").await, format!("{A}:1:hi"));
    // A PE without the cookie key sends none.
    assert!(s.cookie().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_with_no_live_pe_left_says_which_were_tried() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    let mut s = session(&lab, "pu-1").await;
    assert_eq!(ask(&mut s, "m1").await, format!("{A}:1:m1"));
    a.kill().await;
    match within(s.recv()).await {
        Err(SessionError::NoPoolElement { tried, .. }) => {
            assert!(tried.iter().all(|t| t.pe.get() == A), "{tried:?}")
        }
        // The registrar may already have dropped A: no PE at all.
        Err(SessionError::Client(_)) => {}
        other => panic!("expected no PE, got {other:?}"),
    }
}
