//! Background work of a member: lease expiry (leader only), auto-compaction, periodic watch
//! progress notifications, and refreshing the cached database size.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shale_api::etcdserverpb::{CompactionRequest, LeaseRevokeRequest};
use shale_api::shalepb::internal_request::Request as Cmd;
use tokio::sync::watch;

use crate::config::AutoCompaction;
use crate::ctx::Ctx;

/// Spawns every background task; they stop when `stop` flips to true.
pub fn spawn_all(
    ctx: Arc<Ctx>,
    compaction: AutoCompaction,
    progress_every: Duration,
    stop: watch::Receiver<bool>,
) {
    tokio::spawn(lease_expiry(ctx.clone(), stop.clone()));
    tokio::spawn(progress(ctx.clone(), progress_every, stop.clone()));
    tokio::spawn(db_size(ctx.clone(), stop.clone()));
    if compaction != AutoCompaction::Off {
        tokio::spawn(auto_compact(ctx, compaction, stop));
    }
}

async fn ticker(every: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(every) => true,
        _ = stop.changed() => false,
    }
}

/// The leader revokes expired leases through consensus; a member that becomes leader first
/// restarts every lease clock.
async fn lease_expiry(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut was_leader = false;
    while ticker(Duration::from_millis(500), &mut stop).await {
        let leader = ctx.node.status().is_leader;
        if leader && !was_leader {
            ctx.node
                .machine()
                .with_lessor(|l| l.promote(Instant::now()));
            ctx.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        was_leader = leader;
        if !leader {
            continue;
        }
        let expired = ctx
            .node
            .machine()
            .with_lessor(|l| l.expired(Instant::now(), 500));
        for id in expired {
            match ctx
                .propose(Cmd::LeaseRevoke(LeaseRevokeRequest { id }))
                .await
            {
                Ok(_) => {
                    ctx.metrics.leases_expired.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(lease = id, error = %e.message(), "revoking expired lease failed")
                }
            }
        }
    }
}

async fn progress(ctx: Arc<Ctx>, every: Duration, mut stop: watch::Receiver<bool>) {
    if every.is_zero() {
        return;
    }
    while ticker(every, &mut stop).await {
        ctx.node.machine().hub().progress_tick();
    }
}

async fn db_size(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        let store = ctx.store().clone();
        if let Ok(n) = tokio::task::spawn_blocking(move || store.engine().size_bytes()).await {
            ctx.db_size.store(n, Ordering::Relaxed);
        }
        if !ticker(Duration::from_secs(1), &mut stop).await {
            return;
        }
    }
}

/// etcd's auto-compaction: `periodic` keeps a time window of history, sampling the revision
/// every tenth of the window (at most hourly) and compacting to the revision seen one window
/// ago; `revision` keeps the last N revisions, checked every 5 minutes.
async fn auto_compact(ctx: Arc<Ctx>, mode: AutoCompaction, mut stop: watch::Receiver<bool>) {
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last = 0i64;
    let (every, keep) = match mode {
        AutoCompaction::Periodic(d) => (
            (d / 10)
                .min(Duration::from_secs(3600))
                .max(Duration::from_millis(100)),
            d,
        ),
        AutoCompaction::Revision(_) => (Duration::from_secs(300), Duration::ZERO),
        AutoCompaction::Off => return,
    };
    loop {
        let now = Instant::now();
        let rev = ctx.store().current_revision();
        let target = match mode {
            AutoCompaction::Periodic(_) => {
                samples.push_back((now, rev));
                let mut t = None;
                while let Some((at, r)) = samples.front().copied() {
                    if now.duration_since(at) >= keep {
                        t = Some(r);
                        samples.pop_front();
                    } else {
                        break;
                    }
                }
                t
            }
            AutoCompaction::Revision(n) => Some(rev - n),
            AutoCompaction::Off => None,
        };
        if let Some(t) = target {
            if t > last && t > ctx.store().compact_revision() && ctx.node.status().is_leader {
                match ctx
                    .propose(Cmd::Compaction(CompactionRequest {
                        revision: t,
                        physical: false,
                    }))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(revision = t, "auto-compaction");
                        last = t;
                    }
                    Err(e) => {
                        tracing::warn!(revision = t, error = %e.message(), "auto-compaction failed")
                    }
                }
            }
        }
        if !ticker(every, &mut stop).await {
            return;
        }
    }
}
