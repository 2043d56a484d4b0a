//! RFC 5355 2.3: a PE registers on behalf of others (spoofing): another
//! host's address, to send PUs there (DDoS, masquerade). Mechanism: the
//! own-address rule: every transport address a PE registers must be the
//! source address of its connection (the authorised peer database can
//! grant more, see 2.17).

use rserpool::{ClientError, PoolElement};
use rserpool_registrar::CoreConfig;
use rserpool_wire::CauseCode;

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_registering_someone_elses_address_is_rejected_for_security() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // A raw attacker with a key of its own, connected from 127.0.0.1:
    // a documentation address, and another loopback host.
    let mut pe_b = lab.client("pe-b").await;
    for victim in ["192.0.2.1", "127.0.0.5"] {
        assert_eq!(
            pe_b.register(HANDLE, pe(2, victim, 80)).await,
            Some(CauseCode::RejectedSecurity),
            "{victim}"
        );
    }
    // The client library told to announce a foreign address.
    let mut s = spec(HANDLE, 3, 80);
    s.address = Some("192.0.2.1".parse().expect("address"));
    let err = within(PoolElement::start(lab_config(&lab, "pe-b"), s))
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
    // Registered from 127.0.0.5 itself, that address is its own.
    let mut from_5 = lab
        .client_from("pe-b", loopback(5))
        .await
        .expect("handshake");
    assert_eq!(from_5.register(HANDLE, pe(4, "127.0.0.5", 80)).await, None);

    assert_eq!(lab.pool_ids(HANDLE).await, vec![4, PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![4, PE_A]);
}
