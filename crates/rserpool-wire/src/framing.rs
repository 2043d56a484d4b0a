//! Stream framing over TCP (DESIGN section 3), as sans-IO codecs: bytes
//! in, frames out, no sockets.
//!
//! * [`ChannelCodec`]: registrar channels (PE/PU <-> registrar, registrar
//!   <-> registrar) carry bare RSerPool messages back to back. The 16-bit
//!   length of the common header delimits them; each message is followed by
//!   its padding to a multiple of 4, exactly as it would sit in an SCTP DATA
//!   chunk. A length below 4 or above the configured maximum is a fatal
//!   error: the caller closes the connection.
//! * [`SessionCodec`]: PU <-> PE sessions frame every message as
//!   `[u32 ppid][u32 length][payload]`; ppid 11 is ASAP control, anything
//!   else is user data passed up with its ppid.
//!
//! Both take input in a [`BytesMut`] and split complete frames off it, the
//! shape of `tokio_util::codec::Decoder`, so a driver can wrap them directly.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::tlv::pad4;

/// SCTP payload protocol identifier of ASAP (RFC 5352 section 8.3).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353).
pub const PPID_ENRP: u32 = 12;

/// A stream that cannot be framed; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A message length below the 4-byte header.
    #[error("message length {0} is shorter than the 4-byte header")]
    LengthTooShort(u16),
    /// A frame larger than the configured maximum.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    TooLong {
        /// Announced length.
        length: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Frames RSerPool messages on a registrar channel.
#[derive(Debug, Clone)]
pub struct ChannelCodec {
    max_message_len: usize,
}

impl ChannelCodec {
    /// The largest message the header can describe.
    pub const ABSOLUTE_MAX: usize = u16::MAX as usize;

    /// A codec that refuses messages longer than `max_message_len` bytes
    /// (capped at 65535).
    pub fn new(max_message_len: usize) -> Self {
        ChannelCodec {
            max_message_len: max_message_len.min(Self::ABSOLUTE_MAX),
        }
    }

    /// The configured maximum.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Split the next complete message (with its padding) off `src`, or
    /// `None` if more bytes are needed. The length is checked as soon as
    /// the header is there, before any payload is buffered.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = u16::from_be_bytes([src[2], src[3]]);
        if length < 4 {
            return Err(FramingError::LengthTooShort(length));
        }
        let len = usize::from(length);
        if len > self.max_message_len {
            return Err(FramingError::TooLong {
                length: len,
                max: self.max_message_len,
            });
        }
        let frame = pad4(len);
        if src.len() < frame {
            src.reserve(frame - src.len());
            return Ok(None);
        }
        Ok(Some(src.split_to(frame).freeze()))
    }

    /// Append an encoded message (as produced by `encode`, already padded).
    pub fn encode(&mut self, message: &[u8], dst: &mut BytesMut) -> Result<(), FramingError> {
        if message.len() > pad4(self.max_message_len) {
            return Err(FramingError::TooLong {
                length: message.len(),
                max: self.max_message_len,
            });
        }
        dst.extend_from_slice(message);
        Ok(())
    }
}

/// One frame of a PU <-> PE session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFrame {
    /// Payload protocol identifier: [`PPID_ASAP`] for ASAP control, any
    /// other value for user data.
    pub ppid: u32,
    /// The payload.
    pub payload: Bytes,
}

impl SessionFrame {
    /// Whether this frame carries an ASAP control message.
    pub fn is_control(&self) -> bool {
        self.ppid == PPID_ASAP
    }
}

/// Frames a PU <-> PE session: `[u32 ppid][u32 length][payload]`.
#[derive(Debug, Clone)]
pub struct SessionCodec {
    max_payload_len: usize,
}

impl SessionCodec {
    /// Bytes of frame header.
    pub const HEADER_LEN: usize = 8;

    /// A codec that refuses payloads longer than `max_payload_len`.
    pub fn new(max_payload_len: usize) -> Self {
        SessionCodec { max_payload_len }
    }

    /// Split the next complete frame off `src`, or `None` if more bytes are
    /// needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<SessionFrame>, FramingError> {
        if src.len() < Self::HEADER_LEN {
            return Ok(None);
        }
        let ppid = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let length = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if length > self.max_payload_len {
            return Err(FramingError::TooLong {
                length,
                max: self.max_payload_len,
            });
        }
        if src.len() < Self::HEADER_LEN + length {
            src.reserve(Self::HEADER_LEN + length - src.len());
            return Ok(None);
        }
        src.advance(Self::HEADER_LEN);
        let payload = src.split_to(length).freeze();
        Ok(Some(SessionFrame { ppid, payload }))
    }

    /// Append one frame.
    pub fn encode(
        &mut self,
        ppid: u32,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FramingError> {
        if payload.len() > self.max_payload_len {
            return Err(FramingError::TooLong {
                length: payload.len(),
                max: self.max_payload_len,
            });
        }
        dst.reserve(Self::HEADER_LEN + payload.len());
        dst.put_u32(ppid);
        dst.put_u32(payload.len() as u32);
        dst.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_frames_back_to_back_messages_fed_byte_by_byte() {
        // Two messages: 8 bytes, and 11 bytes + 1 padding byte.
        let m1: &[u8] = &[0x05, 0, 0, 8, 1, 2, 3, 4];
        let m2: &[u8] = &[0x05, 0, 0, 11, 9, 9, 9, 9, 7, 7, 7, 0];
        let mut stream = Vec::new();
        stream.extend_from_slice(m1);
        stream.extend_from_slice(m2);
        let mut c = ChannelCodec::new(1024);
        let mut src = BytesMut::new();
        let mut out = Vec::new();
        for b in stream {
            src.put_u8(b);
            while let Some(f) = c.decode(&mut src).expect("valid stream") {
                out.push(f);
            }
        }
        assert_eq!(
            out,
            vec![Bytes::copy_from_slice(m1), Bytes::copy_from_slice(m2)]
        );
        assert!(src.is_empty());
    }

    #[test]
    fn channel_rejects_short_and_oversized_lengths_from_the_header_alone() {
        let mut c = ChannelCodec::new(100);
        let mut src = BytesMut::from(&[1u8, 0, 0, 3][..]);
        assert_eq!(c.decode(&mut src), Err(FramingError::LengthTooShort(3)));
        let mut src = BytesMut::from(&[1u8, 0, 0, 101][..]);
        assert_eq!(
            c.decode(&mut src),
            Err(FramingError::TooLong {
                length: 101,
                max: 100
            })
        );
    }

    #[test]
    fn session_round_trip_and_limits() {
        let mut c = SessionCodec::new(16);
        let mut buf = BytesMut::new();
        c.encode(PPID_ASAP, b"cookie", &mut buf).expect("fits");
        c.encode(1234, b"", &mut buf).expect("fits");
        assert!(c.encode(1, &[0; 17], &mut buf).is_err());
        let f1 = c.decode(&mut buf).expect("ok").expect("frame");
        assert!(f1.is_control());
        assert_eq!(&f1.payload[..], b"cookie");
        let f2 = c.decode(&mut buf).expect("ok").expect("frame");
        assert_eq!((f2.ppid, f2.payload.len()), (1234, 0));
        assert_eq!(c.decode(&mut buf), Ok(None));
        let mut bad = BytesMut::from(&[0u8, 0, 0, 1, 0, 0, 0, 17][..]);
        assert_eq!(
            c.decode(&mut bad),
            Err(FramingError::TooLong {
                length: 17,
                max: 16
            })
        );
    }
}
