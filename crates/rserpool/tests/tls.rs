#![cfg(feature = "driver")]
//! Secure mode: registrar connections over TLS 1.3 (RFC 5355). A PE
//! authenticates its registrar with a PSK; a PU verifies the registrar's
//! certificate; a registrar that fails authentication is passed over for
//! the next one (RFC 5355 2.7).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use common::{short_timers, within, FakeRegistrar};
use rserpool::{ClientConfig, ClientError, PoolElement, PoolElementSpec, PoolUser};
use rserpool_security::pki::CertificateAuthority;
use rserpool_security::tls::CertificateFiles;
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{AsapMessage, Policy, PoolHandle};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn psk_server(keys: &[&Psk]) -> TlsServer {
    let mut s = PskStore::default();
    for k in keys {
        s.insert((*k).clone()).expect("unique");
    }
    TlsServer::new(&TlsServerConfig {
        psks: Some(Arc::new(s)),
        ..Default::default()
    })
    .expect("server")
}

#[tokio::test]
async fn a_pe_registers_over_tls_psk_and_skips_a_registrar_that_does_not_know_it() {
    let key = Psk::generate("pe-echo-1").expect("key");
    let other = Psk::generate("someone-else").expect("key");
    // Written and read back, as a PE deployment does.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pe.key");
    key.write_new(&path).expect("write");
    let read = Psk::read_file(&path).expect("read");
    let tls = TlsClient::new(&TlsClientConfig {
        psk: read.into_iter().next(),
        ..Default::default()
    })
    .expect("client");

    let stranger = FakeRegistrar::start_tls(psk_server(&[&other])).await;
    let mut genuine = FakeRegistrar::start_tls(psk_server(&[&key])).await;
    let mut config = ClientConfig::new(vec![stranger.endpoint(), genuine.endpoint()], Some(tls));
    config.timers = short_timers();
    config.timers.t2_registration = std::time::Duration::from_secs(30);
    let start = tokio::spawn(PoolElement::start(
        config,
        PoolElementSpec::new(PoolHandle::from_static("echo"), Policy::RoundRobin, 7),
    ));
    let (_, _, pe) = genuine.accept_registration().await;
    assert_eq!(pe.user_transport.addresses(), &[LOCALHOST]);
    let handle = within(start).await.expect("task").expect("registered");
    assert_eq!(handle.status().registrar, Some(genuine.addr));
    let shutdown = tokio::spawn(handle.shutdown());
    let (c, m) = genuine.message().await;
    let AsapMessage::Deregistration {
        pool_handle,
        identifier,
    } = m
    else {
        panic!("{m:?}")
    };
    genuine.send(
        c,
        AsapMessage::DeregistrationResponse {
            pool_handle,
            identifier,
            error: None,
        },
    );
    within(shutdown).await.expect("task").expect("deregistered");
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    registrar: CertificateFiles,
    rogue: CertificateFiles,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = CertificateAuthority::generate("test CA", 1).expect("ca");
    ca.issued().write_files(d, "ca").expect("write");
    let registrar = ca
        .issue("registrar-1", &["registrar.test"], &[LOCALHOST], 1)
        .expect("issue")
        .write_files(d, "registrar")
        .expect("write");
    let other = CertificateAuthority::generate("rogue CA", 1).expect("ca");
    let rogue = other
        .issue("registrar-1", &["registrar.test"], &[LOCALHOST], 1)
        .expect("issue")
        .write_files(d, "rogue")
        .expect("write");
    Pki {
        ca: d.join("ca.pem"),
        registrar,
        rogue,
        _dir: dir,
    }
}

fn cert_server(c: &CertificateFiles) -> TlsServer {
    TlsServer::new(&TlsServerConfig {
        certificate: Some(c.clone()),
        ..Default::default()
    })
    .expect("server")
}

#[tokio::test]
async fn a_pu_passes_over_a_registrar_whose_certificate_does_not_verify() {
    let p = pki();
    let tls = TlsClient::new(&TlsClientConfig {
        ca: Some(p.ca.clone()),
        ..Default::default()
    })
    .expect("client");
    let rogue = FakeRegistrar::start_tls(cert_server(&p.rogue)).await;
    let mut genuine = FakeRegistrar::start_tls(cert_server(&p.registrar)).await;
    let h = PoolHandle::from_static("echo");

    // Only the rogue one: the failure says why.
    let mut config = ClientConfig::new(vec![rogue.endpoint()], Some(tls.clone()));
    config.timers = short_timers();
    let pu = PoolUser::new(config).expect("pool user");
    let err = within(pu.resolve(&h)).await.expect_err("rogue refused");
    let ClientError::NoRegistrar(f) = &err else {
        panic!("{err}")
    };
    assert!(f[0].reason.contains("certificate verify failed"), "{err}");

    // Rogue first, then the genuine one (verified by its DNS name).
    let mut second = genuine.endpoint();
    second.server_name = "registrar.test".into();
    let mut config = ClientConfig::new(vec![rogue.endpoint(), second], Some(tls));
    config.timers = short_timers();
    let pu = PoolUser::new(config).expect("pool user");
    let q = tokio::spawn({
        let (pu, h) = (pu.clone(), h.clone());
        async move { pu.resolve(&h).await }
    });
    let (c, m) = genuine.message().await;
    assert!(matches!(m, AsapMessage::HandleResolution { .. }));
    genuine.send(
        c,
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: h.clone(),
            policy: None,
            pool_elements: Vec::new(),
            error: None,
        },
    );
    assert_eq!(within(q).await.expect("task").expect("resolved"), vec![]);
}
