//! [`ListPool`]: the threads that read large LISTs, at low CPU priority.
//!
//! A LIST without a limit reads every record of its range: a 100 MiB LIST is hundreds of
//! milliseconds of CPU (storage reads, the copy into the response). On a small machine four
//! of them at once took both cores from the write path: Raft, apply and fsync threads, and
//! the async workers that answer writes, queued behind them, and the p99 of concurrent
//! writes went from tens of milliseconds to most of a second.
//!
//! Model: a fixed set of threads (at most [`ListPool::THREADS`]) takes LIST reads from one
//! queue. Each thread lowers its own scheduling priority once, when it starts
//! (`setpriority(PRIO_PROCESS, tid, LIST_NICE)`; a thread's nice value on Linux), so the
//! kernel runs the write path first whenever both want a core, while LISTs still get every
//! idle cycle. Fewer threads than concurrent LISTs also bounds how much LIST memory is being
//! built at once; the others wait in the queue (their callers await, holding nothing).
//!
//! `SHALE_LIST_NICE` (0 to 19, default [`LIST_NICE`]) sets that nice value; 0 leaves the
//! threads at the process's priority (on a host shared with other busy processes, a low
//! priority also yields to those).
//!
//! Invariants:
//! * A job always completes: its result, or the pool's closing, is sent to its caller (a
//!   panicking job is caught and reported as an error to that caller only).
//! * The threads never raise their priority back; they run nothing but LIST reads.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tonic::Status;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The LIST reader threads; see the module documentation.
#[derive(Clone)]
pub struct ListPool {
    tx: mpsc::Sender<Job>,
}

/// Nice value of the LIST threads (0 is the default, 19 the lowest priority).
pub const LIST_NICE: i32 = 10;

/// The nice value the threads take: `SHALE_LIST_NICE` (0 to 19; 0 keeps the process's
/// priority) if set and valid, else [`LIST_NICE`].
pub fn list_nice() -> i32 {
    std::env::var("SHALE_LIST_NICE")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| (0..=19).contains(n))
        .unwrap_or(LIST_NICE)
}

impl ListPool {
    /// Most threads reading LISTs at once.
    pub const THREADS: usize = 2;

    /// Starts the threads.
    pub fn start() -> std::io::Result<Self> {
        let nice = list_nice();
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..Self::THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("list-{i}"))
                .spawn(move || {
                    if nice > 0 {
                        lower_priority(nice);
                    }
                    loop {
                        // Hold the lock only to take one job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self { tx })
    }

    /// Runs `f` on a LIST thread and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Status> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(f));
            let _ = done.send(out);
        });
        self.tx
            .send(job)
            .map_err(|_| Status::unavailable("the LIST threads have stopped"))?;
        match result.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Status::internal("a LIST read panicked")),
            Err(_) => Err(Status::unavailable("the LIST threads have stopped")),
        }
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux: per thread).
fn lower_priority(nice: i32) {
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not lower the priority of a LIST thread"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ListPool;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panicking_one() {
        let pool = ListPool::start().expect("start");
        assert_eq!(pool.run(|| 6 * 7).await.expect("job"), 42);
        let e = pool
            .run(|| -> u32 { panic!("boom") })
            .await
            .expect_err("panicked");
        assert_eq!(e.code(), tonic::Code::Internal);
        // Many at once, more than threads: all answered.
        let jobs: Vec<_> = (0..16u64)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move || i * i).await })
            })
            .collect();
        for (i, j) in jobs.into_iter().enumerate() {
            assert_eq!(j.await.expect("task").expect("job"), (i * i) as u64);
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn threads_run_at_lower_priority() {
        let pool = ListPool::start().expect("start");
        let nice = pool
            .run(|| {
                // SAFETY: as in `lower_priority`.
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
            })
            .await
            .expect("job");
        assert!(nice >= super::list_nice(), "nice {nice}");
    }
}
