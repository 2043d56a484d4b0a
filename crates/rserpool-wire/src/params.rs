//! The parameters of RFC 5354 section 3 (other than the selection policy,
//! which has its own module): addresses, transports, pool handle, pool
//! element, server information, operation error with its causes, and the
//! small fixed-size ones.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::{PeId, ServerId};
use crate::policy::Policy;
use crate::tlv::{be16, be32, ptype, Ctx, Tlv, Writer};

/// A pool handle (RFC 5354 section 3.9): an arbitrary, non-empty byte
/// string, compared exactly.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolHandle(Vec<u8>);

impl PoolHandle {
    /// A pool handle from bytes. `None` for an empty one.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let v = bytes.into();
        (!v.is_empty()).then_some(PoolHandle(v))
    }

    /// The bytes of the handle.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The handle as text, if it is printable (UTF-8 without control
    /// characters).
    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.0)
            .ok()
            .filter(|s| !s.chars().any(char::is_control))
    }

    pub(crate) fn decode(ctx: &Ctx<'_>, tlv: &Tlv) -> Result<Self, DecodeError> {
        PoolHandle::new(tlv.value(ctx)).ok_or_else(|| {
            tlv.err(DecodeErrorKind::InvalidLength {
                what: "Pool Handle parameter (empty handle)",
                length: 4,
            })
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.tlv_bytes(ptype::POOL_HANDLE, &self.0, "Pool Handle parameter")
    }

    /// The bytes this handle's Pool Handle parameter takes in a message:
    /// a 4-byte header and the handle, padded to 4 (RFC 5354 section 3.9).
    pub fn encoded_len(&self) -> usize {
        4 + self.0.len().div_ceil(4) * 4
    }
}

impl fmt::Display for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(t) => f.write_str(t),
            None => write!(f, "0x{}", crate::hex_bytes::encode(&self.0)),
        }
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolHandle({self})")
    }
}

impl PoolHandle {
    /// A pool handle from a string literal. Panics on an empty string, so
    /// it is for constants only: use [`PoolHandle::new`] for anything that
    /// comes from a user, a file or the network.
    pub fn from_static(s: &'static str) -> Self {
        match PoolHandle::new(s.as_bytes()) {
            Some(h) => h,
            None => panic!("PoolHandle::from_static(\"\"): a pool handle cannot be empty"),
        }
    }
}

impl Serialize for PoolHandle {
    /// Text when printable, otherwise `{"hex": "..."}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_text() {
            Some(t) => s.serialize_str(t),
            None => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &crate::hex_bytes::encode(&self.0))?;
                m.end()
            }
        }
    }
}

/// Transport use of a user transport (RFC 5354 section 3.4): whether ASAP
/// control messages (cookies, business cards) share the data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportUse {
    /// 0x0000.
    DataOnly,
    /// 0x0001.
    DataPlusControl,
}

impl TransportUse {
    fn decode(tlv: &Tlv, v: u16) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(TransportUse::DataOnly),
            1 => Ok(TransportUse::DataPlusControl),
            _ => Err(tlv.err(DecodeErrorKind::InvalidValue {
                field: "transport use",
                value: v.into(),
            })),
        }
    }

    fn code(self) -> u16 {
        match self {
            TransportUse::DataOnly => 0,
            TransportUse::DataPlusControl => 1,
        }
    }
}

/// A transport parameter (RFC 5354 sections 3.3-3.7 and 3.16): the user
/// transport of a PE, the ASAP transport of a PE, a registrar's transport.
///
/// The 16 bits after the TCP port are "reserved" in RFC 5354 section 3.5;
/// RSPLIB and Wireshark read them as the transport use, and so do we,
/// because our PU-PE sessions over TCP carry ASAP control messages (DESIGN
/// section 3). The reserved fields of UDP, UDP-Lite and DCCP are ignored on
/// receipt and sent as zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum Transport {
    /// SCTP: one or more addresses.
    Sctp {
        /// Port.
        port: u16,
        /// Transport use.
        transport_use: TransportUse,
        /// Addresses (at least one).
        addresses: Vec<IpAddr>,
    },
    /// TCP: one address.
    Tcp {
        /// Port.
        port: u16,
        /// Transport use.
        transport_use: TransportUse,
        /// Address.
        address: IpAddr,
    },
    /// UDP: one address, data only.
    Udp {
        /// Port.
        port: u16,
        /// Address.
        address: IpAddr,
    },
    /// UDP-Lite: one address, data only.
    UdpLite {
        /// Port.
        port: u16,
        /// Address.
        address: IpAddr,
    },
    /// DCCP: one address, data only.
    Dccp {
        /// Port.
        port: u16,
        /// DCCP service code.
        service_code: u32,
        /// Address.
        address: IpAddr,
    },
    /// Opaque transport data.
    Opaque {
        /// The data.
        #[serde(with = "crate::hex_bytes")]
        data: Vec<u8>,
    },
}

/// Parameter types that carry a user transport.
pub(crate) const USER_TRANSPORT_TYPES: [u16; 6] = [
    ptype::SCTP_TRANSPORT,
    ptype::TCP_TRANSPORT,
    ptype::UDP_TRANSPORT,
    ptype::UDP_LITE_TRANSPORT,
    ptype::DCCP_TRANSPORT,
    ptype::OPAQUE_TRANSPORT,
];

/// Parameter types allowed where a registrar or ASAP endpoint is reached:
/// SCTP (the RFC) and TCP (our mapping, DESIGN section 3).
pub(crate) const ASAP_TRANSPORT_TYPES: [u16; 2] = [ptype::SCTP_TRANSPORT, ptype::TCP_TRANSPORT];

impl Transport {
    /// The port (0 for opaque transports).
    pub fn port(&self) -> u16 {
        match self {
            Transport::Sctp { port, .. }
            | Transport::Tcp { port, .. }
            | Transport::Udp { port, .. }
            | Transport::UdpLite { port, .. }
            | Transport::Dccp { port, .. } => *port,
            Transport::Opaque { .. } => 0,
        }
    }

    /// The addresses (none for opaque transports).
    pub fn addresses(&self) -> &[IpAddr] {
        match self {
            Transport::Sctp { addresses, .. } => addresses,
            Transport::Tcp { address, .. }
            | Transport::Udp { address, .. }
            | Transport::UdpLite { address, .. }
            | Transport::Dccp { address, .. } => std::slice::from_ref(address),
            Transport::Opaque { .. } => &[],
        }
    }

    /// Transport use: data only for everything but SCTP and TCP.
    pub fn transport_use(&self) -> TransportUse {
        match self {
            Transport::Sctp { transport_use, .. } | Transport::Tcp { transport_use, .. } => {
                *transport_use
            }
            _ => TransportUse::DataOnly,
        }
    }

    /// The parameter type code.
    pub fn param_type(&self) -> u16 {
        match self {
            Transport::Sctp { .. } => ptype::SCTP_TRANSPORT,
            Transport::Tcp { .. } => ptype::TCP_TRANSPORT,
            Transport::Udp { .. } => ptype::UDP_TRANSPORT,
            Transport::UdpLite { .. } => ptype::UDP_LITE_TRANSPORT,
            Transport::Dccp { .. } => ptype::DCCP_TRANSPORT,
            Transport::Opaque { .. } => ptype::OPAQUE_TRANSPORT,
        }
    }

    /// The transport as a complete transport parameter (RFC 5354
    /// sections 3.3-3.7, 3.16), without trailing padding: the
    /// information of an Inconsistent Transport Type cause (section
    /// 3.12.8).
    pub fn to_tlv(&self) -> Result<Vec<u8>, EncodeError> {
        crate::tlv::encode_single(|w| self.encode(w))
    }

    /// A transport from a complete transport parameter (its padding may
    /// follow), as [`Transport::to_tlv`] writes it.
    pub fn from_tlv(bytes: &[u8]) -> Result<Transport, DecodeError> {
        crate::tlv::decode_single(
            bytes,
            &[
                ptype::SCTP_TRANSPORT,
                ptype::TCP_TRANSPORT,
                ptype::UDP_TRANSPORT,
                ptype::UDP_LITE_TRANSPORT,
                ptype::DCCP_TRANSPORT,
                ptype::OPAQUE_TRANSPORT,
            ],
            "transport parameter",
            Transport::decode,
        )
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let s = w.begin(self.param_type());
        match self {
            Transport::Opaque { data } => w.bytes(data),
            Transport::Dccp {
                port, service_code, ..
            } => {
                w.u16(*port);
                w.u16(0);
                w.u32(*service_code);
            }
            Transport::Sctp { addresses, .. } if addresses.is_empty() => {
                return Err(EncodeError::Invalid("an SCTP transport without addresses"));
            }
            other => {
                w.u16(other.port());
                w.u16(other.transport_use().code());
            }
        }
        for a in self.addresses() {
            encode_address(w, a)?;
        }
        w.finish(s, "transport parameter")
    }

    pub(crate) fn decode(ctx: &mut Ctx<'_>, tlv: &Tlv) -> Result<Self, DecodeError> {
        const WHAT: &str = "transport parameter";
        if tlv.ptype == ptype::OPAQUE_TRANSPORT {
            return Ok(Transport::Opaque {
                data: tlv.value(ctx).to_vec(),
            });
        }
        let fixed = if tlv.ptype == ptype::DCCP_TRANSPORT {
            8
        } else {
            4
        };
        tlv.min_len(WHAT, fixed)?;
        let v = tlv.value(ctx);
        let port = be16(v, 0);
        let second = be16(v, 2);
        let mut cur = tlv.nested(fixed);
        let mut addresses = Vec::new();
        while let Some(a) = cur.optional_any(ctx, &[ptype::IPV4_ADDRESS, ptype::IPV6_ADDRESS])? {
            addresses.push(decode_address(ctx, &a)?);
        }
        cur.finish(ctx)?;
        let single = || -> Result<IpAddr, DecodeError> {
            match addresses.as_slice() {
                [a] => Ok(*a),
                [] => Err(tlv.err(DecodeErrorKind::MissingParameter("transport address"))),
                _ => Err(tlv.err(DecodeErrorKind::InvalidValue {
                    field: "number of addresses of a single-homed transport",
                    value: addresses.len() as u64,
                })),
            }
        };
        Ok(match tlv.ptype {
            ptype::SCTP_TRANSPORT => {
                if addresses.is_empty() {
                    return Err(tlv.err(DecodeErrorKind::MissingParameter("transport address")));
                }
                Transport::Sctp {
                    port,
                    transport_use: TransportUse::decode(tlv, second)?,
                    addresses,
                }
            }
            ptype::TCP_TRANSPORT => Transport::Tcp {
                port,
                transport_use: TransportUse::decode(tlv, second)?,
                address: single()?,
            },
            ptype::UDP_TRANSPORT => Transport::Udp {
                port,
                address: single()?,
            },
            ptype::UDP_LITE_TRANSPORT => Transport::UdpLite {
                port,
                address: single()?,
            },
            _ => Transport::Dccp {
                port,
                service_code: be32(v, 4),
                address: single()?,
            },
        })
    }
}

fn encode_address(w: &mut Writer<'_>, a: &IpAddr) -> Result<(), EncodeError> {
    match a {
        IpAddr::V4(v4) => w.tlv_bytes(ptype::IPV4_ADDRESS, &v4.octets(), "IPv4 Address"),
        IpAddr::V6(v6) => w.tlv_bytes(ptype::IPV6_ADDRESS, &v6.octets(), "IPv6 Address"),
    }
}

fn decode_address(ctx: &Ctx<'_>, tlv: &Tlv) -> Result<IpAddr, DecodeError> {
    let v = tlv.value(ctx);
    if tlv.ptype == ptype::IPV4_ADDRESS {
        tlv.exact_len("IPv4 Address parameter", 4)?;
        Ok(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])))
    } else {
        tlv.exact_len("IPv6 Address parameter", 16)?;
        let mut o = [0u8; 16];
        o.copy_from_slice(v);
        Ok(IpAddr::V6(Ipv6Addr::from(o)))
    }
}

/// A pool element (RFC 5354 section 3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PoolElement {
    /// PE identifier.
    pub identifier: PeId,
    /// Home registrar (ENRP server) identifier;
    /// [`ServerId::UNDETERMINED`] when undetermined.
    pub home_registrar: ServerId,
    /// Registration life, signed. RFC 5354 says seconds with -1 for
    /// infinite; RSPLIB sends milliseconds. The handlespace interprets it.
    pub registration_life: i32,
    /// The transport PUs use to reach the PE.
    pub user_transport: Transport,
    /// Selection policy and its values for this PE.
    pub policy: Policy,
    /// The PE's ASAP transport (SCTP per the RFC, TCP in our mapping).
    /// Optional: PEs registered over TCP may leave it out.
    pub asap_transport: Option<Transport>,
}

/// A 32-bit identifier (a PE identifier, a server id) as people write it
/// and the tools print it: decimal, or `0x`/`0X` and hex digits. No sign,
/// no spaces; `None` for anything else or a value over 32 bits.
pub fn parse_identifier(text: &str) -> Option<u32> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    // from_str_radix alone would take a sign.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

impl PoolElement {
    /// The bytes this PE's Pool Element parameter takes in a message,
    /// padding included (what a message of many PEs grows by for it).
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        let mut buf = Vec::new();
        self.encode(&mut Writer::new(&mut buf))?;
        Ok(buf.len())
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let s = w.begin(ptype::POOL_ELEMENT);
        w.u32(self.identifier.get());
        w.u32(self.home_registrar.get());
        w.u32(self.registration_life as u32);
        self.user_transport.encode(w)?;
        self.policy.encode(w)?;
        if let Some(t) = &self.asap_transport {
            if !ASAP_TRANSPORT_TYPES.contains(&t.param_type()) {
                return Err(EncodeError::Invalid(
                    "an ASAP transport other than SCTP or TCP",
                ));
            }
            t.encode(w)?;
        }
        w.finish(s, "Pool Element parameter")
    }

    pub(crate) fn decode(ctx: &mut Ctx<'_>, tlv: &Tlv) -> Result<Self, DecodeError> {
        tlv.min_len("Pool Element parameter", 12)?;
        let v = tlv.value(ctx);
        let identifier = PeId::new(be32(v, 0));
        let home_registrar = ServerId::new(be32(v, 4));
        let registration_life = be32(v, 8) as i32;
        let mut cur = tlv.nested(12);
        let ut = cur.expect_any(ctx, &USER_TRANSPORT_TYPES, "user transport")?;
        let user_transport = Transport::decode(ctx, &ut)?;
        let p = cur.expect(ctx, ptype::POLICY)?;
        let policy = Policy::decode(ctx, &p)?;
        let asap_transport = match cur.optional_any(ctx, &ASAP_TRANSPORT_TYPES)? {
            Some(t) => Some(Transport::decode(ctx, &t)?),
            None => None,
        };
        cur.finish(ctx)?;
        Ok(PoolElement {
            identifier,
            home_registrar,
            registration_life,
            user_transport,
            policy,
            asap_transport,
        })
    }
}

/// Server information (RFC 5354 section 3.11): a registrar's identifier
/// and the transport it is reached at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ServerInformation {
    /// Registrar (ENRP server) identifier.
    pub server_id: ServerId,
    /// Its transport (SCTP per the RFC, TCP in our mapping).
    pub transport: Transport,
}

impl ServerInformation {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if !ASAP_TRANSPORT_TYPES.contains(&self.transport.param_type()) {
            return Err(EncodeError::Invalid(
                "a server transport other than SCTP or TCP",
            ));
        }
        let s = w.begin(ptype::SERVER_INFORMATION);
        w.u32(self.server_id.get());
        self.transport.encode(w)?;
        w.finish(s, "Server Information parameter")
    }

    pub(crate) fn decode(ctx: &mut Ctx<'_>, tlv: &Tlv) -> Result<Self, DecodeError> {
        tlv.min_len("Server Information parameter", 4)?;
        let server_id = ServerId::new(be32(tlv.value(ctx), 0));
        let mut cur = tlv.nested(4);
        let t = cur.expect_any(ctx, &ASAP_TRANSPORT_TYPES, "server transport")?;
        let transport = Transport::decode(ctx, &t)?;
        cur.finish(ctx)?;
        Ok(ServerInformation {
            server_id,
            transport,
        })
    }
}

/// Error cause codes (RFC 5354 section 3.12, table 2). Other values (for
/// example RSPLIB's internal 0xf0xx codes) are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseCode {
    /// 0x0 (3.12.1).
    UnspecifiedError,
    /// 0x1 (3.12.2): info is the unrecognized parameter TLV.
    UnrecognizedParameter,
    /// 0x2 (3.12.3): info is the unrecognized message.
    UnrecognizedMessage,
    /// 0x3 (3.12.4): info is the offending TLV.
    InvalidValues,
    /// 0x4 (3.12.5).
    NonUniquePeIdentifier,
    /// 0x5 (3.12.6): info is the pool's policy parameter.
    InconsistentPoolingPolicy,
    /// 0x6 (3.12.7).
    LackOfResources,
    /// 0x7 (3.12.8): info is the pool's transport parameter.
    InconsistentTransportType,
    /// 0x8 (3.12.9).
    InconsistentDataControlConfiguration,
    /// 0x9 (3.12.11).
    UnknownPoolHandle,
    /// 0xa (3.12.10).
    RejectedSecurity,
    /// Any other code.
    Other(u16),
}

impl CauseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        use CauseCode::*;
        match self {
            UnspecifiedError => 0x0,
            UnrecognizedParameter => 0x1,
            UnrecognizedMessage => 0x2,
            InvalidValues => 0x3,
            NonUniquePeIdentifier => 0x4,
            InconsistentPoolingPolicy => 0x5,
            LackOfResources => 0x6,
            InconsistentTransportType => 0x7,
            InconsistentDataControlConfiguration => 0x8,
            UnknownPoolHandle => 0x9,
            RejectedSecurity => 0xa,
            Other(c) => c,
        }
    }

    /// The code for a number.
    pub fn from_code(c: u16) -> Self {
        use CauseCode::*;
        match c {
            0x0 => UnspecifiedError,
            0x1 => UnrecognizedParameter,
            0x2 => UnrecognizedMessage,
            0x3 => InvalidValues,
            0x4 => NonUniquePeIdentifier,
            0x5 => InconsistentPoolingPolicy,
            0x6 => LackOfResources,
            0x7 => InconsistentTransportType,
            0x8 => InconsistentDataControlConfiguration,
            0x9 => UnknownPoolHandle,
            0xa => RejectedSecurity,
            c => Other(c),
        }
    }

    /// The RFC's name for the cause.
    pub fn name(self) -> &'static str {
        use CauseCode::*;
        match self {
            UnspecifiedError => "Unspecified Error",
            UnrecognizedParameter => "Unrecognized Parameter",
            UnrecognizedMessage => "Unrecognized Message",
            InvalidValues => "Invalid Values",
            NonUniquePeIdentifier => "Non-unique PE Identifier",
            InconsistentPoolingPolicy => "Inconsistent Pooling Policy",
            LackOfResources => "Lack of Resources",
            InconsistentTransportType => "Inconsistent Transport Type",
            InconsistentDataControlConfiguration => "Inconsistent Data/Control Configuration",
            UnknownPoolHandle => "Unknown Pool Handle",
            RejectedSecurity => "Rejected due to security considerations",
            Other(_) => "Other",
        }
    }
}

impl fmt::Display for CauseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.name(), self.code())
    }
}

impl Serialize for CauseCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An operation error (RFC 5354 section 3.12): one or more causes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OperationError {
    /// The causes (at least one).
    pub causes: Vec<Cause>,
}

/// One error cause of an operation error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cause {
    /// The cause code.
    pub code: CauseCode,
    /// Cause-specific information, kept as it came.
    pub info: Vec<u8>,
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("cause", self.code.name())?;
        m.serialize_entry("code", &format!("{:#06x}", self.code.code()))?;
        m.serialize_entry("info", &crate::hex_bytes::encode(&self.info))?;
        m.end()
    }
}

impl Cause {
    /// A cause without information.
    pub fn new(code: CauseCode) -> Self {
        Cause {
            code,
            info: Vec::new(),
        }
    }

    /// A cause with information (the offending TLV, for example).
    pub fn with_info(code: CauseCode, info: impl Into<Vec<u8>>) -> Self {
        Cause {
            code,
            info: info.into(),
        }
    }
}

impl OperationError {
    /// An operation error with one cause.
    pub fn single(cause: Cause) -> Self {
        OperationError {
            causes: vec![cause],
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if self.causes.is_empty() {
            return Err(EncodeError::Invalid("an operation error without causes"));
        }
        let s = w.begin(ptype::OPERATION_ERROR);
        for c in &self.causes {
            let cs = w.begin(c.code.code());
            w.bytes(&c.info);
            w.finish(cs, "error cause")?;
        }
        w.finish(s, "Operation Error parameter")
    }

    pub(crate) fn decode(ctx: &Ctx<'_>, tlv: &Tlv) -> Result<Self, DecodeError> {
        let buf = ctx.buf;
        let mut pos = tlv.value_start;
        let end = tlv.value_end;
        let mut causes = Vec::new();
        while pos < end {
            let available = end - pos;
            if available < 4 {
                return Err(DecodeError::new(
                    pos,
                    DecodeErrorKind::Truncated {
                        what: "error cause header",
                        needed: 4,
                        available,
                    },
                ));
            }
            let code = be16(buf, pos);
            let len = be16(buf, pos + 2);
            if len < 4 {
                return Err(DecodeError::new(
                    pos,
                    DecodeErrorKind::InvalidLength {
                        what: "error cause",
                        length: len.into(),
                    },
                ));
            }
            let cend = pos + usize::from(len);
            if cend > end {
                return Err(DecodeError::new(
                    pos,
                    DecodeErrorKind::Truncated {
                        what: "error cause",
                        needed: len.into(),
                        available,
                    },
                ));
            }
            causes.push(Cause {
                code: CauseCode::from_code(code),
                info: buf[pos + 4..cend].to_vec(),
            });
            pos = crate::tlv::pad4(cend).min(end);
        }
        if causes.is_empty() {
            return Err(tlv.err(DecodeErrorKind::MissingParameter("error cause")));
        }
        Ok(OperationError { causes })
    }
}

/// Decode a fixed 32-bit parameter (PE identifier, handle resolution option).
pub(crate) fn decode_u32(ctx: &Ctx<'_>, tlv: &Tlv, what: &'static str) -> Result<u32, DecodeError> {
    tlv.exact_len(what, 4)?;
    Ok(be32(tlv.value(ctx), 0))
}

/// Encode a fixed 32-bit parameter.
pub(crate) fn encode_u32(w: &mut Writer<'_>, t: u16, v: u32) -> Result<(), EncodeError> {
    w.tlv_bytes(t, &v.to_be_bytes(), "32-bit parameter")
}

/// Decode the PE checksum parameter (RFC 5354 section 3.15: length 6).
pub(crate) fn decode_checksum(ctx: &Ctx<'_>, tlv: &Tlv) -> Result<u16, DecodeError> {
    tlv.exact_len("PE Checksum parameter", 2)?;
    Ok(be16(tlv.value(ctx), 0))
}

#[cfg(test)]
mod identifier_tests {
    use super::parse_identifier;

    #[test]
    fn identifiers_are_decimal_or_hex() {
        assert_eq!(parse_identifier("168496141"), Some(0x0a0b_0c0d));
        assert_eq!(parse_identifier("0x0a0b0c0d"), Some(0x0a0b_0c0d));
        assert_eq!(parse_identifier("0XFFFFFFFF"), Some(u32::MAX));
        for bad in [
            "",
            "0x",
            "+5",
            "-1",
            "4294967296",
            "0x100000000",
            "12a",
            " 1",
        ] {
            assert_eq!(parse_identifier(bad), None, "{bad:?}");
        }
    }
}
