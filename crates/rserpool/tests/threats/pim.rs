//! The lessons of RFC 5294 (what hosts on a shared link can do to PIM)
//! as DESIGN section 4 applies them to RSerPool: protocol messages from
//! non-neighbours are dropped (ENRP only from authenticated peer
//! registrars, never on an ASAP listener), and rate limits at several
//! layers, so that becoming a trusted node does not bypass them (per
//! identity, per source address, global), and passive listeners (pool
//! users only). Home changes and announcements: `announce`.

use std::net::SocketAddr;
use std::time::Instant;

use rserpool_registrar::{
    ClientInfo, ConnKind, CoreConfig, Event, Output, RegistrarCore, ServiceConfig,
};
use rserpool_security::rate_limit::Rate;
use rserpool_security::PeerIdentity;
use rserpool_wire::{AsapMessage, CauseCode, ConnId, EnrpMessage, ServerId, UpdateAction};

use crate::common::*;
use crate::rfc5355_2_2::flood_registrations;

const PE_A: u32 = 0x0a0b_0c0d;

fn handle_update() -> EnrpMessage {
    EnrpMessage::HandleUpdate {
        takeover_suggested: false,
        sender: ServerId::new(0x0bad),
        receiver: ServerId::new(0),
        action: UpdateAction::AddPe,
        pool_handle: pool_handle(HANDLE),
        pool_element: pe(0x0bad_0bad, "192.0.2.66", 80),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrp_messages_on_an_asap_listener_are_refused_and_change_nothing() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // An authenticated PE speaks ENRP on the ASAP listener, as if it
    // were a peer registrar: a handle update adding a PE, a presence.
    let mut pe_b = lab.client("pe-b").await;
    let presence = EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(0x0bad),
        receiver: ServerId::new(0),
        checksum: None,
        server_info: None,
    };
    for m in [handle_update(), presence] {
        let mut bytes = Vec::new();
        m.encode(&mut bytes).expect("encode");
        pe_b.send_raw(&bytes).await;
        match pe_b.recv().await {
            Some(AsapMessage::Error { error }) => assert!(
                matches!(
                    error.causes[0].code,
                    CauseCode::UnrecognizedMessage | CauseCode::InvalidValues
                ),
                "{error:?}"
            ),
            other => panic!("expected an ASAP error, got {other:?}"),
        }
    }
    assert_eq!(lab.stats().await.enrp.received, 0, "never taken as ENRP");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

/// What the core said to a new connection of `kind` from `identity`:
/// whether it was refused for security, and the ENRP error it sent.
fn connect_to_core(
    core: &mut RegistrarCore,
    conn: u64,
    identity: PeerIdentity,
    kind: ConnKind,
) -> (bool, bool) {
    let now = Instant::now();
    let addr: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    core.handle_connect(
        now,
        ConnId::new(conn),
        ClientInfo::new(Some(identity), addr, kind),
    );
    let (mut refused, mut closed) = (false, false);
    while let Some(o) = core.poll_output() {
        match o {
            Output::Event(Event::Refused { cause, .. }) => {
                refused = cause == CauseCode::RejectedSecurity
            }
            Output::Close { conn: c, .. } if c == ConnId::new(conn) => closed = true,
            _ => {}
        }
    }
    (refused, closed)
}

/// Deliver an ENRP handle update on `conn`; the handlespace afterwards.
fn update_from(core: &mut RegistrarCore, conn: u64) -> usize {
    let mut bytes = Vec::new();
    handle_update().encode(&mut bytes).expect("encode");
    core.handle_frame(Instant::now(), ConnId::new(conn), &bytes);
    while core.poll_output().is_some() {}
    core.handlespace().len()
}

#[test]
fn an_unauthenticated_peer_on_an_enrp_channel_is_refused_and_its_updates_ignored() {
    let mut core = RegistrarCore::new(CoreConfig::default(), Instant::now()).expect("core");
    // A certificate handshake without a client certificate: anonymous.
    let (refused, closed) = connect_to_core(&mut core, 1, PeerIdentity::Anonymous, ConnKind::Enrp);
    assert!(refused && closed, "refused for security and closed");
    assert_eq!(update_from(&mut core, 1), 0, "nothing from a refused peer");
    assert_eq!(core.connections(), 0);
}

#[test]
fn an_identity_without_the_registrar_role_is_refused_on_an_enrp_channel() {
    let db = apd(r#"
[[entry]]
name = "pes"
action = "allow"
namespace = "psk"
identity = "pe-*"
roles = ["pe"]

[[entry]]
name = "peers"
action = "allow"
namespace = "psk"
identity = "registrar-*"
roles = ["registrar"]

[[entry]]
name = "deny-everyone-else"
action = "deny"
namespace = "any"
identity = "*"
roles = ["pe", "pu", "registrar", "admin"]
"#);
    let mut core = RegistrarCore::new(CoreConfig::default(), Instant::now())
        .expect("core")
        .with_apd(db);
    // A PE's key on the ENRP channel: not a neighbour.
    let (refused, closed) = connect_to_core(
        &mut core,
        1,
        PeerIdentity::Psk("pe-a".into()),
        ConnKind::Enrp,
    );
    assert!(refused && closed);
    assert_eq!(update_from(&mut core, 1), 0);
    // A peer registrar is admitted (ENRP itself is for the cluster).
    let (refused, closed) = connect_to_core(
        &mut core,
        2,
        PeerIdentity::Psk("registrar-2".into()),
        ConnKind::Enrp,
    );
    assert!(!refused && !closed);
    assert_eq!(core.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_over_its_registration_limit_does_not_limit_another_identity() {
    let lab = Lab::start(CoreConfig {
        registration_rate: Rate::new(10.0, 20.0),
        ..CoreConfig::default()
    })
    .await;
    let start = Instant::now();
    let (accepted, limited) =
        flood_registrations(lab.client("flooder").await, "flood", 1_000, 200).await;
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        f64::from(accepted) <= (20.0 + 10.0 * elapsed).ceil(),
        "{accepted}"
    );
    assert!(limited > 0);
    // Another identity, same address, at once: its own bucket.
    let (accepted, limited) = flood_registrations(lab.client("pe-b").await, "other", 1, 20).await;
    assert_eq!((accepted, limited), (20, 0));
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_behind_one_address_share_its_registration_limit() {
    let lab = Lab::with_service(ServiceConfig {
        core: CoreConfig {
            registration_rate_per_address: Rate::new(10.0, 30.0),
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await;
    let start = Instant::now();
    // Three keys from 127.0.0.1, 100 registrations each.
    let mut total = 0;
    for (i, who) in ["flooder", "pe-b", "pu-2"].into_iter().enumerate() {
        let c = lab.client_from(who, loopback(1)).await.expect("handshake");
        let (accepted, _) = flood_registrations(c, "flood", 1_000 * (i as u32 + 1), 100).await;
        total += accepted;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        f64::from(total) <= (30.0 + 10.0 * elapsed).ceil(),
        "{total} accepted from one address in {elapsed:.2} s"
    );
    // A PE at another address is not limited by them.
    let mut pe_a = lab
        .client_from("pe-a", loopback(2))
        .await
        .expect("handshake");
    assert_eq!(pe_a.register(HANDLE, pe(PE_A, "127.0.0.2", 7)).await, None);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_flood_from_one_identity_gets_lack_of_resources_and_others_are_served() {
    let lab = Lab::start(CoreConfig {
        resolution_rate: Rate::new(20.0, 40.0),
        ..CoreConfig::default()
    })
    .await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut flooder = lab.client("flooder").await;
    let mut batch = Vec::new();
    for _ in 0..300 {
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool_handle(HANDLE),
            items: None,
        }
        .encode(&mut batch)
        .expect("encode");
    }
    flooder.send_raw(&batch).await;
    let (mut served_n, mut limited) = (0, 0);
    for _ in 0..300 {
        match flooder.recv().await.expect("an answer") {
            AsapMessage::HandleResolutionResponse { error: None, .. } => served_n += 1,
            AsapMessage::HandleResolutionResponse { error: Some(e), .. } => {
                assert_eq!(e.causes[0].code, CauseCode::LackOfResources);
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        served_n >= 40 && limited > 0,
        "{served_n} served, {limited} limited"
    );
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pim_a_global_limit_caps_registrations_from_all_identities_and_addresses() {
    // Each identity is far within its own limit and the address limit is
    // off: only the global layer (burst 60, 1 a second) holds the three
    // colluding identities.
    let lab = Lab::start(CoreConfig {
        registration_rate: Rate::new(1_000.0, 1_000.0),
        registration_rate_per_address: Rate::UNLIMITED,
        registration_rate_global: Rate::new(1.0, 60.0),
        ..CoreConfig::default()
    })
    .await;
    let mut total = 0;
    let mut limited = 0;
    for (i, who) in ["pe-a", "pe-b", "flooder"].into_iter().enumerate() {
        let c = lab.client(who).await;
        let (a, l) = flood_registrations(c, "flood", 0x100 * (i as u32 + 1), 40).await;
        total += a;
        limited += l;
    }
    assert!(
        (60..=63).contains(&total),
        "{total} registrations passed the global limit"
    );
    assert_eq!(total + limited, 120);
    let st = lab.stats().await;
    let by = st.rate_limited.registrations;
    assert_eq!((by.identity, by.address), (0, 0), "{by:?}");
    assert_eq!(u64::from(limited), by.global, "{by:?}");
    // Other kinds of request have their own budgets: resolutions served.
    assert_eq!(lab.pool_ids("flood").await.len(), total as usize);
    assert_eq!(served(&lab, "pu-1", "flood").await.len().min(1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pim_passive_listener_refuses_registrations() {
    let lab = Lab::with_service(ServiceConfig {
        listeners: vec![rserpool_registrar::ListenerConfig {
            address: "127.0.0.1:0".parse().expect("address"),
            pool_users_only: true,
            allow: Vec::new(),
        }],
        ..ServiceConfig::default()
    })
    .await;
    let passive = lab.registrar.pool_user_addrs()[0];
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // A PE key on the pool-user listener: its registration is refused
    // for security, nothing is created.
    let mut c = config(vec![passive], Some(psk_client(&lab.key("pe-b"))));
    c.timers.max_reg_attempts = 1;
    let err = within(rserpool::PoolElement::start(c, spec(HANDLE, 0x0bad, 8)))
        .await
        .expect_err("no registration on a pool-user listener");
    assert!(err.to_string().contains("security"), "{err}");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    // A pool user there is served.
    let pu = config(vec![passive], Some(psk_client(&lab.key("pu-1"))));
    assert_eq!(resolve_with(pu, HANDLE).await, vec![PE_A]);
}
