//! Smoke test of the harness (correctness of the plumbing only; timing is never asserted):
//! `shale-bench compare --quick` against real etcd 3.5.1 and the release Shale binary.
//!
//! Needs both binaries; fails with install/build instructions when one is missing:
//! `bash scripts/install-test-deps.sh && cargo build --release -p shale-server`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shale-bench"))
}

fn check_system(run: &Value, sys: &str, total: u64) {
    let s = common::check_summary(run, sys, &["elapsed_s"], "error_kinds");
    assert_eq!(s["ok"].as_u64(), Some(total), "{sys}: ok count");
    assert!(s["version"].is_string());
}

fn check_run(run: &Value, workload: &str, total: u64) {
    assert_eq!(run["workload"].as_str(), Some(workload), "{run:#}");
    check_system(run, "etcd", total);
    check_system(run, "shale", total);
    let ratio = run["ratio"].as_f64().expect("ratio");
    assert!(ratio.is_finite() && ratio > 0.0, "ratio {ratio}");
    assert!(run["params"]["command"].as_str().is_some());
}

fn read_report(dir: &Path) -> (Value, String) {
    let json = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md written");
    (
        serde_json::from_str(&json).expect("report.json is JSON"),
        md,
    )
}

/// Fail (not skip) with install instructions when a server binary is missing.
fn require_binaries() {
    if let Err(e) = shale_bench::compare::resolve_etcd(None) {
        panic!("this test needs real etcd 3.5.1: {e:#}");
    }
    if let Err(e) = shale_bench::compare::resolve_shale(None) {
        panic!("this test needs the Shale release binary: {e:#}");
    }
}

#[test]
fn compare_quick_both() {
    require_binaries();
    let out = tempfile::tempdir().unwrap();
    let total = 200;
    let status = bench()
        .args([
            "compare",
            "--workload",
            "both",
            "--quick",
            "--total",
            "200",
            "--out",
        ])
        .arg(out.path())
        .status()
        .expect("running shale-bench");
    assert!(status.success(), "shale-bench compare failed: {status}");
    let (json, md) = read_report(out.path());
    assert_eq!(json["workload"].as_str(), Some("both"));
    assert_eq!(json["quick"].as_bool(), Some(true));
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    check_run(&runs[0], "put", total);
    check_run(&runs[1], "range-linearizable", total);
    assert!(
        md.contains("## put") && md.contains("## range-linearizable"),
        "{md}"
    );
    assert!(md.contains("| etcd |") && md.contains("| shale |"), "{md}");
}

#[test]
fn compare_single_workload_shape() {
    require_binaries();
    let out = tempfile::tempdir().unwrap();
    let status = bench()
        .args([
            "compare",
            "--workload",
            "put",
            "--quick",
            "--total",
            "100",
            "--clients",
            "4",
            "--conns",
            "2",
            "--out",
        ])
        .arg(out.path())
        .status()
        .expect("running shale-bench");
    assert!(status.success(), "shale-bench compare failed: {status}");
    let (json, _) = read_report(out.path());
    check_run(&json, "put", 100);
    assert_eq!(json["params"]["clients"].as_u64(), Some(4));
}

#[test]
fn missing_binary_is_a_clear_error() {
    let out = tempfile::tempdir().unwrap();
    let o = bench()
        .args([
            "compare",
            "--quick",
            "--etcd-bin",
            "/nonexistent/etcd",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("running shale-bench");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/etcd") && err.contains("install-test-deps.sh"),
        "{err}"
    );
}

#[test]
fn dead_server_is_a_clear_error() {
    require_binaries();
    // `false` exits at once: the harness must report that the server died, not hang
    let out = tempfile::tempdir().unwrap();
    let o = bench()
        .args([
            "compare",
            "--quick",
            "--workload",
            "put",
            "--shale-bin",
            "/bin/false",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("running shale-bench");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shale") && err.contains("exited"), "{err}");
}
