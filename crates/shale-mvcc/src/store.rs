//! [`MvccStore`]: the multi-version key-value store.
//!
//! Model: every write request gets the next main revision; each key it changes gets a
//! `(main, sub)` revision and the change is stored under that revision (see [`crate::record`]).
//! The in-memory [`TreeIndex`] maps each key to its revision history, so a read at revision
//! `r` looks up, per key, the latest change `<= r` and fetches it from storage.
//!
//! Concurrency and invariants:
//! * One applier at a time holds an [`ApplyBatch`] (a mutex). Its changes go into the index at
//!   once (at revisions above the published one) and into one storage [`WriteBatch`](shale_storage::WriteBatch).
//! * Readers read at `min(requested, published)`; index entries above the published revision
//!   are invisible to them, so a half-applied batch is never observed.
//! * The published revision advances only after the storage batch (which also carries the
//!   caller's applied-index write) has committed.
//! * Compaction never blocks: it publishes the new compact revision, then compacts the index in
//!   chunks and deletes old revisions in small batches on a background thread. A read that
//!   races a compaction above its revision finds a change missing and reports `compacted`.
//! * Opening rebuilds the index from a key-index checkpoint and the changes above it, or from
//!   the whole history (see [`crate::checkpoint`] and `recovery.rs`); the compactor
//!   thread writes checkpoints in the background under the same maintenance lock as index
//!   compaction.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use shale_api::error::EtcdError;
use shale_api::mvccpb::KeyValue;
use shale_storage::Engine;

pub use crate::batch::{ApplyBatch, Change, Committed, WriteTxn};
use crate::checkpoint::{self, CheckpointConfig, CheckpointStats, Recovery};
use crate::compactor::Compactor;
use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use crate::record::{self, kv_key};
use crate::recovery;
use crate::revision::Revision;
use crate::tree_index::TreeIndex;

/// Options of a read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Maximum number of keys to return, 0 = all.
    pub limit: usize,
    /// Revision to read at, 0 (or negative) = newest.
    pub rev: i64,
    /// Return only the count.
    pub count_only: bool,
}

/// The result of a read: the key-values, the total count in range, the current revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub count: usize,
    pub rev: i64,
}

pub(crate) struct Shared {
    pub engine: Arc<dyn Engine>,
    pub index: RwLock<TreeIndex>,
    pub rev: AtomicI64,
    pub compact_rev: AtomicI64,
    /// Held by whoever compacts the index or writes a checkpoint (one at a time), and by
    /// `reload` while it replaces the state.
    pub maintenance: Mutex<()>,
    /// Bumped by `reload`: a checkpoint being written of the previous content gives up.
    pub epoch: AtomicU64,
    /// Revision of the newest checkpoint written or loaded (-1: none known).
    pub checkpoint_rev: AtomicI64,
    pub checkpoint: CheckpointConfig,
}

/// The MVCC store. Cheap to share behind an `Arc`.
pub struct MvccStore {
    pub(crate) shared: Arc<Shared>,
    write_lock: Mutex<()>,
    pub(crate) compactor: Compactor,
    recovery: Recovery,
}

impl MvccStore {
    /// Opens the store on `engine` with the default [`CheckpointConfig`]: from its key-index
    /// checkpoint if it has a usable one, else rebuilding the index from the whole history.
    /// An unfinished compaction is resumed.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self> {
        Self::open_with(engine, CheckpointConfig::default())
    }

    /// [`MvccStore::open`] with explicit checkpoint settings.
    pub fn open_with(engine: Arc<dyn Engine>, checkpoint: CheckpointConfig) -> Result<Self> {
        let started = std::time::Instant::now();
        let loaded = recovery::recover(&*engine, checkpoint.load)?;
        tracing::info!(
            keys = loaded.index.len(),
            revision = loaded.rev,
            recovery = ?loaded.recovery,
            took_ms = started.elapsed().as_millis() as u64,
            "mvcc store opened"
        );
        let checkpoint_rev = match loaded.recovery {
            Recovery::Checkpoint { rev, .. } => rev,
            Recovery::FullScan => -1,
        };
        let shared = Arc::new(Shared {
            engine,
            index: RwLock::new(loaded.index),
            rev: AtomicI64::new(loaded.rev),
            compact_rev: AtomicI64::new(loaded.compact),
            maintenance: Mutex::new(()),
            epoch: AtomicU64::new(0),
            checkpoint_rev: AtomicI64::new(checkpoint_rev),
            checkpoint,
        });
        let compactor = Compactor::start(shared.clone());
        if loaded.compact > loaded.done {
            compactor.schedule(loaded.compact);
        }
        Ok(Self {
            shared,
            write_lock: Mutex::new(()),
            compactor,
            recovery: loaded.recovery,
        })
    }

    /// How the index was rebuilt when the store was opened.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Writes a key-index checkpoint now, on the calling thread (the compactor thread takes
    /// them by itself when due). `None` when the newest one is already at the current revision.
    pub fn checkpoint_now(&self) -> Result<Option<CheckpointStats>> {
        let _m = self.shared.maintenance.lock();
        checkpoint::write(&self.shared, &|| false)
    }

    /// Every key of the index with its whole history (tests compare rebuilt indexes).
    #[doc(hidden)]
    pub fn index_dump(&self) -> Vec<(Bytes, crate::key_index::KeyIndex)> {
        self.shared.index.read().dump()
    }

    /// Rebuilds the in-memory state from the engine after its content was replaced (snapshot
    /// install). Waits for running compactions and blocks writers while it runs.
    pub fn reload(&self) -> Result<()> {
        let _w = self.write_lock.lock();
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        self.compactor.wait_idle();
        let _m = self.shared.maintenance.lock();
        // The new content's checkpoint records (the sender's, or one of our old index raced
        // into it) are not trusted: dropped, and the index rebuilt from the whole history.
        checkpoint::discard(&*self.shared.engine)?;
        self.shared.checkpoint_rev.store(-1, Ordering::Release);
        let loaded = recovery::recover(&*self.shared.engine, false)?;
        *self.shared.index.write() = loaded.index;
        self.shared
            .compact_rev
            .store(loaded.compact, Ordering::Release);
        self.shared.rev.store(loaded.rev, Ordering::Release);
        if loaded.compact > loaded.done {
            self.compactor.schedule(loaded.compact);
        }
        Ok(())
    }

    /// The newest published revision.
    pub fn current_revision(&self) -> i64 {
        self.shared.rev.load(Ordering::Acquire)
    }

    /// The newest compaction revision (reads below it fail with `compacted`).
    pub fn compact_revision(&self) -> i64 {
        self.shared.compact_rev.load(Ordering::Acquire)
    }

    /// The storage engine (for the state machine's own tables).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.shared.engine
    }

    /// Every live key attached to a lease, with its lease, at the newest revision.
    pub fn leased_keys(&self) -> Vec<(Bytes, i64)> {
        self.shared.index.read().leased_keys()
    }

    /// Number of keys with history in the index.
    pub fn key_count(&self) -> usize {
        self.shared.index.read().len()
    }

    /// Reads `range` at `opts.rev` (0 = newest).
    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let cur = self.current_revision();
        self.shared
            .range_at(range, opts, cur, self.compact_revision(), None)
    }

    /// Starts the (single) write batch. Blocks while another batch is open.
    pub fn begin(&self) -> ApplyBatch<'_> {
        let guard = self.write_lock.lock();
        ApplyBatch::new(self, guard)
    }

    /// Waits until every scheduled compaction has finished deleting (tests, HashKV).
    pub fn wait_compaction(&self) {
        self.compactor.wait_idle();
    }

    /// Fetches the change stored at `rev` for `key` (`None` if compacted away).
    pub fn get_at_revision(&self, rev: Revision) -> Result<Option<KeyValue>> {
        self.shared.fetch(rev, None)
    }
}

impl Shared {
    /// Fetches a stored change, looking at the pending batch first.
    pub(crate) fn fetch(
        &self,
        rev: Revision,
        pending: Option<&std::collections::HashMap<Revision, KeyValue>>,
    ) -> Result<Option<KeyValue>> {
        if let Some(kv) = pending.and_then(|p| p.get(&rev)) {
            return Ok(Some(kv.clone()));
        }
        match self.engine.get(&kv_key(rev, false))? {
            Some(v) => Ok(Some(record::decode_kv(&v)?)),
            None => Ok(None),
        }
    }

    /// The revision a read of `rev` (0 or negative: newest) runs at, given the newest
    /// published revision `cur`; `future revision` / `compacted` when it cannot.
    pub(crate) fn resolve_rev(&self, rev: i64, cur: i64, compact: i64) -> Result<i64> {
        if rev > cur {
            return Err(EtcdError::FutureRev.into());
        }
        let at = if rev <= 0 { cur } else { rev };
        // `compact` is the caller's view: an open batch's own compaction counts for the
        // requests applied after it in that batch, before it is published.
        if at < compact.max(self.compact_rev.load(Ordering::Acquire)) {
            return Err(EtcdError::Compacted.into());
        }
        Ok(at)
    }

    /// The error for a change the index lists at `rev` but storage does not hold: the
    /// read raced a compaction above `at`, or the data is corrupt.
    pub(crate) fn missing(&self, key: &[u8], rev: Revision, at: i64) -> Error {
        if at < self.compact_rev.load(Ordering::Acquire) {
            return EtcdError::Compacted.into();
        }
        Error::Corrupt(format!(
            "key {:?} revision {} is indexed but not stored",
            String::from_utf8_lossy(key),
            rev
        ))
    }

    pub(crate) fn range_at(
        &self,
        range: &KeyRange,
        opts: RangeOptions,
        cur: i64,
        compact: i64,
        pending: Option<&std::collections::HashMap<Revision, KeyValue>>,
    ) -> Result<RangeResult> {
        let at = self.resolve_rev(opts.rev, cur, compact)?;
        if opts.count_only {
            let count = self.index.read().count(range, at);
            return Ok(RangeResult {
                kvs: Vec::new(),
                count,
                rev: cur,
            });
        }
        let (revs, count) = self.index.read().revisions(range, at, opts.limit);
        let mut kvs = Vec::with_capacity(revs.len());
        for (key, a) in revs {
            match self.fetch(a.modified, pending)? {
                Some(kv) => kvs.push(kv),
                None => return Err(self.missing(&key, a.modified, at)),
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: cur,
        })
    }
}
