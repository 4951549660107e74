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
//! applied past the newest point (a lower bound of their requests), so the log is never
//! longer than about twice `snapshot_count` requests plus the catch-up entries kept behind
//! each point.
//!
//! It also carries `opening`: while openraft reads the initial state of a member it asks for
//! the "current snapshot" only for its metadata, and making a copy of the whole store then
//! would cost seconds on every restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::app::Raft;

/// Shared between the state machine (counts) and the node (triggers).
#[derive(Debug)]
pub struct SnapshotTrigger {
    threshold: u64,
    since: AtomicU64,
    taken: AtomicU64,
    wake: tokio::sync::Notify,
    opening: AtomicBool,
}

impl SnapshotTrigger {
    /// A trigger firing every `threshold` requests (0: never).
    pub fn new(threshold: u64) -> Arc<Self> {
        Arc::new(Self {
            threshold,
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
        let before = self.since.fetch_add(n, Ordering::Relaxed);
        if self.threshold > 0 && before + n >= self.threshold {
            self.wake.notify_one();
        }
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
            self.wake.notified().await;
            if self.since() < self.threshold {
                continue;
            }
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::debug!(error = %e, "snapshot trigger stops: raft is shut down");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_threshold_until_reset() {
        let t = SnapshotTrigger::new(10);
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
