//! RFC 5355 2.4: registrations and deregistrations that their sender is
//! not authorised for: re-registering or deregistering a PE another
//! identity registered (hijacking it), and joining a pool the sender may
//! not join. Mechanism: a PE identifier belongs to the identity that
//! registered it (identity binding); the authorised peer database
//! decides every registration. Both refusals are "rejected due to
//! security considerations" and change nothing.

use rserpool::{ClientError, PoolElement};
use rserpool_registrar::{CoreConfig, Event, ServiceConfig};
use rserpool_wire::{AsapMessage, CauseCode, PeId};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_identity_cannot_reregister_or_deregister_a_pe_it_does_not_own() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pe_a = library_pe(&lab, "pe-a", PE_A).await;
    let mut events = lab.registrar.events();
    let mut pe_b = lab.client("pe-b").await;
    // A re-registration of PE_A moving it to pe-b's port.
    assert_eq!(
        pe_b.register(HANDLE, pe(PE_A, "127.0.0.1", 9999)).await,
        Some(CauseCode::RejectedSecurity)
    );
    let ev = wait_event(&mut events, |e| matches!(e, Event::Refused { .. })).await;
    let Event::Refused {
        identity, detail, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(identity, "psk:pe-b");
    assert!(detail.contains("another identity"), "{detail}");
    // A deregistration of PE_A.
    match pe_b
        .request(&AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: PeId::new(PE_A),
        })
        .await
    {
        AsapMessage::DeregistrationResponse { error: Some(e), .. } => {
            assert_eq!(e.causes[0].code, CauseCode::RejectedSecurity)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The client library with the same identifier, as pe-b.
    let err = within(PoolElement::start(
        lab_config(&lab, "pe-b"),
        spec(HANDLE, PE_A, 9999),
    ))
    .await
    .expect_err("refused");
    assert!(
        matches!(
            err,
            ClientError::RegistrationRefused {
                cause: CauseCode::RejectedSecurity,
                ..
            }
        ),
        "{err}"
    );
    // PE_A is unchanged (its port) and still pe-a's: it deregisters.
    let port = lab
        .registrar
        .query(|c| {
            c.handlespace()
                .find(&pool_handle(HANDLE), PeId::new(PE_A))
                .map(|e| e.user_transport.port())
        })
        .await
        .flatten();
    assert_eq!(port, Some(7));
    assert!(pe_a.status().registered);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
    within(pe_a.shutdown())
        .await
        .expect("its owner deregisters it");
    assert_eq!(lab.pe_count().await, 0);
}

/// pe-a may serve `echo`, pe-b only `other`; pu-1 is a pool user.
const POOLS_APD: &str = r#"
[[entry]]
name = "echo-pes"
action = "allow"
namespace = "psk"
identity = "pe-a"
roles = ["pe"]
pools = ["echo"]

[[entry]]
name = "other-pes"
action = "allow"
namespace = "psk"
identity = "pe-b"
roles = ["pe"]
pools = ["other"]

[[entry]]
name = "pool-users"
action = "allow"
namespace = "psk"
identity = "pu-*"
roles = ["pu"]

[[entry]]
name = "deny-everyone-else"
action = "deny"
namespace = "any"
identity = "*"
roles = ["pe", "pu", "registrar", "admin"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_joining_a_pool_it_is_not_authorised_for_is_rejected_for_security() {
    let lab = Lab::with_service(ServiceConfig {
        apd: apd(POOLS_APD),
        ..ServiceConfig::default()
    })
    .await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut events = lab.registrar.events();
    let mut pe_b = lab.client("pe-b").await;
    assert_eq!(
        pe_b.register(HANDLE, pe(2, "127.0.0.1", 7)).await,
        Some(CauseCode::RejectedSecurity)
    );
    let ev = wait_event(&mut events, |e| matches!(e, Event::Refused { .. })).await;
    let Event::Refused { detail, .. } = ev else {
        unreachable!()
    };
    assert!(detail.contains("may not register in pool echo"), "{detail}");
    assert!(detail.contains("deny-everyone-else"), "{detail}");
    // Its own pool is fine.
    assert_eq!(pe_b.register("other", pe(3, "127.0.0.1", 7)).await, None);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
    assert!(lab.stats().await.refused_unauthorised >= 1);
}
