//! Registrars learned from ASAP_SERVER_ANNOUNCE (RFC 5352 sections 2.2.10
//! and 3.6), opt-in ([`crate::AnnounceConfig`]).
//!
//! The sans-IO part, `Announcements`, sits in both client cores: a
//! datagram received on the announce group (`handle_datagram`: source
//! address, bytes, time) is decoded; an ASAP_SERVER_ANNOUNCE adds its TCP
//! transport addresses to the hunt's registrar list or restarts their
//! T7-ENRPoutdate ([`crate::Hunter::learn`]); anything else is dropped.
//! Every outcome is counted ([`AnnounceStats`]) and warnings are limited
//! ([`LogBudget`]), so a flood costs bounded memory (the list's cap) and
//! bounded log lines.
//!
//! Announcements are untrusted (RFC 5355 2.12): they only propose
//! addresses. They never change the home registrar, never touch the
//! connection in use and never remove or reorder a configured registrar;
//! a learned registrar is authenticated by TLS like any other. SCTP
//! transports and announcements without a transport (RFC 5352 3.6: SCTP
//! at the source address) are of no use over TCP and are dropped.
//!
//! The driver part (`AnnounceSocket`, feature `driver`) is the UDP
//! socket: bound to the group's port (with SO_REUSEADDR, so that several
//! clients of a host can listen), joined to the group, multicast loop on.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_wire::{AsapMessage, Transport};

use crate::config::AnnounceConfig;
use crate::hunt::Hunter;

/// What the announce channel brought, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnnounceStats {
    /// Datagrams handed to the core.
    pub datagrams: u64,
    /// ASAP_SERVER_ANNOUNCE messages among them.
    pub announcements: u64,
    /// Datagrams that did not decode as an ASAP message (dropped).
    pub undecodable: u64,
    /// ASAP messages other than ASAP_SERVER_ANNOUNCE (dropped: a
    /// keep-alive, with or without the H flag, counts only on a registrar
    /// connection).
    pub unexpected: u64,
    /// Announcements without a usable TCP transport (dropped).
    pub unusable: u64,
    /// Registrars added to the list.
    pub learned: u64,
    /// Of those, how many replaced the least recently announced one
    /// because the list was full.
    pub replaced: u64,
    /// Announcements of registrars already in the list (expiry restarted,
    /// or a configured registrar).
    pub refreshed: u64,
    /// Learned registrars removed because they were not announced again
    /// in time (T7-ENRPoutdate).
    pub expired: u64,
    /// Datagrams received while learning is off (dropped).
    pub ignored: u64,
}

/// A budget of log lines for what a remote party can repeat at will: at
/// most `per_window` lines per `window`, then one summary line of how
/// many were suppressed, when the next window opens. Sans-IO: time is an
/// input.
#[derive(Debug, Clone)]
pub struct LogBudget {
    window: Duration,
    per_window: u32,
    opened: Option<Instant>,
    used: u32,
    suppressed: u64,
    what: &'static str,
}

impl LogBudget {
    /// At most `per_window` lines about `what` per `window`.
    pub fn new(what: &'static str, per_window: u32, window: Duration) -> Self {
        LogBudget {
            window,
            per_window,
            opened: None,
            used: 0,
            suppressed: 0,
            what,
        }
    }

    /// Whether one more line may be logged now (if not, it is counted for
    /// the summary).
    pub fn allow(&mut self, now: Instant) -> bool {
        let expired = self
            .opened
            .map_or(true, |t| now.saturating_duration_since(t) >= self.window);
        if expired {
            if self.suppressed > 0 {
                tracing::warn!(
                    "{} more warnings about {} were suppressed in {:?}",
                    self.suppressed,
                    self.what,
                    self.window
                );
            }
            self.opened = Some(now);
            self.used = 0;
            self.suppressed = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Log lines per window for announce-channel warnings, and the window.
const LOG_LINES: u32 = 5;
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// The announcement handling of a client core.
#[derive(Debug, Clone)]
pub(crate) struct Announcements {
    /// T7-ENRPoutdate; `None` while learning is off.
    expiry: Option<Duration>,
    max_learned: usize,
    stats: AnnounceStats,
    log: LogBudget,
}

impl Announcements {
    /// Off until [`Announcements::enable`].
    pub(crate) fn new() -> Self {
        Announcements {
            expiry: None,
            max_learned: 0,
            stats: AnnounceStats::default(),
            log: LogBudget::new("the announce channel", LOG_LINES, LOG_WINDOW),
        }
    }

    /// Warning lines written in the current window and suppressed (tests).
    #[cfg(test)]
    pub(crate) fn log_lines(&self) -> (u32, u64) {
        (self.log.used, self.log.suppressed)
    }

    /// Learn registrars as `config` says.
    pub(crate) fn enable(&mut self, config: &AnnounceConfig, hunter: &mut Hunter) {
        let max = config.max_learned.min(AnnounceConfig::MAX_LEARNED_LIMIT);
        self.expiry = Some(config.expiry);
        self.max_learned = max;
        hunter.set_max_learned(max);
    }

    /// The counters (expiries as the hunt counted them: it also expires
    /// entries before each attempt).
    pub(crate) fn stats(&self, hunter: &Hunter) -> AnnounceStats {
        AnnounceStats {
            expired: hunter.expired_total(),
            ..self.stats
        }
    }

    /// A datagram arrived from `from` on the announce group. Returns
    /// whether registrars were added to the list.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        hunter: &mut Hunter,
    ) -> bool {
        self.stats.datagrams += 1;
        match AsapMessage::decode(bytes) {
            Ok(d) => self.handle_message(now, from, d.message, hunter),
            Err(e) => {
                self.stats.undecodable += 1;
                if self.log.allow(now) {
                    tracing::warn!(%from, "dropping an undecodable datagram on the announce channel: {e}");
                }
                false
            }
        }
    }

    /// A decoded message arrived from `from` on the announce group.
    /// Returns whether registrars were added to the list.
    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        message: AsapMessage,
        hunter: &mut Hunter,
    ) -> bool {
        let AsapMessage::ServerAnnounce {
            server_id,
            transports,
        } = message
        else {
            // Only registrar connections carry the other messages; a
            // keep-alive with the H flag here is an attempt to move a PE
            // (RFC 5355 2.12, DESIGN section 4): dropped.
            self.stats.unexpected += 1;
            if self.log.allow(now) {
                tracing::warn!(%from, "dropping {} received on the announce channel", message.name());
            }
            return false;
        };
        self.stats.announcements += 1;
        let Some(expiry) = self.expiry else {
            self.stats.ignored += 1;
            return false;
        };
        hunter.expire(now);
        let mut addresses: Vec<SocketAddr> = Vec::new();
        let mut learnable = 0;
        for t in &transports {
            if let Some(a) = usable(t) {
                if !addresses.contains(&a) {
                    addresses.push(a);
                    if !hunter.is_configured(a) {
                        learnable += 1;
                    }
                }
            }
            // More than the cap would only replace each other.
            if learnable >= self.max_learned {
                break;
            }
        }
        if addresses.is_empty() {
            self.stats.unusable += 1;
            if self.log.allow(now) {
                tracing::warn!(%from, "dropping an ASAP_SERVER_ANNOUNCE of registrar {server_id:#010x}: no usable TCP transport");
            }
            return false;
        }
        let outcome = hunter.learn(server_id, addresses.iter().copied(), now + expiry);
        self.stats.learned += (outcome.added + outcome.replaced) as u64;
        self.stats.replaced += outcome.replaced as u64;
        self.stats.refreshed += (outcome.refreshed + outcome.configured) as u64;
        if outcome.added + outcome.replaced > 0 && self.log.allow(now) {
            tracing::info!(
                %from,
                "learned registrar {server_id:#010x} at {} from its announcement ({} learned now{})",
                list(&addresses),
                hunter.learned_len(),
                if outcome.replaced > 0 { ", the list is full: replaced the stalest" } else { "" }
            );
        }
        outcome.added + outcome.replaced > 0
    }

    /// Drop the learned registrars not announced again in time.
    pub(crate) fn expire(&mut self, now: Instant, hunter: &mut Hunter) {
        let n = hunter.expire(now);
        if n > 0 {
            tracing::debug!("{n} learned registrars expired (T7-ENRPoutdate)");
        }
    }
}

/// The address of a TCP transport a client can connect to: not the
/// unspecified, a multicast or the broadcast address, not port 0.
fn usable(t: &Transport) -> Option<SocketAddr> {
    let Transport::Tcp { port, address, .. } = t else {
        return None;
    };
    let ok = *port != 0
        && !address.is_unspecified()
        && !address.is_multicast()
        && !matches!(address, IpAddr::V4(v4) if v4.is_broadcast());
    ok.then(|| SocketAddr::new(*address, *port))
}

fn list(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ASAP_SERVER_ANNOUNCE of `server_id` naming TCP `addresses` (tests).
#[cfg(test)]
pub(crate) fn announce(server_id: u32, addresses: &[SocketAddr]) -> AsapMessage {
    AsapMessage::ServerAnnounce {
        server_id: rserpool_wire::ServerId::new(server_id),
        transports: addresses
            .iter()
            .map(|a| Transport::Tcp {
                port: a.port(),
                transport_use: rserpool_wire::TransportUse::DataPlusControl,
                address: a.ip(),
            })
            .collect(),
    }
}

#[cfg(feature = "driver")]
pub(crate) use socket::AnnounceSocket;

#[cfg(feature = "driver")]
mod socket {
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use socket2::{Domain, Protocol, Socket, Type};
    use tokio::net::UdpSocket;

    use crate::config::AnnounceConfig;
    use crate::error::ClientError;

    /// Largest datagram read (larger ones are cut and then do not decode).
    const MAX_DATAGRAM: usize = 65_536;

    /// The UDP socket of the announce group.
    #[derive(Debug)]
    pub(crate) struct AnnounceSocket {
        socket: UdpSocket,
        buf: Box<[u8]>,
        group: SocketAddr,
        errors: u64,
    }

    impl AnnounceSocket {
        /// Bind to the group's port, join it. Must be called within a
        /// tokio runtime.
        pub(crate) fn open(config: &AnnounceConfig) -> Result<Self, ClientError> {
            let group = config.group;
            let err = |e: io::Error| ClientError::Announce {
                group,
                reason: e.to_string(),
            };
            let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
                .map_err(err)?;
            socket.set_reuse_address(true).map_err(err)?;
            let wildcard: IpAddr = match group {
                SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            if group.ip().is_multicast() {
                // Bound to the group address (Linux): only its datagrams.
                let bound = socket.bind(&group.into());
                if bound.is_err() {
                    socket
                        .bind(&SocketAddr::new(wildcard, group.port()).into())
                        .map_err(err)?;
                }
                match group.ip() {
                    IpAddr::V4(g) => {
                        let interface = config.interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
                        socket.join_multicast_v4(&g, &interface).map_err(err)?;
                        socket.set_multicast_loop_v4(true).map_err(err)?;
                    }
                    IpAddr::V6(g) => {
                        socket.join_multicast_v6(&g, 0).map_err(err)?;
                        socket.set_multicast_loop_v6(true).map_err(err)?;
                    }
                }
            } else {
                socket.bind(&group.into()).map_err(err)?;
            }
            socket.set_nonblocking(true).map_err(err)?;
            let socket = UdpSocket::from_std(socket.into()).map_err(err)?;
            tracing::info!(%group, "learning registrars from ASAP_SERVER_ANNOUNCE");
            Ok(AnnounceSocket {
                socket,
                buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
                group,
                errors: 0,
            })
        }

        /// The first `len` bytes of the last datagram.
        pub(crate) fn datagram(&self, len: usize) -> &[u8] {
            &self.buf[..len.min(self.buf.len())]
        }

        /// Wait for the next datagram: its source and length (its bytes
        /// are [`AnnounceSocket::datagram`]). Cancel-safe. Receive errors
        /// are logged (the first few) and skipped.
        pub(crate) async fn recv(&mut self) -> (SocketAddr, usize) {
            loop {
                match self.socket.recv_from(&mut self.buf).await {
                    Ok((n, from)) => return (from, n.min(self.buf.len())),
                    Err(e) => {
                        self.errors += 1;
                        if self.errors <= 5 {
                            tracing::warn!(group = %self.group, "announce channel: {e}");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_budget_allows_a_few_lines_per_window() {
        let t0 = Instant::now();
        let mut b = LogBudget::new("x", 2, Duration::from_secs(10));
        assert!(b.allow(t0));
        assert!(b.allow(t0));
        assert!(!b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        assert_eq!(b.suppressed, 2);
        assert!(b.allow(t0 + Duration::from_secs(10)));
        assert_eq!(b.suppressed, 0);
    }

    #[test]
    fn only_tcp_transports_at_real_addresses_are_usable() {
        let tcp = |a: &str, port| Transport::Tcp {
            port,
            transport_use: rserpool_wire::TransportUse::DataPlusControl,
            address: a.parse().expect("ip"),
        };
        assert_eq!(
            usable(&tcp("192.0.2.1", 3864)),
            Some("192.0.2.1:3864".parse().expect("addr"))
        );
        assert_eq!(usable(&tcp("0.0.0.0", 3864)), None);
        assert_eq!(usable(&tcp("239.0.0.50", 3864)), None);
        assert_eq!(usable(&tcp("255.255.255.255", 3864)), None);
        assert_eq!(usable(&tcp("192.0.2.1", 0)), None);
        let sctp = Transport::Sctp {
            port: 3863,
            transport_use: rserpool_wire::TransportUse::DataPlusControl,
            addresses: vec!["192.0.2.1".parse().expect("ip")],
        };
        assert_eq!(usable(&sctp), None);
    }
}
