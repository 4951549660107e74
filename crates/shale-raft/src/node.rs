//! [`RaftNode`]: one member's Raft group with its log store and state machine, and the two
//! operations the server needs: propose a command and wait for its answer, and confirm a
//! linearizable read point.
//!
//! Data directory layout (`<data-dir>/member/`): `raft/` the durable log, `state/` the sled
//! state store, `snap/` state machine snapshots.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use shale_api::error::EtcdError;
use shale_api::shalepb::{InternalRequest, InternalResponse};
use shale_machine::{Machine, MachineConfig};
use shale_storage::{Engine, SledEngine};

use crate::app::{NodeId, Raft, TypeConfig};
use crate::network::NoPeers;
use crate::proposer::Proposer;
use crate::read_barrier::ReadBarriers;
use crate::state_machine::StateMachineStore;
use crate::{LogStore, LogStoreOptions};

/// Configuration of one member's Raft group.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's id.
    pub id: NodeId,
    /// Address peers use to reach this member (its advertised peer URL).
    pub peer_url: String,
    /// `<data-dir>/member`.
    pub dir: PathBuf,
    /// Leader heartbeat interval (etcd `--heartbeat-interval`, ms).
    pub heartbeat_ms: u64,
    /// Election timeout (etcd `--election-timeout`, ms).
    pub election_ms: u64,
    /// Entries applied between snapshots, after which the log prefix is purged
    /// (etcd `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot for slow followers.
    pub catch_up_entries: u64,
    /// Page cache of the state store, bytes.
    pub state_cache_bytes: u64,
    /// How long a proposal may wait for its answer before `request timed out`.
    pub request_timeout: Duration,
    pub machine: MachineConfig,
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("--heartbeat-interval must be > 0".into());
        }
        if self.election_ms < 5 * self.heartbeat_ms {
            return Err(format!(
                "--election-timeout[{}ms] should be at least 5 times as --heartbeat-interval[{}ms]",
                self.election_ms, self.heartbeat_ms
            ));
        }
        if self.snapshot_count == 0 {
            return Err("--snapshot-count must be > 0".into());
        }
        self.machine.validate()
    }
}

/// Errors starting a member.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open the raft log in {path}: {source}")]
    Log {
        path: PathBuf,
        source: crate::LogStoreError,
    },
    #[error("cannot open the state store in {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// A running member of one Raft group.
pub struct RaftNode {
    raft: Raft,
    machine: Arc<Machine>,
    id: NodeId,
    timeout: Duration,
    proposer: Proposer,
    barriers: ReadBarriers,
}

/// Role and progress of this member, for Status and metrics.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub is_leader: bool,
    pub is_learner: bool,
}

impl RaftNode {
    /// Opens the stores in `cfg.dir` and starts the group. A fresh directory is initialized
    /// as a one-member group of this member.
    pub async fn start(cfg: NodeConfig) -> Result<Arc<Self>, NodeError> {
        cfg.validate().map_err(NodeError::Config)?;
        let log_dir = cfg.dir.join("raft");
        let log = LogStore::<TypeConfig>::open(&log_dir, LogStoreOptions::default()).map_err(
            |source| NodeError::Log {
                path: log_dir.clone(),
                source,
            },
        )?;
        let state_dir = cfg.dir.join("state");
        let engine: Arc<dyn Engine> = Arc::new(
            SledEngine::open(&state_dir, cfg.state_cache_bytes).map_err(|e| NodeError::State {
                path: state_dir.clone(),
                reason: e.to_string(),
            })?,
        );
        let machine =
            Arc::new(
                Machine::open(engine, cfg.machine.clone()).map_err(|e| NodeError::State {
                    path: state_dir.clone(),
                    reason: e.to_string(),
                })?,
            );
        let sm = StateMachineStore::new(machine.clone(), cfg.dir.join("snap")).map_err(|e| {
            NodeError::State {
                path: cfg.dir.join("snap"),
                reason: e.to_string(),
            }
        })?;
        let config = Config {
            cluster_name: "shale".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_ms,
            election_timeout_max: cfg.election_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
            max_in_snapshot_log_to_keep: cfg.catch_up_entries,
            max_payload_entries: 1000,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| NodeError::Config(e.to_string()))?,
        );
        let raft = Raft::new(cfg.id, config, NoPeers, log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let mut members = BTreeMap::new();
        members.insert(
            cfg.id,
            BasicNode {
                addr: cfg.peer_url.clone(),
            },
        );
        match raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                // Already initialized: a restart. A one-member group need not wait for an
                // election timeout to find out it is the leader.
                let _ = raft.trigger().elect().await;
            }
            Err(e) => return Err(NodeError::Raft(e.to_string())),
        }
        let proposer = Proposer::start(raft.clone());
        let barriers = ReadBarriers::new(raft.clone());
        Ok(Arc::new(Self {
            raft,
            machine,
            id: cfg.id,
            timeout: cfg.request_timeout,
            proposer,
            barriers,
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        NodeStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            is_leader: m.state == ServerState::Leader,
            is_learner: m.state == ServerState::Learner,
        }
    }

    pub fn has_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    /// Waits until this member sees a leader, up to `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await
            .is_ok()
    }

    /// Proposes `req` and waits until it is applied; returns the machine's answer.
    pub async fn propose(&self, req: InternalRequest) -> Result<InternalResponse, EtcdError> {
        match tokio::time::timeout(self.timeout, self.proposer.propose(req)).await {
            Err(_) => Err(EtcdError::Timeout),
            Ok(r) => r,
        }
    }

    /// Confirms this member may serve a linearizable read: returns once its state machine
    /// has applied everything committed before the call.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        match tokio::time::timeout(self.timeout, self.barriers.wait()).await {
            Err(_) => Err(EtcdError::Timeout),
            Ok(r) => r,
        }
    }

    /// Builds a snapshot now (and lets the log behind it be purged).
    pub async fn snapshot(&self) -> Result<(), EtcdError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|_| EtcdError::Stopped)
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
