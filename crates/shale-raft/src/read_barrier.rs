//! [`ReadBarriers`]: linearizable read points shared by concurrent readers.
//!
//! A linearizable read must see every write committed before the read arrived. openraft's
//! `ensure_linearizable` gives that (leadership confirmed by a quorum, state machine caught
//! up), but costs a round through the Raft core. Readers therefore share barriers: a reader
//! that arrives while a barrier is running waits for the NEXT barrier, which starts after it
//! arrived and so covers it; everyone waiting when a barrier starts shares its result
//! ([`SharedRound`]). Under load one barrier serves hundreds of reads; when idle a read costs
//! exactly one barrier. On the leader the read index itself comes from [`LeaderReadIndex`],
//! whose quorum rounds also answer the read-index requests of the followers' barriers.

use std::time::Duration;

use shale_api::error::EtcdError;
use shale_api::shalepb::{forward_request, forward_response};

use crate::app::Raft;
use crate::peer::Forwarder;
use crate::read_index::LeaderReadIndex;
use crate::shared_round::SharedRound;

/// Shared linearizable read barriers of one Raft group.
#[derive(Clone)]
pub struct ReadBarriers {
    raft: Raft,
    forwarder: Forwarder,
    leader: LeaderReadIndex,
    timeout: Duration,
    rounds: SharedRound<Result<(), EtcdError>>,
}

impl ReadBarriers {
    pub fn new(raft: Raft, forwarder: Forwarder, timeout: Duration) -> Self {
        Self {
            leader: LeaderReadIndex::new(raft.clone()),
            raft,
            forwarder,
            timeout,
            rounds: SharedRound::new(),
        }
    }

    /// The leader's side: read-index rounds shared by local readers and forwarded requests.
    pub(crate) fn leader(&self) -> &LeaderReadIndex {
        &self.leader
    }

    /// Resolves once a barrier that started after this call has completed.
    pub async fn wait(&self) -> Result<(), EtcdError> {
        let me = self.clone();
        self.rounds
            .join(move || {
                let me = me.clone();
                async move { me.confirm().await }
            })
            .await
            .unwrap_or(Err(EtcdError::Stopped))
    }

    /// One read point: the leader's read index, then this member's apply reaching it.
    async fn confirm(&self) -> Result<(), EtcdError> {
        let remote = self
            .forwarder
            .to_leader(forward_request::Request::ReadIndex(true), self.timeout)
            .await?;
        let index = match remote {
            Some(forward_response::Response::ReadIndex(i)) => i,
            Some(_) => return Err(EtcdError::Corrupt),
            None => self.leader.get().await?,
        };
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        if applied >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(self.timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::TimeoutWaitAppliedIndex)
    }
}
