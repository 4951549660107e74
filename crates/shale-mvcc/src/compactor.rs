//! [`Compactor`]: physical compaction on a background thread, in small steps.
//!
//! A compaction at revision `c` is decided by the applier (which publishes `c` at once, so
//! reads below `c` start failing with `compacted`). The physical work happens here:
//!
//! 1. the index is compacted `INDEX_CHUNK` keys at a time, each step under a short write lock,
//!    collecting the revisions that survive (the newest change `<= c` of each live key);
//! 2. stored changes `<= c` that did not survive are deleted `DELETE_CHUNK` at a time, each
//!    chunk its own storage batch, so the applier and readers interleave freely;
//! 3. `m/compact_done = c` is written; a restart with `m/compact > m/compact_done` redoes the
//!    (idempotent) work.
//!
//! No step holds a lock for more than one chunk, which keeps every request's stall far below
//! the 50 ms budget whatever the size of the store.
//!
//! The same thread writes the key-index checkpoints (see [`crate::checkpoint`]): it wakes up
//! every second and takes one when due. Both jobs hold the store's maintenance lock, so a
//! checkpoint never sees an index half compacted. A checkpoint does not count as "busy" for
//! [`Compactor::wait_idle`] (snapshots wait for compactions, not for checkpoints).

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use shale_storage::WriteBatch;

use crate::checkpoint;
use crate::record::{self, kv_key_bound, parse_kv_key};
use crate::store::Shared;

const INDEX_CHUNK: usize = 10_000;
const DELETE_CHUNK: usize = 1_000;
/// How often the thread checks whether a checkpoint is due.
const CHECKPOINT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
struct State {
    queue: Option<i64>,
    busy: bool,
    stop: bool,
}

pub(crate) struct Compactor {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    pub fn start(shared: Arc<Shared>) -> Self {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || run(shared, st))
            .expect("spawn compactor thread");
        Self {
            state,
            thread: Some(thread),
        }
    }

    /// Schedules a compaction at `rev` (a newer one replaces a queued older one).
    pub fn schedule(&self, rev: i64) {
        let (m, cv) = &*self.state;
        let mut s = m.lock();
        s.queue = Some(s.queue.map_or(rev, |q| q.max(rev)));
        cv.notify_all();
    }

    /// Blocks until nothing is queued or running.
    pub fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut s = m.lock();
        while s.busy || s.queue.is_some() {
            cv.wait(&mut s);
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.state;
            m.lock().stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: Arc<Shared>, state: Arc<(Mutex<State>, Condvar)>) {
    let (m, cv) = &*state;
    loop {
        let rev = {
            let mut s = m.lock();
            loop {
                if s.stop {
                    return;
                }
                if let Some(r) = s.queue.take() {
                    s.busy = true;
                    break Some(r);
                }
                if cv.wait_for(&mut s, CHECKPOINT_POLL).timed_out() {
                    break None;
                }
            }
        };
        if let Some(rev) = rev {
            let res = {
                let _m = shared.maintenance.lock();
                compact(&shared, rev, &state)
            };
            if let Err(e) = res {
                tracing::error!(error = %e, revision = rev, "physical compaction failed; it will be retried on restart");
            }
            let mut s = m.lock();
            s.busy = false;
            cv.notify_all();
        }
        if checkpoint::due(&shared) {
            let _m = shared.maintenance.lock();
            match checkpoint::write(&shared, &|| stopping(&state)) {
                Ok(Some(st)) => tracing::info!(
                    revision = st.rev,
                    keys = st.keys,
                    bytes = st.bytes,
                    took_ms = st.took.as_millis() as u64,
                    longest_lock_hold_us = st.longest_lock_hold.as_micros() as u64,
                    "wrote key-index checkpoint"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "key-index checkpoint failed; the next restart may be slower")
                }
            }
        }
    }
}

fn stopping(state: &(Mutex<State>, Condvar)) -> bool {
    state.0.lock().stop
}

fn compact(shared: &Shared, rev: i64, state: &(Mutex<State>, Condvar)) -> crate::Result<()> {
    let started = std::time::Instant::now();
    let mut keep = HashSet::new();
    let mut after = None;
    loop {
        after = shared
            .index
            .write()
            .compact_chunk(rev, after.as_ref(), INDEX_CHUNK, &mut keep);
        if after.is_none() {
            break;
        }
        if stopping(state) {
            return Ok(());
        }
    }
    let end = kv_key_bound(rev + 1);
    let mut from: Vec<u8> = vec![record::KV_PREFIX];
    let mut inclusive = true;
    let mut deleted = 0usize;
    loop {
        let start = if inclusive {
            Bound::Included(&from[..])
        } else {
            Bound::Excluded(&from[..])
        };
        let mut batch = WriteBatch::new();
        let mut last = None;
        let mut seen = 0;
        for item in shared.engine.scan(start, Bound::Excluded(&end[..])) {
            let (k, _) = item?;
            let (r, _) = parse_kv_key(&k)?;
            if !keep.contains(&r) {
                batch.delete(k.clone());
            }
            last = Some(k);
            seen += 1;
            if seen == DELETE_CHUNK {
                break;
            }
        }
        deleted += batch.len();
        if !batch.is_empty() {
            shared.engine.write(batch)?;
        }
        match last {
            Some(k) if seen == DELETE_CHUNK => {
                from = k;
                inclusive = false;
            }
            _ => break,
        }
        if stopping(state) {
            return Ok(());
        }
    }
    let mut done = WriteBatch::new();
    done.put(record::META_COMPACT_DONE.to_vec(), record::encode_i64(rev));
    shared.engine.write(done)?;
    tracing::info!(
        revision = rev,
        deleted,
        took_ms = started.elapsed().as_millis() as u64,
        "finished compaction"
    );
    Ok(())
}
