//! Who is on the other end of an ASAP connection, as the core sees it:
//! the authenticated identity (or none in insecure mode), the source
//! address, and what that allows (RFC 5355 section 2.1: only an
//! authenticated PE identity may register).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rserpool_handlespace::{ConnId, Identity};
use rserpool_security::PeerIdentity;

/// What the driver knows about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The identity the TLS handshake proved; `None` in insecure mode.
    pub identity: Option<PeerIdentity>,
    /// The connection's source address.
    pub address: SocketAddr,
}

/// A connection's standing in the core.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The key that binds PE identifiers and rate limits: the proven
    /// identity, or the source address when there is none.
    pub identity: Identity,
    /// Source address (IPv4-mapped IPv6 folded to IPv4).
    pub address: SocketAddr,
    /// Whether this peer may register PEs: PSK and certificate identities
    /// may; anonymous TLS clients (pool users that only authenticated the
    /// registrar) may not. In insecure mode everyone may.
    pub may_register: bool,
    /// Malformed messages received so far.
    pub malformed: u32,
    /// When the core learnt of the connection.
    pub connected_at: Instant,
}

/// An open connection as operators see it (admin interface, RFC 5525
/// has no table for ASAP associations; this is ours).
#[derive(Debug, Clone, Copy)]
pub struct OpenConnection<'a> {
    /// The driver's connection number.
    pub conn: ConnId,
    /// The identity PEs registered over it are bound to (the proven
    /// identity, or the source address when there is none).
    pub identity: &'a Identity,
    /// Source address.
    pub address: SocketAddr,
    /// Whether it may register PEs (anonymous TLS clients may not).
    pub may_register: bool,
    /// When it was established (the core's clock).
    pub connected_at: Instant,
}

impl Peer {
    pub(crate) fn new(info: &PeerInfo, now: Instant) -> Peer {
        let ip = canonical(info.address.ip());
        let address = SocketAddr::new(ip, info.address.port());
        let (key, may_register) = match &info.identity {
            Some(id @ (PeerIdentity::Psk(_) | PeerIdentity::Certificate(_))) => {
                (id.to_string(), true)
            }
            Some(PeerIdentity::Anonymous) => (format!("anonymous@{ip}"), false),
            None => (format!("insecure@{ip}"), true),
        };
        Peer {
            identity: Identity(key.into()),
            address,
            may_register,
            malformed: 0,
            connected_at: now,
        }
    }
}

/// Fold an IPv4-mapped IPv6 address to IPv4, so that the own-address rule
/// compares like with like.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(identity: Option<PeerIdentity>, addr: &str) -> PeerInfo {
        PeerInfo {
            identity,
            address: addr.parse().unwrap(),
        }
    }

    #[test]
    fn identities_and_rights() {
        let now = Instant::now();
        let p = Peer::new(
            &info(Some(PeerIdentity::Psk("pe1".into())), "10.0.0.1:5"),
            now,
        );
        assert_eq!(&*p.identity.0, "psk:pe1");
        assert!(p.may_register);
        let p = Peer::new(&info(Some(PeerIdentity::Anonymous), "10.0.0.1:5"), now);
        assert_eq!(&*p.identity.0, "anonymous@10.0.0.1");
        assert!(!p.may_register);
        let p = Peer::new(&info(None, "[::ffff:10.0.0.2]:5"), now);
        assert_eq!(&*p.identity.0, "insecure@10.0.0.2");
        assert_eq!(p.address.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
    }
}
