//! Counters exported on `/metrics` in Prometheus text format, with etcd's metric names where
//! a metric has an etcd twin.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters updated by the handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    pub proposals_applied: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub proposals_pending: AtomicI64,
    pub ranges: AtomicU64,
    pub watch_streams: AtomicI64,
    pub leader_changes: AtomicU64,
    pub leases_expired: AtomicU64,
}

/// A snapshot of gauges read at scrape time.
pub struct Gauges {
    pub has_leader: bool,
    pub is_leader: bool,
    pub term: u64,
    pub applied_index: u64,
    pub committed_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub snapshots: u64,
    pub db_size: u64,
    pub keys: usize,
    pub revision: i64,
    pub compact_revision: i64,
    pub watchers: usize,
    pub slow_watchers: usize,
    pub quota: u64,
    pub version: String,
}

fn rss_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |p| p * page)
}

impl Metrics {
    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "etcd_server_has_leader",
            "gauge",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            (g.has_leader as u8).to_string(),
        );
        metric(
            "etcd_server_is_leader",
            "gauge",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            (g.is_leader as u8).to_string(),
        );
        metric(
            "etcd_server_leader_changes_seen_total",
            "counter",
            "The number of leader changes seen.",
            self.leader_changes.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_server_proposals_committed_total",
            "gauge",
            "The total number of consensus proposals committed.",
            g.committed_index.to_string(),
        );
        metric(
            "etcd_server_proposals_applied_total",
            "gauge",
            "The total number of consensus proposals applied.",
            g.applied_index.to_string(),
        );
        metric(
            "etcd_server_proposals_pending",
            "gauge",
            "The current number of pending proposals to commit.",
            self.proposals_pending.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_server_proposals_failed_total",
            "counter",
            "The total number of failed proposals seen.",
            self.proposals_failed.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_server_quota_backend_bytes",
            "gauge",
            "Current backend storage quota size in bytes.",
            g.quota.to_string(),
        );
        metric(
            "etcd_mvcc_db_total_size_in_bytes",
            "gauge",
            "Total size of the underlying database physically allocated in bytes.",
            g.db_size.to_string(),
        );
        metric(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "gauge",
            "Total size of the underlying database logically in use in bytes.",
            g.db_size.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_keys_total",
            "gauge",
            "Total number of keys.",
            g.keys.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_current_revision",
            "gauge",
            "The current revision of store.",
            g.revision.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_compact_revision",
            "gauge",
            "The revision of the last compaction in store.",
            g.compact_revision.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_watcher_total",
            "gauge",
            "Total number of watchers.",
            g.watchers.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_slow_watcher_total",
            "gauge",
            "Total number of unsynced slow watchers.",
            g.slow_watchers.to_string(),
        );
        metric(
            "etcd_debugging_mvcc_watch_stream_total",
            "gauge",
            "Total number of watch streams.",
            self.watch_streams.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "etcd_debugging_server_lease_expired_total",
            "counter",
            "The total number of expired leases.",
            self.leases_expired.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "shale_range_requests_total",
            "counter",
            "Range requests served.",
            self.ranges.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "shale_raft_term",
            "gauge",
            "Current Raft term.",
            g.term.to_string(),
        );
        metric(
            "shale_raft_snapshot_index",
            "gauge",
            "Log index of the newest snapshot point (the log behind it may be purged).",
            g.snapshot_index.to_string(),
        );
        metric(
            "shale_raft_snapshots_total",
            "counter",
            "Snapshot points taken (one each --snapshot-count applied requests).",
            g.snapshots.to_string(),
        );
        metric(
            "shale_raft_purged_index",
            "gauge",
            "Log index up to which the Raft log has been purged.",
            g.purged_index.to_string(),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss_bytes().to_string(),
        );
        let _ = writeln!(s, "# HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.\n# TYPE etcd_server_version gauge\netcd_server_version{{server_version=\"{}\"}} 1", g.version);
        let _ = writeln!(s, "# HELP shale_build_info Shale build.\n# TYPE shale_build_info gauge\nshale_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        s
    }
}
