//! Property tests: every message round-trips through its canonical
//! encoding, and decoding arbitrary or mutated bytes never panics.

use std::net::IpAddr;

use proptest::collection::vec;
use proptest::prelude::*;
use rserpool_wire::framing::{ChannelCodec, SessionCodec};
use rserpool_wire::policy::policy_type;
use rserpool_wire::WireMessage;
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, EnrpMessage, OperationError, PeId, Policy, PoolElement,
    PoolEntry, PoolHandle, ServerId, ServerInformation, Transport, TransportUse, UpdateAction,
};

fn handle() -> impl Strategy<Value = PoolHandle> {
    prop_oneof![
        "[a-zA-Z0-9._-]{1,24}".prop_map(|s| PoolHandle::new(s).expect("non-empty")),
        vec(any::<u8>(), 1..40).prop_map(|v| PoolHandle::new(v).expect("non-empty")),
    ]
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn tuse() -> impl Strategy<Value = TransportUse> {
    prop_oneof![
        Just(TransportUse::DataOnly),
        Just(TransportUse::DataPlusControl)
    ]
}

fn asap_transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        (any::<u16>(), tuse(), vec(addr(), 1..4)).prop_map(|(port, transport_use, addresses)| {
            Transport::Sctp {
                port,
                transport_use,
                addresses,
            }
        }),
        (any::<u16>(), tuse(), addr()).prop_map(|(port, transport_use, address)| {
            Transport::Tcp {
                port,
                transport_use,
                address,
            }
        }),
    ]
}

fn user_transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        asap_transport(),
        (any::<u16>(), addr()).prop_map(|(port, address)| Transport::Udp { port, address }),
        (any::<u16>(), addr()).prop_map(|(port, address)| Transport::UdpLite { port, address }),
        (any::<u16>(), any::<u32>(), addr()).prop_map(|(port, service_code, address)| {
            Transport::Dccp {
                port,
                service_code,
                address,
            }
        }),
        vec(any::<u8>(), 0..20).prop_map(|data| Transport::Opaque { data }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    let u = any::<u32>;
    prop_oneof![
        Just(Policy::RoundRobin),
        Just(Policy::Random),
        u().prop_map(|weight| Policy::WeightedRoundRobin { weight }),
        u().prop_map(|weight| Policy::WeightedRandom { weight }),
        u().prop_map(|priority| Policy::Priority { priority }),
        u().prop_map(|load| Policy::LeastUsed { load }),
        u().prop_map(|load| Policy::RandomizedLeastUsed { load }),
        (u(), u()).prop_map(|(load, load_degradation)| Policy::LeastUsedDegradation {
            load,
            load_degradation
        }),
        (u(), u()).prop_map(|(load, load_degradation)| Policy::PriorityLeastUsed {
            load,
            load_degradation
        }),
        (u(), u()).prop_map(
            |(load, load_degradation)| Policy::RandomizedPriorityLeastUsed {
                load,
                load_degradation
            }
        ),
        (u(), u()).prop_map(|(load, load_degradation)| {
            Policy::RandomizedLeastUsedDegradation {
                load,
                load_degradation,
            }
        }),
        (u(), u()).prop_map(
            |(load, load_degradation)| Policy::PriorityLeastUsedDegradation {
                load,
                load_degradation
            }
        ),
        (u(), u()).prop_map(|(load, load_degradation)| {
            Policy::RandomizedPriorityLeastUsedDegradation {
                load,
                load_degradation,
            }
        }),
        (u(), u(), u()).prop_map(|(weight, weight_dpf, distance)| Policy::WeightedRandomDpf {
            weight,
            weight_dpf,
            distance
        }),
        (u(), u(), u()).prop_map(|(load, load_dpf, distance)| Policy::LeastUsedDpf {
            load,
            load_dpf,
            distance
        }),
        (u(), u(), u(), u()).prop_map(|(load, load_degradation, load_dpf, distance)| {
            Policy::LeastUsedDegradationDpf {
                load,
                load_degradation,
                load_dpf,
                distance,
            }
        }),
        (
            u().prop_filter("unknown type", |t| !Policy::is_known_type(*t)),
            vec(any::<u8>(), 0..12)
        )
            .prop_map(|(policy_type, data)| Policy::Unknown { policy_type, data }),
    ]
}

fn pe_id() -> impl Strategy<Value = PeId> {
    any::<u32>().prop_map(PeId::new)
}

fn server_id() -> impl Strategy<Value = ServerId> {
    any::<u32>().prop_map(ServerId::new)
}

fn pool_element() -> impl Strategy<Value = PoolElement> {
    (
        pe_id(),
        server_id(),
        any::<i32>(),
        user_transport(),
        policy(),
        proptest::option::of(asap_transport()),
    )
        .prop_map(
            |(identifier, home_registrar, registration_life, user_transport, policy, asap)| {
                PoolElement {
                    identifier,
                    home_registrar,
                    registration_life,
                    user_transport,
                    policy,
                    asap_transport: asap,
                }
            },
        )
}

fn op_error() -> impl Strategy<Value = OperationError> {
    vec(
        (any::<u16>(), vec(any::<u8>(), 0..13))
            .prop_map(|(c, info)| Cause::with_info(CauseCode::from_code(c), info)),
        1..4,
    )
    .prop_map(|causes| OperationError { causes })
}

fn server_info() -> impl Strategy<Value = ServerInformation> {
    (server_id(), asap_transport()).prop_map(|(server_id, transport)| ServerInformation {
        server_id,
        transport,
    })
}

fn asap_message() -> impl Strategy<Value = AsapMessage> {
    use AsapMessage::*;
    let id = pe_id;
    prop_oneof![
        (handle(), pool_element()).prop_map(|(pool_handle, pool_element)| Registration {
            pool_handle,
            pool_element
        }),
        (handle(), id()).prop_map(|(pool_handle, identifier)| Deregistration {
            pool_handle,
            identifier
        }),
        (
            any::<bool>(),
            handle(),
            id(),
            proptest::option::of(op_error())
        )
            .prop_map(
                |(reject, pool_handle, identifier, error)| RegistrationResponse {
                    reject,
                    pool_handle,
                    identifier,
                    error
                }
            ),
        (handle(), id(), proptest::option::of(op_error())).prop_map(
            |(pool_handle, identifier, error)| DeregistrationResponse {
                pool_handle,
                identifier,
                error
            }
        ),
        (any::<bool>(), handle(), proptest::option::of(any::<u32>())).prop_map(
            |(subscribe, pool_handle, items)| HandleResolution {
                subscribe,
                pool_handle,
                items
            }
        ),
        (
            any::<bool>(),
            handle(),
            proptest::option::of(policy()),
            vec(pool_element(), 0..4),
            proptest::option::of(op_error())
        )
            .prop_map(
                |(accept_updates, pool_handle, policy, pool_elements, error)| {
                    HandleResolutionResponse {
                        accept_updates,
                        pool_handle,
                        policy,
                        pool_elements,
                        error,
                    }
                }
            ),
        (
            any::<bool>(),
            server_id(),
            handle(),
            proptest::option::of(id())
        )
            .prop_map(
                |(home, server_id, pool_handle, identifier)| EndpointKeepAlive {
                    home,
                    server_id,
                    pool_handle,
                    identifier
                }
            ),
        (handle(), id()).prop_map(|(pool_handle, identifier)| EndpointKeepAliveAck {
            pool_handle,
            identifier
        }),
        (handle(), id()).prop_map(|(pool_handle, identifier)| EndpointUnreachable {
            pool_handle,
            identifier
        }),
        (server_id(), vec(asap_transport(), 0..3)).prop_map(|(server_id, transports)| {
            ServerAnnounce {
                server_id,
                transports,
            }
        }),
        vec(any::<u8>(), 0..64).prop_map(|cookie| Cookie { cookie }),
        vec(any::<u8>(), 0..64).prop_map(|cookie| CookieEcho { cookie }),
        (handle(), vec(pool_element(), 0..3)).prop_map(|(pool_handle, pool_elements)| {
            BusinessCard {
                pool_handle,
                pool_elements,
            }
        }),
        op_error().prop_map(|error| Error { error }),
    ]
}

fn enrp_message() -> impl Strategy<Value = EnrpMessage> {
    use EnrpMessage::*;
    let id = server_id;
    prop_oneof![
        (
            any::<bool>(),
            id(),
            id(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(server_info())
        )
            .prop_map(
                |(reply_required, sender, receiver, checksum, server_info)| {
                    Presence {
                        reply_required,
                        sender,
                        receiver,
                        checksum,
                        server_info,
                    }
                }
            ),
        (any::<bool>(), id(), id()).prop_map(|(own_children_only, sender, receiver)| {
            HandleTableRequest {
                own_children_only,
                sender,
                receiver,
            }
        }),
        (
            any::<bool>(),
            any::<bool>(),
            id(),
            id(),
            vec(
                (handle(), vec(pool_element(), 1..3)).prop_map(|(pool_handle, pool_elements)| {
                    PoolEntry {
                        pool_handle,
                        pool_elements,
                    }
                }),
                0..3
            )
        )
            .prop_map(|(more_to_send, reject, sender, receiver, pools)| {
                HandleTableResponse {
                    more_to_send,
                    reject,
                    sender,
                    receiver,
                    pools,
                }
            }),
        (
            any::<bool>(),
            id(),
            id(),
            prop_oneof![Just(UpdateAction::AddPe), Just(UpdateAction::DelPe)],
            handle(),
            pool_element()
        )
            .prop_map(
                |(takeover_suggested, sender, receiver, action, pool_handle, pool_element)| {
                    HandleUpdate {
                        takeover_suggested,
                        sender,
                        receiver,
                        action,
                        pool_handle,
                        pool_element,
                    }
                }
            ),
        (id(), id()).prop_map(|(sender, receiver)| ListRequest { sender, receiver }),
        (any::<bool>(), id(), id(), vec(server_info(), 0..3)).prop_map(
            |(reject, sender, receiver, servers)| ListResponse {
                reject,
                sender,
                receiver,
                servers
            }
        ),
        (id(), id(), id()).prop_map(|(sender, receiver, target)| InitTakeover {
            sender,
            receiver,
            target
        }),
        (id(), id(), id()).prop_map(|(sender, receiver, target)| InitTakeoverAck {
            sender,
            receiver,
            target
        }),
        (id(), id(), id()).prop_map(|(sender, receiver, target)| TakeoverServer {
            sender,
            receiver,
            target
        }),
        (id(), id(), op_error()).prop_map(|(sender, receiver, error)| Error {
            sender,
            receiver,
            error
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn asap_round_trip(m in asap_message()) {
        let bytes = m.to_bytes().expect("encodable");
        prop_assert_eq!(bytes.len() % 4, 0);
        let d = AsapMessage::decode(&bytes).expect("decodes");
        prop_assert!(d.unrecognized.is_empty());
        prop_assert_eq!(&d.message, &m);
        // Canonical: re-encoding gives the same bytes; the message length
        // leaves out at most the 3 bytes of final padding.
        prop_assert_eq!(d.message.to_bytes().expect("encodable"), bytes.clone());
        let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        prop_assert!(declared <= bytes.len() && bytes.len() - declared <= 3);
        // Without the final padding it decodes too (as SCTP may deliver it).
        prop_assert_eq!(AsapMessage::decode(&bytes[..declared]).expect("decodes").message, m);
    }

    #[test]
    fn enrp_round_trip(m in enrp_message()) {
        let bytes = m.to_bytes().expect("encodable");
        prop_assert_eq!(bytes.len() % 4, 0);
        let d = EnrpMessage::decode(&bytes).expect("decodes");
        prop_assert!(d.unrecognized.is_empty());
        prop_assert_eq!(&d.message, &m);
        prop_assert_eq!(d.message.to_bytes().expect("encodable"), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        for d in [AsapMessage::decode(&bytes).map(|d| d.message.to_bytes()).is_ok(),
                  EnrpMessage::decode(&bytes).map(|d| d.message.to_bytes()).is_ok()] {
            let _ = d;
        }
    }

    /// Valid messages with one byte changed: decoding gives a message that
    /// round-trips, or an error; never a panic.
    #[test]
    fn mutated_messages_never_panic(m in asap_message(), e in enrp_message(), at in any::<usize>(), val in any::<u8>()) {
        for mut bytes in [m.to_bytes().expect("encodable"), e.to_bytes().expect("encodable")] {
            let i = at % bytes.len();
            bytes[i] = val;
            if let Ok(d) = AsapMessage::decode(&bytes) {
                let again = d.message.to_bytes().expect("a decoded message encodes");
                prop_assert_eq!(AsapMessage::decode(&again).expect("round trip").message, d.message);
            }
            if let Ok(d) = EnrpMessage::decode(&bytes) {
                let again = d.message.to_bytes().expect("a decoded message encodes");
                prop_assert_eq!(EnrpMessage::decode(&again).expect("round trip").message, d.message);
            }
        }
    }

    /// Cause information (RFC 5354 3.12.6, 3.12.8) comes from the
    /// registrar that refused: any bytes, a valid parameter with one byte
    /// changed, or one cut short decode to a value that round-trips, or an
    /// error; never a panic.
    #[test]
    fn cause_information_never_panics(
        p in policy(),
        t in user_transport(),
        noise in vec(any::<u8>(), 0..64),
        at in any::<usize>(),
        val in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let _ = Policy::from_tlv(&noise);
        let _ = Transport::from_tlv(&noise);
        for (bytes, is_policy) in [(p.to_tlv().expect("encodable"), true), (t.to_tlv().expect("encodable"), false)] {
            let mut changed = bytes.clone();
            let i = at % changed.len();
            changed[i] = val;
            let short = &bytes[..cut % bytes.len()];
            for input in [&changed[..], short] {
                if is_policy {
                    if let Ok(d) = Policy::from_tlv(input) {
                        prop_assert_eq!(Policy::from_tlv(&d.to_tlv().expect("encodes")).expect("round trip"), d);
                    }
                } else if let Ok(d) = Transport::from_tlv(input) {
                    prop_assert_eq!(Transport::from_tlv(&d.to_tlv().expect("encodes")).expect("round trip"), d);
                }
            }
        }
    }

    /// Any stream cut into any chunks frames the same messages.
    #[test]
    fn channel_framing_is_independent_of_chunking(ms in vec(asap_message(), 1..5), cuts in vec(1usize..50, 1..20)) {
        let mut stream = Vec::new();
        for m in &ms {
            m.encode(&mut stream).expect("encodable");
        }
        let mut codec = ChannelCodec::new(ChannelCodec::ABSOLUTE_MAX);
        let mut src = bytes::BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            src.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            i += 1;
            while let Some(f) = codec.decode(&mut src).expect("valid stream") {
                got.push(AsapMessage::decode(&f).expect("decodes").message);
            }
        }
        prop_assert_eq!(got, ms);
    }

    #[test]
    fn session_framing_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        let mut codec = SessionCodec::new(64);
        let mut src = bytes::BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut src) {}
    }
}

#[test]
fn unknown_policy_with_known_type_is_refused_by_the_encoder() {
    let m = AsapMessage::Registration {
        pool_handle: PoolHandle::from_static("x"),
        pool_element: PoolElement {
            identifier: PeId::new(1),
            home_registrar: ServerId::UNDETERMINED,
            registration_life: 30,
            user_transport: Transport::Opaque { data: vec![] },
            policy: Policy::Unknown {
                policy_type: policy_type::ROUND_ROBIN,
                data: vec![],
            },
            asap_transport: None,
        },
    };
    assert!(m.to_bytes().is_err());
}
