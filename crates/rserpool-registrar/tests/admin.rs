//! The admin HTTP API against a real registrar over TLS PSK on loopback:
//! a registered PE shows in the metrics, the handlespace and the
//! connections; refusals are counted by reason and cause; tokens are
//! checked, failures counted and rate-limited without ever locking the
//! right token out; the probes answer without a token; the event stream
//! delivers registrations and ends when the registrar stops; slow and
//! half-open clients are bounded (header timeout, caps with eviction) and
//! never keep the operator or ASAP out.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rserpool_registrar::admin::{AdminConfig, AdminServer, AdminToken};
use rserpool_registrar::CoreConfig;
use rserpool_security::rate_limit::Rate;
use rserpool_wire::{PeId, ServerId};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HANDLE: &str = "echo";
const PE_ID: u32 = 0x0a0b_0c0d;
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Admin {
    lab: Lab,
    server: AdminServer,
    base: String,
    http: reqwest::Client,
}

async fn start() -> Admin {
    start_with(|_| {}).await
}

/// The admin API with the defaults changed by `f`.
async fn start_with(f: impl FnOnce(&mut AdminConfig)) -> Admin {
    let lab = Lab::start(CoreConfig {
        server_id: ServerId::new(1),
        ..CoreConfig::default()
    })
    .await;
    let mut config = AdminConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        AdminToken::new(TOKEN).unwrap(),
    );
    f(&mut config);
    let server = AdminServer::start(config, lab.registrar.handle())
        .await
        .expect("admin starts");
    let base = format!("http://{}", server.local_addr());
    Admin {
        lab,
        server,
        base,
        http: client_from(Ipv4Addr::LOCALHOST),
    }
}

/// An HTTP client whose connections come from `from` (any of 127/8).
fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(from))
        .timeout(LIMIT)
        .build()
        .unwrap()
}

/// A TCP connection to `to` from `from` (any of 127/8).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(to).await.expect("connect")
}

/// Half a request: the request line and one header, never the blank line.
const HALF_REQUEST: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: registrar\r\n";

/// Whether the server closes `s` (EOF or reset) within the limit, with
/// nothing sent before.
async fn closed_without_answer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(LIMIT, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "the server answered: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => false,
    }
}

/// Whether `s` is still open: nothing to read, and no EOF.
fn still_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

impl Admin {
    async fn get_with(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("admin answers")
    }

    /// GET with the right token: status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.get_with(path, Some(TOKEN)).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    async fn metrics(&self) -> String {
        let r = self.get_with("/metrics", Some(TOKEN)).await;
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        r.text().await.unwrap()
    }
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_pe_shows_everywhere() {
    let a = start().await;
    let mut pe_a = a.lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);

    let m = a.metrics().await;
    for line in [
        "rserpool_registrar_registrations_total 1",
        "rserpool_registrar_pool_elements 1",
        "rserpool_registrar_pools 1",
        "rserpool_registrar_connections 1",
        "rserpool_registrar_pool_elements_by_pool{pool=\"echo\"} 1",
        "rserpool_registrar_connections_accepted_total 1",
        "rserpool_registrar_admin_auth_failures_total 0",
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
    assert!(m.contains("rserpool_registrar_info{server_id=\"0x00000001\""));
    assert!(m.contains("mode=\"secure\""));

    let hs = a.json("/v1/handlespace").await;
    assert_eq!(hs["pools_total"], 1);
    assert_eq!(hs["truncated"], false);
    let pool = &hs["pools"][0];
    assert_eq!(pool["handle"], HANDLE);
    assert_eq!(pool["handle_hex"], hex::encode(HANDLE));
    assert_eq!(pool["policy"], "RR");
    let p = &pool["pool_elements"][0];
    assert_eq!(p["identifier"], PE_ID);
    assert_eq!(p["identifier_hex"], "0x0a0b0c0d");
    assert_eq!(p["identity"], "psk:pe-a");
    assert_eq!(p["home_registrar"], 1);
    assert_eq!(p["policy"]["name"], "RR");
    assert_eq!(p["policy"]["id"], 1);
    assert_eq!(p["user_transport"]["protocol"], "tcp");
    assert_eq!(p["user_transport"]["port"], 7);
    assert_eq!(p["user_transport"]["addresses"][0], "127.0.0.1");
    assert_eq!(p["asap_transport"]["protocol"], "tcp");
    assert_eq!(p["registration_life_ms"], 30_000);
    let left = p["expires_in_seconds"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 30.0, "{left}");

    let one = a.json("/v1/handlespace?pool=echo&limit=0").await;
    assert_eq!(one["truncated"], true);
    assert_eq!(one["pool_elements_shown"], 0);
    // Pools only: counts, no PEs; the limit counts pools.
    let pools = a.json("/v1/handlespace?elements=false").await;
    assert_eq!(pools["pools"][0]["pool_elements_total"], 1);
    assert_eq!(pools["pools"][0]["pool_elements"], serde_json::json!([]));
    assert_eq!(pools["truncated"], false);
    let none = a.json("/v1/handlespace?elements=false&limit=0").await;
    assert_eq!(none["truncated"], true);
    assert_eq!(none["pools"], serde_json::json!([]));
    let (status, body) = a.get("/v1/handlespace?pool=nope").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = a.get("/v1/handlespace?limit=many").await;
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());

    // ENRP peers: none (a registrar alone); the ASAP clients are connections.
    let enrp = a.json("/v1/peers").await;
    assert_eq!(
        enrp,
        serde_json::json!({"peers_total": 0, "peers_up": 0, "serving": true, "peers": []})
    );
    let peers = a.json("/v1/connections").await;
    assert_eq!(peers["connections_total"], 1);
    let c = &peers["asap_connections"][0];
    assert_eq!(c["identity"], "psk:pe-a");
    assert_eq!(c["connection"], p["connection"]);
    assert!(c["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(c["pool_elements"][0]["identifier"], PE_ID);
    assert_eq!(c["pool_elements"][0]["pool"], HANDLE);

    let stats = a.json("/v1/stats").await;
    assert_eq!(stats["core"]["registrations"], 1);
    assert_eq!(stats["service"]["connections_open"], 1);
    assert_eq!(stats["service"]["tls_handshake_failures"], 0);
    assert_eq!(stats["admin"]["auth_failures"], 0);

    let st = a.json("/v1/status").await;
    assert_eq!(st["server_id"], 1);
    assert_eq!(st["server_id_hex"], "0x00000001");
    assert_eq!(st["mode"], "secure");
    assert_eq!(st["pools"], 1);
    assert_eq!(st["pool_elements"], 1);
    assert_eq!(st["connections"], 1);
    assert_eq!(st["listen"][0], a.lab.addr.to_string());
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));

    assert_eq!(a.json("/health").await["status"], "ok");
    assert_eq!(a.json("/ready").await["status"], "ready");
    a.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_wrong_tokens_are_refused_and_counted() {
    let a = start().await;
    for token in [
        None,
        Some("0123456789abcdef0123456789abcdeX"),
        Some("short"),
    ] {
        let r = a.get_with("/v1/status", token).await;
        assert_eq!(r.status().as_u16(), 401);
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    // Unknown paths need the token too, then get a JSON 404.
    assert_eq!(a.get_with("/nope", None).await.status().as_u16(), 401);
    let (status, body) = a.get("/nope").await;
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());

    let m = a.metrics().await;
    assert!(
        has_line(&m, "rserpool_registrar_admin_auth_failures_total 4"),
        "{m}"
    );
    assert_eq!(a.json("/v1/stats").await["admin"]["auth_failures"], 4);
}

/// The probes' status and exact body, without a token.
async fn probe(a: &Admin, path: &str) -> (u16, String) {
    let r = a.get_with(path, None).await;
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_lock_the_operator_out() {
    let a = start().await;
    // 50 wrong tokens from the operator's own address: the first 10
    // (the burst) get 401, the rest 429 with Retry-After.
    let mut codes = Vec::new();
    for _ in 0..50 {
        let r = a
            .get_with("/v1/status", Some("not-the-token-at-all-0123456789abcdef"))
            .await;
        let code = r.status().as_u16();
        if code == 429 {
            assert_eq!(r.headers()["retry-after"], "6");
        }
        codes.push(code);
    }
    assert!(codes[..10].iter().all(|&c| c == 401), "{codes:?}");
    assert!(codes[10..].iter().all(|&c| c == 429), "{codes:?}");
    // The right token from the same address passes all the same.
    let (status, body) = a.get("/v1/status").await;
    assert_eq!(status, 200, "{body}");
    // A missing or wrong token is still over the budget.
    assert_eq!(a.get_with("/v1/status", None).await.status().as_u16(), 429);
    let r = a.get_with("/metrics", Some("wrong")).await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The probes need no token and say nothing but up and ready.
    assert_eq!(
        probe(&a, "/health").await,
        (200, r#"{"status":"ok"}"#.into())
    );
    assert_eq!(
        probe(&a, "/ready").await,
        (200, r#"{"status":"ready"}"#.into())
    );
    // Exact counts: 52 failures, 42 of them over the budget.
    let stats = a.json("/v1/stats").await;
    assert_eq!(stats["admin"]["auth_failures"], 52, "{stats}");
    assert_eq!(stats["admin"]["auth_rate_limited"], 42, "{stats}");
    let m = a.metrics().await;
    assert!(
        has_line(&m, "rserpool_registrar_admin_auth_failures_total 52"),
        "{m}"
    );
    assert!(
        has_line(&m, "rserpool_registrar_admin_auth_rate_limited_total 42"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_failure_limit_spans_addresses_and_spares_the_token() {
    let a = start_with(|c| c.auth_failure_global_rate = Rate::new(0.001, 3.0)).await;
    // One failure each from four addresses: the fourth is over the
    // global budget though its own address has its whole burst.
    let mut codes = Vec::new();
    for last in 2..=5 {
        let http = client_from(Ipv4Addr::new(127, 0, 0, last));
        let r = http
            .get(format!("{}/v1/status", a.base))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
        if last == 5 {
            assert_eq!(r.headers()["retry-after"], "1000");
        }
    }
    assert_eq!(codes, [401, 401, 401, 429]);
    let http = client_from(Ipv4Addr::new(127, 0, 0, 6));
    let r = http
        .get(format!("{}/v1/status", a.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let m = a.metrics().await;
    for line in [
        "rserpool_registrar_admin_auth_failure_burst{scope=\"global\"} 3.0",
        "rserpool_registrar_admin_auth_failure_burst{scope=\"address\"} 10.0",
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_replaces_the_old_at_run_time() {
    let a = start().await;
    assert_eq!(a.get("/v1/status").await.0, 200);
    let new = AdminToken::generate().unwrap();
    a.server.set_token(new.clone());
    let r = a.get_with("/v1/status", Some(TOKEN)).await;
    assert_eq!(r.status().as_u16(), 401, "the old token is refused");
    let r = a.get_with("/v1/status", Some(new.as_str())).await;
    assert_eq!(r.status().as_u16(), 200, "the new one accepted");
    assert_eq!(probe(&a, "/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_reason_and_cause() {
    let a = start().await;
    let mut pe_a = a.lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    // pe-b may not take over pe-a's PE (RFC 5355 2.3).
    let mut pe_b = a.lab.client("pe-b").await;
    assert_eq!(
        pe_b.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await,
        Some(rserpool_wire::CauseCode::RejectedSecurity)
    );
    // A registration life out of range is invalid.
    let mut bad = pe(PE_ID + 1, "127.0.0.1", 8);
    bad.registration_life = 1;
    assert_eq!(
        pe_a.register(HANDLE, bad).await,
        Some(rserpool_wire::CauseCode::InvalidValues)
    );
    // Another policy than the pool's is inconsistent.
    let mut other = pe(PE_ID + 2, "127.0.0.1", 9);
    other.policy = rserpool_wire::Policy::Random;
    assert_eq!(
        pe_a.register(HANDLE, other).await,
        Some(rserpool_wire::CauseCode::InconsistentPoolingPolicy)
    );
    assert_eq!(
        pe_b.resolve("nope").await,
        Err(rserpool_wire::CauseCode::UnknownPoolHandle)
    );

    let m = a.metrics().await;
    for line in [
        "rserpool_registrar_refused_total{reason=\"security\"} 1",
        "rserpool_registrar_refused_total{reason=\"invalid\"} 1",
        "rserpool_registrar_refused_total{reason=\"inconsistent\"} 1",
        "rserpool_registrar_refused_total{reason=\"rate_limited\"} 0",
        "rserpool_registrar_errors_sent_total{cause=\"Rejected due to security considerations\"} 1",
        "rserpool_registrar_errors_sent_total{cause=\"Invalid Values\"} 1",
        "rserpool_registrar_errors_sent_total{cause=\"Inconsistent Pooling Policy\"} 1",
        "rserpool_registrar_errors_sent_total{cause=\"Unknown Pool Handle\"} 1",
        "rserpool_registrar_errors_sent_total{cause=\"Lack of Resources\"} 0",
        "rserpool_registrar_registrations_total 1",
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
    let stats = a.json("/v1/stats").await;
    assert_eq!(
        stats["core"]["errors_sent"]["Rejected due to security considerations"],
        1
    );
}

/// Reads Server-Sent Events from a response, one at a time.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    /// The next event as (event name, data), or `None` at the end.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, data));
            }
            let chunk = self.resp.chunk().await.ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_registrations_and_ends_with_the_registrar() {
    let a = start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .get(format!("{}/v1/events", a.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // The headers arrived, so the subscription exists.
    let mut events = SseReader {
        resp,
        buf: String::new(),
    };
    let mut pe_a = a.lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    let (name, data) = tokio::time::timeout(LIMIT, events.next())
        .await
        .expect("an event within the limit")
        .expect("an event");
    assert_eq!(name, "registered");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["event"], "registered");
    assert_eq!(v["pool_handle"], HANDLE);
    assert_eq!(v["identifier"], PE_ID);
    assert_eq!(v["identity"], "psk:pe-a");
    assert_eq!(v["new"], true);

    // The registrar goes away: the stream ends, /health and /ready say so.
    let Admin { lab, server, .. } = a;
    let base = format!("http://{}", server.local_addr());
    lab.registrar.shutdown().await;
    let end = tokio::time::timeout(LIMIT, async { while events.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "the stream did not end");
    for (path, want) in [
        ("/health", r#"{"status":"unavailable"}"#),
        ("/ready", r#"{"status":"not_ready"}"#),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 503, "{path}");
        assert_eq!(r.text().await.unwrap(), want, "{path}: no reasons, no data");
    }
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("admin shuts down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_half_open_clients_never_keep_the_operator_or_asap_out() {
    const TOTAL: usize = 24;
    const PER_ADDRESS: usize = 8;
    const PER_SOURCE: usize = 50;
    const SOURCES: u8 = 4;
    let a = start_with(|c| {
        c.max_connections = TOTAL;
        c.max_connections_per_address = PER_ADDRESS;
        // No half request may reach its deadline during the test.
        c.header_timeout = Duration::from_secs(600);
    })
    .await;
    let to = a.server.local_addr();
    // 200 half requests from 127.0.0.1-4, 50 each, in that order.
    let mut held = Vec::new();
    for last in 1..=SOURCES {
        for _ in 0..PER_SOURCE {
            let mut s = connect_from(Ipv4Addr::new(127, 0, 0, last), to).await;
            s.write_all(HALF_REQUEST).await.unwrap();
            held.push((last, s));
        }
    }
    // Each one reports when the server closes it, or gives itself back
    // at the end of the test.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let watchers: Vec<_> = held
        .into_iter()
        .map(|(last, mut s)| {
            let closed_tx = closed_tx.clone();
            let mut release = release_rx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let read = tokio::select! {
                    r = s.read(&mut buf) => Some(r),
                    _ = release.wait_for(|r| *r) => None,
                };
                match read {
                    Some(Ok(0)) | Some(Err(_)) => {
                        let _ = closed_tx.send(last);
                        None
                    }
                    Some(Ok(n)) => panic!("an answer to half a request: {n} bytes"),
                    None => Some((last, s)),
                }
            })
        })
        .collect();
    // All but TOTAL are closed for newer ones: waiting connections make
    // room, and none is refused.
    let expected = usize::from(SOURCES) * PER_SOURCE - TOTAL;
    for _ in 0..expected {
        tokio::time::timeout(LIMIT, closed_rx.recv())
            .await
            .expect("evictions within the limit")
            .expect("a watcher");
    }
    // While the rest hang: the operator from 127.0.0.1 gets its answer...
    let (status, body) = a.get("/v1/status").await;
    assert_eq!(status, 200, "{body}");
    // ... which took the place of one more of them,
    tokio::time::timeout(LIMIT, closed_rx.recv())
        .await
        .expect("the operator's connection evicted one")
        .expect("a watcher");
    // and ASAP serves: a registration and a resolution.
    let mut pe_a = a.lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    assert_eq!(pe_a.resolve(HANDLE).await, Ok(vec![PE_ID]));

    let st = a.server.stats();
    assert!(st.connections_peak as usize <= TOTAL, "{st:?}");
    assert!(st.connections_open as usize <= TOTAL, "{st:?}");
    assert_eq!(
        st.connections_evicted_limit + st.connections_evicted_address_limit,
        expected as u64 + 1,
        "{st:?}"
    );
    assert!(st.connections_evicted_address_limit > 0, "{st:?}");
    assert!(st.connections_evicted_limit > 0, "{st:?}");
    assert_eq!(
        st.connections_refused_limit + st.connections_refused_address_limit,
        0,
        "{st:?}"
    );
    assert_eq!(st.header_timeouts, 0, "{st:?}");
    assert_eq!(st.connections_accepted, 201, "{st:?}");

    // The survivors are still open, within both caps.
    release_tx.send(true).unwrap();
    let mut per_source = [0usize; SOURCES as usize + 1];
    let mut survivors = 0;
    for w in watchers {
        if let Some((last, s)) = w.await.unwrap() {
            assert!(still_open(&s), "a survivor from 127.0.0.{last} was closed");
            per_source[usize::from(last)] += 1;
            survivors += 1;
        }
    }
    assert_eq!(survivors, TOTAL - 1, "{per_source:?}");
    assert!(
        per_source.iter().all(|&n| n <= PER_ADDRESS),
        "{per_source:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_requests_are_closed_at_the_header_deadline() {
    let a = start_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let to = a.server.local_addr();
    let mut conns = Vec::new();
    for last in 2..=4 {
        for _ in 0..3 {
            let mut s = connect_from(Ipv4Addr::new(127, 0, 0, last), to).await;
            s.write_all(HALF_REQUEST).await.unwrap();
            conns.push(s);
        }
    }
    // One that sends nothing at all.
    conns.push(connect_from(Ipv4Addr::new(127, 0, 0, 5), to).await);
    for s in &mut conns {
        assert!(closed_without_answer(s).await, "not closed at the deadline");
    }
    let st = a.server.stats();
    assert_eq!(st.header_timeouts, 10, "{st:?}");
    assert_eq!(
        st.connections_evicted_limit + st.connections_evicted_address_limit,
        0
    );
    // A request sent at once is served.
    assert_eq!(a.get("/v1/status").await.0, 200);
    let m = a.metrics().await;
    for line in [
        "rserpool_registrar_admin_header_timeouts_total 10",
        "rserpool_registrar_admin_header_timeout_seconds 0.3",
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
}

/// An open `/v1/events` stream (busy in its handler while it lasts).
async fn open_stream(http: &reqwest::Client, base: &str) -> reqwest::Response {
    let r = http
        .get(format!("{base}/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    assert_eq!(r.status().as_u16(), 200);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_busy_in_a_handler_are_kept_and_new_ones_refused_at_once() {
    let a = start_with(|c| {
        c.max_connections = 3;
        c.max_connections_per_address = 2;
    })
    .await;
    let to = a.server.local_addr();
    let streams = client_from(Ipv4Addr::LOCALHOST);
    let _s1 = open_stream(&streams, &a.base).await;
    let _s2 = open_stream(&streams, &a.base).await;
    // 127.0.0.1 has no waiting connection to give up: a third is closed.
    let mut c = connect_from(Ipv4Addr::LOCALHOST, to).await;
    assert!(closed_without_answer(&mut c).await);
    // Another address takes the last slot; then all are busy.
    let _s3 = open_stream(&client_from(Ipv4Addr::new(127, 0, 0, 2)), &a.base).await;
    let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 3), to).await;
    assert!(closed_without_answer(&mut c).await);
    let st = a.server.stats();
    assert_eq!(st.connections_refused_address_limit, 1, "{st:?}");
    assert_eq!(st.connections_refused_limit, 1, "{st:?}");
    assert_eq!(
        st.connections_evicted_limit + st.connections_evicted_address_limit,
        0
    );
    assert_eq!(st.event_streams_open, 3, "{st:?}");
    assert_eq!(st.connections_open, 3, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped() {
    let a = start_with(|c| c.max_event_streams = 1).await;
    let _s1 = open_stream(&a.http, &a.base).await;
    let (status, body) = a.get("/v1/events").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("at most 1"), "{body}");
    let m = a.metrics().await;
    for line in [
        "rserpool_registrar_admin_event_streams 1",
        "rserpool_registrar_admin_event_streams_refused_total 1",
        "rserpool_registrar_admin_max_event_streams 1",
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
}

impl Admin {
    /// An action with the right token: status, `Allow` header, JSON body.
    async fn act(&self, method: reqwest::Method, path: &str) -> (u16, Option<String>, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("admin answers");
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        let body = r.text().await.expect("body");
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, allow, v)
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        let (status, _, v) = self.act(reqwest::Method::POST, path).await;
        (status, v)
    }
}

/// The next event of the stream (keep-alive comments skipped) as JSON.
async fn next_event(events: &mut SseReader) -> Value {
    let (name, data) = tokio::time::timeout(LIMIT, events.next())
        .await
        .expect("an event within the limit")
        .expect("an event");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["event"], name.as_str());
    v
}

async fn event_stream(a: &Admin) -> SseReader {
    let resp = a
        .http
        .get(format!("{}/v1/events", a.base))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    SseReader {
        resp,
        buf: String::new(),
    }
}

/// Seconds figures carry at most milliseconds.
fn at_most_millis(v: &Value) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("a number: {v}"));
    let text = v.to_string();
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "{text} has more than milliseconds");
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drains_undrains_and_removes_a_pe() {
    let a = start().await;
    let mut events = event_stream(&a).await;
    let mut pe_a = a.lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    assert_eq!(pe_a.register(HANDLE, pe(2, "127.0.0.1", 8)).await, None);
    let mut pu = a.lab.client("pu-1").await;
    let registered = next_event(&mut events).await;
    assert_eq!(
        registered,
        serde_json::json!({"event": "registered", "pool_handle": HANDLE, "identifier": PE_ID,
            "identity": "psk:pe-a", "new": true, "changed": true, "addresses": ["127.0.0.1"],
            "port": 7, "protocol": "tcp", "policy": "RR"})
    );
    assert_eq!(next_event(&mut events).await["identifier"], 2);

    // Drain with the default timeout.
    let drain = format!("/v1/pools/{HANDLE}/elements/{PE_ID}/drain");
    let (status, v) = a.post(&drain).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"pool": HANDLE, "pool_hex": "6563686f", "identifier": PE_ID,
            "identifier_hex": "0x0a0b0c0d", "drained": true, "drain_ends_in_seconds": 600.0})
    );
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"event": "drained", "pool_handle": HANDLE, "identifier": PE_ID,
            "by": "admin API from 127.0.0.1", "timeout_seconds": 600})
    );
    // Not handed out; still registered, and a re-registration keeps it so.
    assert_eq!(pu.resolve(HANDLE).await, Ok(vec![2]));
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    let again = next_event(&mut events).await;
    assert_eq!(
        (&again["new"], &again["changed"]),
        (&Value::Bool(false), &Value::Bool(false))
    );
    assert_eq!(pu.resolve(HANDLE).await, Ok(vec![2]));

    let hs = a.json("/v1/handlespace").await;
    let pool = &hs["pools"][0];
    assert_eq!(pool["pool_elements_total"], 2);
    assert_eq!(pool["pool_elements_drained"], 1);
    let p = &pool["pool_elements"][1];
    assert_eq!(p["identifier"], PE_ID);
    assert_eq!(p["drained"], true);
    let left = at_most_millis(&p["drain_ends_in_seconds"]);
    assert!(left > 590.0 && left <= 600.0, "{left}");
    at_most_millis(&p["expires_in_seconds"]);
    let age = at_most_millis(&p["registered_seconds"]);
    assert!((0.0..60.0).contains(&age), "{age}");
    let at = humantime::parse_rfc3339(p["registered_at"].as_str().unwrap()).expect("RFC 3339");
    let since = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default();
    assert!(since < Duration::from_secs(60), "{since:?}");
    assert_eq!(pool["pool_elements"][0]["drained"], false);
    assert_eq!(
        pool["pool_elements"][0]["drain_ends_in_seconds"],
        Value::Null
    );
    assert_eq!(a.json("/v1/status").await["pool_elements_drained"], 1);

    // Draining again changes the timeout: none, then 90 s (0x hex id).
    let (status, v) = a.post(&format!("{drain}?timeout=none")).await;
    assert_eq!((status, &v["drain_ends_in_seconds"]), (200, &Value::Null));
    assert_eq!(
        next_event(&mut events).await["timeout_seconds"],
        Value::Null
    );
    let (status, v) = a
        .post(&format!(
            "/v1/pools/{HANDLE}/elements/0x0a0b0c0d/drain?timeout=90s"
        ))
        .await;
    assert_eq!(
        (status, &v["drain_ends_in_seconds"]),
        (200, &serde_json::json!(90.0))
    );
    assert_eq!(next_event(&mut events).await["timeout_seconds"], 90);

    // Undrain: handed out again; idempotent, one event.
    let undrain = format!("/v1/pools/{HANDLE}/elements/{PE_ID}/undrain");
    let (status, v) = a.post(&undrain).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        serde_json::json!({"pool": HANDLE, "pool_hex": "6563686f", "identifier": PE_ID,
            "identifier_hex": "0x0a0b0c0d", "drained": false, "was_drained": true})
    );
    let (_, v) = a.post(&undrain).await;
    assert_eq!(v["was_drained"], false);
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"event": "undrained", "pool_handle": HANDLE, "identifier": PE_ID,
            "by": "admin API from 127.0.0.1"})
    );
    let mut ids = pu.resolve(HANDLE).await.unwrap();
    ids.sort_unstable();
    assert_eq!(ids, vec![2, PE_ID]);

    // Remove: gone now; the PE's own deregistration later is harmless.
    let (status, _, v) = a
        .act(
            reqwest::Method::DELETE,
            &format!("/v1/pools/{HANDLE}/elements/{PE_ID}"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["removed"], true);
    assert_eq!(v["identifier_hex"], "0x0a0b0c0d");
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"event": "removed", "pool_handle": HANDLE, "identifier": PE_ID,
            "reason": "operator"})
    );
    assert_eq!(pu.resolve(HANDLE).await, Ok(vec![2]));
    let resp = pe_a
        .request(&rserpool_wire::AsapMessage::Deregistration {
            pool_handle: pool_handle(HANDLE),
            identifier: PeId::new(PE_ID),
        })
        .await;
    assert!(
        matches!(
            resp,
            rserpool_wire::AsapMessage::DeregistrationResponse { error: None, .. }
        ),
        "{resp:?}"
    );
    let (status, v) = a.post(&drain).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "pool \"echo\" has no PE 0x0a0b0c0d");

    let m = a.metrics().await;
    for line in [
        "rserpool_registrar_admin_actions_total{action=\"drain\"} 3",
        "rserpool_registrar_admin_actions_total{action=\"undrain\"} 2",
        "rserpool_registrar_admin_actions_total{action=\"remove\"} 1",
        "rserpool_registrar_operator_removals_total 1",
        "rserpool_registrar_drain_timeout_removals_total 0",
        "rserpool_registrar_pool_elements_drained 0",
        "rserpool_registrar_pool_elements 1",
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
    a.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_times_out_into_a_removal() {
    let a = start().await;
    let mut events = event_stream(&a).await;
    let mut pe_a = a.lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_ID, "127.0.0.1", 7)).await, None);
    next_event(&mut events).await;
    let (status, v) = a
        .post(&format!(
            "/v1/pools/{HANDLE}/elements/{PE_ID}/drain?timeout=1s"
        ))
        .await;
    assert_eq!(
        (status, &v["drain_ends_in_seconds"]),
        (200, &serde_json::json!(1.0))
    );
    assert_eq!(next_event(&mut events).await["event"], "drained");
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"event": "removed", "pool_handle": HANDLE, "identifier": PE_ID,
            "reason": "drain_timeout"})
    );
    assert_eq!(a.lab.pe_count().await, 0);
    let m = a.metrics().await;
    assert!(
        has_line(&m, "rserpool_registrar_drain_timeout_removals_total 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pe_actions_check_their_target_method_and_token() {
    let a = start().await;
    let mut pe_a = a.lab.client("pe-a").await;
    // A handle with a slash and a space: percent-encoded in the path.
    assert_eq!(
        pe_a.register("a/b c", pe(PE_ID, "127.0.0.1", 7)).await,
        None
    );
    let (status, v) = a
        .post(&format!("/v1/pools/a%2Fb%20c/elements/{PE_ID}/drain"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["pool"], &v["pool_hex"]),
        (
            &serde_json::json!("a/b c"),
            &serde_json::json!("612f622063")
        )
    );

    let path = |pool: &str, id: &str| format!("/v1/pools/{pool}/elements/{id}/drain");
    for (p, status, error) in [
        (path("nope", "1"), 404, "no pool \"nope\""),
        (
            path("a%2Fb%20c", "7"),
            404,
            "pool \"a/b c\" has no PE 0x00000007",
        ),
        (
            path("echo", "-1"),
            400,
            "PE identifier \"-1\": give a 32-bit number in decimal or 0x hex",
        ),
        (
            path("echo", "0x1ffffffff"),
            400,
            "PE identifier \"0x1ffffffff\": give a 32-bit number in decimal or 0x hex",
        ),
        (
            path("%zz", "1"),
            400,
            "the pool handle is not validly percent-encoded",
        ),
    ] {
        let (got, v) = a.post(&p).await;
        assert_eq!((got, v["error"].as_str().unwrap()), (status, error), "{p}");
    }
    let drain = path("a%2Fb%20c", &PE_ID.to_string());
    for (query, error) in [
        ("timeout=soon", "timeout \"soon\""),
        ("timeout=1500ms", "must be whole seconds"),
        ("timeout=0s", "outside the allowed range"),
        ("timeout=365d", "outside the allowed range"),
        ("later=1", "unknown field"),
    ] {
        let (status, v) = a.post(&format!("{drain}?{query}")).await;
        assert_eq!(status, 400, "{query}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(error), "{query}: {e}");
    }
    // Other methods: 405 naming the one that works.
    for (method, p, allow) in [
        (reqwest::Method::GET, drain.clone(), "POST"),
        (reqwest::Method::DELETE, drain.clone(), "POST"),
        (
            reqwest::Method::GET,
            format!("/v1/pools/echo/elements/{PE_ID}"),
            "DELETE",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/pools/echo/elements/{PE_ID}"),
            "DELETE",
        ),
    ] {
        let (status, got, v) = a.act(method.clone(), &p).await;
        assert_eq!(
            (status, got.as_deref()),
            (405, Some(allow)),
            "{method} {p}: {v}"
        );
        assert_eq!(
            v["error"],
            format!("only {allow} is supported on this endpoint")
        );
    }
    // Without the token: 401, and nothing changes.
    for (method, p) in [
        (
            reqwest::Method::POST,
            format!("/v1/pools/a%2Fb%20c/elements/{PE_ID}/undrain"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/pools/a%2Fb%20c/elements/{PE_ID}"),
        ),
    ] {
        let r = a
            .http
            .request(method, format!("{}{p}", a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{p}");
    }
    assert_eq!(a.lab.pe_count().await, 1);
    let hs = a.json("/v1/handlespace?pool=a/b%20c").await;
    assert_eq!(hs["pools"][0]["pool_elements"][0]["drained"], true);
    // A body is ignored.
    let r = a
        .http
        .post(format!(
            "{}/v1/pools/a%2Fb%20c/elements/{PE_ID}/undrain",
            a.base
        ))
        .bearer_auth(TOKEN)
        .body("{\"ignored\": true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// The database through the admin API under attack by a token holder:
/// a body over the size bound is refused with 413, a body of junk with
/// 400, an entry flood stops at the database's cap; none of them changes
/// the database, and the registrar keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apd_changes_bound_the_body_and_change_nothing_when_refused() {
    let a = start().await;
    let url = format!("{}/v1/apd", a.base);
    let before = a.json("/v1/apd").await;
    let huge = vec![b'x'; rserpool_security::MAX_FILE_LEN as usize + 1];
    let r = a
        .http
        .put(&url)
        .bearer_auth(TOKEN)
        .body(huge)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 413);
    for junk in [
        &b"[[entry]]\nname = 7\n"[..],
        b"\xff\xfe",
        b"not toml at all [",
    ] {
        let r = a
            .http
            .put(&url)
            .bearer_auth(TOKEN)
            .body(junk.to_vec())
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), 400, "{junk:?}");
    }
    let r = a
        .http
        .post(format!("{url}/entries"))
        .bearer_auth(TOKEN)
        .body("{\"entry\": {\"name\": \"x\"}, \"extra\": 1}")
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(a.json("/v1/apd").await, before, "nothing changed");
    // Without the token: 401, nothing changed.
    let r = a
        .http
        .delete(format!("{url}/entries/0"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(a.json("/v1/apd").await, before);
    // Still serving ASAP.
    let mut pu = a.lab.client("pu-1").await;
    assert_eq!(
        pu.resolve(HANDLE).await,
        Err(rserpool_wire::CauseCode::UnknownPoolHandle)
    );
}

/// A body trickled slower than the body deadline (10 s) is cut off with
/// 408 and changes nothing; other admin requests are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_apd_body_is_cut_off_at_its_deadline() {
    let a = start().await;
    let before = a.json("/v1/apd").await;
    let addr: SocketAddr = a.base.trim_start_matches("http://").parse().unwrap();
    let mut s = connect_from(Ipv4Addr::LOCALHOST, addr).await;
    let head = format!(
        "PUT /v1/apd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n[[entry]]\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile the operator is served.
    assert_eq!(a.get("/v1/status").await.0, 200);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within 20 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(a.json("/v1/apd").await, before);
}
