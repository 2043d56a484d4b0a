//! Owns [`IpNet`], an address range in CIDR notation (`10.0.0.0/8`,
//! `2001:db8::/32`, or one address): a tiny typed parser, so the database
//! needs no extra crate. Addresses are compared in canonical form (an
//! IPv4-mapped IPv6 address is its IPv4 address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range: a network address and a prefix length. One address
/// is a range of one (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    network: IpAddr,
    len: u8,
}

/// Why a text is no [`IpNet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The part before `/` is no IP address.
    #[error("{0:?} is no IP address or CIDR range (10.0.0.0/8, 2001:db8::/32, 192.0.2.7)")]
    NoAddress(String),
    /// The prefix length is no number or longer than the address.
    #[error("{written:?}: the prefix length must be 0 to {max}")]
    Length {
        /// The range as written.
        written: String,
        /// 32 or 128.
        max: u8,
    },
    /// Bits set after the prefix (`10.1.2.3/8`): probably a mistake.
    #[error("{written:?} has host bits set; the range is {network}")]
    HostBits {
        /// The range as written.
        written: String,
        /// The range it probably means.
        network: IpNet,
    },
}

/// The canonical form of an address: IPv4-mapped IPv6 as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// `ip` with every bit after the first `len` cleared.
pub(crate) fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl IpNet {
    /// The range of `len` bits at `network` (host bits are cleared; `len`
    /// is capped at the address length).
    pub fn new(network: IpAddr, len: u8) -> IpNet {
        let network = canonical(network);
        let len = len.min(max_len(network));
        IpNet {
            network: mask(network, len),
            len,
        }
    }

    /// One address.
    pub fn host(ip: IpAddr) -> IpNet {
        let ip = canonical(ip);
        IpNet::new(ip, max_len(ip))
    }

    /// Its network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Its prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether it holds `ip` (compared in canonical form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.len) == self.network
    }

    /// Whether it is all of its address family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.len == 0
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl FromStr for IpNet {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| NetError::NoAddress(s.to_owned()))?;
        let ip = canonical(ip);
        let max = max_len(ip);
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => {
                    return Err(NetError::Length {
                        written: s.to_owned(),
                        max,
                    })
                }
            },
        };
        let net = IpNet::new(ip, len);
        if net.network != ip {
            return Err(NetError::HostBits {
                written: s.to_owned(),
                network: net,
            });
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_hosts() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::a00:1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped is IPv4");
        let h: IpNet = "192.0.2.7".parse().unwrap();
        assert_eq!(h.prefix_len(), 32);
        assert!(h.contains(ip("192.0.2.7")) && !h.contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.is_everything() && all.contains(ip("1.2.3.4")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert_eq!("::ffff:10.0.0.0/8".parse::<IpNet>().unwrap(), n);
    }

    #[test]
    fn refuses_what_is_no_range() {
        assert!(matches!(
            "10.0.0/8".parse::<IpNet>(),
            Err(NetError::NoAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(NetError::Length { max: 32, .. })
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<IpNet>(),
            Err(NetError::Length { .. })
        ));
        let e = "10.1.2.3/8".parse::<IpNet>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.1.2.3/8\" has host bits set; the range is 10.0.0.0/8"
        );
    }
}
