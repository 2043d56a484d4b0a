//! Known-answer tests, written by hand from the figures of RFC 5352
//! (ASAP), RFC 5353 (ENRP) and RFC 5354 (parameters): each byte string is
//! decoded to the expected value and the value encodes to the same bytes.
//! Then the typed errors, with their offsets, for malformed input.

use std::net::IpAddr;

use rserpool_wire::{
    AsapMessage, Cause, CauseCode, DecodeError, DecodeErrorKind, EnrpMessage, OperationError,
    Policy, PoolElement, PoolHandle, ServerInformation, Transport, TransportUse, UpdateAction,
};
use rserpool_wire::{PeId, ServerId, WireMessage};

fn hex(s: &str) -> Vec<u8> {
    rserpool_wire::hex_bytes::decode(s).expect("valid hex in test")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address in test")
}

fn check_asap(bytes: &str, expected: &AsapMessage) {
    let b = hex(bytes);
    let d = AsapMessage::decode(&b).expect("decodes");
    assert_eq!(&d.message, expected);
    assert!(d.unrecognized.is_empty());
    assert_eq!(
        expected.to_bytes().expect("encodes"),
        b,
        "canonical encoding"
    );
}

fn check_enrp(bytes: &str, expected: &EnrpMessage) {
    let b = hex(bytes);
    let d = EnrpMessage::decode(&b).expect("decodes");
    assert_eq!(&d.message, expected);
    assert_eq!(
        expected.to_bytes().expect("encodes"),
        b,
        "canonical encoding"
    );
}

/// PE 0x11223344, TCP 192.0.2.1:8080 data only, round robin, 300 s.
const PE_TCP_RR: &str = "000a 0028 11223344 00000000 0000012c
    0005 0010 1f90 0000 0001 0008 c0000201
    0008 0008 00000001";

fn pe_tcp_rr() -> PoolElement {
    PoolElement {
        identifier: PeId::new(0x1122_3344),
        home_registrar: ServerId::UNDETERMINED,
        registration_life: 300,
        user_transport: Transport::Tcp {
            port: 8080,
            transport_use: TransportUse::DataOnly,
            address: ip("192.0.2.1"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

#[test]
fn registration_with_tcp_transport_and_round_robin() {
    check_asap(
        &format!("01 00 0034  0009 0008 6563686f  {PE_TCP_RR}"),
        &AsapMessage::Registration {
            pool_handle: PoolHandle::from_static("echo"),
            pool_element: pe_tcp_rr(),
        },
    );
}

#[test]
fn registration_response_with_an_error() {
    // R flag; Inconsistent Pooling Policy carrying the pool's policy TLV.
    check_asap(
        "03 01 0024  0009 0008 6563686f  000e 0008 11223344
         000c 0010  0005 000c 0008 0008 00000001",
        &AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: PoolHandle::from_static("echo"),
            identifier: PeId::new(0x1122_3344),
            error: Some(OperationError::single(Cause::with_info(
                CauseCode::InconsistentPoolingPolicy,
                hex("0008 0008 00000001"),
            ))),
        },
    );
    // Rejected due to security considerations, no cause information.
    check_asap(
        "03 01 001c  0009 0008 6563686f  000e 0008 11223344  000c 0008 000a 0004",
        &AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: PoolHandle::from_static("echo"),
            identifier: PeId::new(0x1122_3344),
            error: Some(OperationError::single(Cause::new(
                CauseCode::RejectedSecurity,
            ))),
        },
    );
}

#[test]
fn handle_resolution_with_and_without_the_items_option() {
    // "abc": the message length (11) leaves out the final padding byte.
    check_asap(
        "05 00 000b  0009 0007 616263 00",
        &AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: PoolHandle::from_static("abc"),
            items: None,
        },
    );
    // The padding between parameters is counted (length 20).
    check_asap(
        "05 00 0014  0009 0007 616263 00  803f 0008 00000005",
        &AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: PoolHandle::from_static("abc"),
            items: Some(5),
        },
    );
    // S flag.
    let d = AsapMessage::decode(&hex("05 01 000b 0009 0007 616263 00")).expect("decodes");
    assert!(matches!(
        d.message,
        AsapMessage::HandleResolution {
            subscribe: true,
            ..
        }
    ));
}

#[test]
fn handle_resolution_response_with_two_pool_elements() {
    let pe1 = PoolElement {
        identifier: PeId::new(1),
        home_registrar: ServerId::new(0x0a0b_0c0d),
        registration_life: 300,
        user_transport: Transport::Sctp {
            port: 9000,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![ip("10.0.0.1"), ip("10.0.0.2")],
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    };
    let pe2 = PoolElement {
        identifier: PeId::new(2),
        user_transport: Transport::Tcp {
            port: 9001,
            transport_use: TransportUse::DataOnly,
            address: ip("2001:db8::2"),
        },
        ..pe1.clone()
    };
    check_asap(
        "06 00 0078  0009 0008 6563686f  0008 0008 00000001
         000a 0030 00000001 0a0b0c0d 0000012c
           0004 0018 2328 0001 0001 0008 0a000001 0001 0008 0a000002
           0008 0008 00000001
         000a 0034 00000002 0a0b0c0d 0000012c
           0005 001c 2329 0000 0002 0014 20010db8 00000000 00000000 00000002
           0008 0008 00000001",
        &AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: PoolHandle::from_static("echo"),
            policy: Some(Policy::RoundRobin),
            pool_elements: vec![pe1, pe2],
            error: None,
        },
    );
}

#[test]
fn endpoint_keep_alive_with_the_home_flag() {
    check_asap(
        "07 01 0010  01020304  0009 0008 6563686f",
        &AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ServerId::new(0x0102_0304),
            pool_handle: PoolHandle::from_static("echo"),
            identifier: None,
        },
    );
    // RSPLIB's PE identifier extension.
    check_asap(
        "07 01 0018  01020304  0009 0008 6563686f  000e 0008 11223344",
        &AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ServerId::new(0x0102_0304),
            pool_handle: PoolHandle::from_static("echo"),
            identifier: Some(PeId::new(0x1122_3344)),
        },
    );
}

#[test]
fn presence_with_server_information() {
    // PE checksum is 6 bytes + 2 padding bytes, which the message counts.
    check_enrp(
        "01 01 002c  11111111 00000000
         000f 0006 abcd 0000
         000b 0018 11111111  0004 0010 26ad 0000 0001 0008 c000020a",
        &EnrpMessage::Presence {
            reply_required: true,
            sender: ServerId::new(0x1111_1111),
            receiver: ServerId::new(0),
            checksum: Some(0xabcd),
            server_info: Some(ServerInformation {
                server_id: ServerId::new(0x1111_1111),
                transport: Transport::Sctp {
                    port: 9901,
                    transport_use: TransportUse::DataOnly,
                    addresses: vec![ip("192.0.2.10")],
                },
            }),
        },
    );
}

#[test]
fn handle_update_add_and_takeover_suggested() {
    let body = format!("11111111 22222222 0000 0000  0009 0008 6563686f  {PE_TCP_RR}");
    let msg = |t| EnrpMessage::HandleUpdate {
        takeover_suggested: t,
        sender: ServerId::new(0x1111_1111),
        receiver: ServerId::new(0x2222_2222),
        action: UpdateAction::AddPe,
        pool_handle: PoolHandle::from_static("echo"),
        pool_element: pe_tcp_rr(),
    };
    check_enrp(&format!("04 00 0040 {body}"), &msg(false));
    check_enrp(&format!("04 01 0040 {body}"), &msg(true));
}

#[test]
fn init_takeover() {
    check_enrp(
        "07 00 0010  11111111 00000000 33333333",
        &EnrpMessage::InitTakeover {
            sender: ServerId::new(0x1111_1111),
            receiver: ServerId::new(0),
            target: ServerId::new(0x3333_3333),
        },
    );
}

fn asap_err(bytes: &str) -> DecodeError {
    AsapMessage::decode(&hex(bytes)).expect_err("must not decode")
}

#[test]
fn malformed_headers_give_typed_errors_with_offsets() {
    let e = asap_err("05 00");
    assert_eq!(e.offset, 0);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::Truncated {
            needed: 4,
            available: 2,
            ..
        }
    ));

    let e = asap_err("05 00 0003 00");
    assert_eq!(
        (e.offset, e.kind),
        (2, DecodeErrorKind::MessageLengthTooShort(3))
    );

    let e = asap_err("05 00 0010 0009 0008 6563686f");
    assert_eq!(e.offset, 2);
    assert_eq!(
        e.kind,
        DecodeErrorKind::MessageLengthBeyondInput {
            declared: 16,
            available: 12
        }
    );

    let e = asap_err("05 00 000c 0009 0008 6563686f 00000000");
    assert_eq!((e.offset, e.kind), (12, DecodeErrorKind::TrailingBytes(4)));
}

#[test]
fn unrecognized_message_types_follow_the_type_bits() {
    let e = asap_err("4f 00 0004");
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnrecognizedMessage {
            msg_type: 0x4f,
            report: true
        }
    );
    assert_eq!(e.cause(), Some(CauseCode::UnrecognizedMessage));
    let e = asap_err("0f 00 0004");
    assert_eq!(e.cause(), None);
    let e = EnrpMessage::decode(&hex("0b 00 0004")).expect_err("unknown");
    assert!(matches!(
        e.kind,
        DecodeErrorKind::UnrecognizedMessage {
            msg_type: 0x0b,
            report: false
        }
    ));
}

#[test]
fn unrecognized_parameters_follow_the_type_bits() {
    // 10: skip silently.
    let d = AsapMessage::decode(&hex("05 00 0014 0009 0008 6563686f 8123 0008 00000000"))
        .expect("skipped");
    assert!(d.unrecognized.is_empty());
    // 11: skip and report, with the complete TLV.
    let d = AsapMessage::decode(&hex("05 00 0013 0009 0008 6563686f c123 0007 aabbcc"))
        .expect("skipped");
    assert_eq!(d.unrecognized.len(), 1);
    assert_eq!(d.unrecognized[0].offset, 12);
    assert_eq!(d.unrecognized[0].tlv, hex("c123 0007 aabbcc"));
    // 01: stop and report.
    let e = asap_err("05 00 0014 0009 0008 6563686f 4123 0008 00000000");
    assert_eq!(e.offset, 12);
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnrecognizedParameter {
            param_type: 0x4123,
            report: true,
            tlv: hex("4123 0008 00000000")
        }
    );
    assert_eq!(e.cause(), Some(CauseCode::UnrecognizedParameter));
    // 00: stop silently.
    let e = asap_err("05 00 0014 0009 0008 6563686f 0123 0008 00000000");
    assert_eq!(e.cause(), None);
    // Unknown parameters nested in a pool element are handled the same way.
    let d = AsapMessage::decode(&hex("01 00 003c 0009 0008 6563686f
         000a 0030 11223344 00000000 0000012c
           0005 0010 1f90 0000 0001 0008 c0000201
           c0ff 0008 01020304
           0008 0008 00000001"))
    .expect("skipped");
    assert_eq!(d.unrecognized[0].offset, 44);
}

#[test]
fn malformed_parameters_give_typed_errors_with_offsets() {
    // Missing PE identifier.
    let e = asap_err("02 00 000c 0009 0008 6563686f");
    assert_eq!(
        (e.offset, e.kind),
        (12, DecodeErrorKind::MissingParameter("PE Identifier"))
    );
    // A parameter length below 4.
    let e = asap_err("05 00 000c 0009 0003 65636800");
    assert_eq!(
        (e.offset, e.kind),
        (4, DecodeErrorKind::ParameterLengthTooShort(3))
    );
    // A parameter running past the message.
    let e = asap_err("05 00 000c 0009 0009 6563686f");
    assert_eq!(e.offset, 4);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::ParameterOverrun {
            param_type: 9,
            length: 9,
            available: 8
        }
    ));
    // An empty pool handle.
    let e = asap_err("05 00 0008 0009 0004");
    assert!(matches!(e.kind, DecodeErrorKind::InvalidLength { .. }));
    // A PE identifier of the wrong size.
    let e = asap_err("02 00 0014 0009 0008 6563686f 000e 0006 1122 0000");
    assert_eq!(e.offset, 12);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::InvalidLength { length: 6, .. }
    ));
    // Transport use 2 is not defined.
    let e = asap_err(
        "01 00 0034 0009 0008 6563686f 000a 0028 11223344 00000000 0000012c
         0005 0010 1f90 0002 0001 0008 c0000201 0008 0008 00000001",
    );
    assert_eq!(e.offset, 28);
    assert_eq!(
        e.kind,
        DecodeErrorKind::InvalidValue {
            field: "transport use",
            value: 2
        }
    );
    // A TCP transport with two addresses.
    let e = asap_err(
        "01 00 003c 0009 0008 6563686f 000a 0030 11223344 00000000 0000012c
         0005 0018 1f90 0000 0001 0008 c0000201 0001 0008 c0000202 0008 0008 00000001",
    );
    assert_eq!(e.offset, 28);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::InvalidValue { value: 2, .. }
    ));
    // A policy parameter with a wrong value length.
    let e = asap_err(
        "01 00 0034 0009 0008 6563686f 000a 0028 11223344 00000000 0000012c
         0005 0010 1f90 0000 0001 0008 c0000201 0008 0008 00000002",
    );
    assert_eq!(e.offset, 44);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::InvalidLength { length: 8, .. }
    ));
    // A known parameter out of place (a cookie in a handle resolution).
    let e = asap_err("05 00 0014 0009 0008 6563686f 000d 0008 00000000");
    assert_eq!(e.offset, 12);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::UnexpectedParameter {
            param_type: 0x0d,
            ..
        }
    ));
    // An update action that is not defined.
    let e = EnrpMessage::decode(&hex(&format!(
        "04 00 0040 11111111 22222222 0002 0000 0009 0008 6563686f {PE_TCP_RR}"
    )))
    .expect_err("bad action");
    assert_eq!(
        (e.offset, e.kind),
        (
            12,
            DecodeErrorKind::InvalidValue {
                field: "update action",
                value: 2
            }
        )
    );
}

#[test]
fn rsplib_forms_are_accepted() {
    // RPLU as RSPLIB sends it (load only) decodes with degradation 0.
    let d = AsapMessage::decode(&hex(
        "01 00 0038 0009 0008 6563686f 000a 002c 11223344 00000000 0000012c
         0005 0010 1f90 0000 0001 0008 c0000201 0008 000c b0001001 80000000",
    ))
    .expect("decodes");
    let AsapMessage::Registration { pool_element, .. } = d.message else {
        panic!("registration expected")
    };
    assert_eq!(
        pool_element.policy,
        Policy::RandomizedPriorityLeastUsed {
            load: 0x8000_0000,
            load_degradation: 0
        }
    );
    // An unknown policy type is kept with its bytes.
    let d = AsapMessage::decode(&hex(
        "01 00 0038 0009 0008 6563686f 000a 002c 11223344 00000000 0000012c
         0005 0010 1f90 0000 0001 0008 c0000201 0008 000c 80000007 01020304",
    ))
    .expect("decodes");
    let AsapMessage::Registration { pool_element, .. } = d.message else {
        panic!("registration expected")
    };
    assert_eq!(
        pool_element.policy,
        Policy::Unknown {
            policy_type: 0x8000_0007,
            data: vec![1, 2, 3, 4]
        }
    );
    // RSPLIB's internal error codes are kept.
    let d = AsapMessage::decode(&hex("0e 00 000c 000c 0008 f001 0004")).expect("decodes");
    assert_eq!(
        d.message,
        AsapMessage::Error {
            error: OperationError::single(Cause::new(CauseCode::Other(0xf001)))
        }
    );
}

#[test]
fn single_parameters_for_cause_information() {
    // RFC 5354 3.12.6: an Inconsistent Pooling Policy cause carries the
    // pool's Pool Member Selection Policy parameter (the same bytes the
    // tshark cross-check dissects).
    let wrr = Policy::WeightedRoundRobin { weight: 7 };
    let b = hex("0008 000c 00000002 00000007");
    assert_eq!(wrr.to_tlv().expect("encodes"), b);
    assert_eq!(Policy::from_tlv(&b), Ok(wrr));
    assert_eq!(
        Policy::from_tlv(&hex("0008 0008 00000001")),
        Ok(Policy::RoundRobin)
    );
    // An unknown policy with odd data: no trailing padding out, padding
    // accepted in.
    let odd = Policy::Unknown {
        policy_type: 0x8000_0007,
        data: vec![1, 2, 3],
    };
    let b = odd.to_tlv().expect("encodes");
    assert_eq!(b, hex("0008 000b 80000007 010203"));
    let mut padded = b.clone();
    padded.push(0);
    assert_eq!(Policy::from_tlv(&padded), Ok(odd));
    // RFC 5354 3.12.8: Inconsistent Transport Type carries a transport.
    let tcp = Transport::Tcp {
        port: 8080,
        transport_use: TransportUse::DataOnly,
        address: ip("192.0.2.1"),
    };
    let b = hex("0005 0010 1f90 0000 0001 0008 c0000201");
    assert_eq!(tcp.to_tlv().expect("encodes"), b);
    assert_eq!(Transport::from_tlv(&b), Ok(tcp));
    // Anything else is a typed error, not a panic.
    for bad in [
        "",
        "00",
        "0008 0004",
        "0008 0010 00000002 00000007",
        "0005 0010 1f90 0000 0001 0008 c0000201",
        "0008 000c 00000002 00000007 0008 0008 00000001",
    ] {
        assert!(Policy::from_tlv(&hex(bad)).is_err(), "{bad:?}");
    }
    assert!(Transport::from_tlv(&hex("0008 0008 00000001")).is_err());
}
