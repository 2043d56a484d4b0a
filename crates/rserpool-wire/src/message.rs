//! The common message format of RFC 5354 section 4, shared by ASAP and
//! ENRP: header checks, the result of a decoding run, and the encoding frame.

use serde::Serialize;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::tlv::{be16, pad4, Ctx, Cursor, UnrecognizedParameter, Writer};

/// A decoded message and the parameters that were skipped but must be
/// reported to the sender (RFC 5354 section 3, type bits 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decoded<M> {
    /// The message.
    pub message: M,
    /// Skipped parameters to report in "Unrecognized Parameter" causes.
    pub unrecognized: Vec<UnrecognizedParameter>,
}

/// What ASAP and ENRP messages have in common, for code that handles
/// either (the `rsp decode` tool, fuzz targets, benchmarks).
pub trait WireMessage: Sized + Clone + PartialEq + std::fmt::Debug + Serialize {
    /// Decode one complete message (optionally followed by its padding).
    fn decode(bytes: &[u8]) -> Result<Decoded<Self>, DecodeError>;

    /// Append the canonical encoding (padded to a multiple of 4) to `out`;
    /// on error `out` is left as it was.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The RFC name of the message type.
    fn name(&self) -> &'static str;

    /// The canonical encoding as a new buffer.
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }
}

/// The common header of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub msg_type: u8,
    /// Message flags.
    pub flags: u8,
    /// Message length (without the final padding).
    pub length: u16,
}

impl Header {
    /// Parse and check the header of a complete message in `bytes`: the
    /// length must be at least 4 and fit in `bytes`, and at most 3 padding
    /// bytes may follow it.
    pub fn parse(bytes: &[u8]) -> Result<Header, DecodeError> {
        if bytes.len() < 4 {
            return Err(DecodeError::new(
                0,
                DecodeErrorKind::Truncated {
                    what: "message header",
                    needed: 4,
                    available: bytes.len(),
                },
            ));
        }
        let length = be16(bytes, 2);
        if length < 4 {
            return Err(DecodeError::new(
                2,
                DecodeErrorKind::MessageLengthTooShort(length),
            ));
        }
        let len = usize::from(length);
        if len > bytes.len() {
            return Err(DecodeError::new(
                2,
                DecodeErrorKind::MessageLengthBeyondInput {
                    declared: len,
                    available: bytes.len(),
                },
            ));
        }
        if bytes.len() > pad4(len) {
            return Err(DecodeError::new(
                pad4(len),
                DecodeErrorKind::TrailingBytes(bytes.len() - pad4(len)),
            ));
        }
        Ok(Header {
            msg_type: bytes[0],
            flags: bytes[1],
            length,
        })
    }

    /// The error for a message type that is not defined (RFC 5354 section
    /// 4: top bits 01 ask for a report).
    pub(crate) fn unrecognized(&self) -> DecodeError {
        DecodeError::new(
            0,
            DecodeErrorKind::UnrecognizedMessage {
                msg_type: self.msg_type,
                report: self.msg_type >> 6 == 0b01,
            },
        )
    }
}

/// State for decoding the body of one message.
pub(crate) struct Body<'a> {
    pub ctx: Ctx<'a>,
    pub header: Header,
    /// Offset of the next fixed field.
    pos: usize,
}

impl<'a> Body<'a> {
    pub fn new(bytes: &'a [u8], header: Header) -> Self {
        Body {
            ctx: Ctx {
                buf: bytes,
                unrecognized: Vec::new(),
            },
            header,
            pos: 4,
        }
    }

    fn end(&self) -> usize {
        usize::from(self.header.length)
    }

    /// The next `N` bytes of fixed fields.
    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let available = self.end() - self.pos;
        if available < N {
            return Err(DecodeError::new(
                self.pos,
                DecodeErrorKind::Truncated {
                    what,
                    needed: N,
                    available,
                },
            ));
        }
        let mut v = [0u8; N];
        v.copy_from_slice(&self.ctx.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(v)
    }

    /// A 32-bit fixed field (server identifiers).
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.fixed(what).map(u32::from_be_bytes)
    }

    /// A 16-bit fixed field.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.fixed(what).map(u16::from_be_bytes)
    }

    /// The parameters after the fixed fields.
    pub fn params(&self) -> Cursor {
        Cursor::new(self.pos, self.end())
    }

    pub fn flag(&self, mask: u8) -> bool {
        self.header.flags & mask != 0
    }

    pub fn done<M>(self, message: M) -> Decoded<M> {
        Decoded {
            message,
            unrecognized: self.ctx.unrecognized,
        }
    }
}

/// Write a message: header, then whatever `body` writes, then the length.
pub(crate) fn encode_message(
    out: &mut Vec<u8>,
    msg_type: u8,
    flags: u8,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mark = out.len();
    let mut w = Writer::new(out);
    let s = w.begin(u16::from_be_bytes([msg_type, flags]));
    let r = body(&mut w).and_then(|()| w.finish(s, "message"));
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// Flag bits as a byte.
pub(crate) fn flags(bits: &[(bool, u8)]) -> u8 {
    bits.iter()
        .filter(|(set, _)| *set)
        .fold(0, |acc, (_, m)| acc | m)
}
