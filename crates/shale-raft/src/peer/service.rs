//! [`PeerService`]: the `RaftPeer` gRPC service a member serves on its peer port.

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
        Ok(Response::new(HelloResponse {
            cluster_id: cfg.cluster_id,
            member_id: cfg.member_id,
            name: cfg.name.clone(),
            members: self.node.members(),
            leader: self.node.status().leader.unwrap_or(0),
        }))
    }
}
