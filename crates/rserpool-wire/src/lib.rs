//! RSerPool messages and parameters on the wire: ASAP (RFC 5352), ENRP
//! (RFC 5353), their common parameters (RFC 5354) and the selection
//! policies (RFC 5356), with the RSPLIB extensions listed in DESIGN
//! section 5. No I/O.
//!
//! * Decoding is strict and total: any byte slice gives a message or a
//!   [`DecodeError`] that says what is wrong and at which offset. It never
//!   panics and never allocates from an untrusted length before checking
//!   it against the bytes actually present.
//! * Encoding is canonical: `decode(encode(m)) == m` for every message.
//! * Unknown parameters follow RFC 5354 section 3: by the two top bits of
//!   their type a message is discarded (with or without a report) or the
//!   parameter is skipped (with or without a report). What must be
//!   reported comes back in [`Decoded::unrecognized`] or in the error.
//! * [`framing`] cuts TCP streams into messages (DESIGN section 3).
//! * [`PeId`], [`ServerId`] and [`ConnId`] are the identifiers all the
//!   crates share.
//!
//! ```
//! use rserpool_wire::{AsapMessage, PoolHandle, WireMessage};
//!
//! let msg = AsapMessage::HandleResolution {
//!     subscribe: false,
//!     pool_handle: PoolHandle::from_static("echo"),
//!     items: Some(5),
//! };
//! let bytes = msg.to_bytes()?;
//! assert_eq!(AsapMessage::decode(&bytes)?.message, msg);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod asap;
pub mod enrp;
pub mod enrp_ext;
mod error;
pub mod framing;
pub mod hex_bytes;
mod ids;
mod message;
mod params;
pub mod policy;
mod tlv;

pub use asap::AsapMessage;
pub use enrp::{EnrpMessage, PoolEntry, UpdateAction};
pub use enrp_ext::EnrpExtensions;
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use ids::{ConnId, InvalidIdentifier, PeId, ServerId};
pub use message::{receive, Decoded, Header, Received, WireMessage, MAX_ECHOED};
pub use params::{
    parse_identifier, Cause, CauseCode, OperationError, PoolElement, PoolHandle, ServerInformation,
    Transport, TransportUse,
};
pub use policy::{Policy, PolicyParameters};
pub use tlv::{param_name, ptype, UnrecognizedParameter};
