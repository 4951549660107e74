//! Helpers shared by the harness's tests: running a scenario compare, and checking one
//! system's summary in a report. (Each test binary uses a part of them.)
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `shale-bench compare --scenario <scenario> --quick --out <out> <extra…>` and returns
/// its `report.json`; fails the test with the tool's stderr when it fails.
pub fn compare_scenario(scenario: &str, extra: &[&str], out: &Path) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_shale-bench"))
        .args(["compare", "--scenario", scenario, "--quick", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("running shale-bench");
    assert!(
        o.status.success(),
        "shale-bench compare --scenario {scenario} failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// `systems.<sys>` of `report`: present, every field of `fields` a finite number >= 0, some
/// throughput, and no failed request (`context` names what to print on failure).
pub fn check_summary<'a>(
    report: &'a Value,
    sys: &str,
    fields: &[&str],
    context: &str,
) -> &'a Value {
    let s = &report["systems"][sys];
    assert!(s.is_object(), "systems.{sys} missing: {report:#}");
    for f in [
        "throughput_ops",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
    ]
    .iter()
    .chain(fields)
    {
        let v = s[*f].as_f64();
        assert!(
            v.is_some_and(|v| v.is_finite() && v >= 0.0),
            "systems.{sys}.{f} = {:?}",
            s[*f]
        );
    }
    assert!(
        s["throughput_ops"].as_f64().is_some_and(|t| t > 0.0),
        "{sys}: no throughput: {s:#}"
    );
    assert_eq!(
        s["errors"].as_u64(),
        Some(0),
        "{sys}: errors in {:#}",
        s[context]
    );
    s
}
