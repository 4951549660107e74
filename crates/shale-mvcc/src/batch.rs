//! [`ApplyBatch`] and [`WriteTxn`]: the applier's side of [`MvccStore`].
//!
//! Model: the state machine applies decided commands in batches. One batch at a time holds
//! the store's write lock; each write request in it ([`WriteTxn`]) gets the next main
//! revision if it changes anything, and each key it changes a `(main, sub)` revision.
//!
//! Invariants:
//! * A change goes into the index at once, at a revision above the published one (readers
//!   outside the batch do not see it), into the batch's `pending` map (reads inside the batch
//!   do), and into one storage [`WriteBatch`] together with the caller's own table writes.
//! * [`ApplyBatch::commit`] writes that storage batch atomically, and only then publishes the
//!   batch's revision and compaction. A batch dropped without commit leaves index entries above
//!   the published revision; it is only allowed when the member stops.
//! * A put never reads the previous value (the index knows create revision, version and
//!   lease); watchers get it through [`Change::prev_kv`], or from the batch itself when it
//!   compacts (the compaction could delete it before they read it).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use shale_api::error::EtcdError;
use shale_api::mvccpb::KeyValue;
use shale_storage::WriteBatch;

use crate::error::Result;
use crate::key_range::KeyRange;
use crate::record::{self, kv_key};
use crate::revision::Revision;
use crate::store::{MvccStore, RangeOptions, RangeResult};

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
    pub(crate) fn new(store: &'a MvccStore, guard: parking_lot::MutexGuard<'a, ()>) -> Self {
        Self {
            store,
            _guard: guard,
            rev: store.current_revision(),
            pending: std::collections::HashMap::new(),
            batch: WriteBatch::new(),
            events: Vec::new(),
            compaction: None,
        }
    }

    /// Makes room for `n` more changes, so a batch of hundreds of puts does not grow its
    /// maps step by step (rehashing `pending` took ~400 instructions per put).
    pub fn reserve(&mut self, n: usize) {
        self.pending.reserve(n);
        self.events.reserve(n);
    }

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
        let at = self.read_rev();
        let before = self
            .b
            .store
            .shared
            .index
            .write()
            .put_leased(&key, rev, lease, at);
        let (create_revision, version, prev_rev, prev_lease) = match before {
            Some((a, l)) => (a.created.main, a.version + 1, Some(a.modified), l),
            None => (rev.main, 1, None, 0),
        };
        let kv = KeyValue {
            key,
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        self.b.batch.put(kv_key(rev, false), record::encode_kv(&kv));
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
