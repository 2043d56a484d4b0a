//! RFC 5355 2.2: a flood of registrations and deregistrations by a node
//! that holds a key (an authenticated PE, or a stolen key). Mechanism:
//! token buckets per identity and per source address, a cap of PEs per
//! identity; over them: "lack of resources", and other PEs and PUs are
//! served meanwhile.

use std::time::Instant;

use bytes::BytesMut;
use rserpool_registrar::CoreConfig;
use rserpool_security::rate_limit::Rate;
use rserpool_wire::framing::ChannelCodec;
use rserpool_wire::{AsapMessage, CauseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

/// Pipeline `n` registrations of new PEs in `pool` on `c` and read every
/// answer: (accepted, refused for lack of resources).
pub(crate) async fn flood_registrations<S>(
    c: Client<S>,
    pool: &str,
    first: u32,
    n: u32,
) -> (u32, u32)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut batch = Vec::new();
    for i in 0..n {
        registration(pool, pe(first + i, "127.0.0.1", 7))
            .encode(&mut batch)
            .expect("encode");
    }
    let (mut rd, mut wr) = tokio::io::split(c.stream);
    let writer = tokio::spawn(async move {
        wr.write_all(&batch).await.expect("write");
        wr.flush().await.expect("flush");
        wr
    });
    let mut buf = BytesMut::new();
    let mut codec = ChannelCodec::new(65535);
    let (mut accepted, mut limited) = (0u32, 0u32);
    while accepted + limited < n {
        while let Some(f) = codec.decode(&mut buf).expect("framing") {
            match AsapMessage::decode(&f).expect("decode").message {
                AsapMessage::RegistrationResponse { error: None, .. } => accepted += 1,
                AsapMessage::RegistrationResponse { error: Some(e), .. } => {
                    assert_eq!(e.causes[0].code, CauseCode::LackOfResources);
                    limited += 1
                }
                other => panic!("{other:?}"),
            }
        }
        if accepted + limited == n {
            break;
        }
        let r = within(rd.read_buf(&mut buf)).await.expect("read");
        assert!(r > 0, "the registrar closed the flooder");
    }
    drop(within(writer).await.expect("writer"));
    (accepted, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_from_a_key_holder_is_rate_limited_and_others_are_served() {
    let lab = Lab::start(CoreConfig {
        registration_rate: Rate::new(20.0, 40.0),
        ..CoreConfig::default()
    })
    .await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let flooder = lab.client("flooder").await;
    let start = Instant::now();
    let flood = tokio::spawn(flood_registrations(flooder, "flood", 1_000_000, 1_000));
    // Meanwhile another PE registers and a PU is served.
    let _other = within(rserpool::PoolElement::start(
        lab_config(&lab, "pe-b"),
        spec("other", 7, 8),
    ))
    .await
    .expect("pe-b registers during the flood");
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
    let (accepted, limited) = within(flood).await.expect("flood");
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        f64::from(accepted) <= (40.0 + 20.0 * elapsed).ceil(),
        "{accepted} accepted in {elapsed:.2} s"
    );
    assert!(accepted >= 40, "the burst is served: {accepted}");
    assert_eq!(accepted + limited, 1_000);
    assert_eq!(lab.pool_ids("flood").await.len(), accepted as usize);
    assert_eq!(lab.pool_ids("other").await, vec![7]);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_at_its_pe_cap_gets_lack_of_resources_and_others_still_register() {
    let lab = Lab::start(CoreConfig {
        max_pes_per_identity: 5,
        ..CoreConfig::default()
    })
    .await;
    let flooder = lab.client("flooder").await;
    let (accepted, limited) = flood_registrations(flooder, "flood", 1, 50).await;
    assert_eq!((accepted, limited), (5, 45));
    assert_eq!(lab.pool_ids("flood").await, vec![1, 2, 3, 4, 5]);
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistration_flood_of_unknown_pes_changes_nothing() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut flooder = lab.client("flooder").await;
    let mut batch = Vec::new();
    for id in 0..200u32 {
        AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: rserpool_wire::PeId::new(id + 1),
        }
        .encode(&mut batch)
        .expect("encode");
    }
    flooder.send_raw(&batch).await;
    for _ in 0..200 {
        let m = flooder.recv().await.expect("an answer");
        assert!(
            matches!(m, AsapMessage::DeregistrationResponse { .. }),
            "{m:?}"
        );
    }
    assert_eq!(lab.stats().await.deregistrations, 0);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}
