//! The ENRP multicast channel (off unless configured): the registrar
//! sends its ENRP_PRESENCE to a UDP group every heartbeat cycle, and
//! hands what it hears there to the core as hints
//! ([`crate::RegistrarCore::handle_presence_hint`]): a peer found this
//! way is dialled, and must authenticate like any other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rserpool_security::rate_limit::{Rate, TokenBucket};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Where the ENRP presences go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrpMulticast {
    /// The group (and port). IANA has none for ENRP over TCP; ours is
    /// next to ASAP's announce group.
    pub group: SocketAddr,
    /// The IPv4 interface (its address) to send and join on (`None`:
    /// the system's route for the group).
    pub interface: Option<Ipv4Addr>,
}

impl EnrpMulticast {
    /// The default group: 239.0.0.51, port 9901.
    pub const DEFAULT_GROUP: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 51)), 9901);
}

impl Default for EnrpMulticast {
    fn default() -> Self {
        EnrpMulticast {
            group: Self::DEFAULT_GROUP,
            interface: None,
        }
    }
}

/// Datagrams larger than this are cut (a presence is well under).
const MAX_DATAGRAM: usize = 2048;

/// Datagrams handed to the core: a registrar per heartbeat cycle is a
/// few a second; a host flooding the group is cut here, before any
/// copy or decoding, and the rest are dropped and counted.
pub const HINT_RATE: Rate = Rate::new(100.0, 200.0);

/// Open the group socket: bound to the group's port (shared with other
/// registrars of the host), joined, loop on so that registrars of one
/// host hear each other.
pub(crate) fn open(cfg: &EnrpMulticast) -> std::io::Result<UdpSocket> {
    let group = cfg.group;
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let wildcard: IpAddr = match group {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    if group.ip().is_multicast() {
        // Bound to the group address (Linux): only its datagrams.
        if socket.bind(&group.into()).is_err() {
            socket.bind(&SocketAddr::new(wildcard, group.port()).into())?;
        }
        match group.ip() {
            IpAddr::V4(g) => {
                let interface = cfg.interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
                socket.join_multicast_v4(&g, &interface)?;
                socket.set_multicast_loop_v4(true)?;
                socket.set_multicast_ttl_v4(1)?;
                if let Some(i) = cfg.interface {
                    socket.set_multicast_if_v4(&i)?;
                }
            }
            IpAddr::V6(g) => {
                socket.join_multicast_v6(&g, 0)?;
                socket.set_multicast_loop_v6(true)?;
            }
        }
    } else {
        // A unicast "group" (tests): bound to it.
        socket.bind(&group.into())?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Send `presence` every `interval`, and give every datagram heard to
/// `hint` (its source and bytes) until it returns false.
pub(crate) async fn run(
    socket: UdpSocket,
    group: SocketAddr,
    presence: Vec<u8>,
    interval: Duration,
    mut hint: impl FnMut(SocketAddr, Vec<u8>) -> bool + Send,
) {
    let mut tick = tokio::time::interval(interval);
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut send_errors = 0u64;
    let mut admitted = TokenBucket::new(HINT_RATE, std::time::Instant::now());
    let (mut dropped, mut dropped_logged_at) = (0u64, std::time::Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = socket.send_to(&presence, group).await {
                    send_errors += 1;
                    if send_errors <= 5 {
                        tracing::warn!(%group, error = %e, "ENRP presence not multicast");
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let now = std::time::Instant::now();
                if !admitted.try_take(HINT_RATE, now) {
                    dropped += 1;
                    if now.duration_since(dropped_logged_at) >= Duration::from_secs(10) {
                        tracing::warn!(%group, dropped, "ENRP multicast datagrams over the rate dropped");
                        (dropped, dropped_logged_at) = (0, now);
                    }
                    continue;
                }
                if !hint(from, buf[..n.min(buf.len())].to_vec()) {
                    return;
                }
            }
        }
    }
}
