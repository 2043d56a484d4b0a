//! Who is on the other end of a connection, as the core sees it: the
//! connection's kind ([`ConnKind`]: which listener accepted it, or that
//! the registrar opened it), the authenticated identity (or none in
//! insecure mode), the source address, and what that allows (RFC 5355
//! section 2.1: only an authenticated PE identity may register).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rserpool_handlespace::{ConnId, Identity};
use rserpool_security::{Mechanism, PeerIdentity};
use serde::Serialize;

/// The protocol a connection carries: registrar channels carry one
/// protocol each, told apart by their listener (DESIGN section 3: ASAP
/// and ENRP use separate listeners; over SCTP the PPID would tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// ASAP (RFC 5352): PEs and PUs with their registrar.
    Asap,
    /// ENRP (RFC 5353): registrars with each other.
    Enrp,
}

impl Protocol {
    /// Its name, for logs (`ASAP`, `ENRP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Asap => "ASAP",
            Protocol::Enrp => "ENRP",
        }
    }
}

/// What a connection is: which listener accepted it, or that this
/// registrar opened it ([`crate::RegistrarCore::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnKind {
    /// Accepted on an ASAP listener: PEs and PUs.
    Asap,
    /// Accepted on an ASAP listener for pool users only (DESIGN section
    /// 4, passive listeners): handle resolutions and unreachable reports;
    /// registrations and deregistrations are refused.
    AsapPoolUser,
    /// Accepted on an ENRP listener: a peer registrar.
    Enrp,
    /// Opened by this registrar to a peer registrar.
    EnrpOutbound,
}

impl ConnKind {
    /// The protocol it carries.
    pub fn protocol(self) -> Protocol {
        match self {
            ConnKind::Asap | ConnKind::AsapPoolUser => Protocol::Asap,
            ConnKind::Enrp | ConnKind::EnrpOutbound => Protocol::Enrp,
        }
    }

    /// Whether this registrar opens connections of this kind (the others
    /// are accepted).
    pub fn is_outbound(self) -> bool {
        matches!(self, ConnKind::EnrpOutbound)
    }

    /// Its name, as in events and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            ConnKind::Asap => "asap",
            ConnKind::AsapPoolUser => "asap_pool_user",
            ConnKind::Enrp => "enrp",
            ConnKind::EnrpOutbound => "enrp_outbound",
        }
    }
}

/// What the driver knows about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The identity the TLS handshake proved; `None` in insecure mode.
    pub identity: Option<PeerIdentity>,
    /// The address of the other side (the source address of an accepted
    /// connection, the address dialled for an outbound one).
    pub address: SocketAddr,
    /// What the connection is.
    pub kind: ConnKind,
}

impl ClientInfo {
    /// A connection of `kind` with the other side at `address`, which
    /// proved `identity` (`None`: insecure mode).
    pub fn new(identity: Option<PeerIdentity>, address: SocketAddr, kind: ConnKind) -> Self {
        ClientInfo {
            identity,
            address,
            kind,
        }
    }
}

/// How a connection's peer authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A pre-shared key.
    Psk,
    /// A verified client certificate.
    Certificate,
    /// A certificate handshake without a client certificate.
    Anonymous,
    /// Insecure mode: no authentication at all.
    Insecure,
}

/// A connection's standing in the core.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// What the connection is.
    pub kind: ConnKind,
    /// The identity the other side proved (`None`: insecure mode).
    pub peer: Option<PeerIdentity>,
    /// The key that binds PE identifiers and rate limits: the proven
    /// identity, or the source address when there is none.
    pub identity: Identity,
    /// How it authenticated.
    pub credential: Credential,
    /// Who it counts as when it reports a PE unreachable (RFC 5355 2.13):
    /// its identity when authenticated, otherwise its source prefix
    /// ([`source_prefix`]), so one host counts once however many
    /// connections or addresses of one /64 it uses.
    pub reporter: Identity,
    /// Source address (IPv4-mapped IPv6 folded to IPv4).
    pub address: SocketAddr,
    /// Whether this peer may register PEs: PSK and certificate identities
    /// may; anonymous TLS clients (pool users that only authenticated the
    /// registrar) may not. In insecure mode everyone may.
    pub may_register: bool,
    /// Malformed messages received so far.
    pub malformed: u32,
    /// The core asked the driver to close the connection: what it still
    /// sends is ignored, and it is closed only once.
    pub closing: bool,
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
    /// What the connection is.
    pub kind: ConnKind,
    /// The identity the other side proved (`None`: insecure mode).
    pub peer: Option<&'a PeerIdentity>,
    /// Whether it may register PEs (anonymous TLS clients may not).
    pub may_register: bool,
    /// When it was established (the core's clock).
    pub connected_at: Instant,
}

impl Client {
    pub(crate) fn new(info: &ClientInfo, now: Instant) -> Client {
        let ip = canonical(info.address.ip());
        let address = SocketAddr::new(ip, info.address.port());
        let prefix = source_prefix(ip);
        let (key, credential) = match info.identity.as_ref().map(|i| (i, i.mechanism())) {
            Some((id, Some(Mechanism::Psk))) => (id.to_string(), Credential::Psk),
            Some((id, Some(Mechanism::Certificate))) => (id.to_string(), Credential::Certificate),
            Some((_, None)) => (format!("anonymous@{ip}"), Credential::Anonymous),
            None => (format!("insecure@{ip}"), Credential::Insecure),
        };
        let identity = Identity(key.into());
        let reporter = match credential {
            Credential::Psk | Credential::Certificate => identity.clone(),
            Credential::Anonymous => Identity(format!("anonymous@{}", show_prefix(prefix)).into()),
            Credential::Insecure => Identity(format!("insecure@{}", show_prefix(prefix)).into()),
        };
        let may_register =
            credential != Credential::Anonymous && info.kind != ConnKind::AsapPoolUser;
        Client {
            kind: info.kind,
            peer: info.identity.clone(),
            identity,
            credential,
            reporter,
            address,
            may_register,
            malformed: 0,
            closing: false,
            connected_at: now,
        }
    }
}

impl Client {
    /// Whether it proved no identity (anonymous TLS or insecure mode).
    pub(crate) fn is_anonymous(&self) -> bool {
        matches!(
            self.credential,
            Credential::Anonymous | Credential::Insecure
        )
    }
}

/// What "one source address" means for limits: an IPv4 address, or the
/// /64 prefix of an IPv6 address (one host or one subnet usually holds a
/// whole /64, so counting its addresses apart would count one attacker
/// 2^64 times).
pub fn source_prefix(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

fn show_prefix(p: IpAddr) -> String {
    match p {
        IpAddr::V6(_) => format!("{p}/64"),
        v4 => v4.to_string(),
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

    fn info(identity: Option<PeerIdentity>, addr: &str) -> ClientInfo {
        ClientInfo::new(identity, addr.parse().unwrap(), ConnKind::Asap)
    }

    #[test]
    fn identities_and_rights() {
        let now = Instant::now();
        let p = Client::new(
            &info(Some(PeerIdentity::Psk("pe1".into())), "10.0.0.1:5"),
            now,
        );
        assert_eq!(&*p.identity.0, "psk:pe1");
        assert!(p.may_register);
        let p = Client::new(&info(Some(PeerIdentity::Anonymous), "10.0.0.1:5"), now);
        assert_eq!(&*p.identity.0, "anonymous@10.0.0.1");
        assert!(!p.may_register);
        assert_eq!(&*p.reporter.0, "anonymous@10.0.0.1");
        assert!(p.is_anonymous());
        let p = Client::new(&info(None, "[::ffff:10.0.0.2]:5"), now);
        assert_eq!(&*p.identity.0, "insecure@10.0.0.2");
        assert_eq!(p.address.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
        // Anonymous reporters of one IPv6 /64 are one reporter.
        let a = Client::new(&info(Some(PeerIdentity::Anonymous), "[2001:db8::1]:5"), now);
        let b = Client::new(
            &info(Some(PeerIdentity::Anonymous), "[2001:db8::ffff:1:2]:6"),
            now,
        );
        assert_ne!(a.identity, b.identity);
        assert_eq!(a.reporter, b.reporter);
        assert_eq!(&*a.reporter.0, "anonymous@2001:db8::/64");
        let p = Client::new(
            &info(Some(PeerIdentity::Psk("pu".into())), "[2001:db8::1]:5"),
            now,
        );
        assert_eq!(p.reporter, p.identity);
        assert!(!p.is_anonymous());
    }
}
