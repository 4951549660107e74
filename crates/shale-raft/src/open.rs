//! Recovery: turn the files of a log directory into the in-memory state of a [`crate::LogStore`].
//!
//! Order of work, and why:
//!
//! 1. Read `purged`, `vote` (both must be intact or open fails) and `committed` (a damaged one is
//!    ignored — it is only a hint).
//! 2. List segments, remove leftover `*.tmp` files, and require consecutive sequence numbers (a
//!    gap means a segment file was lost: refuse).
//! 3. Read and scan every segment (see `segment.rs`). Any break in a segment other than the last
//!    one, or a break in the last one followed by data of a later batch, refuses to open. A torn
//!    tail of the last segment is cut off (`set_len` + fsync) and logged. A last segment shorter
//!    than its header cannot come from our atomic creation; it is removed all the same since it
//!    holds no record.
//! 4. Index the records above the purge point. Leading segments holding only purged records (a
//!    crash between persisting the purge point and deleting them) are deleted now.
//! 5. Decode the last record to learn the last log id; make sure `committed` does not point past
//!    the end of the log.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use openraft::{LogId, RaftLogId, RaftTypeConfig, Vote};

use crate::error::LogStoreError;
use crate::log_store::{committed_file, new_state, purged_file, vote_file, LogStoreOptions};
use crate::segment::{
    check_header, create_segment, list_segments, scan, segment_file_name, sync_dir, ScanEnd,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::state::{read_run, DiskLoc, State};
use crate::writer::SegInfo;

pub(crate) struct Recovered<C: RaftTypeConfig> {
    pub state: State<C>,
    pub segments: BTreeMap<u64, SegInfo>,
    pub active: u64,
    pub committed_written: Option<LogId<C::NodeId>>,
}

pub(crate) fn recover<C: RaftTypeConfig>(
    dir: &Path,
    opts: &LogStoreOptions,
) -> Result<Recovered<C>, LogStoreError> {
    std::fs::create_dir_all(dir).map_err(|e| LogStoreError::io(dir, e))?;
    let io_dir = |e| LogStoreError::io(dir, e);

    let purged: Option<LogId<C::NodeId>> = purged_file(dir)
        .read::<Option<LogId<C::NodeId>>>()?
        .flatten();
    let vote: Option<Vote<C::NodeId>> = vote_file(dir).read()?;
    let committed: Option<LogId<C::NodeId>> =
        match committed_file(dir).read::<Option<LogId<C::NodeId>>>() {
            Ok(c) => c.flatten(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the damaged committed-log-id hint");
                None
            }
        };
    let committed_written = committed.clone();

    let listed = list_segments(dir).map_err(io_dir)?;
    for pair in listed.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(LogStoreError::MissingSegment {
                file: segment_file_name(pair[0].0 + 1),
                before: segment_file_name(pair[0].0),
                after: segment_file_name(pair[1].0),
            });
        }
    }

    let mut st = new_state::<C>(opts);
    let mut segments = BTreeMap::new();
    let mut prev_index: Option<u64> = None;
    let purged_index = purged.as_ref().map(|p| p.index);
    let n = listed.len();
    for (i, (seq, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == n;
        let name = segment_file_name(seq);
        let data = std::fs::read(&path).map_err(|e| LogStoreError::io(&path, e))?;
        if let Err(reason) = check_header(&data) {
            if is_last && data.len() < SEGMENT_HEADER_LEN as usize {
                tracing::warn!(file = %path.display(), %reason, "removing a last segment without a complete header");
                std::fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
                sync_dir(dir).map_err(io_dir)?;
                continue;
            }
            if data.len() < 8 || &data[..8] != SEGMENT_MAGIC {
                return Err(LogStoreError::Foreign { path, reason });
            }
            return Err(LogStoreError::CorruptSegment {
                file: name,
                offset: 0,
                reason,
            });
        }
        let scanned = scan(&data, prev_index);
        let valid_len = scanned.valid_len();
        match (&scanned.end, is_last) {
            (ScanEnd::Clean, _) => {}
            (ScanEnd::TornTail { offset, reason }, true) => {
                tracing::warn!(
                    file = %path.display(), offset, %reason, cut_bytes = data.len() as u64 - offset,
                    "cutting off the torn tail of the raft log left by a crash; it was never acknowledged"
                );
            }
            (ScanEnd::TornTail { offset, reason }, false) => {
                return Err(LogStoreError::CorruptSegment {
                    file: name,
                    offset: *offset,
                    reason: format!("{reason}, in a segment that is not the last one"),
                });
            }
            (ScanEnd::Corrupt { offset, reason }, _) => {
                return Err(LogStoreError::CorruptSegment {
                    file: name,
                    offset: *offset,
                    reason: reason.clone(),
                });
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogStoreError::io(&path, e))?;
        if valid_len < data.len() as u64 {
            file.set_len(valid_len)
                .map_err(|e| LogStoreError::io(&path, e))?;
            file.sync_all().map_err(|e| LogStoreError::io(&path, e))?;
        }
        let file = Arc::new(file);
        for r in &scanned.records {
            if purged_index.is_none_or(|p| r.index > p) {
                st.disk.insert(
                    r.index,
                    DiskLoc {
                        seq,
                        offset: r.offset,
                        len: r.len,
                    },
                );
            }
        }
        let last_index = scanned.records.last().map(|r| r.index);
        if last_index.is_some() {
            prev_index = last_index;
        }
        st.files.insert(seq, file.clone());
        segments.insert(
            seq,
            SegInfo {
                file,
                len: valid_len,
                last_index,
            },
        );
    }

    // Leading segments that hold only purged records: finish the interrupted purge.
    let last_seq = segments.keys().next_back().copied();
    let doomed: Vec<u64> = segments
        .iter()
        .take_while(|(seq, s)| {
            Some(**seq) != last_seq
                && purged_index.is_some_and(|p| s.last_index.is_none_or(|l| l <= p))
        })
        .map(|(s, _)| *s)
        .collect();
    for seq in &doomed {
        let path = dir.join(segment_file_name(*seq));
        tracing::info!(file = %path.display(), "deleting a fully purged raft log segment");
        std::fs::remove_file(&path).map_err(|e| LogStoreError::io(&path, e))?;
        segments.remove(seq);
        st.files.remove(seq);
    }
    if !doomed.is_empty() {
        sync_dir(dir).map_err(io_dir)?;
    }

    let active = match segments.keys().next_back() {
        Some(seq) => *seq,
        None => {
            let (_, file) = create_segment(dir, 1).map_err(io_dir)?;
            let file = Arc::new(file);
            st.files.insert(1, file.clone());
            segments.insert(
                1,
                SegInfo {
                    file,
                    len: SEGMENT_HEADER_LEN,
                    last_index: None,
                },
            );
            1
        }
    };

    let last_entry_id = match st.disk.iter().next_back() {
        Some((index, loc)) => {
            let e = read_run::<C>(&st, dir, &[(*index, *loc)])?;
            e.into_iter().next().map(|e| e.get_log_id().clone())
        }
        None => None,
    };
    let last_log_id = match (last_entry_id, &purged) {
        (Some(l), Some(p)) if &l < p => Some(p.clone()),
        (Some(l), _) => Some(l),
        (None, p) => p.clone(),
    };
    let committed = match (&committed, &last_log_id) {
        (Some(c), Some(l)) if c.index > l.index => {
            tracing::warn!(committed = %c, last = %l, "committed hint points past the end of the log; ignoring it");
            None
        }
        (Some(_), None) => None,
        _ => committed,
    };
    tracing::info!(
        dir = %dir.display(),
        segments = segments.len(),
        entries = st.disk.len(),
        last_purged = ?purged,
        last_log_id = ?last_log_id,
        "opened raft log"
    );
    st.vote = vote;
    st.committed = committed;
    st.last_purged = purged;
    st.last_log_id = last_log_id;
    Ok(Recovered {
        state: st,
        segments,
        active,
        committed_written,
    })
}
