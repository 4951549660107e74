//! What a member does for the cluster beyond proposing and reading: the member list, the
//! requests only the leader can answer (forwarded here by followers, see [`crate::peer`]),
//! and membership changes.
//!
//! Membership lives in Raft (openraft's membership config: who votes, who learns, and each
//! member's peer URLs); names and client URLs come from the state machine, where every
//! member publishes its own (see `shale_machine::members`). Lease clocks live on the
//! leader only, so keep-alive and time-to-live go to the leader, as in etcd.
//!
//! Rules taken from etcd: at most one learner; a learner is promoted only once its log is
//! within 10% of the leader's commit index; peer URLs are unique in the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use openraft::{BasicNode, ChangeMembers, ServerState};
use shale_api::error::EtcdError;
use shale_api::shalepb::{
    forward_request::Request as Fwd, forward_response::Response as FwdAnswer, LeaseTtl,
    MemberChangeResult, PeerMember,
};

use crate::app::{Command, NodeId};
use crate::node::RaftNode;
use crate::proposer::{map_appended_write_err, map_write_err};

/// Most learners a cluster may have (etcd's default).
pub const MAX_LEARNERS: usize = 1;

fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for u in urls {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
            .ok_or(EtcdError::MemberBadUrls)?;
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .ok_or(EtcdError::MemberBadUrls)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(EtcdError::MemberBadUrls);
        }
    }
    Ok(())
}

impl RaftNode {
    /// The members of the group: Raft's membership with the published names and client URLs.
    pub fn members(&self) -> Vec<PeerMember> {
        let m = self.raft().metrics().borrow().membership_config.clone();
        let mem = m.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let attrs: BTreeMap<u64, _> = self
            .machine()
            .member_attrs()
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        mem.nodes()
            .map(|(id, node)| {
                let a = attrs.get(id);
                PeerMember {
                    id: *id,
                    name: a.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_urls: split_urls(&node.addr),
                    client_urls: a.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect()
    }

    /// Runs `req` where the leader is: here, or forwarded to it.
    pub async fn on_leader(&self, req: Fwd) -> Result<FwdAnswer, EtcdError> {
        match self
            .forwarder()
            .to_leader(req.clone(), self.timeout())
            .await?
        {
            Some(answer) => Ok(answer),
            None => self.execute_forwarded(req).await,
        }
    }

    fn ensure_leader(&self) -> Result<(), EtcdError> {
        let m = self.raft().metrics().borrow().clone();
        if m.state == ServerState::Leader {
            Ok(())
        } else if m.current_leader.is_some() {
            Err(EtcdError::NotLeader)
        } else {
            Err(EtcdError::NoLeader)
        }
    }

    /// Executes a request that needs the leader, on the leader.
    pub async fn execute_forwarded(&self, req: Fwd) -> Result<FwdAnswer, EtcdError> {
        match req {
            Fwd::Propose(batch) => {
                // Held like local proposals while leadership is handed over.
                self.pass_hold().await;
                // Not the leader: nothing is appended, so the sender may try the next leader.
                self.ensure_leader()?;
                let n = batch.requests.len();
                let resp = self
                    .raft()
                    .client_write(Command::new(batch))
                    .await
                    .map_err(map_appended_write_err)?;
                if resp.data.0.responses.len() != n {
                    return Err(EtcdError::Corrupt);
                }
                Ok(FwdAnswer::Propose(resp.data.0))
            }
            // Shares quorum rounds with this leader's own readers and other followers.
            Fwd::ReadIndex(_) => Ok(FwdAnswer::ReadIndex(self.leader_read_index().await?)),
            Fwd::LeaseKeepAlive(r) => {
                self.ensure_leader()?;
                let ttl = self
                    .machine()
                    .with_lessor(|l| l.renew(r.id, Instant::now()));
                Ok(FwdAnswer::Lease(LeaseTtl {
                    ttl: ttl.unwrap_or(0),
                    granted_ttl: ttl.unwrap_or(0),
                }))
            }
            Fwd::LeaseTimeToLive(r) => {
                self.ensure_leader()?;
                let now = Instant::now();
                let (ttl, granted) = self.machine().with_lessor(|l| {
                    (
                        l.remaining(r.id, now).unwrap_or(-1),
                        l.get(r.id).map_or(0, |x| x.ttl),
                    )
                });
                Ok(FwdAnswer::Lease(LeaseTtl {
                    ttl,
                    granted_ttl: granted,
                }))
            }
            Fwd::MemberAdd(a) => self.member_add(a.peer_urls, a.is_learner).await,
            Fwd::MemberRemove(r) => self.member_remove(r.id).await,
            Fwd::MemberPromote(r) => self.member_promote(r.id).await,
            Fwd::MemberUpdate(u) => self.member_update(u.id, u.peer_urls).await,
            Fwd::MoveLeader(r) => self.move_leader(r.id).await,
        }
    }

    fn change_result(&self, id: NodeId) -> FwdAnswer {
        let members = self.members();
        let member = members.iter().find(|m| m.id == id).cloned();
        FwdAnswer::MemberChange(MemberChangeResult { member, members })
    }

    async fn member_add(&self, urls: Vec<String>, learner: bool) -> Result<FwdAnswer, EtcdError> {
        self.ensure_leader()?;
        check_urls(&urls)?;
        let members = self.members();
        if members
            .iter()
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist);
        }
        if learner && members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
            return Err(EtcdError::TooManyLearners);
        }
        let mut sorted = urls.clone();
        sorted.sort();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut id = crate::identity::fnv64(&[
            &sorted.join(","),
            &format!("{:x}", self.peers().config().cluster_id),
            &now.to_string(),
        ]);
        while id == 0 || members.iter().any(|m| m.id == id) {
            id = id.wrapping_add(1);
        }
        let node = BasicNode {
            addr: urls.join(","),
        };
        let r = if learner {
            self.raft().add_learner(id, node, false).await
        } else {
            let mut map = BTreeMap::new();
            map.insert(id, node);
            self.raft()
                .change_membership(ChangeMembers::AddVoters(map), true)
                .await
        };
        r.map_err(map_write_err)?;
        Ok(self.change_result(id))
    }

    async fn member_remove(&self, id: NodeId) -> Result<FwdAnswer, EtcdError> {
        self.ensure_leader()?;
        let members = self.members();
        let Some(m) = members.iter().find(|m| m.id == id) else {
            return Err(EtcdError::MemberNotFound);
        };
        let change = if m.is_learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            if members.iter().filter(|m| !m.is_learner).count() <= 1 {
                return Err(EtcdError::MemberNotEnoughStarted);
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        };
        self.raft()
            .change_membership(change, false)
            .await
            .map_err(map_write_err)?;
        Ok(self.change_result(id))
    }

    async fn member_promote(&self, id: NodeId) -> Result<FwdAnswer, EtcdError> {
        self.ensure_leader()?;
        let members = self.members();
        let Some(m) = members.iter().find(|m| m.id == id) else {
            return Err(EtcdError::MemberNotFound);
        };
        if !m.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        let metrics = self.raft().metrics().borrow().clone();
        let committed = metrics.last_applied.map_or(0, |l| l.index);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        if (matched as f64) < committed as f64 * 0.9 {
            return Err(EtcdError::LearnerNotReady);
        }
        self.raft()
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
            .map_err(map_write_err)?;
        Ok(self.change_result(id))
    }

    async fn member_update(&self, id: NodeId, urls: Vec<String>) -> Result<FwdAnswer, EtcdError> {
        self.ensure_leader()?;
        check_urls(&urls)?;
        let members = self.members();
        if !members.iter().any(|m| m.id == id) {
            return Err(EtcdError::MemberNotFound);
        }
        if members
            .iter()
            .any(|m| m.id != id && m.peer_urls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist);
        }
        let mut map = BTreeMap::new();
        map.insert(
            id,
            BasicNode {
                addr: urls.join(","),
            },
        );
        self.raft()
            .change_membership(ChangeMembers::SetNodes(map), true)
            .await
            .map_err(map_write_err)?;
        Ok(self.change_result(id))
    }

    /// Hands leadership to `target`, a voter: the leader stops its heartbeats so the
    /// followers' leader leases run out, the target (told over the peer port) starts an
    /// election at once and wins it because its log is as long as the leader's (it waits
    /// to catch up first). The old leader resumes heartbeats as a follower.
    async fn move_leader(&self, target: NodeId) -> Result<FwdAnswer, EtcdError> {
        if target == self.id() {
            // Asked of the target itself (the second half of a transfer): campaign.
            let lease = std::time::Duration::from_millis(self.raft().config().election_timeout_max);
            crate::transfer::campaign(self, lease).await?;
            return Ok(FwdAnswer::Done(true));
        }
        self.ensure_leader()?;
        crate::transfer::transfer_leadership(self, target).await?;
        Ok(FwdAnswer::Done(true))
    }
}
