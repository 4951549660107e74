//! Crashes around the log engine's hint files, driven by its named fail points (feature
//! `failpoints`).
//!
//! Each test makes one step of writing (or deleting) hints fail, which leaves the directory as
//! a crash at that step would, then "restarts" (drops and reopens the engine) and checks that
//! every acknowledged write is read back, and that the next open uses hints again. Fail points
//! are process-global: `FailScenario` serializes the tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use fail::FailScenario;
use shale_storage::{Engine, KvPair, LogEngine, LogEngineConfig, WriteBatch};

fn small() -> LogEngineConfig {
    LogEngineConfig {
        file_bytes: 4096,
        gc_garbage_ratio: 0.5,
        gc_min_garbage_bytes: u64::MAX,
        gc_chunk_bytes: 512,
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Overwrites 40 keys `rounds` times (plus a delete now and then), recording what was
/// acknowledged in `model`. Returns the number of refused writes.
fn load(e: &LogEngine, model: &mut Model, rounds: u32) -> usize {
    let mut refused = 0;
    for r in 0..rounds {
        for k in 0..40u32 {
            let mut b = WriteBatch::new();
            let (key, value) = (k.to_be_bytes().to_vec(), vec![(r + k) as u8; 80]);
            b.put(key.clone(), value.clone());
            if (r + k) % 9 == 0 {
                b.delete((k + 1).to_be_bytes().to_vec());
            }
            if e.write(b).is_ok() {
                model.insert(key, value);
                if (r + k) % 9 == 0 {
                    model.remove(&(k + 1).to_be_bytes().to_vec());
                }
            } else {
                refused += 1;
            }
        }
    }
    refused
}

fn all(e: &LogEngine) -> Vec<KvPair> {
    e.scan(Bound::Unbounded, Bound::Unbounded)
        .map(|r| r.expect("scan"))
        .collect()
}

fn as_pairs(m: &Model) -> Vec<KvPair> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn names(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .count()
}

/// Writes through rolls with `point` failing every hint write, "crashes", and checks the
/// reopened engine. Returns the stats of the first reopen.
fn crash_while_writing_hints(point: &str) -> shale_storage::OpenStats {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::new();
    let e = LogEngine::open(dir.path(), small()).expect("open");
    fail::cfg(point, "return").expect("cfg");
    assert_eq!(
        load(&e, &mut model, 10),
        0,
        "a hint failure refuses no write"
    );
    assert!(e.file_count() > 3, "files rolled");
    fail::remove(point);
    drop(e);
    match point {
        "log-hint-before-dir-sync" => assert!(names(dir.path(), ".hint") > 0),
        _ => assert!(names(dir.path(), ".hint.tmp") > 0, "{point} did not fire"),
    }
    let e = LogEngine::open(dir.path(), small()).expect("reopen");
    let stats = e.open_stats();
    assert_eq!(all(&e), as_pairs(&model), "{point}");
    assert_eq!(stats.hints_rejected, 0, "{point}: {stats:?}");
    assert_eq!(names(dir.path(), ".tmp"), 0, "temporary files left");
    // Writable, and the next open reads every sealed file from its hint.
    assert_eq!(load(&e, &mut model, 2), 0);
    let files = e.file_count();
    drop(e);
    let e = LogEngine::open(dir.path(), small()).expect("reopen");
    assert_eq!(e.open_stats().files_from_hints, files - 1, "{point}");
    assert_eq!(all(&e), as_pairs(&model), "{point}");
    scenario.teardown();
    stats
}

#[test]
fn crash_in_the_middle_of_a_hint() {
    let stats = crash_while_writing_hints("log-hint-write-torn");
    assert_eq!(stats.files_from_hints, 0);
    assert!(stats.hints_written > 0, "{stats:?}");
}

#[test]
fn crash_before_a_hint_is_renamed() {
    let stats = crash_while_writing_hints("log-hint-before-rename");
    assert_eq!(stats.files_from_hints, 0);
    assert!(stats.hints_written > 0, "{stats:?}");
}

#[test]
fn crash_before_the_directory_is_synced() {
    // The rename survived (the process died, the machine did not): the hints are complete.
    let stats = crash_while_writing_hints("log-hint-before-dir-sync");
    assert!(stats.files_from_hints > 0, "{stats:?}");
}

#[test]
fn crash_after_a_hint_before_the_next_file() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::new();
    let e = LogEngine::open(dir.path(), small()).expect("open");
    assert_eq!(load(&e, &mut model, 3), 0);
    // The next roll writes the sealed file's hint, then fails before starting the next file:
    // that write is refused, and the sealed file stays the last one, with a hint beside it.
    fail::cfg("log-roll-after-hint", "1*return").expect("cfg");
    assert_eq!(load(&e, &mut model, 3), 1, "the fail point fired");
    fail::remove("log-roll-after-hint");
    drop(e);
    let e = LogEngine::open(dir.path(), small()).expect("reopen");
    assert_eq!(all(&e), as_pairs(&model));
    assert_eq!(e.open_stats().hints_rejected, 0);
    assert_eq!(load(&e, &mut model, 3), 0);
    let files = e.file_count();
    drop(e);
    let e = LogEngine::open(dir.path(), small()).expect("reopen");
    assert_eq!(all(&e), as_pairs(&model));
    let stats = e.open_stats();
    assert_eq!(stats.files_from_hints, files - 1, "{stats:?}");
    assert_eq!(stats.hints_rejected, 0, "{stats:?}");
    scenario.teardown();
}

#[test]
fn crash_while_gc_deletes_a_file() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::new();
    let cfg = LogEngineConfig {
        gc_min_garbage_bytes: 1,
        ..small()
    };
    let e = LogEngine::open(dir.path(), small()).expect("open");
    assert_eq!(load(&e, &mut model, 10), 0);
    drop(e);
    // GC by hand only: the hint of the collected file is deleted, then the "crash".
    let e = LogEngine::open(dir.path(), cfg.clone()).expect("open");
    fail::cfg("log-gc-after-hint-removed", "1*return").expect("cfg");
    assert!(e.collect_garbage().is_err(), "the fail point fired");
    fail::remove("log-gc-after-hint-removed");
    drop(e);
    // The collected file is still there, without its hint: it is replayed, and its values,
    // all older than their copies, change nothing.
    let e = LogEngine::open(dir.path(), cfg).expect("reopen");
    let stats = e.open_stats();
    assert_eq!(all(&e), as_pairs(&model));
    assert_eq!(stats.files_replayed, 2, "{stats:?}");
    assert_eq!(stats.hints_written, 1, "{stats:?}");
    while e.collect_garbage().expect("gc") {}
    assert_eq!(all(&e), as_pairs(&model));
    scenario.teardown();
}
