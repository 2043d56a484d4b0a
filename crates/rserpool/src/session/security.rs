//! The security level of a PU-PE session (RFC 5355 2.9): what its
//! transport proved, ordered so that a failover can be checked to reach at
//! least the level of the session it replaces, and a cookie to be echoed
//! only over a channel as strong as the one it was issued on (2.16).

use rserpool_security::PeerIdentity;
use serde::Serialize;

/// How well a PU-PE session is protected, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecurityLevel {
    /// Plain TCP: anyone on the path reads and changes everything (the
    /// insecure lab mode).
    Plain,
    /// TLS in which the PE proved who it is (a CA-signed certificate) and
    /// the PU did not.
    ServerAuthenticated,
    /// TLS in which both proved who they are (a pre-shared key both hold,
    /// or certificates both ways).
    MutuallyAuthenticated,
}

impl SecurityLevel {
    /// Its byte in a cookie (0, 1, 2).
    pub fn to_byte(self) -> u8 {
        match self {
            SecurityLevel::Plain => 0,
            SecurityLevel::ServerAuthenticated => 1,
            SecurityLevel::MutuallyAuthenticated => 2,
        }
    }

    /// The level of a cookie's byte.
    pub fn from_byte(b: u8) -> Option<SecurityLevel> {
        match b {
            0 => Some(SecurityLevel::Plain),
            1 => Some(SecurityLevel::ServerAuthenticated),
            2 => Some(SecurityLevel::MutuallyAuthenticated),
            _ => None,
        }
    }

    /// The level of a TLS session seen from the PU: a PSK both hold
    /// authenticates both ends; a certificate handshake authenticates the
    /// PE, and the PU only if it showed a certificate of its own, which
    /// the PU cannot tell was checked, so it counts as the PE's only.
    pub fn of_server(identity: &PeerIdentity) -> SecurityLevel {
        match identity {
            PeerIdentity::Psk(_) => SecurityLevel::MutuallyAuthenticated,
            _ => SecurityLevel::ServerAuthenticated,
        }
    }

    /// The level of a TLS session seen from the PE: the client proved
    /// who it is (a PSK or a verified certificate) or it did not.
    pub fn of_client(identity: &PeerIdentity) -> SecurityLevel {
        if identity.is_anonymous() {
            SecurityLevel::ServerAuthenticated
        } else {
            SecurityLevel::MutuallyAuthenticated
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            SecurityLevel::Plain => "plain TCP",
            SecurityLevel::ServerAuthenticated => "TLS, PE authenticated",
            SecurityLevel::MutuallyAuthenticated => "TLS, both authenticated",
        }
    }
}

impl std::fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_survive_their_byte() {
        use SecurityLevel::*;
        assert!(Plain < ServerAuthenticated && ServerAuthenticated < MutuallyAuthenticated);
        for l in [Plain, ServerAuthenticated, MutuallyAuthenticated] {
            assert_eq!(SecurityLevel::from_byte(l.to_byte()), Some(l));
        }
        assert_eq!(SecurityLevel::from_byte(3), None);
    }

    #[test]
    fn levels_of_handshakes() {
        let psk = PeerIdentity::Psk("pu".into());
        let cert = PeerIdentity::Certificate("pe.example".into());
        assert_eq!(
            SecurityLevel::of_server(&psk),
            SecurityLevel::MutuallyAuthenticated
        );
        assert_eq!(
            SecurityLevel::of_server(&cert),
            SecurityLevel::ServerAuthenticated
        );
        assert_eq!(
            SecurityLevel::of_client(&cert),
            SecurityLevel::MutuallyAuthenticated
        );
        assert_eq!(
            SecurityLevel::of_client(&PeerIdentity::Anonymous),
            SecurityLevel::ServerAuthenticated
        );
    }
}
