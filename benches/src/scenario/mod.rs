//! The Kubernetes-shaped scenarios S1–S6 (DESIGN.md section 6) and S7, scale (issue 12).
//!
//! A scenario is a preload followed by measured phases. Each phase is one load loop
//! ([`crate::phase::drive`], open or closed loop), optionally with a fresh fleet of prefix
//! watchers created just before it (so each phase's watch figures stand alone) and a
//! background load beside it. [`Ctx`] holds what every phase needs (connections, resolved
//! [`Params`], the stop flag a dying server raises, the server processes for CPU accounting)
//! and collects one [`PhaseResult`] per phase into a [`ScenarioResult`].
//!
//! Invariants: writers are the only source of revisions in a watched prefix except where a
//! scenario says otherwise (S4's lease expiry), so "every acknowledged revision reached every
//! watcher" is exactly the no-lost-events check; a phase never starts writing before all its
//! watchers are confirmed.

pub mod gens;
pub mod params;
mod s1_s2;
mod s3;
mod s4;
mod s5;
mod s6;
pub mod s7;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use shale_api::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

use crate::continuity::AckTable;
use crate::kube::{current_revision, Slots};
use crate::monitor::Servers;
use crate::objects::{key, Kind, ObjectTemplate};
use crate::phase::{count_bar, drive, LoadResult, Mode, OpGen, Plan};
use crate::pool::{kv_client, ClientPool};
use crate::report::{Recorder, Report};
use crate::watchers::{WatchFleet, WatchSpec, WatchStats};
pub use params::{Params, ScenarioArgs, ScenarioId};

/// One measured phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    #[serde(flatten)]
    pub load: LoadResult,
    pub watch: Option<WatchStats>,
    /// The background load beside the phase (S3's writes).
    pub background: Option<Report>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_ms_per_1k_ops: Option<f64>,
    /// Start of the phase on the monitor's time axis.
    pub t_start_s: f64,
    /// Why the system could not run this phase (e.g. etcd 3.5 has no RangeStream).
    pub unsupported: Option<String>,
    pub extra: BTreeMap<String, f64>,
}

impl PhaseResult {
    /// A phase that was not run against this system, and why (nothing measured).
    pub fn not_run(name: &str, mode: Mode, why: String) -> Self {
        let rec = Recorder::new();
        Self {
            load: LoadResult {
                report: rec.report(name, std::time::Duration::ZERO),
                mode,
                conflicts: 0,
                per_second: vec![],
                recorder: rec,
            },
            watch: None,
            background: None,
            server_cpu_s: None,
            server_cpu_ms_per_1k_ops: None,
            t_start_s: 0.0,
            unsupported: Some(why),
            extra: BTreeMap::new(),
        }
    }
}

/// Everything one scenario run produced against one system.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub params: Params,
    pub preload_objects: u64,
    pub preload_s: f64,
    pub phases: Vec<PhaseResult>,
    /// Index of the phase the summary quotes (throughput and latency).
    pub headline: usize,
    pub extra: BTreeMap<String, f64>,
}

/// A phase's watchers: spec plus how many revisions the checkers must cover.
pub struct PhaseWatch {
    pub spec: WatchSpec,
    pub capacity: usize,
}

/// Shared state of a scenario run.
pub struct Ctx {
    pub pool: ClientPool,
    pub p: Params,
    pub stop: Arc<AtomicBool>,
    pub servers: Servers,
    /// Time origin shared with the monitor's samples.
    pub epoch: Instant,
    pub phases: Vec<PhaseResult>,
    pub extra: BTreeMap<String, f64>,
    pub progress: bool,
}

impl Ctx {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.p.timeout_s)
    }

    pub fn phase_duration(&self) -> Duration {
        Duration::from_secs_f64(self.p.phase_secs)
    }

    fn bar(&self) -> Option<indicatif::ProgressBar> {
        self.progress.then(indicatif::ProgressBar::no_length)
    }

    fn check_alive(&self) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("a server process died during the run");
        }
        Ok(())
    }

    /// Run one phase; returns its index in `self.phases`.
    pub async fn phase<G: OpGen>(
        &mut self,
        gen: Arc<G>,
        plan: Plan,
        watch: Option<PhaseWatch>,
        background: Option<(Arc<dyn BgLoad>, Plan)>,
    ) -> Result<usize> {
        self.check_alive()?;
        let mut kv = kv_client(self.pool.channel(0));
        let (acks, fleet) = match watch {
            Some(w) => {
                let rev0 = current_revision(&mut kv, &w.spec.prefix)
                    .await
                    .context("reading the current revision")?
                    + 1;
                let acks = Arc::new(AckTable::new(rev0, w.capacity));
                let fleet = WatchFleet::start(&self.pool, &w.spec, rev0, acks.clone(), w.capacity)
                    .await
                    .context("starting watchers")?;
                (Some(acks), Some(fleet))
            }
            None => (None, None),
        };
        let cpu0 = self.servers.cpu_s();
        let t_start_s = self.epoch.elapsed().as_secs_f64();
        let bg = background.map(|(g, plan)| {
            let (pool, stop) = (self.pool.clone(), self.stop.clone());
            tokio::spawn(async move { g.run(pool, plan, stop).await })
        });
        let load = drive(
            &self.pool,
            gen,
            &plan,
            acks.clone(),
            self.stop.clone(),
            self.bar(),
        )
        .await?;
        let background = match bg {
            Some(t) => Some(t.await.context("background load")??.report),
            None => None,
        };
        self.check_alive()?;
        let watch = match (fleet, acks) {
            (Some(fleet), Some(acks)) => {
                let end = current_revision(&mut kv, b"/").await?;
                let drain = Duration::from_secs_f64(self.p.drain_s);
                Some(fleet.finish(end, drain, |r| acks.is_acked(r)).await?)
            }
            _ => None,
        };
        let cpu = self.servers.cpu_s().zip(cpu0).map(|(b, a)| b - a);
        let ok = load.report.ok;
        self.phases.push(PhaseResult {
            server_cpu_ms_per_1k_ops: cpu.filter(|_| ok > 0).map(|c| c * 1e6 / ok as f64),
            server_cpu_s: cpu,
            load,
            watch,
            background,
            t_start_s,
            unsupported: None,
            extra: BTreeMap::new(),
        });
        Ok(self.phases.len() - 1)
    }

    /// Preloads `p.objects` objects of `kind` into `slot_factor` times as many slots (the
    /// rest start absent: room for creates) and returns the churn generator over them, with
    /// `mix` = (update %, create %).
    pub async fn preloaded_churn(
        &mut self,
        kind: Kind,
        slot_factor: usize,
        mix: (u32, u32),
    ) -> Result<gens::ChurnGen> {
        let n = self.p.objects;
        let slots = Arc::new(Slots::new(slot_factor * n as usize));
        self.preload(kind, &slots, n).await?;
        Ok(gens::ChurnGen::new(
            kind,
            self.p.namespaces,
            slots,
            self.p.value_size,
            mix,
        ))
    }

    /// Write `n` objects of `kind` (slots `0..n`) in batched Txns; records their revisions.
    async fn preload(&mut self, kind: Kind, slots: &Arc<Slots>, n: u64) -> Result<()> {
        let started = Instant::now();
        let per_txn = (1_000_000 / self.p.value_size.max(1)).clamp(1, 100) as u64;
        let batches = n.div_ceil(per_txn);
        let next = Arc::new(AtomicU64::new(0));
        let bar = self.bar().map(|_| count_bar("preload", n));
        let tpl = Arc::new(ObjectTemplate::new(kind, b"preload", self.p.value_size));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let mut kv = kv_client(self.pool.channel(t));
            let (next, slots, tpl, bar) = (next.clone(), slots.clone(), tpl.clone(), bar.clone());
            let (ns, stop) = (self.p.namespaces, self.stop.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || stop.load(Ordering::Relaxed) {
                        return anyhow::Ok(());
                    }
                    let range = b * per_txn..((b + 1) * per_txn).min(n);
                    let success = range
                        .clone()
                        .map(|i| RequestOp {
                            request: Some(request_op::Request::RequestPut(PutRequest {
                                key: key(kind, i, ns),
                                value: tpl.render(i),
                                ..Default::default()
                            })),
                        })
                        .collect();
                    let r = kv
                        .txn(TxnRequest {
                            success,
                            ..Default::default()
                        })
                        .await
                        .map_err(|s| anyhow::anyhow!("preload txn: {s}"))?
                        .into_inner();
                    let rev = r.header.map(|h| h.revision).unwrap_or(0);
                    for i in range.clone() {
                        slots.set(i as usize, rev);
                    }
                    if let Some(bar) = &bar {
                        bar.inc(range.end - range.start);
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        self.check_alive()?;
        self.extra.insert("preload_objects".into(), n as f64);
        self.extra
            .insert("preload_s".into(), started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// A load that runs beside a phase (type-erased so phases can mix generators).
pub trait BgLoad: Send + Sync + 'static {
    fn run(
        self: Arc<Self>,
        pool: ClientPool,
        plan: Plan,
        stop: Arc<AtomicBool>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<LoadResult>> + Send>>;
}

impl<G: OpGen> BgLoad for G {
    fn run(
        self: Arc<Self>,
        pool: ClientPool,
        plan: Plan,
        stop: Arc<AtomicBool>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<LoadResult>> + Send>> {
        Box::pin(async move { drive(&pool, self, &plan, None, stop, None).await })
    }
}

/// Run scenario `ctx.p.scenario`.
pub async fn run(mut ctx: Ctx) -> Result<ScenarioResult> {
    let headline = match ctx.p.scenario {
        ScenarioId::S1 => s1_s2::s1(&mut ctx).await?,
        ScenarioId::S2 => s1_s2::s2(&mut ctx).await?,
        ScenarioId::S3 => s3::run(&mut ctx).await?,
        ScenarioId::S4 => s4::run(&mut ctx).await?,
        ScenarioId::S5 => s5::run(&mut ctx).await?,
        ScenarioId::S6 => s6::run(&mut ctx).await?,
        ScenarioId::S7 => s7::run(&mut ctx).await?,
    };
    Ok(ScenarioResult {
        preload_objects: ctx.extra.get("preload_objects").copied().unwrap_or(0.0) as u64,
        preload_s: ctx.extra.get("preload_s").copied().unwrap_or(0.0),
        params: ctx.p,
        phases: ctx.phases,
        headline,
        extra: ctx.extra,
    })
}

/// A prefix as `Bytes`.
pub fn prefix(kind: Kind) -> Bytes {
    Bytes::from_static(kind.prefix().as_bytes())
}
