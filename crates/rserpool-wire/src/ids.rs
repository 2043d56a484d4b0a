//! The identifiers every crate of the suite shares: [`PeId`] and
//! [`ServerId`], the two 32-bit identifiers of the protocols, and
//! [`ConnId`], the handle a core gives a connection.
//!
//! * A PE identifier names a pool element in its pool: the PE picks it at
//!   random when it starts (RFC 5351 section 2.2, RFC 5352 section 3.1
//!   R2.2) and keeps it when it re-registers. It is the PE Identifier of
//!   the Pool Element parameter (RFC 5354 section 3.10) and of the PE
//!   Identifier parameter.
//! * A server identifier names a registrar (ENRP server): non-zero,
//!   random, unchanged for the server's lifetime (RFC 5353 section
//!   3.2.1). It is the Home ENRP Server Identifier of a Pool Element
//!   parameter, "all 0s if the PE's Home ENRP server is undetermined"
//!   ([`ServerId::UNDETERMINED`], RFC 5354 section 3.10), the Server ID of
//!   the Server Information parameter (RFC 5354 section 3.11), and the
//!   sending, receiving and target server identifiers of ENRP messages.
//!   The two spaces are separate (RFC 5353 section 3.2.1), hence two
//!   types.
//! * A [`ConnId`] is not a wire field: it is the handle a sans-IO core
//!   gives a connection (as quinn-proto's `ConnectionHandle`) and the
//!   driver, the simulator and the handlespace (which remembers the
//!   connection a PE registered over) pass back. It lives here because
//!   this is the one crate every other crate depends on, so that the
//!   client library, the handlespace and the registrar share one type.
//!
//! The identifiers serialize as their bare numbers (`#[serde(transparent)]`)
//! and [`PeId`] and [`ServerId`] print as the tools print them: `0x` and
//! eight hex digits (`{:#010x}`). They parse from what people write
//! ([`crate::parse_identifier`]: decimal, or `0x` and hex digits).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::params::parse_identifier;

/// A pool element identifier (RFC 5354 section 3.10): unique in its pool,
/// chosen at random by the PE.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeId(u32);

/// A registrar's (ENRP server's) identifier (RFC 5353 section 3.2.1,
/// RFC 5354 sections 3.10 and 3.11). The default is
/// [`ServerId::UNDETERMINED`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerId(u32);

/// The handle of a connection, given by the core (or the driver) that
/// owns it; unique among that core's connections. Not on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(u64);

/// A text that is not a 32-bit identifier (see [`crate::parse_identifier`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-bit identifier (decimal, or hex with 0x)")]
pub struct InvalidIdentifier;

macro_rules! id32 {
    ($t:ident) => {
        impl $t {
            /// The identifier with this value.
            pub const fn new(value: u32) -> Self {
                $t(value)
            }

            /// Its value.
            pub const fn get(self) -> u32 {
                self.0
            }
        }

        impl From<u32> for $t {
            fn from(value: u32) -> Self {
                $t(value)
            }
        }

        impl From<$t> for u32 {
            fn from(id: $t) -> u32 {
                id.0
            }
        }

        /// `0x` and eight hex digits, as the tools print identifiers.
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#010x}", self.0)
            }
        }

        /// As [`Display`](fmt::Display): events and traces print the
        /// identifier as people read it, not wrapped in its type name.
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::UpperHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::UpperHex::fmt(&self.0, f)
            }
        }

        /// Decimal, or `0x`/`0X` and hex digits ([`crate::parse_identifier`]).
        impl FromStr for $t {
            type Err = InvalidIdentifier;

            fn from_str(s: &str) -> Result<Self, InvalidIdentifier> {
                parse_identifier(s).map($t).ok_or(InvalidIdentifier)
            }
        }
    };
}

id32!(PeId);
id32!(ServerId);

impl ServerId {
    /// All 0s: no particular registrar. The home of a PE "if the PE's
    /// Home ENRP server is undetermined" (RFC 5354 section 3.10), and the
    /// receiver of an ENRP message "not intended for an individual
    /// server" (RFC 5353 section 2.1). Never a registrar's own identifier
    /// (RFC 5353 section 3.2.1: non-zero).
    pub const UNDETERMINED: ServerId = ServerId(0);

    /// Whether this is [`ServerId::UNDETERMINED`].
    pub const fn is_undetermined(self) -> bool {
        self.0 == 0
    }
}

impl ConnId {
    /// The handle with this value.
    pub const fn new(value: u64) -> Self {
        ConnId(value)
    }

    /// Its value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The handle after this one (wrapping from `u64::MAX` to 0).
    #[must_use]
    pub const fn next(self) -> Self {
        ConnId(self.0.wrapping_add(1))
    }

    /// Hand out this handle and advance to the next: for a counter that
    /// allocates handles in order.
    pub fn allocate(&mut self) -> Self {
        let id = *self;
        *self = self.next();
        id
    }
}

impl From<u64> for ConnId {
    fn from(value: u64) -> Self {
        ConnId(value)
    }
}

impl From<ConnId> for u64 {
    fn from(id: ConnId) -> u64 {
        id.0
    }
}

/// The number, in decimal.
impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// As [`Display`](fmt::Display): the number, in decimal.
impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_print_and_parse_as_the_tools_do() {
        let id = PeId::new(0x0a0b_0c0d);
        assert_eq!(id.to_string(), "0x0a0b0c0d");
        assert_eq!(format!("{id:#010x}"), "0x0a0b0c0d");
        assert_eq!(format!("{id:x}"), "a0b0c0d");
        assert_eq!("0x0a0b0c0d".parse::<PeId>(), Ok(id));
        assert_eq!("168496141".parse::<PeId>(), Ok(id));
        assert_eq!("-1".parse::<ServerId>(), Err(InvalidIdentifier));
        assert_eq!(ServerId::new(7).to_string(), "0x00000007");
        assert_eq!(ServerId::default(), ServerId::UNDETERMINED);
        assert!(ServerId::UNDETERMINED.is_undetermined());
        assert_eq!(ConnId::new(12).to_string(), "12");
    }

    #[test]
    fn identifiers_serialize_as_numbers() {
        assert_eq!(serde_json::to_string(&PeId::new(5)).unwrap(), "5");
        assert_eq!(serde_json::to_string(&ServerId::new(6)).unwrap(), "6");
        assert_eq!(serde_json::to_string(&ConnId::new(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<ServerId>("6").unwrap(),
            ServerId::new(6)
        );
    }

    #[test]
    fn connection_handles_count_up() {
        let mut next = ConnId::new(1);
        assert_eq!(next.allocate(), ConnId::new(1));
        assert_eq!(next.allocate(), ConnId::new(2));
        assert_eq!(next, ConnId::new(3));
        assert_eq!(ConnId::new(u64::MAX).next(), ConnId::new(0));
    }
}
