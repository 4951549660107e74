//! [`WatchHub`]: streams, watchers, synced delivery and progress.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use shale_api::etcdserverpb::ResponseHeader;
use shale_api::mvccpb::{event::EventType, Event};
use shale_api::watch_wire::WireWatchResponse;

use super::shared::SharedEvent;
use crate::key_range::KeyRange;
use crate::store::{Committed, MvccStore};

/// Identifies a client stream inside the hub.
pub type StreamId = u64;

/// The ordered queue of one client stream.
pub trait WatchSink: Send + Sync + 'static {
    /// Queues `resp`. Responses with `must` (created, canceled, progress) are always queued;
    /// event responses may be refused (return false) when the stream's buffer is full, in
    /// which case the hub replays them later from history.
    ///
    /// `resp.events` are encoded once per batch and shared between the watchers that get
    /// them (see [`shale_api::watch_wire`]); [`WireWatchResponse::to_response`] decodes them.
    fn send(&self, resp: WireWatchResponse, must: bool) -> bool;
}

/// What a client asked to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub range: KeyRange,
    /// 0 = from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub no_put: bool,
    pub no_delete: bool,
    /// Client-chosen id, or 0 to let the hub pick the lowest free one.
    pub watch_id: i64,
}

impl WatchSpec {
    /// A watch of `range` from the next revision, no options.
    pub fn new(range: KeyRange) -> Self {
        Self {
            range,
            start_revision: 0,
            prev_kv: false,
            progress_notify: false,
            no_put: false,
            no_delete: false,
            watch_id: 0,
        }
    }
}

pub(crate) struct Watcher {
    pub range: KeyRange,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub no_put: bool,
    pub no_delete: bool,
    /// For unsynced watchers: the next revision to send.
    pub next_rev: i64,
    pub synced: bool,
}

impl Watcher {
    pub fn wants(&self, ev: &Event) -> bool {
        let is_put = ev.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        ev.kv
            .as_ref()
            .is_some_and(|kv| self.range.contains(&kv.key))
    }
}

pub(crate) struct Stream {
    pub sink: Arc<dyn WatchSink>,
    pub watchers: BTreeMap<i64, Watcher>,
    pub next_id: i64,
    pub progress_pending: bool,
}

pub(crate) struct HubState {
    /// Newest revision handed to synced watchers.
    pub rev: i64,
    pub streams: HashMap<StreamId, Stream>,
    pub next_stream: StreamId,
    pub unsynced: usize,
    pub stop: bool,
}

pub(crate) struct HubShared {
    pub state: Mutex<HubState>,
    pub wake: Condvar,
    pub store: Arc<MvccStore>,
}

pub(crate) fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

/// The watch hub of one store.
pub struct WatchHub {
    shared: Arc<HubShared>,
    worker: Option<JoinHandle<()>>,
}

impl WatchHub {
    pub fn new(store: Arc<MvccStore>) -> Self {
        let rev = store.current_revision();
        let shared = Arc::new(HubShared {
            state: Mutex::new(HubState {
                rev,
                streams: HashMap::new(),
                next_stream: 1,
                unsynced: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            store,
        });
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("watch-catchup".into())
            .spawn(move || super::catchup::run(s))
            .expect("spawn watch catch-up thread");
        Self {
            shared,
            worker: Some(worker),
        }
    }

    /// The newest revision every synced watcher has been sent.
    pub fn rev(&self) -> i64 {
        self.shared.state.lock().rev
    }

    /// Number of watchers across streams, and how many are unsynced.
    pub fn watcher_counts(&self) -> (usize, usize) {
        let st = self.shared.state.lock();
        (
            st.streams.values().map(|s| s.watchers.len()).sum(),
            st.unsynced,
        )
    }

    pub fn open_stream(&self, sink: Arc<dyn WatchSink>) -> StreamId {
        let mut st = self.shared.state.lock();
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(
            id,
            Stream {
                sink,
                watchers: BTreeMap::new(),
                next_id: 0,
                progress_pending: false,
            },
        );
        id
    }

    pub fn close_stream(&self, sid: StreamId) {
        let mut st = self.shared.state.lock();
        if let Some(s) = st.streams.remove(&sid) {
            st.unsynced -= s.watchers.values().filter(|w| !w.synced).count();
        }
    }

    /// Creates a watcher and queues its `created` response (and, for a start revision below
    /// zero or a duplicate id, the cancel right after). Returns the watch id.
    pub fn create(&self, sid: StreamId, spec: WatchSpec) -> Option<i64> {
        let mut st = self.shared.state.lock();
        let rev = st.rev;
        let stream = st.streams.get_mut(&sid)?;
        let id = if spec.watch_id != 0 {
            spec.watch_id
        } else {
            // Like etcd, an auto-assigned id is never handed out twice on a stream.
            while stream.watchers.contains_key(&stream.next_id) {
                stream.next_id += 1;
            }
            stream.next_id
        };
        let fail = |reason: &str| WireWatchResponse {
            header: header(rev),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if stream.watchers.contains_key(&id) {
            stream.sink.send(
                fail("mvcc: duplicate watch ID provided on the WatchStream"),
                true,
            );
            return None;
        }
        if let KeyRange::Interval(a, b) = &spec.range {
            if b <= a {
                stream.sink.send(fail("mvcc: watcher range is empty"), true);
                return None;
            }
        }
        let range = spec.range;
        if spec.start_revision < 0 {
            stream
                .sink
                .send(fail("mvcc: required revision has been compacted"), true);
            return None;
        }
        let synced = spec.start_revision == 0 || spec.start_revision > rev;
        let next_rev = if spec.start_revision == 0 {
            rev + 1
        } else {
            spec.start_revision
        };
        stream.sink.send(
            WireWatchResponse {
                header: header(rev),
                watch_id: id,
                created: true,
                ..Default::default()
            },
            true,
        );
        stream.watchers.insert(
            id,
            Watcher {
                range,
                prev_kv: spec.prev_kv,
                progress_notify: spec.progress_notify,
                no_put: spec.no_put,
                no_delete: spec.no_delete,
                next_rev,
                synced,
            },
        );
        if spec.watch_id == 0 {
            stream.next_id += 1;
        }
        if !synced {
            st.unsynced += 1;
            self.shared.wake.notify_all();
        }
        Some(id)
    }

    /// Cancels a watcher; queues the canceled response if it existed.
    pub fn cancel(&self, sid: StreamId, id: i64) -> bool {
        let mut st = self.shared.state.lock();
        let rev = st.rev;
        let Some(stream) = st.streams.get_mut(&sid) else {
            return false;
        };
        let Some(w) = stream.watchers.remove(&id) else {
            return false;
        };
        stream.sink.send(
            WireWatchResponse {
                header: header(rev),
                watch_id: id,
                canceled: true,
                ..Default::default()
            },
            true,
        );
        if !w.synced {
            st.unsynced -= 1;
        }
        maybe_answer_progress(&mut st, sid);
        true
    }

    /// A progress request: answered now if every watcher of the stream is synced, else as
    /// soon as they are.
    pub fn request_progress(&self, sid: StreamId) {
        let mut st = self.shared.state.lock();
        if let Some(s) = st.streams.get_mut(&sid) {
            s.progress_pending = true;
        }
        maybe_answer_progress(&mut st, sid);
    }

    /// Periodic progress notification for synced watchers that asked for it.
    pub fn progress_tick(&self) {
        let st = self.shared.state.lock();
        let rev = st.rev;
        for s in st.streams.values() {
            for (id, w) in &s.watchers {
                if w.synced && w.progress_notify {
                    s.sink.send(
                        WireWatchResponse {
                            header: header(rev),
                            watch_id: *id,
                            ..Default::default()
                        },
                        false,
                    );
                }
            }
        }
    }

    /// After the store's content was replaced (snapshot install): every watcher replays from
    /// the stored history past what it was already sent, up to the new revision `rev`.
    pub fn reset(&self, rev: i64) {
        let mut st = self.shared.state.lock();
        let next = st.rev + 1;
        st.rev = rev;
        let mut n = 0;
        for s in st.streams.values_mut() {
            for w in s.watchers.values_mut() {
                if w.synced {
                    w.synced = false;
                    // A watcher created with a future start revision keeps it.
                    w.next_rev = w.next_rev.max(next);
                    n += 1;
                }
            }
        }
        st.unsynced += n;
        self.shared.wake.notify_all();
    }

    /// Delivers a committed batch to synced watchers. Called by the applier, in order.
    pub fn notify(&self, c: &Committed) {
        let mut st = self.shared.state.lock();
        let first_rev = st.rev + 1;
        st.rev = c.rev;
        if c.changes.is_empty()
            || !st
                .streams
                .values()
                .any(|s| s.watchers.values().any(|w| w.synced))
        {
            return;
        }
        let store = &self.shared.store;
        // etcd fills a watch event's prev_kv from the store at `mod_revision - 1`: when one
        // revision changes a key twice (a txn's put and a from-key delete, which etcd does not
        // flag as duplicates), the later event's prev_kv is the state before the revision.
        let mut first_of_key: std::collections::HashMap<(&[u8], i64), usize> =
            std::collections::HashMap::with_capacity(c.changes.len());
        // Each event is encoded on first use and shared by every watcher it goes to. The
        // previous state is read (if the put did not) only when a `prev_kv` watcher wants it.
        let mut events: Vec<(SharedEvent, Option<&crate::store::Change>)> = c
            .changes
            .iter()
            .enumerate()
            .map(|(i, ch)| {
                let first = *first_of_key
                    .entry((ch.kv.key.as_ref(), ch.kv.mod_revision))
                    .or_insert(i);
                let ty = if ch.is_delete {
                    EventType::Delete
                } else {
                    EventType::Put
                };
                (
                    SharedEvent::new(Event {
                        r#type: ty as i32,
                        kv: Some(ch.kv.clone()),
                        prev_kv: None,
                    }),
                    // a create (version 1) never has one, as in etcd
                    if !ch.is_delete && ch.kv.version == 1 {
                        None
                    } else {
                        Some(&c.changes[first])
                    },
                )
            })
            .collect();
        let mut newly_unsynced = 0;
        for s in st.streams.values_mut() {
            for (id, w) in s.watchers.iter_mut() {
                if !w.synced {
                    continue;
                }
                // A synced watcher's `next_rev` is its first wanted revision: above the hub's
                // revision only for a watcher created with a future start revision.
                let mut evs = Vec::new();
                for (e, prev) in events.iter_mut() {
                    if e.rev() < w.next_rev || !w.wants(&e.ev) {
                        continue;
                    }
                    evs.push(if w.prev_kv {
                        match e.cached_with_prev() {
                            Some(enc) => enc,
                            None => {
                                let p = match prev {
                                    Some(ch) => ch.prev_kv(store).unwrap_or_else(|err| {
                                        tracing::error!(error = %err, "cannot read the previous state of a watched key");
                                        None
                                    }),
                                    None => None,
                                };
                                e.with_prev(p.as_ref())
                            }
                        }
                    } else {
                        e.plain()
                    });
                }
                if evs.is_empty() {
                    continue;
                }
                let resp = WireWatchResponse {
                    header: header(c.rev),
                    watch_id: *id,
                    events: evs,
                    ..Default::default()
                };
                if !s.sink.send(resp, false) {
                    w.synced = false;
                    w.next_rev = w.next_rev.max(first_rev);
                    newly_unsynced += 1;
                }
            }
        }
        if newly_unsynced > 0 {
            st.unsynced += newly_unsynced;
            self.shared.wake.notify_all();
        }
    }
}

/// Answers a pending progress request of `sid` if all its watchers are synced.
pub(crate) fn maybe_answer_progress(st: &mut HubState, sid: StreamId) {
    let rev = st.rev;
    if let Some(s) = st.streams.get_mut(&sid) {
        if s.progress_pending && s.watchers.values().all(|w| w.synced) {
            s.progress_pending = false;
            s.sink.send(
                WireWatchResponse {
                    header: header(rev),
                    watch_id: -1,
                    ..Default::default()
                },
                true,
            );
        }
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

pub(crate) const CATCHUP_IDLE: Duration = Duration::from_millis(50);
