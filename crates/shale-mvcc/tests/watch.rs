//! Watch hub tests: ordering, history replay, prev_kv, filters, slow clients, compaction,
//! progress requests and cancel. Expected events come from the reference model
//! (`shale_testkit::model::Model::events`). All waits are condition waits with a deadline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shale_api::etcdserverpb::{DeleteRangeRequest, PutRequest, WatchResponse};
use shale_api::mvccpb::{event::EventType, Event};
use shale_api::watch_wire::WireWatchResponse;
use shale_mvcc::watch::{WatchHub, WatchSink, WatchSpec};
use shale_mvcc::{kv, KeyRange, MvccStore};
use shale_storage::{Engine, MemoryEngine};
use shale_testkit::model::{in_range, Model};

const DEADLINE: Duration = Duration::from_secs(20);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// A test sink: a bounded queue (for non-`must` sends) that the "client" drains.

#[derive(Default)]
struct SinkState {
    /// Sent, not yet read by the client.
    queue: VecDeque<WireWatchResponse>,
    /// Read by the client, in order.
    delivered: Vec<WireWatchResponse>,
    /// Event responses refused because the queue was full.
    refused: usize,
}

struct TestSink {
    state: Mutex<SinkState>,
    /// How many responses the queue holds before event sends are refused.
    capacity: usize,
    /// Drain on every send (a fast client).
    auto_drain: bool,
}

impl TestSink {
    fn fast() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            capacity: usize::MAX,
            auto_drain: true,
        })
    }

    fn slow(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            capacity,
            auto_drain: false,
        })
    }

    /// The client reads everything queued.
    fn drain(&self) {
        let mut st = self.state.lock();
        let q: Vec<_> = st.queue.drain(..).collect();
        st.delivered.extend(q);
    }

    /// What the client read, events decoded.
    fn delivered(&self) -> Vec<WatchResponse> {
        self.delivered_wire()
            .iter()
            .map(|r| r.to_response().expect("events decode"))
            .collect()
    }

    /// What the client read, events as the hub encoded them.
    fn delivered_wire(&self) -> Vec<WireWatchResponse> {
        self.drain();
        self.state.lock().delivered.clone()
    }

    fn refused(&self) -> usize {
        self.state.lock().refused
    }
}

impl WatchSink for TestSink {
    fn send(&self, resp: WireWatchResponse, must: bool) -> bool {
        let mut st = self.state.lock();
        if !must && st.queue.len() >= self.capacity {
            st.refused += 1;
            return false;
        }
        if self.auto_drain {
            st.delivered.push(resp);
        } else {
            st.queue.push_back(resp);
        }
        true
    }
}

/// Polls `cond` until it holds or the deadline passes (then panics with `what`).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The events a sink has delivered for `id`, flattened, in order.
fn events_of(resps: &[WatchResponse], id: i64) -> Vec<Event> {
    resps
        .iter()
        .filter(|r| r.watch_id == id)
        .flat_map(|r| r.events.iter().cloned())
        .collect()
}

fn rev_of(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// Every response's events are of revisions <= its header revision, and one revision's events
/// are never split across two responses of the same watcher.
fn check_response_shape(resps: &[WatchResponse], id: i64) {
    let mut last_rev_of_prev = 0;
    for r in resps
        .iter()
        .filter(|r| r.watch_id == id && !r.events.is_empty())
    {
        let hdr = r.header.as_ref().expect("header").revision;
        for e in &r.events {
            assert!(
                rev_of(e) <= hdr,
                "event at {} in a response with header {hdr}",
                rev_of(e)
            );
        }
        let first = rev_of(&r.events[0]);
        assert!(
            first > last_rev_of_prev,
            "revision {first} split across responses or repeated"
        );
        last_rev_of_prev = rev_of(r.events.last().expect("non-empty"));
    }
}

// ---------------------------------------------------------------------------------------------
// A store with a hub, and the model alongside.

struct World {
    store: Arc<MvccStore>,
    hub: WatchHub,
    model: Mutex<Model>,
}

impl World {
    fn new() -> Arc<Self> {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = Arc::new(MvccStore::open(engine).expect("open"));
        let hub = WatchHub::new(store.clone());
        Arc::new(Self {
            store,
            hub,
            model: Mutex::new(Model::new()),
        })
    }

    fn put(&self, k: &str, v: &str) -> i64 {
        let p = PutRequest {
            key: b(k),
            value: b(v),
            ..Default::default()
        };
        let mut m = self.model.lock();
        m.put(&p).expect("model put");
        let mut batch = self.store.begin();
        {
            let mut w = batch.write();
            kv::put(&mut w, &p, &|_| true, false).expect("put");
        }
        let c = batch.commit().expect("commit");
        self.hub.notify(&c);
        c.rev
    }

    fn delete(&self, k: &str, end: &str) -> i64 {
        let d = DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
            prev_kv: false,
        };
        let mut m = self.model.lock();
        m.delete_range(&d).expect("model delete");
        let mut batch = self.store.begin();
        {
            let mut w = batch.write();
            kv::delete_range(&mut w, &d).expect("delete");
        }
        let c = batch.commit().expect("commit");
        self.hub.notify(&c);
        c.rev
    }

    /// Several requests in one apply batch (one notify with several revisions).
    fn put_batch(&self, kvs: &[(&str, &str)]) -> i64 {
        let mut m = self.model.lock();
        let mut batch = self.store.begin();
        for (k, v) in kvs {
            let p = PutRequest {
                key: b(k),
                value: b(v),
                ..Default::default()
            };
            m.put(&p).expect("model put");
            let mut w = batch.write();
            kv::put(&mut w, &p, &|_| true, false).expect("put");
        }
        let c = batch.commit().expect("commit");
        self.hub.notify(&c);
        c.rev
    }

    /// One random write (put, delete, or a multi-key txn-like batch of one request).
    fn random_write(&self, rng: &mut StdRng) -> i64 {
        const KEYS: &[&str] = &["a", "a/1", "a/2", "b", "b/1", "c", "d"];
        let k = KEYS[rng.random_range(0..KEYS.len())];
        match rng.random_range(0..10) {
            0..=5 => self.put(k, &rng.random_range(0..1000).to_string()),
            6..=7 => self.delete(k, ""),
            8 => self.delete("a", "b"),
            _ => {
                // A delete of several keys and puts in one apply batch.
                let k2 = KEYS[rng.random_range(0..KEYS.len())];
                self.put_batch(&[(k, "x"), (k2, "y")])
            }
        }
    }

    fn compact(&self, rev: i64) {
        self.model.lock().compact(rev).expect("model compact");
        let mut batch = self.store.begin();
        batch.compact(rev).expect("compact");
        let c = batch.commit().expect("commit");
        self.hub.notify(&c);
    }

    fn rev(&self) -> i64 {
        self.store.current_revision()
    }

    /// What a watcher of `range` from `start` must see up to `to`, per the model.
    fn expected(&self, spec: &WatchSpec, from: i64, to: i64) -> Vec<Event> {
        let range = &spec.range;
        self.model
            .lock()
            .events(from, to)
            .into_iter()
            .filter(|e| {
                let key = &e.kv.as_ref().expect("kv").key;
                let is_put = e.r#type == EventType::Put as i32;
                let filtered = if is_put { spec.no_put } else { spec.no_delete };
                range.contains(key) && !filtered
            })
            .map(|mut e| {
                if !spec.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

fn spec(key: &str, end: &str) -> WatchSpec {
    WatchSpec::new(KeyRange::new(b(key), b(end)))
}

fn all_keys() -> WatchSpec {
    spec("\0", "\0")
}

fn last_event_rev(sink: &TestSink, id: i64) -> i64 {
    events_of(&sink.delivered(), id).last().map_or(0, rev_of)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn model_range_helper_agrees_with_key_range() {
    // The expected-event filter uses KeyRange; make sure it is etcd's range semantics.
    for (k, e) in [("a", ""), ("a", "b"), ("a", "\0"), ("\0", "\0"), ("b", "a")] {
        let r = KeyRange::new(b(k), b(e));
        for key in ["a", "a/1", "b", "c", "\u{1}"] {
            assert_eq!(
                r.contains(key.as_bytes()),
                in_range(key.as_bytes(), k.as_bytes(), e.as_bytes()),
                "{k:?}..{e:?} {key}"
            );
        }
    }
}

#[test]
fn live_events_arrive_in_order_once_with_prev_kv() {
    let w = World::new();
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    let mut s = all_keys();
    s.prev_kv = true;
    let id = w.hub.create(sid, s.clone()).expect("created");
    let start = w.rev() + 1;
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..400 {
        w.random_write(&mut rng);
    }
    let end = w.rev();
    wait_for("all live events", || last_event_rev(&sink, id) == end);
    let got = sink.delivered();
    assert!(got[0].created && got[0].watch_id == id);
    check_response_shape(&got, id);
    assert_eq!(events_of(&got, id), w.expected(&s, start, end));
}

#[test]
fn watchers_with_the_same_settings_share_the_event_bytes() {
    let w = World::new();
    w.put("k", "v0");
    // Two streams, each with a plain watcher and a prev_kv watcher of every key.
    let sinks = [TestSink::fast(), TestSink::fast()];
    let mut watchers = Vec::new();
    for sink in &sinks {
        let sid = w.hub.open_stream(sink.clone());
        for prev_kv in [false, true] {
            let mut s = all_keys();
            s.prev_kv = prev_kv;
            let id = w.hub.create(sid, s).expect("created");
            watchers.push((sink.clone(), id, prev_kv));
        }
    }
    // One batch: an update (has a prev_kv) and a create (never has one).
    let rev = w.put_batch(&[("k", "v1"), ("new", "x")]);
    let mut bytes = Vec::new();
    for (sink, id, prev_kv) in &watchers {
        wait_for("events", || last_event_rev(sink, *id) == rev);
        let resp = sink
            .delivered_wire()
            .into_iter()
            .find(|r| r.watch_id == *id && !r.events.is_empty())
            .expect("event response");
        assert_eq!(resp.events.len(), 2);
        let decoded = resp.to_response().expect("decode");
        assert_eq!(decoded.events[0].prev_kv.is_some(), *prev_kv);
        assert!(decoded.events[1].prev_kv.is_none());
        let ptrs: Vec<*const u8> = resp.events.iter().map(|e| e.bytes().as_ptr()).collect();
        bytes.push((*prev_kv, ptrs));
    }
    let plain: Vec<_> = bytes.iter().filter(|b| !b.0).map(|b| &b.1).collect();
    let with_prev: Vec<_> = bytes.iter().filter(|b| b.0).map(|b| &b.1).collect();
    assert_eq!(plain.len(), 2);
    assert_eq!(plain[0], plain[1], "plain watchers share the encodings");
    assert_eq!(with_prev[0], with_prev[1], "prev_kv watchers share theirs");
    assert_ne!(
        plain[0][0], with_prev[0][0],
        "the update differs by its prev_kv"
    );
    assert_eq!(
        plain[0][1], with_prev[0][1],
        "a create is the same bytes either way"
    );
}

#[test]
fn history_replay_then_live_while_writes_continue() {
    let w = World::new();
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..3_000 {
        w.random_write(&mut rng);
    }
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    // Several watchers replaying from different old revisions, with different filters, while
    // a writer keeps going: the hand-off from replay to live must lose and repeat nothing.
    let mut specs = Vec::new();
    for (i, start) in [1i64, 2, 500, 2_000, 2_999].into_iter().enumerate() {
        let mut s = match i % 3 {
            0 => all_keys(),
            1 => spec("a", "b"),
            _ => spec("b", ""),
        };
        s.start_revision = start;
        s.prev_kv = i % 2 == 0;
        s.no_delete = i == 3;
        let id = w.hub.create(sid, s.clone()).expect("created");
        specs.push((id, s));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let w = w.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(12);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 3_000 {
                w.random_write(&mut rng);
                n += 1;
            }
        })
    };
    wait_for("replaying watchers to sync", || {
        w.hub.watcher_counts().1 == 0
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let end = w.rev();
    for (id, s) in &specs {
        let want = w.expected(s, s.start_revision, end);
        let want_last = want.last().map_or(0, rev_of);
        wait_for("watcher to reach the end", || {
            last_event_rev(&sink, *id) == want_last
        });
        let got = sink.delivered();
        check_response_shape(&got, *id);
        let evs = events_of(&got, *id);
        assert_eq!(
            evs.len(),
            want.len(),
            "watcher {id} from {}",
            s.start_revision
        );
        assert_eq!(evs, want, "watcher {id} from {}", s.start_revision);
    }
}

#[test]
fn filters_and_ranges() {
    let w = World::new();
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    let mut specs = vec![spec("a", ""), spec("a", "b"), spec("a/", "\0"), all_keys()];
    // An empty interval is refused like etcd does ("mvcc: watcher range is empty").
    assert_eq!(w.hub.create(sid, spec("c", "a")), None);
    let refused = sink.delivered().last().cloned().expect("response");
    assert_eq!(
        (refused.watch_id, refused.cancel_reason.as_str()),
        (-1, "mvcc: watcher range is empty")
    );
    let mut np = all_keys();
    np.no_put = true;
    let mut nd = spec("a", "b");
    nd.no_delete = true;
    nd.prev_kv = true;
    specs.push(np);
    specs.push(nd);
    let ids: Vec<i64> = specs
        .iter()
        .map(|s| w.hub.create(sid, s.clone()).expect("created"))
        .collect();
    let start = w.rev() + 1;
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..300 {
        w.random_write(&mut rng);
    }
    let end = w.rev();
    // A sentinel write every watcher of everything sees last.
    for (id, s) in ids.iter().zip(&specs) {
        let want = w.expected(s, start, end);
        let want_last = want.last().map_or(0, rev_of);
        wait_for("filtered watcher", || {
            last_event_rev(&sink, *id) == want_last
        });
        assert_eq!(events_of(&sink.delivered(), *id), want, "spec {s:?}");
    }
}

#[test]
fn slow_client_gets_every_event_exactly_once_in_order() {
    let w = World::new();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..50 {
        w.random_write(&mut rng);
    }
    let sink = TestSink::slow(2);
    let sid = w.hub.open_stream(sink.clone());
    let mut s = all_keys();
    s.prev_kv = true;
    let live = w.hub.create(sid, s.clone()).expect("created");
    let mut old = s.clone();
    old.start_revision = 3;
    let replay = w.hub.create(sid, old.clone()).expect("created");
    let start = w.rev() + 1;
    let stop = Arc::new(AtomicBool::new(false));
    // The client drains now and then, much slower than the writer writes.
    let reader = {
        let sink = sink.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sink.drain();
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    for _ in 0..1_500 {
        w.random_write(&mut rng);
    }
    let end = w.rev();
    let want_live = w.expected(&s, start, end);
    let want_replay = w.expected(&old, 3, end);
    wait_for("slow client to receive everything", || {
        last_event_rev(&sink, live) == want_live.last().map_or(0, rev_of)
            && last_event_rev(&sink, replay) == want_replay.last().map_or(0, rev_of)
    });
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    assert!(
        sink.refused() > 0,
        "the sink never pushed back; the test did not exercise slow clients"
    );
    let got = sink.delivered();
    check_response_shape(&got, live);
    check_response_shape(&got, replay);
    assert_eq!(events_of(&got, live), want_live);
    assert_eq!(events_of(&got, replay), want_replay);
}

#[test]
fn compacted_start_revision_is_created_then_canceled() {
    let w = World::new();
    for i in 0..20 {
        w.put("k", &i.to_string());
    }
    w.compact(10);
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    let mut s = spec("k", "");
    s.start_revision = 5;
    let id = w.hub.create(sid, s).expect("created");
    wait_for("cancel", || {
        sink.delivered()
            .iter()
            .any(|r| r.watch_id == id && r.canceled)
    });
    let got: Vec<_> = sink
        .delivered()
        .into_iter()
        .filter(|r| r.watch_id == id)
        .collect();
    assert!(got[0].created && !got[0].canceled, "{got:?}");
    assert!(got[1].canceled && got[1].compact_revision == 10, "{got:?}");
    assert!(got.iter().all(|r| r.events.is_empty()));
    assert_eq!(w.hub.watcher_counts(), (0, 0));

    // Just above the compact revision the history is complete.
    let mut s = spec("k", "");
    s.start_revision = 11;
    s.prev_kv = true;
    let id = w.hub.create(sid, s.clone()).expect("created");
    let end = w.rev();
    wait_for("replay from 11", || last_event_rev(&sink, id) == end);
    assert_eq!(events_of(&sink.delivered(), id), w.expected(&s, 11, end));

    // A negative start revision: created and canceled at once.
    let mut s = spec("k", "");
    s.start_revision = -1;
    assert_eq!(w.hub.create(sid, s), None);
    let last = sink.delivered().last().cloned().expect("response");
    assert!(
        last.created && last.canceled && last.cancel_reason.contains("compacted"),
        "{last:?}"
    );
}

#[test]
fn compaction_while_a_slow_watcher_lags_cancels_it() {
    let w = World::new();
    let sink = TestSink::slow(1);
    let sid = w.hub.open_stream(sink.clone());
    let id = w.hub.create(sid, spec("k", "")).expect("created");
    sink.drain();
    // Fill the queue, so the watcher falls behind, then compact past its next revision.
    for i in 0..10 {
        w.put("k", &i.to_string());
    }
    w.compact(w.rev());
    sink.drain();
    wait_for("lagging watcher canceled", || {
        sink.drain();
        sink.delivered()
            .iter()
            .any(|r| r.watch_id == id && r.canceled)
    });
    let got: Vec<_> = sink
        .delivered()
        .into_iter()
        .filter(|r| r.watch_id == id)
        .collect();
    let cancel = got.iter().find(|r| r.canceled).expect("cancel");
    assert_eq!(cancel.compact_revision, w.rev());
    // What it did get was in order and without gaps from the start.
    let evs = events_of(&got, id);
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(rev_of(e), 2 + i as i64);
    }
}

#[test]
fn progress_is_answered_only_after_every_watcher_caught_up() {
    let w = World::new();
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..4_000 {
        w.random_write(&mut rng);
    }
    // Stream 1: only an idle watcher; progress is answered at once with the current revision.
    let idle_sink = TestSink::fast();
    let sid1 = w.hub.open_stream(idle_sink.clone());
    w.hub
        .create(sid1, spec("never-written", ""))
        .expect("created");
    w.hub.request_progress(sid1);
    let rev = w.rev();
    wait_for("progress on idle stream", || {
        idle_sink.delivered().iter().any(|r| r.watch_id == -1)
    });
    let p = idle_sink
        .delivered()
        .into_iter()
        .find(|r| r.watch_id == -1)
        .expect("progress");
    assert_eq!(p.header.expect("header").revision, rev);
    assert!(p.events.is_empty() && !p.created && !p.canceled);

    // Stream 2: an idle watcher, a live watcher and one replaying the whole history through a
    // slow queue. The progress answer must come after every event <= its revision.
    let sink = TestSink::slow(3);
    let sid = w.hub.open_stream(sink.clone());
    let idle = w
        .hub
        .create(sid, spec("never-written", ""))
        .expect("created");
    let live = w.hub.create(sid, all_keys()).expect("created");
    let mut old = all_keys();
    old.start_revision = 1;
    let replay = w.hub.create(sid, old.clone()).expect("created");
    w.hub.request_progress(sid);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let sink = sink.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sink.drain();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    for _ in 0..200 {
        w.random_write(&mut rng);
    }
    wait_for("progress on busy stream", || {
        sink.delivered().iter().any(|r| r.watch_id == -1)
    });
    let end = w.rev();
    wait_for("everything", || {
        last_event_rev(&sink, replay) == end && last_event_rev(&sink, live) == end
    });
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    let got = sink.delivered();
    let at = got.iter().position(|r| r.watch_id == -1).expect("progress");
    let r = got[at].header.as_ref().expect("header").revision;
    assert!(
        r >= rev,
        "progress revision {r} older than the stream's watchers"
    );
    for id in [live, replay] {
        let before: Vec<Event> = got[..at]
            .iter()
            .filter(|x| x.watch_id == id)
            .flat_map(|x| x.events.clone())
            .collect();
        let after: Vec<Event> = got[at..]
            .iter()
            .filter(|x| x.watch_id == id)
            .flat_map(|x| x.events.clone())
            .collect();
        let from = if id == replay { 1 } else { rev + 1 };
        let want_before = w.expected(&all_keys(), from, r);
        assert_eq!(
            before, want_before,
            "watcher {id}: events <= {r} must precede the progress answer"
        );
        assert!(
            after.iter().all(|e| rev_of(e) > r),
            "watcher {id}: event <= {r} after the progress answer"
        );
    }
    assert!(events_of(&got, idle).is_empty());
    assert_eq!(got.iter().filter(|r| r.watch_id == -1).count(), 1);
}

#[test]
fn progress_notify_ticks_only_for_synced_watchers_that_asked() {
    let w = World::new();
    w.put("a", "1");
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    let mut s = spec("a", "");
    s.progress_notify = true;
    let id = w.hub.create(sid, s).expect("created");
    let quiet = w.hub.create(sid, spec("b", "")).expect("created");
    w.put("zzz", "1");
    w.hub.progress_tick();
    let got = sink.delivered();
    let ticks: Vec<_> = got
        .iter()
        .filter(|r| r.events.is_empty() && !r.created && !r.canceled)
        .collect();
    assert_eq!(ticks.len(), 1, "{got:?}");
    assert_eq!(ticks[0].watch_id, id);
    assert_eq!(ticks[0].header.as_ref().expect("header").revision, w.rev());
    assert!(got.iter().all(|r| r.watch_id != quiet || r.created));
}

#[test]
fn cancel_stops_events_and_ids_are_managed() {
    let w = World::new();
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    let a = w.hub.create(sid, spec("a", "")).expect("created");
    let b_ = w.hub.create(sid, spec("a", "")).expect("created");
    assert_eq!((a, b_), (0, 1), "ids are assigned from 0");
    let mut chosen = spec("a", "");
    chosen.watch_id = 7;
    assert_eq!(w.hub.create(sid, chosen.clone()), Some(7));
    assert_eq!(w.hub.create(sid, chosen), None, "duplicate id");
    let dup = sink.delivered().last().cloned().expect("response");
    // etcd answers a refused create with watch_id -1.
    assert!(dup.created && dup.canceled && dup.watch_id == -1, "{dup:?}");
    w.put("a", "1");
    wait_for("events", || events_of(&sink.delivered(), 7).len() == 1);
    assert!(w.hub.cancel(sid, a));
    assert!(!w.hub.cancel(sid, a), "second cancel");
    assert!(!w.hub.cancel(sid, 99), "unknown id");
    let canceled = sink.delivered().last().cloned().expect("response");
    assert!(canceled.canceled && canceled.watch_id == a);
    let rev = w.put("a", "2");
    wait_for("events", || last_event_rev(&sink, b_) == rev);
    let got = sink.delivered();
    assert_eq!(events_of(&got, a).len(), 1, "no events after cancel");
    assert_eq!(events_of(&got, b_).len(), 2);
    // Like etcd, auto-assigned ids are not reused on a stream (0 was freed, 1 is taken).
    assert_eq!(w.hub.create(sid, spec("a", "")), Some(2));
    assert!(w.hub.cancel(sid, 2));
    assert_eq!(w.hub.create(sid, spec("a", "")), Some(3));
    w.hub.close_stream(sid);
    assert_eq!(w.hub.watcher_counts(), (0, 0));
}

#[test]
fn future_start_revision_skips_earlier_events() {
    let w = World::new();
    w.put("k", "0");
    let sink = TestSink::fast();
    let sid = w.hub.open_stream(sink.clone());
    let mut s = spec("k", "");
    let start = w.rev() + 3;
    s.start_revision = start;
    let id = w.hub.create(sid, s.clone()).expect("created");
    for i in 1..=6 {
        w.put("k", &i.to_string());
    }
    let end = w.rev();
    wait_for("events", || last_event_rev(&sink, id) == end);
    let evs = events_of(&sink.delivered(), id);
    assert_eq!(
        evs,
        w.expected(&s, start, end),
        "a watcher from {start} got events before it"
    );
}
