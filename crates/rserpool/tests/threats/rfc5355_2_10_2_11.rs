//! RFC 5355 2.10 (integrity) and 2.11 (confidentiality): a node on the
//! path alters or reads what PEs, PUs and registrars send. Mechanism:
//! TLS 1.3 on every registrar connection: a changed byte fails the
//! record's authentication and ends the connection before anything in
//! it is used; what passes is encrypted.

use rserpool::PoolElement;
use rserpool_registrar::{CoreConfig, ServiceConfig};
use tokio::net::TcpStream;

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_registration_record_ends_the_connection_and_registers_nothing() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let proxy = Proxy::start(
        lab.addr,
        Tamper {
            up: Some(1),
            ..Tamper::default()
        },
    )
    .await;
    let mut pe_b = Client::psk(proxy.addr, lab.key("pe-b"))
        .await
        .expect("the handshake is untouched");
    pe_b.send(&registration(HANDLE, pe(2, "127.0.0.1", 7)))
        .await;
    assert_eq!(
        pe_b.recv().await,
        None,
        "the registrar ended the connection"
    );
    assert_eq!(lab.stats().await.registrations, 1, "only the legitimate PE");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_registrar_answer_is_never_used_and_the_pu_moves_on() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let proxy = Proxy::start(
        lab.addr,
        Tamper {
            answer: true,
            ..Tamper::default()
        },
    )
    .await;
    // Through the proxy first: its answer is corrupted; then directly.
    let pu = config(
        vec![proxy.addr, lab.addr],
        Some(psk_client(&lab.key("pu-1"))),
    );
    assert_eq!(resolve_with(pu, HANDLE).await, vec![PE_A]);
    assert!(
        !proxy.captured().is_empty(),
        "the proxied registrar was tried"
    );
    // A PE behind the proxy gets its registration answer corrupted: it
    // is not taken as registered there, and it registers directly.
    let mut through_proxy = config(
        vec![proxy.addr, lab.addr],
        Some(psk_client(&lab.key("pe-b"))),
    );
    // Registration attempts only (no standby link through the proxy).
    through_proxy.standby_link = false;
    let pe = within(PoolElement::start(through_proxy, spec(HANDLE, 2, 7)))
        .await
        .expect("registered");
    assert_eq!(pe.status().registrar, Some(lab.addr));
    assert_eq!(
        proxy.captured().len(),
        2,
        "one attempt each through the proxy"
    );
    assert_eq!(lab.pool_ids(HANDLE).await, vec![2, PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_the_path_sees_no_pool_handle_in_the_traffic() {
    const SECRET: &str = "confidential-pool-7f3a9c";
    let lab = Lab::start(CoreConfig::default()).await;
    let proxy = Proxy::start(lab.addr, Tamper::default()).await;
    let through = |identity: &str| config(vec![proxy.addr], Some(psk_client(&lab.key(identity))));
    let _pe = within(PoolElement::start(through("pe-a"), spec(SECRET, PE_A, 7)))
        .await
        .expect("registered through the proxy");
    assert_eq!(resolve_with(through("pu-1"), SECRET).await, vec![PE_A]);
    let captured = proxy.captured();
    assert_eq!(captured.len(), 2);
    for c in &captured {
        assert!(!c.up.is_empty() && !c.down.is_empty());
        assert!(
            !contains(&c.up, SECRET.as_bytes()),
            "handle visible going up"
        );
        assert!(
            !contains(&c.down, SECRET.as_bytes()),
            "handle visible coming down"
        );
    }

    // The same listener in front of an insecure registrar sees it: the
    // capture works.
    let plain = registrar_with(None, ServiceConfig::default()).await;
    let proxy = Proxy::start(plain.local_addrs()[0], Tamper::default()).await;
    let mut c = Client::new(TcpStream::connect(proxy.addr).await.expect("connect"));
    assert_eq!(c.register(SECRET, pe(PE_A, "127.0.0.1", 7)).await, None);
    let captured = proxy.captured();
    assert!(contains(&captured[0].up, SECRET.as_bytes()));
    assert!(contains(&captured[0].down, SECRET.as_bytes()));
}
