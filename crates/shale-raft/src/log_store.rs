//! [`LogStore`]: the durable Raft log of one Raft group, for openraft 0.9 (storage v2).
//!
//! # On-disk layout (one directory per Raft group)
//!
//! ```text
//! <dir>/00000001.log   segment files, see `segment.rs` for the record format
//! <dir>/00000002.log   (rolled at `segment_size`, default 64 MiB)
//! <dir>/vote           last saved vote            (durable: tmp + fsync + rename + dir fsync)
//! <dir>/purged         last purged log id         (durable, written before segments go)
//! <dir>/committed      last committed log id      (best effort, a hint; see `meta_file.rs`)
//! ```
//!
//! # Guarantees
//!
//! * `append` returns once the entries are readable (they sit in the in-memory cache); its
//!   `LogFlushed` callback is completed only after the entries were written **and fdatasynced**
//!   by the writer thread (group commit: all appends queued together share one fsync).
//! * `save_vote`, `truncate` and `purge` are durable when they return. All write IO runs in
//!   one thread in call order, so e.g. a vote saved after an append is never on disk without it.
//! * On open every segment is read and every record's CRC checked. A torn tail of the last
//!   segment (a crash during a write) is cut off; any other damage makes `open` fail with an
//!   error telling the operator to restore the member from a peer or a snapshot.
//!
//! # Crash behaviour of each operation
//!
//! * append: a crash before the fsync completes may leave none, all or any byte-subset of the
//!   batch on disk; nothing of it was acknowledged, and open cuts it back to the last complete
//!   record (keeping records that happen to be complete is harmless: they were never
//!   acknowledged, and Raft will overwrite them if they conflict).
//! * truncate: later segments are deleted newest first, then the cut segment is shortened and
//!   fsynced. A crash in between leaves a prefix of the old log — always a valid log.
//! * purge: the new purge point is made durable first, then whole purged segments are deleted.
//!   A crash in between leaves extra records below the purge point, which open ignores (and whose
//!   segments it deletes).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use bincode::Options;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig,
    StorageError, Vote,
};
use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::error::LogStoreError;
use crate::meta_file::{codec, MetaFile};
use crate::open::{recover, Recovered};
use crate::state::{CacheSlot, Shared, State};
use crate::writer::{Completion, Request, Writer};

/// Tuning knobs of a [`LogStore`]. Durability is not configurable: appends are always fsynced.
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// A new segment file is started once the active one reaches this size. Default 64 MiB.
    pub segment_size: u64,
    /// Byte budget of the in-memory cache of recent, already durable entries. Entries not yet
    /// durable are always kept in memory in addition. Default 16 MiB: apply and the
    /// replication of the tail read entries within moments of their append (at 25k puts/s of
    /// 1 KiB that is over half a second of log); older ones are read from the segment files.
    pub cache_bytes: u64,
    /// `limited_get_log_entries` (used by replication) returns at most about this many bytes
    /// (always at least one entry). Default 8 MiB.
    pub max_read_bytes: u64,
    /// Largest amount of data written by one group commit before its fsync. Default 64 MiB.
    pub max_group_bytes: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            cache_bytes: 16 << 20,
            max_read_bytes: 8 << 20,
            max_group_bytes: 64 << 20,
        }
    }
}

/// The durable Raft log store: implements [`RaftLogStorage`] and [`RaftLogReader`].
///
/// Dropping it stops the writer thread after the queued requests are done (it joins the thread).
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
    tx: Option<Sender<Request<C>>>,
    writer: Option<JoinHandle<()>>,
    next_ticket: u64,
    opts: LogStoreOptions,
}

/// A cheap, cloneable reader of a [`LogStore`], handed to openraft's replication tasks.
pub struct LogReader<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
    max_read_bytes: u64,
}

impl<C: RaftTypeConfig> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            max_read_bytes: self.max_read_bytes,
        }
    }
}

fn sto_err<C: RaftTypeConfig>(
    e: LogStoreError,
    subject: ErrorSubject<C::NodeId>,
    verb: ErrorVerb,
) -> StorageError<C::NodeId> {
    e.into_storage(subject, verb)
}

impl<C: RaftTypeConfig> LogStore<C>
where
    C::Entry: Clone,
{
    /// Open (or create) the log in `dir`, validating every segment. Blocking: call it at
    /// startup or from `spawn_blocking`.
    pub fn open(dir: &Path, opts: LogStoreOptions) -> Result<Self, LogStoreError> {
        let Recovered {
            state,
            segments,
            active,
            committed_written,
        } = recover::<C>(dir, &opts)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: RwLock::new(state),
            fsyncs: Default::default(),
        });
        let writer = Writer {
            shared: shared.clone(),
            dir: dir.to_path_buf(),
            segment_size: opts.segment_size.max(1),
            max_group_bytes: opts.max_group_bytes.max(1),
            segments,
            active,
            vote_file: vote_file(dir),
            purged_file: purged_file(dir),
            committed_file: committed_file(dir),
            committed_written,
            committed_saved_at: None,
            committed_dirty: false,
            poisoned: None,
            buf: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogStoreError::io(dir, e))?;
        Ok(Self {
            shared,
            tx: Some(tx),
            writer: Some(handle),
            next_ticket: 1,
            opts,
        })
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A reader that shares this store's state (same as `get_log_reader`, but synchronous).
    pub fn reader(&self) -> LogReader<C> {
        LogReader {
            shared: self.shared.clone(),
            max_read_bytes: self.opts.max_read_bytes,
        }
    }

    /// Wait until every write queued so far has completed (and return its error, if the writer
    /// is poisoned).
    pub async fn flush(&self) -> Result<(), LogStoreError> {
        self.call(|done| Request::Flush { done }).await
    }

    /// Like [`RaftLogStorage::append`], but `on_durable` is called (from the writer thread)
    /// instead of an openraft `LogFlushed`: with `Ok(())` once the entries are fsynced, or with
    /// the error that stopped the writer. Entries are readable when this returns.
    pub fn append_then<F>(
        &mut self,
        entries: impl IntoIterator<Item = C::Entry>,
        on_durable: F,
    ) -> Result<(), LogStoreError>
    where
        F: FnOnce(std::io::Result<()>) + Send + 'static,
    {
        self.do_append(entries, Completion::Fn(Box::new(on_durable)))
    }

    /// How many batch fsyncs the writer has issued since open (group commit makes this smaller
    /// than the number of appends under concurrent load).
    pub fn fsync_count(&self) -> u64 {
        self.shared
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn send(&self, req: Request<C>) -> Result<(), LogStoreError> {
        let tx = self.tx.as_ref().ok_or(LogStoreError::WriterGone)?;
        tx.send(req).map_err(|_| LogStoreError::WriterGone)
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), LogStoreError>>) -> Request<C>,
    ) -> Result<(), LogStoreError> {
        let (done, rx) = oneshot::channel();
        self.send(make(done))?;
        rx.await.map_err(|_| LogStoreError::WriterGone)?
    }

    fn check_poisoned(&self) -> Result<(), LogStoreError> {
        match &self.shared.state.read().poisoned {
            Some(p) => Err(LogStoreError::Poisoned(p.clone())),
            None => Ok(()),
        }
    }

    fn ticket(&mut self) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }

    fn do_append(
        &mut self,
        entries: impl IntoIterator<Item = C::Entry>,
        callback: Completion<C>,
    ) -> Result<(), LogStoreError> {
        let mut items = Vec::new();
        let mut records = Vec::new();
        for e in entries {
            let index = e.get_log_id().index;
            let bytes = codec().serialize(&e).map_err(|err| LogStoreError::Codec {
                index,
                reason: err.to_string(),
            })?;
            if bytes.len() + crate::segment::RECORD_HEADER_LEN > crate::segment::MAX_PAYLOAD_LEN {
                return Err(LogStoreError::Invalid(format!(
                    "entry {index} is {} bytes, larger than the 1 GiB record limit",
                    bytes.len()
                )));
            }
            items.push((index, e, crate::segment::record_len(bytes.len())));
            records.push((index, bytes));
        }
        let ticket = self.ticket();
        {
            let mut st = self.shared.state.write();
            if let Some(p) = &st.poisoned {
                return Err(LogStoreError::Poisoned(p.clone()));
            }
            // Entries at or below the purge point are already covered by the snapshot: skip
            // them (openraft never sends them; its test-suite does).
            if let Some(p) = st.last_purged.as_ref().map(|p| p.index) {
                if items.iter().any(|(index, _, _)| *index <= p) {
                    tracing::warn!(
                        purged = p,
                        "ignoring appended entries at or below the purge point"
                    );
                    items.retain(|(index, _, _)| *index > p);
                    records.retain(|(index, _)| *index > p);
                }
            }
            let mut prev = st.last_log_id.as_ref().map(|l| l.index);
            for (index, _, _) in &items {
                if let Some(p) = prev {
                    if *index <= p {
                        return Err(LogStoreError::Invalid(format!(
                            "append of index {index} after index {p} without a truncate first"
                        )));
                    }
                    if *index != p + 1 {
                        tracing::warn!(index, prev = p, "raft log append leaves a gap");
                    }
                }
                prev = Some(*index);
            }
            for (index, entry, size) in items {
                st.last_log_id = Some(entry.get_log_id().clone());
                st.cache_bytes += size;
                let slot = CacheSlot {
                    entry,
                    ticket: Some(ticket),
                    size,
                };
                if let Some(old) = st.cache.insert(index, slot) {
                    st.cache_bytes -= old.size;
                }
            }
        }
        self.send(Request::Append {
            ticket,
            records,
            callback,
        })
    }

    async fn do_truncate(&mut self, log_id: &LogId<C::NodeId>) -> Result<(), LogStoreError> {
        let index = log_id.index;
        let ticket = self.ticket();
        {
            let mut st = self.shared.state.write();
            if let Some(p) = &st.poisoned {
                return Err(LogStoreError::Poisoned(p.clone()));
            }
            if let Some(p) = &st.last_purged {
                if index <= p.index {
                    return Err(LogStoreError::Invalid(format!(
                        "truncate at index {index}, but entries up to {} are purged",
                        p.index
                    )));
                }
            }
            if st.last_index().is_none_or(|last| index > last) {
                return Ok(());
            }
            st.cache_remove_from(index);
            st.disk_limit = Some(st.disk_limit.map_or(index, |l| l.min(index)));
            st.latest_truncate = ticket;
            let last = st.last_log_id_below(index, &self.shared.dir)?;
            st.last_log_id = last.or_else(|| st.last_purged.clone());
        }
        self.call(|done| Request::Truncate {
            index,
            ticket,
            done,
        })
        .await
    }

    async fn do_purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), LogStoreError> {
        {
            let mut st = self.shared.state.write();
            if let Some(p) = &st.poisoned {
                return Err(LogStoreError::Poisoned(p.clone()));
            }
            if st.last_purged.as_ref().is_some_and(|p| p >= &log_id) {
                return Ok(());
            }
            st.cache_remove_upto(log_id.index);
            if st.last_log_id.as_ref().is_none_or(|l| l < &log_id) {
                st.last_log_id = Some(log_id.clone());
            }
            st.last_purged = Some(log_id.clone());
        }
        self.call(|done| Request::Purge { log_id, done }).await
    }
}

pub(crate) fn vote_file(dir: &Path) -> MetaFile {
    MetaFile::new(dir, "vote", "vote", "raft-vote-before-rename")
}
pub(crate) fn purged_file(dir: &Path) -> MetaFile {
    MetaFile::new(dir, "purged", "purged log id", "raft-purged-before-rename")
}
pub(crate) fn committed_file(dir: &Path) -> MetaFile {
    MetaFile::new(
        dir,
        "committed",
        "committed log id",
        "raft-committed-before-rename",
    )
}

impl<C: RaftTypeConfig> Drop for LogStore<C> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.writer.take() {
            if h.join().is_err() {
                tracing::error!("raft log writer thread panicked");
            }
        }
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogStore<C>
where
    C::Entry: Clone,
{
    /// Reads go through the same code as replication's [`LogReader`].
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.reader().try_get_log_entries(range).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.reader().limited_get_log_entries(start, end).await
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogReader<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.shared
            .read_range(range, None)
            .map_err(|e| sto_err::<C>(e, ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.shared
            .read_range(start..end, Some(self.max_read_bytes))
            .map_err(|e| sto_err::<C>(e, ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for LogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let st = self.shared.state.read();
        Ok(LogState {
            last_purged_log_id: st.last_purged.clone(),
            last_log_id: st.last_log_id.clone(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let v = vote.clone();
        let res = match self.check_poisoned() {
            Ok(()) => self.call(|done| Request::SaveVote { vote: v, done }).await,
            Err(e) => Err(e),
        };
        res.map_err(|e| sto_err::<C>(e, ErrorSubject::Vote, ErrorVerb::Write))?;
        self.shared.state.write().vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.shared.state.read().vote.clone())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.shared.state.write().committed = committed;
        // Best effort and asynchronous: the writer persists the latest value when it gets to it.
        self.send(Request::SaveCommitted)
            .map_err(|e| sto_err::<C>(e, ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.shared.state.read().committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.do_append(entries, Completion::Raft(callback))
            .map_err(|e| sto_err::<C>(e, ErrorSubject::Logs, ErrorVerb::Write))
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.do_truncate(&log_id)
            .await
            .map_err(|e| sto_err::<C>(e, ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.do_purge(log_id.clone())
            .await
            .map_err(|e| sto_err::<C>(e, ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}

/// Paths are exposed for tests and tooling.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(crate::segment::segment_file_name(seq))
}

/// Used by recovery to seed the shared state.
pub(crate) fn new_state<C: RaftTypeConfig>(opts: &LogStoreOptions) -> State<C> {
    State::new(opts.cache_bytes)
}
