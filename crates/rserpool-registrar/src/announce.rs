//! ASAP_SERVER_ANNOUNCE over UDP (RFC 5352 section 3.6, DESIGN section 3):
//! every T6-Serverannounce the registrar sends its identifier and ASAP
//! transports to a group (RSPLIB: 239.0.0.50:3863). Off by default; the
//! announcement is only a hint, the TLS handshake decides.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rserpool_wire::{AsapMessage, ServerId, Transport, TransportUse, WireMessage};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Where and how often to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Destination: a multicast group (or any UDP address, for tests).
    pub group: SocketAddr,
    /// T6-Serverannounce (RFC 5352 section 7.1: 1 s).
    pub interval: Duration,
    /// The address announced for listeners bound to a wildcard address.
    pub advertised_address: Option<IpAddr>,
    /// The IPv4 interface (its address) multicast announcements leave by
    /// (`None`: the system's route for the group).
    pub interface: Option<Ipv4Addr>,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            group: SocketAddr::from(([239, 0, 0, 50], 3863)),
            interval: Duration::from_secs(1),
            advertised_address: None,
            interface: None,
        }
    }
}

/// The announcement for these listeners.
pub fn announcement(
    server_id: ServerId,
    listeners: &[SocketAddr],
    advertised: Option<IpAddr>,
) -> AsapMessage {
    let transports = listeners
        .iter()
        .filter_map(|l| {
            let address = if l.ip().is_unspecified() {
                advertised?
            } else {
                l.ip()
            };
            Some(Transport::Tcp {
                port: l.port(),
                transport_use: TransportUse::DataPlusControl,
                address,
            })
        })
        .collect();
    AsapMessage::ServerAnnounce {
        server_id,
        transports,
    }
}

/// Start the announcing task.
pub(crate) async fn start(
    cfg: &AnnounceConfig,
    server_id: ServerId,
    listeners: &[SocketAddr],
) -> std::io::Result<JoinHandle<()>> {
    let bind: SocketAddr = match cfg.group {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await?;
    if cfg.group.ip().is_multicast() {
        if let SocketAddr::V4(_) = cfg.group {
            socket.set_multicast_loop_v4(true)?;
            socket.set_multicast_ttl_v4(1)?;
            if let Some(i) = cfg.interface {
                socket2::SockRef::from(&socket).set_multicast_if_v4(&i)?;
            }
        }
    }
    let bytes = announcement(server_id, listeners, cfg.advertised_address)
        .to_bytes()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let (group, interval) = (cfg.group, cfg.interval);
    tracing::info!(%group, ?interval, "sending ASAP_SERVER_ANNOUNCE");
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if let Err(e) = socket.send_to(&bytes, group).await {
                tracing::warn!(%group, error = %e, "server announce not sent");
            }
        }
    }))
}
