//! This implementation's own parameters in ENRP messages, each with the
//! RFC 5354 section 3 action bits `10` in its type ("skip this parameter
//! and continue processing"): a peer that does not know them (RSPLIB)
//! ignores them silently, and a message decodes to the same
//! [`EnrpMessage`] with or without them.
//!
//! * Registrant Identity (0x8040): in ENRP_HANDLE_UPDATE, the identity (`psk:NAME`, `cert:SUBJECT`, ...) that registered the
//!   PE. ENRP carries no identity, and the identity binding of RFC 5355
//!   2.3 must hold across the cluster (DESIGN section 4).
//! * Registrant List (0x8042): in ENRP_HANDLE_TABLE_RESPONSE, one
//!   identity per PE of the message, in the order the PEs appear.
//! * Ownership Epoch (0x8043): in ENRP_HANDLE_UPDATE, the PE's epoch, a
//!   64-bit number that grows each time the PE changes home, so that a
//!   newer claim on a PE wins over a stale one (a registrar that was
//!   frozen and taken over, a lost update).
//! * Epoch List (0x8044): in ENRP_HANDLE_TABLE_RESPONSE, one epoch per
//!   PE of the message, in order.
//! * Registrar Nonce (0x8041): in ENRP_PRESENCE, a 64-bit number each
//!   registrar draws at start, so that a registrar that reaches itself
//!   (its own address in its peer list) tells that apart from a server
//!   identifier collision (RFC 5353 3.2.1).
//!
//! They follow the message's own parameters: [`EnrpExtensions::append`]
//! adds them to an encoded message, [`EnrpExtensions::read`] finds them
//! in a received one.

use serde::Serialize;

use crate::enrp::{msg_type, EnrpMessage};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::tlv::{be16, pad4, Writer};

/// The parameter types (action bits 10: skip when not understood).
pub mod ext_type {
    /// Registrant Identity: UTF-8 text.
    pub const REGISTRANT: u16 = 0x8040;
    /// Registrar Nonce: 8 bytes.
    pub const NONCE: u16 = 0x8041;
    /// Registrant List: for each PE, a 16-bit length and UTF-8 text.
    pub const REGISTRANT_LIST: u16 = 0x8042;
    /// Ownership Epoch: 8 bytes.
    pub const EPOCH: u16 = 0x8043;
    /// Epoch List: 8 bytes per PE.
    pub const EPOCH_LIST: u16 = 0x8044;
}

/// The longest registrant identity carried (bytes).
pub const MAX_REGISTRANT_LEN: usize = 1024;

/// The extension parameters of one ENRP message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnrpExtensions {
    /// The identity that registered the PE of an ENRP_HANDLE_UPDATE.
    pub registrant: Option<String>,
    /// The identities that registered the PEs of an
    /// ENRP_HANDLE_TABLE_RESPONSE, in order (empty: not sent).
    pub registrants: Vec<String>,
    /// The sending registrar's nonce (ENRP_PRESENCE).
    pub nonce: Option<u64>,
    /// The ownership epoch of the PE of an ENRP_HANDLE_UPDATE.
    pub epoch: Option<u64>,
    /// The ownership epochs of the PEs of an ENRP_HANDLE_TABLE_RESPONSE,
    /// in order (empty: not sent).
    pub epochs: Vec<u64>,
}

impl EnrpExtensions {
    /// Whether there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.registrant.is_none()
            && self.registrants.is_empty()
            && self.nonce.is_none()
            && self.epoch.is_none()
            && self.epochs.is_empty()
    }

    /// Encode `msg` with these parameters after its own into `out`.
    /// On error `out` is left as it was.
    pub fn encode(&self, msg: &EnrpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        msg.encode(out)?;
        if let Err(e) = self.append(start, out) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }

    /// Append the parameters to the message encoded at `out[start..]`
    /// (which ends padded, as [`EnrpMessage::encode`] leaves it) and
    /// patch its length.
    fn append(&self, start: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.is_empty() {
            return Ok(());
        }
        let mut last_end = out.len();
        let mut w = Writer::new(out);
        if let Some(r) = &self.registrant {
            check_len(r)?;
            let s = w.buf.len();
            w.tlv_bytes(ext_type::REGISTRANT, r.as_bytes(), "Registrant Identity")?;
            last_end = s + usize::from(be16(w.buf, s + 2));
        }
        if !self.registrants.is_empty() {
            let s = w.begin(ext_type::REGISTRANT_LIST);
            for r in &self.registrants {
                check_len(r)?;
                w.u16(r.len() as u16);
                w.bytes(r.as_bytes());
            }
            w.finish(s, "Registrant List")?;
            last_end = s + usize::from(be16(w.buf, s + 2));
        }
        if let Some(n) = self.nonce {
            let s = w.buf.len();
            w.tlv_bytes(ext_type::NONCE, &n.to_be_bytes(), "Registrar Nonce")?;
            last_end = s + usize::from(be16(w.buf, s + 2));
        }
        if let Some(e) = self.epoch {
            let s = w.buf.len();
            w.tlv_bytes(ext_type::EPOCH, &e.to_be_bytes(), "Ownership Epoch")?;
            last_end = s + usize::from(be16(w.buf, s + 2));
        }
        if !self.epochs.is_empty() {
            let bytes: Vec<u8> = self.epochs.iter().flat_map(|e| e.to_be_bytes()).collect();
            let s = w.buf.len();
            w.tlv_bytes(ext_type::EPOCH_LIST, &bytes, "Epoch List")?;
            last_end = s + usize::from(be16(w.buf, s + 2));
        }
        // The message counts the padding between its parameters but not
        // that of the last one (RFC 5354 section 4).
        let length = last_end - start;
        let length16 = u16::try_from(length).map_err(|_| EncodeError::TooLong {
            what: "ENRP message",
            length,
        })?;
        out[start + 2..start + 4].copy_from_slice(&length16.to_be_bytes());
        Ok(())
    }

    /// The extension parameters of a complete ENRP message (one that
    /// [`EnrpMessage::decode`] accepts): its top-level parameters of the
    /// types above; every other parameter is passed over.
    pub fn read(bytes: &[u8]) -> Result<EnrpExtensions, DecodeError> {
        let mut ext = EnrpExtensions::default();
        if bytes.len() < 4 {
            return Err(truncated(0, "message header", 4, bytes.len()));
        }
        let end = usize::from(be16(bytes, 2)).min(bytes.len());
        let mut pos = match bytes[0] {
            msg_type::HANDLE_UPDATE
            | msg_type::INIT_TAKEOVER
            | msg_type::INIT_TAKEOVER_ACK
            | msg_type::TAKEOVER_SERVER => 16,
            _ => 12,
        };
        while pos + 4 <= end {
            let t = be16(bytes, pos);
            let len = usize::from(be16(bytes, pos + 2));
            if len < 4 || pos + len > end {
                return Err(DecodeError::new(
                    pos,
                    DecodeErrorKind::ParameterLengthTooShort(len as u16),
                ));
            }
            let value = &bytes[pos + 4..pos + len];
            match t {
                ext_type::REGISTRANT => ext.registrant = Some(text(pos, value)?),
                ext_type::REGISTRANT_LIST => {
                    let mut at = 0;
                    while at < value.len() {
                        if value.len() - at < 2 {
                            return Err(truncated(pos + 4 + at, "registrant length", 2, 1));
                        }
                        let n = usize::from(be16(value, at));
                        at += 2;
                        if value.len() - at < n {
                            return Err(truncated(pos + 4 + at, "registrant", n, value.len() - at));
                        }
                        ext.registrants.push(text(pos, &value[at..at + n])?);
                        at += n;
                    }
                }
                ext_type::NONCE => ext.nonce = Some(u64_of(pos, value, "Registrar Nonce")?),
                ext_type::EPOCH => ext.epoch = Some(u64_of(pos, value, "Ownership Epoch")?),
                ext_type::EPOCH_LIST => {
                    if value.len() % 8 != 0 {
                        return Err(DecodeError::new(
                            pos,
                            DecodeErrorKind::InvalidLength {
                                what: "Epoch List",
                                length: len,
                            },
                        ));
                    }
                    for c in value.chunks_exact(8) {
                        ext.epochs.push(u64_of(pos, c, "Epoch List")?);
                    }
                }
                _ => {}
            }
            pos += pad4(len);
        }
        Ok(ext)
    }
}

fn u64_of(at: usize, v: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let b: [u8; 8] = v.try_into().map_err(|_| {
        DecodeError::new(
            at,
            DecodeErrorKind::InvalidLength {
                what,
                length: v.len() + 4,
            },
        )
    })?;
    Ok(u64::from_be_bytes(b))
}

fn check_len(r: &str) -> Result<(), EncodeError> {
    if r.len() > MAX_REGISTRANT_LEN {
        return Err(EncodeError::TooLong {
            what: "Registrant Identity",
            length: r.len(),
        });
    }
    Ok(())
}

fn text(at: usize, v: &[u8]) -> Result<String, DecodeError> {
    if v.len() > MAX_REGISTRANT_LEN {
        return Err(DecodeError::new(
            at,
            DecodeErrorKind::InvalidLength {
                what: "Registrant Identity",
                length: v.len() + 4,
            },
        ));
    }
    String::from_utf8(v.to_vec()).map_err(|_| {
        DecodeError::new(
            at,
            DecodeErrorKind::InvalidValue {
                field: "registrant identity (UTF-8)",
                value: 0,
            },
        )
    })
}

fn truncated(at: usize, what: &'static str, needed: usize, available: usize) -> DecodeError {
    DecodeError::new(
        at,
        DecodeErrorKind::Truncated {
            what,
            needed,
            available,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        PeId, Policy, PoolElement, PoolHandle, ServerId, Transport, TransportUse, WireMessage,
    };

    fn update() -> EnrpMessage {
        EnrpMessage::HandleUpdate {
            takeover_suggested: false,
            sender: ServerId::new(1),
            receiver: ServerId::new(0),
            action: crate::UpdateAction::AddPe,
            pool_handle: PoolHandle::from_static("echo"),
            pool_element: PoolElement {
                identifier: PeId::new(7),
                home_registrar: ServerId::new(1),
                registration_life: 30_000,
                user_transport: Transport::Tcp {
                    port: 7,
                    transport_use: TransportUse::DataOnly,
                    address: "10.0.0.1".parse().unwrap(),
                },
                policy: Policy::RoundRobin,
                asap_transport: None,
            },
        }
    }

    #[test]
    fn registrant_round_trips_and_plain_decoders_skip_it() {
        let ext = EnrpExtensions {
            registrant: Some("psk:pe-1".into()),
            ..Default::default()
        };
        let mut bytes = Vec::new();
        ext.encode(&update(), &mut bytes).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        // The type has the action bits 10: skipped silently, nothing to report.
        assert_eq!(ext_type::REGISTRANT >> 14, 0b10);
        let d = EnrpMessage::decode(&bytes).unwrap();
        assert_eq!(d.message, update());
        assert!(d.unrecognized.is_empty());
        assert_eq!(EnrpExtensions::read(&bytes).unwrap(), ext);
        // Without extensions the bytes are the plain encoding.
        let mut plain = Vec::new();
        EnrpExtensions::default()
            .encode(&update(), &mut plain)
            .unwrap();
        assert_eq!(plain, update().to_bytes().unwrap());
        assert_eq!(
            EnrpExtensions::read(&plain).unwrap(),
            EnrpExtensions::default()
        );
    }

    #[test]
    fn odd_lengths_list_and_nonce_round_trip() {
        for name in ["p", "psk:ab", "cert:CN with spaces", "psk:\u{e9}t\u{e9}"] {
            let ext = EnrpExtensions {
                registrant: Some(name.into()),
                registrants: vec![name.into(), "x".into(), String::new()],
                nonce: Some(0x0102_0304_0506_0708),
                epoch: Some(7),
                epochs: vec![1, u64::MAX, 0],
            };
            let mut bytes = Vec::new();
            ext.encode(&update(), &mut bytes).unwrap();
            let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert!(declared <= bytes.len() && bytes.len() - declared < 4);
            assert_eq!(EnrpMessage::decode(&bytes).unwrap().message, update());
            assert_eq!(EnrpExtensions::read(&bytes).unwrap(), ext);
        }
    }

    #[test]
    fn bad_extensions_are_errors_not_panics() {
        let too_long = EnrpExtensions {
            registrant: Some("x".repeat(MAX_REGISTRANT_LEN + 1)),
            ..Default::default()
        };
        let mut out = vec![9];
        assert!(too_long.encode(&update(), &mut out).is_err());
        assert_eq!(out, vec![9], "left as it was");
        // Invalid UTF-8 in a registrant.
        let mut bytes = update().to_bytes().unwrap();
        let start = bytes.len();
        bytes.extend_from_slice(&[0x80, 0x40, 0x00, 0x06, 0xff, 0xfe, 0, 0]);
        let len = (start + 6) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(EnrpMessage::decode(&bytes).is_ok());
        assert!(EnrpExtensions::read(&bytes).is_err());
        // A nonce of the wrong size; a list cut short.
        for tlv in [
            &[0x80u8, 0x41, 0x00, 0x08, 1, 2, 3, 4][..],
            &[0x80, 0x42, 0x00, 0x07, 0, 9, 1, 0][..],
        ] {
            let mut b = update().to_bytes().unwrap();
            let start = b.len();
            b.extend_from_slice(tlv);
            let len = (start + usize::from(u16::from_be_bytes([tlv[2], tlv[3]]))) as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
            assert!(EnrpExtensions::read(&b).is_err(), "{tlv:?}");
        }
        for n in 0..8 {
            let _ = EnrpExtensions::read(&[0x04, 0, 0x00, n]);
        }
    }
}
