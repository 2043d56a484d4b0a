//! The ENRP bytes a running registrar really sends, dissected by
//! Wireshark's ENRP dissector (`tshark`), our extension parameters
//! (0x8040-0x8044, `enrp_ext.rs`) included.
//!
//! A registrar (the service, in process, TLS) with two PEs registered
//! takes two raw ENRP peers (the test, at the other end of the TLS, so
//! it reads the plaintext). They provoke: presences (the answer to ours
//! and the 1 s heartbeat, RFC 5353 2.1, with the Registrar Nonce), an
//! audit's ENRP_HANDLE_TABLE_REQUEST with the W flag (our presence
//! carries a checksum the registrar disagrees with, RFC 5353 3.6), an
//! ENRP_LIST_RESPONSE naming the other peer (3.2), an
//! ENRP_HANDLE_TABLE_RESPONSE (with the Registrant and Epoch Lists), and
//! ENRP_HANDLE_UPDATE ADD_PE and DEL_PE when a PE registers and
//! deregisters (3.3, with Registrant Identity and Ownership Epoch).
//! Every frame the registrar sent is put, as it came, in an SCTP DATA
//! chunk with PPID 12 (as ENRP runs over SCTP) in a pcap file, and one
//! tshark run dissects them all.
//!
//! Asserted per packet: the dissector ran and nothing is malformed or
//! flagged; the message type, the sender and receiver server ids; the
//! parameters, nested ones included, in tree order with their lengths,
//! exactly as a walk of the frame's TLVs (RFC 5354 2) finds them; pool
//! handles, PE identifiers and homes, checksums, server information and
//! flags as sent. Our extension parameters, whose action bits are `10`
//! ("skip and continue", RFC 5354 3), must show as parameters of their
//! own with their bytes as the value, and the parameter after one (the
//! second extension of a message) must be dissected too.
//!
//! Skipped when tshark is missing, unless `CI=true`, where it fails.

mod support;

#[path = "../../rserpool-wire/tests/support/tshark.rs"]
mod tshark;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rserpool_registrar::{CoreConfig, ServiceConfig};
use rserpool_security::apd::Apd;
use rserpool_security::{PeerIdentity, TlsClient, TlsClientConfig};
use rserpool_wire::enrp_ext::ext_type;
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{
    AsapMessage, EnrpExtensions, EnrpMessage, PeId, ServerId, ServerInformation, Transport,
    TransportUse, WireMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{pe, pool_handle, Lab, LIMIT};
use tshark::{tshark_available, TempFile, PPID_ENRP};

/// The registrar's server id, and the two raw peers'.
const REGISTRAR: u32 = 0x5eed_0001;
const PEER_X: u32 = 0x5eed_00aa;
const PEER_Y: u32 = 0x5eed_00bb;
/// PEs registered before the peers come, and the one registered and
/// deregistered while they listen.
const PE_1: u32 = 0x0a0b_0c01;
const PE_2: u32 = 0x0a0b_0c02;
const PE_3: u32 = 0x0a0b_0c03;

/// ENRP message types (RFC 5353 2).
const PRESENCE: u8 = 0x01;
const HANDLE_TABLE_REQUEST: u8 = 0x02;
const HANDLE_TABLE_RESPONSE: u8 = 0x03;
const HANDLE_UPDATE: u8 = 0x04;
const LIST_RESPONSE: u8 = 0x06;

/// A raw ENRP peer that keeps every frame the registrar sent it, as it
/// came off the TLS stream.
struct Peer {
    stream: tokio_openssl::SslStream<TcpStream>,
    buf: BytesMut,
    codec: ChannelCodec,
    frames: Vec<Bytes>,
}

impl Peer {
    async fn connect(lab: &Lab, identity: &str, to: SocketAddr) -> Peer {
        let tls = TlsClient::new(&TlsClientConfig {
            psk: Some(lab.key(identity)),
            ..TlsClientConfig::default()
        })
        .expect("TLS client");
        let tcp = TcpStream::connect(to).await.expect("connect");
        let (stream, _) = tls.connect(tcp, "127.0.0.1").await.expect("handshake");
        Peer {
            stream,
            buf: BytesMut::new(),
            codec: ChannelCodec::new(ChannelCodec::ABSOLUTE_MAX),
            frames: Vec::new(),
        }
    }

    async fn send(&mut self, msg: &EnrpMessage) {
        let mut out = BytesMut::new();
        self.codec
            .encode(&msg.to_bytes().expect("encode"), &mut out)
            .expect("frame");
        self.stream.write_all(&out).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Read (and keep) frames until one decodes to a message `f` accepts.
    async fn until(&mut self, what: &str, f: impl Fn(&EnrpMessage) -> bool) -> EnrpMessage {
        tokio::time::timeout(LIMIT, async {
            loop {
                while let Some(frame) = self.codec.decode(&mut self.buf).expect("framing") {
                    self.frames.push(frame.clone());
                    let m = EnrpMessage::decode(&frame).expect("decodes").message;
                    if f(&m) {
                        return m;
                    }
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "the registrar closed the association");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}"))
    }
}

fn presence(sender: u32, checksum: Option<u16>, advertise: Option<SocketAddr>) -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId::new(sender),
        receiver: ServerId::UNDETERMINED,
        checksum,
        server_info: advertise.map(|a| ServerInformation {
            server_id: ServerId::new(sender),
            transport: Transport::Tcp {
                port: a.port(),
                transport_use: TransportUse::DataPlusControl,
                address: a.ip(),
            },
        }),
    }
}

// ---------------------------------------------------------------------------
// What tshark should show, from the frame's bytes and the typed message
// ---------------------------------------------------------------------------

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Where the parameters nested in a parameter of type `t` start, from
/// its first byte (RFC 5354 3): transports nest their addresses, a pool
/// element its transports and policy, server information its transport.
fn nested_from(t: u16) -> Option<usize> {
    match t {
        0x0003 => Some(12),         // DCCP transport
        0x0004..=0x0007 => Some(8), // SCTP, TCP, UDP, UDP-Lite transport
        0x000a => Some(16),         // pool element
        0x000b => Some(8),          // server information
        _ => None,
    }
}

/// The (type, length) of every parameter of `b[from..to]`, nested ones
/// right after their parent (tshark's tree order), and the value of each
/// of our extension parameters.
fn walk(b: &[u8], from: usize, to: usize, params: &mut Vec<(u16, usize)>, ext: &mut Vec<Vec<u8>>) {
    let mut at = from;
    while at + 4 <= to {
        let t = u16::try_from(be16(b, at)).expect("16 bits");
        let len = be16(b, at + 2);
        assert!(len >= 4 && at + len <= to, "parameter {t:#06x} at {at}");
        params.push((t, len));
        if (0x8040..=0x8044).contains(&t) {
            ext.push(b[at + 4..at + len].to_vec());
        }
        if let Some(n) = nested_from(t) {
            walk(b, at + n, at + len, params, ext);
        }
        at += tshark::pad4(len);
    }
}

/// One captured frame: what tshark must show of it, field by field
/// (without the `enrp.` prefix), all occurrences in tree order.
struct Expect {
    name: &'static str,
    fields: Vec<(&'static str, Vec<String>)>,
}

impl Expect {
    fn set(&mut self, field: &'static str, values: Vec<String>) {
        assert!(ENRP_FIELDS.contains(&field), "{field} is not asked");
        self.fields.push((field, values));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn flag(b: bool) -> String {
    u8::from(b).to_string()
}

fn ids(ids: impl IntoIterator<Item = u32>) -> Vec<String> {
    ids.into_iter().map(|i| i.to_string()).collect()
}

fn expect(frame: &[u8]) -> Expect {
    let m = EnrpMessage::decode(frame).expect("decodes").message;
    let length = be16(frame, 2);
    let params_from = if m.msg_type() == HANDLE_UPDATE {
        16
    } else {
        12
    };
    let (mut params, mut ext) = (Vec::new(), Vec::new());
    walk(frame, params_from, length, &mut params, &mut ext);
    let mut e = Expect {
        name: m.name(),
        fields: Vec::new(),
    };
    e.set("message_type", vec![m.msg_type().to_string()]);
    e.set("message_length", vec![length.to_string()]);
    e.set("sender_servers_id", ids([m.sender().get()]));
    let receiver = match &m {
        EnrpMessage::Presence { receiver, .. }
        | EnrpMessage::HandleTableRequest { receiver, .. }
        | EnrpMessage::HandleTableResponse { receiver, .. }
        | EnrpMessage::HandleUpdate { receiver, .. }
        | EnrpMessage::ListResponse { receiver, .. } => receiver.get(),
        other => panic!("the registrar sent an unexpected {}", other.name()),
    };
    e.set("receiver_servers_id", ids([receiver]));
    e.set(
        "parameter_type",
        params.iter().map(|p| p.0.to_string()).collect(),
    );
    e.set(
        "parameter_length",
        params.iter().map(|p| p.1.to_string()).collect(),
    );
    // Unknown parameters are shown with their value as bytes.
    e.set("parameter_value", ext.iter().map(|v| hex(v)).collect());
    let mut pes = Vec::new();
    let mut handles = Vec::new();
    let mut infos = Vec::new();
    // The transports in tree order: a server information's, or a PE's
    // user transport then its ASAP transport.
    let mut transports: Vec<&Transport> = Vec::new();
    match &m {
        EnrpMessage::Presence {
            reply_required,
            checksum,
            server_info,
            ..
        } => {
            e.set("r_bit", vec![flag(*reply_required)]);
            e.set(
                "pe_checksum",
                checksum.iter().map(|c| c.to_string()).collect(),
            );
            infos.extend(server_info.iter().map(|s| s.server_id.get()));
            transports.extend(server_info.iter().map(|s| &s.transport));
        }
        EnrpMessage::HandleTableRequest {
            own_children_only, ..
        } => e.set("w_bit", vec![flag(*own_children_only)]),
        EnrpMessage::HandleTableResponse {
            more_to_send,
            reject,
            pools,
            ..
        } => {
            e.set("m_bit", vec![flag(*more_to_send)]);
            e.set("r_bit", vec![flag(*reject)]);
            for p in pools {
                handles.push(hex(p.pool_handle.as_bytes()));
                pes.extend(&p.pool_elements);
            }
        }
        EnrpMessage::HandleUpdate {
            action,
            pool_handle,
            pool_element,
            ..
        } => {
            let code = match action {
                rserpool_wire::UpdateAction::AddPe => 0,
                rserpool_wire::UpdateAction::DelPe => 1,
            };
            e.set("update_action", vec![code.to_string()]);
            handles.push(hex(pool_handle.as_bytes()));
            pes.push(pool_element);
        }
        EnrpMessage::ListResponse {
            reject, servers, ..
        } => {
            e.set("r_bit", vec![flag(*reject)]);
            infos.extend(servers.iter().map(|s| s.server_id.get()));
            transports.extend(servers.iter().map(|s| &s.transport));
        }
        _ => unreachable!("refused above"),
    }
    e.set("pool_handle_pool_handle", handles);
    e.set(
        "pool_element_pe_identifier",
        ids(pes.iter().map(|p| p.identifier.get())),
    );
    e.set(
        "pool_element_home_enrp_server_identifier",
        ids(pes.iter().map(|p| p.home_registrar.get())),
    );
    e.set("server_information_server_identifier", ids(infos));
    for p in &pes {
        transports.push(&p.user_transport);
        transports.extend(&p.asap_transport);
    }
    let (mut ports, mut uses, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
    for t in transports {
        match t {
            Transport::Tcp {
                port,
                transport_use,
                address,
            } => {
                ports.push(port.to_string());
                uses.push(match transport_use {
                    TransportUse::DataOnly => "0".to_string(),
                    TransportUse::DataPlusControl => "1".to_string(),
                });
                addresses.push(address.to_string());
            }
            other => panic!("a registrar over TCP sent {other:?}"),
        }
    }
    e.set("tcp_transport_port", ports);
    e.set("transport_use", uses);
    e.set("ipv4_address", addresses);
    e
}

/// tshark's text `got` shows `want` (decimal), or the bytes `want` (hex).
fn same(got: &str, want: &str) -> bool {
    let int = |s: &str| match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse::<u64>().ok(),
    };
    got == want
        || matches!((int(got), int(want)), (Some(a), Some(b)) if a == b)
        || got.replace(':', "").eq_ignore_ascii_case(want)
        || (want == "1" && got == "True")
        || (want == "0" && got == "False")
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// ENRP fields asked for every packet: each is compared, as absent
/// where a message has none.
const ENRP_FIELDS: &[&str] = &[
    "message_type",
    "message_length",
    "sender_servers_id",
    "receiver_servers_id",
    "parameter_type",
    "parameter_length",
    "parameter_value",
    "r_bit",
    "w_bit",
    "m_bit",
    "update_action",
    "pe_checksum",
    "pool_handle_pool_handle",
    "pool_element_pe_identifier",
    "pool_element_home_enrp_server_identifier",
    "server_information_server_identifier",
    "tcp_transport_port",
    "transport_use",
    "ipv4_address",
];

/// Fields asked for every packet besides the ENRP ones.
const FRAME_FIELDS: &[&str] = &[
    "frame.protocols",
    "sctp.data_payload_proto_id",
    "_ws.malformed",
    "_ws.expert.message",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_dissects_the_enrp_messages_a_registrar_sends() {
    if !tshark_available("the ENRP capture cross-check") {
        return;
    }
    let started = Instant::now();
    let registrars = [
        PeerIdentity::Psk("registrar-x".into()),
        PeerIdentity::Psk("registrar-y".into()),
    ];
    let lab = Lab::with_service(ServiceConfig {
        enrp_listen: vec!["127.0.0.1:0".parse().expect("address")],
        apd: Apd::permissive_with_registrars(false, &registrars),
        core: CoreConfig {
            server_id: ServerId::new(REGISTRAR),
            ..CoreConfig::default()
        },
        ..ServiceConfig::default()
    })
    .await;
    let enrp = lab.registrar.handle().enrp_addrs()[0];
    // Two PEs before any peer: they come in the table response.
    let mut pe_client = lab.client("pe-a").await;
    for id in [PE_1, PE_2] {
        assert_eq!(
            pe_client.register("echo", pe(id, "127.0.0.1", 7)).await,
            None
        );
    }

    // Y first, advertising an ENRP address: the list response to X names it.
    let mut y = Peer::connect(&lab, "registrar-y", enrp).await;
    let y_at: SocketAddr = "127.0.0.1:9902".parse().expect("address");
    y.send(&presence(PEER_Y, None, Some(y_at))).await;
    y.until("a presence for Y", |m| m.msg_type() == PRESENCE)
        .await;

    // X's presence claims a PE checksum the registrar's view of X's PEs
    // (none) disagrees with: besides its presence, the registrar audits
    // X (RFC 5353 3.6) with a handle table request, W flag set.
    let mut x = Peer::connect(&lab, "registrar-x", enrp).await;
    x.send(&presence(PEER_X, Some(0x1234), None)).await;
    x.until("a presence for X", |m| m.msg_type() == PRESENCE)
        .await;
    x.until("an audit's handle table request", |m| {
        matches!(
            m,
            EnrpMessage::HandleTableRequest {
                own_children_only: true,
                ..
            }
        )
    })
    .await;
    // Answered: X owns no PE.
    x.send(&EnrpMessage::HandleTableResponse {
        more_to_send: false,
        reject: false,
        sender: ServerId::new(PEER_X),
        receiver: ServerId::new(REGISTRAR),
        pools: Vec::new(),
    })
    .await;

    x.send(&EnrpMessage::ListRequest {
        sender: ServerId::new(PEER_X),
        receiver: ServerId::new(REGISTRAR),
    })
    .await;
    x.until("a list response", |m| m.msg_type() == LIST_RESPONSE)
        .await;
    x.send(&EnrpMessage::HandleTableRequest {
        own_children_only: false,
        sender: ServerId::new(PEER_X),
        receiver: ServerId::new(REGISTRAR),
    })
    .await;
    x.until("a handle table response", |m| {
        m.msg_type() == HANDLE_TABLE_RESPONSE
    })
    .await;

    // A PE registers and deregisters: two handle updates.
    assert_eq!(
        pe_client.register("echo", pe(PE_3, "127.0.0.1", 8)).await,
        None
    );
    x.until("ADD_PE", |m| m.msg_type() == HANDLE_UPDATE).await;
    let dereg = AsapMessage::Deregistration {
        pool_handle: pool_handle("echo"),
        identifier: PeId::new(PE_3),
    };
    match pe_client.request(&dereg).await {
        AsapMessage::DeregistrationResponse { error: None, .. } => {}
        other => panic!("expected a deregistration response, got {other:?}"),
    }
    x.until("DEL_PE", |m| m.msg_type() == HANDLE_UPDATE).await;
    // And the heartbeat (PEER-HEARTBEAT-CYCLE, 1 s here; RFC 5353 3.4.1).
    // (The answer to X's presence was read above: the next one is a
    // heartbeat.)
    x.until("a heartbeat", |m| m.msg_type() == PRESENCE).await;

    // Everything the registrar sent, Y's frames first.
    let frames: Vec<Bytes> = y.frames.iter().chain(&x.frames).cloned().collect();
    check_frames(&frames);
    eprintln!(
        "ENRP capture cross-check: {} frames from a running registrar, {:?}",
        frames.len(),
        started.elapsed()
    );
}

/// Dissect `frames` with tshark and compare with what they carry.
fn check_frames(frames: &[Bytes]) {
    // What the registrar must have sent, with our extensions.
    let exts: Vec<(EnrpMessage, EnrpExtensions)> = frames
        .iter()
        .map(|f| {
            (
                EnrpMessage::decode(f).expect("decodes").message,
                EnrpExtensions::read(f).expect("extensions decode"),
            )
        })
        .collect();
    let seen =
        |f: &dyn Fn(&EnrpMessage, &EnrpExtensions) -> bool| exts.iter().any(|(m, e)| f(m, e));
    assert!(seen(&|m, e| m.msg_type() == PRESENCE && e.nonce.is_some()));
    assert!(seen(&|m, e| m.msg_type() == HANDLE_TABLE_RESPONSE
        && e.registrants.len() == 2
        && e.epochs.len() == 2));
    assert!(seen(&|m, e| m.msg_type() == HANDLE_UPDATE
        && e.registrant.as_deref() == Some("psk:pe-a")
        && e.epoch.is_some()));
    for (m, _) in &exts {
        assert_eq!(m.sender(), ServerId::new(REGISTRAR), "{}", m.name());
        match m {
            EnrpMessage::HandleUpdate {
                pool_handle,
                pool_element,
                ..
            } => {
                assert_eq!(pool_handle.as_bytes(), b"echo");
                assert_eq!(pool_element.identifier, PeId::new(PE_3));
                assert_eq!(pool_element.home_registrar, ServerId::new(REGISTRAR));
            }
            EnrpMessage::HandleTableResponse { pools, .. } => {
                assert_eq!(pools.len(), 1);
                let got: Vec<u32> = pools[0]
                    .pool_elements
                    .iter()
                    .map(|p| p.identifier.get())
                    .collect();
                assert_eq!(got, [PE_1, PE_2]);
            }
            EnrpMessage::ListResponse { servers, .. } => {
                let got: Vec<u32> = servers.iter().map(|s| s.server_id.get()).collect();
                assert_eq!(got, [PEER_Y]);
            }
            _ => {}
        }
    }

    let expects: Vec<Expect> = frames.iter().map(|f| expect(f)).collect();
    let messages: Vec<(u32, Vec<u8>)> = frames.iter().map(|f| (PPID_ENRP, f.to_vec())).collect();
    let file = TempFile::capture("rserpool-registrar-enrp", &messages);
    let mut columns: Vec<String> = FRAME_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    columns.extend(ENRP_FIELDS.iter().map(|f| format!("enrp.{f}")));
    let lines = tshark::fields(&file.0, &columns);
    assert_eq!(lines.len(), frames.len(), "one line per packet");

    let mut failures = Vec::new();
    for (i, (line, e)) in lines.iter().zip(&expects).enumerate() {
        let mut fail =
            |what: String| failures.push(format!("packet {} ({}): {what}", i + 1, e.name));
        let col = |name: &str| -> &Vec<String> {
            &line[columns.iter().position(|c| c == name).expect("asked")]
        };
        if col("frame.protocols").join("|") != "raw:ip:sctp:enrp" {
            fail(format!("protocols {:?}", col("frame.protocols")));
        }
        if col("sctp.data_payload_proto_id") != &["12"] {
            fail(format!("PPID {:?}", col("sctp.data_payload_proto_id")));
        }
        for flagged in ["_ws.malformed", "_ws.expert.message"] {
            if !col(flagged).is_empty() {
                fail(format!("{flagged} = {:?}", col(flagged)));
            }
        }
        for field in ENRP_FIELDS {
            let want = e
                .fields
                .iter()
                .find(|f| f.0 == *field)
                .map_or(&[][..], |f| f.1.as_slice());
            let got = col(&format!("enrp.{field}"));
            let ok = got.len() == want.len() && got.iter().zip(want).all(|(g, w)| same(g, w));
            if !ok {
                fail(format!("enrp.{field}: tshark shows {got:?}, sent {want:?}"));
            }
        }
    }
    // Each kind of message the test provoked was dissected, and so were
    // both of the extensions of a message that carries two: the
    // parameter after an unknown one is not lost.
    let types: Vec<u8> = frames.iter().map(|f| f[0]).collect();
    for t in [
        PRESENCE,
        HANDLE_TABLE_REQUEST,
        HANDLE_TABLE_RESPONSE,
        HANDLE_UPDATE,
        LIST_RESPONSE,
    ] {
        assert!(types.contains(&t), "no message of type {t} captured");
    }
    for (i, line) in lines.iter().enumerate() {
        let shown = &line[columns
            .iter()
            .position(|c| c == "enrp.parameter_type")
            .expect("asked")];
        let pair = match frames[i][0] {
            HANDLE_UPDATE => Some((ext_type::REGISTRANT, ext_type::EPOCH)),
            HANDLE_TABLE_RESPONSE => Some((ext_type::REGISTRANT_LIST, ext_type::EPOCH_LIST)),
            _ => None,
        };
        if let Some((first, second)) = pair {
            let at = |t: u16| shown.iter().position(|s| same(s, &t.to_string()));
            match (at(first), at(second)) {
                (Some(a), Some(b)) if b == a + 1 => {}
                other => failures.push(format!(
                    "packet {}: extensions {first:#06x} then {second:#06x} not both dissected: {other:?} in {shown:?}",
                    i + 1
                )),
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "tshark disagrees with what the registrar sent in {} place(s):\n{}\n\nfull dissection:\n{}",
            failures.len(),
            failures.join("\n"),
            tshark::verbose(&file.0)
        );
    }
}
