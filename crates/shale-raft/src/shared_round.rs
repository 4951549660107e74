//! [`SharedRound`]: one run of an expensive operation shared by every caller waiting for it.
//!
//! Callers [`join`](SharedRound::join) with the operation. If no run is going, one starts at
//! once. A caller that arrives while a run is going does NOT take that run's result: it waits
//! for the NEXT run, which starts after it arrived. Everyone waiting when a run starts gets that
//! run's result. So every result a caller sees comes from a run that began after the call, which
//! is what read points need (a quorum check that started before a read arrived proves nothing
//! about the writes acknowledged before the read). Under load one run serves many callers; when
//! idle a call costs exactly one run.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

struct State<T> {
    running: bool,
    waiting: Vec<oneshot::Sender<T>>,
}

/// Runs of one operation, shared by the callers waiting when each run starts.
pub(crate) struct SharedRound<T> {
    state: Arc<Mutex<State<T>>>,
}

impl<T> Clone for SharedRound<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> SharedRound<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                running: false,
                waiting: Vec::new(),
            })),
        }
    }

    /// The result of a run of `op` that started after this call; `None` if the runner was
    /// dropped (the runtime is shutting down).
    pub(crate) async fn join<F, Fut>(&self, op: F) -> Option<T>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock();
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            let state = self.state.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut st = state.lock();
                        if st.waiting.is_empty() {
                            st.running = false;
                            return;
                        }
                        std::mem::take(&mut st.waiting)
                    };
                    let r = op().await;
                    for w in batch {
                        let _ = w.send(r.clone());
                    }
                }
            });
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Every caller gets the result of a run that started after it joined, and concurrent
    /// callers share runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_come_from_runs_started_after_the_call() {
        let rounds = SharedRound::<u64>::new();
        let started = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let rounds = rounds.clone();
            let started = started.clone();
            tasks.push(tokio::spawn(async move {
                let seen_before = started.load(Ordering::SeqCst);
                let s = started.clone();
                let r = rounds
                    .join(move || {
                        let s = s.clone();
                        async move {
                            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                            tokio::task::yield_now().await;
                            n
                        }
                    })
                    .await
                    .expect("runner");
                assert!(
                    r > seen_before,
                    "run {r} started before the call ({seen_before})"
                );
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let runs = started.load(Ordering::SeqCst);
        assert!((1..200).contains(&runs), "{runs} runs for 200 callers");
    }
}
