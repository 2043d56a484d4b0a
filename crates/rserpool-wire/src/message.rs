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

/// Cause information echoed back in an error report is cut to this many
/// bytes (a report never grows with what a sender sends).
pub const MAX_ECHOED: usize = 512;

/// A frame as a receiver takes it: the message, or why it does not
/// decode, and the report the rules ask to send back. Every core gives
/// an incoming frame this one path ([`receive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<M> {
    /// The message, or why it does not decode.
    pub message: Result<M, DecodeError>,
    /// The causes to send back in an error message (ASAP_ERROR, ENRP
    /// error), when the rules ask for a report; `None`: say nothing.
    pub report: Option<crate::OperationError>,
}

/// Decode `frame` and work out what to report (RFC 5354 section 3: the
/// two top bits of an unknown type say whether to report it; 3.12: an
/// "Unrecognized Parameter" cause carries the parameter, other causes the
/// start of the offending message, at most [`MAX_ECHOED`] bytes of
/// either).
pub fn receive<M: WireMessage>(frame: &[u8]) -> Received<M> {
    use crate::{Cause, CauseCode, OperationError};
    let echo = |b: &[u8]| b[..b.len().min(MAX_ECHOED)].to_vec();
    match M::decode(frame) {
        Ok(d) => {
            let causes: Vec<Cause> = d
                .unrecognized
                .iter()
                .map(|u| Cause::with_info(CauseCode::UnrecognizedParameter, echo(&u.tlv)))
                .collect();
            Received {
                message: Ok(d.message),
                report: (!causes.is_empty()).then_some(OperationError { causes }),
            }
        }
        Err(e) => {
            let report = e.cause().map(|code| {
                let info = match &e.kind {
                    DecodeErrorKind::UnrecognizedParameter { tlv, .. } => echo(tlv),
                    _ => echo(frame),
                };
                OperationError::single(Cause::with_info(code, info))
            });
            Received {
                message: Err(e),
                report,
            }
        }
    }
}

#[cfg(test)]
mod receive_tests {
    use super::*;
    use crate::{AsapMessage, CauseCode, PoolHandle};

    #[test]
    fn a_good_frame_needs_no_report() {
        let m = AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: PoolHandle::from_static("echo"),
            items: None,
        };
        let r = receive::<AsapMessage>(&m.to_bytes().expect("encodes"));
        assert_eq!(r.message, Ok(m));
        assert_eq!(r.report, None);
    }

    #[test]
    fn garbage_is_reported_as_invalid_values_with_a_bounded_echo() {
        let mut frame = vec![0x01, 0x00, 0x04, 0x04];
        frame.extend(std::iter::repeat(0xff).take(1020));
        let r = receive::<AsapMessage>(&frame);
        assert!(r.message.is_err());
        let report = r.report.expect("reported");
        assert_eq!(report.causes[0].code, CauseCode::InvalidValues);
        assert_eq!(report.causes[0].info.len(), MAX_ECHOED);
    }
}
