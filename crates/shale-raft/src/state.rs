//! The in-memory view of the log shared by the store, its readers and the writer thread.
//!
//! # Two indexes
//!
//! * `cache` holds the entries most recently appended, keyed by log index. An entry appended
//!   but not yet fsynced is *pending* (`ticket = Some`) and is never evicted, which is what makes
//!   `append()` entries readable the moment it returns. Once the writer has made an entry
//!   durable it becomes evictable; eviction removes the oldest entries when the cache holds more
//!   than its byte budget. Most reads (apply, replication of the tail) are served from here.
//! * `disk` maps log index → (segment, offset, length) for records that are durable on disk. It
//!   is changed only by the writer thread, after the corresponding file operation completed, so
//!   it always describes what is physically on disk (minus records at or below the purge point).
//!
//! # The logical view runs ahead of the disk
//!
//! `append`, `truncate` and `purge` update `last_log_id`, `last_purged` and `cache` at once (in
//! call order) and queue the file work to the writer. So `disk` may still hold records that were
//! logically truncated or purged. Reads are therefore always clamped to
//! `(last_purged, last_log_id]`, and while a truncation at index `i` is queued but not yet done
//! (`disk_limit = Some(i)`) disk records at `>= i` are invisible — their replacements are pending
//! in the cache, and entries at `>= disk_limit` are not evicted from the cache.
//!
//! Readers hold the read lock while they `pread`, and the writer removes records from `disk`
//! (under the write lock) before it shortens or deletes a file, so a reader never reads a range
//! that is being cut.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bincode::Options;
use openraft::{LogId, RaftLogId, RaftTypeConfig, Vote};
use parking_lot::RwLock;

use crate::error::LogStoreError;
use crate::meta_file::codec;
use crate::segment::{decode_record, segment_file_name};

/// Where a durable record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskLoc {
    pub seq: u64,
    pub offset: u64,
    pub len: u32,
}

/// A cached entry.
pub(crate) struct CacheSlot<C: RaftTypeConfig> {
    pub entry: C::Entry,
    /// `Some(ticket)` while the append that carried it is not yet durable.
    pub ticket: Option<u64>,
    /// Serialized size, used for the cache budget and read limits.
    pub size: u64,
}

pub(crate) struct State<C: RaftTypeConfig> {
    pub vote: Option<Vote<C::NodeId>>,
    pub committed: Option<LogId<C::NodeId>>,
    pub last_purged: Option<LogId<C::NodeId>>,
    /// Id of the last present entry, or `last_purged` if there is none.
    pub last_log_id: Option<LogId<C::NodeId>>,
    pub cache: BTreeMap<u64, CacheSlot<C>>,
    pub cache_bytes: u64,
    pub cache_budget: u64,
    pub disk: BTreeMap<u64, DiskLoc>,
    pub files: HashMap<u64, Arc<File>>,
    /// Set while a truncation is queued: disk records at `>=` this index are stale.
    pub disk_limit: Option<u64>,
    /// Ticket of the most recently issued truncation.
    pub latest_truncate: u64,
    /// Set when the writer failed; every later write is refused.
    pub poisoned: Option<String>,
}

impl<C: RaftTypeConfig> State<C> {
    pub fn new(cache_budget: u64) -> Self {
        Self {
            vote: None,
            committed: None,
            last_purged: None,
            last_log_id: None,
            cache: BTreeMap::new(),
            cache_bytes: 0,
            cache_budget,
            disk: BTreeMap::new(),
            files: HashMap::new(),
            disk_limit: None,
            latest_truncate: 0,
            poisoned: None,
        }
    }

    /// Index of the first entry that may exist.
    fn first_index(&self) -> u64 {
        self.last_purged.as_ref().map_or(0, |l| l.index + 1)
    }

    /// Index of the last present entry, if any.
    pub fn last_index(&self) -> Option<u64> {
        match (&self.last_log_id, &self.last_purged) {
            (Some(l), Some(p)) if l.index <= p.index => None,
            (Some(l), _) => Some(l.index),
            (None, _) => None,
        }
    }

    fn disk_visible(&self, index: u64) -> bool {
        self.disk_limit.is_none_or(|l| index < l)
    }

    /// Evict durable entries from the front of the cache while it is over budget.
    pub fn evict(&mut self) {
        while self.cache_bytes > self.cache_budget {
            let Some((&index, slot)) = self.cache.first_key_value() else {
                break;
            };
            let readable =
                slot.ticket.is_none() && self.disk_visible(index) && self.disk.contains_key(&index);
            let purged = index < self.first_index();
            if !readable && !purged {
                break;
            }
            let size = slot.size;
            self.cache.pop_first();
            self.cache_bytes -= size;
        }
    }

    /// Remove cache entries at `>= index`.
    pub fn cache_remove_from(&mut self, index: u64) {
        let tail = self.cache.split_off(&index);
        self.cache_bytes -= tail.values().map(|s| s.size).sum::<u64>();
    }

    /// Remove cache entries at `<= index`.
    pub fn cache_remove_upto(&mut self, index: u64) {
        let keep = self.cache.split_off(&index.saturating_add(1));
        let gone = std::mem::replace(&mut self.cache, keep);
        self.cache_bytes -= gone.values().map(|s| s.size).sum::<u64>();
    }

    /// The log id of the last present entry below `index`, reading it from disk if needed.
    pub fn last_log_id_below(
        &self,
        index: u64,
        dir: &std::path::Path,
    ) -> Result<Option<LogId<C::NodeId>>, LogStoreError> {
        let first = self.first_index();
        let cached = self.cache.range(first..index).next_back().map(|(k, _)| *k);
        let limit = self.disk_limit.map_or(index, |l| l.min(index));
        let on_disk = self
            .disk
            .range(first..limit)
            .next_back()
            .map(|(k, l)| (*k, *l));
        match (cached, on_disk) {
            (Some(c), Some((d, _))) if c >= d => {
                Ok(Some(self.cache[&c].entry.get_log_id().clone()))
            }
            (Some(c), None) => Ok(Some(self.cache[&c].entry.get_log_id().clone())),
            (_, Some((d, loc))) => {
                let e = read_run::<C>(self, dir, &[(d, loc)])?;
                Ok(e.into_iter().next().map(|e| e.get_log_id().clone()))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Everything shared between [`crate::LogStore`], [`crate::LogReader`] and the writer.
pub(crate) struct Shared<C: RaftTypeConfig> {
    pub dir: PathBuf,
    pub state: RwLock<State<C>>,
    /// Number of batch fsyncs done by the writer (observability, group-commit tests).
    pub fsyncs: std::sync::atomic::AtomicU64,
}

/// Convert any `RangeBounds` into an inclusive `[lo, hi]`, `None` if empty.
fn inclusive(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let lo = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (lo <= hi).then_some((lo, hi))
}

enum Source<'a, C: RaftTypeConfig> {
    Cache(&'a C::Entry),
    Disk(u64, DiskLoc),
}

impl<C: RaftTypeConfig> Shared<C>
where
    C::Entry: Clone,
{
    /// Read the present entries in `range`, stopping once `byte_limit` is reached (at least
    /// one entry is returned if any exists).
    pub fn read_range(
        &self,
        range: impl RangeBounds<u64>,
        byte_limit: Option<u64>,
    ) -> Result<Vec<C::Entry>, LogStoreError> {
        let st = self.state.read();
        let Some((lo, hi)) = inclusive(&range) else {
            return Ok(Vec::new());
        };
        let Some(last) = st.last_index() else {
            return Ok(Vec::new());
        };
        let lo = lo.max(st.first_index());
        let hi = hi.min(last);
        if lo > hi {
            return Ok(Vec::new());
        }

        // Merge the cache and the visible part of the disk index, preferring the cache.
        let disk_hi = st.disk_limit.map_or(hi, |l| hi.min(l.saturating_sub(1)));
        let mut cache_it = st.cache.range(lo..=hi).peekable();
        let mut disk_it = if st.disk_visible(lo) && lo <= disk_hi {
            Some(st.disk.range(lo..=disk_hi).peekable())
        } else {
            None
        };
        let mut plan: Vec<Source<'_, C>> = Vec::new();
        let mut bytes = 0u64;
        loop {
            if byte_limit.is_some_and(|l| bytes >= l) && !plan.is_empty() {
                break;
            }
            let c = cache_it.peek().map(|(k, _)| **k);
            let d = disk_it.as_mut().and_then(|it| it.peek().map(|(k, _)| **k));
            let next = match (c, d) {
                (None, None) => break,
                (Some(c), Some(d)) if c <= d => {
                    if c == d {
                        disk_it.as_mut().map(|it| it.next());
                    }
                    let (_, slot) = cache_it.next().expect("peeked");
                    bytes += slot.size;
                    Source::Cache(&slot.entry)
                }
                (Some(_), None) => {
                    let (_, slot) = cache_it.next().expect("peeked");
                    bytes += slot.size;
                    Source::Cache(&slot.entry)
                }
                (_, Some(_)) => {
                    let (k, loc) = disk_it.as_mut().and_then(|it| it.next()).expect("peeked");
                    bytes += loc.len as u64;
                    Source::Disk(*k, *loc)
                }
            };
            plan.push(next);
        }

        // Execute: cached entries are cloned, contiguous disk records read with one pread.
        let mut out = Vec::with_capacity(plan.len());
        let mut run: Vec<(u64, DiskLoc)> = Vec::new();
        for src in plan {
            match src {
                Source::Cache(e) => {
                    out.extend(read_run::<C>(&st, &self.dir, &run)?);
                    run.clear();
                    out.push(e.clone());
                }
                Source::Disk(index, loc) => {
                    let contiguous = run.last().is_some_and(|(_, p)| {
                        p.seq == loc.seq && p.offset + p.len as u64 == loc.offset
                    });
                    if !contiguous {
                        out.extend(read_run::<C>(&st, &self.dir, &run)?);
                        run.clear();
                    }
                    run.push((index, loc));
                }
            }
        }
        out.extend(read_run::<C>(&st, &self.dir, &run)?);
        Ok(out)
    }
}

/// Read and decode a run of records that are contiguous in one segment.
pub(crate) fn read_run<C: RaftTypeConfig>(
    st: &State<C>,
    dir: &std::path::Path,
    run: &[(u64, DiskLoc)],
) -> Result<Vec<C::Entry>, LogStoreError> {
    let (Some((_, first)), Some((_, last))) = (run.first(), run.last()) else {
        return Ok(Vec::new());
    };
    let name = segment_file_name(first.seq);
    let corrupt = |offset: u64, reason: String| LogStoreError::CorruptSegment {
        file: name.clone(),
        offset,
        reason,
    };
    let file = st
        .files
        .get(&first.seq)
        .ok_or_else(|| corrupt(first.offset, "segment file is not open".into()))?;
    let total = (last.offset + last.len as u64 - first.offset) as usize;
    let mut buf = vec![0u8; total];
    file.read_exact_at(&mut buf, first.offset)
        .map_err(|e| LogStoreError::io(dir.join(&name), e))?;
    let mut out = Vec::with_capacity(run.len());
    for (index, loc) in run {
        let rel = loc.offset - first.offset;
        let (rec, bytes) = decode_record(&buf, rel)
            .map_err(|b| corrupt(loc.offset, format!("{b} while reading index {index}")))?;
        if rec.index != *index {
            return Err(corrupt(
                loc.offset,
                format!("expected index {index}, found {}", rec.index),
            ));
        }
        let entry: C::Entry = codec()
            .deserialize(bytes)
            .map_err(|e| LogStoreError::Codec {
                index: *index,
                reason: format!("{e} (segment {name} offset {})", loc.offset),
            })?;
        if entry.get_log_id().index != *index {
            return Err(corrupt(
                loc.offset,
                format!(
                    "record for index {index} holds entry {}",
                    entry.get_log_id()
                ),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}
