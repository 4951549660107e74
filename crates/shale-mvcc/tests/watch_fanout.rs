//! Timing of watch fan-out: CPU time to deliver N committed events to 300 watchers of one
//! prefix, including the protobuf encoding of every response (the sink encodes each
//! response into a buffer, as tonic's encoder does). Not a correctness test and never
//! asserts timing; run it explicitly:
//!
//! ```text
//! cargo test --release -p shale-mvcc --test watch_fanout -- --ignored --nocapture
//! ```
//!
//! Knobs (environment): `FANOUT_WATCHERS` (300), `FANOUT_EVENTS` (2000), `FANOUT_VALUE` (bytes
//! per value, 1500), `FANOUT_BATCH` (events per apply batch, 1).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prost::Message;
use shale_api::etcdserverpb::PutRequest;
use shale_mvcc::watch::{WatchHub, WatchSink, WatchSpec};
use shale_mvcc::{kv, KeyRange, MvccStore};
use shale_storage::{Engine, MemoryEngine};

/// What the hub hands a sink.
type Resp = shale_api::watch_wire::WireWatchResponse;

/// Encodes every response like the server's gRPC encoder, into a reused buffer.
struct EncodingSink {
    buf: Mutex<BytesMut>,
    bytes: AtomicUsize,
}

impl WatchSink for EncodingSink {
    fn send(&self, resp: Resp, _must: bool) -> bool {
        let mut buf = self.buf.lock();
        buf.clear();
        resp.encode(&mut *buf).expect("encode");
        self.bytes.fetch_add(buf.len(), Ordering::Relaxed);
        true
    }
}

/// CPU time of the calling thread (Linux; zero elsewhere).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(prev_kv: bool) {
    let watchers = knob("FANOUT_WATCHERS", 300);
    let events = knob("FANOUT_EVENTS", 2000);
    let value_len = knob("FANOUT_VALUE", 1500);
    let batch_len = knob("FANOUT_BATCH", 1).max(1);
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let store = Arc::new(MvccStore::open(engine).expect("open"));
    let hub = WatchHub::new(store.clone());
    let sink = Arc::new(EncodingSink {
        buf: Mutex::new(BytesMut::new()),
        bytes: AtomicUsize::new(0),
    });
    // One stream per watcher, like 300 informers.
    for _ in 0..watchers {
        let sid = hub.open_stream(sink.clone());
        let mut spec = WatchSpec::new(KeyRange::new(
            Bytes::from_static(b"/registry/pods/"),
            Bytes::from_static(b"/registry/pods0"),
        ));
        spec.prev_kv = prev_kv;
        hub.create(sid, spec).expect("created");
    }
    let value = Bytes::from(vec![b'x'; value_len]);
    let mut in_notify = Duration::ZERO;
    let wall = Instant::now();
    let mut done = 0;
    while done < events {
        let mut batch = store.begin();
        for _ in 0..batch_len.min(events - done) {
            // 100 pods updated over and over: most events have a prev_kv.
            let p = PutRequest {
                key: Bytes::from(format!("/registry/pods/default/pod-{:03}", done % 100)),
                value: value.clone(),
                ..Default::default()
            };
            let mut w = batch.write();
            kv::put(&mut w, &p, &|_| true, false).expect("put");
            done += 1;
        }
        let c = batch.commit().expect("commit");
        let t = thread_cpu();
        hub.notify(&c);
        in_notify += thread_cpu() - t;
    }
    println!(
        "prev_kv={prev_kv:5} watchers={watchers} events={events} value={value_len}B \
         batch={batch_len}: notify+encode CPU {:.3}s ({:.2} µs/event/watcher), \
         {:.1} MB encoded, total wall {:.3}s",
        in_notify.as_secs_f64(),
        in_notify.as_secs_f64() * 1e6 / (events * watchers) as f64,
        sink.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        wall.elapsed().as_secs_f64(),
    );
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn fanout_to_300_watchers() {
    for prev_kv in [false, true] {
        run(prev_kv);
    }
}
