//! RFC 5355 2.15: a handlespace that mixes secured and unsecured
//! registrations. Mechanism: a registrar is secure (TLS on every
//! listener, every PE authenticated) or insecure (labs), never both; a
//! secure client never uses an insecure registrar; an authorisation
//! database (which names proved identities) needs secure mode.

use rserpool::{ClientConfig, ClientError, PoolElement, RegistrarEndpoint};
use rserpool_registrar::{CoreConfig, Registrar, ServiceConfig};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_clients_of_the_library_get_nothing_from_a_secure_registrar() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let pu = rserpool::PoolUser::new(plain_config(lab.addr)).expect("pool user");
    let err = within(pu.resolve(&pool_handle(HANDLE)))
        .await
        .expect_err("an insecure PU is not answered");
    assert!(
        matches!(
            err,
            ClientError::NoRegistrar(_) | ClientError::Timeout { .. }
        ),
        "{err}"
    );
    // An insecure PE: nothing registered (whether it gives up is the
    // next test).
    let (pe, _) = PoolElement::spawn(plain_config(lab.addr), spec(HANDLE, 2, 7)).expect("spawn");
    wait_until("the insecure PE was refused", || async {
        lab.registrar.service_stats().tls_handshake_failures >= 2
    })
    .await;
    drop(pe);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(lab.stats().await.registrations, 1);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

/// An insecure client configuration for the registrar at `addr` that
/// gives up after one failed attempt.
fn plain_config(addr: std::net::SocketAddr) -> ClientConfig {
    let mut plain = ClientConfig::insecure(vec![RegistrarEndpoint::new(addr)]);
    plain.timers = timers();
    plain.timers.max_reg_attempts = 1;
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_pe_at_a_secure_registrar_gives_up_instead_of_reconnecting_without_pause() {
    let lab = Lab::start(CoreConfig::default()).await;
    let err = within(PoolElement::start(
        plain_config(lab.addr),
        spec(HANDLE, 2, 7),
    ))
    .await
    .expect_err("the insecure PE gives up (MAX-REG-ATTEMPT = 1)");
    assert!(
        matches!(
            err,
            ClientError::NoRegistrar(_) | ClientError::Timeout { .. }
        ),
        "{err}"
    );
    let attempts = lab.registrar.service_stats().tls_handshake_failures;
    assert!(attempts <= 10, "{attempts} connections for one attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_pe_never_registers_with_an_insecure_registrar() {
    let plain = registrar_with(None, ServiceConfig::default()).await;
    let lab = Lab::start(CoreConfig::default()).await;
    let mut c = config(
        vec![plain.local_addrs()[0], lab.addr],
        Some(psk_client(&lab.key("pe-a"))),
    );
    c.timers.max_reg_attempts = 1;
    let pe = within(PoolElement::start(c, spec(HANDLE, PE_A, 7)))
        .await
        .expect("registered with the secure one");
    assert_eq!(pe.status().registrar, Some(lab.addr));
    assert_eq!(
        pes_of(&plain).await,
        0,
        "nothing in the insecure handlespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_registrar_refuses_to_start_with_an_authorisation_database() {
    let strict = apd(r#"
[[entry]]
name = "pes"
action = "allow"
namespace = "psk"
identity = "pe-*"
roles = ["pe"]
"#);
    let r = Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().expect("address")],
        tls: None,
        apd: strict,
        ..ServiceConfig::default()
    })
    .await;
    let err = r.expect_err("refused");
    assert!(err.to_string().contains("secure"), "{err}");
}
