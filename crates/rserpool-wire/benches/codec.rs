//! Encode and decode cost of the messages on the hot paths of a registrar:
//! registration, handle resolution, a handle resolution response with 3
//! PEs, and an ENRP handle update.
//!
//! `cargo bench -p rserpool-wire --bench codec`

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use rserpool_wire::{
    AsapMessage, EnrpMessage, PeId, Policy, PoolElement, PoolHandle, ServerId, Transport,
    TransportUse, UpdateAction, WireMessage,
};

fn pe(id: u32) -> PoolElement {
    PoolElement {
        identifier: PeId::new(id),
        home_registrar: ServerId::new(0x0a0b_0c0d),
        registration_life: 300,
        user_transport: Transport::Tcp {
            port: 8000 + id as u16,
            transport_use: TransportUse::DataOnly,
            address: IpAddr::from([192, 0, 2, id as u8]),
        },
        policy: Policy::LeastUsed { load: id * 1000 },
        asap_transport: Some(Transport::Tcp {
            port: 40000,
            transport_use: TransportUse::DataOnly,
            address: IpAddr::from([192, 0, 2, id as u8]),
        }),
    }
}

fn bench_message<M: WireMessage>(c: &mut Criterion, name: &str, msg: M) {
    let bytes = msg.to_bytes().expect("encodable");
    let mut g = c.benchmark_group(name);
    // Into a reused buffer, as a connection's writer does.
    let mut out = Vec::with_capacity(1024);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&msg).encode(&mut out).expect("encodable");
            black_box(out.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(M::decode(black_box(&bytes)).is_ok()))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let handle = PoolHandle::from_static("EchoPool");
    bench_message(
        c,
        "registration",
        AsapMessage::Registration {
            pool_handle: handle.clone(),
            pool_element: pe(1),
        },
    );
    bench_message(
        c,
        "handle_resolution",
        AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: handle.clone(),
            items: Some(3),
        },
    );
    bench_message(
        c,
        "handle_resolution_response_3pe",
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: handle.clone(),
            policy: Some(Policy::LeastUsed { load: 0 }),
            pool_elements: vec![pe(1), pe(2), pe(3)],
            error: None,
        },
    );
    bench_message(
        c,
        "handle_update",
        EnrpMessage::HandleUpdate {
            takeover_suggested: false,
            sender: ServerId::new(1),
            receiver: ServerId::new(2),
            action: UpdateAction::AddPe,
            pool_handle: handle,
            pool_element: pe(1),
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
