//! [`PeerService`]: the `RaftPeer` gRPC service a member serves on its peer port.
//!
//! A removed member is told so, as etcd's rafthttp answers it with HTTP 410 Gone: its vote
//! requests and its `Hello`s are refused with [`member_removed`], a status the sender
//! recognises with [`is_member_removed`] and then stops. A member counts as removed only on
//! proof that cannot be undone: this member's membership is committed (applied) and uniform
//! and does not name the sender, and the sender once published its attributes here (which
//! it can only do after it was added). So a member that is joining (not yet added, or added
//! after what this member has applied) or a learner is never taken for a removed one, and
//! a removed member cannot win a vote and come back.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shale_api::shalepb::raft_peer_server::RaftPeer;
use shale_api::shalepb::{
    ForwardRequest, ForwardResponse, HelloRequest, HelloResponse, RaftKind, RaftMessage,
};
use tonic::{Request, Response, Status};

use crate::app::{NodeId, TypeConfig};
use crate::node::RaftNode;

/// The incoming side of the peer protocol.
pub struct PeerService {
    node: Arc<RaftNode>,
}

impl PeerService {
    pub fn new(node: Arc<RaftNode>) -> Self {
        Self { node }
    }

    fn check(&self, cluster_id: u64, group_id: u64) -> Result<(), Status> {
        let cfg = self.node.peers().config();
        if cluster_id != cfg.cluster_id {
            return Err(Status::failed_precondition(format!(
                "request cluster ID mismatch (got {cluster_id:x} want {:x}): the sender belongs to another cluster (--initial-cluster / --initial-cluster-token differ)",
                cfg.cluster_id
            )));
        }
        if group_id != cfg.group_id {
            return Err(Status::failed_precondition(format!(
                "raft group {group_id} is not served by member {:x}",
                cfg.member_id
            )));
        }
        Ok(())
    }

    /// Whether `from` was a member of this cluster and has been removed from it (see the
    /// module comment for the proof asked).
    fn was_removed(&self, from: NodeId) -> bool {
        if from == 0 || from == self.node.id() {
            return false;
        }
        {
            let metrics = self.node.raft().metrics();
            let m = metrics.borrow();
            let cfg = &m.membership_config;
            let mem = cfg.membership();
            let committed =
                cfg.log_id().is_some() && cfg.log_id().as_ref() <= m.last_applied.as_ref();
            if mem.get_node(&from).is_some() || !committed || mem.get_joint_config().len() != 1 {
                return false;
            }
        }
        self.node
            .machine()
            .member_attrs()
            .is_ok_and(|attrs| attrs.iter().any(|a| a.id == from))
    }
}

/// etcd's message for a member that has been removed (rafthttp's `errMemberRemoved`).
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

/// The answer to a message from a removed member (etcd answers HTTP 410 Gone).
pub fn member_removed() -> Status {
    Status::permission_denied(MEMBER_REMOVED)
}

/// Whether a peer answered that this member has been removed from the cluster.
pub fn is_member_removed(status: &Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message() == MEMBER_REMOVED
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Status> {
    bincode::deserialize(b).map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Status> {
    bincode::serialize(v).map_err(|e| Status::internal(format!("cannot encode raft answer: {e}")))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn raft(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        self.check(m.cluster_id, m.group_id)?;
        let me: NodeId = self.node.id();
        if m.to != me {
            return Err(Status::failed_precondition(format!(
                "message for member {:x} reached member {me:x}",
                m.to
            )));
        }
        let raft = self.node.raft();
        let payload = match RaftKind::try_from(m.kind) {
            Ok(RaftKind::AppendEntries) => {
                let r: AppendEntriesRequest<TypeConfig> = decode(&m.payload)?;
                encode(&raft.append_entries(r).await)?
            }
            Ok(RaftKind::Vote) => {
                // Only candidates send votes, and a removed member that still thinks it
                // votes campaigns; it must hear that it is gone (and cannot win).
                if self.was_removed(m.from) {
                    return Err(member_removed());
                }
                let r: VoteRequest<NodeId> = decode(&m.payload)?;
                encode(&raft.vote(r).await)?
            }
            Ok(RaftKind::InstallSnapshot) => {
                let r: InstallSnapshotRequest<TypeConfig> = decode(&m.payload)?;
                encode(&raft.install_snapshot(r).await)?
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "unknown raft message kind {}",
                    m.kind
                )))
            }
        };
        Ok(Response::new(RaftMessage {
            cluster_id: m.cluster_id,
            group_id: m.group_id,
            from: me,
            to: m.from,
            kind: m.kind,
            payload: payload.into(),
        }))
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let m = req.into_inner();
        self.check(m.cluster_id, m.group_id)?;
        let Some(r) = m.request else {
            return Err(Status::invalid_argument("empty forwarded request"));
        };
        let answer = match self.node.execute_forwarded(r).await {
            Ok(resp) => ForwardResponse {
                error: 0,
                error_message: String::new(),
                response: Some(resp),
            },
            Err(e) => ForwardResponse {
                error: e.code_number(),
                error_message: e.message().to_string(),
                response: None,
            },
        };
        Ok(Response::new(answer))
    }

    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        let h = req.into_inner();
        let cfg = self.node.peers().config();
        tracing::debug!(from = %h.from_name, cluster = %format!("{:x}", h.cluster_id), "hello from a peer");
        if h.cluster_id == cfg.cluster_id && self.was_removed(h.from) {
            tracing::info!(peer = %format!("{:x}", h.from), name = %h.from_name, "a removed member asked; told it has been removed");
            return Err(member_removed());
        }
        Ok(Response::new(HelloResponse {
            cluster_id: cfg.cluster_id,
            member_id: cfg.member_id,
            name: cfg.name.clone(),
            members: self.node.members(),
            leader: self.node.status().leader.unwrap_or(0),
        }))
    }
}
