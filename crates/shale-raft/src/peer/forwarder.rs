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

/// Why a forwarded request failed.
enum SendError {
    /// It never reached a leader that could execute it: safe to send again.
    NotSent,
    Failed(EtcdError),
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

    /// Runs `req` on the leader: returns `Ok(None)` when this member leads (the caller
    /// executes it), else the leader's answer. A request that could not even be sent (the
    /// leader's port refuses connections: it is down) waits for another leader and goes
    /// there, within `timeout`; one that may have arrived is never sent twice.
    pub async fn to_leader(
        &self,
        req: forward_request::Request,
        timeout: Duration,
    ) -> Result<Option<forward_response::Response>, EtcdError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (id, urls) = match self.route(left).await? {
                Route::Local => return Ok(None),
                Route::Remote(id, urls) => (id, urls),
            };
            match self.try_send(id, &urls, req.clone(), left).await {
                Err(SendError::NotSent) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(EtcdError::TimeoutDueToLeaderFail);
                    }
                    // Wait until this member sees another leader (or none) before retrying.
                    let _ = self
                        .raft
                        .wait(Some(left.min(Duration::from_millis(200))))
                        .metrics(|m| m.current_leader != Some(id), "leader change")
                        .await;
                }
                Err(SendError::Failed(e)) => return Err(e),
                Ok(r) => return Ok(Some(r)),
            }
        }
    }

    /// Sends `req` to member `to` (the leader) and returns its answer.
    pub async fn send(
        &self,
        to: NodeId,
        urls: &str,
        req: forward_request::Request,
        timeout: Duration,
    ) -> Result<forward_response::Response, EtcdError> {
        self.try_send(to, urls, req, timeout)
            .await
            .map_err(|e| match e {
                SendError::NotSent => EtcdError::TimeoutDueToConnectionLost,
                SendError::Failed(e) => e,
            })
    }

    async fn try_send(
        &self,
        to: NodeId,
        urls: &str,
        req: forward_request::Request,
        timeout: Duration,
    ) -> Result<forward_response::Response, SendError> {
        let cfg = self.peers.config();
        let msg = ForwardRequest {
            cluster_id: cfg.cluster_id,
            group_id: cfg.group_id,
            from: cfg.member_id,
            request: Some(req),
        };
        let mut client = self.peers.client(to, urls).map_err(|e| {
            tracing::warn!(leader = %format!("{to:x}"), error = %e, "cannot reach the leader");
            SendError::NotSent
        })?;
        let answer = match tokio::time::timeout(timeout, client.forward(msg)).await {
            Err(_) => return Err(SendError::Failed(EtcdError::Timeout)),
            Ok(Err(status)) => {
                tracing::debug!(leader = %format!("{to:x}"), error = %status.message(), "forwarding to the leader failed");
                // Nothing left this member: the connection (or the name lookup) failed.
                let msg = status.message();
                if msg.contains("tcp connect error") || msg.contains("dns error") {
                    return Err(SendError::NotSent);
                }
                return Err(SendError::Failed(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        EtcdError::TimeoutDueToConnectionLost
                    }
                    _ => EtcdError::LeaderChanged,
                }));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if answer.error != 0 {
            let e = EtcdError::from_code_number(answer.error).unwrap_or(EtcdError::Corrupt);
            // The member we took for the leader is not (anymore): nothing was executed.
            if matches!(e, EtcdError::NotLeader | EtcdError::NoLeader) {
                return Err(SendError::NotSent);
            }
            return Err(SendError::Failed(e));
        }
        answer.response.ok_or(SendError::Failed(EtcdError::Corrupt))
    }
}
