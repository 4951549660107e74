//! Server-side resource sampling from `/proc` while a scenario runs.
//!
//! A [`Monitor`] samples every server process (all members of a topology) every 250 ms:
//! summed RSS, summed CPU seconds, and (every second) the summed size of their data dirs.
//! It also watches liveness: if any server process disappears it raises the shared stop flag,
//! so load loops end early, and records which one died; the caller turns that into a clear
//! error. Samples are kept for the RSS-over-time plot; the peak RSS is the largest sampled
//! sum, or the kernel's `VmHWM` sum if that is larger (it sees peaks between samples).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::sysinfo;

/// The processes and data dirs of the system under test.
#[derive(Clone, Debug, Default)]
pub struct Servers {
    pub pids: Vec<u32>,
    pub data_dirs: Vec<PathBuf>,
}

impl Servers {
    pub fn rss_mib(&self) -> Option<f64> {
        sum(self.pids.iter().map(|p| sysinfo::status_mib(*p, "VmRSS")))
    }
    pub fn hwm_mib(&self) -> Option<f64> {
        sum(self.pids.iter().map(|p| sysinfo::status_mib(*p, "VmHWM")))
    }
    pub fn cpu_s(&self) -> Option<f64> {
        sum(self.pids.iter().map(|p| sysinfo::cpu_seconds(Some(*p))))
    }
    pub fn disk_bytes(&self) -> u64 {
        self.data_dirs.iter().map(|d| sysinfo::dir_bytes(d)).sum()
    }
    /// The first server pid that is gone.
    pub fn dead(&self) -> Option<u32> {
        self.pids.iter().copied().find(|p| !sysinfo::alive(*p))
    }
}

fn sum(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for v in it {
        total += v?;
        any = true;
    }
    any.then_some(total)
}

/// One sample; `t_s` is seconds since the monitor started.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_mib: f64,
    pub cpu_s: f64,
    pub disk_mib: f64,
}

/// Background sampler; see the module docs.
pub struct Monitor {
    servers: Servers,
    samples: Arc<Mutex<Vec<Sample>>>,
    dead: Arc<Mutex<Option<u32>>>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    start: Instant,
}

impl Monitor {
    /// Start sampling `servers`; `stop` is raised when a server dies.
    pub fn start(servers: Servers, stop: Arc<AtomicBool>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let dead = Arc::new(Mutex::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let task = {
            let (servers, samples, dead, done) =
                (servers.clone(), samples.clone(), dead.clone(), done.clone());
            tokio::spawn(async move {
                let mut tick = 0u64;
                let mut disk_mib = servers.disk_bytes() as f64 / 1048576.0;
                while !done.load(Ordering::Relaxed) && !servers.pids.is_empty() {
                    if let Some(pid) = servers.dead() {
                        *dead.lock() = Some(pid);
                        stop.store(true, Ordering::SeqCst);
                        break;
                    }
                    if tick.is_multiple_of(4) {
                        let s = servers.clone();
                        if let Ok(b) = tokio::task::spawn_blocking(move || s.disk_bytes()).await {
                            disk_mib = b as f64 / 1048576.0;
                        }
                    }
                    if let (Some(rss), Some(cpu)) = (servers.rss_mib(), servers.cpu_s()) {
                        samples.lock().push(Sample {
                            t_s: start.elapsed().as_secs_f64(),
                            rss_mib: rss,
                            cpu_s: cpu,
                            disk_mib,
                        });
                    }
                    tick += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        Self {
            servers,
            samples,
            dead,
            done,
            task,
            start,
        }
    }

    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// Seconds since the monitor started (the time axis of the samples).
    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The pid of a server that died, if any.
    pub fn dead(&self) -> Option<u32> {
        *self.dead.lock()
    }

    /// Stop sampling; returns the samples and the peak RSS.
    pub async fn stop(self) -> (Vec<Sample>, Option<f64>) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let samples = std::mem::take(&mut *self.samples.lock());
        let sampled = samples
            .iter()
            .map(|s| s.rss_mib)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        let hwm = self.servers.hwm_mib();
        let peak = match (sampled, hwm) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        (samples, peak)
    }
}
