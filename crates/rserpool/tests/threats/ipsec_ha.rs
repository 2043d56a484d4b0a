//! The lessons of draft-nir-ipsecme-ipsecha for a cluster of registrars
//! (the IPSECHA rows of the threat matrix): a sync channel that lost
//! updates heals by itself (checksums in heartbeats, then an audit), a
//! takeover loses nothing and leaves every PE one home, and the cluster
//! is as strict as each of its registrars: what one registrar's database
//! refuses, it refuses from a peer too.

use std::sync::Arc;

use rserpool::PoolUser;
use rserpool_registrar::{CoreConfig, EnrpConfig, ServiceConfig};
use rserpool_security::apd::Apd;
use rserpool_security::PeerIdentity;

use crate::common::*;
use crate::rfc5355_2_5::peers_up;

const PE_A: u32 = 0x0a0b_0c0d;

fn registrars() -> Apd {
    Apd::permissive_with_registrars(
        false,
        &[
            PeerIdentity::Psk("registrar-x".into()),
            PeerIdentity::Psk("registrar-y".into()),
        ],
    )
}

/// Two registrars with the same keys: `first`, listening for ENRP, and
/// a second one dialling it with its own key registrar-y, deciding with
/// `second_apd`.
async fn pair(second_apd: Apd) -> (Lab, Lab) {
    let service = |apd: Apd, peers| ServiceConfig {
        enrp_listen: vec!["127.0.0.1:0".parse().expect("address")],
        apd,
        core: CoreConfig {
            enrp: EnrpConfig {
                peers,
                ..EnrpConfig::default()
            },
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    };
    // The first dials nobody: it needs no client key.
    let first = Lab::with_service(service(registrars(), vec![])).await;
    let keys = first.keys.clone();
    let mut second = service(second_apd, vec![crate::rfc5355_2_5::enrp_addr(&first)]);
    second.tls_client = Some(Arc::new(psk_client(&first.key("registrar-y"))));
    let second = Lab::with_keys(second, keys).await;
    within(async {
        while peers_up(&first).await != 1 || peers_up(&second).await != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_registrar_loses_no_pe_and_every_pe_has_one_home() {
    let (first, second) = pair(registrars()).await;
    // A PE of the client library that knows both, registered at the first.
    let config = config(
        vec![first.addr, second.addr],
        Some(psk_client(&first.key("pe-a"))),
    );
    let pe = within(rserpool::PoolElement::start(config, spec(HANDLE, PE_A, 7)))
        .await
        .expect("registers");
    until_pool_ids(&second, HANDLE, vec![PE_A]).await;
    let second_id = second.registrar.handle().server_id();
    first.registrar.shutdown().await;
    // The second takes the PE over, and the PE, its connection gone,
    // re-registers there: one home, the one the PE agrees with.
    within(async {
        loop {
            let home = second
                .registrar
                .query(|c| {
                    c.handlespace()
                        .find(&pool_handle(HANDLE), rserpool_wire::PeId::new(PE_A))
                        .map(|e| (e.home, e.connection.is_some()))
                })
                .await
                .flatten();
            if home == Some((second_id, true)) && pe.status().home_server_id == Some(second_id) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let pu = PoolUser::new(lab_config(&second, "pu-1")).expect("pool user");
    let got = within(pu.resolve(&pool_handle(HANDLE)))
        .await
        .expect("resolves");
    assert_eq!(
        got.iter().map(|p| p.identifier.get()).collect::<Vec<_>>(),
        vec![PE_A]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_one_registrar_refuses_is_refused_through_its_peer_too() {
    // The second registrar lets pe-b into pool `other` only.
    let strict = apd(r#"
[[entry]]
name = "registrars"
action = "allow"
namespace = "psk"
identity = "registrar-*"
roles = ["registrar"]

[[entry]]
name = "pe-a"
action = "allow"
namespace = "psk"
identity = "pe-a"
roles = ["pe", "pu"]

[[entry]]
name = "pe-b-other-only"
action = "allow"
namespace = "psk"
identity = "pe-b"
roles = ["pe"]
pools = ["other"]

[[entry]]
name = "users"
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
"#);
    let (first, second) = pair(strict).await;
    // At the first (permissive), pe-b joins `echo`; pe-a too.
    let _b = library_pe(&first, "pe-b", 0xb).await;
    let _a = library_pe(&first, "pe-a", PE_A).await;
    until_pool_ids(&second, HANDLE, vec![PE_A]).await;
    // The second took pe-a's PE and refused pe-b's, as it would have
    // refused pe-b itself; its pool users never see it.
    assert_eq!(first.pool_ids(HANDLE).await, vec![0xb, PE_A]);
    assert_eq!(served(&second, "pu-1", HANDLE).await, vec![PE_A]);
    assert!(second.stats().await.enrp.updates_refused >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_sync_channel_between_registrars_heals_by_itself() {
    use crate::rfc5355_2_5::{add_pe, cluster_lab, enrp_addr, registrant, RawPeer, REGISTRAR};
    use rserpool_handlespace::PeChecksum;
    use rserpool_wire::{EnrpExtensions, EnrpMessage, PoolEntry, ServerId};

    const PEER: u32 = 0x777;
    let lab = cluster_lab(None).await;
    let mut peer = RawPeer::connect(enrp_addr(&lab), &lab.key(REGISTRAR))
        .await
        .expect("TLS");
    assert!(matches!(
        peer.hello(PEER).await,
        Some(EnrpMessage::Presence { .. })
    ));
    // The peer's PE 1 arrives; then the channel loses its removal and
    // the addition of PE 2 (the peer sends neither).
    peer.send(
        &add_pe(PEER, PEER, HANDLE, 1, "10.7.7.7"),
        &registrant("pe-a"),
    )
    .await;
    until_pool_ids(&lab, HANDLE, vec![1]).await;
    // Its next heartbeat carries the checksum of what it really has: PE 2.
    let mut sum = PeChecksum::default();
    sum.add(&pool_handle(HANDLE), rserpool_wire::PeId::new(2));
    let heartbeat = EnrpMessage::Presence {
        reply_required: false,
        sender: ServerId::new(PEER),
        receiver: ServerId::UNDETERMINED,
        checksum: Some(sum.value()),
        server_info: None,
    };
    peer.send(&heartbeat, &EnrpExtensions::default()).await;
    // The registrar audits: it asks for the peer's own PEs (W flag) ...
    match peer.next().await {
        Some(EnrpMessage::HandleTableRequest {
            own_children_only: true,
            ..
        }) => {}
        other => panic!("expected an audit request, got {other:?}"),
    }
    // ... and takes the answer as the truth: PE 2 added, PE 1 removed.
    let EnrpMessage::HandleUpdate { pool_element, .. } = add_pe(PEER, PEER, HANDLE, 2, "10.7.7.7")
    else {
        unreachable!()
    };
    let page = EnrpMessage::HandleTableResponse {
        more_to_send: false,
        reject: false,
        sender: ServerId::new(PEER),
        receiver: lab.registrar.handle().server_id(),
        pools: vec![PoolEntry {
            pool_handle: pool_handle(HANDLE),
            pool_elements: vec![pool_element],
        }],
    };
    let ext = EnrpExtensions {
        registrants: vec!["psk:pe-a".into()],
        epochs: vec![5],
        ..EnrpExtensions::default()
    };
    peer.send(&page, &ext).await;
    until_pool_ids(&lab, HANDLE, vec![2]).await;
    let s = lab.stats().await.enrp;
    assert_eq!(s.audits, 1);
    let agrees = lab
        .registrar
        .query(|c| c.peers().all(|p| p.checksum_agrees))
        .await
        .expect("answers");
    assert!(agrees, "the checksums agree after the audit");
}
