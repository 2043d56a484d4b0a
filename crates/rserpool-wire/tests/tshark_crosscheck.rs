//! Cross-check of the encoder against Wireshark's ASAP and ENRP dissectors.
//!
//! One message of each of the 24 types (14 ASAP, 10 ENRP) is encoded,
//! wrapped in IPv4 + SCTP (one DATA chunk, PPID 11 for ASAP and 12 for
//! ENRP) and written to a classic pcap file (LINKTYPE_RAW). One `tshark`
//! run dissects all of them; for every packet the fields tshark shows are
//! compared, occurrence by occurrence, with what was encoded. The expected
//! values, parameter lengths included, are derived here from the typed
//! messages (not from the encoder's bytes), following RFC 5352-5354:
//! lengths leave out the padding at the end of a TLV, nested TLVs count the
//! padding between nested parameters but not the last one.
//!
//! When `tshark` is missing the test is skipped, unless `CI=true`, where it
//! fails. `TSHARK` may name another binary. The capture file and the
//! tshark run are in `support/tshark.rs`, shared with the registrar's
//! cross-check of the ENRP bytes it really sends.
//!
//! Wireshark quirks taken into account: the DCCP service code is dissected
//! as a 16-bit field (not asserted); RSPLIB private policy types other than
//! 0xb0002001 and 0xb0002002 are shown as raw `policy_value` bytes; loads
//! and degradations are shown as percentages of 0xffffffff, distance
//! penalty factors as fractions of it (compared with a tolerance).

#[path = "support/tshark.rs"]
mod tshark;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use rserpool_wire::{
    AsapMessage, Cause, CauseCode, EnrpMessage, OperationError, Policy, PoolElement, PoolEntry,
    PoolHandle, ServerInformation, Transport, TransportUse, UpdateAction,
};
use rserpool_wire::{PeId, ServerId, WireMessage};
use tshark::{pad4, tshark_available, TempFile, PPID_ASAP, PPID_ENRP};

// ---------------------------------------------------------------------------
// Expected dissection
// ---------------------------------------------------------------------------

/// A value as tshark shows it in `-T fields` output.
#[derive(Clone, Debug)]
enum V {
    /// An unsigned or signed integer (decimal or 0x-hex in tshark's output).
    Int(i64),
    /// Bytes (hex, with or without colons).
    Bytes(Vec<u8>),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A floating point value, compared with a small tolerance.
    Float(f64),
    /// A boolean flag bit.
    Bool(bool),
}

impl fmt::Display for V {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            V::Int(i) => write!(f, "{i}"),
            V::Bytes(b) => write!(f, "{}", hex(b)),
            V::Ip(a) => write!(f, "{a}"),
            V::Float(x) => write!(f, "{x}"),
            V::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl V {
    /// Whether tshark's text `s` shows this value.
    fn matches(&self, s: &str) -> bool {
        match self {
            V::Int(i) => parse_int(s) == Some(*i),
            V::Bytes(b) => s.replace(':', "").eq_ignore_ascii_case(&hex(b)),
            V::Ip(a) => s.parse::<IpAddr>().ok() == Some(*a),
            V::Float(x) => s
                .parse::<f64>()
                .is_ok_and(|y| (x - y).abs() <= 1e-9 * x.abs().max(1.0)),
            V::Bool(b) => match s {
                "1" | "True" | "true" => *b,
                "0" | "False" | "false" => !*b,
                _ => false,
            },
        }
    }
}

fn parse_int(s: &str) -> Option<i64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn int(x: impl Into<i64>) -> V {
    V::Int(x.into())
}

fn usize_int(x: usize) -> V {
    V::Int(i64::try_from(x).expect("small length"))
}

/// tshark shows loads and degradations as percentages of 0xffffffff.
fn percent(x: u32) -> V {
    V::Float(100.0 * f64::from(x) / f64::from(u32::MAX))
}

/// ... and distance penalty factors as fractions of it.
fn fraction(x: u32) -> V {
    V::Float(f64::from(x) / f64::from(u32::MAX))
}

/// The length of a TLV whose fixed part is `fixed` bytes (header included)
/// followed by nested TLVs of the given unpadded lengths: the padding between
/// nested TLVs counts, the padding of the last one does not (RFC 5354
/// section 2).
fn nested_len(fixed: usize, nested: &[usize]) -> usize {
    match nested.split_last() {
        None => fixed,
        Some((last, rest)) => fixed + rest.iter().map(|&n| pad4(n)).sum::<usize>() + last,
    }
}

fn address_len(a: &IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 20,
    }
}

fn transport_len(t: &Transport) -> usize {
    let fixed = match t {
        Transport::Dccp { .. } => 12,
        Transport::Opaque { data } => return 4 + data.len(),
        _ => 8,
    };
    let lens: Vec<usize> = t.addresses().iter().map(address_len).collect();
    nested_len(fixed, &lens)
}

fn policy_len(p: &Policy) -> usize {
    8 + match p {
        Policy::RoundRobin | Policy::Random => 0,
        Policy::WeightedRoundRobin { .. }
        | Policy::WeightedRandom { .. }
        | Policy::Priority { .. }
        | Policy::LeastUsed { .. }
        | Policy::RandomizedLeastUsed { .. } => 4,
        Policy::WeightedRandomDpf { .. } | Policy::LeastUsedDpf { .. } => 12,
        Policy::LeastUsedDegradationDpf { .. } => 16,
        Policy::Unknown { data, .. } => data.len(),
        _ => 8,
    }
}

fn pe_len(pe: &PoolElement) -> usize {
    let mut lens = vec![transport_len(&pe.user_transport), policy_len(&pe.policy)];
    lens.extend(pe.asap_transport.as_ref().map(transport_len));
    nested_len(16, &lens)
}

fn server_info_len(si: &ServerInformation) -> usize {
    nested_len(8, &[transport_len(&si.transport)])
}

fn op_error_len(e: &OperationError) -> usize {
    let lens: Vec<usize> = e.causes.iter().map(|c| 4 + c.info.len()).collect();
    nested_len(4, &lens)
}

/// What tshark should show for one packet: per field (without the
/// protocol prefix), the values of all occurrences in tree order.
struct Expect {
    /// "asap" or "enrp".
    proto: &'static str,
    /// The test's name for the message.
    name: String,
    fields: BTreeMap<&'static str, Vec<V>>,
}

impl Expect {
    fn new(proto: &'static str, name: &str) -> Self {
        Expect {
            proto,
            name: name.to_owned(),
            fields: BTreeMap::new(),
        }
    }

    fn push(&mut self, field: &'static str, v: V) {
        self.fields.entry(field).or_default().push(v);
    }

    fn header(&mut self, msg_type: u8, flags: u8, length: usize) {
        self.push("message_type", int(msg_type));
        self.push("message_flags", int(flags));
        self.push("message_length", usize_int(length));
    }

    fn param(&mut self, ptype: u16, len: usize) {
        self.push("parameter_type", int(ptype));
        self.push("parameter_length", usize_int(len));
    }

    fn address(&mut self, a: &IpAddr) {
        match a {
            IpAddr::V4(_) => self.param(0x0001, 8),
            IpAddr::V6(_) => self.param(0x0002, 20),
        }
        let field = if a.is_ipv4() {
            "ipv4_address"
        } else {
            "ipv6_address"
        };
        self.push(field, V::Ip(*a));
    }

    fn transport(&mut self, t: &Transport) {
        self.param(t.param_type(), transport_len(t));
        let use_code = |u: &TransportUse| match u {
            TransportUse::DataOnly => int(0),
            TransportUse::DataPlusControl => int(1),
        };
        match t {
            Transport::Sctp {
                port,
                transport_use,
                ..
            } => {
                self.push("sctp_transport_port", int(*port));
                self.push("transport_use", use_code(transport_use));
            }
            Transport::Tcp {
                port,
                transport_use,
                ..
            } => {
                self.push("tcp_transport_port", int(*port));
                self.push("transport_use", use_code(transport_use));
            }
            Transport::Udp { port, .. } => {
                self.push("udp_transport_port", int(*port));
                self.push("udp_transport_reserved", int(0));
            }
            Transport::UdpLite { port, .. } => {
                self.push("udp_lite_transport_port", int(*port));
                self.push("udp_lite_transport_reserved", int(0));
            }
            Transport::Dccp { port, .. } => {
                // The service code is dissected as a 16-bit field (a
                // Wireshark bug): not asserted.
                self.push("dccp_transport_port", int(*port));
                self.push("dccp_transport_reserved", int(0));
            }
            Transport::Opaque { .. } => panic!("opaque transports are not cross-checked"),
        }
        for a in t.addresses() {
            self.address(a);
        }
    }

    fn policy(&mut self, p: &Policy) {
        self.param(0x0008, policy_len(p));
        self.push("pool_member_selection_policy_type", int(p.policy_type()));
        const W: &str = "pool_member_selection_policy_weight";
        const LOAD: &str = "pool_member_selection_policy_load";
        const DEG: &str = "pool_member_selection_policy_degradation";
        const DIST: &str = "pool_member_selection_policy_distance";
        const VALUE: &str = "pool_member_selection_policy_value";
        let words = |w: &[u32]| V::Bytes(w.iter().flat_map(|x| x.to_be_bytes()).collect());
        match p {
            Policy::RoundRobin | Policy::Random => {}
            Policy::WeightedRoundRobin { weight } | Policy::WeightedRandom { weight } => {
                self.push(W, int(*weight));
            }
            Policy::Priority { priority } => {
                self.push("pool_member_selection_policy_priority", int(*priority));
            }
            Policy::LeastUsed { load } | Policy::RandomizedLeastUsed { load } => {
                self.push(LOAD, percent(*load));
            }
            Policy::LeastUsedDegradation {
                load,
                load_degradation,
            }
            | Policy::PriorityLeastUsed {
                load,
                load_degradation,
            } => {
                self.push(LOAD, percent(*load));
                self.push(DEG, percent(*load_degradation));
            }
            Policy::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => {
                self.push(W, int(*weight));
                self.push(
                    "pool_member_selection_policy_weight_dpf",
                    fraction(*weight_dpf),
                );
                self.push(DIST, int(*distance));
            }
            Policy::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => {
                self.push(LOAD, percent(*load));
                self.push("pool_member_selection_policy_load_dpf", fraction(*load_dpf));
                self.push(DIST, int(*distance));
            }
            // RSPLIB private types Wireshark does not decode: raw bytes.
            Policy::RandomizedPriorityLeastUsed {
                load,
                load_degradation,
            }
            | Policy::RandomizedLeastUsedDegradation {
                load,
                load_degradation,
            }
            | Policy::PriorityLeastUsedDegradation {
                load,
                load_degradation,
            }
            | Policy::RandomizedPriorityLeastUsedDegradation {
                load,
                load_degradation,
            } => self.push(VALUE, words(&[*load, *load_degradation])),
            Policy::LeastUsedDegradationDpf {
                load,
                load_degradation,
                load_dpf,
                distance,
            } => self.push(
                VALUE,
                words(&[*load, *load_degradation, *load_dpf, *distance]),
            ),
            // Wireshark shows the value up to the end of the parameter's
            // padding: the padding bytes (zero) are part of `policy_value`
            // even though the parameter length (checked above) leaves them
            // out.
            Policy::Unknown { data, .. } => {
                if !data.is_empty() {
                    let mut shown = data.clone();
                    shown.resize(pad4(data.len()), 0);
                    self.push(VALUE, V::Bytes(shown));
                }
            }
        }
    }

    fn pool_handle(&mut self, h: &PoolHandle) {
        self.param(0x0009, 4 + h.as_bytes().len());
        self.push("pool_handle_pool_handle", V::Bytes(h.as_bytes().to_vec()));
    }

    fn pool_element(&mut self, pe: &PoolElement) {
        self.param(0x000a, pe_len(pe));
        self.push("pool_element_pe_identifier", int(pe.identifier.get()));
        self.push(
            "pool_element_home_enrp_server_identifier",
            int(pe.home_registrar.get()),
        );
        self.push("pool_element_registration_life", int(pe.registration_life));
        self.transport(&pe.user_transport);
        self.policy(&pe.policy);
        if let Some(t) = &pe.asap_transport {
            self.transport(t);
        }
    }

    fn server_info(&mut self, si: &ServerInformation) {
        self.param(0x000b, server_info_len(si));
        let field = if self.proto == "asap" {
            "server_identifier"
        } else {
            "server_information_server_identifier"
        };
        self.push(field, int(si.server_id.get()));
        self.transport(&si.transport);
    }

    /// An operation error. Causes whose information Wireshark dissects as a
    /// nested parameter or message get their fields from `nested`, which
    /// is given the index of the cause.
    fn op_error(&mut self, e: &OperationError, nested: &dyn Fn(usize, &mut Expect)) {
        self.param(0x000c, op_error_len(e));
        for (i, c) in e.causes.iter().enumerate() {
            let code = c.code.code();
            self.push("cause_code", int(code));
            self.push("cause_length", usize_int(4 + c.info.len()));
            match code {
                // Unrecognized parameter, unrecognized message, invalid
                // values, inconsistent policy, inconsistent transport:
                // the information is dissected.
                0x1 | 0x2 | 0x3 | 0x5 | 0x7 => nested(i, self),
                // Causes without information.
                0x4 | 0x6 | 0x8 | 0x9 | 0xa => assert!(c.info.is_empty()),
                _ => {
                    if !c.info.is_empty() {
                        self.push("cause_info", V::Bytes(c.info.clone()));
                    }
                }
            }
        }
    }

    fn cookie(&mut self, cookie: &[u8]) {
        self.param(0x000d, 4 + cookie.len());
        self.push("cookie", V::Bytes(cookie.to_vec()));
    }

    fn pe_identifier(&mut self, id: u32) {
        self.param(0x000e, 8);
        self.push("pe_identifier", int(id));
    }
}

fn no_nested(_: usize, _: &mut Expect) {
    panic!("no cause of this message has dissected information");
}

/// The length of a message with `fixed` bytes of header and fixed fields
/// and parameters of the given unpadded lengths.
fn msg_len(fixed: usize, params: &[usize]) -> usize {
    nested_len(fixed, params)
}

fn expect_asap(m: &AsapMessage, nested: &dyn Fn(usize, &mut Expect)) -> Expect {
    use AsapMessage::*;
    let mut e = Expect::new("asap", m.name());
    let ph = |h: &PoolHandle| 4 + h.as_bytes().len();
    let (t, f) = (m.msg_type(), m.flags());
    match m {
        Registration {
            pool_handle,
            pool_element,
        } => {
            e.header(t, f, msg_len(4, &[ph(pool_handle), pe_len(pool_element)]));
            e.pool_handle(pool_handle);
            e.pool_element(pool_element);
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
            e.header(t, f, msg_len(4, &[ph(pool_handle), 8]));
            e.pool_handle(pool_handle);
            e.pe_identifier(identifier.get());
        }
        RegistrationResponse {
            reject,
            pool_handle,
            identifier,
            error,
        } => {
            let mut lens = vec![ph(pool_handle), 8];
            lens.extend(error.as_ref().map(op_error_len));
            e.header(t, f, msg_len(4, &lens));
            e.push("r_bit", V::Bool(*reject));
            e.pool_handle(pool_handle);
            e.pe_identifier(identifier.get());
            if let Some(err) = error {
                e.op_error(err, nested);
            }
        }
        DeregistrationResponse {
            pool_handle,
            identifier,
            error,
        } => {
            let mut lens = vec![ph(pool_handle), 8];
            lens.extend(error.as_ref().map(op_error_len));
            e.header(t, f, msg_len(4, &lens));
            e.pool_handle(pool_handle);
            e.pe_identifier(identifier.get());
            if let Some(err) = error {
                e.op_error(err, nested);
            }
        }
        HandleResolution {
            pool_handle, items, ..
        } => {
            let mut lens = vec![ph(pool_handle)];
            lens.extend(items.map(|_| 8));
            e.header(t, f, msg_len(4, &lens));
            e.pool_handle(pool_handle);
            if let Some(n) = items {
                e.param(0x803f, 8);
                e.push("hropt_items", int(*n));
            }
        }
        HandleResolutionResponse {
            pool_handle,
            policy,
            pool_elements,
            error,
            ..
        } => {
            let mut lens = vec![ph(pool_handle)];
            lens.extend(policy.as_ref().map(policy_len));
            lens.extend(pool_elements.iter().map(pe_len));
            lens.extend(error.as_ref().map(op_error_len));
            e.header(t, f, msg_len(4, &lens));
            e.pool_handle(pool_handle);
            if let Some(p) = policy {
                e.policy(p);
            }
            for pe in pool_elements {
                e.pool_element(pe);
            }
            if let Some(err) = error {
                e.op_error(err, nested);
            }
        }
        EndpointKeepAlive {
            home,
            server_id,
            pool_handle,
            identifier,
        } => {
            let mut lens = vec![ph(pool_handle)];
            lens.extend(identifier.map(|_| 8));
            e.header(t, f, msg_len(8, &lens));
            e.push("h_bit", V::Bool(*home));
            e.push("server_identifier", int(server_id.get()));
            e.pool_handle(pool_handle);
            if let Some(id) = identifier {
                e.pe_identifier(id.get());
            }
        }
        ServerAnnounce {
            server_id,
            transports,
        } => {
            let lens: Vec<usize> = transports.iter().map(transport_len).collect();
            e.header(t, f, msg_len(8, &lens));
            e.push("server_identifier", int(server_id.get()));
            for tr in transports {
                e.transport(tr);
            }
        }
        Cookie { cookie } | CookieEcho { cookie } => {
            e.header(t, f, msg_len(4, &[4 + cookie.len()]));
            e.cookie(cookie);
        }
        BusinessCard {
            pool_handle,
            pool_elements,
        } => {
            let mut lens = vec![ph(pool_handle)];
            lens.extend(pool_elements.iter().map(pe_len));
            e.header(t, f, msg_len(4, &lens));
            e.pool_handle(pool_handle);
            for pe in pool_elements {
                e.pool_element(pe);
            }
        }
        Error { error } => {
            e.header(t, f, msg_len(4, &[op_error_len(error)]));
            e.op_error(error, nested);
        }
    }
    e
}

fn expect_enrp(m: &EnrpMessage, nested: &dyn Fn(usize, &mut Expect)) -> Expect {
    use EnrpMessage::*;
    let mut e = Expect::new("enrp", m.name());
    let (t, f) = (m.msg_type(), m.flags());
    let ph = |h: &PoolHandle| 4 + h.as_bytes().len();
    let mut target = None;
    match m {
        Presence {
            reply_required,
            checksum,
            server_info,
            ..
        } => {
            let mut lens = Vec::new();
            lens.extend(checksum.map(|_| 6));
            lens.extend(server_info.as_ref().map(server_info_len));
            e.header(t, f, msg_len(12, &lens));
            e.push("r_bit", V::Bool(*reply_required));
            if let Some(c) = checksum {
                e.param(0x000f, 6);
                e.push("pe_checksum", int(*c));
            }
            if let Some(si) = server_info {
                e.server_info(si);
            }
        }
        HandleTableRequest {
            own_children_only, ..
        } => {
            e.header(t, f, 12);
            e.push("w_bit", V::Bool(*own_children_only));
        }
        HandleTableResponse {
            more_to_send,
            reject,
            pools,
            ..
        } => {
            let mut lens = Vec::new();
            for p in pools {
                lens.push(ph(&p.pool_handle));
                lens.extend(p.pool_elements.iter().map(pe_len));
            }
            e.header(t, f, msg_len(12, &lens));
            e.push("m_bit", V::Bool(*more_to_send));
            e.push("r_bit", V::Bool(*reject));
            for p in pools {
                e.pool_handle(&p.pool_handle);
                for pe in &p.pool_elements {
                    e.pool_element(pe);
                }
            }
        }
        HandleUpdate {
            takeover_suggested,
            action,
            pool_handle,
            pool_element,
            ..
        } => {
            e.header(t, f, msg_len(16, &[ph(pool_handle), pe_len(pool_element)]));
            e.push("t_bit", V::Bool(*takeover_suggested));
            let code = match action {
                UpdateAction::AddPe => 0,
                UpdateAction::DelPe => 1,
            };
            e.push("update_action", int(code));
            e.push("reserved", int(0));
            e.pool_handle(pool_handle);
            e.pool_element(pool_element);
        }
        ListRequest { .. } => e.header(t, f, 12),
        ListResponse {
            reject, servers, ..
        } => {
            let lens: Vec<usize> = servers.iter().map(server_info_len).collect();
            e.header(t, f, msg_len(12, &lens));
            e.push("r_bit", V::Bool(*reject));
            for si in servers {
                e.server_info(si);
            }
        }
        InitTakeover { target: x, .. }
        | InitTakeoverAck { target: x, .. }
        | TakeoverServer { target: x, .. } => {
            e.header(t, f, 16);
            target = Some(*x);
        }
        Error { error, .. } => {
            e.header(t, f, msg_len(12, &[op_error_len(error)]));
            e.op_error(error, nested);
        }
    }
    e.push("sender_servers_id", int(m.sender().get()));
    e.push("receiver_servers_id", int(m.receiver().get()));
    if let Some(x) = target {
        e.push("target_servers_id", int(x.get()));
    }
    e
}

/// Fields asked from tshark for every packet (besides the frame-level
/// ones). Each is asserted for every packet: absent where not expected.
const ASAP_FIELDS: &[&str] = &[
    "message_type",
    "message_flags",
    "message_length",
    "cause_code",
    "cause_length",
    "cause_info",
    "parameter_type",
    "parameter_length",
    "parameter_value",
    "ipv4_address",
    "ipv6_address",
    "dccp_transport_port",
    "dccp_transport_reserved",
    "sctp_transport_port",
    "transport_use",
    "tcp_transport_port",
    "udp_transport_port",
    "udp_transport_reserved",
    "udp_lite_transport_port",
    "udp_lite_transport_reserved",
    "pool_member_selection_policy_type",
    "pool_member_selection_policy_weight",
    "pool_member_selection_policy_priority",
    "pool_member_selection_policy_load",
    "pool_member_selection_policy_degradation",
    "pool_member_selection_policy_load_dpf",
    "pool_member_selection_policy_weight_dpf",
    "pool_member_selection_policy_distance",
    "pool_member_selection_policy_value",
    "pool_handle_pool_handle",
    "pool_element_pe_identifier",
    "pool_element_home_enrp_server_identifier",
    "pool_element_registration_life",
    "cookie",
    "pe_identifier",
    "pe_checksum",
    "hropt_items",
    "server_identifier",
    "h_bit",
    "r_bit",
];

const ENRP_ONLY_FIELDS: &[&str] = &[
    "server_information_server_identifier",
    "sender_servers_id",
    "receiver_servers_id",
    "target_servers_id",
    "update_action",
    "reserved",
    "w_bit",
    "m_bit",
    "t_bit",
];

fn fields_of(proto: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = ASAP_FIELDS
        .iter()
        .copied()
        .filter(|f| proto == "asap" || !matches!(*f, "hropt_items" | "server_identifier" | "h_bit"))
        .collect();
    if proto == "enrp" {
        v.extend_from_slice(ENRP_ONLY_FIELDS);
    }
    v
}

// ---------------------------------------------------------------------------
// The 24 messages
// ---------------------------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address in test")
}

fn h(s: &'static str) -> PoolHandle {
    PoolHandle::from_static(s)
}

fn pe(
    identifier: u32,
    home_registrar: u32,
    registration_life: i32,
    user_transport: Transport,
    policy: Policy,
    asap_transport: Option<Transport>,
) -> PoolElement {
    PoolElement {
        identifier: PeId::new(identifier),
        home_registrar: ServerId::new(home_registrar),
        registration_life,
        user_transport,
        policy,
        asap_transport,
    }
}

fn sctp(port: u16, transport_use: TransportUse, addrs: &[&str]) -> Transport {
    Transport::Sctp {
        port,
        transport_use,
        addresses: addrs.iter().map(|a| ip(a)).collect(),
    }
}

fn tcp(port: u16, transport_use: TransportUse, addr: &str) -> Transport {
    Transport::Tcp {
        port,
        transport_use,
        address: ip(addr),
    }
}

fn udp(port: u16, addr: &str) -> Transport {
    Transport::Udp {
        port,
        address: ip(addr),
    }
}

/// The transport of an Inconsistent Transport Type cause.
fn cause_transport() -> Transport {
    Transport::Tcp {
        port: 8080,
        transport_use: TransportUse::DataOnly,
        address: ip("192.0.2.1"),
    }
}

/// A hand-written Pool Member Selection Policy TLV (weighted round robin)
/// for the information of an Inconsistent Pooling Policy cause (the same
/// bytes as `Policy::to_tlv`, checked in the known-answer tests).
fn policy_tlv_wrr(weight: u32) -> Vec<u8> {
    let mut v = vec![0x00, 0x08, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x02];
    v.extend_from_slice(&weight.to_be_bytes());
    v
}

use TransportUse::{DataOnly, DataPlusControl};

/// One packet to write: protocol, encoded message and expected dissection.
struct Packet {
    ppid: u32,
    payload: Vec<u8>,
    expect: Expect,
}

fn asap(m: AsapMessage, nested: &dyn Fn(usize, &mut Expect)) -> Packet {
    let payload = m.to_bytes().unwrap_or_else(|e| panic!("{}: {e}", m.name()));
    let expect = expect_asap(&m, nested);
    Packet {
        ppid: PPID_ASAP,
        payload,
        expect,
    }
}

fn enrp(m: EnrpMessage, nested: &dyn Fn(usize, &mut Expect)) -> Packet {
    let payload = m.to_bytes().unwrap_or_else(|e| panic!("{}: {e}", m.name()));
    let expect = expect_enrp(&m, nested);
    Packet {
        ppid: PPID_ENRP,
        payload,
        expect,
    }
}

fn packets() -> Vec<Packet> {
    // Pool elements with varied transports and policies.
    let pe_lud = pe(
        0x1a2b_3c4d,
        0x0bad_cafe,
        300_000,
        sctp(
            7,
            DataPlusControl,
            &["192.0.2.10", "2001:db8::10", "198.51.100.7"],
        ),
        Policy::LeastUsedDegradation {
            load: 0x4000_0000,
            load_degradation: 0x1000_0000,
        },
        Some(sctp(31337, DataOnly, &["192.0.2.10", "2001:db8::10"])),
    );
    let pe_wrr = pe(
        0x0000_0001,
        0x0102_0304,
        -1,
        tcp(8080, DataOnly, "203.0.113.5"),
        Policy::WeightedRoundRobin { weight: 17 },
        None,
    );
    let pe_pri = pe(
        0xffff_fffe,
        0,
        3600,
        udp(5353, "2001:db8:85a3::8a2e:370:7334"),
        Policy::Priority {
            priority: 0x8000_0001,
        },
        Some(tcp(3863, DataPlusControl, "2001:db8:85a3::1")),
    );
    let pe_lu = pe(
        0x5555_aaaa,
        0xcafe_babe,
        42,
        tcp(443, DataPlusControl, "::ffff:192.0.2.99"),
        Policy::LeastUsed { load: 0x8000_0000 },
        None,
    );
    let pe_rlu = pe(
        0x0c0c_0c0c,
        0x0d0d_0d0d,
        120_000,
        sctp(9, DataOnly, &["10.1.2.3"]),
        Policy::RandomizedLeastUsed { load: 0x2222_2222 },
        Some(sctp(3863, DataOnly, &["10.1.2.3", "fe80::1"])),
    );
    let pe_wrand_dpf = pe(
        0x7e57_0001,
        0x1234_5678,
        5000,
        udp(6000, "198.51.100.200"),
        Policy::WeightedRandomDpf {
            weight: 250,
            weight_dpf: 0x1999_9999,
            distance: 37,
        },
        None,
    );
    let pe_lu_dpf = pe(
        0x7e57_0002,
        0x8765_4321,
        7000,
        tcp(8443, DataOnly, "2001:db8::dead:beef"),
        Policy::LeastUsedDpf {
            load: 0xc000_0000,
            load_dpf: 0x0333_3333,
            distance: 120,
        },
        Some(tcp(3863, DataPlusControl, "2001:db8::dead:beef")),
    );
    let pe_rlud = pe(
        0x0000_b002,
        0x0000_0007,
        1,
        Transport::UdpLite {
            port: 7777,
            address: ip("192.0.2.77"),
        },
        Policy::RandomizedLeastUsedDegradation {
            load: 0x1111_1111,
            load_degradation: 0x0101_0101,
        },
        None,
    );
    let pe_dccp = pe(
        0x0000_dcc9,
        0x0000_0008,
        2,
        Transport::Dccp {
            port: 5004,
            service_code: 0x5254_5020,
            address: ip("2001:db8::dcc9"),
        },
        Policy::LeastUsedDegradationDpf {
            load: 0x0a0a_0a0a,
            load_degradation: 0x0b0b_0b0b,
            load_dpf: 0x0c0c_0c0c,
            distance: 0x0000_0d0d,
        },
        Some(sctp(3863, DataPlusControl, &["192.0.2.201", "192.0.2.202"])),
    );
    let pe_rr = pe(
        0x0000_0a0a,
        0,
        -1,
        sctp(1, DataOnly, &["2001:db8:1::1", "2001:db8:2::2"]),
        Policy::RoundRobin,
        None,
    );
    let pe_unknown = pe(
        0x0000_7777,
        0x0000_0009,
        99,
        udp(9999, "192.0.2.250"),
        // An unknown type with an odd-length value: padding at the end of
        // the PE (its length leaves it out).
        Policy::Unknown {
            policy_type: 0x7777_0001,
            data: vec![0xde, 0xad, 0xbe],
        },
        None,
    );
    let pe_plud = pe(
        0x0000_b003,
        0x0000_000a,
        3,
        tcp(2000, DataOnly, "192.0.2.3"),
        Policy::PriorityLeastUsedDegradation {
            load: 0x3333_3333,
            load_degradation: 0x0000_0001,
        },
        None,
    );

    vec![
        // ----- ASAP -----
        asap(
            AsapMessage::Registration {
                pool_handle: h("EchoPool"),
                pool_element: pe_lud.clone(),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::Deregistration {
                pool_handle: h("registrar.test"),
                identifier: PeId::new(0xdead_beef),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::RegistrationResponse {
                reject: true,
                pool_handle: h("pool-\u{3b1}"),
                identifier: PeId::new(0x1a2b_3c4d),
                error: Some(OperationError {
                    causes: vec![
                        Cause::new(CauseCode::NonUniquePeIdentifier),
                        Cause::with_info(CauseCode::InconsistentPoolingPolicy, policy_tlv_wrr(7)),
                        Cause::with_info(CauseCode::Other(0xf001), b"RSPLIB!".to_vec()),
                        // The transport the registrar sends with Inconsistent
                        // Transport Type (3.12.8), written by `to_tlv`.
                        Cause::with_info(
                            CauseCode::InconsistentTransportType,
                            cause_transport().to_tlv().unwrap(),
                        ),
                    ],
                }),
            },
            &|i, e| match i {
                1 => {
                    e.param(0x0008, 12);
                    e.push("pool_member_selection_policy_type", int(2));
                    e.push("pool_member_selection_policy_weight", int(7));
                }
                3 => e.transport(&cause_transport()),
                _ => panic!("cause {i} has no dissected information"),
            },
        ),
        asap(
            AsapMessage::DeregistrationResponse {
                pool_handle: h("x"),
                identifier: PeId::new(0x0000_0042),
                error: Some(OperationError {
                    causes: vec![
                        Cause::new(CauseCode::UnknownPoolHandle),
                        Cause::new(CauseCode::LackOfResources),
                        Cause::with_info(CauseCode::UnspecifiedError, b"oops!".to_vec()),
                    ],
                }),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::HandleResolution {
                subscribe: true,
                pool_handle: h("ResolveMe"),
                items: Some(42),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::HandleResolutionResponse {
                accept_updates: true,
                pool_handle: h("MixedPool"),
                policy: Some(Policy::WeightedRandom { weight: 3 }),
                pool_elements: vec![pe_wrr.clone(), pe_pri.clone(), pe_lu.clone()],
                error: Some(OperationError::single(Cause::with_info(
                    CauseCode::Other(0xf0aa),
                    vec![1, 2, 3, 4, 5, 6],
                ))),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::EndpointKeepAlive {
                home: true,
                server_id: ServerId::new(0x5e5e_0001),
                pool_handle: h("KeepAlivePool"),
                identifier: Some(PeId::new(0x0bad_f00d)),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::EndpointKeepAliveAck {
                pool_handle: h("KeepAlivePool"),
                identifier: PeId::new(0x0bad_f00d),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::EndpointUnreachable {
                pool_handle: h("gone"),
                identifier: PeId::new(0x0000_dead),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::ServerAnnounce {
                server_id: ServerId::new(0xa1a2_a3a4),
                transports: vec![
                    sctp(3863, DataOnly, &["192.0.2.1", "2001:db8::1"]),
                    tcp(3863, DataPlusControl, "2001:db8::2"),
                ],
            },
            &no_nested,
        ),
        asap(
            AsapMessage::Cookie {
                cookie: b"chocolate-chip".to_vec(),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::CookieEcho {
                cookie: (1..=37).collect(),
            },
            &no_nested,
        ),
        asap(
            AsapMessage::BusinessCard {
                pool_handle: h("CardPool"),
                pool_elements: vec![pe_rlu.clone(), pe_dccp.clone(), pe_rlud.clone()],
            },
            &no_nested,
        ),
        asap(
            AsapMessage::Error {
                error: OperationError {
                    causes: vec![
                        // An unrecognized message: type 0x7f with a PE identifier.
                        Cause::with_info(
                            CauseCode::UnrecognizedMessage,
                            vec![
                                0x7f, 0x00, 0x00, 0x0c, 0x00, 0x0e, 0x00, 0x08, 0x12, 0x34, 0x56,
                                0x78,
                            ],
                        ),
                        // An unrecognized parameter: type 0x4abc, 3 value bytes.
                        Cause::with_info(
                            CauseCode::UnrecognizedParameter,
                            vec![0x4a, 0xbc, 0x00, 0x07, b'x', b'y', b'z'],
                        ),
                        Cause::new(CauseCode::RejectedSecurity),
                    ],
                },
            },
            &|i, e| match i {
                0 => {
                    e.header(0x7f, 0, 12);
                    e.pe_identifier(0x1234_5678);
                }
                1 => {
                    e.param(0x4abc, 7);
                    e.push("parameter_value", V::Bytes(b"xyz".to_vec()));
                }
                _ => panic!("cause {i} has no dissected information"),
            },
        ),
        // ----- ENRP -----
        enrp(
            EnrpMessage::Presence {
                reply_required: true,
                sender: ServerId::new(0x1111_1111),
                receiver: ServerId::new(0x2222_2222),
                checksum: Some(0xbeef),
                server_info: Some(ServerInformation {
                    server_id: ServerId::new(0x1111_1111),
                    transport: sctp(9901, DataOnly, &["192.0.2.11", "2001:db8::11"]),
                }),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::HandleTableRequest {
                own_children_only: true,
                sender: ServerId::new(0x3333_3333),
                receiver: ServerId::new(0x4444_4444),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::HandleTableResponse {
                more_to_send: true,
                reject: false,
                sender: ServerId::new(0x4444_4444),
                receiver: ServerId::new(0x3333_3333),
                pools: vec![
                    PoolEntry {
                        pool_handle: h("TablePool-1"),
                        pool_elements: vec![pe_wrand_dpf.clone(), pe_rr.clone()],
                    },
                    PoolEntry {
                        pool_handle: h("TablePool-two"),
                        pool_elements: vec![pe_unknown.clone(), pe_plud.clone()],
                    },
                ],
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::HandleUpdate {
                takeover_suggested: true,
                sender: ServerId::new(0x5555_5555),
                receiver: ServerId::new(0x6666_6666),
                action: UpdateAction::DelPe,
                pool_handle: h("UpdatedPool"),
                pool_element: pe_lu_dpf.clone(),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::ListRequest {
                sender: ServerId::new(0x7777_7777),
                receiver: ServerId::new(0x8888_8888),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::ListResponse {
                reject: true,
                sender: ServerId::new(0x8888_8888),
                receiver: ServerId::new(0x7777_7777),
                servers: vec![
                    ServerInformation {
                        server_id: ServerId::new(0x9999_0001),
                        transport: sctp(
                            9901,
                            DataOnly,
                            &["198.51.100.1", "198.51.100.2", "2001:db8:9::1"],
                        ),
                    },
                    ServerInformation {
                        server_id: ServerId::new(0x9999_0002),
                        transport: tcp(9902, DataPlusControl, "198.51.100.3"),
                    },
                ],
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::InitTakeover {
                sender: ServerId::new(0xaaaa_0001),
                receiver: ServerId::new(0),
                target: ServerId::new(0xdead_0001),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::InitTakeoverAck {
                sender: ServerId::new(0xaaaa_0002),
                receiver: ServerId::new(0xaaaa_0001),
                target: ServerId::new(0xdead_0001),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::TakeoverServer {
                sender: ServerId::new(0xaaaa_0001),
                receiver: ServerId::new(0),
                target: ServerId::new(0xdead_0001),
            },
            &no_nested,
        ),
        enrp(
            EnrpMessage::Error {
                sender: ServerId::new(0xeeee_0001),
                receiver: ServerId::new(0xeeee_0002),
                error: OperationError {
                    causes: vec![
                        Cause::with_info(
                            CauseCode::InvalidValues,
                            vec![0x00, 0x0e, 0x00, 0x08, 0xfe, 0xed, 0xfa, 0xce],
                        ),
                        Cause::new(CauseCode::InconsistentDataControlConfiguration),
                        Cause::with_info(CauseCode::Other(0xf0a1), vec![0xab; 9]),
                    ],
                },
            },
            &|i, e| {
                assert_eq!(i, 0);
                e.pe_identifier(0xfeed_face);
            },
        ),
    ]
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// Frame-level fields asked for every packet, before the protocol ones.
const FRAME_FIELDS: &[&str] = &[
    "frame.number",
    "frame.protocols",
    "ip.checksum.status",
    "sctp.checksum.status",
    "sctp.data_payload_proto_id",
    "_ws.malformed",
    "_ws.expert.severity",
    "_ws.expert.message",
];

#[test]
fn tshark_dissects_every_message_as_encoded() {
    if !tshark_available("the tshark cross-check") {
        return;
    }
    let packets = packets();
    assert_eq!(packets.len(), 24);
    assert_eq!(packets.iter().filter(|p| p.ppid == PPID_ASAP).count(), 14);

    let messages: Vec<(u32, Vec<u8>)> = packets
        .iter()
        .map(|p| (p.ppid, p.payload.clone()))
        .collect();
    let file = TempFile::capture("rserpool-wire-tshark", &messages);

    // One tshark run, one line per packet: every field of both protocols,
    // all occurrences, in tree order.
    let mut columns: Vec<String> = FRAME_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    for proto in ["asap", "enrp"] {
        columns.extend(fields_of(proto).iter().map(|f| format!("{proto}.{f}")));
    }
    let lines = tshark::fields(&file.0, &columns);
    assert_eq!(
        lines.len(),
        packets.len(),
        "one line per packet expected from tshark: {lines:?}"
    );

    let mut failures = Vec::new();
    for (i, (line, p)) in lines.iter().zip(&packets).enumerate() {
        let values: Vec<String> = line.iter().map(|v| v.join("|")).collect();
        let col: BTreeMap<&str, &str> = columns
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(String::as_str))
            .collect();
        let mut fail =
            |what: String| failures.push(format!("packet {} ({}): {what}", i + 1, p.expect.name));
        let occurrences = |name: &str| -> Vec<String> {
            let v = col[name];
            if v.is_empty() {
                Vec::new()
            } else {
                v.split('|').map(str::to_owned).collect()
            }
        };

        // Frame level: our framing is right, the right dissector ran, and
        // nothing is malformed or flagged.
        if col["frame.number"] != (i + 1).to_string() {
            fail(format!("frame number {}", col["frame.number"]));
        }
        let protocols: Vec<&str> = col["frame.protocols"].split(':').collect();
        if protocols != ["raw", "ip", "sctp", p.expect.proto] {
            fail(format!("protocols {}", col["frame.protocols"]));
        }
        for check in ["ip.checksum.status", "sctp.checksum.status"] {
            if col[check] != "1" {
                fail(format!("{check} = {:?} (1 is good)", col[check]));
            }
        }
        if col["sctp.data_payload_proto_id"] != p.ppid.to_string() {
            fail(format!("PPID {}", col["sctp.data_payload_proto_id"]));
        }
        for flag in ["_ws.malformed", "_ws.expert.severity", "_ws.expert.message"] {
            if !col[flag].is_empty() {
                fail(format!("{flag} = {:?}", col[flag]));
            }
        }

        // Protocol fields: every field of the protocol, all occurrences.
        let other = if p.expect.proto == "asap" {
            "enrp"
        } else {
            "asap"
        };
        for f in fields_of(other) {
            let name = format!("{other}.{f}");
            if !col[name.as_str()].is_empty() {
                fail(format!("unexpected {name} = {:?}", col[name.as_str()]));
            }
        }
        for name in p.expect.fields.keys() {
            assert!(
                fields_of(p.expect.proto).contains(name),
                "{name} is expected but not asked from tshark"
            );
        }
        for f in fields_of(p.expect.proto) {
            let name = format!("{}.{f}", p.expect.proto);
            let got = occurrences(&name);
            let want = p.expect.fields.get(f).map_or(&[][..], Vec::as_slice);
            let same = got.len() == want.len() && want.iter().zip(&got).all(|(w, g)| w.matches(g));
            if !same {
                let want: Vec<String> = want.iter().map(ToString::to_string).collect();
                fail(format!("{name}: tshark shows {got:?}, encoded {want:?}"));
            }
        }
    }
    if !failures.is_empty() {
        // Show the full dissection to help whoever reads the failure.
        let verbose = tshark::verbose(&file.0);
        panic!(
            "tshark disagrees with the encoding in {} place(s):\n{}\n\nfull dissection:\n{verbose}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!(
        "tshark cross-check: {} packets ({} ASAP, {} ENRP), {} field occurrences compared",
        packets.len(),
        packets.iter().filter(|p| p.ppid == PPID_ASAP).count(),
        packets.iter().filter(|p| p.ppid == PPID_ENRP).count(),
        packets
            .iter()
            .map(|p| p.expect.fields.values().map(Vec::len).sum::<usize>())
            .sum::<usize>()
    );
}
