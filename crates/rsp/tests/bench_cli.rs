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
