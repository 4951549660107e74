//! A fleet of prefix watchers multiplexed on shared gRPC watch streams, as kube-apiserver's
//! etcd client does (many watches per `Watch` stream, `hasleader=true` metadata, `prev_kv`,
//! `progress_notify`).
//!
//! `watchers` watchers are spread over `ceil(watchers / per_stream)` streams, stream `s` on
//! connection `s % conns`. One task owns each stream: it creates its watchers one after the
//! other (waiting for each `created` answer, like clientv3), all from the same
//! `start_revision`, then reads responses and feeds every event to that watcher's
//! [`Continuity`] and lag histogram. [`WatchFleet::start`] returns once every watcher exists,
//! so writes made afterwards cannot be missed by creation order. [`WatchFleet::finish`] waits
//! (on a condition, with a deadline) until every watcher has reached the final revision, then
//! stops the streams and sums up: events, lost / duplicate / out-of-order events, cancels,
//! progress notifications and the delivery-lag distribution.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use shale_api::mvccpb::event::EventType;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::continuity::{AckTable, Continuity, Lag};
use crate::kube::prefix_end;
use crate::pool::ClientPool;
use crate::report::Recorder;

/// What to watch and how.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub prefix: Bytes,
    pub watchers: usize,
    /// Watchers per gRPC stream.
    pub per_stream: usize,
    pub prev_kv: bool,
    pub progress_notify: bool,
}

/// Summary of a fleet's run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchStats {
    pub watchers: usize,
    pub streams: usize,
    pub events: u64,
    pub lost_events: u64,
    pub duplicate_events: u64,
    pub out_of_order_events: u64,
    pub canceled_watchers: u64,
    pub progress_notifies: u64,
    /// First revision every watcher was created at.
    pub start_revision: i64,
    /// Revision every watcher had to reach.
    pub end_revision: i64,
    /// Fewest delete events (revision <= end_revision) any watcher saw.
    pub min_deletes_seen: u64,
    /// Delete events (revision <= end_revision) per watcher.
    #[serde(skip)]
    pub deletes_seen: Vec<u64>,
    /// Watchers that had not reached the final revision when the drain deadline passed.
    pub behind_at_end: u64,
    /// Events such watchers had not received yet (not counted as lost: they were slow,
    /// not skipped).
    pub undelivered_at_deadline: u64,
    pub lag_samples: u64,
    pub lag_p50_ms: f64,
    pub lag_p90_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_p999_ms: f64,
    pub lag_max_ms: f64,
}

struct StreamOutcome {
    checkers: Vec<Continuity>,
    lag: Recorder,
    pending: Vec<i64>,
    canceled: u64,
    progress: u64,
}

/// Running watchers; see the module docs.
pub struct WatchFleet {
    tasks: Vec<JoinHandle<Result<StreamOutcome>>>,
    last_revs: Arc<Vec<AtomicI64>>,
    stop: watch::Sender<bool>,
    acks: Arc<AckTable>,
    streams: usize,
    start_rev: i64,
}

impl WatchFleet {
    /// Create every watcher (from `start_rev`) and return once all are confirmed.
    pub async fn start(
        pool: &ClientPool,
        spec: &WatchSpec,
        start_rev: i64,
        acks: Arc<AckTable>,
        capacity: usize,
    ) -> Result<Self> {
        anyhow::ensure!(
            spec.per_stream >= 1,
            "--watchers-per-stream must be at least 1"
        );
        let streams = spec.watchers.div_ceil(spec.per_stream);
        let last_revs: Arc<Vec<AtomicI64>> =
            Arc::new((0..spec.watchers).map(|_| AtomicI64::new(0)).collect());
        let (stop, stop_rx) = watch::channel(false);
        let mut ready = Vec::new();
        let mut tasks = Vec::new();
        for s in 0..streams {
            let first = s * spec.per_stream;
            let n = spec.per_stream.min(spec.watchers - first);
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            ready.push(ready_rx);
            let ctx = StreamCtx {
                channel: pool.channel(s),
                spec: spec.clone(),
                first,
                n,
                start_rev,
                capacity,
                acks: acks.clone(),
                last_revs: last_revs.clone(),
                stop: stop_rx.clone(),
            };
            tasks.push(tokio::spawn(run_stream(ctx, ready_tx)));
        }
        for (s, r) in ready.into_iter().enumerate() {
            match r.await {
                Ok(()) => {}
                Err(_) => {
                    // the task ended before confirming: surface its error
                    let t = tasks.swap_remove(s);
                    let _ = stop.send(true);
                    return match t.await {
                        Ok(Err(e)) => Err(e.context(format!("watch stream {s}"))),
                        Ok(Ok(_)) => bail!("watch stream {s} ended while creating watchers"),
                        Err(e) => bail!("watch stream {s} panicked: {e}"),
                    };
                }
            }
        }
        Ok(Self {
            tasks,
            last_revs,
            stop,
            acks,
            streams,
            start_rev,
        })
    }

    /// The lowest revision every watcher has reached.
    pub fn min_last_rev(&self) -> i64 {
        self.last_revs
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Wait until every watcher has seen `end_rev` (or `deadline` passes), stop the streams
    /// and sum up. `expected(rev)` says whether revision `rev` must reach every watcher.
    pub async fn finish(
        self,
        end_rev: i64,
        deadline: Duration,
        expected: impl Fn(i64) -> bool,
    ) -> Result<WatchStats> {
        let until = Instant::now() + deadline;
        while self.min_last_rev() < end_rev && Instant::now() < until {
            if self.tasks.iter().all(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let behind = self
            .last_revs
            .iter()
            .filter(|r| r.load(Ordering::Acquire) < end_rev)
            .count() as u64;
        let _ = self.stop.send(true);
        let mut st = WatchStats {
            watchers: self.last_revs.len(),
            streams: self.streams,
            behind_at_end: behind,
            start_revision: self.start_rev,
            end_revision: end_rev,
            min_deletes_seen: u64::MAX,
            ..Default::default()
        };
        let mut lag = Recorder::new();
        for t in self.tasks {
            let o = t.await.context("watch stream task")??;
            for c in &o.checkers {
                st.events += c.events;
                st.duplicate_events += c.duplicates;
                st.out_of_order_events += c.out_of_order;
                // gaps below what the watcher reached are lost; beyond it, just late
                let reached = c.last_rev().min(end_rev);
                let lost = c.lost(reached, &expected);
                st.lost_events += lost;
                st.undelivered_at_deadline += c.lost(end_rev, &expected) - lost;
                let d = c.deletes_upto(end_rev);
                st.min_deletes_seen = st.min_deletes_seen.min(d);
                st.deletes_seen.push(d);
            }
            lag.merge(&o.lag);
            // events that overtook their acks: lag 0 if the ack came later
            for rev in o.pending {
                if self.acks.is_acked(rev) {
                    lag.ok(Duration::ZERO);
                }
            }
            st.canceled_watchers += o.canceled;
            st.progress_notifies += o.progress;
        }
        if st.min_deletes_seen == u64::MAX {
            st.min_deletes_seen = 0;
        }
        let r = lag.report("lag", Duration::from_secs(1));
        st.lag_samples = r.ok;
        st.lag_p50_ms = r.p50_ms;
        st.lag_p90_ms = r.p90_ms;
        st.lag_p99_ms = r.p99_ms;
        st.lag_p999_ms = r.p999_ms;
        st.lag_max_ms = r.max_ms;
        Ok(st)
    }
}

struct StreamCtx {
    channel: tonic::transport::Channel,
    spec: WatchSpec,
    first: usize,
    n: usize,
    start_rev: i64,
    capacity: usize,
    acks: Arc<AckTable>,
    last_revs: Arc<Vec<AtomicI64>>,
    stop: watch::Receiver<bool>,
}

async fn run_stream(
    mut ctx: StreamCtx,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<StreamOutcome> {
    let (tx, rx) = mpsc::channel::<WatchRequest>(16);
    let mut client = WatchClient::new(ctx.channel.clone())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let range_end = prefix_end(&ctx.spec.prefix);
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: ctx.spec.prefix.clone(),
                range_end: range_end.clone(),
                start_revision: ctx.start_rev,
                progress_notify: ctx.spec.progress_notify,
                prev_kv: ctx.spec.prev_kv,
                ..Default::default()
            },
        )),
    };
    // the first create goes in before the call: a server may send response headers only
    // with its first message, and the call waits for them
    if ctx.n > 0 {
        tx.send(create.clone())
            .await
            .context("queueing the first watch create")?;
    }
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut resp = client
        .watch(req)
        .await
        .context("opening a watch stream")?
        .into_inner();
    let mut ids: HashMap<i64, usize> = HashMap::new();
    for w in 0..ctx.n {
        if w > 0 {
            tx.send(create.clone())
                .await
                .context("watch stream closed while creating watchers")?;
        }
        loop {
            let r = match resp.next().await {
                Some(r) => r.context("watch stream failed while creating watchers")?,
                None => bail!("watch stream ended while creating watchers"),
            };
            if r.created {
                if r.canceled {
                    bail!("watch create refused: {}", r.cancel_reason);
                }
                ids.insert(r.watch_id, w);
                break;
            }
        }
    }
    let _ = ready.send(());
    let mut out = StreamOutcome {
        checkers: (0..ctx.n)
            .map(|_| Continuity::new(ctx.start_rev, ctx.capacity))
            .collect(),
        lag: Recorder::new(),
        pending: Vec::new(),
        canceled: 0,
        progress: 0,
    };
    loop {
        let r = tokio::select! {
            r = resp.next() => r,
            _ = ctx.stop.changed() => break,
        };
        let r = match r {
            Some(Ok(r)) => r,
            Some(Err(e)) if *ctx.stop.borrow() => {
                let _ = e;
                break;
            }
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("watch stream failed")),
            None => break,
        };
        let Some(&w) = ids.get(&r.watch_id) else {
            // progress answer to a WatchProgressRequest (watch_id -1) or unknown id
            continue;
        };
        if r.canceled {
            out.canceled += 1;
            continue;
        }
        if r.events.is_empty() {
            if !r.created {
                out.progress += 1;
            }
            continue;
        }
        let now = Instant::now();
        let c = &mut out.checkers[w];
        for ev in &r.events {
            let Some(kv) = ev.kv.as_ref() else { continue };
            let rev = kv.mod_revision;
            c.observe(rev, &kv.key, ev.r#type == EventType::Delete as i32);
            match ctx.acks.lag(rev, now) {
                Lag::Known(d) => out.lag.ok(d),
                Lag::Pending => out.pending.push(rev),
                Lag::Outside => {}
            }
        }
        ctx.last_revs[ctx.first + w].store(c.last_rev(), Ordering::Release);
    }
    drop(tx);
    Ok(out)
}
