//! Stopping a member that has been removed from its cluster, as etcd's stops.
//!
//! A member learns of its removal in one of two ways. It applies the configuration that
//! removes it: a removed leader always does (it commits it), a follower may. Or a peer tells
//! it: once a removal is committed nobody replicates to the removed member any more, so a
//! follower usually never applies it and would run on, alone, forever. etcd's peers answer
//! such a member's messages with 410 Gone (`errMemberRemoved`) and it stops; here the peer
//! service refuses a removed member's votes and `Hello`s with a status of its own
//! (`shale_raft::peer::member_removed`, which says only what the peer has committed, so one
//! answer is proof). A removed follower that still counts itself a voter campaigns and hears
//! it in the refusals of its vote requests, but one that no longer does, or a learner, sends
//! nothing at all; so a member that does not lead says hello to the others it knows every
//! [`REMOVAL_PROBE`] and stops at the first such answer.
//!
//! Either way [`watch_removal`] logs etcd's message and resolves `Member::removed`; `shale`
//! then shuts down cleanly (exit code 0). Restarted on the same data dir, the member is
//! told again and stops again: a removed member never comes back.

use std::sync::Arc;
use std::time::Duration;

use shale_api::shalepb::HelloRequest;
use shale_raft::peer::{is_member_removed, MEMBER_REMOVED};

use crate::ctx::Ctx;

/// How often a member that does not lead asks its peers whether it is still a member.
const REMOVAL_PROBE: Duration = Duration::from_secs(1);

/// Sends `true` on `removed` once this member has been removed from the cluster.
pub(crate) async fn watch_removal(ctx: Arc<Ctx>, removed: tokio::sync::watch::Sender<bool>) {
    let me = ctx.id.member_id;
    let mut was_member = false;
    let mut metrics = ctx.node.raft().metrics();
    let mut probe = tokio::time::interval(REMOVAL_PROBE);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // (member now, removed by an applied uniform config)
        let (is_member, gone) = {
            let m = metrics.borrow_and_update();
            let cfg = &m.membership_config;
            let is_member = cfg.membership().get_node(&me).is_some();
            let applied = cfg.log_id().is_some_and(|l| Some(l) <= m.last_applied);
            let uniform = cfg.membership().get_joint_config().len() == 1;
            (is_member, !is_member && applied && uniform)
        };
        if is_member {
            was_member = true;
        } else if was_member && gone {
            tracing::error!(member_id = %format!("{me:x}"), "{}; stopping (the data dir of this member must be removed before it joins again)", MEMBER_REMOVED);
            // Let the answer to the removal (possibly executed here) reach its client.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = removed.send(true);
            return;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // Run to the end once started: metrics change with every applied entry.
            _ = probe.tick() => {
                if let Some(peer) = told_removed(&ctx).await {
                    tracing::error!(member_id = %format!("{me:x}"), told_by = %format!("{peer:x}"), "{}; stopping (the data dir of this member must be removed before it joins again)", MEMBER_REMOVED);
                    let _ = removed.send(true);
                    return;
                }
            }
        }
    }
}

/// Says hello to every other member this member knows (unless it leads); the id of one that
/// answers that this member has been removed.
async fn told_removed(ctx: &Ctx) -> Option<u64> {
    let me = ctx.id.member_id;
    let others: Vec<(u64, String)> = {
        let m = ctx.node.raft().metrics().borrow().clone();
        if m.state == openraft::ServerState::Leader {
            return None;
        }
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    };
    let asks = others.into_iter().map(|(id, urls)| async move {
        let mut client = ctx.node.peers().client(id, &urls).ok()?;
        let hello = HelloRequest {
            cluster_id: ctx.id.cluster_id,
            from: me,
            from_name: ctx.id.name.clone(),
            from_peer_urls: ctx.id.peer_urls.clone(),
        };
        match tokio::time::timeout(REMOVAL_PROBE, client.hello(hello)).await {
            Ok(Err(status)) if is_member_removed(&status) => Some(id),
            _ => None,
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .next()
}
