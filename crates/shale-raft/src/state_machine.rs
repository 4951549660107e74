//! [`StateMachineStore`]: openraft's state machine over [`shale_machine::Machine`].
//!
//! `apply` hands a whole run of committed entries to the machine as one batch; the machine
//! stores the last applied log id and membership (serialized here as the opaque "raft state")
//! in the same atomic storage batch as the data, so the applied index can never disagree
//! with the data after a crash. Because of that the store is its own snapshot: building one
//! records a durable point and copies nothing, and a copy of the store is made only when a
//! peer needs one ([`crate::snap_dir`]). Applied requests are counted into a
//! [`SnapshotTrigger`], which takes points every `--snapshot-count` requests.

// openraft's storage API fixes the error type (`StorageError`, ~224 bytes); boxing it here
// would only move the conversion into every caller.
#![allow(clippy::result_large_err)]

use std::io::{Read, Seek};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use shale_machine::Machine;

use crate::app::{LogId, Reply, StorageError, StoredMembership, TypeConfig};
use crate::snap_dir::{snapshot_id, SnapDir};
use crate::snapshot_trigger::SnapshotTrigger;
use shale_api::shalepb::InternalBatchResponse;

/// What the machine stores alongside each applied batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RaftState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

impl RaftState {
    pub fn load(machine: &Machine) -> Result<Self, StorageError> {
        match machine
            .raft_state()
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
        {
            Some(b) => bincode::deserialize(&b).map_err(|e| sm_err(ErrorVerb::Read, e)),
            None => Ok(Self::default()),
        }
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(None),
        verb,
        std::io::Error::other(e.to_string()),
    )
}

/// The openraft state machine of one group.
pub struct StateMachineStore {
    machine: Arc<Machine>,
    state: RaftState,
    snaps: SnapDir,
    trigger: Arc<SnapshotTrigger>,
}

impl StateMachineStore {
    /// A store whose snapshots are only taken when openraft's own policy asks (tests).
    pub fn new(machine: Arc<Machine>, snap_dir: PathBuf) -> Result<Self, StorageError> {
        Self::with_trigger(machine, snap_dir, SnapshotTrigger::new(0, 0))
    }

    /// A store counting applied requests into `trigger` (see [`SnapshotTrigger`]).
    pub fn with_trigger(
        machine: Arc<Machine>,
        snap_dir: PathBuf,
        trigger: Arc<SnapshotTrigger>,
    ) -> Result<Self, StorageError> {
        let snaps = SnapDir::open(snap_dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let state = RaftState::load(&machine)?;
        let point = snaps
            .latest()
            .and_then(|m| m.last_log_id)
            .map_or(0, |l| l.index);
        let applied = state.last_applied.map_or(0, |l| l.index);
        trigger.applied(applied.saturating_sub(point));
        Ok(Self {
            machine,
            state,
            snaps,
            trigger,
        })
    }
}

fn meta_of(state: RaftState) -> SnapshotMeta<u64, openraft::BasicNode> {
    SnapshotMeta {
        snapshot_id: snapshot_id(state.last_applied.as_ref()),
        last_log_id: state.last_applied,
        last_membership: state.membership,
    }
}

fn decode_state(raft: Option<Vec<u8>>) -> Result<RaftState, StorageError> {
    match raft {
        Some(b) => bincode::deserialize(&b).map_err(|e| snap_err(ErrorVerb::Read, e)),
        None => Ok(RaftState::default()),
    }
}

async fn open_async(f: std::fs::File) -> Box<tokio::fs::File> {
    Box::new(tokio::fs::File::from_std(f))
}

/// Builds snapshot points (see [`crate::snap_dir`]): a flush of the store, no copy.
pub struct SnapshotBuilder {
    machine: Arc<Machine>,
    snaps: SnapDir,
    trigger: Arc<SnapshotTrigger>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.trigger.reset();
        let machine = self.machine.clone();
        let snaps = self.snaps.clone();
        let (meta, empty) = tokio::task::spawn_blocking(move || {
            let raft = machine
                .durable_point()
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
            let meta = meta_of(decode_state(raft)?);
            snaps
                .record(&meta)
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
            let empty = snaps.empty().map_err(|e| snap_err(ErrorVerb::Write, e))?;
            Ok::<_, StorageError>((meta, empty))
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        tracing::debug!(snapshot = %meta.snapshot_id, "recorded a snapshot point");
        if let Some(l) = meta.last_log_id {
            self.trigger.point_recorded(l.index);
        }
        Ok(Snapshot {
            meta,
            snapshot: open_async(empty).await,
        })
    }
}

/// Copies the whole store for a peer, at the current applied log id (see
/// [`crate::snap_dir`]); the file is unlinked once open.
fn write_copy(
    machine: &Machine,
    snaps: &SnapDir,
) -> Result<(SnapshotMeta<u64, openraft::BasicNode>, std::fs::File), StorageError> {
    let path = snaps.sending();
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| snap_err(ErrorVerb::Write, e))?,
    );
    let raft = machine
        .write_snapshot(&mut f)
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
    drop(f.into_inner().map_err(|e| snap_err(ErrorVerb::Write, e))?);
    let meta = meta_of(decode_state(raft)?);
    let f = std::fs::File::open(&path).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    std::fs::remove_file(&path).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    Ok((meta, f))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // Every request of every entry goes to the machine as one batch; the answers are
        // then regrouped per entry (blank and membership entries answer with no responses).
        let mut cmds = Vec::new();
        let mut counts = Vec::new();
        for e in entries {
            self.state.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => counts.push(0),
                EntryPayload::Normal(c) => {
                    counts.push(c.batch().requests.len());
                    cmds.extend(c.into_requests().into_iter().map(Some));
                }
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(e.log_id), m);
                    counts.push(0);
                }
            }
        }
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        self.trigger
            .applied(counts.iter().map(|&n| n.max(1) as u64).sum());
        if let Some(l) = self.state.last_applied {
            self.trigger.applied_upto(l.index);
        }
        let raft = bincode::serialize(&self.state).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let out = self
            .machine
            .apply(cmds, raft)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let mut out = out.into_iter();
        Ok(counts
            .into_iter()
            .map(|n| {
                Reply(InternalBatchResponse {
                    responses: out.by_ref().take(n).collect(),
                })
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            machine: self.machine.clone(),
            snaps: self.snaps.clone(),
            trigger: self.trigger.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let p = self.snaps.receiving();
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut f = snapshot.into_std().await;
        let machine = self.machine.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            f.rewind().map_err(|e| snap_err(ErrorVerb::Read, e))?;
            let mut r = std::io::BufReader::new(f);
            machine
                .install_snapshot(&mut r)
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            // The log behind this point is purged next: the installed data must be durable.
            machine
                .durable_point()
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
            Ok(())
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Read, e))??;
        self.state = RaftState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        // The store now holds the data: keep only the point.
        let _ = std::fs::remove_file(self.snaps.receiving());
        self.snaps
            .record(meta)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            index = meta.last_log_id.map_or(0, |l| l.index),
            "installed a snapshot received from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(point) = self.snaps.latest() else {
            return Ok(None);
        };
        if self.trigger.is_opening() {
            // openraft reads only the metadata while a member opens.
            let empty = self
                .snaps
                .empty()
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            return Ok(Some(Snapshot {
                meta: point,
                snapshot: open_async(empty).await,
            }));
        }
        let machine = self.machine.clone();
        let snaps = self.snaps.clone();
        let (meta, f) = tokio::task::spawn_blocking(move || write_copy(&machine, &snaps))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))??;
        tracing::info!(snapshot = %meta.snapshot_id, "copied the store for a peer");
        Ok(Some(Snapshot {
            meta,
            snapshot: open_async(f).await,
        }))
    }
}
