//! Writes the seed inputs of the fuzz targets: valid encodings of every
//! ASAP and ENRP message type (checked to round-trip) and, for the framing
//! targets, streams of several messages with chunk-size prefixes.
//!
//! Run from fuzz/: `cargo run --manifest-path seedgen/Cargo.toml -- seeds`

use std::net::IpAddr;
use rserpool_wire::*;

fn ip(s: &str) -> IpAddr { s.parse().unwrap() }

fn pes() -> Vec<PoolElement> {
    let policies = vec![
        Policy::RoundRobin,
        Policy::WeightedRoundRobin { weight: 3 },
        Policy::Random,
        Policy::WeightedRandom { weight: 7 },
        Policy::Priority { priority: 9 },
        Policy::LeastUsed { load: 0x1000 },
        Policy::LeastUsedDegradation { load: 1, load_degradation: 2 },
        Policy::PriorityLeastUsed { load: 1, load_degradation: 2 },
        Policy::RandomizedLeastUsed { load: 5 },
        Policy::RandomizedPriorityLeastUsed { load: 5, load_degradation: 6 },
        Policy::RandomizedLeastUsedDegradation { load: 5, load_degradation: 6 },
        Policy::PriorityLeastUsedDegradation { load: 5, load_degradation: 6 },
        Policy::RandomizedPriorityLeastUsedDegradation { load: 5, load_degradation: 6 },
        Policy::WeightedRandomDpf { weight: 1, weight_dpf: 2, distance: 3 },
        Policy::LeastUsedDpf { load: 1, load_dpf: 2, distance: 3 },
        Policy::LeastUsedDegradationDpf { load: 1, load_degradation: 2, load_dpf: 3, distance: 4 },
        Policy::Unknown { policy_type: 0x1234_5678, data: vec![1, 2, 3, 4, 5] },
    ];
    let transports = vec![
        Transport::Tcp { port: 8080, transport_use: TransportUse::DataOnly, address: ip("192.0.2.1") },
        Transport::Sctp { port: 9000, transport_use: TransportUse::DataPlusControl, addresses: vec![ip("192.0.2.2"), ip("2001:db8::1")] },
        Transport::Udp { port: 53, address: ip("2001:db8::2") },
        Transport::UdpLite { port: 54, address: ip("10.0.0.1") },
        Transport::Dccp { port: 55, service_code: 42, address: ip("10.0.0.2") },
        Transport::Opaque { data: b"opaque!".to_vec() },
    ];
    let mut v = Vec::new();
    for (i, p) in policies.into_iter().enumerate() {
        let t = transports[i % transports.len()].clone();
        v.push(PoolElement {
            identifier: PeId::new(0x1122_3300 + i as u32),
            home_registrar: ServerId::new(i as u32),
            registration_life: 300,
            user_transport: t,
            policy: p,
            asap_transport: if i % 3 == 0 {
                Some(Transport::Sctp { port: 3863, transport_use: TransportUse::DataOnly, addresses: vec![ip("192.0.2.9")] })
            } else { None },
        });
    }
    v
}

fn err() -> OperationError {
    OperationError {
        causes: vec![
            Cause::with_info(CauseCode::InconsistentPoolingPolicy, vec![0, 8, 0, 8, 0, 0, 0, 1]),
            Cause::new(CauseCode::LackOfResources),
            Cause::with_info(CauseCode::Other(0xf001), vec![1, 2, 3]),
        ],
    }
}

fn main() {
    let out = std::env::args().nth(1).unwrap();
    let h = PoolHandle::from_static("echo");
    let pes = pes();
    let mut asap = vec![
        AsapMessage::HandleResolution { subscribe: false, pool_handle: h.clone(), items: None },
        AsapMessage::HandleResolution { subscribe: true, pool_handle: h.clone(), items: Some(5) },
        AsapMessage::Deregistration { pool_handle: h.clone(), identifier: PeId::new(7) },
        AsapMessage::RegistrationResponse { reject: true, pool_handle: h.clone(), identifier: PeId::new(7), error: Some(err()) },
        AsapMessage::RegistrationResponse { reject: false, pool_handle: h.clone(), identifier: PeId::new(7), error: None },
        AsapMessage::DeregistrationResponse { pool_handle: h.clone(), identifier: PeId::new(7), error: Some(err()) },
        AsapMessage::HandleResolutionResponse { accept_updates: true, pool_handle: h.clone(), policy: Some(Policy::LeastUsed { load: 0 }), pool_elements: pes[..4].to_vec(), error: None },
        AsapMessage::HandleResolutionResponse { accept_updates: false, pool_handle: h.clone(), policy: None, pool_elements: vec![], error: Some(err()) },
        AsapMessage::EndpointKeepAlive { home: true, server_id: ServerId::new(0xabcd), pool_handle: h.clone(), identifier: Some(PeId::new(9)) },
        AsapMessage::EndpointKeepAlive { home: false, server_id: ServerId::new(0xabcd), pool_handle: h.clone(), identifier: None },
        AsapMessage::EndpointKeepAliveAck { pool_handle: h.clone(), identifier: PeId::new(9) },
        AsapMessage::EndpointUnreachable { pool_handle: h.clone(), identifier: PeId::new(9) },
        AsapMessage::ServerAnnounce { server_id: ServerId::new(1), transports: vec![
            Transport::Sctp { port: 3863, transport_use: TransportUse::DataOnly, addresses: vec![ip("192.0.2.9"), ip("::1")] },
            Transport::Tcp { port: 3863, transport_use: TransportUse::DataOnly, address: ip("192.0.2.9") }] },
        AsapMessage::Cookie { cookie: b"a cookie".to_vec() },
        AsapMessage::CookieEcho { cookie: vec![0xde, 0xad, 0xbe] },
        AsapMessage::BusinessCard { pool_handle: h.clone(), pool_elements: pes[4..7].to_vec() },
        AsapMessage::Error { error: err() },
    ];
    for pe in &pes {
        asap.push(AsapMessage::Registration { pool_handle: h.clone(), pool_element: pe.clone() });
    }
    let si = |id: u32| ServerInformation { server_id: ServerId::new(id), transport: Transport::Sctp { port: 9901, transport_use: TransportUse::DataOnly, addresses: vec![ip("192.0.2.10")] } };
    let mut enrp = vec![
        EnrpMessage::Presence { reply_required: true, sender: ServerId::new(1), receiver: ServerId::new(0), checksum: Some(0x1234), server_info: Some(si(1)) },
        EnrpMessage::Presence { reply_required: false, sender: ServerId::new(1), receiver: ServerId::new(2), checksum: None, server_info: None },
        EnrpMessage::HandleTableRequest { own_children_only: true, sender: ServerId::new(1), receiver: ServerId::new(2) },
        EnrpMessage::HandleTableResponse { more_to_send: true, reject: false, sender: ServerId::new(1), receiver: ServerId::new(2), pools: vec![
            PoolEntry { pool_handle: h.clone(), pool_elements: pes[..2].to_vec() },
            PoolEntry { pool_handle: PoolHandle::from_static("other"), pool_elements: pes[2..5].to_vec() }] },
        EnrpMessage::HandleTableResponse { more_to_send: false, reject: true, sender: ServerId::new(1), receiver: ServerId::new(2), pools: vec![] },
        EnrpMessage::ListRequest { sender: ServerId::new(1), receiver: ServerId::new(2) },
        EnrpMessage::ListResponse { reject: false, sender: ServerId::new(1), receiver: ServerId::new(2), servers: vec![si(3), si(4)] },
        EnrpMessage::InitTakeover { sender: ServerId::new(1), receiver: ServerId::new(2), target: ServerId::new(3) },
        EnrpMessage::InitTakeoverAck { sender: ServerId::new(1), receiver: ServerId::new(2), target: ServerId::new(3) },
        EnrpMessage::TakeoverServer { sender: ServerId::new(1), receiver: ServerId::new(2), target: ServerId::new(3) },
        EnrpMessage::Error { sender: ServerId::new(1), receiver: ServerId::new(2), error: err() },
    ];
    for (i, pe) in pes.iter().enumerate() {
        enrp.push(EnrpMessage::HandleUpdate { takeover_suggested: i % 2 == 0, sender: ServerId::new(1), receiver: ServerId::new(2),
            action: if i % 2 == 0 { UpdateAction::AddPe } else { UpdateAction::DelPe }, pool_handle: h.clone(), pool_element: pe.clone() });
    }
    let dirs = ["decode_asap", "decode_enrp", "channel_framing", "session_framing"];
    for d in dirs { std::fs::create_dir_all(format!("{out}/{d}")).unwrap(); }
    let mut all_asap = Vec::new();
    for (i, m) in asap.iter().enumerate() {
        let b = m.to_bytes().expect("encodes");
        assert_eq!(AsapMessage::decode(&b).expect("decodes").message, *m);
        std::fs::write(format!("{out}/decode_asap/{i:02}-{}", m.name()), &b).unwrap();
        all_asap.push(b);
    }
    for (i, m) in enrp.iter().enumerate() {
        let b = m.to_bytes().expect("encodes");
        assert_eq!(EnrpMessage::decode(&b).expect("decodes").message, *m);
        std::fs::write(format!("{out}/decode_enrp/{i:02}-{}", m.name()), &b).unwrap();
    }
    // Framing seeds: [selector][chunk sizes][stream of messages].
    for (k, chunk) in [(0u8, vec![0u8]), (2, vec![2, 6, 250]), (7, vec![0, 1, 2, 3, 4, 5, 6, 254])] {
        let mut ch = vec![k];
        ch.extend(&chunk);
        let mut se = ch.clone();
        for (j, b) in all_asap.iter().enumerate().skip(usize::from(k)).take(6) {
            ch.extend(b);
            se.extend((if j % 2 == 0 { 11u32 } else { 1234 }).to_be_bytes());
            se.extend((b.len() as u32).to_be_bytes());
            se.extend(b);
        }
        std::fs::write(format!("{out}/channel_framing/stream-{k}"), &ch).unwrap();
        std::fs::write(format!("{out}/session_framing/stream-{k}"), &se).unwrap();
    }
    println!("asap {} enrp {}", asap.len(), enrp.len());
}
