//! Unit tests of the log store as a whole: persistence across reopen, truncate and purge across
//! segment boundaries, vote persistence, torn tails and refused corruption.

use std::io::Cursor;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogId, RaftLogReader, Vote};

use crate::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use crate::{LogStore, LogStoreError, LogStoreOptions};

openraft::declare_raft_types!(pub TC: D = String, R = String);

fn lid(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn ent(term: u64, index: u64) -> Entry<TC> {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(format!("value-{index}-{}", "x".repeat(40))),
    }
}

/// Tiny segments and no cache of durable entries: every read after the fsync hits the files.
fn small() -> LogStoreOptions {
    LogStoreOptions {
        segment_size: 600,
        cache_bytes: 0,
        ..Default::default()
    }
}

fn open(dir: &Path, opts: LogStoreOptions) -> LogStore<TC> {
    LogStore::open(dir, opts).expect("open")
}

async fn append(s: &mut LogStore<TC>, term: u64, range: std::ops::RangeInclusive<u64>) {
    let entries: Vec<_> = range.map(|i| ent(term, i)).collect();
    s.blocking_append(entries).await.expect("append");
}

async fn indexes(s: &mut LogStore<TC>) -> Vec<(u64, u64)> {
    s.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.get_log_id().leader_id.term, e.get_log_id().index))
        .collect()
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

fn expect(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
    range.map(|i| (term, i)).collect()
}

#[tokio::test]
async fn append_read_reopen_across_segments() {
    for opts in [small(), LogStoreOptions::default()] {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path(), opts.clone());
            let st = s.get_log_state().await.unwrap();
            assert_eq!((st.last_purged_log_id, st.last_log_id), (None, None));
            for chunk in 0..10u64 {
                append(&mut s, 1, chunk * 10 + 1..=chunk * 10 + 10).await;
            }
            assert_eq!(indexes(&mut s).await, expect(1, 1..=100));
            let part = s.try_get_log_entries(37..40).await.unwrap();
            assert_eq!(
                part.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                vec![37, 38, 39]
            );
            assert_eq!(
                s.get_log_state().await.unwrap().last_log_id,
                Some(lid(1, 100))
            );
        }
        if opts.segment_size == 600 {
            assert!(segment_count(dir.path()) > 3);
        }
        let mut s = open(dir.path(), opts.clone());
        assert_eq!(indexes(&mut s).await, expect(1, 1..=100));
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(lid(1, 100))
        );
        let mut r = s.get_log_reader().await;
        assert_eq!(r.try_get_log_entries(99..).await.unwrap().len(), 2);
        append(&mut s, 2, 101..=101).await;
        assert_eq!(
            s.try_get_log_entries(101..=101).await.unwrap()[0].log_id,
            lid(2, 101)
        );
    }
}

#[tokio::test]
async fn limited_reads_respect_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(
        dir.path(),
        LogStoreOptions {
            max_read_bytes: 200,
            ..small()
        },
    );
    append(&mut s, 1, 1..=50).await;
    let got = s.limited_get_log_entries(1, 51).await.unwrap();
    assert!(!got.is_empty() && got.len() < 50, "{}", got.len());
    assert_eq!(got[0].log_id.index, 1);
    let one = s.limited_get_log_entries(50, 51).await.unwrap();
    assert_eq!(one.len(), 1);
}

#[tokio::test]
async fn truncate_across_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small());
        append(&mut s, 1, 1..=100).await;
        let before = segment_count(dir.path());
        s.truncate(lid(1, 30)).await.unwrap();
        assert!(segment_count(dir.path()) < before);
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(lid(1, 29))
        );
        assert_eq!(indexes(&mut s).await, expect(1, 1..=29));
        // Appending over the cut point is now allowed; appending again without truncate is not.
        append(&mut s, 2, 30..=40).await;
        let err = s.blocking_append([ent(2, 35)]).await.unwrap_err();
        assert!(err.to_string().contains("without a truncate"), "{err}");
        // Truncate beyond the end is a no-op; truncate everything works.
        s.truncate(lid(2, 41)).await.unwrap();
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(lid(2, 40))
        );
    }
    let mut s = open(dir.path(), small());
    let mut want = expect(1, 1..=29);
    want.extend(expect(2, 30..=40));
    assert_eq!(indexes(&mut s).await, want);
    s.truncate(lid(1, 1)).await.unwrap();
    assert_eq!(indexes(&mut s).await, vec![]);
    assert_eq!(s.get_log_state().await.unwrap().last_log_id, None);
    drop(s);
    let mut s = open(dir.path(), small());
    assert_eq!(indexes(&mut s).await, vec![]);
    append(&mut s, 3, 1..=3).await;
    assert_eq!(indexes(&mut s).await, expect(3, 1..=3));
}

/// Truncate while earlier appends are still queued, then re-append: reads must never see the
/// stale records, with the cache disabled.
#[tokio::test]
async fn truncate_and_reappend_with_writes_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small());
    for round in 0..20u64 {
        let (tx, rx) = std::sync::mpsc::channel();
        let base = round * 5;
        let entries: Vec<_> = (base + 1..=base + 10).map(|i| ent(round + 1, i)).collect();
        s.append_then(entries, move |r| tx.send(r.is_ok()).unwrap())
            .unwrap();
        s.truncate(lid(round + 1, base + 6)).await.unwrap();
        assert!(rx.recv().unwrap());
        let got = s.try_get_log_entries(..).await.unwrap();
        assert_eq!(got.last().unwrap().log_id, lid(round + 1, base + 5));
        for w in got.windows(2) {
            assert_eq!(w[0].log_id.index + 1, w[1].log_id.index);
        }
    }
    drop(s);
    let mut s = open(dir.path(), small());
    let got = indexes(&mut s).await;
    assert_eq!(got.len(), 100);
    assert_eq!(got.last(), Some(&(20, 100)));
}

#[tokio::test]
async fn purge_across_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small());
        append(&mut s, 1, 1..=100).await;
        let before = segment_count(dir.path());
        s.purge(lid(1, 50)).await.unwrap();
        assert!(segment_count(dir.path()) < before);
        assert_eq!(indexes(&mut s).await, expect(1, 51..=100));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(lid(1, 50)));
        assert_eq!(st.last_log_id, Some(lid(1, 100)));
        // Purging less than already purged is a no-op.
        s.purge(lid(1, 10)).await.unwrap();
        assert_eq!(
            s.get_log_state().await.unwrap().last_purged_log_id,
            Some(lid(1, 50))
        );
    }
    {
        let mut s = open(dir.path(), small());
        assert_eq!(indexes(&mut s).await, expect(1, 51..=100));
        assert_eq!(
            s.get_log_state().await.unwrap().last_purged_log_id,
            Some(lid(1, 50))
        );
        // Purge past the end (a snapshot was installed): the log is empty, last = purged.
        s.purge(lid(3, 150)).await.unwrap();
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(lid(3, 150)));
        assert_eq!(indexes(&mut s).await, vec![]);
        // Entries at or below the purge point are already in the snapshot: ignored.
        s.blocking_append([ent(3, 120)]).await.unwrap();
        assert_eq!(indexes(&mut s).await, vec![]);
        append(&mut s, 3, 151..=160).await;
    }
    let mut s = open(dir.path(), small());
    assert_eq!(indexes(&mut s).await, expect(3, 151..=160));
    let st = s.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(lid(3, 150)));
    assert_eq!(st.last_log_id, Some(lid(3, 160)));
    let err = s.truncate(lid(3, 150)).await.unwrap_err();
    assert!(err.to_string().contains("purged"), "{err}");
}

#[tokio::test]
async fn vote_and_committed_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small());
        assert_eq!(s.read_vote().await.unwrap(), None);
        assert_eq!(s.read_committed().await.unwrap(), None);
        s.save_vote(&Vote::new(3, 2)).await.unwrap();
        append(&mut s, 3, 1..=5).await;
        s.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
        s.save_committed(Some(lid(3, 4))).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(
            s.read_vote().await.unwrap(),
            Some(Vote::new_committed(4, 1))
        );
    }
    let mut s = open(dir.path(), small());
    assert_eq!(
        s.read_vote().await.unwrap(),
        Some(Vote::new_committed(4, 1))
    );
    assert_eq!(s.read_committed().await.unwrap(), Some(lid(3, 4)));
    drop(s);

    // A damaged committed hint is ignored; a damaged vote refuses to open.
    std::fs::write(dir.path().join("committed"), b"garbage").unwrap();
    let mut s = open(dir.path(), small());
    assert_eq!(s.read_committed().await.unwrap(), None);
    drop(s);
    std::fs::write(dir.path().join("vote"), b"SHMFgarbage!").unwrap();
    let err = LogStore::<TC>::open(dir.path(), small()).err().unwrap();
    assert!(matches!(err, LogStoreError::CorruptMeta { .. }), "{err}");
    assert!(err.to_string().contains("vote file"), "{err}");
}

/// Write three batches in one segment and return (dir, segment bytes, start of last record).
async fn three_batches() -> (tempfile::TempDir, Vec<u8>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), LogStoreOptions::default());
    append(&mut s, 1, 1..=4).await;
    append(&mut s, 1, 5..=8).await;
    append(&mut s, 1, 9..=10).await;
    drop(s);
    let path = dir.path().join(segment_file_name(1));
    let data = std::fs::read(&path).unwrap();
    let scan = crate::segment::scan(&data, None);
    assert_eq!(scan.records.len(), 10);
    (dir, data, scan.records[9].offset)
}

#[tokio::test]
async fn torn_tail_is_cut_on_reopen_at_every_offset() {
    let (dir, data, last) = three_batches().await;
    let path = dir.path().join(segment_file_name(1));
    for cut in last + 1..data.len() as u64 {
        std::fs::write(&path, &data[..cut as usize]).unwrap();
        let mut s = open(dir.path(), LogStoreOptions::default());
        assert_eq!(indexes(&mut s).await, expect(1, 1..=9), "cut at {cut}");
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(lid(1, 9))
        );
        drop(s);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            last,
            "tail cut back to the record"
        );
    }
    // Trailing zeroes (file size extended, data not written) are a torn tail too.
    let mut padded = data.clone();
    padded.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&path, &padded).unwrap();
    let mut s = open(dir.path(), LogStoreOptions::default());
    assert_eq!(indexes(&mut s).await, expect(1, 1..=10));
}

#[tokio::test]
async fn corruption_in_the_middle_is_refused() {
    let (dir, data, _) = three_batches().await;
    let path = dir.path().join(segment_file_name(1));
    let scan = crate::segment::scan(&data, None);
    // A flipped byte in the first batch (records 1-4): later batches follow, so it is not a
    // torn tail.
    let pos = scan.records[2].offset as usize + 20;
    let mut bad = data.clone();
    bad[pos] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    let err = LogStore::<TC>::open(dir.path(), LogStoreOptions::default())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LogStoreError::CorruptSegment { .. }), "{msg}");
    assert!(
        msg.contains("00000001.log") && msg.contains("Restore this member"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("offset {}", scan.records[2].offset)),
        "{msg}"
    );
    // The file was not modified by the refused open.
    assert_eq!(std::fs::read(&path).unwrap(), bad);
}

#[tokio::test]
async fn corruption_in_a_non_last_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small());
    append(&mut s, 1, 1..=60).await;
    drop(s);
    assert!(segment_count(dir.path()) >= 3);
    // Cut the first segment short: a torn tail, but not in the last segment.
    let first = dir.path().join(segment_file_name(1));
    let data = std::fs::read(&first).unwrap();
    std::fs::write(&first, &data[..data.len() - 3]).unwrap();
    let err = LogStore::<TC>::open(dir.path(), small()).err().unwrap();
    assert!(err.to_string().contains("not the last"), "{err}");
    std::fs::write(&first, &data).unwrap();

    // A missing middle segment is a hole.
    let second = dir.path().join(segment_file_name(2));
    std::fs::rename(&second, dir.path().join("moved-away")).unwrap();
    let err = LogStore::<TC>::open(dir.path(), small()).err().unwrap();
    assert!(matches!(err, LogStoreError::MissingSegment { .. }), "{err}");
    assert!(err.to_string().contains("00000002.log"), "{err}");
    std::fs::rename(dir.path().join("moved-away"), &second).unwrap();

    // A foreign file with a segment name.
    let mut s = open(dir.path(), small());
    assert_eq!(indexes(&mut s).await, expect(1, 1..=60));
    drop(s);
    let first_data = std::fs::read(&first).unwrap();
    let mut foreign = first_data.clone();
    foreign[..8].copy_from_slice(b"NOTSHALE");
    std::fs::write(&first, &foreign).unwrap();
    let err = LogStore::<TC>::open(dir.path(), small()).err().unwrap();
    assert!(matches!(err, LogStoreError::Foreign { .. }), "{err}");
}

#[tokio::test]
async fn empty_last_segment_and_leftover_tmp_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small());
    append(&mut s, 1, 1..=3).await;
    drop(s);
    std::fs::write(dir.path().join("00000002.log"), b"SHALE").unwrap();
    std::fs::write(dir.path().join("00000003.log.tmp"), b"partial").unwrap();
    std::fs::write(dir.path().join("vote.tmp"), b"partial").unwrap();
    let mut s = open(dir.path(), small());
    assert_eq!(indexes(&mut s).await, expect(1, 1..=3));
    append(&mut s, 1, 4..=4).await;
    drop(s);
    assert!(!dir.path().join("vote.tmp").exists());
    let mut s = open(dir.path(), small());
    assert_eq!(indexes(&mut s).await, expect(1, 1..=4));
    assert!(
        std::fs::metadata(dir.path().join("00000001.log"))
            .unwrap()
            .len()
            > SEGMENT_HEADER_LEN
    );
}

#[tokio::test]
async fn many_small_appends_all_complete_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), LogStoreOptions::default());
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 1..=500u64 {
        let tx = tx.clone();
        s.append_then([ent(1, i)], move |r| tx.send((i, r.is_ok())).unwrap())
            .unwrap();
        // Readable immediately, durable or not.
        assert_eq!(s.try_get_log_entries(i..=i).await.unwrap().len(), 1);
    }
    let done: Vec<_> = (0..500).map(|_| rx.recv().unwrap()).collect();
    assert!(done.iter().all(|(_, ok)| *ok));
    assert!(
        done.windows(2).all(|w| w[0].0 < w[1].0),
        "completed in order"
    );
    assert!(s.fsync_count() <= 500);
    drop(s);
    let mut s = open(dir.path(), LogStoreOptions::default());
    assert_eq!(indexes(&mut s).await, expect(1, 1..=500));
}

#[test]
fn test_type_config_is_usable() {
    // `declare_raft_types!` refers to `Cursor` unqualified.
    let _ = Cursor::new(Vec::<u8>::new());
}
