//! [`LeaderReadIndex`]: the leader's read index, one quorum round shared by every asker.
//!
//! A read index is the commit index at a moment the leader has proven (by a quorum of
//! heartbeat answers, openraft's `get_read_log_id`) that it still leads. Linearizable reads
//! on the leader and the read-index requests followers forward to it all need one; each
//! costs a heartbeat round to every voter. They share rounds through [`SharedRound`]: a
//! request waits for the next round that starts after it arrived, so the index it gets is
//! still a valid read point for it, and one round answers every member's readers at once.

use openraft::error::RaftError;
use shale_api::error::EtcdError;

use crate::app::Raft;
use crate::shared_round::SharedRound;

/// Shared read-index rounds of the leader of one Raft group.
#[derive(Clone)]
pub(crate) struct LeaderReadIndex {
    raft: Raft,
    rounds: SharedRound<Result<u64, EtcdError>>,
}

impl LeaderReadIndex {
    pub(crate) fn new(raft: Raft) -> Self {
        Self {
            raft,
            rounds: SharedRound::new(),
        }
    }

    /// A read index confirmed by a quorum round that started after this call; `NotLeader` or
    /// `NoLeader` if this member does not lead.
    pub(crate) async fn get(&self) -> Result<u64, EtcdError> {
        let raft = self.raft.clone();
        self.rounds
            .join(move || {
                let raft = raft.clone();
                async move { read_index(&raft).await }
            })
            .await
            .unwrap_or(Err(EtcdError::Stopped))
    }
}

async fn read_index(raft: &Raft) -> Result<u64, EtcdError> {
    match raft.get_read_log_id().await {
        Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(_)) => {
            let has_leader = raft.metrics().borrow().current_leader.is_some();
            Err(if has_leader {
                EtcdError::NotLeader
            } else {
                EtcdError::NoLeader
            })
        }
        Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
    }
}
