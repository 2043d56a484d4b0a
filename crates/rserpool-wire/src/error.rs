//! Typed decoding and encoding errors.
//!
//! Every decoding error carries the byte offset (from the start of the
//! message) of the construct that is wrong, so that an operator looking at a
//! hex dump can find it, and a registrar can answer with the right RFC 5354
//! error cause (see [`DecodeError::cause`]).

use crate::params::CauseCode;

/// A message (or frame) that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at offset {offset})")]
pub struct DecodeError {
    /// Byte offset of the offending construct, from the start of the message.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ends before a field or header that must be there.
    #[error("truncated {what}: {needed} bytes needed, {available} available")]
    Truncated {
        /// The construct that is cut short.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that are left.
        available: usize,
    },
    /// The message length field is below the 4-byte header (RFC 5354 section 4).
    #[error("message length {0} is shorter than the 4-byte common header")]
    MessageLengthTooShort(u16),
    /// The message length field claims more bytes than were given.
    #[error("message length {declared} exceeds the {available} bytes given")]
    MessageLengthBeyondInput {
        /// Length from the header.
        declared: usize,
        /// Bytes available.
        available: usize,
    },
    /// Bytes follow the message and its (at most 3) padding bytes.
    #[error("{0} bytes follow the message and its padding")]
    TrailingBytes(usize),
    /// The message type is not defined (RFC 5354 section 4: the two top bits
    /// say whether to report it in an "Unrecognized Message" cause).
    #[error("unrecognized message type {msg_type:#04x}{}", if *report { " (to be reported)" } else { "" })]
    UnrecognizedMessage {
        /// The type byte.
        msg_type: u8,
        /// Whether the sender asked for an "Unrecognized Message" error.
        report: bool,
    },
    /// A parameter length below the 4-byte TLV header (RFC 5354 section 3).
    #[error("parameter length {0} is shorter than the 4-byte TLV header")]
    ParameterLengthTooShort(u16),
    /// A parameter runs past the end of the message or of its enclosing parameter.
    #[error("parameter of type {param_type:#06x} with length {length} runs past the end of its container ({available} bytes left)")]
    ParameterOverrun {
        /// Parameter type.
        param_type: u16,
        /// Declared length.
        length: u16,
        /// Bytes left in the container.
        available: usize,
    },
    /// An unrecognized parameter whose type says "stop processing"
    /// (RFC 5354 section 3, top bits 00 or 01).
    #[error("unrecognized parameter type {param_type:#06x}: message discarded{}", if *report { " (to be reported)" } else { "" })]
    UnrecognizedParameter {
        /// Parameter type.
        param_type: u16,
        /// Whether it must be reported in an "Unrecognized Parameter" cause.
        report: bool,
        /// The complete parameter TLV, for the error cause.
        tlv: Vec<u8>,
    },
    /// A mandatory parameter is missing.
    #[error("missing mandatory parameter: {0}")]
    MissingParameter(&'static str),
    /// A known parameter where the message format does not allow it.
    #[error("unexpected parameter {name} ({param_type:#06x}) here")]
    UnexpectedParameter {
        /// Parameter type.
        param_type: u16,
        /// Its name.
        name: &'static str,
    },
    /// A fixed-size parameter or field has the wrong length.
    #[error("invalid length {length} for {what}")]
    InvalidLength {
        /// The construct.
        what: &'static str,
        /// The length found.
        length: usize,
    },
    /// A field holds a value outside its range.
    #[error("invalid value {value:#x} for {field}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError { offset, kind }
    }

    /// The RFC 5354 section 3.12 cause a receiver reports for this error, if
    /// the rules say it must report one: "Unrecognized Parameter" or
    /// "Unrecognized Message" when the type bits ask for it, "Invalid Values"
    /// for malformed content. `None` means: discard silently.
    pub fn cause(&self) -> Option<CauseCode> {
        match &self.kind {
            DecodeErrorKind::UnrecognizedMessage { report, .. } => {
                report.then_some(CauseCode::UnrecognizedMessage)
            }
            DecodeErrorKind::UnrecognizedParameter { report, .. } => {
                report.then_some(CauseCode::UnrecognizedParameter)
            }
            _ => Some(CauseCode::InvalidValues),
        }
    }
}

/// A value that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A message or parameter would exceed the 16-bit length field.
    #[error("{what} would be {length} bytes, beyond the 65535 of a 16-bit length field")]
    TooLong {
        /// The construct.
        what: &'static str,
        /// Its length.
        length: usize,
    },
    /// A value that the format cannot express (for example a TCP transport
    /// without an address, or an "unknown" policy that uses a known type).
    #[error("cannot encode {0}")]
    Invalid(&'static str),
}
