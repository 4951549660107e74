//! S5: compaction and space. `objects` keys of `value_size` bytes updated (guarded-update
//! Txns) at `rates[0]` per second for `phase_secs`; every `compact_every` seconds the
//! harness compacts at the revision it saw at the previous compaction point, as
//! kube-apiserver does. Reported: disk bytes of the data dirs over time and at the end
//! against live bytes (`objects x value_size`), the compaction calls' latency, and stalls
//! (writes slower than 100 ms; the write latency histogram has the rest).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use shale_api::etcdserverpb::CompactionRequest;

use super::Ctx;
use crate::kube::current_revision;
use crate::objects::Kind;
use crate::phase::{Mode, Plan};
use crate::pool::kv_client;
use crate::report::Recorder;

pub async fn run(ctx: &mut Ctx) -> Result<usize> {
    let n = ctx.p.objects;
    let gen = Arc::new(ctx.preloaded_churn(Kind::Pod, 1, (100, 0)).await?);
    let rate = ctx.p.rates.first().copied().unwrap_or(1000.0);
    let every = Duration::from_secs_f64(ctx.p.compact_every);
    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let (mut kv, done) = (kv_client(ctx.pool.channel(1)), done.clone());
        tokio::spawn(async move {
            let mut rec = Recorder::new();
            let mut prev = current_revision(&mut kv, b"compact_rev_key").await?;
            let mut next = tokio::time::Instant::now() + every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = async { while !done.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await } } => break,
                }
                next += every;
                let now_rev = current_revision(&mut kv, b"compact_rev_key").await?;
                let t0 = std::time::Instant::now();
                match kv
                    .compact(CompactionRequest {
                        revision: prev,
                        physical: false,
                    })
                    .await
                {
                    Ok(_) => rec.ok(t0.elapsed()),
                    Err(s) => rec.err(s.message()),
                }
                prev = now_rev;
            }
            anyhow::Ok(rec)
        })
    };
    let plan = Plan {
        name: format!(
            "updates {rate}/s, compaction every {}s",
            ctx.p.compact_every
        ),
        mode: Mode::Open { rate },
        duration: ctx.phase_duration(),
        max_ops: None,
        timeout: ctx.timeout(),
    };
    let res = ctx.phase(gen, plan, None, None).await;
    done.store(true, Ordering::Relaxed);
    let compactions = compactor.await??;
    let i = res?;
    let live = (n as f64) * ctx.p.value_size as f64;
    let disk = ctx.servers.disk_bytes() as f64;
    let ph = &mut ctx.phases[i];
    let c = compactions.report("compact", Duration::from_secs(1));
    ph.extra.insert("compactions".into(), c.ok as f64);
    ph.extra.insert("compaction_errors".into(), c.errors as f64);
    ph.extra.insert("compaction_max_ms".into(), c.max_ms);
    ph.extra.insert("live_mib".into(), live / 1048576.0);
    ph.extra.insert("disk_mib".into(), disk / 1048576.0);
    if live > 0.0 && disk > 0.0 {
        ph.extra.insert("disk_over_live".into(), disk / live);
    }
    let stalls = ph.load.recorder.count_above(Duration::from_millis(100));
    ph.extra.insert("stalls_over_100ms".into(), stalls as f64);
    Ok(i)
}
