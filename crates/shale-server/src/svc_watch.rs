//! The Watch service: one bidirectional stream per client call, many watchers on it.
//!
//! Requests are handed to the watch hub; everything the hub sends for this stream goes
//! through one ordered queue ([`StreamSink`]) whose event budget makes slow clients fall back
//! to history replay instead of growing memory. The sending side fills headers, splits
//! oversized responses for watchers created with `fragment`, and — for streams opened with
//! `hasleader=true` — ends the stream with `etcdserver: no leader` when the member loses its
//! leader.
//!
//! Responses are [`WireWatchResponse`]s: their events were protobuf-encoded once per batch by
//! the hub and are shared by every watcher that gets them; tonic's encoder only writes the
//! small envelope and copies the event bytes (see `shale_api::watch_wire`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::watch_server::Watch;
use shale_api::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, WatchRequest,
};
use shale_api::watch_wire::WireWatchResponse;
use shale_mvcc::watch::{WatchSink, WatchSpec};
use shale_mvcc::KeyRange;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{go_status_string, Caller, Need};
use crate::ctx::{requires_leader, Ctx};

/// Event responses a stream may have queued before its watchers fall back to replay.
const EVENT_BUDGET: usize = 1024;

pub struct WatchService {
    pub ctx: Arc<Ctx>,
}

struct StreamSink {
    tx: tokio::sync::mpsc::UnboundedSender<WireWatchResponse>,
    queued: Arc<AtomicUsize>,
}

impl WatchSink for StreamSink {
    fn send(&self, resp: WireWatchResponse, must: bool) -> bool {
        if !must && self.queued.load(Ordering::Acquire) >= EVENT_BUDGET {
            return false;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        // A closed stream is being torn down; pretend success so the hub does not replay.
        let _ = self.tx.send(resp);
        true
    }
}

fn spec_of(c: shale_api::etcdserverpb::WatchCreateRequest) -> WatchSpec {
    let key = if c.key.is_empty() {
        Bytes::from_static(b"\0")
    } else {
        c.key
    };
    WatchSpec {
        range: KeyRange::new(key, c.range_end),
        start_revision: c.start_revision,
        prev_kv: c.prev_kv,
        progress_notify: c.progress_notify,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        watch_id: c.watch_id,
    }
}

/// Splits a response whose encoding exceeds `limit` into fragments (all but the last
/// flagged `fragment`), never splitting an event.
fn fragment(resp: WireWatchResponse, limit: usize) -> Vec<WireWatchResponse> {
    if prost::Message::encoded_len(&resp) <= limit || resp.events.len() <= 1 {
        return vec![resp];
    }
    let empty = WireWatchResponse {
        header: resp.header,
        watch_id: resp.watch_id,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut cur = empty.clone();
    let mut size = 0;
    for ev in resp.events {
        let n = ev.len();
        if size + n > limit && !cur.events.is_empty() {
            let mut done = std::mem::replace(&mut cur, empty.clone());
            done.fragment = true;
            out.push(done);
            size = 0;
        }
        size += n;
        cur.events.push(ev);
    }
    out.push(cur);
    out
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WireWatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let ctx = self.ctx.clone();
        ctx.check_has_leader(req.metadata())?;
        let need_leader = requires_leader(req.metadata());
        let caller = Caller::from_request(&req);
        let mut inbound = req.into_inner();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let hub = ctx.node.machine().hub();
        let sink = Arc::new(StreamSink {
            tx,
            queued: queued.clone(),
        });
        let sid = hub.open_stream(sink.clone());
        let fragments: Arc<Mutex<HashMap<i64, bool>>> = Arc::default();
        ctx.metrics.watch_streams.fetch_add(1, Ordering::Relaxed);

        // Receiving side: create / cancel / progress requests.
        let rctx = ctx.clone();
        let rfrag = fragments.clone();
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<Option<Status>>();
        tokio::spawn(async move {
            let hub = rctx.node.machine().hub();
            let end = loop {
                match inbound.next().await {
                    Some(Ok(WatchRequest {
                        request_union: Some(u),
                    })) => match u {
                        RequestUnion::CreateRequest(c) => {
                            let frag = c.fragment;
                            // etcd checks read permission on the range after the negative
                            // start_revision check; a refused create is a created+canceled
                            // response with watch_id -1.
                            let key = if c.key.is_empty() {
                                &b"\0"[..]
                            } else {
                                &c.key[..]
                            };
                            let denied = (c.start_revision >= 0)
                                .then(|| {
                                    rctx.authorize(&caller, Need::Read(key, &c.range_end)).err()
                                })
                                .flatten();
                            if let Some(e) = denied {
                                let rev = rctx.store().current_revision();
                                sink.send(
                                    WireWatchResponse {
                                        header: Some(shale_api::etcdserverpb::ResponseHeader {
                                            revision: rev,
                                            ..Default::default()
                                        }),
                                        watch_id: -1,
                                        created: true,
                                        canceled: true,
                                        cancel_reason: go_status_string(&e),
                                        ..Default::default()
                                    },
                                    true,
                                );
                            } else if let Some(id) = hub.create(sid, spec_of(c)) {
                                rfrag.lock().insert(id, frag);
                            }
                        }
                        RequestUnion::CancelRequest(c) => {
                            if hub.cancel(sid, c.watch_id) {
                                rfrag.lock().remove(&c.watch_id);
                            }
                        }
                        RequestUnion::ProgressRequest(_) => hub.request_progress(sid),
                    },
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break None,
                }
            };
            let _ = done_tx.send(end);
        });

        // Sending side.
        let limit = ctx.limits.max_request_bytes;
        let out = async_stream(move |y| async move {
            let mut leader_check = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    biased;
                    m = rx.recv() => {
                        let Some(mut resp) = m else { break };
                        queued.fetch_sub(1, Ordering::AcqRel);
                        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                        let mut header = ctx.header(rev);
                        if resp.canceled && resp.compact_revision != 0 {
                            // etcd 3.5 sends a compacted watcher's cancel with header.revision 0
                            header.revision = 0;
                        }
                        resp.header = Some(header);
                        let frag = *fragments.lock().get(&resp.watch_id).unwrap_or(&false);
                        if resp.canceled {
                            fragments.lock().remove(&resp.watch_id);
                        }
                        let parts = if frag { fragment(resp, limit) } else { vec![resp] };
                        for p in parts {
                            if y.send(Ok(p)).await.is_err() {
                                break;
                            }
                        }
                    }
                    _ = &mut done_rx => break,
                    _ = leader_check.tick(), if need_leader => {
                        if !ctx.node.has_leader() {
                            let _ = y.send(Err(EtcdError::NoLeader.into())).await;
                            break;
                        }
                    }
                }
            }
            let hub = ctx.node.machine().hub();
            hub.close_stream(sid);
            ctx.metrics.watch_streams.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(out))
    }
}

/// A stream fed by an async producer through a small channel.
fn async_stream<F, Fut>(f: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WireWatchResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    //! The server's hand-encoded responses, decoded by the ordinary prost type.

    use bytes::Bytes;
    use prost::Message;
    use shale_api::etcdserverpb::{ResponseHeader, WatchResponse};
    use shale_api::mvccpb::{event::EventType, Event, KeyValue};
    use shale_api::watch_wire::{EncodedEvent, WireWatchResponse};

    use super::fragment;

    fn event(i: usize, prev: bool) -> Event {
        let kv = |rev: i64, len: usize| KeyValue {
            key: Bytes::from(format!("/registry/pods/ns/p{i}")),
            create_revision: 2,
            mod_revision: rev,
            version: rev - 1,
            value: Bytes::from(vec![b'v'; len]),
            lease: 0,
        };
        Event {
            r#type: if i % 5 == 4 {
                EventType::Delete
            } else {
                EventType::Put
            } as i32,
            kv: Some(kv(10 + i as i64, 100 + 37 * i)),
            prev_kv: prev.then(|| kv(9 + i as i64, 50 + 11 * i)),
        }
    }

    fn response(events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 99,
                raft_term: 3,
            }),
            watch_id: 4,
            events,
            ..Default::default()
        }
    }

    /// What the server put on the wire, decoded by a client.
    fn on_the_wire(parts: &[WireWatchResponse]) -> Vec<WatchResponse> {
        parts
            .iter()
            .map(|p| WatchResponse::decode(&p.encode_to_vec()[..]).expect("client decodes"))
            .collect()
    }

    /// The split the server made before events were shared: whole events, greedy, the limit
    /// measured on events' encoded lengths.
    fn reference_split(resp: &WatchResponse, limit: usize) -> Vec<WatchResponse> {
        if resp.encoded_len() <= limit || resp.events.len() <= 1 {
            return vec![resp.clone()];
        }
        let mut out: Vec<WatchResponse> = Vec::new();
        let mut cur: Vec<Event> = Vec::new();
        let mut size = 0;
        for ev in &resp.events {
            let n = ev.encoded_len();
            if size + n > limit && !cur.is_empty() {
                out.push(WatchResponse {
                    events: std::mem::take(&mut cur),
                    fragment: true,
                    ..response(Vec::new())
                });
                size = 0;
            }
            size += n;
            cur.push(ev.clone());
        }
        out.push(WatchResponse {
            events: cur,
            ..response(Vec::new())
        });
        out
    }

    #[test]
    fn fragments_decode_to_the_original_fields_and_events() {
        for prev in [false, true] {
            let resp = response((0..40).map(|i| event(i, prev)).collect());
            for limit in [1, 200, 1_000, 4_096, usize::MAX] {
                let wire = WireWatchResponse::from_response(&resp);
                let got = on_the_wire(&fragment(wire, limit));
                assert_eq!(
                    got,
                    reference_split(&resp, limit),
                    "prev {prev} limit {limit}"
                );
                let (last, init) = got.split_last().expect("at least one");
                assert!(init.iter().all(|p| p.fragment) && !last.fragment);
                let events: Vec<Event> = got.iter().flat_map(|p| p.events.clone()).collect();
                assert_eq!(events, resp.events);
                if limit == usize::MAX {
                    assert_eq!(got, vec![resp.clone()]);
                }
            }
        }
    }

    #[test]
    fn envelope_only_responses_decode_unchanged() {
        let h = |rev| {
            Some(ResponseHeader {
                cluster_id: 7,
                member_id: 8,
                revision: rev,
                raft_term: 9,
            })
        };
        let cases = [
            // created, refused create, compacted cancel, cancel, progress notify and answer
            WatchResponse {
                header: h(5),
                watch_id: 0,
                created: true,
                ..Default::default()
            },
            WatchResponse {
                header: h(5),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: "etcdserver: permission denied".into(),
                ..Default::default()
            },
            WatchResponse {
                header: h(0),
                watch_id: 2,
                canceled: true,
                compact_revision: 4,
                ..Default::default()
            },
            WatchResponse {
                header: h(5),
                watch_id: 2,
                canceled: true,
                ..Default::default()
            },
            WatchResponse {
                header: h(5),
                watch_id: 3,
                ..Default::default()
            },
            WatchResponse {
                header: h(5),
                watch_id: -1,
                ..Default::default()
            },
        ];
        for resp in cases {
            let wire = WireWatchResponse::from_response(&resp);
            assert!(wire.events.is_empty());
            assert_eq!(on_the_wire(&fragment(wire, 1)), vec![resp]);
        }
    }

    #[test]
    fn shared_event_bytes_are_copied_not_reencoded() {
        let ev = EncodedEvent::encode(&event(1, true));
        let a = WireWatchResponse {
            watch_id: 1,
            events: vec![ev.clone(), ev.clone()],
            ..Default::default()
        };
        let got = on_the_wire(&[a]);
        assert_eq!(got[0].events, vec![event(1, true), event(1, true)]);
    }
}
