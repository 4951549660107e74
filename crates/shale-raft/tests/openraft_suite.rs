//! openraft's own storage test suite (`openraft::testing::Suite`) run against `LogStore`,
//! paired with a minimal in-memory state machine defined here (test-only).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use shale_raft::{LogStore, LogStoreOptions};

openraft::declare_raft_types!(pub TC: D = String, R = String);

type NodeId = u64;
type Node = openraft::BasicNode;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Node>,
    kv: BTreeMap<u64, String>,
}

#[derive(Default)]
struct Inner {
    data: SmData,
    current: Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)>,
    snapshot_seq: u64,
}

/// Minimal in-memory state machine: applies entries, builds and installs snapshots.
#[derive(Clone, Default)]
struct MemSm {
    inner: Arc<Mutex<Inner>>,
}

impl RaftSnapshotBuilder<TC> for MemSm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TC>, StorageError<NodeId>> {
        let mut inner = self.inner.lock().unwrap();
        let bytes =
            bincode::serialize(&inner.data).map_err(|e| StorageIOError::read_state_machine(&e))?;
        inner.snapshot_seq += 1;
        let meta = SnapshotMeta {
            last_log_id: inner.data.last_applied,
            last_membership: inner.data.last_membership.clone(),
            snapshot_id: format!("snap-{}", inner.snapshot_seq),
        };
        inner.current = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TC> for MemSm {
    type SnapshotBuilder = MemSm;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let inner = self.inner.lock().unwrap();
        Ok((inner.data.last_applied, inner.data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<String>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TC>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for e in entries {
            inner.data.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(String::new()),
                EntryPayload::Normal(v) => {
                    inner.data.kv.insert(e.log_id.index, v.clone());
                    out.push(v);
                }
                EntryPayload::Membership(m) => {
                    inner.data.last_membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(String::new());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let data: SmData = bincode::deserialize(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut inner = self.inner.lock().unwrap();
        inner.data = data;
        inner.current = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TC>>, StorageError<NodeId>> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

struct Builder {
    opts: LogStoreOptions,
}

impl StoreBuilder<TC, LogStore<TC>, MemSm, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<TC>, MemSm), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let store =
            LogStore::open(dir.path(), self.opts.clone()).map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, store, MemSm::default()))
    }
}

#[test]
fn openraft_storage_suite_default_options() {
    Suite::test_all(Builder {
        opts: LogStoreOptions::default(),
    })
    .unwrap();
}

/// Tiny segments and no cache: every read after an fsync goes to the segment files, and the
/// suite's logs span many segments.
#[test]
fn openraft_storage_suite_tiny_segments_no_cache() {
    Suite::test_all(Builder {
        opts: LogStoreOptions {
            segment_size: 128,
            cache_bytes: 0,
            max_read_bytes: 64,
            max_group_bytes: 256,
        },
    })
    .unwrap();
}
