//! Logs under flood: 5,000 refused connections from one address write a
//! handful of lines, and the summaries account for every refusal the
//! counters saw (before: one warning per refusal, 406,394 lines in 30 s).
//! Its own test binary: it installs the process-wide log subscriber.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rserpool_registrar::ServiceConfig;
use support::*;

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct LineWriter {
    buf: Vec<u8>,
    to: Captured,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf).to_string();
        let mut lines = self.to.0.lock().unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buf: Vec::new(),
            to: self.clone(),
        }
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

const KIND: &str = "connection refused (per-address limit of handshakes in progress)";

/// The refusals the log accounts for: lines written for one, plus the
/// held-back counts of the summaries.
fn accounted(lines: &[String]) -> (usize, u64) {
    let mut written = 0;
    let mut held = 0;
    for l in lines.iter().filter(|l| l.contains(KIND)) {
        // A summary: "KIND: N more in the last 500ms, from ...".
        match l.split_once(" more in the last ") {
            Some((before, _)) => {
                held += before
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            }
            None => written += 1,
        }
    }
    (written, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_writes_a_few_lines_and_summaries_that_add_up() {
    raise_fd_limit();
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .init();
    let lab = Lab::with_service(ServiceConfig {
        handshake_timeout: Duration::from_secs(60),
        log_summary_interval: Duration::from_millis(500),
        ..ServiceConfig::default()
    })
    .await;
    let per_address = ServiceConfig::default().max_handshakes_per_address;
    let mut held = Vec::new();
    for _ in 0..per_address {
        held.push(tcp_from(lab.addr, loopback(1)).await.expect("connect"));
    }
    // 5,000 more from the same address: each refused at once.
    let mut flood = 0u64;
    for _ in 0..5_000 {
        flood += u64::from(tcp_from(lab.addr, loopback(1)).await.is_ok());
    }
    assert!(flood > 4_000, "{flood} connects");
    wait_until("every refusal is counted", || async {
        lab.registrar
            .service_stats()
            .connections_refused_handshakes_per_address
            == flood
    })
    .await;
    wait_until("the summaries account for every refusal", || async {
        let (written, held) = accounted(&log.lines());
        written as u64 + held == flood
    })
    .await;
    let lines = log.lines();
    let (written, _) = accounted(&lines);
    let about: Vec<&String> = lines.iter().filter(|l| l.contains(KIND)).collect();
    // One line per interval at most, plus one summary per interval.
    assert!(
        written <= 10,
        "{written} lines written one by one: {about:#?}"
    );
    assert!(
        about.iter().any(|l| l.contains("from 127.0.0.1 ×")),
        "the summary names the source: {about:#?}"
    );
    assert!(lines.len() < 100, "{} lines in all", lines.len());
    drop(held);
}
