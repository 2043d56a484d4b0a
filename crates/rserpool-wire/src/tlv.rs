//! The TLV layer shared by every parameter and message: parameter type
//! codes, the cursor that walks a parameter list (with the unrecognized
//! parameter rules of RFC 5354 section 3), and the writer that fills in
//! lengths and padding.
//!
//! Padding rules (RFC 5354 sections 2, 3 and 4): every TLV is padded with
//! zeros to a multiple of 4; its length field excludes its own padding; an
//! enclosing TLV (or message) counts the padding between its nested
//! parameters but not the padding of the last one. Receivers ignore the
//! content of padding bytes.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};

/// Parameter type codes (RFC 5354 section 3, table 1; RSPLIB's 0x803f).
pub mod ptype {
    /// IPv4 address (3.1).
    pub const IPV4_ADDRESS: u16 = 0x0001;
    /// IPv6 address (3.2).
    pub const IPV6_ADDRESS: u16 = 0x0002;
    /// DCCP transport (3.3).
    pub const DCCP_TRANSPORT: u16 = 0x0003;
    /// SCTP transport (3.4).
    pub const SCTP_TRANSPORT: u16 = 0x0004;
    /// TCP transport (3.5).
    pub const TCP_TRANSPORT: u16 = 0x0005;
    /// UDP transport (3.6).
    pub const UDP_TRANSPORT: u16 = 0x0006;
    /// UDP-Lite transport (3.7).
    pub const UDP_LITE_TRANSPORT: u16 = 0x0007;
    /// Pool member selection policy (3.8).
    pub const POLICY: u16 = 0x0008;
    /// Pool handle (3.9).
    pub const POOL_HANDLE: u16 = 0x0009;
    /// Pool element (3.10).
    pub const POOL_ELEMENT: u16 = 0x000a;
    /// Server information (3.11).
    pub const SERVER_INFORMATION: u16 = 0x000b;
    /// Operation error (3.12).
    pub const OPERATION_ERROR: u16 = 0x000c;
    /// Cookie (3.13).
    pub const COOKIE: u16 = 0x000d;
    /// PE identifier (3.14).
    pub const PE_IDENTIFIER: u16 = 0x000e;
    /// PE checksum (3.15).
    pub const PE_CHECKSUM: u16 = 0x000f;
    /// Opaque transport (3.16).
    pub const OPAQUE_TRANSPORT: u16 = 0x0010;
    /// RSPLIB's Handle Resolution option: type 0x3f with action bits 10
    /// (skip silently when not understood).
    pub const HANDLE_RESOLUTION_OPTION: u16 = 0x803f;
}

/// Name of a parameter type, for error messages and JSON.
pub fn param_name(t: u16) -> &'static str {
    match t {
        ptype::IPV4_ADDRESS => "IPv4 Address",
        ptype::IPV6_ADDRESS => "IPv6 Address",
        ptype::DCCP_TRANSPORT => "DCCP Transport",
        ptype::SCTP_TRANSPORT => "SCTP Transport",
        ptype::TCP_TRANSPORT => "TCP Transport",
        ptype::UDP_TRANSPORT => "UDP Transport",
        ptype::UDP_LITE_TRANSPORT => "UDP-Lite Transport",
        ptype::POLICY => "Pool Member Selection Policy",
        ptype::POOL_HANDLE => "Pool Handle",
        ptype::POOL_ELEMENT => "Pool Element",
        ptype::SERVER_INFORMATION => "Server Information",
        ptype::OPERATION_ERROR => "Operation Error",
        ptype::COOKIE => "Cookie",
        ptype::PE_IDENTIFIER => "PE Identifier",
        ptype::PE_CHECKSUM => "PE Checksum",
        ptype::OPAQUE_TRANSPORT => "Opaque Transport",
        ptype::HANDLE_RESOLUTION_OPTION => "Handle Resolution Option",
        _ => "unknown",
    }
}

fn is_known(t: u16) -> bool {
    (ptype::IPV4_ADDRESS..=ptype::OPAQUE_TRANSPORT).contains(&t)
        || t == ptype::HANDLE_RESOLUTION_OPTION
}

/// Round up to the next multiple of 4.
pub(crate) const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// A parameter that was not understood, skipped, and must be reported to
/// the sender in an "Unrecognized Parameter" error cause (type bits 11).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnrecognizedParameter {
    /// Offset of the parameter in the message.
    pub offset: usize,
    /// Its type.
    pub param_type: u16,
    /// The complete TLV (without padding), for the error cause.
    #[serde(with = "crate::hex_bytes")]
    pub tlv: Vec<u8>,
}

/// Shared state of one decoding run: the whole message (so that offsets are
/// absolute) and the parameters to report.
pub(crate) struct Ctx<'a> {
    pub buf: &'a [u8],
    pub unrecognized: Vec<UnrecognizedParameter>,
}

/// One parameter found in a list. Offsets are absolute in `Ctx::buf`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv {
    pub ptype: u16,
    pub start: usize,
    pub value_start: usize,
    pub value_end: usize,
}

impl Tlv {
    pub fn value<'a>(&self, ctx: &Ctx<'a>) -> &'a [u8] {
        &ctx.buf[self.value_start..self.value_end]
    }

    pub fn value_len(&self) -> usize {
        self.value_end - self.value_start
    }

    pub fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.start, kind)
    }

    /// A cursor over the parameters nested in this one, after `fixed` bytes
    /// of fixed fields.
    pub fn nested(&self, fixed: usize) -> Cursor {
        Cursor {
            pos: self.value_start + fixed,
            end: self.value_end,
        }
    }

    /// Require a value of exactly `len` bytes.
    pub fn exact_len(&self, what: &'static str, len: usize) -> Result<(), DecodeError> {
        if self.value_len() == len {
            Ok(())
        } else {
            Err(self.err(DecodeErrorKind::InvalidLength {
                what,
                length: self.value_len() + 4,
            }))
        }
    }

    /// Require at least `len` bytes of value.
    pub fn min_len(&self, what: &'static str, len: usize) -> Result<(), DecodeError> {
        if self.value_len() >= len {
            Ok(())
        } else {
            Err(self.err(DecodeErrorKind::InvalidLength {
                what,
                length: self.value_len() + 4,
            }))
        }
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Walks a parameter list in `[pos, end)` of `Ctx::buf`.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    pos: usize,
    end: usize,
}

impl Cursor {
    pub fn new(pos: usize, end: usize) -> Self {
        Cursor { pos, end }
    }

    /// Parse the TLV header at the current position.
    fn header(&self, ctx: &Ctx<'_>) -> Result<Option<Tlv>, DecodeError> {
        let available = self.end.saturating_sub(self.pos);
        if available == 0 {
            return Ok(None);
        }
        if available < 4 {
            return Err(DecodeError::new(
                self.pos,
                DecodeErrorKind::Truncated {
                    what: "parameter header",
                    needed: 4,
                    available,
                },
            ));
        }
        let ptype = be16(ctx.buf, self.pos);
        let length = be16(ctx.buf, self.pos + 2);
        if length < 4 {
            return Err(DecodeError::new(
                self.pos,
                DecodeErrorKind::ParameterLengthTooShort(length),
            ));
        }
        if usize::from(length) > available {
            return Err(DecodeError::new(
                self.pos,
                DecodeErrorKind::ParameterOverrun {
                    param_type: ptype,
                    length,
                    available,
                },
            ));
        }
        Ok(Some(Tlv {
            ptype,
            start: self.pos,
            value_start: self.pos + 4,
            value_end: self.pos + usize::from(length),
        }))
    }

    /// Step over `tlv` and its padding. The padding of the last parameter
    /// may lie beyond `end` (it is not counted by the container).
    fn step(&mut self, tlv: &Tlv) {
        self.pos = pad4(tlv.value_end).min(self.end);
    }

    /// The next recognized parameter, not consumed. Unrecognized ones are
    /// handled on the way by their action bits (RFC 5354 section 3): 00
    /// and 01 stop decoding with an error, 10 skips, 11 skips and records
    /// the parameter for an "Unrecognized Parameter" report.
    pub fn peek(&mut self, ctx: &mut Ctx<'_>) -> Result<Option<Tlv>, DecodeError> {
        loop {
            let Some(tlv) = self.header(ctx)? else {
                return Ok(None);
            };
            if is_known(tlv.ptype) {
                return Ok(Some(tlv));
            }
            let bytes = &ctx.buf[tlv.start..tlv.value_end];
            match tlv.ptype >> 14 {
                0b00 | 0b01 => {
                    return Err(tlv.err(DecodeErrorKind::UnrecognizedParameter {
                        param_type: tlv.ptype,
                        report: tlv.ptype >> 14 == 0b01,
                        tlv: bytes.to_vec(),
                    }))
                }
                0b11 => ctx.unrecognized.push(UnrecognizedParameter {
                    offset: tlv.start,
                    param_type: tlv.ptype,
                    tlv: bytes.to_vec(),
                }),
                _ => {}
            }
            self.step(&tlv);
        }
    }

    /// The next parameter if it has type `t`.
    pub fn optional(&mut self, ctx: &mut Ctx<'_>, t: u16) -> Result<Option<Tlv>, DecodeError> {
        match self.peek(ctx)? {
            Some(tlv) if tlv.ptype == t => {
                self.step(&tlv);
                Ok(Some(tlv))
            }
            _ => Ok(None),
        }
    }

    /// The next parameter if its type is one of `ts`.
    pub fn optional_any(
        &mut self,
        ctx: &mut Ctx<'_>,
        ts: &[u16],
    ) -> Result<Option<Tlv>, DecodeError> {
        match self.peek(ctx)? {
            Some(tlv) if ts.contains(&tlv.ptype) => {
                self.step(&tlv);
                Ok(Some(tlv))
            }
            _ => Ok(None),
        }
    }

    /// The next parameter, which must be of one of the types `ts`.
    pub fn expect_any(
        &mut self,
        ctx: &mut Ctx<'_>,
        ts: &[u16],
        what: &'static str,
    ) -> Result<Tlv, DecodeError> {
        match self.peek(ctx)? {
            Some(tlv) if ts.contains(&tlv.ptype) => {
                self.step(&tlv);
                Ok(tlv)
            }
            Some(tlv) => Err(unexpected(&tlv)),
            None => Err(DecodeError::new(
                self.pos,
                DecodeErrorKind::MissingParameter(what),
            )),
        }
    }

    /// The next parameter, which must have type `t`.
    pub fn expect(&mut self, ctx: &mut Ctx<'_>, t: u16) -> Result<Tlv, DecodeError> {
        self.expect_any(ctx, &[t], param_name(t))
    }

    /// No recognized parameter may follow.
    pub fn finish(mut self, ctx: &mut Ctx<'_>) -> Result<(), DecodeError> {
        match self.peek(ctx)? {
            Some(tlv) => Err(unexpected(&tlv)),
            None => Ok(()),
        }
    }
}

fn unexpected(tlv: &Tlv) -> DecodeError {
    tlv.err(DecodeErrorKind::UnexpectedParameter {
        param_type: tlv.ptype,
        name: param_name(tlv.ptype),
    })
}

/// One parameter on its own (the information of an error cause, RFC 5354
/// section 3.12): what `encode` writes, without trailing padding.
pub(crate) fn encode_single(
    encode: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::new();
    encode(&mut Writer::new(&mut buf))?;
    let length = if buf.len() >= 4 {
        usize::from(be16(&buf, 2))
    } else {
        buf.len()
    };
    buf.truncate(length);
    Ok(buf)
}

/// Decode one parameter of one of the types `ts` that fills `bytes` (its
/// padding may follow), with the same checks as inside a message.
pub(crate) fn decode_single<T>(
    bytes: &[u8],
    ts: &[u16],
    what: &'static str,
    decode: impl FnOnce(&mut Ctx<'_>, &Tlv) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut ctx = Ctx {
        buf: bytes,
        unrecognized: Vec::new(),
    };
    let mut cur = Cursor::new(0, bytes.len());
    let tlv = cur.expect_any(&mut ctx, ts, what)?;
    let value = decode(&mut ctx, &tlv)?;
    cur.finish(&mut ctx)?;
    Ok(value)
}

/// Builds messages and parameters: lengths are patched in when a TLV is
/// finished, and padding is added and accounted as the RFC requires.
pub(crate) struct Writer<'b> {
    pub buf: &'b mut Vec<u8>,
    /// Where the padding of the last finished TLV ends, and how long it is:
    /// an enclosing TLV that ends right there does not count that padding.
    last_pad: (usize, usize),
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        Writer {
            buf,
            last_pad: (usize::MAX, 0),
        }
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Start a TLV (or message) with the 16-bit `head` (type, or message
    /// type + flags); returns its start for [`Writer::finish`].
    pub fn begin(&mut self, head: u16) -> usize {
        let start = self.buf.len();
        self.u16(head);
        self.u16(0);
        start
    }

    /// Patch the length of the TLV that starts at `start` and pad it.
    pub fn finish(&mut self, start: usize, what: &'static str) -> Result<(), EncodeError> {
        let mut end = self.buf.len();
        if self.last_pad.0 == end {
            end -= self.last_pad.1;
        }
        let length = end - start;
        let length16 = u16::try_from(length).map_err(|_| EncodeError::TooLong { what, length })?;
        self.buf[start + 2..start + 4].copy_from_slice(&length16.to_be_bytes());
        // Fixed fields are whole words and nested TLVs pad themselves, so the
        // padding already written (if any) is exactly the padding this TLV needs.
        let padded = start + pad4(length);
        debug_assert!(self.buf.len() <= padded);
        self.buf.resize(padded, 0);
        self.last_pad = (padded, padded - end);
        Ok(())
    }

    /// A complete TLV with a byte-string value.
    pub fn tlv_bytes(&mut self, t: u16, v: &[u8], what: &'static str) -> Result<(), EncodeError> {
        let s = self.begin(t);
        self.bytes(v);
        self.finish(s, what)
    }
}
