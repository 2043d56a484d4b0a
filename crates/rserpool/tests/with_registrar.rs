#![cfg(feature = "driver")]
//! The client library against the real registrar (tasks on loopback,
//! TLS): a PE registers and stays registered by answering keep-alives, a
//! PU resolves and selects it, three PUs' reports only make the registrar
//! check it (it answers, so it stays: RFC 5355 2.13), and a PU
//! that meets a registrar with a rogue certificate moves to the next one
//! (RFC 5355 2.7).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rserpool::{ClientConfig, PoolElement, PoolElementSpec, PoolUser, RegistrarEndpoint};
use rserpool_registrar::{CoreConfig, Event, Registrar, ServiceConfig};
use rserpool_security::pki::CertificateAuthority;
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{Policy, PoolHandle};

const LIMIT: Duration = Duration::from_secs(10);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn registrar(tls: TlsServerConfig, core: CoreConfig) -> Registrar {
    Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(Arc::new(TlsServer::new(&tls).expect("tls"))),
        core,
        ..ServiceConfig::default()
    })
    .await
    .expect("registrar")
}

fn psk_client(r: &Registrar, psk: &Psk) -> ClientConfig {
    let tls = TlsClient::new(&TlsClientConfig {
        psk: Some(psk.clone()),
        ..TlsClientConfig::default()
    })
    .expect("tls");
    ClientConfig::new(vec![RegistrarEndpoint::new(r.local_addrs()[0])], Some(tls))
}

/// The first event after reports: a removal or a refutation.
async fn wait_outcome(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(e @ (Event::Removed { .. } | Event::ReportsRefuted { .. })) = rx.recv().await
            {
                return e;
            }
        }
    })
    .await
    .expect("an outcome within the limit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pe_stays_by_keep_alives_and_pus_reports_only_trigger_a_check() {
    let keys: Vec<Psk> = ["pe-1", "pu-1", "pu-2", "pu-3"]
        .iter()
        .map(|i| Psk::generate(i).unwrap())
        .collect();
    let mut store = PskStore::default();
    for k in &keys {
        store.insert(k.clone()).unwrap();
    }
    let r = registrar(
        TlsServerConfig {
            psks: Some(Arc::new(store)),
            ..TlsServerConfig::default()
        },
        CoreConfig {
            keep_alive_interval: Duration::from_millis(100),
            keep_alive_timeout: Duration::from_millis(300),
            ..CoreConfig::default()
        },
    )
    .await;
    let mut events = r.events();
    let handle = PoolHandle::from_static("echo");
    let pe = PoolElement::start(
        psk_client(&r, &keys[0]),
        PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007),
    )
    .await
    .expect("registered");
    // Several keep-alive rounds pass: the PE answers and stays.
    let ka_before = r.query(|c| c.stats().keep_alives_sent).await.unwrap();
    tokio::time::timeout(LIMIT, async {
        while r.query(|c| c.stats().keep_alives_sent).await.unwrap() < ka_before + 5 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("keep-alives go out");
    assert_eq!(r.query(|c| c.handlespace().len()).await, Some(1));
    assert_eq!(r.query(|c| c.stats().keep_alive_failures).await, Some(0));

    let mut pus = Vec::new();
    for k in &keys[1..] {
        let pu = PoolUser::new(psk_client(&r, k)).unwrap();
        let chosen = pu.select(&handle).await.expect("selected");
        assert_eq!(chosen.identifier, pe.identifier());
        assert_eq!(chosen.user_transport.port(), 7007);
        pus.push(pu);
    }
    for pu in &pus {
        pu.report_unreachable(&handle, pe.identifier())
            .await
            .expect("reported");
    }
    match wait_outcome(&mut events).await {
        Event::ReportsRefuted { reporters, .. } => assert_eq!(reporters.len(), 3),
        other => panic!("the PE answers its check and stays: {other:?}"),
    }
    assert_eq!(r.query(|c| c.handlespace().len()).await, Some(1));
    drop(pe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pu_skips_a_registrar_whose_certificate_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = CertificateAuthority::generate("lab CA", 1).unwrap();
    ca.issued().write_files(d, "ca").unwrap();
    let good = ca.issue("registrar-good", &[], &[LOCALHOST], 1).unwrap();
    let rogue_ca = CertificateAuthority::generate("rogue CA", 1).unwrap();
    let rogue = rogue_ca
        .issue("registrar-good", &[], &[LOCALHOST], 1)
        .unwrap();
    let cert = |issued: rserpool_security::pki::Issued, name: &str| TlsServerConfig {
        certificate: Some(issued.write_files(d, name).unwrap()),
        ..TlsServerConfig::default()
    };
    let rogue = registrar(cert(rogue, "rogue"), CoreConfig::default()).await;
    let good = registrar(cert(good, "good"), CoreConfig::default()).await;
    let tls = TlsClient::new(&TlsClientConfig {
        ca: Some(d.join("ca.pem")),
        ..TlsClientConfig::default()
    })
    .unwrap();
    let pu = PoolUser::new(ClientConfig::new(
        vec![
            RegistrarEndpoint::new(rogue.local_addrs()[0]),
            RegistrarEndpoint::new(good.local_addrs()[0]),
        ],
        Some(tls),
    ))
    .unwrap();
    // The good registrar answers (an unknown pool: it has no PEs).
    let e = pu
        .resolve(&PoolHandle::from_static("echo"))
        .await
        .expect_err("no such pool");
    assert_eq!(
        e,
        rserpool::ClientError::UnknownPoolHandle(PoolHandle::from_static("echo"))
    );
    assert_eq!(good.query(|c| c.stats().resolutions).await, Some(1));
    assert_eq!(rogue.query(|c| c.stats().resolutions).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_hears_the_pools_policy_and_a_pu_hears_that_every_pe_is_drained() {
    let keys: Vec<Psk> = ["pe-1", "pe-2", "pu-1"]
        .iter()
        .map(|i| Psk::generate(i).unwrap())
        .collect();
    let mut store = PskStore::default();
    for k in &keys {
        store.insert(k.clone()).unwrap();
    }
    let r = registrar(
        TlsServerConfig {
            psks: Some(Arc::new(store)),
            ..TlsServerConfig::default()
        },
        CoreConfig::default(),
    )
    .await;
    let handle = PoolHandle::from_static("echo");
    let pe = PoolElement::start(
        psk_client(&r, &keys[0]),
        PoolElementSpec::new(handle.clone(), Policy::RoundRobin, 7007),
    )
    .await
    .expect("registered");
    // Another policy: refused, with the pool's policy in the error.
    let e = PoolElement::start(
        psk_client(&r, &keys[1]),
        PoolElementSpec::new(
            handle.clone(),
            Policy::WeightedRoundRobin { weight: 2 },
            7008,
        ),
    )
    .await
    .expect_err("an inconsistent policy");
    let rserpool::ClientError::RegistrationRefused {
        registrar,
        cause,
        detail,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(*registrar, r.local_addrs()[0]);
    assert_eq!(*cause, rserpool_wire::CauseCode::InconsistentPoolingPolicy);
    assert_eq!(
        *detail,
        Some(rserpool::RefusalDetail::PoolPolicy(Policy::RoundRobin))
    );
    assert!(
        e.to_string().ends_with(
            "Inconsistent Pooling Policy (0x5): the pool uses round robin (rr); register with the same policy"
        ),
        "{e}"
    );

    // The only PE drained: the pool exists, and the pool user says why
    // it gets no PE (it caches nothing, so that each select asks).
    let mut config = psk_client(&r, &keys[2]);
    config.pool_user.stale_timeout = Duration::ZERO;
    let pu = PoolUser::new(config).unwrap();
    assert_eq!(
        pu.select(&handle).await.map(|p| p.identifier),
        Ok(pe.identifier())
    );
    let (h, id) = (handle.clone(), pe.identifier());
    r.command(move |c, now| c.drain(now, &h, id, None, "test"))
        .await
        .expect("the core answers")
        .expect("drained");
    let e = pu.select(&handle).await.expect_err("every PE is drained");
    assert_eq!(
        e,
        rserpool::ClientError::PoolDrained {
            registrar: r.local_addrs()[0],
            pool_handle: handle.clone(),
        }
    );
    assert!(
        e.to_string()
            .contains("every PE in it is drained (or has weight 0)"),
        "{e}"
    );
    let (h, id) = (handle.clone(), pe.identifier());
    r.command(move |c, now| c.undrain(now, &h, id, "test"))
        .await
        .expect("the core answers")
        .expect("undrained");
    assert_eq!(
        pu.select(&handle).await.map(|p| p.identifier),
        Ok(pe.identifier())
    );
    drop(pe);
}
