//! Connections the core asks for (`Output::Connect`): the service opens
//! them, plain in insecure mode or with TLS and the registrar's own
//! credentials in secure mode, and they then carry ENRP: the registrar
//! speaks first (a presence asking for one, RFC 5353 3.4.1) and answers
//! the peer's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rserpool_registrar::{ConnKind, CoreConfig, Event, Registrar, ServiceConfig};
use rserpool_security::{
    PeerIdentity, Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig,
};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{ConnId, EnrpMessage, ServerId, WireMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(10);

fn presence() -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(0x99),
        receiver: ServerId::new(0),
        checksum: None,
        server_info: None,
    }
}

/// Read the registrar's presence (it speaks first), send ours, and
/// read its answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> (EnrpMessage, EnrpMessage) {
    let mut codec = ChannelCodec::new(4096);
    let mut buf = bytes::BytesMut::new();
    let first = next(s, &mut codec, &mut buf).await;
    s.write_all(&presence().to_bytes().unwrap()).await.unwrap();
    let answer = next(s, &mut codec, &mut buf).await;
    (first, answer)
}

async fn next<S: AsyncRead + Unpin>(
    s: &mut S,
    codec: &mut ChannelCodec,
    buf: &mut bytes::BytesMut,
) -> EnrpMessage {
    tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(frame) = codec.decode(buf).unwrap() {
                return EnrpMessage::decode(&frame).unwrap().message;
            }
            assert!(s.read_buf(buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("a message")
}

/// The registrar's hello and its answer to ours.
fn hello_then_answer((first, answer): &(EnrpMessage, EnrpMessage)) -> bool {
    matches!(
        first,
        EnrpMessage::Presence {
            reply_required: true,
            ..
        }
    ) && matches!(
        answer,
        EnrpMessage::Presence {
            reply_required: false,
            ..
        }
    )
}

async fn connect(registrar: &Registrar, to: SocketAddr) -> ConnId {
    registrar
        .command(move |core, now| core.connect(now, to, ConnKind::EnrpOutbound))
        .await
        .unwrap()
        .unwrap()
}

async fn kind_and_peer(
    registrar: &Registrar,
    conn: ConnId,
) -> Option<(ConnKind, Option<PeerIdentity>)> {
    registrar
        .query(move |core| {
            core.open_connections()
                .find(|c| c.conn == conn)
                .map(|c| (c.kind, c.peer.cloned()))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn insecure_mode_dials_plain_tcp() {
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registrar = Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..ServiceConfig::default()
    })
    .await
    .unwrap();
    let conn = connect(&registrar, peer.local_addr().unwrap()).await;
    let (mut s, _) = tokio::time::timeout(LIMIT, peer.accept())
        .await
        .unwrap()
        .unwrap();
    assert!(hello_then_answer(&exchange(&mut s).await));
    assert_eq!(
        kind_and_peer(&registrar, conn).await,
        Some((ConnKind::EnrpOutbound, None))
    );
    registrar.shutdown().await;
}

#[tokio::test]
async fn secure_mode_dials_with_the_registrars_key_and_learns_the_peer() {
    let key = Psk::generate("registrar-1").unwrap();
    let mut store = PskStore::default();
    store.insert(key.clone()).unwrap();
    let store = Arc::new(store);
    let server = |psks| {
        TlsServer::new(&TlsServerConfig {
            psks: Some(psks),
            ..TlsServerConfig::default()
        })
        .unwrap()
    };
    let peer_tls = server(store.clone());
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registrar = Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(Arc::new(server(store))),
        // Its own key: the peer it dials is known as a holder of it.
        apd: rserpool_security::apd::Apd::permissive_with_registrars(
            false,
            &[PeerIdentity::Psk("registrar-1".into())],
        ),
        tls_client: Some(Arc::new(
            TlsClient::new(&TlsClientConfig {
                psk: Some(key),
                ..TlsClientConfig::default()
            })
            .unwrap(),
        )),
        ..ServiceConfig::default()
    })
    .await
    .unwrap();
    let conn = connect(&registrar, peer.local_addr().unwrap()).await;
    let (tcp, _) = tokio::time::timeout(LIMIT, peer.accept())
        .await
        .unwrap()
        .unwrap();
    let (mut s, seen) = peer_tls.accept(tcp, "the registrar").await.unwrap();
    assert_eq!(seen, PeerIdentity::Psk("registrar-1".into()));
    assert!(hello_then_answer(&exchange(&mut s).await));
    assert_eq!(
        kind_and_peer(&registrar, conn).await,
        Some((
            ConnKind::EnrpOutbound,
            Some(PeerIdentity::Psk("registrar-1".into()))
        ))
    );
    registrar.shutdown().await;
}

#[tokio::test]
async fn a_failed_connection_is_reported() {
    // A port nobody listens on: bound, then closed.
    let gone = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let registrar = Registrar::start(ServiceConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        core: CoreConfig::default(),
        ..ServiceConfig::default()
    })
    .await
    .unwrap();
    let mut events = registrar.events();
    let conn = connect(&registrar, gone).await;
    let e = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(e @ Event::ConnectFailed { .. }) = events.recv().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(e, Event::ConnectFailed { conn: c, address, .. } if c == conn && address == gone)
    );
    assert_eq!(
        registrar.query(|c| c.stats().connect_failures).await,
        Some(1)
    );
    registrar.shutdown().await;
}
