//! [`SnapshotTrigger`]: when to take a snapshot point, counted in requests as etcd counts.
//!
//! etcd's `--snapshot-count` is a number of applied entries, and each etcd entry is one
//! request. A Shale entry is a batch of requests (dozens under load), so openraft's own
//! policy (entries since the last snapshot) would let the log grow dozens of times longer
//! than etcd's between snapshots, and make restart replay and disk use grow with the load.
//! The state machine counts the requests it applies here (an entry without requests counts
//! as one); once `snapshot_count` of them have been applied since the last snapshot, the
//! node's trigger task asks openraft for a snapshot, which records a point (see
//! [`crate::snap_dir`]) and lets openraft purge the log behind it.
//!
//! The count restarts at each snapshot; after a restart it starts from the number of entries
//! applied past the newest point (a lower bound of their requests).
//!
//! Behind each point, etcd keeps `--experimental-snapshot-catchup-entries` entries (5000
//! requests) for slow followers. openraft's `max_in_snapshot_log_to_keep` counts entries, so
//! it would keep up to that many *batches*. The trigger therefore also remembers, per applied
//! run of entries, the log index and the running request total, and after each point asks
//! openraft to purge up to the newest index that leaves at least `catch_up` requests behind
//! the point. openraft's entry-counted bound stays as a backstop (after a restart, before
//! the marks cover the log).
//!
//! It also carries `opening`: while openraft reads the initial state of a member it asks for
//! the "current snapshot" only for its metadata, and making a copy of the whole store then
//! would cost seconds on every restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::app::Raft;

/// Shared between the state machine (counts) and the node (triggers).
#[derive(Debug)]
pub struct SnapshotTrigger {
    threshold: u64,
    catch_up: u64,
    /// (last log index of an applied run, requests applied up to and including it).
    marks: Mutex<VecDeque<(u64, u64)>>,
    total: AtomicU64,
    /// A purge the task should ask for (0: none).
    purge: AtomicU64,
    since: AtomicU64,
    taken: AtomicU64,
    wake: tokio::sync::Notify,
    opening: AtomicBool,
}

impl SnapshotTrigger {
    /// A trigger firing every `threshold` requests (0: never), keeping `catch_up` requests
    /// of log behind each point.
    pub fn new(threshold: u64, catch_up: u64) -> Arc<Self> {
        Arc::new(Self {
            threshold,
            catch_up,
            marks: Mutex::new(VecDeque::new()),
            total: AtomicU64::new(0),
            purge: AtomicU64::new(0),
            since: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            opening: AtomicBool::new(false),
        })
    }

    /// Counts `n` applied requests; wakes the trigger task while the count is at or past the
    /// threshold (openraft ignores a trigger while a snapshot is being built, so one wake per
    /// crossing could be lost; a wake is one stored permit, cheap to repeat).
    pub fn applied(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        let before = self.since.fetch_add(n, Ordering::Relaxed);
        if self.threshold > 0 && before + n >= self.threshold {
            self.wake.notify_one();
        }
    }

    /// Records that entries up to log index `last` have been applied (after [`Self::applied`]
    /// counted their requests).
    pub fn applied_upto(&self, last: u64) {
        let total = self.total.load(Ordering::Relaxed);
        let mut m = self.marks.lock();
        if m.back().is_none_or(|&(i, _)| i < last) {
            m.push_back((last, total));
        }
    }

    /// A point at log index `point` is recorded: works out how far the log may be purged
    /// (keeping `catch_up` requests behind the point) and wakes the task to ask for it.
    pub fn point_recorded(&self, point: u64) {
        let mut m = self.marks.lock();
        let Some(&(_, at_point)) = m.iter().rev().find(|&&(i, _)| i <= point) else {
            return;
        };
        let Some(keep_from) = at_point.checked_sub(self.catch_up) else {
            return;
        };
        let Some(&(upto, _)) = m.iter().rev().find(|&&(_, t)| t <= keep_from) else {
            return;
        };
        while m.front().is_some_and(|&(i, _)| i < upto) {
            m.pop_front();
        }
        drop(m);
        self.purge.fetch_max(upto, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// The purge [`Self::point_recorded`] asked for, once.
    fn take_purge(&self) -> Option<u64> {
        Some(self.purge.swap(0, Ordering::Relaxed)).filter(|&p| p > 0)
    }

    /// Restarts the count: a snapshot is being taken.
    pub fn reset(&self) {
        self.since.store(0, Ordering::Relaxed);
        self.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// Snapshot points taken since this member started.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Requests applied since the last snapshot.
    pub fn since(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }

    pub fn set_opening(&self, v: bool) {
        self.opening.store(v, Ordering::Release);
    }

    pub fn is_opening(&self) -> bool {
        self.opening.load(Ordering::Acquire)
    }

    /// Runs until the Raft instance shuts down: each time the threshold is crossed, asks
    /// openraft for a snapshot.
    pub async fn run(self: Arc<Self>, raft: Raft) {
        loop {
            // Woken by an apply at or past the threshold, or by a recorded point. Each trigger
            // is one message to openraft (ignored while a build runs); the count only drops
            // when a build starts, and until then the next apply wakes this task again, so
            // the rate of triggers is at most the rate of applies.
            self.wake.notified().await;
            if let Some(upto) = self.take_purge() {
                if let Err(e) = raft.trigger().purge_log(upto).await {
                    tracing::debug!(error = %e, "snapshot trigger stops: raft is shut down");
                    return;
                }
            }
            if self.threshold > 0 && self.since() >= self.threshold {
                if let Err(e) = raft.trigger().snapshot().await {
                    tracing::debug!(error = %e, "snapshot trigger stops: raft is shut down");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_keep_catch_up_requests_behind_the_point() {
        let t = SnapshotTrigger::new(1000, 100);
        // Entries of 30 requests each: index i has 30 * i requests up to it.
        for i in 1..=20u64 {
            t.applied(30);
            t.applied_upto(i);
        }
        t.point_recorded(15);
        // 450 requests at the point; keep >= 100 behind it: purge up to index 11 (330).
        assert_eq!(t.take_purge(), Some(11));
        assert_eq!(t.take_purge(), None);
        // Too early for any purge.
        let t = SnapshotTrigger::new(1000, 100);
        t.applied(50);
        t.applied_upto(1);
        t.point_recorded(1);
        assert_eq!(t.take_purge(), None);
    }

    #[tokio::test]
    async fn wakes_at_the_threshold_until_reset() {
        let t = SnapshotTrigger::new(10, 0);
        t.applied(4);
        t.applied(5);
        assert_eq!(t.since(), 9);
        // Not crossed yet: no permit stored.
        let woke = tokio::time::timeout(std::time::Duration::ZERO, t.wake.notified()).await;
        assert!(woke.is_err(), "woke before the threshold");
        t.applied(1);
        t.wake.notified().await;
        t.applied(1);
        t.wake.notified().await;
        t.reset();
        t.applied(3);
        let early = tokio::time::timeout(std::time::Duration::ZERO, t.wake.notified()).await;
        assert!(early.is_err(), "woke before the threshold after a reset");
        t.applied(7);
        t.wake.notified().await;
    }
}
