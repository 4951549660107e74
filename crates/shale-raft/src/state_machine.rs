//! [`StateMachineStore`]: openraft's state machine over [`shale_machine::Machine`].
//!
//! `apply` hands a whole run of committed entries to the machine as one batch; the machine
//! stores the last applied log id and membership (serialized here as the opaque "raft state")
//! in the same atomic storage batch as the data, so the applied index can never disagree
//! with the data after a crash. Snapshots are files in `<data-dir>/snap/`, written by the
//! machine while it holds its apply lock.

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
    snap_dir: PathBuf,
    current: Option<(SnapshotMeta<u64, openraft::BasicNode>, PathBuf)>,
}

impl StateMachineStore {
    pub fn new(machine: Arc<Machine>, snap_dir: PathBuf) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&snap_dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let state = RaftState::load(&machine)?;
        let current = latest_snapshot(&snap_dir);
        Ok(Self {
            machine,
            state,
            snap_dir,
            current,
        })
    }
}

const META_SUFFIX: &str = ".meta";

fn latest_snapshot(
    dir: &std::path::Path,
) -> Option<(SnapshotMeta<u64, openraft::BasicNode>, PathBuf)> {
    let mut best: Option<(SnapshotMeta<u64, openraft::BasicNode>, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("meta") {
            continue;
        }
        let Ok(b) = std::fs::read(&p) else { continue };
        let Ok(meta) = bincode::deserialize::<SnapshotMeta<u64, openraft::BasicNode>>(&b) else {
            continue;
        };
        let data = p.with_extension("snap");
        if !data.exists() {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(m, _)| m.last_log_id < meta.last_log_id)
        {
            best = Some((meta, data));
        }
    }
    best
}

/// Builds snapshots; a clone of the store's handles.
pub struct SnapshotBuilder {
    machine: Arc<Machine>,
    snap_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let machine = self.machine.clone();
        let dir = self.snap_dir.clone();
        let (meta, path) = tokio::task::spawn_blocking(move || write_snapshot(&machine, &dir))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(f),
        })
    }
}

fn write_snapshot(
    machine: &Machine,
    dir: &std::path::Path,
) -> Result<(SnapshotMeta<u64, openraft::BasicNode>, PathBuf), StorageError> {
    let tmp = dir.join("building.tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).map_err(|e| snap_err(ErrorVerb::Write, e))?,
    );
    let raft = machine
        .write_snapshot(&mut f)
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let f = f.into_inner().map_err(|e| snap_err(ErrorVerb::Write, e))?;
    f.sync_all().map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let state: RaftState = match raft {
        Some(b) => bincode::deserialize(&b).map_err(|e| snap_err(ErrorVerb::Read, e))?,
        None => RaftState::default(),
    };
    let id = match &state.last_applied {
        Some(l) => format!("{:020}-{:020}", l.leader_id.term, l.index),
        None => "00000000000000000000-00000000000000000000".to_string(),
    };
    let meta = SnapshotMeta {
        last_log_id: state.last_applied,
        last_membership: state.membership.clone(),
        snapshot_id: id.clone(),
    };
    let data = dir.join(format!("{id}.snap"));
    std::fs::rename(&tmp, &data).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let meta_bytes = bincode::serialize(&meta).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let meta_tmp = dir.join(format!("{id}{META_SUFFIX}.tmp"));
    std::fs::write(&meta_tmp, meta_bytes).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    std::fs::rename(&meta_tmp, dir.join(format!("{id}{META_SUFFIX}")))
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    prune_snapshots(dir, &id);
    Ok((meta, data))
}

/// Keeps only the newest snapshot.
fn prune_snapshots(dir: &std::path::Path, keep: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(keep) && (name.ends_with(".snap") || name.ends_with(META_SUFFIX)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
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
            snap_dir: self.snap_dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let p = self.snap_dir.join("receiving.tmp");
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
            Ok(())
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Read, e))??;
        self.state = RaftState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let src = self.snap_dir.join("receiving.tmp");
        let data = self.snap_dir.join(format!("{}.snap", meta.snapshot_id));
        std::fs::rename(&src, &data).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let meta_bytes = bincode::serialize(meta).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        std::fs::write(
            self.snap_dir
                .join(format!("{}{META_SUFFIX}", meta.snapshot_id)),
            meta_bytes,
        )
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        prune_snapshots(&self.snap_dir, &meta.snapshot_id);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            index = meta.last_log_id.map_or(0, |l| l.index),
            "installed a snapshot received from the leader"
        );
        self.current = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current = latest_snapshot(&self.snap_dir);
        let Some((meta, path)) = &self.current else {
            return Ok(None);
        };
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(f),
        }))
    }
}
