//! Open time of a large log-engine directory, from hint files and by full replay. Ignored: run
//! by hand, with an optimised build:
//!
//! ```text
//! SHALE_OPEN_KEYS=300000 cargo test -p shale-storage --release --test open_time -- --ignored --nocapture
//! ```
//!
//! It writes `SHALE_OPEN_KEYS` keys of about 40 bytes with 1 KiB values (default 300,000: about
//! 320 MB of data files) into a temporary directory, then times opens: with hints, without
//! them (the replay of every data file as before hints existed; then again, writing the hints
//! once), and with hints again. "Cold" opens first drop the directory's files from the page
//! cache (`dd iflag=nocache`). `SHALE_OPEN_DIR=<dir>` keeps the directory and reuses it on
//! the next run (to profile the opens alone).

use std::path::Path;
use std::time::Instant;

use shale_storage::{Engine, LogEngine, LogEngineConfig, WriteBatch};

fn drop_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("ls") {
        let p = entry.expect("entry").path();
        let _ = std::process::Command::new("dd")
            .arg(format!("if={}", p.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status();
    }
}

fn timed_open(dir: &Path, what: &str, cold: bool) -> LogEngine {
    if cold {
        drop_cache(dir);
    }
    let t = Instant::now();
    let e = LogEngine::open(dir, LogEngineConfig::default()).expect("open");
    let took = t.elapsed();
    eprintln!(
        "{what:<40} {:>8.3} s  {:?}",
        took.as_secs_f64(),
        e.open_stats()
    );
    e
}

fn remove_hints(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("ls") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|x| x == "hint") {
            std::fs::remove_file(p).expect("rm");
        }
    }
}

fn bytes_of(dir: &Path, ext: &str) -> u64 {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

#[test]
#[ignore = "writes ~320 MB; run by hand with --release"]
fn open_time_with_and_without_hints() {
    let keys: u32 = std::env::var("SHALE_OPEN_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    // SHALE_OPEN_DIR keeps the directory (and reuses it when it already holds data).
    let tmp = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("SHALE_OPEN_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(tmp.path());
    if !dir.join("00000001.dat").exists() {
        let e = LogEngine::open(dir, LogEngineConfig::default()).expect("open");
        let mut value = vec![0u8; 1024];
        for chunk in 0..keys.div_ceil(64) {
            let mut b = WriteBatch::new();
            for i in chunk * 64..((chunk + 1) * 64).min(keys) {
                value[..4].copy_from_slice(&i.to_be_bytes());
                b.put(
                    format!("/registry/pods/ns-{:04}/pod-{i:010}", i % 1000).into_bytes(),
                    value.clone(),
                );
            }
            e.write(b).expect("write");
        }
        e.flush().expect("flush");
        eprintln!(
            "{keys} keys: {} data files, {} MB of data, {} MB of hints",
            e.file_count(),
            bytes_of(dir, "dat") >> 20,
            bytes_of(dir, "hint") >> 20
        );
    }
    let files: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some(n.strip_suffix(".dat")?.to_string()))
        .collect();
    for cold in [false, true] {
        let tag = if cold { "cold" } else { "warm" };
        drop(timed_open(dir, &format!("open from hints ({tag})"), cold));
        // Replay only, as before hints existed: a directory in the way of each hint's
        // temporary file makes writing it fail (logged, ignored).
        remove_hints(dir);
        for f in &files {
            std::fs::create_dir(dir.join(format!("{f}.hint.tmp"))).expect("mkdir");
        }
        drop(timed_open(
            dir,
            &format!("open by replay only ({tag})"),
            cold,
        ));
        for f in &files {
            std::fs::remove_dir(dir.join(format!("{f}.hint.tmp"))).expect("rmdir");
        }
        drop(timed_open(
            dir,
            &format!("open by replay + write hints ({tag})"),
            cold,
        ));
    }
    let e = timed_open(dir, "open from hints (warm)", false);
    let n = e
        .scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .count();
    assert_eq!(n, keys as usize);
}
