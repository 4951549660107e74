//! Leadership transfer (etcd's MoveLeader) on openraft 0.9, which has no transfer of its own.
//!
//! A follower grants its vote only once its leader lease has run out, that is after
//! `election_timeout_max` without hearing from the leader. So the leader:
//! 1. checks the target is a voter and waits until the target's log matches its own;
//! 2. stops its heartbeats and holds new proposals (they wait, they are not refused);
//! 3. tells the target to campaign: the target waits one leader lease, then calls an
//!    election, retrying until it leads or the deadline passes;
//! 4. waits to see the target lead, then resumes heartbeats and proposals whatever happened.
//!
//! The target's log is the longest, so it wins unless another follower's election timer
//! fires first; then the transfer reports a timeout and the cluster has a leader anyway.

use std::time::Duration;

use shale_api::error::EtcdError;
use shale_api::shalepb::{forward_request::Request as Fwd, MemberIdRequest};

use crate::app::NodeId;
use crate::node::RaftNode;

pub(crate) async fn transfer_leadership(node: &RaftNode, target: NodeId) -> Result<(), EtcdError> {
    let m = node.raft().metrics().borrow().clone();
    let mem = m.membership_config.membership().clone();
    if !mem.voter_ids().any(|v| v == target) {
        return Err(EtcdError::BadLeaderTransferee);
    }
    let Some(peer) = mem.get_node(&target) else {
        return Err(EtcdError::BadLeaderTransferee);
    };
    let urls = peer.addr.clone();
    let deadline = node.timeout();
    let last = m.last_log_index.unwrap_or(0);
    node.raft()
        .wait(Some(deadline))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned().flatten())
                    .is_some_and(|l| l.index >= last)
            },
            "transferee caught up",
        )
        .await
        .map_err(|_| EtcdError::TimeoutWaitAppliedIndex)?;
    let _hold = node.hold_proposals();
    node.raft().runtime_config().heartbeat(false);
    let r = async {
        node.forwarder()
            .send(
                target,
                &urls,
                Fwd::MoveLeader(MemberIdRequest { id: target }),
                deadline,
            )
            .await?;
        node.raft()
            .wait(Some(deadline))
            .metrics(|m| m.current_leader == Some(target), "transferee leads")
            .await
            .map_err(|_| EtcdError::Timeout)?;
        Ok(())
    }
    .await;
    node.raft().runtime_config().heartbeat(true);
    r
}

/// The target's half: campaign once the old leader's lease has run out.
pub(crate) async fn campaign(node: &RaftNode, lease: Duration) -> Result<(), EtcdError> {
    let me = node.id();
    let start = tokio::time::Instant::now();
    tokio::time::sleep(lease + Duration::from_millis(20)).await;
    while start.elapsed() < node.timeout() {
        let _ = node.raft().trigger().elect().await;
        if node
            .raft()
            .wait(Some(lease))
            .metrics(|m| m.current_leader == Some(me), "elected")
            .await
            .is_ok()
        {
            return Ok(());
        }
        if node
            .raft()
            .metrics()
            .borrow()
            .current_leader
            .is_some_and(|l| l != me)
        {
            // Someone else won; the transfer failed but the cluster is led.
            return Err(EtcdError::Timeout);
        }
    }
    Err(EtcdError::Timeout)
}
