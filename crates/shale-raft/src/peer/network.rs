//! openraft's network over [`Peers`]: each openraft RPC is bincode inside a `RaftMessage`.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shale_api::shalepb::{RaftKind, RaftMessage};

use super::Peers;
use crate::app::{NodeId, TypeConfig};

/// Network factory of a group whose members talk over the peer port.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    peers: Arc<Peers>,
}

impl PeerNetwork {
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }
}

/// openraft's connection to one peer (shares the peer's channel with everything else).
#[derive(Debug, Clone)]
pub struct PeerConn {
    peers: Arc<Peers>,
    target: NodeId,
    urls: String,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConn {
        PeerConn {
            peers: self.peers.clone(),
            target,
            urls: node.addr.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

fn unreachable<E: std::error::Error>(msg: String) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(msg)))
}

fn network<E: std::error::Error>(msg: String) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg)))
}

impl PeerConn {
    async fn call<Req, Resp, E>(
        &self,
        kind: RaftKind,
        req: &Req,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = bincode::serialize(req)
            .map_err(|e| network(format!("cannot encode raft message: {e}")))?;
        let cfg = self.peers.config();
        let msg = RaftMessage {
            cluster_id: cfg.cluster_id,
            group_id: cfg.group_id,
            from: cfg.member_id,
            to: self.target,
            kind: kind as i32,
            payload: payload.into(),
        };
        let mut client = self
            .peers
            .client(self.target, &self.urls)
            .map_err(unreachable)?;
        let answer = match tokio::time::timeout(ttl, client.raft(msg)).await {
            Err(_) => {
                return Err(network(format!(
                    "member {:x} did not answer within {ttl:?}",
                    self.target
                )))
            }
            Ok(Err(status)) => {
                let text = format!(
                    "member {:x} at {}: {}",
                    self.target,
                    self.urls,
                    status.message()
                );
                return Err(match status.code() {
                    // Stopping is `watch_removal`'s business (in the server): it asks the
                    // peers itself, also when Raft sends nothing.
                    _ if super::is_member_removed(&status) => {
                        tracing::warn!(peer = %format!("{:x}", self.target), "{}", super::MEMBER_REMOVED);
                        unreachable(text)
                    }
                    tonic::Code::Unavailable | tonic::Code::Unknown => unreachable(text),
                    tonic::Code::FailedPrecondition => {
                        tracing::error!(peer = %format!("{:x}", self.target), error = %status.message(), "peer refused this member");
                        unreachable(text)
                    }
                    _ => network(text),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let res: Result<Resp, RaftError<NodeId, E>> = bincode::deserialize(&answer.payload)
            .map_err(|e| {
                network(format!(
                    "undecodable answer from member {:x}: {e}",
                    self.target
                ))
            })?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(RaftKind::AppendEntries, &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RaftKind::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RaftKind::Vote, &rpc, option.hard_ttl()).await
    }
}
