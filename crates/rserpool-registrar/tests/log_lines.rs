//! What the log says, line by line (its own test binary: it installs
//! the process-wide log subscriber, at debug): a connection closed for
//! sending more than `max_malformed_per_connection` malformed messages
//! is logged once, however many more it sends; an operator's action is
//! logged at info with the source address of the admin request.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use rserpool_registrar::admin::{AdminConfig, AdminServer, AdminToken};
use rserpool_registrar::{CoreConfig, Event};
use rserpool_wire::WireMessage;
use support::*;

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

struct Writer(Captured);

impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 .0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Writer;
    fn make_writer(&'a self) -> Writer {
        Writer(self.clone())
    }
}

impl Captured {
    fn lines_with(&self, text: &str) -> Vec<String> {
        let all = String::from_utf8_lossy(&self.0.lock().unwrap()).to_string();
        all.lines()
            .filter(|l| l.contains(text))
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_flood_is_logged_once_and_operator_actions_with_their_source() {
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let lab = Lab::start(CoreConfig::default()).await;
    let max = CoreConfig::default().max_malformed_per_connection;

    // 3 x max malformed messages in one write: the core closes the
    // connection after max + 1 and ignores the rest.
    let mut c = lab.client("pe-a").await;
    let mut bad = registration("echo", pe(1, "127.0.0.1", 7))
        .to_bytes()
        .unwrap();
    bad.truncate(12);
    bad[2..4].copy_from_slice(&12u16.to_be_bytes());
    let flood: Vec<u8> = (0..3 * max).flat_map(|_| bad.clone()).collect();
    c.send_raw(&flood).await;
    let mut answers = 0;
    while c.recv().await.is_some() {
        answers += 1;
    }
    assert_eq!(
        answers,
        max + 1,
        "an error for each message up to the close"
    );
    let line = format!("more than {max} malformed messages");
    wait_until("the connection is gone", || async {
        lab.registrar.query(|c| c.connections()).await == Some(0)
    })
    .await;
    assert_eq!(lab.stats().await.malformed, u64::from(max + 1));
    let lines = log.lines_with(&line);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);

    // An operator drains a PE: one info line with the request's source.
    let mut events = lab.registrar.events();
    let mut pe_a = lab.client("pe-a").await;
    assert_eq!(pe_a.register("echo", pe(7, "127.0.0.1", 7)).await, None);
    let server = AdminServer::start(
        AdminConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            AdminToken::new("0123456789abcdef0123456789abcdef").unwrap(),
        ),
        lab.registrar.handle(),
    )
    .await
    .expect("admin starts");
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!(
            "http://{}/v1/pools/echo/elements/7/drain?timeout=2m",
            server.local_addr()
        ))
        .bearer_auth("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    wait_event(&mut events, |e| matches!(e, Event::Drained { .. })).await;
    let lines = log.lines_with("admin API: PE drained");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let l = &lines[0];
    for part in [
        "INFO",
        "peer=127.0.0.1:",
        "pool=echo",
        "pe=0x00000007",
        "action=\"drain\"",
        "timeout 2m",
    ] {
        assert!(l.contains(part), "{part:?} missing in {l}");
    }
}
