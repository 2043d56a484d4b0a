//! The registrar service on loopback, secure mode: registration and
//! resolution over TLS PSK, and every attack of RFC 5355 against a single
//! registrar refused with the precise error, the handlespace unchanged and
//! other clients still served.

mod support;

use std::process::Stdio;
use std::time::Duration;

use rserpool_registrar::{CoreConfig, Event, Removal};
use rserpool_security::Psk;
use rserpool_wire::{AsapMessage, CauseCode, PeId, WireMessage};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDLE: &str = "echo";
const PE_ID: u32 = 0x0a0b_0c0d;

/// A lab with one PE of `pe-a` registered.
async fn lab_with_pe(core: CoreConfig) -> (Lab, Client<tokio_openssl::SslStream<TcpStream>>) {
    let lab = Lab::start(core).await;
    let mut pe_a = lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    (lab, pe_a)
}

/// The handlespace holds exactly PE_ID, and a pool user is served.
async fn still_serving(lab: &Lab) {
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_ID]);
    let mut pu = lab.client("pu-1").await;
    assert_eq!(pu.resolve(HANDLE).await, Ok(vec![PE_ID]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_registers_and_a_pu_resolves_it() {
    let core = CoreConfig::default();
    let server_id = core.server_id;
    let (lab, _pe) = lab_with_pe(core).await;
    let mut pu = lab.client("pu-1").await;
    let resp = pu
        .request(&AsapMessage::HandleResolution {
            subscribe: false,
            pool_handle: pool_handle(HANDLE),
            items: None,
        })
        .await;
    let AsapMessage::HandleResolutionResponse {
        pool_elements,
        error: None,
        ..
    } = resp
    else {
        panic!("{resp:?}")
    };
    assert_eq!(pool_elements.len(), 1);
    let p = &pool_elements[0];
    assert_eq!(p.identifier, PeId::new(PE_ID));
    assert_eq!(p.home_registrar, server_id);
    assert_eq!(pu.resolve("nope").await, Err(CauseCode::UnknownPoolHandle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_and_unknown_identities_fail_the_handshake() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let mut wrong = Psk::generate("pe-b").expect("key");
    wrong.key[0] ^= 1;
    let e = Client::psk(lab.addr, wrong).await.err().expect("refused");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    let stranger = Psk::generate("mallory").expect("key");
    let e = Client::psk(lab.addr, stranger)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_gets_no_asap_service() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let mut tcp = TcpStream::connect(lab.addr).await.expect("connect");
    let req = AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: pool_handle(HANDLE),
        items: None,
    }
    .to_bytes()
    .unwrap();
    tcp.write_all(&req).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut answer))
        .await
        .expect("closed within the limit")
        .ok();
    // Nothing but (at most) a TLS alert record comes back.
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "plain client got {answer:02x?}"
    );
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_may_register_only_its_own_address() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let mut pe_b = lab.client("pe-b").await;
    assert_eq!(
        pe_b.register(HANDLE, pe(2, "192.0.2.1", 7)).await,
        Some(CauseCode::RejectedSecurity)
    );
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_identity_cannot_reregister_or_deregister_a_pe() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let mut events = lab.registrar.events();
    let mut pe_b = lab.client("pe-b").await;
    assert_eq!(
        pe_b.register(HANDLE, pe(PE_ID, "127.0.0.1", 9999)).await,
        Some(CauseCode::RejectedSecurity)
    );
    let ev = wait_event(&mut events, |e| matches!(e, Event::Refused { .. })).await;
    let Event::Refused {
        identity, detail, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(identity, "psk:pe-b");
    assert!(detail.contains("another identity"), "{detail}");
    let resp = pe_b
        .request(&AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: PeId::new(PE_ID),
        })
        .await;
    let AsapMessage::DeregistrationResponse { error: Some(e), .. } = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(e.causes[0].code, CauseCode::RejectedSecurity);
    // The PE kept its port: the hijacking re-registration changed nothing.
    let port = lab
        .registrar
        .query(|c| {
            c.handlespace()
                .find(&pool_handle(HANDLE), PeId::new(PE_ID))
                .map(|e| e.user_transport.port())
        })
        .await
        .flatten();
    assert_eq!(port, Some(7));
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistent_policy_is_refused() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let mut pe_b = lab.client("pe-b").await;
    let mut lu = pe(2, "127.0.0.1", 7);
    lu.policy = rserpool_wire::Policy::LeastUsed { load: 5 };
    assert_eq!(
        pe_b.register(HANDLE, lu).await,
        Some(CauseCode::InconsistentPoolingPolicy)
    );
    still_serving(&lab).await;
}

/// Send `bytes` from a fresh connection of pe-b and expect ASAP_ERROR
/// with "Invalid Values"; returns the connection.
async fn invalid_values(lab: &Lab, bytes: &[u8]) -> Client<tokio_openssl::SslStream<TcpStream>> {
    let mut c = lab.client("pe-b").await;
    c.send_raw(bytes).await;
    let Some(AsapMessage::Error { error }) = c.recv().await else {
        panic!("expected ASAP_ERROR")
    };
    assert_eq!(error.causes[0].code, CauseCode::InvalidValues);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_and_the_connection_closes() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    // A header announcing a length of 2: no message can be that short.
    let mut evil = invalid_values(&lab, &[0x01, 0x00, 0x00, 0x02, 0xde, 0xad, 0xbe, 0xef]).await;
    assert_eq!(evil.recv().await, None, "connection closed");
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_beyond_the_maximum_closes_the_connection() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    // ASAP_REGISTRATION announcing 60000 bytes (the limit is 4096).
    let mut evil = invalid_values(&lab, &[0x01, 0x00, 0xea, 0x60]).await;
    assert_eq!(evil.recv().await, None, "connection closed");
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_answered_with_their_cause() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    // A handle resolution whose pool handle parameter overruns the message.
    let mut c = invalid_values(&lab, &[0x05, 0x00, 0x00, 0x08, 0x00, 0x09, 0x00, 0x20]).await;
    // The connection stays usable.
    assert_eq!(c.resolve(HANDLE).await, Ok(vec![PE_ID]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_is_limited_and_others_are_served() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let flooder = lab.client("flooder").await;
    // 10,000 registrations written as fast as possible (well over
    // 10,000/s), then every answer read.
    let mut batch = Vec::new();
    for id in 0..10_000u32 {
        registration("flood", pe(1_000_000 + id, "127.0.0.1", 7))
            .encode(&mut batch)
            .unwrap();
    }
    let start = std::time::Instant::now();
    let writer = {
        let (mut rd, mut wr) = tokio::io::split(flooder.stream);
        let w = tokio::spawn(async move {
            wr.write_all(&batch).await.expect("write");
            wr.flush().await.expect("flush");
            wr
        });
        // Meanwhile, another PE and a PU are served.
        let mut pe_b = lab.client("pe-b").await;
        assert_eq!(pe_b.register("other", pe(7, "127.0.0.1", 8)).await, None);
        let mut pu = lab.client("pu-2").await;
        assert_eq!(pu.resolve(HANDLE).await, Ok(vec![PE_ID]));
        let mut buf = bytes::BytesMut::new();
        let mut codec = rserpool_wire::framing::ChannelCodec::new(65535);
        let (mut accepted, mut limited) = (0u32, 0u32);
        while accepted + limited < 10_000 {
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
            if accepted + limited == 10_000 {
                break;
            }
            let n = tokio::time::timeout(LIMIT, rd.read_buf(&mut buf))
                .await
                .expect("answers keep coming")
                .expect("read");
            assert!(n > 0, "registrar closed the flooder");
        }
        let elapsed = start.elapsed().as_secs_f64();
        // Burst 200 plus 100/s.
        let allowed = 200.0 + 100.0 * elapsed;
        assert!(
            f64::from(accepted) <= allowed.ceil(),
            "{accepted} accepted in {elapsed:.2} s"
        );
        assert!(accepted >= 200, "the burst is served");
        let flood_pes = lab.pool_ids("flood").await.len();
        assert_eq!(flood_pes, accepted as usize);
        w
    };
    writer.await.expect("writer");
    assert_eq!(lab.pool_ids("other").await, vec![7]);
    still_serving(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_pe_is_removed_after_the_keep_alive_timeout() {
    let core = CoreConfig {
        keep_alive_interval: Duration::from_millis(200),
        keep_alive_timeout: Duration::from_millis(300),
        ..CoreConfig::default()
    };
    let (lab, pe_a) = lab_with_pe(core).await;
    let mut events = lab.registrar.events();
    let t0 = std::time::Instant::now();
    drop(pe_a); // the PE dies
    let ev = wait_event(&mut events, |e| matches!(e, Event::Removed { .. })).await;
    assert!(
        matches!(
            ev,
            Event::Removed {
                reason: Removal::KeepAliveTimeout,
                identifier,
                ..
            } if identifier == PeId::new(PE_ID)
        ),
        "{ev:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(lab.pe_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pe_answering_keep_alives_stays() {
    let core = CoreConfig {
        keep_alive_interval: Duration::from_millis(100),
        keep_alive_timeout: Duration::from_millis(200),
        ..CoreConfig::default()
    };
    let (lab, mut pe_a) = lab_with_pe(core).await;
    for _ in 0..5 {
        match pe_a.recv().await {
            Some(AsapMessage::EndpointKeepAlive {
                pool_handle,
                identifier,
                home: false,
                ..
            }) => {
                assert_eq!(identifier, Some(PeId::new(PE_ID)));
                pe_a.send(&AsapMessage::EndpointKeepAliveAck {
                    pool_handle,
                    identifier: PeId::new(PE_ID),
                })
                .await;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_resolves_a_handle() {
    let (lab, _pe) = lab_with_pe(CoreConfig::default()).await;
    let key = lab.key("pu-1");
    // A hand-made ASAP_HANDLE_RESOLUTION for "echo" with the 0x803f option
    // asking for 3 items (RFC 5352 2.2.5, DESIGN section 5).
    let request = hex::decode("05000014000900086563686f803f000800000003").unwrap();
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &lab.addr.to_string()])
        .args(["-tls1_3", "-quiet", "-psk_identity", "pu-1"])
        .args(["-psk", &hex::encode(key.key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client (apt-get install openssl)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&request).await.expect("write");
    stdin.flush().await.expect("flush");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut answer = Vec::new();
    let resp = tokio::time::timeout(LIMIT, async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stdout.read(&mut chunk).await.expect("read");
            assert!(n > 0, "s_client ended without an answer");
            answer.extend_from_slice(&chunk[..n]);
            if answer.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([answer[2], answer[3]]));
                if answer.len() >= len {
                    return AsapMessage::decode(&answer).expect("decode").message;
                }
            }
        }
    })
    .await
    .expect("answer within the limit");
    let _ = child.kill().await;
    let AsapMessage::HandleResolutionResponse {
        pool_handle,
        pool_elements,
        error: None,
        ..
    } = resp
    else {
        panic!("{resp:?}")
    };
    assert_eq!(pool_handle, support::pool_handle(HANDLE));
    assert_eq!(pool_elements[0].identifier, PeId::new(PE_ID));
}
