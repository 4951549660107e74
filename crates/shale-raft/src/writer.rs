//! The writer thread: every file mutation of the log store happens here, in request order.
//!
//! # Group commit
//!
//! Requests arrive on a channel. The thread takes everything queued, groups the leading run of
//! `Append` requests (up to `max_group_bytes`), frames all their records into one buffer, writes
//! it with one `pwrite` at the end of the active segment and makes it durable with one
//! `fdatasync` — only then are the appends' `LogFlushed` callbacks completed, all at once. Other
//! requests (truncate, purge, vote, committed, flush) are processed one by one in queue order,
//! which gives openraft the "all write IO is serialized" guarantee it requires.
//!
//! The committed log id (a best-effort hint, see `meta_file.rs`) is written at most every
//! 100 ms, and once more when the thread stops.
//!
//! # Segment roll
//!
//! Before a record is added to the buffer, if the active segment (plus what is buffered) has
//! reached `segment_size`, the buffer is written and fsynced and a new segment is created
//! atomically (see `segment.rs`); the rest of the group continues there as a new batch (so a
//! group that crosses a segment boundary costs two fsyncs). A segment other than the last one is
//! therefore always fully durable, and a record never spans two segments.
//!
//! # Failure
//!
//! After any failed write, fsync, truncate or delete the writer is *poisoned*: the page-cache
//! state is unknown after a failed fsync, so it acknowledges nothing more, fails every later
//! request and marks the shared state so that `append` fails fast. openraft treats the storage
//! error as fatal and stops the node; on restart, open re-validates the files.
//!
//! # Failpoints (feature `failpoints`)
//!
//! * `raft-log-before-write` — before a batch is written (nothing reaches the file).
//! * `raft-log-torn-write` — writes only the first N bytes of the batch (N = the failpoint's
//!   return value, default half) and fails, like a crash in the middle of the write.
//! * `raft-log-after-write-before-fsync` — the batch is written, not fsynced.
//! * `raft-log-before-fsync` — immediately before the `fdatasync` of a batch.
//! * `raft-log-before-roll` / `raft-segment-before-rename` — while creating a new segment.
//! * `raft-log-truncate` — before a truncation touches any file.
//! * `raft-log-truncate-after-delete` — later segments deleted, the cut segment not yet cut.
//! * `raft-log-purge` — the new purge point is durable, no segment deleted yet.
//! * `raft-vote-before-rename`, `raft-purged-before-rename`, `raft-committed-before-rename`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::LogFlushed;
use openraft::{LogId, RaftTypeConfig, Vote};
use tokio::sync::oneshot;

use crate::error::LogStoreError;
use crate::meta_file::MetaFile;
use crate::segment::{
    create_segment, encode_record, record_len, segment_file_name, sync_dir, SEGMENT_HEADER_LEN,
};
use crate::state::{DiskLoc, Shared};

/// Shortest time between two writes of the committed-log-id hint.
pub(crate) const COMMITTED_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) type Done = oneshot::Sender<Result<(), LogStoreError>>;

/// A unit of work for the writer thread.
pub(crate) enum Request<C: RaftTypeConfig> {
    Append {
        ticket: u64,
        /// `(log index, bincode(entry))`.
        records: Vec<(u64, Vec<u8>)>,
        callback: Completion<C>,
    },
    Truncate {
        index: u64,
        ticket: u64,
        done: Done,
    },
    Purge {
        log_id: LogId<C::NodeId>,
        done: Done,
    },
    SaveVote {
        vote: Vote<C::NodeId>,
        done: Done,
    },
    /// Persist `State::committed` (best effort, coalesced).
    SaveCommitted,
    /// Barrier: answered once everything queued before it is done.
    Flush {
        done: Done,
    },
}

/// Who is told when an append is durable.
pub(crate) enum Completion<C: RaftTypeConfig> {
    Raft(LogFlushed<C>),
    Fn(Box<dyn FnOnce(io::Result<()>) + Send>),
}

impl<C: RaftTypeConfig> Completion<C> {
    pub fn complete(self, result: io::Result<()>) {
        match self {
            Completion::Raft(cb) => cb.log_io_completed(result),
            Completion::Fn(f) => f(result),
        }
    }
}

/// Writer-side bookkeeping of one segment file.
pub(crate) struct SegInfo {
    pub file: Arc<File>,
    /// Bytes of valid data (header included); the next batch is written here.
    pub len: u64,
    /// Highest log index physically in the segment, if any.
    pub last_index: Option<u64>,
}

pub(crate) struct Writer<C: RaftTypeConfig> {
    pub shared: Arc<Shared<C>>,
    pub dir: PathBuf,
    pub segment_size: u64,
    pub max_group_bytes: u64,
    pub segments: BTreeMap<u64, SegInfo>,
    pub active: u64,
    pub vote_file: MetaFile,
    pub purged_file: MetaFile,
    pub committed_file: MetaFile,
    pub committed_written: Option<LogId<C::NodeId>>,
    /// When the committed hint was last written, and whether a newer one waits (the hint
    /// is written at most every [`COMMITTED_INTERVAL`]; see [`Writer::save_committed`]).
    pub committed_saved_at: Option<Instant>,
    pub committed_dirty: bool,
    pub poisoned: Option<String>,
    pub buf: Vec<u8>,
}

impl<C: RaftTypeConfig> Writer<C> {
    pub fn run(mut self, rx: Receiver<Request<C>>) {
        let mut queue: VecDeque<Request<C>> = VecDeque::new();
        loop {
            if queue.is_empty() {
                let r = match self.committed_due() {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(wait) => rx.recv_timeout(wait),
                };
                match r {
                    Ok(r) => queue.push_back(r),
                    Err(RecvTimeoutError::Timeout) => {
                        self.save_committed(true);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(r) = rx.try_recv() {
                queue.push_back(r);
            }
            let mut group = Vec::new();
            let mut bytes = 0u64;
            while let Some(Request::Append { records, .. }) = queue.front() {
                let size: u64 = records.iter().map(|(_, b)| record_len(b.len())).sum();
                if !group.is_empty() && bytes + size > self.max_group_bytes {
                    break;
                }
                bytes += size;
                group.push(queue.pop_front().expect("front exists"));
            }
            if !group.is_empty() {
                self.handle_appends(group);
            } else if let Some(req) = queue.pop_front() {
                self.handle_other(req);
            }
        }
        self.save_committed(true);
    }

    /// How long until a held-back committed hint is due, if one waits.
    fn committed_due(&self) -> Option<Duration> {
        if !self.committed_dirty {
            return None;
        }
        let since = self
            .committed_saved_at
            .map_or(COMMITTED_INTERVAL, |t| t.elapsed());
        Some(COMMITTED_INTERVAL.saturating_sub(since))
    }

    fn poison(&mut self, what: &str, e: &LogStoreError) -> String {
        let msg = format!("{what}: {e}");
        tracing::error!(error = %msg, "raft log writer failed; refusing further writes");
        self.poisoned = Some(msg.clone());
        self.shared.state.write().poisoned = Some(msg.clone());
        msg
    }

    fn handle_appends(&mut self, group: Vec<Request<C>>) {
        let result = match &self.poisoned {
            Some(p) => Err(LogStoreError::Poisoned(p.clone())),
            None => self.write_group(&group),
        };
        let written = match result {
            Ok(w) => w,
            Err(e) => {
                let msg = match &self.poisoned {
                    Some(p) => p.clone(),
                    None => self.poison("append", &e),
                };
                for req in group {
                    if let Request::Append { callback, .. } = req {
                        callback.complete(Err(LogStoreError::Poisoned(msg.clone()).into_io()));
                    }
                }
                return;
            }
        };
        {
            let mut st = self.shared.state.write();
            st.disk.extend(written);
            for req in &group {
                if let Request::Append {
                    ticket, records, ..
                } = req
                {
                    for (index, _) in records {
                        if let Some(slot) = st.cache.get_mut(index) {
                            if slot.ticket == Some(*ticket) {
                                slot.ticket = None;
                            }
                        }
                    }
                }
            }
            st.evict();
        }
        for req in group {
            if let Request::Append { callback, .. } = req {
                callback.complete(Ok(()));
            }
        }
    }

    /// Write all records of `group`, rolling segments as needed, fsync, and return their
    /// locations. Nothing is acknowledged by this function.
    fn write_group(&mut self, group: &[Request<C>]) -> Result<Vec<(u64, DiskLoc)>, LogStoreError> {
        let mut written = Vec::new();
        self.buf.clear();
        let mut chunk_last: Option<u64> = None;
        for req in group {
            let Request::Append { records, .. } = req else {
                continue;
            };
            for (index, bytes) in records {
                let cur = self.active_info().len + self.buf.len() as u64;
                if cur >= self.segment_size && cur > SEGMENT_HEADER_LEN {
                    self.flush_chunk(chunk_last.take())?;
                    self.roll()?;
                }
                let base = self.active_info().len;
                let offset = base + self.buf.len() as u64;
                encode_record(&mut self.buf, *index, base, bytes);
                let len = record_len(bytes.len()) as u32;
                written.push((
                    *index,
                    DiskLoc {
                        seq: self.active,
                        offset,
                        len,
                    },
                ));
                chunk_last = Some(*index);
            }
        }
        self.flush_chunk(chunk_last)?;
        Ok(written)
    }

    fn active_info(&mut self) -> &mut SegInfo {
        self.segments
            .get_mut(&self.active)
            .expect("active segment is tracked")
    }

    /// Write the buffered batch at the end of the active segment and fdatasync it.
    fn flush_chunk(&mut self, last_index: Option<u64>) -> Result<(), LogStoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(segment_file_name(self.active));
        let seg = self
            .segments
            .get_mut(&self.active)
            .expect("active segment is tracked");
        let buf = &self.buf;
        let io = |e| LogStoreError::io(path.clone(), e);
        #[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
        let fp = |name: &str| {
            LogStoreError::io(path.clone(), io::Error::other(format!("failpoint {name}")))
        };
        fail::fail_point!("raft-log-before-write", |_| Err(fp(
            "raft-log-before-write"
        )));
        fail::fail_point!("raft-log-torn-write", |arg: Option<String>| {
            let n = arg
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(buf.len() / 2);
            let _ = seg.file.write_all_at(&buf[..n.min(buf.len())], seg.len);
            Err(fp("raft-log-torn-write"))
        });
        seg.file.write_all_at(buf, seg.len).map_err(io)?;
        fail::fail_point!("raft-log-after-write-before-fsync", |_| Err(fp(
            "raft-log-after-write-before-fsync"
        )));
        fail::fail_point!("raft-log-before-fsync", |_| Err(fp(
            "raft-log-before-fsync"
        )));
        seg.file.sync_data().map_err(io)?;
        self.shared
            .fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        seg.len += buf.len() as u64;
        if last_index.is_some() {
            seg.last_index = last_index;
        }
        self.buf.clear();
        Ok(())
    }

    /// Create the next segment and make it active.
    fn roll(&mut self) -> Result<(), LogStoreError> {
        let seq = self.active + 1;
        let path = self.dir.join(segment_file_name(seq));
        fail::fail_point!("raft-log-before-roll", |_| Err(LogStoreError::io(
            path.clone(),
            io::Error::other("failpoint raft-log-before-roll")
        )));
        let (_, file) = create_segment(&self.dir, seq).map_err(|e| LogStoreError::io(&path, e))?;
        let file = Arc::new(file);
        self.shared.state.write().files.insert(seq, file.clone());
        self.segments.insert(
            seq,
            SegInfo {
                file,
                len: SEGMENT_HEADER_LEN,
                last_index: None,
            },
        );
        self.active = seq;
        tracing::debug!(segment = %path.display(), "rolled to a new raft log segment");
        Ok(())
    }

    fn handle_other(&mut self, req: Request<C>) {
        let (result, done) = match req {
            Request::Append { .. } => unreachable!("appends are grouped"),
            Request::SaveCommitted => {
                self.save_committed(false);
                return;
            }
            Request::Flush { done } => (Ok(()), done),
            Request::Truncate {
                index,
                ticket,
                done,
            } => (
                self.guarded(|w| w.truncate(index, ticket), "truncate"),
                done,
            ),
            Request::Purge { log_id, done } => (self.guarded(|w| w.purge(&log_id), "purge"), done),
            Request::SaveVote { vote, done } => {
                let r = self.guarded(
                    |w| {
                        w.vote_file
                            .write(&vote, true)
                            .map_err(|e| LogStoreError::io(w.vote_file.path(), e))
                    },
                    "save vote",
                );
                (r, done)
            }
        };
        let _ = done.send(result);
    }

    /// Run `f` unless poisoned; poison on failure.
    fn guarded(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), LogStoreError>,
        what: &str,
    ) -> Result<(), LogStoreError> {
        if let Some(p) = &self.poisoned {
            return Err(LogStoreError::Poisoned(p.clone()));
        }
        f(self).inspect_err(|e| {
            self.poison(what, e);
        })
    }

    /// Physically remove every record at `>= index`: delete later segments (newest first, so a
    /// crash leaves a prefix of the log), cut the segment holding `index`, fsync.
    fn truncate(&mut self, index: u64, ticket: u64) -> Result<(), LogStoreError> {
        fail::fail_point!("raft-log-truncate", |_| Err(LogStoreError::io(
            &self.dir,
            io::Error::other("failpoint raft-log-truncate")
        )));
        let first = self
            .shared
            .state
            .read()
            .disk
            .range(index..)
            .next()
            .map(|(_, l)| *l);
        if let Some(loc) = first {
            let later: Vec<u64> = self
                .segments
                .range(loc.seq + 1..)
                .rev()
                .map(|(s, _)| *s)
                .collect();
            let last_kept = {
                let mut st = self.shared.state.write();
                st.disk.split_off(&index);
                for s in &later {
                    st.files.remove(s);
                }
                st.disk
                    .range(..index)
                    .next_back()
                    .filter(|(_, l)| l.seq == loc.seq)
                    .map(|(k, _)| *k)
            };
            for s in &later {
                let path = self.dir.join(segment_file_name(*s));
                std::fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
                self.segments.remove(s);
            }
            if !later.is_empty() {
                sync_dir(&self.dir).map_err(|e| LogStoreError::io(&self.dir, e))?;
            }
            fail::fail_point!("raft-log-truncate-after-delete", |_| Err(
                LogStoreError::io(
                    &self.dir,
                    io::Error::other("failpoint raft-log-truncate-after-delete")
                )
            ));
            let path = self.dir.join(segment_file_name(loc.seq));
            let seg = self
                .segments
                .get_mut(&loc.seq)
                .expect("segment of a disk record is tracked");
            seg.file
                .set_len(loc.offset)
                .map_err(|e| LogStoreError::io(&path, e))?;
            seg.file
                .sync_all()
                .map_err(|e| LogStoreError::io(&path, e))?;
            seg.len = loc.offset;
            seg.last_index = last_kept;
            self.active = loc.seq;
        }
        let mut st = self.shared.state.write();
        if st.latest_truncate == ticket {
            st.disk_limit = None;
        }
        Ok(())
    }

    /// Persist the purge point, then delete the leading segments that hold only purged records.
    fn purge(&mut self, log_id: &LogId<C::NodeId>) -> Result<(), LogStoreError> {
        self.purged_file
            .write(&Some(log_id.clone()), true)
            .map_err(|e| LogStoreError::io(self.purged_file.path(), e))?;
        fail::fail_point!("raft-log-purge", |_| Err(LogStoreError::io(
            &self.dir,
            io::Error::other("failpoint raft-log-purge")
        )));
        let upto = log_id.index;
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .take_while(|(seq, s)| **seq != self.active && s.last_index.is_none_or(|l| l <= upto))
            .map(|(seq, _)| *seq)
            .collect();
        {
            let mut st = self.shared.state.write();
            let keep = st.disk.split_off(&upto.saturating_add(1));
            st.disk = keep;
            for s in &doomed {
                st.files.remove(s);
            }
        }
        for s in &doomed {
            let path = self.dir.join(segment_file_name(*s));
            std::fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
            self.segments.remove(s);
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir).map_err(|e| LogStoreError::io(&self.dir, e))?;
            tracing::debug!(
                count = doomed.len(),
                upto,
                "deleted purged raft log segments"
            );
        }
        Ok(())
    }

    /// Persist the latest committed log id if it changed (best effort, not fsynced).
    ///
    /// The commit index advances with every entry; writing the hint file (create, write,
    /// rename) each time cost a few percent of a busy member's CPU. Unless `force`d, it is
    /// written at most every [`COMMITTED_INTERVAL`]; a value held back is written when the
    /// interval has passed, even if nothing else arrives (see [`Writer::run`]). A stale hint
    /// only means a restarted member re-learns the commit index from the group.
    fn save_committed(&mut self, force: bool) {
        if self.poisoned.is_some() {
            return;
        }
        if !force
            && self
                .committed_saved_at
                .is_some_and(|t| t.elapsed() < COMMITTED_INTERVAL)
        {
            self.committed_dirty = true;
            return;
        }
        self.committed_dirty = false;
        let committed = self.shared.state.read().committed.clone();
        if committed == self.committed_written {
            return;
        }
        self.committed_saved_at = Some(Instant::now());
        match self.committed_file.write(&committed, false) {
            Ok(()) => self.committed_written = committed,
            Err(e) => tracing::warn!(error = %e, "could not persist the raft committed log id"),
        }
    }
}
