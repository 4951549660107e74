//! S1 (node-lease heartbeats) and S2 (pod churn with watch fan-out).
//!
//! S1: `objects` leases of `value_size` bytes under `/registry/leases/kube-node-lease/`, each
//! heartbeat a guarded-update Txn with the lease's current mod_revision (the kubelet's
//! shape), first open loop at each of `rates`, then closed loop with `clients` clients; every
//! phase has `watchers[0]` prefix watchers. The summary quotes the closed-loop phase.
//!
//! S2: `objects` pods over `namespaces` namespaces; updates / creates / deletes mixed
//! 90/5/5 at each of `rates`, once per watcher count in `watchers` (prefix watchers with
//! prev_kv, `watchers_per_stream` per gRPC stream). The summary quotes the last phase
//! (most watchers, highest rate).

use std::sync::Arc;

use anyhow::Result;

use super::{prefix, Ctx, PhaseWatch};
use crate::objects::Kind;
use crate::phase::{Mode, Plan};
use crate::watchers::WatchSpec;

fn watch(ctx: &Ctx, kind: Kind, watchers: usize, mode: Mode) -> Option<PhaseWatch> {
    if watchers == 0 {
        return None;
    }
    let per_sec = match mode {
        Mode::Open { rate } => rate * 1.2,
        Mode::Closed { .. } => 40_000.0,
    };
    Some(PhaseWatch {
        spec: WatchSpec {
            prefix: prefix(kind),
            watchers,
            per_stream: ctx.p.watchers_per_stream,
            prev_kv: true,
            progress_notify: true,
        },
        capacity: (per_sec * ctx.p.phase_secs) as usize + 10_000,
    })
}

fn plan(ctx: &Ctx, name: String, mode: Mode) -> Plan {
    Plan {
        name,
        mode,
        duration: ctx.phase_duration(),
        max_ops: None,
        timeout: ctx.timeout(),
    }
}

pub async fn s1(ctx: &mut Ctx) -> Result<usize> {
    let gen = Arc::new(ctx.preloaded_churn(Kind::Lease, 1, (100, 0)).await?);
    let watchers = ctx.p.watchers.first().copied().unwrap_or(0);
    for rate in ctx.p.rates.clone() {
        let mode = Mode::Open { rate };
        let w = watch(ctx, Kind::Lease, watchers, mode);
        let p = plan(
            ctx,
            format!("heartbeats {rate}/s, {watchers} watchers"),
            mode,
        );
        ctx.phase(gen.clone(), p, w, None).await?;
    }
    let mode = Mode::Closed {
        clients: ctx.p.clients,
    };
    let w = watch(ctx, Kind::Lease, watchers, mode);
    let p = plan(
        ctx,
        format!("heartbeats closed loop, {} clients", ctx.p.clients),
        mode,
    );
    ctx.phase(gen, p, w, None).await
}

pub async fn s2(ctx: &mut Ctx) -> Result<usize> {
    // twice the slots: the upper half starts absent, so creates have room
    let gen = Arc::new(ctx.preloaded_churn(Kind::Pod, 2, (90, 5)).await?);
    let mut last = 0;
    for watchers in ctx.p.watchers.clone() {
        for rate in ctx.p.rates.clone() {
            let mode = Mode::Open { rate };
            let w = watch(ctx, Kind::Pod, watchers, mode);
            let p = plan(ctx, format!("pods {rate}/s, {watchers} watchers"), mode);
            last = ctx.phase(gen.clone(), p, w, None).await?;
        }
    }
    Ok(last)
}
