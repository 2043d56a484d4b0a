//! The 14 ASAP messages (RFC 5352 section 2.2) with their flags, plus the
//! RSPLIB extensions: the Handle Resolution option 0x803f in
//! ASAP_HANDLE_RESOLUTION and the optional PE identifier in
//! ASAP_ENDPOINT_KEEP_ALIVE (DESIGN section 5).

use serde::Serialize;

use crate::error::{DecodeError, EncodeError};
use crate::ids::{PeId, ServerId};
use crate::message::{encode_message, flags, Body, Decoded, Header};
use crate::params::{
    decode_u32, encode_u32, OperationError, PoolElement, PoolHandle, Transport,
    ASAP_TRANSPORT_TYPES,
};
use crate::tlv::{ptype, Cursor, Writer};

/// ASAP message type codes (RFC 5352 section 2.2, figure 1).
pub mod msg_type {
    /// ASAP_REGISTRATION.
    pub const REGISTRATION: u8 = 0x01;
    /// ASAP_DEREGISTRATION.
    pub const DEREGISTRATION: u8 = 0x02;
    /// ASAP_REGISTRATION_RESPONSE.
    pub const REGISTRATION_RESPONSE: u8 = 0x03;
    /// ASAP_DEREGISTRATION_RESPONSE.
    pub const DEREGISTRATION_RESPONSE: u8 = 0x04;
    /// ASAP_HANDLE_RESOLUTION.
    pub const HANDLE_RESOLUTION: u8 = 0x05;
    /// ASAP_HANDLE_RESOLUTION_RESPONSE.
    pub const HANDLE_RESOLUTION_RESPONSE: u8 = 0x06;
    /// ASAP_ENDPOINT_KEEP_ALIVE.
    pub const ENDPOINT_KEEP_ALIVE: u8 = 0x07;
    /// ASAP_ENDPOINT_KEEP_ALIVE_ACK.
    pub const ENDPOINT_KEEP_ALIVE_ACK: u8 = 0x08;
    /// ASAP_ENDPOINT_UNREACHABLE.
    pub const ENDPOINT_UNREACHABLE: u8 = 0x09;
    /// ASAP_SERVER_ANNOUNCE.
    pub const SERVER_ANNOUNCE: u8 = 0x0a;
    /// ASAP_COOKIE.
    pub const COOKIE: u8 = 0x0b;
    /// ASAP_COOKIE_ECHO.
    pub const COOKIE_ECHO: u8 = 0x0c;
    /// ASAP_BUSINESS_CARD.
    pub const BUSINESS_CARD: u8 = 0x0d;
    /// ASAP_ERROR.
    pub const ERROR: u8 = 0x0e;
}

use msg_type as mt;

/// The single flag bit used by the messages that have one (R, S, A, H).
const FLAG: u8 = 0x01;

/// An ASAP message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum AsapMessage {
    /// RFC 5352 2.2.1: a PE registers (or re-registers) with its home registrar.
    #[serde(rename = "ASAP_REGISTRATION")]
    Registration {
        /// Pool to join.
        pool_handle: PoolHandle,
        /// The PE.
        pool_element: PoolElement,
    },
    /// RFC 5352 2.2.2: a PE leaves a pool.
    #[serde(rename = "ASAP_DEREGISTRATION")]
    Deregistration {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
    },
    /// RFC 5352 2.2.3.
    #[serde(rename = "ASAP_REGISTRATION_RESPONSE")]
    RegistrationResponse {
        /// R flag: the registration was rejected.
        reject: bool,
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Cause of a rejection, or a warning.
        error: Option<OperationError>,
    },
    /// RFC 5352 2.2.4.
    #[serde(rename = "ASAP_DEREGISTRATION_RESPONSE")]
    DeregistrationResponse {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
        /// Present if the deregistration failed.
        error: Option<OperationError>,
    },
    /// RFC 5352 2.2.5, with RSPLIB's Handle Resolution option.
    #[serde(rename = "ASAP_HANDLE_RESOLUTION")]
    HandleResolution {
        /// S flag: subscribe to updates of the pool.
        subscribe: bool,
        /// Pool.
        pool_handle: PoolHandle,
        /// Option 0x803f: number of PEs wanted (registrar default when absent).
        items: Option<u32>,
    },
    /// RFC 5352 2.2.6.
    #[serde(rename = "ASAP_HANDLE_RESOLUTION_RESPONSE")]
    HandleResolutionResponse {
        /// A flag: updates will be sent.
        accept_updates: bool,
        /// Pool.
        pool_handle: PoolHandle,
        /// The pool's overall policy (round robin when absent).
        policy: Option<crate::Policy>,
        /// PEs of the pool.
        pool_elements: Vec<PoolElement>,
        /// Present when the resolution failed.
        error: Option<OperationError>,
    },
    /// RFC 5352 2.2.7, with RSPLIB's optional PE identifier (when absent the
    /// PE answers for all its PEs).
    #[serde(rename = "ASAP_ENDPOINT_KEEP_ALIVE")]
    EndpointKeepAlive {
        /// H flag: the sender wants to be the PE's home registrar.
        home: bool,
        /// Sending registrar.
        server_id: ServerId,
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier (RSPLIB extension).
        identifier: Option<PeId>,
    },
    /// RFC 5352 2.2.8.
    #[serde(rename = "ASAP_ENDPOINT_KEEP_ALIVE_ACK")]
    EndpointKeepAliveAck {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
    },
    /// RFC 5352 2.2.9.
    #[serde(rename = "ASAP_ENDPOINT_UNREACHABLE")]
    EndpointUnreachable {
        /// Pool.
        pool_handle: PoolHandle,
        /// PE identifier.
        identifier: PeId,
    },
    /// RFC 5352 2.2.10.
    #[serde(rename = "ASAP_SERVER_ANNOUNCE")]
    ServerAnnounce {
        /// Announcing registrar.
        server_id: ServerId,
        /// Where to reach it (SCTP or TCP transports).
        transports: Vec<Transport>,
    },
    /// RFC 5352 2.2.11.
    #[serde(rename = "ASAP_COOKIE")]
    Cookie {
        /// The cookie.
        #[serde(with = "crate::hex_bytes")]
        cookie: Vec<u8>,
    },
    /// RFC 5352 2.2.12.
    #[serde(rename = "ASAP_COOKIE_ECHO")]
    CookieEcho {
        /// The cookie.
        #[serde(with = "crate::hex_bytes")]
        cookie: Vec<u8>,
    },
    /// RFC 5352 2.2.13.
    #[serde(rename = "ASAP_BUSINESS_CARD")]
    BusinessCard {
        /// Pool.
        pool_handle: PoolHandle,
        /// Preferred failover order.
        pool_elements: Vec<PoolElement>,
    },
    /// RFC 5352 2.2.14.
    #[serde(rename = "ASAP_ERROR")]
    Error {
        /// The error.
        error: OperationError,
    },
}

impl AsapMessage {
    /// The message type code.
    pub fn msg_type(&self) -> u8 {
        use AsapMessage::*;
        match self {
            Registration { .. } => mt::REGISTRATION,
            Deregistration { .. } => mt::DEREGISTRATION,
            RegistrationResponse { .. } => mt::REGISTRATION_RESPONSE,
            DeregistrationResponse { .. } => mt::DEREGISTRATION_RESPONSE,
            HandleResolution { .. } => mt::HANDLE_RESOLUTION,
            HandleResolutionResponse { .. } => mt::HANDLE_RESOLUTION_RESPONSE,
            EndpointKeepAlive { .. } => mt::ENDPOINT_KEEP_ALIVE,
            EndpointKeepAliveAck { .. } => mt::ENDPOINT_KEEP_ALIVE_ACK,
            EndpointUnreachable { .. } => mt::ENDPOINT_UNREACHABLE,
            ServerAnnounce { .. } => mt::SERVER_ANNOUNCE,
            Cookie { .. } => mt::COOKIE,
            CookieEcho { .. } => mt::COOKIE_ECHO,
            BusinessCard { .. } => mt::BUSINESS_CARD,
            Error { .. } => mt::ERROR,
        }
    }

    /// The RFC name of a message type, if it is defined.
    pub fn type_name(t: u8) -> Option<&'static str> {
        Some(match t {
            mt::REGISTRATION => "ASAP_REGISTRATION",
            mt::DEREGISTRATION => "ASAP_DEREGISTRATION",
            mt::REGISTRATION_RESPONSE => "ASAP_REGISTRATION_RESPONSE",
            mt::DEREGISTRATION_RESPONSE => "ASAP_DEREGISTRATION_RESPONSE",
            mt::HANDLE_RESOLUTION => "ASAP_HANDLE_RESOLUTION",
            mt::HANDLE_RESOLUTION_RESPONSE => "ASAP_HANDLE_RESOLUTION_RESPONSE",
            mt::ENDPOINT_KEEP_ALIVE => "ASAP_ENDPOINT_KEEP_ALIVE",
            mt::ENDPOINT_KEEP_ALIVE_ACK => "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
            mt::ENDPOINT_UNREACHABLE => "ASAP_ENDPOINT_UNREACHABLE",
            mt::SERVER_ANNOUNCE => "ASAP_SERVER_ANNOUNCE",
            mt::COOKIE => "ASAP_COOKIE",
            mt::COOKIE_ECHO => "ASAP_COOKIE_ECHO",
            mt::BUSINESS_CARD => "ASAP_BUSINESS_CARD",
            mt::ERROR => "ASAP_ERROR",
            _ => return None,
        })
    }

    /// The RFC name of this message.
    pub fn name(&self) -> &'static str {
        Self::type_name(self.msg_type()).unwrap_or("ASAP_UNKNOWN")
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        use AsapMessage::*;
        match self {
            RegistrationResponse { reject: f, .. }
            | HandleResolution { subscribe: f, .. }
            | HandleResolutionResponse {
                accept_updates: f, ..
            }
            | EndpointKeepAlive { home: f, .. } => flags(&[(*f, FLAG)]),
            _ => 0,
        }
    }

    /// Append the canonical encoding (padded to a multiple of 4) to `out`.
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        use AsapMessage::*;
        encode_message(out, self.msg_type(), self.flags(), |w| match self {
            Registration {
                pool_handle,
                pool_element,
            } => {
                pool_handle.encode(w)?;
                pool_element.encode(w)
            }
            Deregistration {
                pool_handle,
                identifier,
            }
            | EndpointKeepAliveAck {
                pool_handle,
                identifier,
            }
            | EndpointUnreachable {
                pool_handle,
                identifier,
            } => {
                pool_handle.encode(w)?;
                encode_u32(w, ptype::PE_IDENTIFIER, identifier.get())
            }
            RegistrationResponse {
                pool_handle,
                identifier,
                error,
                ..
            }
            | DeregistrationResponse {
                pool_handle,
                identifier,
                error,
            } => {
                pool_handle.encode(w)?;
                encode_u32(w, ptype::PE_IDENTIFIER, identifier.get())?;
                encode_error(w, error)
            }
            HandleResolution {
                pool_handle, items, ..
            } => {
                pool_handle.encode(w)?;
                match items {
                    Some(n) => encode_u32(w, ptype::HANDLE_RESOLUTION_OPTION, *n),
                    None => Ok(()),
                }
            }
            HandleResolutionResponse {
                pool_handle,
                policy,
                pool_elements,
                error,
                ..
            } => {
                pool_handle.encode(w)?;
                if let Some(p) = policy {
                    p.encode(w)?;
                }
                for pe in pool_elements {
                    pe.encode(w)?;
                }
                encode_error(w, error)
            }
            EndpointKeepAlive {
                server_id,
                pool_handle,
                identifier,
                ..
            } => {
                w.u32(server_id.get());
                pool_handle.encode(w)?;
                match identifier {
                    Some(id) => encode_u32(w, ptype::PE_IDENTIFIER, id.get()),
                    None => Ok(()),
                }
            }
            ServerAnnounce {
                server_id,
                transports,
            } => {
                w.u32(server_id.get());
                for t in transports {
                    if !ASAP_TRANSPORT_TYPES.contains(&t.param_type()) {
                        return Err(EncodeError::Invalid(
                            "a server announce transport other than SCTP or TCP",
                        ));
                    }
                    t.encode(w)?;
                }
                Ok(())
            }
            Cookie { cookie } | CookieEcho { cookie } => {
                w.tlv_bytes(ptype::COOKIE, cookie, "Cookie parameter")
            }
            BusinessCard {
                pool_handle,
                pool_elements,
            } => {
                pool_handle.encode(w)?;
                pool_elements.iter().try_for_each(|pe| pe.encode(w))
            }
            Error { error } => error.encode(w),
        })
    }

    /// Decode one complete message (optionally followed by its padding).
    pub fn decode(bytes: &[u8]) -> Result<Decoded<AsapMessage>, DecodeError> {
        let header = Header::parse(bytes)?;
        let mut b = Body::new(bytes, header);
        let m = match header.msg_type {
            mt::REGISTRATION => {
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let t = c.expect(&mut b.ctx, ptype::POOL_ELEMENT)?;
                let pool_element = PoolElement::decode(&mut b.ctx, &t)?;
                c.finish(&mut b.ctx)?;
                AsapMessage::Registration {
                    pool_handle,
                    pool_element,
                }
            }
            mt::DEREGISTRATION | mt::ENDPOINT_KEEP_ALIVE_ACK | mt::ENDPOINT_UNREACHABLE => {
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let identifier = pe_id(&mut b, &mut c)?;
                c.finish(&mut b.ctx)?;
                match header.msg_type {
                    mt::DEREGISTRATION => AsapMessage::Deregistration {
                        pool_handle,
                        identifier,
                    },
                    mt::ENDPOINT_KEEP_ALIVE_ACK => AsapMessage::EndpointKeepAliveAck {
                        pool_handle,
                        identifier,
                    },
                    _ => AsapMessage::EndpointUnreachable {
                        pool_handle,
                        identifier,
                    },
                }
            }
            mt::REGISTRATION_RESPONSE | mt::DEREGISTRATION_RESPONSE => {
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let identifier = pe_id(&mut b, &mut c)?;
                let error = op_error(&mut b, &mut c)?;
                c.finish(&mut b.ctx)?;
                if header.msg_type == mt::REGISTRATION_RESPONSE {
                    AsapMessage::RegistrationResponse {
                        reject: b.flag(FLAG),
                        pool_handle,
                        identifier,
                        error,
                    }
                } else {
                    AsapMessage::DeregistrationResponse {
                        pool_handle,
                        identifier,
                        error,
                    }
                }
            }
            mt::HANDLE_RESOLUTION => {
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let items = match c.optional(&mut b.ctx, ptype::HANDLE_RESOLUTION_OPTION)? {
                    Some(t) => Some(decode_u32(&b.ctx, &t, "Handle Resolution option")?),
                    None => None,
                };
                c.finish(&mut b.ctx)?;
                AsapMessage::HandleResolution {
                    subscribe: b.flag(FLAG),
                    pool_handle,
                    items,
                }
            }
            mt::HANDLE_RESOLUTION_RESPONSE => {
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let policy = match c.optional(&mut b.ctx, ptype::POLICY)? {
                    Some(t) => Some(crate::Policy::decode(&b.ctx, &t)?),
                    None => None,
                };
                let pool_elements = pool_elements(&mut b, &mut c)?;
                let error = op_error(&mut b, &mut c)?;
                c.finish(&mut b.ctx)?;
                AsapMessage::HandleResolutionResponse {
                    accept_updates: b.flag(FLAG),
                    pool_handle,
                    policy,
                    pool_elements,
                    error,
                }
            }
            mt::ENDPOINT_KEEP_ALIVE => {
                let server_id = ServerId::new(b.u32("server identifier")?);
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let identifier = match c.optional(&mut b.ctx, ptype::PE_IDENTIFIER)? {
                    Some(t) => Some(PeId::new(decode_u32(
                        &b.ctx,
                        &t,
                        "PE Identifier parameter",
                    )?)),
                    None => None,
                };
                c.finish(&mut b.ctx)?;
                AsapMessage::EndpointKeepAlive {
                    home: b.flag(FLAG),
                    server_id,
                    pool_handle,
                    identifier,
                }
            }
            mt::SERVER_ANNOUNCE => {
                let server_id = ServerId::new(b.u32("server identifier")?);
                let mut c = b.params();
                let mut transports = Vec::new();
                while let Some(t) = c.optional_any(&mut b.ctx, &ASAP_TRANSPORT_TYPES)? {
                    transports.push(Transport::decode(&mut b.ctx, &t)?);
                }
                c.finish(&mut b.ctx)?;
                AsapMessage::ServerAnnounce {
                    server_id,
                    transports,
                }
            }
            mt::COOKIE | mt::COOKIE_ECHO => {
                let mut c = b.params();
                let t = c.expect(&mut b.ctx, ptype::COOKIE)?;
                let cookie = t.value(&b.ctx).to_vec();
                c.finish(&mut b.ctx)?;
                if header.msg_type == mt::COOKIE {
                    AsapMessage::Cookie { cookie }
                } else {
                    AsapMessage::CookieEcho { cookie }
                }
            }
            mt::BUSINESS_CARD => {
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let pool_elements = pool_elements(&mut b, &mut c)?;
                c.finish(&mut b.ctx)?;
                AsapMessage::BusinessCard {
                    pool_handle,
                    pool_elements,
                }
            }
            mt::ERROR => {
                let mut c = b.params();
                let t = c.expect(&mut b.ctx, ptype::OPERATION_ERROR)?;
                let error = OperationError::decode(&b.ctx, &t)?;
                c.finish(&mut b.ctx)?;
                AsapMessage::Error { error }
            }
            _ => return Err(header.unrecognized()),
        };
        Ok(b.done(m))
    }
}

fn encode_error(w: &mut Writer<'_>, e: &Option<OperationError>) -> Result<(), EncodeError> {
    match e {
        Some(e) => e.encode(w),
        None => Ok(()),
    }
}

pub(crate) fn handle(b: &mut Body<'_>, c: &mut Cursor) -> Result<PoolHandle, DecodeError> {
    let t = c.expect(&mut b.ctx, ptype::POOL_HANDLE)?;
    PoolHandle::decode(&b.ctx, &t)
}

fn pe_id(b: &mut Body<'_>, c: &mut Cursor) -> Result<PeId, DecodeError> {
    let t = c.expect(&mut b.ctx, ptype::PE_IDENTIFIER)?;
    decode_u32(&b.ctx, &t, "PE Identifier parameter").map(PeId::new)
}

pub(crate) fn op_error(
    b: &mut Body<'_>,
    c: &mut Cursor,
) -> Result<Option<OperationError>, DecodeError> {
    match c.optional(&mut b.ctx, ptype::OPERATION_ERROR)? {
        Some(t) => Ok(Some(OperationError::decode(&b.ctx, &t)?)),
        None => Ok(None),
    }
}

pub(crate) fn pool_elements(
    b: &mut Body<'_>,
    c: &mut Cursor,
) -> Result<Vec<PoolElement>, DecodeError> {
    let mut v = Vec::new();
    while let Some(t) = c.optional(&mut b.ctx, ptype::POOL_ELEMENT)? {
        v.push(PoolElement::decode(&mut b.ctx, &t)?);
    }
    Ok(v)
}

impl crate::WireMessage for AsapMessage {
    fn decode(bytes: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        AsapMessage::decode(bytes)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        AsapMessage::encode(self, out)
    }

    fn name(&self) -> &'static str {
        AsapMessage::name(self)
    }
}
