//! RFC 5355 2.17: insiders: a legitimate, authenticated party that
//! misbehaves. Mechanism: the authorised peer database
//! (`rserpool_security::apd`, enforced by the registrar) grants each
//! identity roles, pools and addresses, and the registrar checks every
//! connection, registration, resolution and report against it; a change
//! to the database re-validates what is held. An insider PE or PU stays
//! in its scope. (Insider registrars: the cluster row; a PU that biases
//! its own selection, the RFC's first example, is not prevented: the
//! stretch goal of verifiable selection.)

use rserpool_registrar::{Event, ServiceConfig};
use rserpool_wire::{AsapMessage, CauseCode, PeId};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

/// pe-a serves and uses `echo`; pe-b serves `other` only; pu-1 uses
/// `echo`, pu-2 `other`; nobody else is anything.
const SCOPES: &str = r#"
[[entry]]
name = "echo-pes"
action = "allow"
namespace = "psk"
identity = "pe-a"
roles = ["pe", "pu"]
pools = ["echo"]

[[entry]]
name = "other-pes"
action = "allow"
namespace = "psk"
identity = "pe-b"
roles = ["pe"]
pools = ["other"]

[[entry]]
name = "echo-users"
action = "allow"
namespace = "psk"
identity = "pu-1"
roles = ["pu"]
pools = ["echo"]

[[entry]]
name = "other-users"
action = "allow"
namespace = "psk"
identity = "pu-2"
roles = ["pu"]
pools = ["other"]

[[entry]]
name = "deny-everyone-else"
action = "deny"
namespace = "any"
identity = "*"
roles = ["pe", "pu", "registrar", "admin"]
"#;

async fn scoped_lab() -> Lab {
    Lab::with_service(ServiceConfig {
        apd: apd(SCOPES),
        ..ServiceConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_pe_stays_in_its_pools_and_registers_only_its_own_address() {
    let lab = scoped_lab().await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut pe_b = lab.client("pe-b").await;
    // Another pool, a foreign address in its own pool, another's PE.
    assert_eq!(
        pe_b.register(HANDLE, pe(2, "127.0.0.1", 7)).await,
        Some(CauseCode::RejectedSecurity)
    );
    assert_eq!(
        pe_b.register("other", pe(3, "192.0.2.1", 7)).await,
        Some(CauseCode::RejectedSecurity)
    );
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
    // Nor may it look at pools as a user: it is a PE only.
    assert_eq!(pe_b.resolve(HANDLE).await, Err(CauseCode::RejectedSecurity));
    // Within its scope it is served.
    assert_eq!(pe_b.register("other", pe(4, "127.0.0.1", 7)).await, None);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(lab.pool_ids("other").await, vec![4]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
    assert!(lab.stats().await.refused_unauthorised >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_pu_resolves_and_reports_only_in_its_pools_and_cannot_register() {
    let lab = scoped_lab().await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut pe_b = lab.client("pe-b").await;
    assert_eq!(pe_b.register("other", pe(4, "127.0.0.1", 7)).await, None);
    let mut pu_2 = lab.client("pu-2").await;
    // Another pool: refused whether it exists or not.
    assert_eq!(pu_2.resolve(HANDLE).await, Err(CauseCode::RejectedSecurity));
    assert_eq!(pu_2.resolve("nope").await, Err(CauseCode::RejectedSecurity));
    // A report there is refused and not counted.
    match pu_2
        .request(&AsapMessage::EndpointUnreachable {
            pool_handle: pool_handle(HANDLE),
            identifier: PeId::new(PE_A),
        })
        .await
    {
        AsapMessage::Error { error } => {
            assert_eq!(error.causes[0].code, CauseCode::RejectedSecurity)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(lab.stats().await.unreachable_reports, 0);
    // A user does not become a PE, not even in its pool.
    assert_eq!(
        pu_2.register("other", pe(5, "127.0.0.1", 7)).await,
        Some(CauseCode::RejectedSecurity)
    );
    // Its own pool it may use, through the client library too.
    assert_eq!(pu_2.resolve("other").await, Ok(vec![4]));
    assert_eq!(served(&lab, "pu-2", "other").await, vec![4]);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(lab.pool_ids("other").await, vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holder_without_an_entry_is_refused_at_connection() {
    let lab = scoped_lab().await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut pu_3 = lab.client("pu-3").await;
    match pu_3.recv().await {
        Some(AsapMessage::Error { error }) => {
            assert_eq!(error.causes[0].code, CauseCode::RejectedSecurity);
            let info = String::from_utf8_lossy(&error.causes[0].info).to_string();
            assert!(info.contains("deny-everyone-else"), "{info}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(pu_3.recv().await, None, "then closed");
    // A pool user of the client library with that key gets nothing.
    let pu = rserpool::PoolUser::new(lab_config(&lab, "pu-3")).expect("pool user");
    let err = within(pu.resolve(&pool_handle(HANDLE)))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, rserpool::ClientError::NoRegistrar(_)),
        "{err}"
    );
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_an_insiders_entry_at_run_time_removes_what_it_held() {
    let lab = scoped_lab().await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut events = lab.registrar.events();
    let mut pe_b = lab.client("pe-b").await;
    assert_eq!(pe_b.register("other", pe(4, "127.0.0.1", 7)).await, None);
    // pe-b loses its entry.
    let narrowed = SCOPES.replace("identity = \"pe-b\"", "identity = \"pe-b-retired\"");
    let report = lab
        .registrar
        .handle()
        .replace_apd(apd(&narrowed))
        .await
        .expect("replaced");
    assert_eq!(report.pes_removed.len(), 1, "{report:?}");
    assert_eq!(report.pes_removed[0].identifier, PeId::new(4));
    assert_eq!(report.pes_removed[0].identity, "psk:pe-b");
    assert!(report
        .connections_closed
        .iter()
        .any(|c| c.identity == "psk:pe-b"));
    wait_event(&mut events, |e| matches!(e, Event::Removed { .. })).await;
    // Its connection gets the refusal and ends.
    loop {
        match pe_b.recv().await {
            Some(AsapMessage::Error { error }) => {
                assert_eq!(error.causes[0].code, CauseCode::RejectedSecurity)
            }
            Some(AsapMessage::DeregistrationResponse { .. }) => {}
            None => break,
            Some(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(lab.pool_ids("other").await, Vec::<u32>::new());
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pu_refused_at_connection_is_told_it_was_rejected_for_security() {
    let lab = scoped_lab().await;
    let pu = rserpool::PoolUser::new(lab_config(&lab, "pu-3")).expect("pool user");
    let err = within(pu.resolve(&pool_handle(HANDLE)))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("security") && text.contains("deny-everyone-else"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_refused_at_connection_gives_up_with_the_refusal_instead_of_reconnecting() {
    let lab = scoped_lab().await;
    let mut c = lab_config(&lab, "pu-3");
    c.timers.max_reg_attempts = 1;
    let err = within(rserpool::PoolElement::start(c, spec(HANDLE, 2, 7)))
        .await
        .expect_err("the PE gives up");
    assert!(err.to_string().contains("security"), "{err}");
    let attempts = lab.registrar.service_stats().connections_accepted;
    assert!(attempts <= 10, "{attempts} connections for one attempt");
}

/// SCOPES, and `registrar-x` a peer registrar for pool `other` only.
fn scopes_with_a_registrar() -> String {
    let insider = r#"
[[entry]]
name = "insider-registrar"
action = "allow"
namespace = "psk"
identity = "registrar-x"
roles = ["registrar"]
pools = ["other"]
"#;
    let deny = SCOPES
        .find("[[entry]]\nname = \"deny-everyone-else\"")
        .expect("the closing deny");
    format!("{}{insider}\n{}", &SCOPES[..deny], &SCOPES[deny..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_registrar_stays_in_its_pools_and_cannot_take_over_a_live_registrar() {
    use crate::rfc5355_2_5::{add_pe, cluster_lab, enrp_addr, registrant, RawPeer, REGISTRAR};
    use rserpool_wire::{EnrpExtensions, EnrpMessage, ServerId};

    let lab = cluster_lab(Some(apd(&scopes_with_a_registrar()))).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let own = lab.registrar.handle().server_id();
    let mut insider = RawPeer::connect(enrp_addr(&lab), &lab.key(REGISTRAR))
        .await
        .expect("TLS");
    assert!(matches!(
        insider.hello(0x777).await,
        Some(EnrpMessage::Presence { .. })
    ));
    let refused = |m: Option<EnrpMessage>| match m {
        Some(EnrpMessage::Error { error, .. }) => error.causes[0].code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // A PE in a pool outside its scope, and taking the legitimate PE.
    for msg in [
        add_pe(0x777, 0x777, HANDLE, 0x901, "127.0.0.1"),
        add_pe(0x777, 0x777, HANDLE, PE_A, "127.0.0.1"),
    ] {
        insider.send(&msg, &registrant("pe-a")).await;
        assert_eq!(refused(insider.next().await), CauseCode::RejectedSecurity);
    }
    // In its pool, but with a registrant that may not be there.
    insider
        .send(
            &add_pe(0x777, 0x777, "other", 0x902, "10.9.9.9"),
            &registrant("pe-a"),
        )
        .await;
    assert_eq!(refused(insider.next().await), CauseCode::RejectedSecurity);
    // Taking this registrar over while it is alive.
    for msg in [
        EnrpMessage::InitTakeover {
            sender: ServerId::new(0x777),
            receiver: ServerId::UNDETERMINED,
            target: own,
        },
        EnrpMessage::TakeoverServer {
            sender: ServerId::new(0x777),
            receiver: ServerId::UNDETERMINED,
            target: own,
        },
    ] {
        insider.send(&msg, &EnrpExtensions::default()).await;
        assert!(
            matches!(insider.next().await, Some(EnrpMessage::Presence { .. })),
            "it answers: alive"
        );
    }
    // What its scope allows is taken: a PE of pe-b in `other`.
    insider
        .send(
            &add_pe(0x777, 0x777, "other", 0x903, "10.9.9.9"),
            &registrant("pe-b"),
        )
        .await;
    until_pool_ids(&lab, "other", vec![0x903]).await;
    // Nothing true moved or went.
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    let home = lab
        .registrar
        .query(|c| {
            c.handlespace()
                .find(&pool_handle(HANDLE), PeId::new(PE_A))
                .map(|e| e.home)
        })
        .await
        .expect("answers");
    assert_eq!(home, Some(own));
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
    let s = lab.stats().await.enrp;
    assert_eq!((s.updates_refused, s.takeovers_refused), (3, 2));
}
