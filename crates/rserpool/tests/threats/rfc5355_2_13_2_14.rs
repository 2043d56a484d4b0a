//! RFC 5355 2.13 (a flood of endpoint-unreachable reports to take PEs
//! away or load the registrar) and 2.14 (a flood of keep-alives from the
//! registrar to a PE). Mechanism: a report is a hint: MAX-BAD-PE-REPORT
//! distinct reporters make the registrar check the PE with a keep-alive,
//! and only an unanswered check removes it; reports are limited per
//! reporter and per address; a PE gets at most
//! `max_keep_alives_per_interval` keep-alives per keep-alive interval,
//! whatever the reports.

use std::time::{Duration, Instant};

use rserpool_registrar::{CoreConfig, Event};
use rserpool_security::rate_limit::Rate;
use rserpool_wire::{AsapMessage, CauseCode, PeId};

use crate::common::*;

const PE_A: u32 = 0x0a0b_0c0d;

fn report() -> AsapMessage {
    AsapMessage::EndpointUnreachable {
        pool_handle: pool_handle(HANDLE),
        identifier: PeId::new(PE_A),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_flood_from_three_keys_cannot_remove_a_pe_that_answers() {
    let lab = Lab::start(CoreConfig {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_millis(500),
        report_rate: Rate::new(50.0, 100.0),
        ..CoreConfig::default()
    })
    .await;
    let mut events = lab.registrar.events();
    // The library's PE answers keep-alives by itself.
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut reporters = Vec::new();
    for name in ["pu-1", "pu-2", "pu-3"] {
        reporters.push(lab.client(name).await);
    }
    let mut pu = lab.client("flooder").await;
    for _ in 0..10 {
        for r in &mut reporters {
            for _ in 0..10 {
                r.send(&report()).await;
            }
        }
        assert_eq!(pu.resolve(HANDLE).await, Ok(vec![PE_A]), "the PU is served");
    }
    // The reports were checked, and refuted by the PE's answer.
    let refuted = wait_event(&mut events, |e| matches!(e, Event::ReportsRefuted { .. })).await;
    let Event::ReportsRefuted {
        reporters: named, ..
    } = refuted
    else {
        unreachable!()
    };
    assert_eq!(named.len(), 3, "{named:?}");
    let s = lab.stats().await;
    assert!(s.unreachable_probes >= 1, "{s:?}");
    assert_eq!(s.unreachable_removals, 0);
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reporter_flooding_reports_is_limited_and_never_triggers_a_check() {
    let lab = Lab::start(CoreConfig::default()).await;
    let _pe = library_pe(&lab, "pe-a", PE_A).await;
    let mut flooder = lab.client("flooder").await;
    let start = Instant::now();
    let mut batch = Vec::new();
    for _ in 0..500 {
        report().encode(&mut batch).expect("encode");
    }
    AsapMessage::HandleResolution {
        subscribe: false,
        pool_handle: pool_handle(HANDLE),
        items: None,
    }
    .encode(&mut batch)
    .expect("encode");
    flooder.send_raw(&batch).await;
    // Each report over the limit is answered "lack of resources"; the
    // resolution after them is served.
    let mut limited = 0u64;
    loop {
        match flooder.recv().await.expect("an answer") {
            AsapMessage::Error { error } => {
                assert_eq!(error.causes[0].code, CauseCode::LackOfResources);
                limited += 1;
            }
            AsapMessage::HandleResolutionResponse { pool_elements, .. } => {
                assert_eq!(pool_elements.len(), 1);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = lab.stats().await;
    assert_eq!(s.unreachable_reports + limited, 500, "{s:?}");
    // Per reporter: 1/s, burst 5.
    assert!(
        s.unreachable_reports as f64 <= (5.0 + elapsed).ceil(),
        "{} reports counted in {elapsed:.2} s",
        s.unreachable_reports
    );
    assert_eq!(s.unreachable_probes, 0, "one reporter is not enough");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_flood_cannot_make_the_registrar_flood_a_pe_with_keep_alives() {
    let interval = Duration::from_millis(500);
    let lab = Lab::start(CoreConfig {
        keep_alive_interval: interval,
        keep_alive_timeout: Duration::from_millis(400),
        report_rate: Rate::new(1_000.0, 1_000.0),
        report_rate_per_address: Rate::new(10_000.0, 10_000.0),
        ..CoreConfig::default()
    })
    .await;
    // A raw PE that answers every keep-alive at once and counts them.
    let mut pe_a = lab.client("pe-a").await;
    assert_eq!(pe_a.register(HANDLE, pe(PE_A, "127.0.0.1", 7)).await, None);
    let mut reporters = Vec::new();
    for name in ["pu-1", "pu-2", "pu-3"] {
        reporters.push(lab.client(name).await);
    }
    let window = Duration::from_secs(2);
    let start = tokio::time::Instant::now();
    let mut keep_alives = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while start.elapsed() < window {
        tokio::select! {
            _ = tick.tick() => {
                for r in &mut reporters {
                    r.send(&report()).await;
                }
            }
            m = pe_a.recv() => match m {
                Some(AsapMessage::EndpointKeepAlive { pool_handle, identifier: Some(identifier), .. }) => {
                    keep_alives += 1;
                    pe_a.send(&AsapMessage::EndpointKeepAliveAck { pool_handle, identifier }).await;
                }
                other => panic!("the PE got {other:?}"),
            },
        }
    }
    // 100 rounds of reports by three reporters; at most 3 keep-alives in
    // any interval of 500 ms (regular ones included).
    let intervals = (window.as_secs_f64() / interval.as_secs_f64()).ceil() as u32 + 1;
    assert!(
        keep_alives <= 3 * intervals,
        "{keep_alives} keep-alives in {window:?}"
    );
    assert!(keep_alives >= 1, "the reports were checked");
    assert_eq!(lab.pool_ids(HANDLE).await, vec![PE_A]);
    assert_eq!(served(&lab, "pu-1", HANDLE).await, vec![PE_A]);
}
