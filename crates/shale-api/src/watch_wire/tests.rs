//! `WireWatchResponse` against the prost-generated `WatchResponse`: same bytes, same fields.

use bytes::Bytes;
use prost::Message;

use super::{EncodedEvent, WireWatchResponse};
use crate::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::mvccpb::{event::EventType, Event, KeyValue};

fn kv(key: &str, value: &str, rev: i64, version: i64) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        create_revision: rev - version + 1,
        mod_revision: rev,
        version,
        value: Bytes::copy_from_slice(value.as_bytes()),
        lease: if version % 2 == 0 {
            0x7fff_0000_0000
        } else {
            0
        },
    }
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 0xdead_beef_cafe,
        member_id: u64::MAX,
        revision: rev,
        raft_term: 7,
    })
}

fn events(prev: bool) -> Vec<Event> {
    vec![
        Event {
            r#type: EventType::Put as i32,
            kv: Some(kv("/registry/pods/a", "v1", 10, 1)),
            prev_kv: None,
        },
        Event {
            r#type: EventType::Put as i32,
            kv: Some(kv("/registry/pods/a", &"x".repeat(300), 11, 2)),
            prev_kv: prev.then(|| kv("/registry/pods/a", "v1", 10, 1)),
        },
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: Bytes::from_static(b"/registry/pods/a"),
                mod_revision: 12,
                ..Default::default()
            }),
            prev_kv: prev.then(|| kv("/registry/pods/a", &"x".repeat(300), 11, 2)),
        },
        // An empty event: every field at its default.
        Event::default(),
    ]
}

/// Every kind of response the server sends.
fn responses() -> Vec<WatchResponse> {
    let mut out = vec![
        // created
        WatchResponse {
            header: header(9),
            watch_id: 0,
            created: true,
            ..Default::default()
        },
        // refused create
        WatchResponse {
            header: header(9),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: "etcdserver: permission denied".into(),
            ..Default::default()
        },
        // canceled after compaction (etcd 3.5 sends header.revision 0 here)
        WatchResponse {
            header: header(0),
            watch_id: 3,
            canceled: true,
            compact_revision: 42,
            ..Default::default()
        },
        // plain cancel
        WatchResponse {
            header: header(12),
            watch_id: i64::MAX,
            canceled: true,
            ..Default::default()
        },
        // progress notify and a progress answer
        WatchResponse {
            header: header(12),
            watch_id: 5,
            ..Default::default()
        },
        WatchResponse {
            header: header(12),
            watch_id: -1,
            ..Default::default()
        },
        // no header at all, every field default
        WatchResponse::default(),
    ];
    for prev in [false, true] {
        for fragment in [false, true] {
            out.push(WatchResponse {
                header: header(12),
                watch_id: 1,
                fragment,
                events: events(prev),
                ..Default::default()
            });
        }
    }
    out
}

#[test]
fn wire_response_encodes_to_the_same_bytes_and_fields() {
    for resp in responses() {
        let wire = WireWatchResponse::from_response(&resp);
        let bytes = wire.encode_to_vec();
        assert_eq!(bytes, resp.encode_to_vec(), "{resp:?}");
        assert_eq!(wire.encoded_len(), bytes.len(), "{resp:?}");
        let decoded = WatchResponse::decode(&bytes[..]).expect("decode");
        assert_eq!(decoded, resp);
        // And back: decoding into the wire type keeps the event bytes.
        let again = WireWatchResponse::decode(&bytes[..]).expect("decode wire");
        assert_eq!(again, wire);
        assert_eq!(again.to_response().expect("events"), resp);
    }
}

#[test]
fn prev_kv_is_appended_to_the_shared_encoding() {
    for (plain, full) in events(false).into_iter().zip(events(true)) {
        let shared = EncodedEvent::encode(&plain);
        assert_eq!(shared.bytes()[..], plain.encode_to_vec()[..]);
        assert_eq!(shared.len(), plain.encoded_len());
        match &full.prev_kv {
            Some(prev) => {
                let with = shared.with_prev_kv(prev);
                assert_eq!(with.bytes()[..], full.encode_to_vec()[..]);
                assert_eq!(with.decode().expect("decode"), full);
            }
            None => assert_eq!(shared.decode().expect("decode"), full),
        }
    }
}

#[test]
fn clones_share_the_event_bytes() {
    let ev = EncodedEvent::encode(&events(false)[1]);
    let a = WireWatchResponse {
        watch_id: 1,
        events: vec![ev.clone()],
        ..Default::default()
    };
    let b = WireWatchResponse {
        watch_id: 2,
        events: vec![ev.clone()],
        ..Default::default()
    };
    assert_eq!(a.events[0].bytes().as_ptr(), b.events[0].bytes().as_ptr());
}
