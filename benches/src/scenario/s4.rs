//! S4: events with leases. Events are created (create Txn, value `value_size` bytes) under
//! `/registry/events/<ns>/` at each of `rates` per second, attached to a lease that is reused
//! for `lease_reuse` seconds, as kube-apiserver's lease manager does: the lease is granted
//! with TTL = `event_ttl` + `lease_reuse` and never kept alive, so whole batches of events
//! expire together (mass expiry) while the run goes on. `watchers[0]` prefix watchers watch
//! `/registry/events/`.
//!
//! Correctness: every acknowledged create must reach every watcher (the generic check), and
//! every expiry delete in the watched window must too: the expected number of deletes in
//! `[start, end]` is `count(start - 1) + creates - count(end)` (counts read at those
//! revisions); a watcher that saw fewer delete events has lost the difference.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::lease_client::LeaseClient;
use shale_api::etcdserverpb::{LeaseGrantRequest, RangeRequest};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::Status;

use super::{prefix, Ctx, PhaseWatch};
use crate::kube::{prefix_end, put_txn, write, WriteOutcome};
use crate::objects::{key, Kind, ObjectTemplate};
use crate::phase::{Mode, OpGen, Outcome, Plan};
use crate::pool::kv_client;
use crate::watchers::WatchSpec;

/// The apiserver's lease reuse: one lease for every event created within `reuse`.
struct Leases {
    client: LeaseClient<Channel>,
    ttl: i64,
    reuse: Duration,
    current: Mutex<Option<(i64, Instant)>>,
    granted: AtomicU64,
}

impl Leases {
    async fn get(&self) -> Result<i64, Status> {
        let mut cur = self.current.lock().await;
        if let Some((id, at)) = *cur {
            if at.elapsed() < self.reuse {
                return Ok(id);
            }
        }
        let r = self
            .client
            .clone()
            .lease_grant(LeaseGrantRequest {
                ttl: self.ttl,
                id: 0,
            })
            .await?
            .into_inner();
        self.granted.fetch_add(1, Ordering::Relaxed);
        *cur = Some((r.id, Instant::now()));
        Ok(r.id)
    }
}

struct EventGen {
    leases: Leases,
    next: AtomicU64,
    namespaces: u64,
    tpl: ObjectTemplate,
    created: AtomicU64,
}

impl OpGen for EventGen {
    async fn op(
        &self,
        kv: &mut KvClient<Channel>,
        _rng: &mut StdRng,
        seq: u64,
    ) -> Result<Outcome, Status> {
        let lease = self.leases.get().await?;
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let txn = put_txn(
            key(Kind::Event, slot, self.namespaces),
            self.tpl.render(seq),
            0,
            lease,
        );
        match write(kv, txn).await? {
            WriteOutcome::Done(rev) => {
                self.created.fetch_add(1, Ordering::Relaxed);
                Ok(Outcome {
                    written: Some(rev),
                    ..Default::default()
                })
            }
            WriteOutcome::Conflict(_) => Ok(Outcome {
                conflict: true,
                ..Default::default()
            }),
        }
    }
}

async fn count_at(kv: &mut KvClient<Channel>, rev: i64) -> Result<i64> {
    let p = prefix(Kind::Event);
    let r = kv
        .range(RangeRequest {
            range_end: prefix_end(&p),
            key: p,
            count_only: true,
            revision: rev,
            ..Default::default()
        })
        .await
        .with_context(|| format!("counting events at revision {rev}"))?
        .into_inner();
    Ok(r.count)
}

pub async fn run(ctx: &mut Ctx) -> Result<usize> {
    let gen = Arc::new(EventGen {
        leases: Leases {
            client: LeaseClient::new(ctx.pool.channel(0)),
            ttl: ctx.p.event_ttl + ctx.p.lease_reuse as i64,
            reuse: Duration::from_secs(ctx.p.lease_reuse),
            current: Mutex::new(None),
            granted: AtomicU64::new(0),
        },
        next: AtomicU64::new(0),
        namespaces: ctx.p.namespaces,
        tpl: ObjectTemplate::new(Kind::Event, b"event", ctx.p.value_size),
        created: AtomicU64::new(0),
    });
    let watchers = ctx.p.watchers.first().copied().unwrap_or(0);
    let mut last = 0;
    for rate in ctx.p.rates.clone() {
        let mode = Mode::Open { rate };
        let created0 = gen.created.load(Ordering::Relaxed);
        let w = (watchers > 0).then(|| PhaseWatch {
            spec: WatchSpec {
                prefix: prefix(Kind::Event),
                watchers,
                per_stream: ctx.p.watchers_per_stream,
                prev_kv: true,
                progress_notify: true,
            },
            // creates plus as many expiry deletes
            capacity: (rate * 2.5 * ctx.p.phase_secs) as usize + 10_000,
        });
        let plan = Plan {
            name: format!("events {rate}/s, lease reused {}s", ctx.p.lease_reuse),
            mode,
            duration: ctx.phase_duration(),
            max_ops: None,
            timeout: ctx.timeout(),
        };
        let i = ctx.phase(gen.clone(), plan, w, None).await?;
        last = i;
        let created = gen.created.load(Ordering::Relaxed) - created0;
        let mut kv = kv_client(ctx.pool.channel(0));
        let ph = &mut ctx.phases[i];
        ph.extra.insert("events_created".into(), created as f64);
        ph.extra.insert(
            "leases_granted".into(),
            gen.leases.granted.load(Ordering::Relaxed) as f64,
        );
        if let Some(ws) = ph.watch.as_mut() {
            let before = count_at(&mut kv, ws.start_revision - 1).await?;
            let after = count_at(&mut kv, ws.end_revision).await?;
            let expected = (before + created as i64 - after).max(0) as u64;
            ph.extra.insert("expiry_deletes".into(), expected as f64);
            let missing: u64 = ws
                .deletes_seen
                .iter()
                .map(|d| expected.saturating_sub(*d))
                .sum();
            ws.lost_events += missing;
        }
    }
    Ok(last)
}
