//! [`KvHistoryWorkload`]: concurrent clients doing random Get/Put/Delete/CAS on a few keys
//! against a list of endpoints, recording a history for [`crate::linearize::check_kv`].
//!
//! Model: `clients` sequential clients (each one operation at a time, as the checker's notion
//! of a process requires) run as tasks on a tokio runtime owned by one background thread, so
//! the workload can be driven from sync tests. Client `i` starts on endpoint `i % n` and moves
//! to the next endpoint after any error. Every request is recorded in a shared [`Recorder`]
//! right before it is sent and right after its answer:
//!
//! * an answer is recorded as the output (Get: value + mod_revision of `kvs[0]`; Put: header
//!   revision; Delete: `deleted` + header revision; CAS: `succeeded` + header revision);
//! * an error or a timeout ([`WorkloadConfig::op_timeout`]) is recorded as a failure: a write
//!   becomes "maybe applied", a read is dropped by the checker.
//!
//! Written values are unique (`c{client}-{n}`), which keeps the checker fast and its
//! explanations readable. CAS compares either the value (or absence, as `version == 0`) or
//! the mod_revision the client last saw for that key, so both outcomes occur.
//!
//! After an error a client backs off ([`WorkloadConfig::retry_backoff`]) so that a cut link
//! does not turn into thousands of failed requests.
//!
//! With [`WorkloadConfig::watch`] (the default) a watcher ([`watch::WatchLog`]) records every
//! write applied under the key prefix, and at the end the failed writes are resolved with it
//! ([`crate::linearize::patch_failed_writes`]): this keeps the check fast however many
//! requests failed. [`KvHistoryWorkload::stop`] raises the stop flag, waits for the clients to
//! finish their current request (each is bounded by the timeout), completes the watch log
//! and returns a [`WorkloadResult`] with the raw and the resolved history; a request still in
//! flight at that point is recorded as failed.

mod client;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::linearize::{
    check_kv, patch_failed_writes, AppliedWrite, CheckOptions, CheckResult, KvHistory, PatchStats,
    Recorder,
};
use client::{Client, Counters};
use watch::WatchLog;

/// Relative weights of the operation kinds.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub get: u32,
    pub put: u32,
    pub delete: u32,
    pub cas_value: u32,
    pub cas_revision: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            get: 40,
            put: 25,
            delete: 5,
            cas_value: 15,
            cas_revision: 15,
        }
    }
}

/// What [`KvHistoryWorkload::start`] runs.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// `http://host:port` client URLs.
    pub endpoints: Vec<String>,
    pub clients: usize,
    /// Keys `{key_prefix}0 .. {key_prefix}{keys-1}`.
    pub keys: usize,
    pub key_prefix: String,
    /// Per-request deadline; a request past it is recorded as failed.
    pub op_timeout: Duration,
    pub mix: Mix,
    pub seed: u64,
    /// Pause of a client after a failed request.
    pub retry_backoff: Duration,
    /// Keep a watch log and resolve failed writes with it at the end.
    pub watch: bool,
    /// How long [`KvHistoryWorkload::stop`] may take to complete the watch log.
    pub finish_timeout: Duration,
}

impl WorkloadConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            clients: 4,
            keys: 3,
            key_prefix: "lin/k".into(),
            op_timeout: Duration::from_secs(2),
            mix: Mix::default(),
            seed: 1,
            retry_backoff: Duration::from_millis(100),
            watch: true,
            finish_timeout: Duration::from_secs(60),
        }
    }
}

/// What [`KvHistoryWorkload::stop`] returns.
#[derive(Debug, Clone)]
pub struct WorkloadResult {
    /// The history as recorded (failed writes maybe-applied).
    pub raw: KvHistory,
    /// The history with failed writes resolved by the watch log, when the log is complete.
    pub resolved: Option<KvHistory>,
    pub patch: PatchStats,
    /// Why there is no resolved history.
    pub watch_error: Option<String>,
    /// The applied writes the watch saw (empty without a complete log).
    pub applied: Vec<AppliedWrite>,
}

impl WorkloadResult {
    /// The resolved history if there is one, else the raw one.
    pub fn history(&self) -> &KvHistory {
        self.resolved.as_ref().unwrap_or(&self.raw)
    }

    /// Check [`WorkloadResult::history`] with default options.
    pub fn check(&self) -> CheckResult {
        self.check_with(&CheckOptions::default())
    }

    pub fn check_with(&self, opts: &CheckOptions) -> CheckResult {
        check_kv(self.history(), opts)
    }
}

/// Outcome of the background thread.
type Finish = Option<Result<Vec<AppliedWrite>, String>>;

/// A running workload (see the module docs).
pub struct KvHistoryWorkload {
    recorder: Recorder,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    finish: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Finish>>,
}

impl KvHistoryWorkload {
    /// Start the clients (connections are made lazily: endpoints may be down).
    pub fn start(cfg: WorkloadConfig) -> Result<Self> {
        if cfg.endpoints.is_empty() || cfg.clients == 0 || cfg.keys == 0 {
            bail!("a workload needs endpoints, clients and keys: {cfg:?}");
        }
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| {
                Ok(Channel::from_shared(e.clone())
                    .with_context(|| format!("bad endpoint {e}"))?
                    .connect_timeout(cfg.op_timeout)
                    .timeout(cfg.op_timeout))
            })
            .collect::<Result<Vec<_>>>()?;
        let recorder = Recorder::new();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("building the workload runtime")?;
        let (finish_tx, finish_rx) = oneshot::channel();
        let (rec, st, cn) = (recorder.clone(), stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("kv-workload".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // lazily connected channels must be created inside the runtime
                    let channels: Vec<Channel> =
                        endpoints.into_iter().map(|c| c.connect_lazy()).collect();
                    let log = WatchLog::new(&cfg.key_prefix);
                    if cfg.watch {
                        tokio::spawn(log.clone().run(channels.clone(), cfg.retry_backoff));
                    }
                    let mut tasks = Vec::new();
                    for id in 0..cfg.clients {
                        let client = Client {
                            id,
                            cfg: cfg.clone(),
                            channels: channels.clone(),
                            endpoint: id % channels.len(),
                            rec: rec.clone(),
                            counters: cn.clone(),
                            rng: StdRng::seed_from_u64(cfg.seed.wrapping_mul(1000) + id as u64),
                            seen: vec![(None, 0); cfg.keys],
                            seq: 0,
                        };
                        tasks.push(tokio::spawn(client.run(st.clone())));
                    }
                    // stop() or drop
                    let _ = finish_rx.await;
                    st.store(true, Ordering::SeqCst);
                    for t in tasks {
                        let _ = t.await;
                    }
                    if cfg.watch {
                        Some(log.finish(&channels, cfg.finish_timeout).await)
                    } else {
                        None
                    }
                })
            })
            .context("spawning the workload thread")?;
        Ok(Self {
            recorder,
            stop,
            counters,
            finish: Some(finish_tx),
            thread: Some(thread),
        })
    }
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Requests answered so far.
    pub fn ok_count(&self) -> u64 {
        self.counters.ok.load(Ordering::SeqCst)
    }

    /// Requests failed or timed out so far.
    pub fn failed_count(&self) -> u64 {
        self.counters.failed.load(Ordering::SeqCst)
    }

    /// Wait until `n` more requests have been answered (progress after a fault), or fail
    /// after `timeout`.
    pub fn wait_progress(&self, n: u64, timeout: Duration) -> Result<()> {
        let target = self.ok_count() + n;
        let deadline = Instant::now() + timeout;
        while self.ok_count() < target {
            if Instant::now() >= deadline {
                bail!(
                    "workload made no progress: {} of {target} answered requests after {timeout:?} \
                     ({} failed)",
                    self.ok_count(),
                    self.failed_count()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stop the clients, complete the watch log and return the histories.
    pub fn stop(mut self) -> WorkloadResult {
        let finish = self.halt();
        let raw = self.recorder.history();
        match finish {
            Some(Ok(applied)) => {
                let (resolved, patch) = patch_failed_writes(&raw, &applied);
                WorkloadResult {
                    raw,
                    resolved: Some(resolved),
                    patch,
                    watch_error: None,
                    applied,
                }
            }
            other => WorkloadResult {
                raw,
                resolved: None,
                patch: PatchStats::default(),
                watch_error: match other {
                    Some(Err(e)) => Some(e),
                    Some(Ok(_)) => None,
                    None => Some("watch disabled".into()),
                },
                applied: Vec::new(),
            },
        }
    }

    fn halt(&mut self) -> Finish {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(tx) = self.finish.take() {
            let _ = tx.send(());
        }
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }
}

impl Drop for KvHistoryWorkload {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
