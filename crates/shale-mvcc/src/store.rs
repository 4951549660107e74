//! [`MvccStore`]: the multi-version key-value store.
//!
//! Model: every write request gets the next main revision; each key it changes gets a
//! `(main, sub)` revision and the change is stored under that revision (see [`crate::record`]).
//! The in-memory [`TreeIndex`] maps each key to its revision history, so a read at revision
//! `r` looks up, per key, the latest change `<= r` and fetches it from storage.
//!
//! Concurrency and invariants:
//! * One applier at a time holds an [`ApplyBatch`] (a mutex). Its changes go into the index at
//!   once (at revisions above the published one) and into one storage [`WriteBatch`].
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
use shale_storage::{Engine, WriteBatch};

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
    compactor: Compactor,
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
        ApplyBatch {
            store: self,
            _guard: guard,
            rev: self.current_revision(),
            pending: std::collections::HashMap::new(),
            batch: WriteBatch::new(),
            events: Vec::new(),
            compaction: None,
        }
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

    pub(crate) fn range_at(
        &self,
        range: &KeyRange,
        opts: RangeOptions,
        cur: i64,
        compact: i64,
        pending: Option<&std::collections::HashMap<Revision, KeyValue>>,
    ) -> Result<RangeResult> {
        if opts.rev > cur {
            return Err(EtcdError::FutureRev.into());
        }
        let at = if opts.rev <= 0 { cur } else { opts.rev };
        // `compact` is the caller's view: an open batch's own compaction counts for the
        // requests applied after it in that batch, before it is published.
        if at < compact.max(self.compact_rev.load(Ordering::Acquire)) {
            return Err(EtcdError::Compacted.into());
        }
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
                None => {
                    if at < self.compact_rev.load(Ordering::Acquire) {
                        return Err(EtcdError::Compacted.into());
                    }
                    return Err(Error::Corrupt(format!(
                        "key {:?} revision {} is indexed but not stored",
                        String::from_utf8_lossy(&key),
                        a.modified
                    )));
                }
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: cur,
        })
    }
}

/// A change made by a write request, as watchers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The new state (for a delete: only key and mod_revision are set, as in etcd).
    pub kv: KeyValue,
    /// The previous state of the key, if it existed **and was read**. A put does not read
    /// the previous value from storage unless its request needs it (`prev_kv`,
    /// `ignore_value`, `ignore_lease`): then this is `None` while `prev_rev` is set, and
    /// a consumer that needs the value fetches it ([`Change::prev_kv`]).
    pub prev: Option<KeyValue>,
    /// The revision of the previous state, if the key existed before this change.
    pub prev_rev: Option<Revision>,
    /// The lease the key was attached to before this change (0 = none).
    pub prev_lease: i64,
    pub is_delete: bool,
}

impl Change {
    /// The previous state of the key: `prev`, or else fetched from `store` at `prev_rev`.
    /// Only valid until a compaction above this change's revision has run; the applier
    /// resolves every change itself when its batch compacts (see [`ApplyBatch::commit`]).
    pub fn prev_kv(&self, store: &MvccStore) -> Result<Option<KeyValue>> {
        match (&self.prev, self.prev_rev) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(r)) => store.get_at_revision(r),
            (None, None) => Ok(None),
        }
    }
}

/// Everything a committed batch changed, in revision order.
#[derive(Debug, Default)]
pub struct Committed {
    pub changes: Vec<Change>,
    /// Published revision after the batch.
    pub rev: i64,
    /// A compaction performed by the batch.
    pub compacted: Option<i64>,
}

/// The open write batch of the applier. Dropping it without `commit` is only allowed when the
/// member is about to stop (the index already holds its changes).
pub struct ApplyBatch<'a> {
    store: &'a MvccStore,
    _guard: parking_lot::MutexGuard<'a, ()>,
    rev: i64,
    pending: std::collections::HashMap<Revision, KeyValue>,
    batch: WriteBatch,
    events: Vec<Change>,
    compaction: Option<i64>,
}

impl<'a> ApplyBatch<'a> {
    /// The revision of the last write in this batch (or the published one).
    pub fn rev(&self) -> i64 {
        self.rev
    }

    /// The compact revision as of the batch's newest request (its own compaction included).
    pub fn compact_revision(&self) -> i64 {
        self.compaction
            .unwrap_or_else(|| self.store.compact_revision())
    }

    /// Starts a write request; it gets revision `rev() + 1` if it changes anything.
    pub fn write(&mut self) -> WriteTxn<'_, 'a> {
        let begin = self.rev;
        WriteTxn {
            b: self,
            begin,
            subs: 0,
        }
    }

    /// Every change made so far in this batch, in order.
    pub fn changes(&self) -> &[Change] {
        &self.events
    }

    /// Reads as of the batch's newest write.
    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        self.store.shared.range_at(
            range,
            opts,
            self.rev,
            self.compact_revision(),
            Some(&self.pending),
        )
    }

    /// Schedules a compaction at `rev`; deterministic errors as etcd's.
    pub fn compact(&mut self, rev: i64) -> Result<()> {
        let cur_compact = self
            .compaction
            .unwrap_or_else(|| self.store.compact_revision());
        if rev <= cur_compact {
            return Err(EtcdError::Compacted.into());
        }
        if rev > self.rev {
            return Err(EtcdError::FutureRev.into());
        }
        self.batch
            .put(record::META_COMPACT.to_vec(), record::encode_i64(rev));
        self.compaction = Some(rev);
        Ok(())
    }

    /// Adds a write of the caller's own tables (applied index, leases) to the atomic batch.
    pub fn put_meta(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.put(key, value);
    }

    pub fn delete_meta(&mut self, key: Vec<u8>) {
        self.batch.delete(key);
    }

    /// Commits the batch atomically, then publishes its revision and compaction.
    ///
    /// A batch that compacts first reads every previous state its changes left unread:
    /// the compaction deletes history in the background once published, so `prev_rev`
    /// could no longer be fetched afterwards.
    pub fn commit(mut self) -> Result<Committed> {
        if self.compaction.is_some() {
            for i in 0..self.events.len() {
                let ch = &self.events[i];
                if ch.prev.is_none() {
                    if let Some(r) = ch.prev_rev {
                        let prev = self.store.shared.fetch(r, Some(&self.pending))?;
                        self.events[i].prev = prev;
                    }
                }
            }
        }
        let shared = &self.store.shared;
        if !self.batch.is_empty() {
            shared.engine.write(self.batch)?;
        }
        shared.rev.store(self.rev, Ordering::Release);
        if let Some(c) = self.compaction {
            shared.compact_rev.store(c, Ordering::Release);
            self.store.compactor.schedule(c);
        }
        Ok(Committed {
            changes: self.events,
            rev: self.rev,
            compacted: self.compaction,
        })
    }
}

/// One write request inside an [`ApplyBatch`].
pub struct WriteTxn<'b, 'a> {
    b: &'b mut ApplyBatch<'a>,
    begin: i64,
    subs: i64,
}

impl WriteTxn<'_, '_> {
    /// The revision reads in this request see: the request's own revision once it wrote.
    pub fn read_rev(&self) -> i64 {
        if self.subs > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    /// The revision this request writes at.
    pub fn write_rev(&self) -> i64 {
        self.begin + 1
    }

    pub fn has_changes(&self) -> bool {
        self.subs > 0
    }

    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        self.b.store.shared.range_at(
            range,
            opts,
            self.read_rev(),
            self.b.compact_revision(),
            Some(&self.b.pending),
        )
    }

    /// Latest state of one key as seen by this request.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let shared = &self.b.store.shared;
        let at = shared.index.read().get(key, self.read_rev());
        match at {
            Some(a) => shared.fetch(a.modified, Some(&self.b.pending)),
            None => Ok(None),
        }
    }

    /// Puts `key`; returns the new key-value. The previous value is not read (the index
    /// knows the key's create revision, version and lease); see [`Change::prev`].
    pub fn put(&mut self, key: Bytes, value: Bytes, lease: i64) -> Result<KeyValue> {
        self.put_inner(key, value, lease, None)
    }

    /// [`WriteTxn::put`] for a caller that already read the key's current state with
    /// [`WriteTxn::get`] (`prev`), so watchers need not read it again.
    pub fn put_after_get(
        &mut self,
        key: Bytes,
        value: Bytes,
        lease: i64,
        prev: Option<KeyValue>,
    ) -> Result<KeyValue> {
        self.put_inner(key, value, lease, prev)
    }

    fn put_inner(
        &mut self,
        key: Bytes,
        value: Bytes,
        lease: i64,
        prev: Option<KeyValue>,
    ) -> Result<KeyValue> {
        let rev = Revision::new(self.begin + 1, self.subs);
        let at = self
            .b
            .store
            .shared
            .index
            .read()
            .get_with_lease(&key, self.read_rev());
        let (create_revision, version, prev_rev, prev_lease) = match at {
            Some((a, l)) => (a.created.main, a.version + 1, Some(a.modified), l),
            None => (rev.main, 1, None, 0),
        };
        let kv = KeyValue {
            key: key.clone(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        self.b.batch.put(kv_key(rev, false), record::encode_kv(&kv));
        self.b
            .store
            .shared
            .index
            .write()
            .put_leased(&key, rev, lease);
        self.b.pending.insert(rev, kv.clone());
        self.b.events.push(Change {
            kv: kv.clone(),
            prev: if prev_rev.is_some() { prev } else { None },
            prev_rev,
            prev_lease,
            is_delete: false,
        });
        self.subs += 1;
        Ok(kv)
    }

    /// Deletes every live key of `range`; returns the deleted key-values.
    pub fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>> {
        let keys = self.b.store.shared.index.read().live_keys(range);
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            let shared = &self.b.store.shared;
            let at = shared.index.read().get_with_lease(&key, self.read_rev());
            let prev = match at {
                Some((a, _)) => shared.fetch(a.modified, Some(&self.b.pending))?,
                None => None,
            };
            let rev = Revision::new(self.begin + 1, self.subs);
            if !self.b.store.shared.index.write().tombstone(&key, rev) {
                continue;
            }
            let tomb = record::tombstone_kv(&key);
            self.b
                .batch
                .put(kv_key(rev, true), record::encode_kv(&tomb));
            self.subs += 1;
            let mut ev_kv = tomb;
            ev_kv.mod_revision = rev.main;
            if let Some(p) = &prev {
                deleted.push(p.clone());
            }
            self.b.events.push(Change {
                kv: ev_kv,
                prev,
                prev_rev: at.map(|(a, _)| a.modified),
                prev_lease: at.map_or(0, |(_, l)| l),
                is_delete: true,
            });
        }
        Ok(deleted)
    }
}

impl Drop for WriteTxn<'_, '_> {
    fn drop(&mut self) {
        if self.subs > 0 {
            self.b.rev = self.begin + 1;
        }
    }
}
