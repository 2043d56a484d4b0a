//! RFC 5355 2.5: a rogue registrar joins the registrars. Registrars
//! authenticate each other with TLS (a key per registrar), and only an
//! identity the authorised peer database allows the registrar role may
//! speak ENRP (by default: the peer keys given; a PE or PU key never):
//! a node without a registrar key is refused at the handshake or at the
//! connection, with "rejected due to security considerations", and what
//! it sends is never taken; a peer that names another peer's identifier
//! is not believed. The registrar keeps serving its PEs and PUs.

use std::net::SocketAddr;

use bytes::BytesMut;
use rserpool_registrar::ServiceConfig;
use rserpool_security::apd::Apd;
use rserpool_security::{PeerIdentity, Psk, TlsClient, TlsClientConfig};
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{
    CauseCode, EnrpExtensions, EnrpMessage, PoolElement, ServerId, Transport, TransportUse,
    UpdateAction,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;
/// The one identity that may be a peer registrar here.
pub const REGISTRAR: &str = "registrar-x";

/// A raw ENRP peer: TLS with a key, frames of ENRP with our extensions.
pub struct RawPeer {
    stream: tokio_openssl::SslStream<TcpStream>,
    buf: BytesMut,
}

impl RawPeer {
    /// Connect to `to` with `key`; `Err` if the handshake fails.
    pub async fn connect(
        to: SocketAddr,
        key: &Psk,
    ) -> Result<RawPeer, rserpool_security::SecurityError> {
        let tls = TlsClient::new(&TlsClientConfig {
            psk: Some(key.clone()),
            ..TlsClientConfig::default()
        })?;
        let tcp = TcpStream::connect(to).await.expect("connect");
        let (stream, _) = within(tls.connect(tcp, &to.ip().to_string())).await?;
        Ok(RawPeer {
            stream,
            buf: BytesMut::new(),
        })
    }

    pub async fn send(&mut self, msg: &EnrpMessage, ext: &EnrpExtensions) {
        let mut bytes = Vec::new();
        ext.encode(msg, &mut bytes).expect("encode");
        let mut out = BytesMut::new();
        ChannelCodec::new(65_535)
            .encode(&bytes, &mut out)
            .expect("frame");
        let _ = self.stream.write_all(&out).await;
    }

    /// The next message, or `None` when the registrar closed.
    pub async fn next(&mut self) -> Option<EnrpMessage> {
        let mut codec = ChannelCodec::new(65_535);
        within(async {
            loop {
                if let Some(frame) = codec.decode(&mut self.buf).expect("framing") {
                    return Some(EnrpMessage::decode(&frame).expect("decodes").message);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Say hello as server `id` and read the registrar's answer.
    pub async fn hello(&mut self, id: u32) -> Option<EnrpMessage> {
        self.send(&presence(id), &EnrpExtensions::default()).await;
        self.next().await
    }
}

pub fn presence(id: u32) -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(id),
        receiver: ServerId::UNDETERMINED,
        checksum: None,
        server_info: None,
    }
}

/// An ENRP_HANDLE_UPDATE from `sender` adding PE `id` of `pool` at
/// `address`, homed at `home`.
pub fn add_pe(sender: u32, home: u32, pool: &str, id: u32, address: &str) -> EnrpMessage {
    let ip = address.parse().expect("address");
    EnrpMessage::HandleUpdate {
        takeover_suggested: false,
        sender: ServerId::new(sender),
        receiver: ServerId::UNDETERMINED,
        action: UpdateAction::AddPe,
        pool_handle: pool_handle(pool),
        pool_element: PoolElement {
            home_registrar: ServerId::new(home),
            asap_transport: Some(Transport::Tcp {
                port: 40_000,
                transport_use: TransportUse::DataPlusControl,
                address: ip,
            }),
            ..pe(id, address, 7)
        },
    }
}

pub fn registrant(identity: &str) -> EnrpExtensions {
    EnrpExtensions {
        registrant: Some(format!("psk:{identity}")),
        epoch: Some(5),
        ..EnrpExtensions::default()
    }
}

/// A lab registrar that listens for ENRP and takes `registrar-x` (only)
/// as a peer registrar, with `apd` if given.
pub async fn cluster_lab(apd: Option<Apd>) -> Lab {
    Lab::with_service(ServiceConfig {
        enrp_listen: vec!["127.0.0.1:0".parse().expect("address")],
        apd: apd.unwrap_or_else(|| {
            Apd::permissive_with_registrars(false, &[PeerIdentity::Psk(REGISTRAR.into())])
        }),
        ..ServiceConfig::default()
    })
    .await
}

pub fn enrp_addr(lab: &Lab) -> SocketAddr {
    lab.registrar.handle().enrp_addrs()[0]
}

pub async fn peers_up(lab: &Lab) -> usize {
    lab.registrar
        .query(|c| c.peers().filter(|p| p.up).count())
        .await
        .expect("registrar answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_registrar_without_a_registrar_key_cannot_join() {
    let lab = cluster_lab(None).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    // The registrar's name with another secret: no handshake.
    let forged = Psk::generate(REGISTRAR).expect("key");
    assert!(RawPeer::connect(enrp_addr(&lab), &forged).await.is_err());
    // A valid PE key: the handshake works, ENRP does not.
    let mut rogue = RawPeer::connect(enrp_addr(&lab), &lab.key("pe-a"))
        .await
        .expect("a PE key completes TLS");
    match rogue.next().await {
        Some(EnrpMessage::Error { error, .. }) => {
            assert_eq!(error.causes[0].code, CauseCode::RejectedSecurity)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    rogue
        .send(
            &add_pe(0x666, 0x666, HANDLE, 0x666, "127.0.0.1"),
            &registrant("pe-a"),
        )
        .await;
    assert_eq!(rogue.next().await, None, "closed");
    // Nothing false was created, nothing true removed; PUs are served.
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(peers_up(&lab).await, 0);
    assert_eq!(lab.stats().await.enrp.received, 0);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_registrar_cannot_speak_for_another_or_claim_this_ones_identifier() {
    let lab = cluster_lab(None).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let own = lab.registrar.handle().server_id().get();
    // Its own identifier: refused (the registrar serves, so it keeps
    // its identifier; its presence tells the twin of the collision).
    let mut twin = RawPeer::connect(enrp_addr(&lab), &lab.key(REGISTRAR))
        .await
        .expect("TLS");
    assert!(matches!(
        twin.hello(own).await,
        Some(EnrpMessage::Presence { sender, .. }) if sender.get() == own
    ));
    assert!(matches!(twin.next().await, Some(EnrpMessage::Error { .. })));
    assert_eq!(twin.next().await, None, "closed");
    assert_eq!(lab.registrar.handle().server_id().get(), own);
    // As itself, then as another registrar: that is dropped.
    let mut peer = RawPeer::connect(enrp_addr(&lab), &lab.key(REGISTRAR))
        .await
        .expect("TLS");
    assert!(matches!(
        peer.hello(0x777).await,
        Some(EnrpMessage::Presence { .. })
    ));
    peer.send(
        &add_pe(0x888, 0x888, HANDLE, 0x888, "127.0.0.1"),
        &registrant("pe-b"),
    )
    .await;
    // A second association claiming 0x777 with another identity.
    let mut other = RawPeer::connect(enrp_addr(&lab), &lab.key("flooder"))
        .await
        .expect("TLS");
    assert!(
        matches!(other.next().await, Some(EnrpMessage::Error { .. })),
        "not a registrar"
    );
    let stats = lab.stats().await;
    assert_eq!(stats.enrp.spoofed, 1);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}
