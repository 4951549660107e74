//! Tests of opening from hint files: the index comes out identical to a full replay, and a
//! damaged, stale or foreign hint is refused (the file replayed) without changing what is read.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::hint::hint_name;
use super::identity::ID_FILE;
use super::*;
use crate::engine::KvPair;

fn small() -> LogEngineConfig {
    LogEngineConfig {
        file_bytes: 4096,
        gc_garbage_ratio: 0.5,
        gc_min_garbage_bytes: 1,
        gc_chunk_bytes: 512,
    }
}

/// No automatic GC: the files (and so the hints) stay as written.
fn no_gc() -> LogEngineConfig {
    LogEngineConfig {
        gc_min_garbage_bytes: u64::MAX,
        ..small()
    }
}

fn all(e: &LogEngine) -> Vec<KvPair> {
    e.scan(Bound::Unbounded, Bound::Unbounded)
        .map(|r| r.expect("scan"))
        .collect()
}

/// Everything the index holds: key locations, and each file's size and live bytes.
type IndexView = (BTreeMap<Vec<u8>, Loc>, Vec<(u32, u64, u64)>);

fn view(e: &LogEngine) -> IndexView {
    let index = e.shared.index.read();
    let files = index
        .files
        .iter()
        .map(|(&s, f)| (s, f.size, f.live))
        .collect();
    (index.keys.clone(), files)
}

/// Puts, overwrites and deletes over a few files; value bytes derived from `salt`.
fn fill(dir: &Path, salt: u8) {
    let e = LogEngine::open(dir, no_gc()).expect("open");
    for i in 0..120u32 {
        let mut b = WriteBatch::new();
        b.put((i % 50).to_be_bytes().to_vec(), vec![salt ^ i as u8; 90]);
        if i % 7 == 0 {
            b.delete(((i + 3) % 50).to_be_bytes().to_vec());
        }
        e.write(b).expect("write");
    }
    assert!(e.file_count() >= 4, "files rolled");
}

fn remove_hints(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("ls") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|x| x == "hint") {
            std::fs::remove_file(p).expect("rm hint");
        }
    }
}

/// Copies the data files and the id of `from` into a new directory, without hints.
fn copy_without_hints(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("ls") {
        let p = entry.expect("entry").path();
        let name = p.file_name().expect("name").to_owned();
        if p.extension().is_some_and(|x| x == "dat") || name == ID_FILE {
            std::fs::copy(&p, to.path().join(name)).expect("copy");
        }
    }
    to
}

/// What an open with no hints at all reads from `dir` (scan and index).
fn reference(dir: &Path) -> (Vec<KvPair>, IndexView) {
    let copy = copy_without_hints(dir);
    let e = LogEngine::open(copy.path(), no_gc()).expect("open without hints");
    assert_eq!(e.open_stats().files_from_hints, 0);
    (all(&e), view(&e))
}

#[test]
fn hints_give_the_index_of_a_full_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = LogEngine::open(dir.path(), small()).expect("open");
        for round in 0..30u32 {
            for k in 0..12u32 {
                let mut b = WriteBatch::new();
                b.put(k.to_be_bytes().to_vec(), vec![round as u8; 40 + k as usize]);
                if (round + k) % 5 == 0 {
                    b.delete((k + 1).to_be_bytes().to_vec());
                }
                e.write(b).expect("write");
            }
        }
        while e.shared.gc_running.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
    let want = reference(dir.path());
    let e = LogEngine::open(dir.path(), no_gc()).expect("open");
    let stats = e.open_stats();
    // GC may have folded the sealed files into one or more outputs (how many depends on when
    // it ran): every sealed file, GC output or not, opens from its hint.
    assert!(stats.files_from_hints >= 1, "{stats:?}");
    assert_eq!(
        stats.files_from_hints + 1,
        e.file_count(),
        "every sealed file from its hint: {stats:?}"
    );
    assert_eq!(stats.files_replayed, 1, "only the active file: {stats:?}");
    assert_eq!(stats.hints_rejected, 0);
    assert_eq!((all(&e), view(&e)), want);
    // The live-byte accounting drives GC: it is the same either way, so GC decides alike.
    assert_eq!(e.shared.index.read().total(), {
        let files = &want.1 .1;
        files
            .iter()
            .fold((0, 0), |(s, l), &(_, size, live)| (s + size, l + live))
    });
}

#[test]
fn a_directory_without_hints_opens_by_replay_and_gets_hints() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 1);
    // As written before hints existed: no hints, no id.
    remove_hints(dir.path());
    std::fs::remove_file(dir.path().join(ID_FILE)).expect("rm id");
    let want = reference(dir.path());
    let e = LogEngine::open(dir.path(), no_gc()).expect("open");
    let first = e.open_stats();
    assert_eq!(first.files_from_hints, 0);
    assert_eq!(first.files_replayed, e.file_count());
    assert_eq!(first.hints_written, e.file_count() - 1);
    assert_eq!(all(&e), want.0);
    drop(e);
    let e = LogEngine::open(dir.path(), no_gc()).expect("reopen");
    let second = e.open_stats();
    assert_eq!(second.files_from_hints, e.file_count() - 1, "{second:?}");
    assert_eq!(second.hints_rejected, 0);
    assert_eq!((all(&e), view(&e)), want);
}

/// Opens `dir` after `damage` was done to it: exactly one hint is refused, and what is read
/// (scan and index) equals an open without hints. The refused hint is rewritten.
fn refused_once(dir: &Path, damage: impl FnOnce(&Path)) {
    damage(dir);
    let want = reference(dir);
    let e = LogEngine::open(dir, no_gc()).expect("open");
    let stats = e.open_stats();
    assert_eq!(stats.hints_rejected, 1, "{stats:?}");
    assert_eq!(stats.hints_written, 1, "{stats:?}");
    assert_eq!((all(&e), view(&e)), want);
    drop(e);
    let e = LogEngine::open(dir, no_gc()).expect("reopen");
    assert_eq!(e.open_stats().hints_rejected, 0, "the hint was rewritten");
    assert_eq!((all(&e), view(&e)), want);
}

fn damaged(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 1);
    refused_once(dir.path(), damage);
}

fn hint2(dir: &Path) -> std::path::PathBuf {
    dir.join(hint_name(2))
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[b[0] ^ 0x10], at).expect("write");
}

#[test]
fn a_truncated_hint_is_refused() {
    damaged(|d| {
        let len = std::fs::metadata(hint2(d)).expect("stat").len();
        let f = OpenOptions::new().write(true).open(hint2(d)).expect("open");
        f.set_len(len - 3).expect("truncate");
    });
    damaged(|d| {
        let f = OpenOptions::new().write(true).open(hint2(d)).expect("open");
        f.set_len(10).expect("truncate into the header");
    });
    damaged(|d| std::fs::write(hint2(d), b"").expect("empty"));
}

#[test]
fn a_bit_flip_in_a_hint_is_refused() {
    // The magic, the engine id, the data size, the header checksum.
    for at in [0, 10, 30, 62] {
        damaged(|d| flip(&hint2(d), at));
    }
    // The body: first and last entry.
    damaged(|d| flip(&hint2(d), hint::HEADER_LEN as u64 + 6));
    damaged(|d| {
        let len = std::fs::metadata(hint2(d)).expect("stat").len();
        flip(&hint2(d), len - 1);
    });
}

#[test]
fn a_hint_from_another_engine_directory_is_refused() {
    let other = tempfile::tempdir().expect("tempdir");
    fill(other.path(), 1);
    // Same writes, so the same file sizes and frames: only the engine id tells them apart.
    damaged(|d| {
        std::fs::copy(hint2(other.path()), hint2(d))
            .map(drop)
            .expect("copy")
    });
}

#[test]
fn a_hint_of_another_data_file_is_refused() {
    // Another file of the same directory.
    damaged(|d| {
        std::fs::copy(d.join(hint_name(3)), hint2(d))
            .map(drop)
            .expect("copy")
    });
    // The same file number and size in a directory with the same id, other values: only the
    // last frame's checksum tells them apart.
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 1);
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::copy(dir.path().join(ID_FILE), other.path().join(ID_FILE)).expect("copy id");
    fill(other.path(), 2);
    let size = |d: &Path| std::fs::metadata(d.join(file_name(2))).expect("stat").len();
    assert_eq!(size(dir.path()), size(other.path()));
    refused_once(dir.path(), |d| {
        std::fs::copy(hint2(other.path()), hint2(d))
            .map(drop)
            .expect("copy")
    });
}

#[test]
fn a_hint_whose_data_file_grew_is_refused() {
    damaged(|d| {
        // Append a copy of the file's first frame: valid data the hint does not describe.
        let path = d.join(file_name(2));
        let data = std::fs::read(&path).expect("read");
        let len = 12 + u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&data[..len], data.len() as u64)
            .expect("extend");
    });
}

#[test]
fn stale_files_are_cleaned_up_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 1);
    let d = dir.path();
    std::fs::write(d.join("00000002.hint.tmp"), b"half").expect("tmp");
    std::fs::write(d.join(hint_name(99)), b"orphan").expect("orphan");
    let last: u32 = std::fs::read_dir(d)
        .expect("ls")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".dat")?.parse().ok())
        .max()
        .expect("a data file");
    // A hint beside the active file (a roll that stopped after writing it).
    std::fs::copy(hint2(d), d.join(hint_name(last))).expect("copy");
    let want = reference(d);
    let e = LogEngine::open(d, no_gc()).expect("open");
    assert_eq!(e.open_stats().hints_rejected, 0);
    assert_eq!((all(&e), view(&e)), want);
    assert!(!d.join("00000002.hint.tmp").exists());
    assert!(!d.join(hint_name(99)).exists());
    assert!(!d.join(hint_name(last)).exists());
}

#[test]
fn gc_and_clear_delete_hints_with_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = LogEngine::open(dir.path(), small()).expect("open");
    for round in 0..40u32 {
        for k in 0..10u32 {
            let mut b = WriteBatch::new();
            b.put(k.to_be_bytes().to_vec(), vec![round as u8; 100]);
            e.write(b).expect("write");
        }
    }
    while e.shared.gc_running.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    while e.collect_garbage().expect("gc") {}
    let hints = |d: &Path| -> Vec<u32> {
        let mut v: Vec<u32> = std::fs::read_dir(d)
            .expect("ls")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".hint")?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    };
    let sealed: Vec<u32> = {
        let index = e.shared.index.read();
        let active = e.shared.writer.lock().seq;
        index
            .files
            .keys()
            .copied()
            .filter(|&s| s != active)
            .collect()
    };
    assert_eq!(
        hints(dir.path()),
        sealed,
        "one hint per sealed file, none for collected ones"
    );
    e.clear().expect("clear");
    assert!(hints(dir.path()).is_empty());
}

/// A small random model run with reopens and GC: reads match a map, and reopens use hints.
#[test]
fn random_writes_with_reopens_match_a_model_and_use_hints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut from_hints = 0;
    let mut e = LogEngine::open(dir.path(), small()).expect("open");
    for step in 0..3000u32 {
        let mut b = WriteBatch::new();
        for _ in 0..1 + next(4) {
            let k = format!("key-{:03}", next(150)).into_bytes();
            if next(5) == 0 {
                model.remove(&k);
                b.delete(k);
            } else {
                let v = vec![step as u8; next(300) as usize];
                model.insert(k.clone(), v.clone());
                b.put(k, v);
            }
        }
        e.write(b).expect("write");
        if step % 400 == 399 {
            drop(e);
            e = LogEngine::open(dir.path(), small()).expect("reopen");
            from_hints += e.open_stats().files_from_hints;
            assert_eq!(e.open_stats().hints_rejected, 0);
            let want: Vec<KvPair> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(all(&e), want, "after reopen at step {step}");
        }
    }
    assert!(from_hints > 0, "no file was opened from its hint");
    while e.shared.gc_running.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    drop(e);
    let want = reference(dir.path());
    let e = LogEngine::open(dir.path(), small()).expect("reopen");
    assert_eq!((all(&e), view(&e)), want);
}
