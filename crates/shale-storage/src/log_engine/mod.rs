//! [`LogEngine`]: a log-structured state store — batches appended to data files, an in-memory
//! index from key to the value's place on disk.
//!
//! Why: on the put path of a 3-member cluster sled costs about 40% of the members' CPU (it
//! rewrites whole 16-entry nodes for sequential revision keys, see docs/benchmarks.md); with an
//! in-memory engine puts ran 1.4x faster. This engine writes each batch once, as one frame
//! appended to the active data file, and keeps only keys and value locations in memory.
//!
//! # Layout
//!
//! ```text
//! <dir>/00000001.dat, 00000002.dat, ...   data files, written in sequence order
//! <dir>/00000001.hint, ...                hints of sealed data files (see the hint module)
//! <dir>/engine.id                         the directory's random id, carried by every hint
//! frame  = magic u32 BE | payload length u32 BE | crc32 of payload u32 BE | payload
//! payload = op*;  op = 1 | klen u32 BE | vlen u32 BE | key | value      (put)
//!                    | 2 | klen u32 BE | key                            (delete)
//! ```
//!
//! # Invariants
//!
//! * A batch is one frame, applied to the index under one lock: readers see all of it or none.
//!   On open, files are read in sequence order; a torn or corrupt frame at the end of the
//!   *last* file (a crash in the middle of a write) is cut off, and anything damaged earlier is
//!   an error telling the operator to rebuild the member: a file is fsynced before the next one
//!   is started, so only the last file can legitimately be torn.
//! * Restart time does not grow with the data: when a file is sealed (fsynced, never written
//!   again) a hint beside it records its ops without values, and on open a sealed file with a
//!   valid hint is indexed from the hint, in the same order and through the same
//!   `Index::apply` as a replay, so keys, locations and live bytes come out identical. Only
//!   the active file, and a sealed file whose hint is missing or refused (checksums, engine id,
//!   data file number, size and last frame; logged), is replayed, and the refused hint is
//!   rewritten. A file indexed from its hint is not read on open, so damage inside it is found
//!   only when it is replayed. Hints are written atomically and only save time: a failure to
//!   write one is logged, never an error. A directory from before hints opens by replay and
//!   gets its id and hints then (modules `hint`, `identity`, `open`).
//! * Every index change happens with the writer lock held, so a writer that checks the index
//!   and then appends sees no interleaved change.
//! * Garbage collection rewrites the *oldest* file only: its live values (those the index still
//!   points at) are appended to the active file, the active file is fsynced, then the old file
//!   is deleted, its hint first. Deletes in the oldest file can be dropped because no older
//!   file remains that could resurrect the key. The copies land in the active file and so in
//!   its hint when it is sealed. GC runs on its own thread, a chunk per writer-lock hold, so
//!   writes are never stalled behind it.
//!
//! Durability is the same as sled's here: written batches survive a process crash (they are in
//! the page cache), `flush` fsyncs the active file, and the fsynced Raft log covers the rest.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::engine::{chunked_scan, Engine, Error, Result, ScanIter, WriteBatch, WriteOp};

mod frame;
mod gc;
mod hint;
#[cfg(test)]
mod hint_tests;
mod identity;
mod open;

use frame::{encode_op, put_record_len, seal_frame, HEADER};
use hint::HintBuilder;
use identity::EngineId;
pub use open::{files_opened_from_hints, OpenStats};

/// Tuning of a [`LogEngine`].
#[derive(Debug, Clone)]
pub struct LogEngineConfig {
    /// A data file is sealed (fsynced) and a new one started past this size.
    pub file_bytes: u64,
    /// GC starts when the garbage is more than this fraction of all data-file bytes...
    pub gc_garbage_ratio: f64,
    /// ...and there is at least this much of it.
    pub gc_min_garbage_bytes: u64,
    /// Bytes of values copied per writer-lock hold during GC.
    pub gc_chunk_bytes: usize,
}

impl Default for LogEngineConfig {
    fn default() -> Self {
        Self {
            file_bytes: 64 << 20,
            gc_garbage_ratio: 0.5,
            gc_min_garbage_bytes: 64 << 20,
            gc_chunk_bytes: 1 << 20,
        }
    }
}

impl LogEngineConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.file_bytes < 4096 {
            return Err("file_bytes must be at least 4096".into());
        }
        if !(0.0..1.0).contains(&self.gc_garbage_ratio) {
            return Err("gc_garbage_ratio must be in [0, 1)".into());
        }
        if self.gc_chunk_bytes == 0 {
            return Err("gc_chunk_bytes must be positive".into());
        }
        Ok(())
    }
}

/// Where a value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    file: u32,
    offset: u64,
    len: u32,
}

struct DataFile {
    file: Arc<File>,
    size: u64,
    /// Bytes of the put records (header, key and value) the index still points at: what a
    /// collection of this file would copy. Everything else in the file is garbage.
    live: u64,
}

#[derive(Default)]
struct Index {
    keys: BTreeMap<Vec<u8>, Loc>,
    files: BTreeMap<u32, DataFile>,
}

impl Index {
    fn total(&self) -> (u64, u64) {
        self.files
            .values()
            .fold((0, 0), |(s, l), f| (s + f.size, l + f.live))
    }

    /// The put record (with a key of `key_len` bytes) at `old` is no longer live.
    fn unlink(&mut self, key_len: usize, old: Option<Loc>) {
        if let Some(old) = old {
            if let Some(f) = self.files.get_mut(&old.file) {
                f.live = f.live.saturating_sub(put_record_len(key_len, old.len));
            }
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Put(k, loc) => {
                if let Some(f) = self.files.get_mut(&loc.file) {
                    f.live += put_record_len(k.len(), loc.len);
                }
                let key_len = k.len();
                let old = self.keys.insert(k, loc);
                self.unlink(key_len, old);
            }
            Op::Delete(k) => {
                let old = self.keys.remove(&k);
                self.unlink(k.len(), old);
            }
        }
    }
}

enum Op {
    Put(Vec<u8>, Loc),
    Delete(Vec<u8>),
}

/// The active file, owned by whoever holds the writer lock.
struct Active {
    seq: u32,
    file: Arc<File>,
    size: u64,
    /// The entries of its hint, written when it is sealed.
    hint: HintBuilder,
}

struct Shared {
    dir: PathBuf,
    cfg: LogEngineConfig,
    /// The directory's identity, carried by every hint.
    id: EngineId,
    /// How the last open read the data files.
    open_stats: OpenStats,
    index: RwLock<Index>,
    writer: Mutex<Active>,
    /// Set while a background collection thread runs.
    gc_running: AtomicBool,
    /// The engine is being dropped: a running collection stops at its next chunk.
    closing: AtomicBool,
    /// The background collection thread, joined on drop so that no write outlives the engine.
    gc_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// One collection at a time.
    gc_lock: Mutex<()>,
}

/// A log-structured [`Engine`] (see the [module docs](self)).
pub struct LogEngine {
    shared: Arc<Shared>,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Engine(format!("{}: {e}", path.display()))
}

fn file_name(seq: u32) -> String {
    format!("{seq:08}.dat")
}

fn corrupt(path: &Path, at: u64, what: &str) -> Error {
    Error::Engine(format!(
        "{} is damaged at byte {at} ({what}); restore this member from a snapshot or a peer",
        path.display()
    ))
}

impl LogEngine {
    /// Opens (or creates) the engine in `dir`: sealed data files are indexed from their hints
    /// where those are valid, the rest is replayed.
    pub fn open(dir: &Path, cfg: LogEngineConfig) -> Result<Self> {
        cfg.validate().map_err(Error::Engine)?;
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let id = identity::load_or_create(dir)?;
        let mut open_stats = OpenStats::default();
        let (mut index, last) = open::load(dir, &id, &mut open_stats)?;
        let active = match last {
            Some((seq, hint)) => {
                let f = index.files.get(&seq).ok_or_else(|| {
                    Error::Engine(format!("{}: not indexed after replay", file_name(seq)))
                })?;
                Active {
                    seq,
                    file: f.file.clone(),
                    size: f.size,
                    hint,
                }
            }
            None => new_file(dir, 1, &mut index)?,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                cfg,
                id,
                open_stats,
                index: RwLock::new(index),
                writer: Mutex::new(active),
                gc_running: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                gc_thread: Mutex::new(None),
                gc_lock: Mutex::new(()),
            }),
        })
    }

    /// Runs one garbage collection now if there is enough garbage (tests; normally automatic).
    pub fn collect_garbage(&self) -> Result<bool> {
        self.shared.collect()
    }

    /// Number of data files.
    pub fn file_count(&self) -> usize {
        self.shared.index.read().files.len()
    }

    /// How the open that made this engine read its data files (from hints or replayed).
    pub fn open_stats(&self) -> OpenStats {
        self.shared.open_stats
    }
}

fn new_file(dir: &Path, seq: u32, index: &mut Index) -> Result<Active> {
    let path = dir.join(file_name(seq));
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    // The new name must survive a crash before anything in it counts.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    let file = Arc::new(file);
    index.files.insert(
        seq,
        DataFile {
            file: file.clone(),
            size: 0,
            live: 0,
        },
    );
    Ok(Active {
        seq,
        file,
        size: 0,
        hint: HintBuilder::default(),
    })
}

impl Shared {
    /// Appends `batch` as one frame and applies it to the index. Writer lock held by caller.
    fn append(&self, active: &mut Active, batch: Vec<WriteOp>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if active.size >= self.cfg.file_bytes {
            self.roll(active)?;
        }
        // Sized once: growing it by doubling copied each batch several times (about 2.5% of
        // a member's instructions per put).
        let len = HEADER as usize + batch.iter().map(frame::op_len).sum::<usize>();
        let mut buf = Vec::with_capacity(len);
        buf.resize(HEADER as usize, 0);
        let ops: Vec<Op> = batch
            .into_iter()
            .map(|op| encode_op(&mut buf, op, active.seq, active.size))
            .collect();
        let crc = seal_frame(&mut buf)?;
        let path = self.dir.join(file_name(active.seq));
        active
            .file
            .write_all_at(&buf, active.size)
            .map_err(|e| io(&path, e))?;
        active.hint.frame(active.size, crc);
        for op in &ops {
            active.hint.record(op);
        }
        active.size += buf.len() as u64;
        let mut index = self.index.write();
        if let Some(f) = index.files.get_mut(&active.seq) {
            f.size = active.size;
        }
        for op in ops {
            index.apply(op);
        }
        Ok(())
    }

    /// Seals the active file (fsync, then its hint) and starts the next one.
    fn roll(&self, active: &mut Active) -> Result<()> {
        let path = self.dir.join(file_name(active.seq));
        active.file.sync_data().map_err(|e| io(&path, e))?;
        // A hint only saves time at the next open: without one the file is replayed.
        if let Err(e) = hint::write(&self.dir, &self.id, active.seq, active.size, &active.hint) {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "cannot write the hint of a sealed state data file; it will be replayed on open"
            );
        }
        fail::fail_point!("log-roll-after-hint", |_| Err(Error::Injected(
            "log-roll-after-hint"
        )));
        let mut index = self.index.write();
        *active = new_file(&self.dir, active.seq + 1, &mut index)?;
        Ok(())
    }

    fn read(&self, loc: Loc, file: &File) -> Result<Vec<u8>> {
        let mut v = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut v, loc.offset)
            .map_err(|e| io(&self.dir.join(file_name(loc.file)), e))?;
        Ok(v)
    }

    /// Deletes the hint of data file `seq`, if it has one (before the data file itself, so
    /// that no hint outlives its data file).
    fn remove_hint(&self, seq: u32) -> Result<()> {
        let p = self.dir.join(hint::hint_name(seq));
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p, e)),
            _ => Ok(()),
        }
    }

    fn lookup(&self, key: &[u8]) -> Option<(Loc, Arc<File>)> {
        let index = self.index.read();
        let loc = *index.keys.get(key)?;
        let file = index.files.get(&loc.file)?.file.clone();
        Some((loc, file))
    }
}

impl Engine for LogEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        fail::fail_point!("storage-get", |_| Err(Error::Injected("storage-get")));
        match self.shared.lookup(key) {
            Some((loc, file)) => self.shared.read(loc, &file).map(Some),
            None => Ok(None),
        }
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> ScanIter<'_> {
        let shared = &*self.shared;
        chunked_scan(start, end, move |from, to, limit| {
            // Locations under the lock, values read after it.
            let chunk: Vec<(Vec<u8>, Loc, Arc<File>)> = {
                let index = shared.index.read();
                index
                    .keys
                    .range::<[u8], _>((from, to))
                    .take(limit)
                    .filter_map(|(k, l)| {
                        Some((k.clone(), *l, index.files.get(&l.file)?.file.clone()))
                    })
                    .collect()
            };
            chunk
                .into_iter()
                .map(|(k, loc, file)| Ok((k, shared.read(loc, &file)?)))
                .collect()
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        fail::fail_point!("storage-write", |_| Err(Error::Injected("storage-write")));
        {
            let mut active = self.shared.writer.lock();
            self.shared.append(&mut active, batch.into_ops())?;
        }
        if self.shared.needs_gc() && !self.shared.gc_running.swap(true, Ordering::AcqRel) {
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("state-gc".into())
                .spawn(move || {
                    // A failed collection leaves the old file in place: nothing is lost, and
                    // the next write retries.
                    let _ = shared.collect();
                    shared.gc_running.store(false, Ordering::Release);
                })
                .map_err(|e| Error::Engine(format!("cannot start the GC thread: {e}")))?;
            // The previous thread (if any) has finished: `gc_running` was clear.
            if let Some(old) = self.shared.gc_thread.lock().replace(handle) {
                let _ = old.join();
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let active = self.shared.writer.lock();
        let path = self.shared.dir.join(file_name(active.seq));
        active.file.sync_data().map_err(|e| io(&path, e))
    }

    fn size_bytes(&self) -> u64 {
        self.shared.index.read().total().0
    }

    fn clear(&self) -> Result<()> {
        let mut active = self.shared.writer.lock();
        let mut index = self.shared.index.write();
        let next = active.seq + 1;
        let seqs: Vec<u32> = index.files.keys().copied().collect();
        *index = Index::default();
        *active = new_file(&self.shared.dir, next, &mut index)?;
        for seq in seqs {
            self.shared.remove_hint(seq)?;
            let p = self.shared.dir.join(file_name(seq));
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
        }
        File::open(&self.shared.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.shared.dir, e))
    }
}

impl Drop for LogEngine {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(t) = self.shared.gc_thread.lock().take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn put(e: &LogEngine, k: &[u8], v: &[u8]) {
        let mut b = WriteBatch::new();
        b.put(k, v);
        e.write(b).expect("write");
    }

    fn all(e: &LogEngine) -> Vec<KvPair> {
        e.scan(Bound::Unbounded, Bound::Unbounded)
            .map(|r| r.expect("scan"))
            .collect()
    }

    #[test]
    fn conformance() {
        let dirs = parking_lot::Mutex::new(Vec::new());
        crate::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let e = LogEngine::open(dir.path(), LogEngineConfig::default()).expect("open");
            dirs.lock().push(dir);
            Box::new(e)
        });
    }

    #[test]
    fn conformance_with_tiny_files() {
        let dirs = parking_lot::Mutex::new(Vec::new());
        crate::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let e = LogEngine::open(dir.path(), small()).expect("open");
            dirs.lock().push(dir);
            Box::new(e)
        });
    }

    #[test]
    fn reopen_sees_every_batch_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let want = {
            let e = LogEngine::open(dir.path(), small()).expect("open");
            for i in 0..200u32 {
                put(&e, &i.to_be_bytes(), &[i as u8; 100]);
            }
            let mut b = WriteBatch::new();
            b.delete(7u32.to_be_bytes().to_vec());
            e.write(b).expect("write");
            assert!(e.file_count() > 1, "files rolled");
            all(&e)
        };
        assert_eq!(want.len(), 199);
        // A crash in the middle of a write: half a frame at the end of the last file.
        let last = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .max()
            .expect("a data file");
        let len = std::fs::metadata(&last).expect("stat").len();
        let f = OpenOptions::new().append(true).open(&last).expect("open");
        f.write_all_at(&[0x53, 0x48, 0x4c, 0x46, 0, 0, 1, 0, 9], len)
            .expect("torn write");
        let e = LogEngine::open(dir.path(), small()).expect("reopen");
        assert_eq!(all(&e), want);
        assert_eq!(std::fs::metadata(&last).expect("stat").len(), len);
        // Writable after the cut.
        put(&e, b"after", b"x");
        drop(e);
        let e = LogEngine::open(dir.path(), small()).expect("reopen");
        assert_eq!(e.get(b"after").expect("get"), Some(b"x".to_vec()));
    }

    /// (A sealed file with a valid hint is not read on open: damage to its values is not
    /// seen then. Without the hint it is replayed, and damage is found.)
    #[test]
    fn damage_before_the_last_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let e = LogEngine::open(dir.path(), small()).expect("open");
            for i in 0..100u32 {
                put(&e, &i.to_be_bytes(), &[1u8; 100]);
            }
            assert!(e.file_count() > 2);
        }
        std::fs::remove_file(dir.path().join(hint::hint_name(1))).expect("no hint");
        let first = dir.path().join(file_name(1));
        let f = OpenOptions::new().write(true).open(&first).expect("open");
        f.write_all_at(b"XXXX", 20).expect("damage");
        let err = LogEngine::open(dir.path(), small()).err().expect("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn gc_keeps_the_latest_values_and_deletes_and_frees_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = LogEngine::open(dir.path(), small()).expect("open");
        // Overwrite a small key set many times: most of every old file is garbage.
        for round in 0..50u32 {
            for k in 0..10u32 {
                put(&e, &k.to_be_bytes(), &[(round % 251) as u8; 100]);
            }
        }
        let mut b = WriteBatch::new();
        b.delete(3u32.to_be_bytes().to_vec());
        e.write(b).expect("write");
        // Wait for the background GC, then force the rest.
        while e.shared.gc_running.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        while e.collect_garbage().expect("gc") {}
        let before = all(&e);
        assert_eq!(before.len(), 9);
        assert!(before.iter().all(|(_, v)| v == &vec![49u8; 100]));
        let (size, live) = e.shared.index.read().total();
        assert!(
            size < 4 * 4096,
            "garbage not collected: {size} bytes for {live} live"
        );
        drop(e);
        // The deleted key stays deleted after the files holding its puts were collected.
        let e = LogEngine::open(dir.path(), small()).expect("reopen");
        assert_eq!(all(&e), before);
        assert_eq!(e.get(&3u32.to_be_bytes()).expect("get"), None);
    }

    /// Small values under longer keys (leases, tombstones): every record is live, so nothing
    /// is collected however small the GC thresholds (keys and record headers are not garbage).
    #[test]
    fn small_live_records_are_not_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = LogEngine::open(dir.path(), small()).expect("open");
        for i in 0..2000u32 {
            put(
                &e,
                format!("/registry/leases/ns/lease-{i:08}").as_bytes(),
                b"v",
            );
        }
        assert!(e.file_count() > 4, "files rolled");
        assert!(!e.collect_garbage().expect("gc"), "live data was collected");
        let (size, live) = e.shared.index.read().total();
        assert!(
            size - live < size / 4,
            "{} of {size} bytes counted as garbage",
            size - live
        );
    }

    #[test]
    fn gc_never_overwrites_a_newer_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Arc::new(LogEngine::open(dir.path(), small()).expect("open"));
        let writer = {
            let e = e.clone();
            std::thread::spawn(move || {
                for round in 0..400u32 {
                    put(&e, &(round % 20).to_be_bytes(), &round.to_be_bytes());
                }
            })
        };
        let mut collections = 0;
        while !writer.is_finished() {
            if e.collect_garbage().expect("gc") {
                collections += 1;
            }
        }
        writer.join().expect("writer");
        for k in 0..20u32 {
            let want = 380 + k;
            assert_eq!(
                e.get(&k.to_be_bytes()).expect("get"),
                Some(want.to_be_bytes().to_vec()),
                "key {k} after {collections} collections"
            );
        }
    }
}
