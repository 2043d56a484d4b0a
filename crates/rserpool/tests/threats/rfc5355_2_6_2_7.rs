//! RFC 5355 2.6 and 2.7: a PE registers with, or a PU resolves at, a
//! rogue registrar, which would swallow the registration or hand out
//! false PEs. Mechanism: the registrar authenticates itself: to a PE by
//! the PSK (a rogue that knows the identity names but not the keys fails
//! the handshake), to a PU by a certificate of the operator's CA; a
//! registrar that fails is passed over for the next one in the list.

use std::net::{IpAddr, Ipv4Addr};

use rserpool::PoolElement;
use rserpool_registrar::{CoreConfig, ServiceConfig};
use rserpool_security::pki::CertificateAuthority;
use rserpool_security::{Psk, PskStore, TlsServer, TlsServerConfig};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;
const FORGED: u32 = 0x0bad_0bad;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_refuses_a_rogue_registrar_without_its_key_and_registers_with_the_next() {
    let lab = Lab::start(CoreConfig::default()).await;
    let rogue = rogue_psk_registrar().await;
    // The rogue registrar is listed first.
    let config = config(
        vec![rogue.local_addrs()[0], lab.addr],
        Some(psk_client(&lab.key("pe-a"))),
    );
    let pe_a = within(PoolElement::start(config, spec(HANDLE, PE_A, 7)))
        .await
        .expect("registered with the genuine registrar");
    assert_eq!(pe_a.status().registrar, Some(lab.addr));
    assert_eq!(pes_of(&rogue).await, 0, "the rogue learnt nothing");
    wait_until("the rogue counts the failed handshake", || async {
        rogue.service_stats().tls_handshake_failures >= 1
    })
    .await;
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    // A pool user with a key passes over the rogue too.
    let pu = config_for(&lab, "pu-1", &rogue);
    assert_eq!(resolve_with(pu, HANDLE).await, vec![PE_A]);
}

fn config_for(
    lab: &Lab,
    identity: &str,
    rogue: &rserpool_registrar::Registrar,
) -> rserpool::ClientConfig {
    config(
        vec![rogue.local_addrs()[0], lab.addr],
        Some(psk_client(&lab.key(identity))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pu_refuses_a_rogue_registrar_with_a_certificate_of_another_ca_and_resolves_at_the_next()
{
    let lab = Lab::with_certificate(ServiceConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // The rogue: a real registrar with a certificate for the same address
    // from a CA of its own, holding a forged PE of the attacker's.
    let dir = tempfile::tempdir().expect("tempdir");
    let rogue_ca = CertificateAuthority::generate("lab CA", 1).expect("ca");
    let cert = rogue_ca
        .issue("registrar", &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], 1)
        .expect("issue")
        .write_files(dir.path(), "rogue")
        .expect("write");
    let attacker = Psk::generate("pe-a").expect("key");
    let mut store = PskStore::default();
    store.insert(attacker.clone()).expect("unique");
    let rogue = registrar_with(
        Some(
            TlsServer::new(&TlsServerConfig {
                psks: Some(std::sync::Arc::new(store)),
                certificate: Some(cert),
                ..TlsServerConfig::default()
            })
            .expect("TLS server"),
        ),
        ServiceConfig::default(),
    )
    .await;
    let mut forger = Client::psk(rogue.local_addrs()[0], attacker)
        .await
        .expect("the attacker's own registrar");
    assert_eq!(
        forger.register(HANDLE, pe(FORGED, "127.0.0.1", 7)).await,
        None
    );

    let ca = &lab.ca.as_ref().expect("certificate lab").1;
    // Only the rogue: refused, and the failure says why.
    let pu = rserpool::PoolUser::new(config(vec![rogue.local_addrs()[0]], Some(ca_client(ca))))
        .expect("pool user");
    let err = within(pu.resolve(&pool_handle(HANDLE)))
        .await
        .expect_err("the rogue is refused");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
    // The rogue first, then the genuine one: the genuine PE, never the
    // forged one.
    let both = config(vec![rogue.local_addrs()[0], lab.addr], Some(ca_client(ca)));
    assert_eq!(resolve_with(both, HANDLE).await, vec![PE_A]);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
}
