//! Who the other end of a connection proved to be, as the protocol cores
//! see it: a namespace (how it was proven) and a value, after the
//! authorised peer database of DESIGN section 4 (PSK identity,
//! certificate subject, DNS or IP subject-alt-name). Needs no TLS stack:
//! a deterministic simulator builds these directly.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A kind of TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// With an external pre-shared key (both ends authenticated).
    Psk,
    /// With the server's certificate (and maybe the client's).
    Certificate,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::Psk => "PSK",
            Mechanism::Certificate => "certificate",
        })
    }
}

/// The namespace of a [`PeerIdentity`]: where its value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Namespace {
    /// The identity of an external pre-shared key.
    Psk,
    /// A verified certificate's subject common name (or its whole
    /// subject when it has no common name).
    CertificateSubject,
    /// A verified certificate's subject-alt-name of type dNSName.
    DnsName,
    /// A verified certificate's subject-alt-name of type iPAddress.
    IpAddress,
    /// A certificate handshake in which the peer showed no certificate.
    Anonymous,
}

impl Namespace {
    /// The prefix of its identities' [`Display`](fmt::Display) form
    /// (`psk`, `cert`, `dns`, `ip`, `anonymous`).
    pub fn prefix(self) -> &'static str {
        match self {
            Namespace::Psk => "psk",
            Namespace::CertificateSubject => "cert",
            Namespace::DnsName => "dns",
            Namespace::IpAddress => "ip",
            Namespace::Anonymous => "anonymous",
        }
    }

    /// The mechanism that proves identities of this namespace (`None`:
    /// nothing was proven).
    pub fn mechanism(self) -> Option<Mechanism> {
        match self {
            Namespace::Psk => Some(Mechanism::Psk),
            Namespace::CertificateSubject | Namespace::DnsName | Namespace::IpAddress => {
                Some(Mechanism::Certificate)
            }
            Namespace::Anonymous => None,
        }
    }
}

/// Who the other end of a connection proved to be: a namespace
/// ([`PeerIdentity::namespace`]) and a value ([`PeerIdentity::value`]).
///
/// Its [`Display`](fmt::Display) form is compact and stable, for logs,
/// events and the admin API: `psk:NAME`, `cert:SUBJECT`, `dns:NAME`,
/// `ip:ADDRESS`, `anonymous`; [`FromStr`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// A PSK handshake with this identity.
    Psk(String),
    /// A verified certificate with this subject (its common name, or the
    /// whole subject when it has none).
    Certificate(String),
    /// A verified certificate identified by this dNSName
    /// subject-alt-name (a certificate without a common name).
    DnsName(String),
    /// A verified certificate identified by this iPAddress
    /// subject-alt-name (a certificate without a common name or dNSName).
    IpAddress(IpAddr),
    /// A certificate handshake in which the client showed no certificate
    /// (a pool user that authenticated the registrar only).
    Anonymous,
}

impl PeerIdentity {
    /// Its namespace.
    pub fn namespace(&self) -> Namespace {
        match self {
            PeerIdentity::Psk(_) => Namespace::Psk,
            PeerIdentity::Certificate(_) => Namespace::CertificateSubject,
            PeerIdentity::DnsName(_) => Namespace::DnsName,
            PeerIdentity::IpAddress(_) => Namespace::IpAddress,
            PeerIdentity::Anonymous => Namespace::Anonymous,
        }
    }

    /// Its value within the namespace (empty for [`PeerIdentity::Anonymous`]).
    pub fn value(&self) -> std::borrow::Cow<'_, str> {
        match self {
            PeerIdentity::Psk(v) | PeerIdentity::Certificate(v) | PeerIdentity::DnsName(v) => {
                v.as_str().into()
            }
            PeerIdentity::IpAddress(ip) => ip.to_string().into(),
            PeerIdentity::Anonymous => "".into(),
        }
    }

    /// The mechanism that proved it (`None`: nothing was proven).
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.namespace().mechanism()
    }

    /// Whether it proves nothing (a client without a certificate).
    pub fn is_anonymous(&self) -> bool {
        matches!(self, PeerIdentity::Anonymous)
    }

    /// The identity of a verified certificate from its names: the subject
    /// common name when it has one (`subject` is then that name), else
    /// its first dNSName subject-alt-name, else its first iPAddress one,
    /// else the whole `subject` (`key=value,...`).
    pub fn of_certificate(
        common_name: Option<&str>,
        subject: &str,
        dns_names: &[String],
        ip_addresses: &[IpAddr],
    ) -> PeerIdentity {
        if let Some(cn) = common_name {
            PeerIdentity::Certificate(cn.to_owned())
        } else if let Some(d) = dns_names.first() {
            PeerIdentity::DnsName(d.clone())
        } else if let Some(ip) = ip_addresses.first() {
            PeerIdentity::IpAddress(*ip)
        } else {
            PeerIdentity::Certificate(subject.to_owned())
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Anonymous => f.write_str("anonymous"),
            other => write!(f, "{}:{}", other.namespace().prefix(), other.value()),
        }
    }
}

/// A text that is no [`PeerIdentity`] (its [`Display`](fmt::Display) form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is no peer identity (psk:NAME, cert:SUBJECT, dns:NAME, ip:ADDRESS or anonymous)")]
pub struct InvalidIdentity(pub String);

impl FromStr for PeerIdentity {
    type Err = InvalidIdentity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidIdentity(s.to_owned());
        if s == "anonymous" {
            return Ok(PeerIdentity::Anonymous);
        }
        let (prefix, value) = s.split_once(':').ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        match prefix {
            "psk" => Ok(PeerIdentity::Psk(value.to_owned())),
            "cert" => Ok(PeerIdentity::Certificate(value.to_owned())),
            "dns" => Ok(PeerIdentity::DnsName(value.to_owned())),
            "ip" => value
                .parse()
                .map(PeerIdentity::IpAddress)
                .map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_stable_and_reads_back() {
        let all = [
            (PeerIdentity::Psk("pe-1".into()), "psk:pe-1"),
            (PeerIdentity::Certificate("pu-7".into()), "cert:pu-7"),
            (PeerIdentity::DnsName("r1.example".into()), "dns:r1.example"),
            (
                PeerIdentity::IpAddress("2001:db8::1".parse().unwrap()),
                "ip:2001:db8::1",
            ),
            (PeerIdentity::Anonymous, "anonymous"),
        ];
        for (id, text) in all {
            assert_eq!(id.to_string(), text);
            assert_eq!(text.parse::<PeerIdentity>(), Ok(id.clone()));
            assert_eq!(id.namespace().prefix(), text.split(':').next().unwrap());
        }
        assert!("psk:".parse::<PeerIdentity>().is_err());
        assert!("ip:nope".parse::<PeerIdentity>().is_err());
        assert!("x:y".parse::<PeerIdentity>().is_err());
    }

    #[test]
    fn certificate_names_in_order() {
        let dns = vec!["a.example".to_string()];
        let ips = vec!["10.0.0.1".parse().unwrap()];
        let of = PeerIdentity::of_certificate;
        assert_eq!(
            of(Some("cn"), "cn", &dns, &ips),
            PeerIdentity::Certificate("cn".into())
        );
        assert_eq!(
            of(None, "O=x", &dns, &ips),
            PeerIdentity::DnsName("a.example".into())
        );
        assert_eq!(of(None, "O=x", &[], &ips), PeerIdentity::IpAddress(ips[0]));
        assert_eq!(
            of(None, "O=x", &[], &[]),
            PeerIdentity::Certificate("O=x".into())
        );
        assert_eq!(PeerIdentity::Anonymous.namespace().mechanism(), None);
    }
}
