//! The catch-up thread: replays stored history to unsynced watchers.
//!
//! Each round takes a snapshot of the unsynced watchers and the hub revision `target`, reads
//! the stored changes from the smallest next revision up to `target` once (in chunks that end
//! on a revision boundary), hands every watcher the events at or after its own next revision,
//! and finally, under the hub lock, marks caught-up watchers synced. A watcher whose queue is
//! full keeps its next revision and is retried next round.
//!
//! Like live delivery, each record of a chunk is encoded (and its `prev_kv` looked up) at most
//! once per variant, however many watchers replay it ([`SharedEvent`]).

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shale_api::mvccpb::{event::EventType, Event, KeyValue};
use shale_api::watch_wire::WireWatchResponse;

use super::hub::{
    header, maybe_answer_progress, HubShared, StreamId, WatchSink, Watcher, CATCHUP_IDLE,
};
use super::shared::SharedEvent;
use crate::record::{self, kv_key_bound, parse_kv_key};
use crate::Result;

const CHUNK_RECORDS: usize = 1_000;

struct Job {
    sid: StreamId,
    id: i64,
    sink: Arc<dyn WatchSink>,
    w: Watcher,
    failed: bool,
}

pub(crate) fn run(shared: Arc<HubShared>) {
    loop {
        let (jobs, target) = {
            let mut st = shared.state.lock();
            loop {
                if st.stop {
                    return;
                }
                if st.unsynced > 0 {
                    break;
                }
                shared.wake.wait_for(&mut st, CATCHUP_IDLE);
            }
            let mut jobs = Vec::new();
            for (sid, s) in &st.streams {
                for (id, w) in &s.watchers {
                    if !w.synced {
                        jobs.push(Job {
                            sid: *sid,
                            id: *id,
                            sink: s.sink.clone(),
                            w: Watcher {
                                range: w.range.clone(),
                                synced: false,
                                ..*w
                            },
                            failed: false,
                        });
                    }
                }
            }
            (jobs, st.rev)
        };
        let mut jobs = jobs;
        if let Err(e) = catch_up(&shared, &mut jobs, target) {
            tracing::error!(error = %e, "watch catch-up failed; retrying");
        }
        let mut st = shared.state.lock();
        let rev = st.rev;
        let mut touched = Vec::new();
        for j in jobs {
            let Some(s) = st.streams.get_mut(&j.sid) else {
                continue;
            };
            let Some(w) = s.watchers.get_mut(&j.id) else {
                continue;
            };
            if w.synced {
                continue;
            }
            if j.w.next_rev == i64::MIN {
                s.watchers.remove(&j.id);
                st.unsynced -= 1;
                touched.push(j.sid);
                continue;
            }
            w.next_rev = j.w.next_rev;
            if w.next_rev > rev {
                w.synced = true;
                st.unsynced -= 1;
                touched.push(j.sid);
            }
        }
        for sid in touched {
            maybe_answer_progress(&mut st, sid);
        }
        let waiting = st.unsynced > 0 && !st.stop;
        if waiting {
            // Slow clients: give their queues time to drain before the next round.
            shared.wake.wait_for(&mut st, CATCHUP_IDLE / 5);
        }
    }
}

fn catch_up(shared: &HubShared, jobs: &mut [Job], target: i64) -> Result<()> {
    let store = &shared.store;
    let compact = store.compact_revision();
    for j in jobs.iter_mut() {
        // etcd cancels only watchers that need revisions strictly below the compaction.
        if j.w.next_rev < compact {
            cancel_compacted(j, compact, target);
        }
    }
    let Some(mut from) = jobs
        .iter()
        .filter(|j| j.w.next_rev != i64::MIN)
        .map(|j| j.w.next_rev)
        .min()
    else {
        return Ok(());
    };
    while from <= target {
        let (mut records, last_rev) = read_chunk(shared, from, target)?;
        // Compaction may have removed part of what we wanted while we read.
        let compact = store.compact_revision();
        if from <= compact {
            for j in jobs
                .iter_mut()
                .filter(|j| j.w.next_rev != i64::MIN && j.w.next_rev < compact)
            {
                cancel_compacted(j, compact, target);
            }
        }
        for j in jobs.iter_mut() {
            if j.failed || j.w.next_rev == i64::MIN || j.w.next_rev > last_rev {
                continue;
            }
            let mut evs = Vec::new();
            for (rev, ev) in records.iter_mut() {
                if *rev < j.w.next_rev || !j.w.wants(&ev.ev) {
                    continue;
                }
                evs.push(if !j.w.prev_kv {
                    ev.plain()
                } else if let Some(e) = ev.cached_with_prev() {
                    e
                } else {
                    let prev = prev_kv(shared, &ev.ev, *rev)?;
                    ev.with_prev(prev.as_ref())
                });
            }
            if !evs.is_empty() {
                let resp = WireWatchResponse {
                    header: header(target),
                    watch_id: j.id,
                    events: evs,
                    ..Default::default()
                };
                if !j.sink.send(resp, false) {
                    j.failed = true;
                    continue;
                }
            }
            j.w.next_rev = last_rev + 1;
        }
        from = last_rev + 1;
    }
    Ok(())
}

fn cancel_compacted(j: &mut Job, compact: i64, _rev: i64) {
    j.sink.send(
        WireWatchResponse {
            // etcd 3.5 sends this response with header.revision 0 (its internal response
            // carries only the compact revision)
            header: header(0),
            watch_id: j.id,
            canceled: true,
            compact_revision: compact,
            ..Default::default()
        },
        true,
    );
    j.w.next_rev = i64::MIN;
}

/// Reads stored changes with main revision in `[from, target]`, about `CHUNK_RECORDS` of them,
/// always ending on a whole revision. Returns the events and the last revision covered.
fn read_chunk(
    shared: &HubShared,
    from: i64,
    target: i64,
) -> Result<(Vec<(i64, SharedEvent)>, i64)> {
    let start = kv_key_bound(from);
    let end = kv_key_bound(target + 1);
    let mut out: Vec<(i64, SharedEvent)> = Vec::new();
    let mut last = target;
    for item in shared
        .store
        .engine()
        .scan(Bound::Included(&start[..]), Bound::Excluded(&end[..]))
    {
        let (k, v) = item?;
        let (r, tombstone) = parse_kv_key(&k)?;
        if out.len() >= CHUNK_RECORDS && out.last().is_some_and(|(lr, _)| *lr != r.main) {
            last = r.main - 1;
            break;
        }
        let mut kv = record::decode_kv(&v)?;
        let ty = if tombstone {
            kv.mod_revision = r.main;
            EventType::Delete
        } else {
            EventType::Put
        };
        out.push((
            r.main,
            SharedEvent::new(Event {
                r#type: ty as i32,
                kv: Some(kv),
                prev_kv: None,
            }),
        ));
    }
    Ok((out, last))
}

fn prev_kv(shared: &HubShared, ev: &Event, rev: i64) -> Result<Option<KeyValue>> {
    let Some(kv) = &ev.kv else { return Ok(None) };
    if ev.r#type == EventType::Put as i32 && kv.version == 1 {
        return Ok(None);
    }
    let at = shared.store.shared.index.read().get(&kv.key, rev - 1);
    match at {
        Some(a) if rev > shared.store.shared.compact_rev.load(Ordering::Acquire) => {
            shared.store.get_at_revision(a.modified)
        }
        _ => Ok(None),
    }
}
