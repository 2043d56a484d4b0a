//! `rsp bench registrar` runs end to end and reports figures (no timing
//! assertions: the figures are for people).

use std::process::Command;

#[test]
fn bench_registrar_reports_both_runs_as_json() {
    let o = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(["--log", "warn", "bench", "registrar", "--clients", "2"])
        .args(["--duration", "200ms", "--json"])
        .output()
        .expect("rsp runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    for kind in ["resolutions", "registrations"] {
        for side in ["registrar", "tls_echo"] {
            let rate = v[kind][side]["requests_per_second"].as_f64().expect("rate");
            assert!(rate > 0.0, "{kind} {side}: {rate}");
        }
        assert!(v[kind]["ratio"].as_f64().expect("ratio") > 0.0);
    }
    assert_eq!(v["clients"], 2);
}

#[test]
fn bench_connections_reports_memory_per_connection_as_json() {
    let o = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args([
            "--log",
            "warn",
            "bench",
            "connections",
            "--connections",
            "50",
        ])
        .args(["--rounds", "1", "--settle", "3s", "--json"])
        .output()
        .expect("rsp runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["connections"], 50);
    assert_eq!(v["connections_established"], 50);
    assert!(v["allocator"].as_str().is_some_and(|a| !a.is_empty()));
    assert!(v["baseline"]["rss_kib"].as_u64().expect("baseline") > 0);
    assert!(
        v["peak_rss_kib"].as_u64().expect("peak") >= v["baseline"]["rss_kib"].as_u64().unwrap()
    );
    for key in ["idle_kib_per_connection", "handshake_kib_per_connection"] {
        assert!(v[key].as_f64().expect(key).is_finite(), "{key}");
    }
    assert!(v["retained_kib"].as_i64().is_some());
    let rounds = v["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 1);
    let r = &rounds[0];
    assert_eq!(r["connections_established"], 50);
    assert_eq!(r["handshakes_in_progress"], 50);
    for step in [
        "start",
        "with_handshakes",
        "with_idle_connections",
        "after_close",
    ] {
        assert!(r[step]["rss_kib"].as_u64().expect(step) > 0, "{step}");
    }
    assert!(v["handshake_bytes_sent"].as_u64().expect("hello") > 5);
}

#[test]
fn bench_logs_at_warn_unless_asked() {
    let o = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args([
            "bench",
            "registrar",
            "--clients",
            "1",
            "--duration",
            "100ms",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("rsp runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    // Only its progress lines: no log line per request.
    assert!(err.lines().all(|l| l.starts_with("measuring ")), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("handle resolutions"));
}

#[test]
fn bench_cluster_reports_its_figures_and_loses_no_pe() {
    let o = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args([
            "--log",
            "error",
            "bench",
            "cluster",
            "--download-pes",
            "2000",
        ])
        .args(["--update-pes", "500", "--takeover-pes", "300", "--json"])
        .output()
        .expect("rsp runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    for key in [
        "download_100k_ms",
        "takeover_10k_ms",
        "takeover_10k_stop_ms",
        "takeover_unconnected_10k_ms",
    ] {
        assert!(v[key].as_u64().is_some(), "{key}: {v}");
    }
    assert_eq!(v["lost"], 0);
    assert!(v["updates_per_s"].as_f64().expect("rate") > 0.0);
    assert_eq!(
        (v["download_pes"].as_u64(), v["takeover_pes"].as_u64()),
        (Some(2000), Some(300))
    );
}
