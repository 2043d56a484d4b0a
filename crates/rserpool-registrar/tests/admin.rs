//! The admin HTTP API against a real registrar over TLS PSK on loopback:
//! a registered PE shows in the metrics, the handlespace and the
//! connections; refusals are counted by reason and cause; tokens are
//! checked, failures counted and rate-limited; the event stream delivers
//! registrations and ends when the registrar stops.

mod support;

use std::time::Duration;

use rserpool_registrar::admin::{AdminConfig, AdminServer, AdminToken};
use rserpool_registrar::CoreConfig;
use serde_json::Value;
use support::*;

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
    let lab = Lab::start(CoreConfig::default()).await;
    let server = AdminServer::start(
        AdminConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: AdminToken::new(TOKEN).unwrap(),
        },
        lab.registrar.handle(),
    )
    .await
    .expect("admin starts");
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMIT)
        .build()
        .unwrap();
    Admin {
        lab,
        server,
        base,
        http,
    }
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
    let (status, body) = a.get("/v1/handlespace?pool=nope").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = a.get("/v1/handlespace?limit=many").await;
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());

    let peers = a.json("/v1/peers").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_keeps_failing_is_refused_even_with_the_token() {
    let a = start().await;
    let mut limited = false;
    for _ in 0..30 {
        let r = a.get_with("/v1/status", Some("not-the-token-at-all")).await;
        match r.status().as_u16() {
            401 => {}
            429 => {
                limited = true;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(limited, "no 429 after 30 failures");
    // While the source is over its budget, the right token gets 429 as
    // well: the answer tells nothing about a guess.
    let (status, _) = a.get("/v1/status").await;
    assert_eq!(status, 429);
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
    for (path, want) in [("/health", "unavailable"), ("/ready", "not_ready")] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503, "{path}");
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["status"], want);
    }
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("admin shuts down");
}
