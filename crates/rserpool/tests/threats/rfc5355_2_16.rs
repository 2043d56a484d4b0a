//! RFC 5355 2.16: cookie security. A PE's cookies travel on the session's
//! one connection, multiplexed with the data, so they have its TLS (the
//! RFC's cases a and b cannot happen): a cookie of a TLS session is
//! never on the wire in clear. Cookies are signed with a key the pool's
//! PEs share (`rserpool::session::CookieKeys`) and carry their session's
//! id, a counter and the session's security level: a PE refuses a
//! forged or altered cookie, one of another pool's key, a replay of an
//! older cookie of a session it knows, and a cookie of a TLS session
//! echoed over plain TCP, each with ASAP_ERROR "rejected due to security
//! considerations" saying why, a log line, and the close of that session
//! only. A registrar takes no cookies at all.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::BytesMut;
use rserpool::session::{CookieKeys, SecurityLevel};
use rserpool_registrar::CoreConfig;
use rserpool_security::{Psk, TlsClient};
use rserpool_wire::framing::{SessionCodec, SessionFrame, PPID_ASAP};
use rserpool_wire::{AsapMessage, CauseCode, WireMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;
use crate::session_lab::*;

const PE_A: u32 = 0x0a0b_0c0d;
const A: u32 = 1;
const B: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_sent_to_a_registrar_are_unrecognised_and_change_nothing() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut attacker = lab.client("pe-b").await;
    for m in [
        AsapMessage::Cookie {
            cookie: b"forged state".to_vec(),
        },
        AsapMessage::CookieEcho {
            cookie: b"forged state".to_vec(),
        },
    ] {
        match attacker.request(&m).await {
            AsapMessage::Error { error } => {
                assert_eq!(error.causes[0].code, CauseCode::UnrecognizedMessage)
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

/// What a PE answered a raw cookie echo followed by the message `probe`.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// It took the cookie: the probe's answer.
    Data(String),
    /// ASAP_ERROR "rejected due to security considerations" with this
    /// reason, and the connection closed.
    Refused(String),
}

/// Echo `cookie` to the PE at `addr` as a session's first control
/// message (over `tls`, else plain TCP), then send `probe`.
async fn echo(addr: SocketAddr, tls: Option<&TlsClient>, cookie: &[u8]) -> Answer {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    match tls {
        Some(t) => {
            let (stream, _) = within(t.connect(tcp, "127.0.0.1")).await.expect("TLS");
            echo_on(stream, cookie).await
        }
        None => echo_on(tcp, cookie).await,
    }
}

async fn echo_on<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, cookie: &[u8]) -> Answer {
    let mut codec = SessionCodec::new(64 * 1024);
    let mut out = BytesMut::new();
    let echo = AsapMessage::CookieEcho {
        cookie: cookie.to_vec(),
    }
    .to_bytes()
    .expect("encode");
    codec.encode(PPID_ASAP, &echo, &mut out).expect("frame");
    codec.encode(7, b"probe", &mut out).expect("frame");
    io.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    let frame = read_frame(&mut io, &mut codec, &mut buf)
        .await
        .expect("an answer");
    if !frame.is_control() {
        return Answer::Data(String::from_utf8_lossy(&frame.payload).into_owned());
    }
    let Ok(d) = AsapMessage::decode(&frame.payload) else {
        panic!("undecodable control message")
    };
    let AsapMessage::Error { error } = d.message else {
        panic!("expected ASAP_ERROR, got {:?}", d.message)
    };
    let cause = &error.causes[0];
    assert_eq!(cause.code, CauseCode::RejectedSecurity);
    // ... and the session is closed: nothing more, not the probe's answer.
    assert!(
        read_frame(&mut io, &mut codec, &mut buf).await.is_none(),
        "the refused session is closed"
    );
    Answer::Refused(String::from_utf8_lossy(&cause.info).into_owned())
}

/// The next frame, or `None` at the end of the connection.
async fn read_frame<S: AsyncRead + Unpin>(
    io: &mut S,
    codec: &mut SessionCodec,
    buf: &mut BytesMut,
) -> Option<SessionFrame> {
    loop {
        if let Some(f) = codec.decode(buf).expect("framing") {
            return Some(f);
        }
        match within(io.read_buf(buf)).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The cookies a session of `pu` collects from its PE over `n` messages
/// (each held after the next message: the cookie follows its answer).
async fn cookies_of(lab: &Lab, pu: &str, n: usize) -> Vec<Vec<u8>> {
    let mut s = session(lab, pu).await;
    let mut cookies = Vec::new();
    for i in 0..=n {
        ask(&mut s, &format!("m{i}")).await;
        if let Some(c) = s.cookie() {
            cookies.push(c.to_vec());
        }
    }
    cookies
}

fn pool_keys(key: &Psk) -> CookieKeys {
    CookieKeys::new(vec![key.clone()]).expect("keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_inside_tls_is_not_on_the_wire_but_a_plain_one_is() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    for secure in [true, false] {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let proxy = Proxy::start(listener.local_addr().expect("addr"), Tamper::default()).await;
        let mut serving = serving(&lab, &pool_key);
        if !secure {
            serving.tls = None;
        }
        let pool = if secure { HANDLE } else { "plain" };
        let pe = CountingPe::start_on(
            listener,
            proxy.addr.port(),
            lab_config(&lab, "pe-a"),
            pool,
            A,
            serving,
        )
        .await;
        let user = rserpool::PoolUser::new(lab_config(&lab, "pu-1")).expect("pool user");
        let config = if secure {
            rserpool::session::SessionConfig::new(psk_client(&lab.key("pu-1")))
        } else {
            rserpool::session::SessionConfig::insecure()
        };
        let mut s = within(rserpool::session::Session::open(
            user,
            pool_handle(pool),
            config,
        ))
        .await
        .expect("session");
        ask(&mut s, "the secret").await;
        ask(&mut s, "again").await;
        let cookie = s.cookie().expect("a cookie").to_vec();
        let wire = proxy.captured();
        assert_eq!(wire.len(), 1, "one connection, data and cookies on it");
        assert_eq!(contains(&wire[0].down, &cookie), !secure);
        assert_eq!(contains(&wire[0].up, b"the secret"), !secure);
        drop(pe);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_altered_cookie_is_rejected_for_security_reasons() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    let mut victim = session(&lab, "pu-1").await;
    assert_eq!(ask(&mut victim, "v1").await, format!("{A}:1:v1"));
    // The attacker holds a PU key and genuine cookies of its own.
    let genuine = cookies_of(&lab, "pu-2", 2).await.pop().expect("a cookie");
    let tls = psk_client(&lab.key("pu-2"));
    let mut altered_state = genuine.clone();
    let state_at = altered_state.len() - 32 - 1;
    altered_state[state_at] ^= 0x01;
    let mut altered_mac = genuine.clone();
    *altered_mac.last_mut().expect("non-empty") ^= 0x01;
    let attempts: [(&str, Vec<u8>, &str); 4] = [
        ("junk", b"RSPC but not a cookie".to_vec(), "not a cookie"),
        (
            "truncated",
            genuine[..genuine.len() - 1].to_vec(),
            "signature",
        ),
        ("altered state", altered_state, "signature"),
        ("altered signature", altered_mac, "signature"),
    ];
    for (what, cookie, why) in &attempts {
        match echo(a.addr, Some(&tls), cookie).await {
            Answer::Refused(reason) => assert!(reason.contains(why), "{what}: {reason}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // No forged session was resumed; every refusal was seen.
    let seen = a.seen();
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Resumed(_))),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| matches!(s, Seen::Refused(_)))
            .count(),
        4
    );
    // The victim's session is still served, its count intact.
    assert_eq!(ask(&mut victim, "v2").await, format!("{A}:2:v2"));
    // The genuine cookie does resume (at a PE that did not issue it).
    let b = CountingPe::start(
        lab_config(&lab, "pe-b"),
        HANDLE,
        B,
        serving(&lab, &pool_key),
    )
    .await;
    assert_eq!(
        echo(b.addr, Some(&tls), &genuine).await,
        Answer::Data(format!("{B}:3:probe"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_signed_for_another_pool_is_rejected() {
    let lab = Lab::start(CoreConfig::default()).await;
    let echo_key = Psk::generate("echo-cookies").expect("key");
    // Another pool's PEs, another key; one with the same name but not
    // the same secret (a guess at the key's name).
    let other_key = Psk::generate("other-cookies").expect("key");
    let same_name = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &echo_key),
    )
    .await;
    let tls = psk_client(&lab.key("pu-2"));
    for (pool, key, why) in [
        ("other", &other_key, "does not hold"),
        ("guess", &same_name, "signature"),
    ] {
        let foreign =
            CountingPe::start(lab_config(&lab, "pe-b"), pool, B, serving(&lab, key)).await;
        let user = rserpool::PoolUser::new(lab_config(&lab, "pu-2")).expect("pool user");
        let mut s = within(rserpool::session::Session::open(
            user,
            pool_handle(pool),
            rserpool::session::SessionConfig::new(tls.clone()),
        ))
        .await
        .expect("session");
        ask(&mut s, "x").await;
        ask(&mut s, "y").await;
        let cookie = s.cookie().expect("a cookie").to_vec();
        match echo(a.addr, Some(&tls), &cookie).await {
            Answer::Refused(reason) => assert!(reason.contains(why), "{pool}: {reason}"),
            other => panic!("{pool}: {other:?}"),
        }
        foreign.kill().await;
    }
    assert!(!a.seen().iter().any(|s| matches!(s, Seen::Resumed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_cookie_is_rejected() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    // Cookies 1 and 2 of one session; A issued 3 since.
    let cookies = cookies_of(&lab, "pu-2", 2).await;
    let tls = psk_client(&lab.key("pu-2"));
    match echo(a.addr, Some(&tls), &cookies[0]).await {
        Answer::Refused(reason) => assert!(reason.contains("replayed"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // At a PE that never saw the session, cookie 2 resumes; cookie 1
    // after it is a replay there too.
    let b = CountingPe::start(
        lab_config(&lab, "pe-b"),
        HANDLE,
        B,
        serving(&lab, &pool_key),
    )
    .await;
    assert_eq!(
        echo(b.addr, Some(&tls), &cookies[1]).await,
        Answer::Data(format!("{B}:3:probe"))
    );
    match echo(b.addr, Some(&tls), &cookies[0]).await {
        Answer::Refused(reason) => assert!(reason.contains("replayed"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_of_a_tls_session_is_rejected_over_plain_tcp() {
    let lab = Lab::start(CoreConfig::default()).await;
    let pool_key = Psk::generate("echo-cookies").expect("key");
    let _a = CountingPe::start(
        lab_config(&lab, "pe-a"),
        HANDLE,
        A,
        serving(&lab, &pool_key),
    )
    .await;
    // A lab PE of the same pool key that also serves plain TCP.
    let plain = CountingPe::start(
        lab_config(&lab, "pe-b"),
        "lab",
        B,
        Serving {
            tls: None,
            cookie_keys: Some(pool_keys(&pool_key)),
        },
    )
    .await;
    let cookie = cookies_of(&lab, "pu-2", 1).await.pop().expect("a cookie");
    match echo(plain.addr, None, &cookie).await {
        Answer::Refused(reason) => {
            assert!(
                reason.contains(&SecurityLevel::Plain.to_string()),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}
