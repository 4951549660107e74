//! Crash behaviour of the log store, driven by the named failpoints (feature `failpoints`).
//!
//! Each test injects a failure at one IO step, checks that nothing is acknowledged that is not
//! durable, then "restarts" (drops and reopens the store) and checks that the log is consistent.
//! Failpoints are process-global: `FailScenario` serializes the tests.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fail::FailScenario;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use shale_raft::{LogStore, LogStoreOptions};

openraft::declare_raft_types!(pub TC: D = String, R = String);

fn lid(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn ent(index: u64) -> Entry<TC> {
    Entry {
        log_id: lid(1, index),
        payload: EntryPayload::Normal(format!("value-{index}-{}", "y".repeat(30))),
    }
}

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

async fn append(s: &mut LogStore<TC>, range: std::ops::RangeInclusive<u64>) {
    s.blocking_append(range.map(ent).collect::<Vec<_>>())
        .await
        .expect("append");
}

/// Append without waiting; returns the receiver of the durability result.
fn append_async(
    s: &mut LogStore<TC>,
    range: std::ops::RangeInclusive<u64>,
) -> mpsc::Receiver<std::io::Result<()>> {
    let (tx, rx) = mpsc::channel();
    s.append_then(range.map(ent).collect::<Vec<_>>(), move |r| {
        let _ = tx.send(r);
    })
    .expect("append accepted");
    rx
}

/// Reopen and check the log is a gap-free run `first..=last`; return `last`.
async fn reopen_consistent(dir: &Path, opts: LogStoreOptions, first: u64) -> (LogStore<TC>, u64) {
    let mut s = open(dir, opts);
    let all = s.try_get_log_entries(..).await.unwrap();
    let idx: Vec<u64> = all.iter().map(|e| e.log_id.index).collect();
    let last = idx.last().copied().unwrap_or(first - 1);
    assert_eq!(
        idx,
        (first..=last).collect::<Vec<_>>(),
        "log must be gap-free"
    );
    let st = s.get_log_state().await.unwrap();
    assert_eq!(
        st.last_log_id.map(|l| l.index),
        if last >= first {
            Some(last)
        } else {
            st.last_purged_log_id.map(|p| p.index)
        }
    );
    (s, last)
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

#[tokio::test]
async fn failed_fsync_is_not_acknowledged_and_poisons() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), LogStoreOptions::default());
    append(&mut s, 1..=5).await;
    fail::cfg("raft-log-before-fsync", "return").unwrap();
    let rx = append_async(&mut s, 6..=8);
    assert!(
        rx.recv().unwrap().is_err(),
        "a batch whose fsync failed must not be acknowledged"
    );
    // Everything after a failed fsync is refused.
    assert!(s.blocking_append([ent(9)]).await.is_err());
    assert!(s.save_vote(&Vote::new(2, 1)).await.is_err());
    assert!(s.truncate(lid(1, 3)).await.is_err());
    drop(s);
    fail::remove("raft-log-before-fsync");
    // The unsynced batch may or may not have survived: either way the log is consistent.
    let (mut s, last) = reopen_consistent(dir.path(), LogStoreOptions::default(), 1).await;
    assert!(last == 5 || last == 8, "last {last}");
    append(&mut s, last + 1..=last + 1).await;
    scenario.teardown();
}

#[tokio::test]
async fn failure_before_write_leaves_nothing() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), LogStoreOptions::default());
    append(&mut s, 1..=5).await;
    fail::cfg("raft-log-before-write", "return").unwrap();
    assert!(append_async(&mut s, 6..=8).recv().unwrap().is_err());
    drop(s);
    fail::remove("raft-log-before-write");
    let (_s, last) = reopen_consistent(dir.path(), LogStoreOptions::default(), 1).await;
    assert_eq!(last, 5);
    scenario.teardown();
}

/// A crash in the middle of writing a batch, at many byte counts: the torn tail is cut on
/// reopen, complete records before it are kept, and the log keeps working.
#[tokio::test]
async fn torn_write_is_cut_on_reopen() {
    let scenario = FailScenario::setup();
    for n in [1usize, 7, 8, 23, 24, 40, 80, 81, 120, 160, 200, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), LogStoreOptions::default());
        append(&mut s, 1..=5).await;
        let seg = dir.path().join("00000001.log");
        let before = std::fs::metadata(&seg).unwrap().len();
        fail::cfg("raft-log-torn-write", &format!("return({n})")).unwrap();
        assert!(append_async(&mut s, 6..=8).recv().unwrap().is_err());
        drop(s);
        fail::remove("raft-log-torn-write");
        let (mut s, last) = reopen_consistent(dir.path(), LogStoreOptions::default(), 1).await;
        assert!((5..=8).contains(&last), "n={n} last={last}");
        if n < 24 {
            assert_eq!(last, 5, "n={n}: no complete record fits in {n} bytes");
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), before, "tail cut");
        }
        append(&mut s, last + 1..=last + 3).await;
        drop(s);
        let (_s, again) = reopen_consistent(dir.path(), LogStoreOptions::default(), 1).await;
        assert_eq!(again, last + 3);
    }
    scenario.teardown();
}

#[tokio::test]
async fn crash_during_truncate_leaves_a_prefix() {
    let scenario = FailScenario::setup();
    for fp in ["raft-log-truncate", "raft-log-truncate-after-delete"] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), small());
        append(&mut s, 1..=60).await;
        fail::cfg(fp, "return").unwrap();
        assert!(s.truncate(lid(1, 10)).await.is_err(), "{fp}");
        drop(s);
        fail::remove(fp);
        let (mut s, last) = reopen_consistent(dir.path(), small(), 1).await;
        assert!(
            last >= 9,
            "{fp}: truncate must only ever remove a suffix, last {last}"
        );
        s.truncate(lid(1, 10)).await.unwrap();
        append(&mut s, 10..=12).await;
        drop(s);
        let (_s, last) = reopen_consistent(dir.path(), small(), 1).await;
        assert_eq!(last, 12, "{fp}");
    }
    scenario.teardown();
}

#[tokio::test]
async fn crash_during_purge_is_finished_on_reopen() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small());
    append(&mut s, 1..=60).await;
    let before = segment_count(dir.path());
    fail::cfg("raft-log-purge", "return").unwrap();
    assert!(s.purge(lid(1, 40)).await.is_err());
    drop(s);
    fail::remove("raft-log-purge");
    assert_eq!(segment_count(dir.path()), before, "no segment deleted yet");
    let (mut s, last) = reopen_consistent(dir.path(), small(), 41).await;
    assert_eq!(last, 60);
    assert_eq!(
        s.get_log_state().await.unwrap().last_purged_log_id,
        Some(lid(1, 40))
    );
    assert!(
        segment_count(dir.path()) < before,
        "purged segments deleted on open"
    );
    scenario.teardown();
}

#[tokio::test]
async fn failed_purge_point_write_keeps_the_log() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small());
    append(&mut s, 1..=30).await;
    fail::cfg("raft-purged-before-rename", "return").unwrap();
    assert!(s.purge(lid(1, 20)).await.is_err());
    drop(s);
    fail::remove("raft-purged-before-rename");
    let (mut s, last) = reopen_consistent(dir.path(), small(), 1).await;
    assert_eq!(last, 30);
    assert_eq!(s.get_log_state().await.unwrap().last_purged_log_id, None);
    scenario.teardown();
}

#[tokio::test]
async fn failed_vote_write_keeps_the_old_vote() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small());
    s.save_vote(&Vote::new(1, 1)).await.unwrap();
    fail::cfg("raft-vote-before-rename", "return").unwrap();
    assert!(s.save_vote(&Vote::new(2, 2)).await.is_err());
    // Not acknowledged, so not visible either.
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    drop(s);
    fail::remove("raft-vote-before-rename");
    let mut s = open(dir.path(), small());
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    s.save_vote(&Vote::new(2, 2)).await.unwrap();
    drop(s);
    let mut s = open(dir.path(), small());
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 2)));
    scenario.teardown();
}

#[tokio::test]
async fn failed_segment_roll_is_consistent() {
    let scenario = FailScenario::setup();
    for fp in ["raft-log-before-roll", "raft-segment-before-rename"] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), small());
        append(&mut s, 1..=10).await;
        fail::cfg(fp, "return").unwrap();
        assert!(
            append_async(&mut s, 11..=40).recv().unwrap().is_err(),
            "{fp}"
        );
        drop(s);
        fail::remove(fp);
        let (mut s, last) = reopen_consistent(dir.path(), small(), 1).await;
        assert!(last >= 10, "{fp}");
        append(&mut s, last + 1..=last + 30).await;
        drop(s);
        assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
        let (_s, again) = reopen_consistent(dir.path(), small(), 1).await;
        assert_eq!(again, last + 30, "{fp}");
    }
    scenario.teardown();
}

/// While one fsync is slow, later appends queue up, are readable at once, and are all made
/// durable by a single following fsync (group commit).
#[tokio::test]
async fn group_commit_shares_one_fsync() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), LogStoreOptions::default());
    fail::cfg("raft-log-before-fsync", "1*sleep(300)").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for i in 1..=100u64 {
        let (done, tx) = (done.clone(), tx.clone());
        s.append_then([ent(i)], move |r| {
            done.fetch_add(1, Ordering::SeqCst);
            tx.send((i, r.is_ok())).unwrap();
        })
        .unwrap();
        if i == 1 {
            std::thread::sleep(Duration::from_millis(50)); // let the writer pick up #1 alone
        }
    }
    // Readable before durable.
    assert_eq!(s.try_get_log_entries(..).await.unwrap().len(), 100);
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "nothing acknowledged before its fsync"
    );
    let acks: Vec<_> = (0..100).map(|_| rx.recv().unwrap()).collect();
    assert!(acks.iter().all(|(_, ok)| *ok));
    assert_eq!(
        acks.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(
        s.fsync_count(),
        2,
        "one fsync for #1, one for the 99 queued behind it"
    );
    fail::remove("raft-log-before-fsync");
    scenario.teardown();
}
