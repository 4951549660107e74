//! [`RaftNode`]: one member's Raft group with its log store and state machine, and the two
//! operations the server needs: propose a command and wait for its answer, and confirm a
//! linearizable read point.
//!
//! Data directory layout (`<data-dir>/member/`): `raft/` the durable log, `state/` the sled
//! state store, `snap/` snapshot points (see [`crate::snap_dir`]).
//!
//! Writes and linearizable reads work on every member: the leader proposes and confirms
//! reads itself; a follower sends its proposer's batches and its read-index requests to
//! the leader over the peer port ([`crate::peer`]) and waits until its own state machine
//! has applied the answer's index, so a client sees the same results on any member.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use shale_api::error::EtcdError;
use shale_api::shalepb::{InternalRequest, InternalResponse};
use shale_machine::{Machine, MachineConfig};
use shale_storage::{Engine, SledEngine};

use crate::app::{NodeId, Raft, TypeConfig};
use crate::peer::{Forwarder, PeerConfig, PeerNetwork, Peers};
use crate::proposer::Proposer;
use crate::read_barrier::ReadBarriers;
use crate::snapshot_trigger::SnapshotTrigger;
use crate::state_machine::StateMachineStore;
use crate::{LogStore, LogStoreOptions};

/// Which engine holds the state machine (`--experimental-state-engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateEngine {
    /// sled, in `<member>/state`.
    Sled,
    /// [`shale_storage::LogEngine`], in `<member>/state.log`.
    Log,
}

impl StateEngine {
    /// The engine of a member created without `--experimental-state-engine`.
    pub const FOR_NEW_MEMBERS: StateEngine = StateEngine::Log;

    /// The engine to open in `member_dir`: `asked` if given (refused if the member's state was
    /// written by the other engine), else the one the member already has, else
    /// [`FOR_NEW_MEMBERS`](Self::FOR_NEW_MEMBERS).
    pub fn resolve(asked: Option<StateEngine>, member_dir: &Path) -> Result<StateEngine, String> {
        let have = [StateEngine::Sled, StateEngine::Log]
            .into_iter()
            .find(|e| member_dir.join(e.dir_name()).exists());
        match (asked, have) {
            (Some(a), Some(h)) if a != h => Err(format!(
                "this member's state was written by the {} engine; start it with \
                 --experimental-state-engine={} (or without the flag)",
                h.flag(),
                h.flag()
            )),
            (Some(a), _) => Ok(a),
            (None, Some(h)) => Ok(h),
            (None, None) => Ok(Self::FOR_NEW_MEMBERS),
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            StateEngine::Sled => "state",
            StateEngine::Log => "state.log",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            StateEngine::Sled => "sled",
            StateEngine::Log => "log",
        }
    }
}

impl std::str::FromStr for StateEngine {
    type Err = String;

    /// Parses a `--experimental-state-engine` value.
    fn from_str(s: &str) -> Result<Self, String> {
        [StateEngine::Sled, StateEngine::Log]
            .into_iter()
            .find(|e| e.flag() == s)
            .ok_or_else(|| format!("unknown state engine {s:?} (expected sled or log)"))
    }
}

/// Configuration of one member's Raft group.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's id.
    pub id: NodeId,
    /// Address peers use to reach this member (its advertised peer URLs, comma separated).
    pub peer_url: String,
    /// Cluster, group and dialing settings of the peer traffic.
    pub peer: PeerConfig,
    /// The members of a new cluster (`--initial-cluster-state new`), this one included:
    /// a member whose log is empty initializes the group with them. Empty when joining an
    /// existing cluster: the member then waits for the leader to replicate to it.
    pub bootstrap: BTreeMap<NodeId, BasicNode>,
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
    /// Page cache of the state store, bytes (sled).
    pub state_cache_bytes: u64,
    /// The state store's engine (`None`: the member's own, or the default for a new one).
    pub state_engine: Option<StateEngine>,
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
        if self.peer.member_id != self.id {
            return Err("peer config names another member".into());
        }
        if !self.bootstrap.is_empty() && !self.bootstrap.contains_key(&self.id) {
            return Err("the initial members do not include this member".into());
        }
        self.peer.validate()?;
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
    /// The election timeout (etcd's `--election-timeout`), in milliseconds.
    election_ms: u64,
    proposer: Proposer,
    barriers: ReadBarriers,
    peers: Arc<Peers>,
    forwarder: Forwarder,
    held: Arc<ProposalHold>,
    snapshots: Arc<SnapshotTrigger>,
}

/// Holds new proposals while leadership is being handed over.
#[derive(Default)]
pub(crate) struct ProposalHold {
    held: AtomicBool,
    released: tokio::sync::Notify,
}

impl ProposalHold {
    /// Waits while proposals are held.
    pub(crate) async fn pass(&self) {
        while self.held.load(Ordering::Acquire) {
            let n = self.released.notified();
            if !self.held.load(Ordering::Acquire) {
                break;
            }
            n.await;
        }
    }
}

/// Releases held proposals when dropped.
pub(crate) struct HoldGuard(Arc<ProposalHold>);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::Release);
        self.0.released.notify_waiters();
    }
}

/// Role and progress of this member, for Status and metrics.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    /// Log index of the newest snapshot point (0: none).
    pub snapshot_index: u64,
    /// Log index up to which the Raft log is purged (0: nothing purged).
    pub purged_index: u64,
    /// Snapshot points taken since this member started.
    pub snapshots: u64,
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
        let kind = StateEngine::resolve(cfg.state_engine, &cfg.dir).map_err(|reason| {
            NodeError::State {
                path: cfg.dir.clone(),
                reason,
            }
        })?;
        let state_dir = cfg.dir.join(kind.dir_name());
        let state_err = |e: shale_storage::Error| NodeError::State {
            path: state_dir.clone(),
            reason: e.to_string(),
        };
        let engine: Arc<dyn Engine> = match kind {
            StateEngine::Sled => {
                Arc::new(SledEngine::open(&state_dir, cfg.state_cache_bytes).map_err(state_err)?)
            }
            StateEngine::Log => Arc::new(
                shale_storage::LogEngine::open(&state_dir, Default::default())
                    .map_err(state_err)?,
            ),
        };
        let machine =
            Arc::new(
                Machine::open(engine, cfg.machine.clone()).map_err(|e| NodeError::State {
                    path: state_dir.clone(),
                    reason: e.to_string(),
                })?,
            );
        let trigger = SnapshotTrigger::new(cfg.snapshot_count, cfg.catch_up_entries);
        let sm =
            StateMachineStore::with_trigger(machine.clone(), cfg.dir.join("snap"), trigger.clone())
                .map_err(|e| NodeError::State {
                    path: cfg.dir.join("snap"),
                    reason: e.to_string(),
                })?;
        let config = Config {
            cluster_name: "shale".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            // openraft (0.9) makes a follower refuse votes until `election_timeout_max` has
            // passed since it last heard from the leader (its leader lease), and a follower
            // that knew a leader only campaigns after that lease *plus* its own random
            // timeout. A rejected first round (the candidate's log was shorter than the other
            // follower's, common under writes, or a split vote) costs one more timeout. So
            // the range is [T/2, 3T/4) of the election timeout T: a dead leader is replaced
            // 1.25T to 1.5T after its last heartbeat, within 2.3T after one failed round
            // (etcd: [T, 2T) per round), and a follower still never campaigns before it has
            // missed a full T of heartbeats.
            election_timeout_min: cfg.election_ms / 2,
            election_timeout_max: cfg.election_ms * 3 / 4,
            // Snapshots are taken by `trigger`, counted in requests (etcd's unit), not in
            // entries (batches of requests).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: cfg.catch_up_entries,
            max_payload_entries: 1000,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| NodeError::Config(e.to_string()))?,
        );
        let peers = Arc::new(Peers::new(cfg.peer.clone()));
        trigger.set_opening(true);
        let raft = Raft::new(cfg.id, config, PeerNetwork::new(peers.clone()), log, sm).await;
        trigger.set_opening(false);
        let raft = raft.map_err(|e| NodeError::Raft(e.to_string()))?;
        tokio::spawn(trigger.clone().run(raft.clone()));
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized && !cfg.bootstrap.is_empty() {
            match raft.initialize(cfg.bootstrap.clone()).await {
                Ok(()) => {}
                Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(NodeError::Raft(e.to_string())),
            }
        }
        let sole_voter = {
            let m = raft.metrics().borrow().clone();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            voters == [cfg.id]
        };
        if sole_voter {
            // A one-member group need not wait an election timeout to find out it leads.
            let _ = raft.trigger().elect().await;
        }
        let forwarder = Forwarder::new(raft.clone(), peers.clone());
        let held = Arc::new(ProposalHold::default());
        let proposer = Proposer::start(
            raft.clone(),
            forwarder.clone(),
            held.clone(),
            cfg.request_timeout,
        );
        let barriers = ReadBarriers::new(raft.clone(), forwarder.clone(), cfg.request_timeout);
        Ok(Arc::new(Self {
            raft,
            machine,
            id: cfg.id,
            timeout: cfg.request_timeout,
            election_ms: cfg.election_ms,
            proposer,
            barriers,
            peers,
            forwarder,
            held,
            snapshots: trigger,
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The leader's read index from a shared quorum round (see [`LeaderReadIndex`]).
    ///
    /// [`LeaderReadIndex`]: crate::read_index::LeaderReadIndex
    pub(crate) async fn leader_read_index(&self) -> Result<u64, EtcdError> {
        self.barriers.leader().get().await
    }

    pub fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    pub(crate) fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// How long a request may wait for the cluster.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits while proposals are held (leadership transfer).
    pub(crate) async fn pass_hold(&self) {
        self.held.pass().await;
    }

    /// Holds new proposals until the guard is dropped (leadership transfer).
    pub(crate) fn hold_proposals(&self) -> HoldGuard {
        self.held.held.store(true, Ordering::Release);
        HoldGuard(self.held.clone())
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let leader = self.effective_leader(&m);
        NodeStatus {
            leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            snapshots: self.snapshots.taken(),
            is_leader: m.state == ServerState::Leader && leader == Some(self.id),
            is_learner: m.state == ServerState::Learner,
        }
    }

    /// The leader as etcd would report it. openraft's leader never steps down by itself
    /// when it loses its quorum (etcd's CheckQuorum does): a leader that has not heard
    /// from a quorum for an election timeout counts as no leader here, so `hasleader`
    /// requests fail on an isolated old leader as they would on etcd.
    fn effective_leader(&self, m: &openraft::RaftMetrics<NodeId, BasicNode>) -> Option<NodeId> {
        let l = m.current_leader?;
        if l != self.id || m.state != ServerState::Leader {
            return Some(l);
        }
        let voters = m.membership_config.membership().voter_ids().count();
        let limit = self.election_ms;
        if voters <= 1 || m.millis_since_quorum_ack.is_some_and(|ms| ms <= limit) {
            Some(l)
        } else {
            None
        }
    }

    pub fn has_leader(&self) -> bool {
        self.status().leader.is_some()
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

#[cfg(test)]
mod engine_choice_tests {
    use super::StateEngine::{self, Log, Sled};

    #[test]
    fn a_member_keeps_its_engine_and_new_ones_get_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert_eq!(
            StateEngine::resolve(None, d),
            Ok(StateEngine::FOR_NEW_MEMBERS)
        );
        assert_eq!(StateEngine::resolve(Some(Log), d), Ok(Log));
        std::fs::create_dir(d.join("state.log")).expect("mkdir");
        assert_eq!(StateEngine::resolve(None, d), Ok(Log));
        assert_eq!(StateEngine::resolve(Some(Log), d), Ok(Log));
        let err = StateEngine::resolve(Some(Sled), d).expect_err("refused");
        assert!(err.contains("--experimental-state-engine=log"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("state")).expect("mkdir");
        assert_eq!(StateEngine::resolve(None, dir.path()), Ok(Sled));
        assert!(StateEngine::resolve(Some(Log), dir.path()).is_err());
    }

    #[test]
    fn flag_values_parse() {
        assert_eq!("sled".parse::<StateEngine>(), Ok(Sled));
        assert_eq!("log".parse::<StateEngine>(), Ok(Log));
        let err = "bolt".parse::<StateEngine>().expect_err("refused");
        assert!(err.contains("expected sled or log"), "{err}");
    }
}
