//! S7 (scale) end to end at a small N: `shale-bench compare --scenario s7 --quick` (2,000 pods
//! of 1 KiB) against real etcd 3.5.1 and the release Shale binary. Checks that every figure of
//! the S7 table is present and sane for both systems: all objects loaded, a load rate, RSS and
//! disk after the load, the three LISTs returning every object with the unpaged response
//! larger than the keys-only one, three timed kill -9 restarts (listening no later than ready),
//! and the table and restart plot in the report. A second, smaller run checks that the
//! unpaged LIST is skipped with its reason over `--max-list-mib`.
//!
//! Skipped, with a message, when etcd is not installed (`bash scripts/install-test-deps.sh`);
//! fails when the Shale release binary is missing (`cargo build --release -p shale-server`).

use std::sync::Mutex;

use serde_json::Value;

mod common;

static SERIAL: Mutex<()> = Mutex::new(());

/// `None` (and a message) when etcd is missing.
fn binaries() -> Option<()> {
    if let Err(e) = shale_bench::compare::resolve_etcd(None) {
        eprintln!("SKIPPED: the S7 test needs real etcd 3.5.1: {e:#}");
        return None;
    }
    if let Err(e) = shale_bench::compare::resolve_shale(None) {
        panic!("the S7 test needs the Shale release binary: {e:#}");
    }
    Some(())
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn phase<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no phase {name:?}"))
}

fn check_system(r: &Value, sys: &str, objects: u64, restarts: usize) {
    let s = &r["systems"][sys];
    assert!(s.get("error").is_none(), "{sys} failed: {}", s["error"]);
    assert!(
        s["restart_error"].is_null(),
        "{sys}: {}",
        s["restart_error"]
    );
    let x = &s["extra"];
    assert_eq!(
        num(&x["s7_loaded_objects"], "loaded") as u64,
        objects,
        "{sys}"
    );
    assert!(num(&x["s7_load_puts_per_s"], "load rate") > 0.0, "{sys}");
    let rss = num(&x["s7_rss_after_load_mib"], "rss");
    assert!(rss > 1.0 && rss < 8192.0, "{sys}: RSS {rss} MiB");
    let live = num(&x["s7_live_kv_mib"], "live");
    let disk = num(&x["s7_disk_after_load_mib"], "disk");
    // the data dir holds at least the values written, and not absurdly more
    assert!(
        disk >= live * 0.9 && disk < live * 200.0 + 256.0,
        "{sys}: disk {disk} MiB for {live} MiB"
    );
    let load = &s["phases"][0];
    assert_eq!(load["ok"].as_u64(), Some(objects), "{sys}: {load:#}");
    assert_eq!(load["errors"].as_u64(), Some(0), "{sys}");
    assert!(num(&load["server_cpu_ms_per_1k_ops"], "cpu") > 0.0, "{sys}");
    let mut mib = Vec::new();
    for shape in ["count-only", "keys-only", "unpaged"] {
        let p = phase(s, &format!("list {shape}"));
        assert!(p["unsupported"].is_null(), "{sys}: {p:#}");
        assert_eq!(p["ok"].as_u64(), Some(3), "{sys}: {p:#}");
        assert_eq!(p["errors"].as_u64(), Some(0), "{sys}: {p:#}");
        assert!(num(&p["p50_ms"], "p50") > 0.0, "{sys}: {p:#}");
        assert_eq!(
            num(&p["extra"]["objects_per_list"], "objects") as u64,
            objects,
            "{sys}: {p:#}"
        );
        mib.push(num(&p["extra"]["response_mib"], "mib"));
    }
    // count-only < keys-only < unpaged, and unpaged carries every value
    assert!(mib[0] < mib[1] && mib[1] < mib[2], "{sys}: {mib:?}");
    assert!(
        mib[2] * 1048576.0 >= objects as f64 * 1024.0,
        "{sys}: {mib:?}"
    );
    let rs = s["restarts"].as_array().expect("restarts");
    assert_eq!(rs.len(), restarts, "{sys}: {rs:?}");
    for r in rs {
        let (l, ready) = (num(&r["listening_s"], "l"), num(&r["ready_s"], "ready"));
        assert!(l > 0.0 && l <= ready && ready < 300.0, "{sys}: {r}");
        assert!(num(&r["rss_at_ready_mib"], "rss") > 1.0, "{sys}: {r}");
    }
}

#[test]
fn s7_scale_small() {
    let Some(()) = binaries() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let r = common::compare_scenario("s7", &[], out.path());
    assert_eq!(r["scenario"].as_str(), Some("s7"));
    assert_eq!(r["params"]["objects"].as_u64(), Some(2000));
    for sys in ["etcd", "shale"] {
        check_system(&r, sys, 2000, 3);
    }
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("## S7: scale"), "{md}");
    for row in [
        "| load rate, puts/s |",
        "| LIST unpaged: median ms |",
        "| restart 3: kill -9 to linearizable read, s |",
    ] {
        assert!(md.contains(row), "{row} missing:\n{md}");
    }
    let svg = std::fs::read_to_string(out.path().join("restart.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("shale ready"),
        "{svg}"
    );
}

#[test]
fn s7_skips_an_unpaged_list_over_the_limit() {
    let Some(()) = binaries() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let r = common::compare_scenario(
        "s7",
        &[
            "--objects",
            "300",
            "--value-size",
            "100",
            "--restarts",
            "1",
            "--list-reps",
            "1",
            "--max-list-mib",
            "0.01",
        ],
        out.path(),
    );
    for sys in ["etcd", "shale"] {
        let s = &r["systems"][sys];
        assert!(s.get("error").is_none(), "{sys} failed: {}", s["error"]);
        let p = phase(s, "list unpaged");
        let why = p["unsupported"].as_str().expect("skipped");
        assert!(why.contains("--max-list-mib"), "{why}");
        // 300 x (100 B value + 2 B header) + the keys-only response
        let est = num(&p["extra"]["estimated_response_mib"], "est") * 1048576.0;
        assert!(est > 300.0 * 102.0 && est < 300.0 * 200.0, "{est}");
        assert_eq!(phase(s, "list keys-only")["ok"].as_u64(), Some(1));
        assert_eq!(s["restarts"].as_array().map(Vec::len), Some(1));
    }
}
