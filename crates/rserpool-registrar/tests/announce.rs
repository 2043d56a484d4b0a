//! ASAP_SERVER_ANNOUNCE: off by default; when enabled the registrar sends
//! its identifier and ASAP transport every T6-Serverannounce.

use std::time::Duration;

use rserpool_registrar::announce::AnnounceConfig;
use rserpool_registrar::{CoreConfig, Registrar, ServiceConfig};
use rserpool_wire::{AsapMessage, ServerId, Transport};
use tokio::net::UdpSocket;

#[tokio::test]
async fn announcements_name_the_registrar_and_its_listener() {
    // A unicast receiver stands in for the multicast group.
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let registrar = Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        announce: Some(AnnounceConfig {
            group: rx.local_addr().unwrap(),
            interval: Duration::from_millis(100),
            advertised_address: None,
            interface: None,
        }),
        core: CoreConfig {
            server_id: ServerId::new(0xfeed),
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await
    .unwrap();
    let listener = registrar.local_addrs()[0];
    for _ in 0..2 {
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv_from(&mut buf))
            .await
            .expect("an announcement")
            .unwrap();
        let msg = AsapMessage::decode(&buf[..n]).unwrap().message;
        let AsapMessage::ServerAnnounce {
            server_id,
            transports,
        } = msg
        else {
            panic!("{msg:?}")
        };
        assert_eq!(server_id, ServerId::new(0xfeed));
        assert!(matches!(
            transports.as_slice(),
            [Transport::Tcp { port, address, .. }] if *port == listener.port() && *address == listener.ip()
        ));
    }
}

#[test]
fn announcing_is_off_by_default() {
    assert!(ServiceConfig::default().announce.is_none());
}
