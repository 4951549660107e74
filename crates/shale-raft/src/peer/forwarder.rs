//! [`Forwarder`]: sends a request this member cannot answer itself to the group's leader.

use std::sync::Arc;
use std::time::Duration;

use shale_api::error::EtcdError;
use shale_api::shalepb::{forward_request, forward_response, ForwardRequest};

use super::Peers;
use crate::app::{NodeId, Raft};

/// Where a request must go.
pub enum Route {
    /// This member leads: execute locally.
    Local,
    /// Another member leads: send it there.
    Remote(NodeId, String),
}

/// Finds the leader and talks to it.
#[derive(Clone)]
pub struct Forwarder {
    raft: Raft,
    peers: Arc<Peers>,
}

impl Forwarder {
    pub fn new(raft: Raft, peers: Arc<Peers>) -> Self {
        Self { raft, peers }
    }

    /// The current leader, waiting up to `wait` for one to be known.
    pub async fn route(&self, wait: Duration) -> Result<Route, EtcdError> {
        let me = self.peers.config().member_id;
        let pick = |m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>| {
            let l = m.current_leader?;
            if l == me {
                return Some(Route::Local);
            }
            let node = m.membership_config.membership().get_node(&l)?;
            Some(Route::Remote(l, node.addr.clone()))
        };
        if let Some(r) = pick(&self.raft.metrics().borrow()) {
            return Ok(r);
        }
        let m = self
            .raft
            .wait(Some(wait))
            .metrics(|m| pick(m).is_some(), "a known leader")
            .await
            .map_err(|_| EtcdError::TimeoutDueToLeaderFail)?;
        pick(&m).ok_or(EtcdError::TimeoutDueToLeaderFail)
    }

    /// Sends `req` to member `to` (the leader) and returns its answer.
    pub async fn send(
        &self,
        to: NodeId,
        urls: &str,
        req: forward_request::Request,
        timeout: Duration,
    ) -> Result<forward_response::Response, EtcdError> {
        let cfg = self.peers.config();
        let msg = ForwardRequest {
            cluster_id: cfg.cluster_id,
            group_id: cfg.group_id,
            from: cfg.member_id,
            request: Some(req),
        };
        let mut client = self.peers.client(to, urls).map_err(|e| {
            tracing::warn!(leader = %format!("{to:x}"), error = %e, "cannot reach the leader");
            EtcdError::TimeoutDueToConnectionLost
        })?;
        let answer = match tokio::time::timeout(timeout, client.forward(msg)).await {
            Err(_) => return Err(EtcdError::Timeout),
            Ok(Err(status)) => {
                tracing::debug!(leader = %format!("{to:x}"), error = %status.message(), "forwarding to the leader failed");
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        EtcdError::TimeoutDueToConnectionLost
                    }
                    _ => EtcdError::LeaderChanged,
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if answer.error != 0 {
            return Err(EtcdError::from_code_number(answer.error).unwrap_or(EtcdError::Corrupt));
        }
        answer.response.ok_or(EtcdError::Corrupt)
    }
}
