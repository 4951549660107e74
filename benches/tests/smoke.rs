//! Smoke test of the harness (correctness of the plumbing only; timing is never asserted):
//! `shale-bench compare --quick` against real etcd 3.5.1 and the release Shale binary.
//!
//! Needs both binaries; fails with install/build instructions when one is missing:
//! `bash scripts/install-test-deps.sh && cargo build --release -p shale-server`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shale-bench"))
}

/// Runs `shale-bench ARGS OUT` (`args` ends with `--out`), its output captured.
fn bench_output(args: &[&str], out: &Path) -> Output {
    bench()
        .args(args)
        .arg(out)
        .output()
        .expect("running shale-bench")
}

/// [`bench_output`] that must succeed (else fails with shale-bench's stderr).
fn bench_ok(args: &[&str], out: &Path) {
    let o = bench_output(args, out);
    assert!(
        o.status.success(),
        "shale-bench {} failed: {}\n{}",
        args.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
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

/// `--members 3`: both systems as 3-member clusters, the load spread over the members and
/// the server CPU summed over them (a single member's CPU would be about a third of it).
#[test]
fn compare_three_members() {
    require_binaries();
    let out = tempfile::tempdir().unwrap();
    bench_ok(
        &[
            "compare",
            "--workload",
            "put",
            "--quick",
            "--members",
            "3",
            "--total",
            "300",
            "--clients",
            "6",
            "--conns",
            "3",
            "--key-space",
            "50",
            "--out",
        ],
        out.path(),
    );
    let (json, md) = read_report(out.path());
    check_run(&json, "put", 300);
    assert_eq!(json["params"]["members"].as_u64(), Some(3));
    assert!(md.contains("3 members per system"), "{md}");
    for sys in ["etcd", "shale"] {
        let cpu = json["systems"][sys]["server_cpu_s"].as_f64();
        assert!(cpu.is_some_and(|c| c > 0.0), "{sys}: server CPU {cpu:?}");
    }
    let o = bench_output(
        &["compare", "--quick", "--members", "2", "--out"],
        out.path(),
    );
    assert!(!o.status.success(), "--members 2 was accepted");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--members must be 1 or 3"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn missing_binary_is_a_clear_error() {
    let out = tempfile::tempdir().unwrap();
    let o = bench_output(
        &[
            "compare",
            "--quick",
            "--etcd-bin",
            "/nonexistent/etcd",
            "--out",
        ],
        out.path(),
    );
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
    let o = bench_output(
        &[
            "compare",
            "--quick",
            "--workload",
            "put",
            "--shale-bin",
            "/bin/false",
            "--out",
        ],
        out.path(),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shale") && err.contains("exited"), "{err}");
}

/// `compare --tls`: both systems with client and peer mTLS, the load over TLS (put and
/// linearizable range on one member each).
#[test]
fn compare_quick_tls() {
    require_binaries();
    let out = tempfile::tempdir().unwrap();
    bench_ok(
        &[
            "compare",
            "--workload",
            "both",
            "--quick",
            "--tls",
            "--total",
            "100",
            "--out",
        ],
        out.path(),
    );
    let (json, md) = read_report(out.path());
    assert_eq!(json["tls"].as_bool(), Some(true));
    let runs = json["runs"].as_array().expect("runs");
    check_run(&runs[0], "put", 100);
    check_run(&runs[1], "range-linearizable", 100);
    assert_eq!(runs[0]["params"]["tls"].as_bool(), Some(true));
    assert!(md.contains("mTLS"), "{md}");
}

/// `compare --scenario s6 --members 3 --tls`: 3-member clusters of both systems with client
/// and peer mTLS (writes and linearizable reads cross the peer TLS connections).
#[test]
fn compare_s6_three_members_tls() {
    require_binaries();
    let out = tempfile::tempdir().unwrap();
    bench_ok(
        &[
            "compare",
            "--scenario",
            "s6",
            "--members",
            "3",
            "--quick",
            "--tls",
            "--total",
            "100",
            "--out",
        ],
        out.path(),
    );
    let (json, md) = read_report(out.path());
    assert_eq!(json["members"].as_u64(), Some(3));
    assert_eq!(json["params"]["tls"].as_bool(), Some(true));
    for sys in ["etcd", "shale"] {
        let s = common::check_summary(&json, sys, &[], "phases");
        assert_eq!(s["members"].as_u64(), Some(3), "{sys}");
        let version = s["version"].as_str().unwrap_or_default();
        assert!(
            version.contains("etcdserver"),
            "{sys}: /version over TLS: {version}"
        );
    }
    assert!(md.contains("TLS"), "{md}");
}

/// `put` and `range` take etcdctl's TLS flags for an `https://` member with
/// `--client-cert-auth`; without a client certificate, or without `--cacert`, they fail
/// with an error, never a plaintext fallback.
#[test]
fn put_and_range_over_tls() {
    let shale = shale_bench::compare::resolve_shale(None)
        .unwrap_or_else(|e| panic!("this test needs the Shale release binary: {e:#}"));
    let certs = shale_bench::certs::TestCerts::make().expect("openssl certificates");
    let flags = certs.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server =
        shale_testkit::process::EtcdProcess::start_tls(&shale, certs.testkit_opts(), &flags)
            .expect("a TLS member");
    let ep = server.endpoint();
    assert!(ep.starts_with("https://"), "{ep}");
    let files = certs.client_files();
    let tls_args = |with_cert: bool| {
        let mut a = vec![format!("--cacert={}", files.ca.as_ref().unwrap().display())];
        if with_cert {
            a.push(format!("--cert={}", files.cert.as_ref().unwrap().display()));
            a.push(format!("--key={}", files.key.as_ref().unwrap().display()));
        }
        a
    };
    let run = |cmd: &str, endpoint: &str, tls: Vec<String>| {
        bench()
            .args([
                cmd,
                "--endpoints",
                endpoint,
                "--total",
                "50",
                "--clients",
                "4",
            ])
            .args(["--conns", "2", "--json"])
            .args(tls)
            .output()
            .expect("running shale-bench")
    };
    for cmd in ["put", "range"] {
        let o = run(cmd, &ep, tls_args(true));
        assert!(
            o.status.success(),
            "{cmd} over TLS failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: Value = serde_json::from_slice(&o.stdout).expect("JSON report");
        assert_eq!(r["ok"].as_u64(), Some(50), "{cmd}: {r:#}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{cmd}: {r:#}");
    }
    // an endpoint without a scheme is dialed over TLS when TLS flags are given
    let bare = ep.trim_start_matches("https://").to_string();
    assert!(run("put", &bare, tls_args(true)).status.success());
    // the member checks client certificates: no --cert, no connection (or every request fails)
    let o = run("put", &ep, tls_args(false));
    let failed_all = serde_json::from_slice::<Value>(&o.stdout)
        .map(|r| r["ok"].as_u64() == Some(0))
        .unwrap_or(true);
    assert!(
        !o.status.success() || failed_all,
        "put without a client certificate succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run("put", &ep, vec![]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--cacert"), "{err}");
}
