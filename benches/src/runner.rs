//! Drives a [`Workload`]: `clients` concurrent clients pull request numbers from one shared
//! counter until `total` have been issued. Closed loop by default (each client sends its next
//! request as soon as the previous one is answered); with a rate, request `n` is not sent
//! before `start + n / rate` (like etcd's `--rate` limiter; latency is measured from the
//! moment the request is sent).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use crate::pool::ClientPool;
use crate::report::{Recorder, Report};
use crate::workload::Workload;

#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Concurrent clients (client `i` uses connection `i % conns`).
    pub clients: usize,
    /// Requests in total.
    pub total: u64,
    /// Requests per second over all clients; `None` = closed loop.
    pub rate: Option<f64>,
    /// Per-request deadline; a request over it counts as an error.
    pub timeout: Duration,
    /// Print progress to stderr every this often (`None` = quiet).
    pub progress: Option<Duration>,
}

/// Set to stop a run early (e.g. the server under test died); unsent requests are not counted.
pub type StopFlag = Arc<AtomicBool>;

/// Run `workload` against `pool` and summarize. Connection setup and `prepare` are not timed.
pub async fn run<W: Workload>(
    pool: &ClientPool,
    workload: Arc<W>,
    spec: &LoadSpec,
    stop: Option<StopFlag>,
) -> Result<Report> {
    anyhow::ensure!(spec.clients >= 1, "--clients must be at least 1");
    if let Some(r) = spec.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
    }
    workload.prepare(pool).await?;
    let stop = stop.unwrap_or_default();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(spec.clients);
    for i in 0..spec.clients {
        let mut client = workload.client(pool.channel(i));
        let (w, next, done, stop) = (workload.clone(), next.clone(), done.clone(), stop.clone());
        let (total, rate, timeout) = (spec.total, spec.rate, spec.timeout);
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    break;
                }
                if let Some(rate) = rate {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate))
                        .await;
                }
                let t0 = Instant::now();
                match tokio::time::timeout(timeout, w.op(&mut client, seq)).await {
                    Ok(Ok(())) => rec.ok(t0.elapsed()),
                    Ok(Err(status)) => {
                        rec.err(&format!("{:?}: {}", status.code(), status.message()))
                    }
                    Err(_) => rec.err(&format!("timeout after {timeout:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (rec, Instant::now())
        }));
    }
    let ticker = spec.progress.map(|every| {
        let (done, total, name) = (done.clone(), spec.total, workload.name());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(every).await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {name}: {d}/{total} done ({:.0}/s)",
                    (d - last) as f64 / every.as_secs_f64()
                );
                last = d;
            }
        })
    });
    let mut all = Recorder::new();
    let mut end = start;
    for t in tasks {
        let (rec, finished) = t.await?;
        all.merge(&rec);
        end = end.max(finished);
    }
    if let Some(t) = ticker {
        t.abort();
    }
    Ok(all.report(&workload.name(), end - start))
}
