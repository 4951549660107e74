//! Time-bounded load loops for the scenarios: open loop (fixed rate) and closed loop
//! (saturation).
//!
//! * **Open loop** (`Mode::Open { rate }`): operation `n` is due at `start + n / rate`. A pool
//!   of sender tasks takes the next due operation, waits for its due time and sends it;
//!   latency is measured from the *due* time, not the send time, so a server that falls
//!   behind is charged for the queueing it causes (no coordinated omission). The pool is
//!   large enough (`senders`) that the client itself is not the bottleneck.
//! * **Closed loop** (`Mode::Closed { clients }`): each client sends its next operation as
//!   soon as the previous one is answered, until the duration is over.
//!
//! Every phase counts completed operations per second (the throughput-over-time plot),
//! records latencies in an HDR histogram, and, when given an [`AckTable`], publishes the
//! revision of every acknowledged write for the watch checkers. A raised stop flag (a server
//! died) ends the loops early.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use shale_api::etcdserverpb::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Status;

use crate::continuity::AckTable;
use crate::pool::{kv_client, ClientPool};
use crate::report::{Recorder, Report};

/// What one operation did (beyond succeeding).
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Revision of a write the server acknowledged.
    pub written: Option<i64>,
    /// A guarded write whose compare failed.
    pub conflict: bool,
    /// Nothing to do (e.g. no free slot); not counted.
    pub skipped: bool,
}

/// A kind of operation a phase sends.
pub trait OpGen: Send + Sync + 'static {
    fn op(
        &self,
        kv: &mut KvClient<Channel>,
        rng: &mut StdRng,
        seq: u64,
    ) -> impl Future<Output = Result<Outcome, Status>> + Send;
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Open { rate: f64 },
    Closed { clients: usize },
}

impl Mode {
    pub fn label(&self) -> String {
        match self {
            Mode::Open { rate } => format!("open loop {rate}/s"),
            Mode::Closed { clients } => format!("closed loop, {clients} clients"),
        }
    }
}

/// One load loop.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub mode: Mode,
    pub duration: Duration,
    /// Stop after this many operations (closed loop), if set.
    pub max_ops: Option<u64>,
    pub timeout: Duration,
}

/// Result of one load loop.
#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    #[serde(flatten)]
    pub report: Report,
    pub mode: Mode,
    pub conflicts: u64,
    /// Completed operations in each second of the loop.
    pub per_second: Vec<u64>,
    #[serde(skip)]
    pub recorder: Recorder,
}

/// Run `plan` with operations from `gen`.
pub async fn drive<G: OpGen>(
    pool: &ClientPool,
    gen: Arc<G>,
    plan: &Plan,
    acks: Option<Arc<AckTable>>,
    stop: Arc<AtomicBool>,
    bar: Option<ProgressBar>,
) -> Result<LoadResult> {
    let (tasks, rate) = match plan.mode {
        Mode::Open { rate } => {
            anyhow::ensure!(rate > 0.0 && rate.is_finite(), "rate must be positive");
            ((rate / 20.0).clamp(16.0, 512.0) as usize, Some(rate))
        }
        Mode::Closed { clients } => {
            anyhow::ensure!(clients >= 1, "at least one client");
            (clients, None)
        }
    };
    let secs = plan.duration.as_secs() as usize + 2;
    let buckets: Arc<Vec<AtomicU64>> = Arc::new((0..secs).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + plan.duration;
    let max_ops = plan.max_ops.unwrap_or(u64::MAX);
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let mut kv = kv_client(pool.channel(i));
        let (gen, next, conflicts, buckets, stop, acks) = (
            gen.clone(),
            next.clone(),
            conflicts.clone(),
            buckets.clone(),
            stop.clone(),
            acks.clone(),
        );
        let timeout = plan.timeout;
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::from_rng(&mut rand::rng());
            let mut rec = Recorder::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= max_ops {
                    break;
                }
                let due = match rate {
                    Some(r) => start + Duration::from_secs_f64(seq as f64 / r),
                    None => Instant::now(),
                };
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                match tokio::time::timeout(timeout, gen.op(&mut kv, &mut rng, seq)).await {
                    Ok(Ok(o)) if o.skipped => continue,
                    Ok(Ok(o)) => {
                        let now = Instant::now();
                        rec.ok(now - due);
                        if let (Some(rev), Some(acks)) = (o.written, acks.as_ref()) {
                            acks.ack(rev, now.into_std());
                        }
                        if o.conflict {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        let b = ((now - start).as_secs() as usize).min(buckets.len() - 1);
                        buckets[b].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(s)) => rec.err(&format!("{:?}: {}", s.code(), s.message())),
                    Err(_) => rec.err(&format!("timeout after {timeout:?}")),
                }
            }
            (rec, Instant::now())
        }));
    }
    let ticker = bar.map(|bar| {
        bar.set_length(plan.duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(plan.name.clone());
        let buckets = buckets.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let e = start.elapsed().as_secs();
                let done: u64 = buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
                bar.set_position(e.min(bar.length().unwrap_or(e)));
                bar.set_message(format!("{done} ops"));
            }
        })
    });
    let mut all = Recorder::new();
    let mut last = start;
    for h in handles {
        let (rec, t) = h.await?;
        all.merge(&rec);
        last = last.max(t);
    }
    if let Some(t) = ticker {
        t.abort();
    }
    let elapsed = last - start;
    let used = (elapsed.as_secs() as usize + 1).min(buckets.len());
    Ok(LoadResult {
        report: all.report(&plan.name, elapsed),
        mode: plan.mode,
        conflicts: conflicts.load(Ordering::Relaxed),
        per_second: buckets[..used]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect(),
        recorder: all,
    })
}

/// A progress bar for a counted job (preload), hidden when stderr is not a terminal.
pub fn count_bar(name: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}
