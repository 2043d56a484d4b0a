//! The 10 ENRP messages (RFC 5353 section 2) with their flags: R (reply
//! required) of ENRP_PRESENCE, W of ENRP_HANDLE_TABLE_REQUEST, M and R
//! (reject) of ENRP_HANDLE_TABLE_RESPONSE, R (reject) of ENRP_LIST_RESPONSE,
//! and RSPLIB's T ("takeover suggested") of ENRP_HANDLE_UPDATE.

use serde::Serialize;

use crate::asap::{handle, pool_elements};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::ServerId;
use crate::message::{encode_message, flags, Body, Decoded, Header};
use crate::params::{decode_checksum, OperationError, PoolElement, PoolHandle, ServerInformation};
use crate::tlv::ptype;

/// ENRP message type codes (RFC 5353 section 2, figure 1).
pub mod msg_type {
    /// ENRP_PRESENCE.
    pub const PRESENCE: u8 = 0x01;
    /// ENRP_HANDLE_TABLE_REQUEST.
    pub const HANDLE_TABLE_REQUEST: u8 = 0x02;
    /// ENRP_HANDLE_TABLE_RESPONSE.
    pub const HANDLE_TABLE_RESPONSE: u8 = 0x03;
    /// ENRP_HANDLE_UPDATE.
    pub const HANDLE_UPDATE: u8 = 0x04;
    /// ENRP_LIST_REQUEST.
    pub const LIST_REQUEST: u8 = 0x05;
    /// ENRP_LIST_RESPONSE.
    pub const LIST_RESPONSE: u8 = 0x06;
    /// ENRP_INIT_TAKEOVER.
    pub const INIT_TAKEOVER: u8 = 0x07;
    /// ENRP_INIT_TAKEOVER_ACK.
    pub const INIT_TAKEOVER_ACK: u8 = 0x08;
    /// ENRP_TAKEOVER_SERVER.
    pub const TAKEOVER_SERVER: u8 = 0x09;
    /// ENRP_ERROR.
    pub const ERROR: u8 = 0x0a;
}

use msg_type as mt;

/// R (reply required), W (own children only), R (reject), T (takeover
/// suggested): bit 0.
const BIT0: u8 = 0x01;
/// M (more to send): bit 1.
const BIT1: u8 = 0x02;

/// ENRP_HANDLE_UPDATE action (RFC 5353 section 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpdateAction {
    /// 0x0000: add or update the PE.
    AddPe,
    /// 0x0001: delete the PE.
    DelPe,
}

/// One pool of a handle table transfer: a handle and its PEs (RFC 5353
/// section 2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolEntry {
    /// Pool.
    pub pool_handle: PoolHandle,
    /// Its PEs (at least one).
    pub pool_elements: Vec<PoolElement>,
}

/// An ENRP message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum EnrpMessage {
    /// RFC 5353 2.1.
    #[serde(rename = "ENRP_PRESENCE")]
    Presence {
        /// R flag: the receiver must answer with its own presence.
        reply_required: bool,
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar (0 for all).
        receiver: ServerId,
        /// PE checksum of the sender's own PEs (SHOULD be present).
        checksum: Option<u16>,
        /// The sender's server information.
        server_info: Option<ServerInformation>,
    },
    /// RFC 5353 2.2.
    #[serde(rename = "ENRP_HANDLE_TABLE_REQUEST")]
    HandleTableRequest {
        /// W flag: only the PEs owned by the receiver.
        own_children_only: bool,
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
    },
    /// RFC 5353 2.3.
    #[serde(rename = "ENRP_HANDLE_TABLE_RESPONSE")]
    HandleTableResponse {
        /// M flag: more responses follow.
        more_to_send: bool,
        /// R flag: the request is rejected.
        reject: bool,
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// Pools with their PEs.
        pools: Vec<PoolEntry>,
    },
    /// RFC 5353 2.4, with RSPLIB's T flag.
    #[serde(rename = "ENRP_HANDLE_UPDATE")]
    HandleUpdate {
        /// T flag: takeover suggested.
        takeover_suggested: bool,
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// Add or delete.
        action: UpdateAction,
        /// Pool.
        pool_handle: PoolHandle,
        /// The PE.
        pool_element: PoolElement,
    },
    /// RFC 5353 2.5.
    #[serde(rename = "ENRP_LIST_REQUEST")]
    ListRequest {
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
    },
    /// RFC 5353 2.6.
    #[serde(rename = "ENRP_LIST_RESPONSE")]
    ListResponse {
        /// R flag: the request is rejected.
        reject: bool,
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// Known peers.
        servers: Vec<ServerInformation>,
    },
    /// RFC 5353 2.7.
    #[serde(rename = "ENRP_INIT_TAKEOVER")]
    InitTakeover {
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// Registrar to take over.
        target: ServerId,
    },
    /// RFC 5353 2.8.
    #[serde(rename = "ENRP_INIT_TAKEOVER_ACK")]
    InitTakeoverAck {
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// Registrar to take over.
        target: ServerId,
    },
    /// RFC 5353 2.9.
    #[serde(rename = "ENRP_TAKEOVER_SERVER")]
    TakeoverServer {
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// Registrar taken over.
        target: ServerId,
    },
    /// RFC 5353 2.10.
    #[serde(rename = "ENRP_ERROR")]
    Error {
        /// Sending registrar.
        sender: ServerId,
        /// Receiving registrar.
        receiver: ServerId,
        /// The error.
        error: OperationError,
    },
}

impl EnrpMessage {
    /// The message type code.
    pub fn msg_type(&self) -> u8 {
        use EnrpMessage::*;
        match self {
            Presence { .. } => mt::PRESENCE,
            HandleTableRequest { .. } => mt::HANDLE_TABLE_REQUEST,
            HandleTableResponse { .. } => mt::HANDLE_TABLE_RESPONSE,
            HandleUpdate { .. } => mt::HANDLE_UPDATE,
            ListRequest { .. } => mt::LIST_REQUEST,
            ListResponse { .. } => mt::LIST_RESPONSE,
            InitTakeover { .. } => mt::INIT_TAKEOVER,
            InitTakeoverAck { .. } => mt::INIT_TAKEOVER_ACK,
            TakeoverServer { .. } => mt::TAKEOVER_SERVER,
            Error { .. } => mt::ERROR,
        }
    }

    /// The RFC name of a message type, if it is defined.
    pub fn type_name(t: u8) -> Option<&'static str> {
        Some(match t {
            mt::PRESENCE => "ENRP_PRESENCE",
            mt::HANDLE_TABLE_REQUEST => "ENRP_HANDLE_TABLE_REQUEST",
            mt::HANDLE_TABLE_RESPONSE => "ENRP_HANDLE_TABLE_RESPONSE",
            mt::HANDLE_UPDATE => "ENRP_HANDLE_UPDATE",
            mt::LIST_REQUEST => "ENRP_LIST_REQUEST",
            mt::LIST_RESPONSE => "ENRP_LIST_RESPONSE",
            mt::INIT_TAKEOVER => "ENRP_INIT_TAKEOVER",
            mt::INIT_TAKEOVER_ACK => "ENRP_INIT_TAKEOVER_ACK",
            mt::TAKEOVER_SERVER => "ENRP_TAKEOVER_SERVER",
            mt::ERROR => "ENRP_ERROR",
            _ => return None,
        })
    }

    /// The RFC name of this message.
    pub fn name(&self) -> &'static str {
        Self::type_name(self.msg_type()).unwrap_or("ENRP_UNKNOWN")
    }

    /// The sending registrar.
    pub fn sender(&self) -> ServerId {
        use EnrpMessage::*;
        match self {
            Presence { sender, .. }
            | HandleTableRequest { sender, .. }
            | HandleTableResponse { sender, .. }
            | HandleUpdate { sender, .. }
            | ListRequest { sender, .. }
            | ListResponse { sender, .. }
            | InitTakeover { sender, .. }
            | InitTakeoverAck { sender, .. }
            | TakeoverServer { sender, .. }
            | Error { sender, .. } => *sender,
        }
    }

    /// The receiving registrar ([`ServerId::UNDETERMINED`], 0, when
    /// addressed to all).
    pub fn receiver(&self) -> ServerId {
        use EnrpMessage::*;
        match self {
            Presence { receiver, .. }
            | HandleTableRequest { receiver, .. }
            | HandleTableResponse { receiver, .. }
            | HandleUpdate { receiver, .. }
            | ListRequest { receiver, .. }
            | ListResponse { receiver, .. }
            | InitTakeover { receiver, .. }
            | InitTakeoverAck { receiver, .. }
            | TakeoverServer { receiver, .. }
            | Error { receiver, .. } => *receiver,
        }
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        use EnrpMessage::*;
        match self {
            Presence {
                reply_required: f, ..
            }
            | HandleTableRequest {
                own_children_only: f,
                ..
            }
            | ListResponse { reject: f, .. }
            | HandleUpdate {
                takeover_suggested: f,
                ..
            } => flags(&[(*f, BIT0)]),
            HandleTableResponse {
                more_to_send,
                reject,
                ..
            } => flags(&[(*reject, BIT0), (*more_to_send, BIT1)]),
            _ => 0,
        }
    }

    /// Append the canonical encoding (padded to a multiple of 4) to `out`.
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        use EnrpMessage::*;
        let (sender, receiver) = (self.sender(), self.receiver());
        encode_message(out, self.msg_type(), self.flags(), |w| {
            w.u32(sender.get());
            w.u32(receiver.get());
            match self {
                Presence {
                    checksum,
                    server_info,
                    ..
                } => {
                    if let Some(c) = checksum {
                        w.tlv_bytes(ptype::PE_CHECKSUM, &c.to_be_bytes(), "PE Checksum")?;
                    }
                    match server_info {
                        Some(si) => si.encode(w),
                        None => Ok(()),
                    }
                }
                HandleTableRequest { .. } | ListRequest { .. } => Ok(()),
                HandleTableResponse { pools, .. } => {
                    for p in pools {
                        if p.pool_elements.is_empty() {
                            return Err(EncodeError::Invalid("a pool entry without PEs"));
                        }
                        p.pool_handle.encode(w)?;
                        for pe in &p.pool_elements {
                            pe.encode(w)?;
                        }
                    }
                    Ok(())
                }
                HandleUpdate {
                    action,
                    pool_handle,
                    pool_element,
                    ..
                } => {
                    w.u16(match action {
                        UpdateAction::AddPe => 0,
                        UpdateAction::DelPe => 1,
                    });
                    w.u16(0);
                    pool_handle.encode(w)?;
                    pool_element.encode(w)
                }
                ListResponse { servers, .. } => servers.iter().try_for_each(|s| s.encode(w)),
                InitTakeover { target, .. }
                | InitTakeoverAck { target, .. }
                | TakeoverServer { target, .. } => {
                    w.u32(target.get());
                    Ok(())
                }
                Error { error, .. } => error.encode(w),
            }
        })
    }

    /// Decode one complete message (optionally followed by its padding).
    pub fn decode(bytes: &[u8]) -> Result<Decoded<EnrpMessage>, DecodeError> {
        let header = Header::parse(bytes)?;
        if Self::type_name(header.msg_type).is_none() {
            return Err(header.unrecognized());
        }
        let mut b = Body::new(bytes, header);
        let sender = ServerId::new(b.u32("sending server's identifier")?);
        let receiver = ServerId::new(b.u32("receiving server's identifier")?);
        let m = match header.msg_type {
            mt::PRESENCE => {
                let mut c = b.params();
                let checksum = match c.optional(&mut b.ctx, ptype::PE_CHECKSUM)? {
                    Some(t) => Some(decode_checksum(&b.ctx, &t)?),
                    None => None,
                };
                let server_info = match c.optional(&mut b.ctx, ptype::SERVER_INFORMATION)? {
                    Some(t) => Some(ServerInformation::decode(&mut b.ctx, &t)?),
                    None => None,
                };
                c.finish(&mut b.ctx)?;
                EnrpMessage::Presence {
                    reply_required: b.flag(BIT0),
                    sender,
                    receiver,
                    checksum,
                    server_info,
                }
            }
            mt::HANDLE_TABLE_REQUEST | mt::LIST_REQUEST => {
                b.params().finish(&mut b.ctx)?;
                if header.msg_type == mt::LIST_REQUEST {
                    EnrpMessage::ListRequest { sender, receiver }
                } else {
                    EnrpMessage::HandleTableRequest {
                        own_children_only: b.flag(BIT0),
                        sender,
                        receiver,
                    }
                }
            }
            mt::HANDLE_TABLE_RESPONSE => {
                let mut c = b.params();
                let mut pools = Vec::new();
                while let Some(t) = c.optional(&mut b.ctx, ptype::POOL_HANDLE)? {
                    let pool_handle = PoolHandle::decode(&b.ctx, &t)?;
                    let pool_elements = pool_elements(&mut b, &mut c)?;
                    if pool_elements.is_empty() {
                        return Err(t.err(DecodeErrorKind::MissingParameter(
                            "Pool Element after a Pool Handle",
                        )));
                    }
                    pools.push(PoolEntry {
                        pool_handle,
                        pool_elements,
                    });
                }
                c.finish(&mut b.ctx)?;
                EnrpMessage::HandleTableResponse {
                    more_to_send: b.flag(BIT1),
                    reject: b.flag(BIT0),
                    sender,
                    receiver,
                    pools,
                }
            }
            mt::HANDLE_UPDATE => {
                let at = 12;
                let action = match b.u16("update action")? {
                    0 => UpdateAction::AddPe,
                    1 => UpdateAction::DelPe,
                    v => {
                        return Err(DecodeError::new(
                            at,
                            DecodeErrorKind::InvalidValue {
                                field: "update action",
                                value: v.into(),
                            },
                        ))
                    }
                };
                b.u16("reserved")?;
                let mut c = b.params();
                let pool_handle = handle(&mut b, &mut c)?;
                let t = c.expect(&mut b.ctx, ptype::POOL_ELEMENT)?;
                let pool_element = PoolElement::decode(&mut b.ctx, &t)?;
                c.finish(&mut b.ctx)?;
                EnrpMessage::HandleUpdate {
                    takeover_suggested: b.flag(BIT0),
                    sender,
                    receiver,
                    action,
                    pool_handle,
                    pool_element,
                }
            }
            mt::LIST_RESPONSE => {
                let mut c = b.params();
                let mut servers = Vec::new();
                while let Some(t) = c.optional(&mut b.ctx, ptype::SERVER_INFORMATION)? {
                    servers.push(ServerInformation::decode(&mut b.ctx, &t)?);
                }
                c.finish(&mut b.ctx)?;
                EnrpMessage::ListResponse {
                    reject: b.flag(BIT0),
                    sender,
                    receiver,
                    servers,
                }
            }
            mt::INIT_TAKEOVER | mt::INIT_TAKEOVER_ACK | mt::TAKEOVER_SERVER => {
                let target = ServerId::new(b.u32("targeting server's identifier")?);
                b.params().finish(&mut b.ctx)?;
                match header.msg_type {
                    mt::INIT_TAKEOVER => EnrpMessage::InitTakeover {
                        sender,
                        receiver,
                        target,
                    },
                    mt::INIT_TAKEOVER_ACK => EnrpMessage::InitTakeoverAck {
                        sender,
                        receiver,
                        target,
                    },
                    _ => EnrpMessage::TakeoverServer {
                        sender,
                        receiver,
                        target,
                    },
                }
            }
            _ => {
                let mut c = b.params();
                let t = c.expect(&mut b.ctx, ptype::OPERATION_ERROR)?;
                let error = OperationError::decode(&b.ctx, &t)?;
                c.finish(&mut b.ctx)?;
                EnrpMessage::Error {
                    sender,
                    receiver,
                    error,
                }
            }
        };
        Ok(b.done(m))
    }
}

impl crate::WireMessage for EnrpMessage {
    fn decode(bytes: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        EnrpMessage::decode(bytes)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        EnrpMessage::encode(self, out)
    }

    fn name(&self) -> &'static str {
        EnrpMessage::name(self)
    }
}
