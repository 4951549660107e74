//! `WireRangeResponse` against the prost-generated `RangeResponse`: same bytes, same fields.

use bytes::Bytes;
use prost::Message;

use super::{EncodedKv, WireRangeResponse, WireRangeStreamResponse};
use crate::etcdserverpb::{RangeResponse, RangeStreamResponse, ResponseHeader};
use crate::mvccpb::KeyValue;

/// Key-values covering every field at default and non-default values, and lengths whose
/// varint prefix takes 1, 2 and 3 bytes.
fn kvs() -> Vec<KeyValue> {
    vec![
        KeyValue::default(),
        KeyValue {
            key: Bytes::from_static(b"/registry/pods/a"),
            ..Default::default()
        },
        KeyValue {
            key: Bytes::from_static(b"/registry/pods/b"),
            create_revision: 5,
            mod_revision: 9,
            version: 3,
            value: Bytes::from_static(b"v"),
            lease: 0,
        },
        KeyValue {
            key: Bytes::from(vec![0xff; 200]),
            create_revision: i64::MAX,
            mod_revision: i64::MAX,
            version: 1,
            value: Bytes::from(vec![7u8; 300]),
            lease: 0x7fff_0000_0000,
        },
        KeyValue {
            key: Bytes::from_static(b"k"),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            value: Bytes::from(vec![b'x'; 70_000]),
            lease: -1,
        },
    ]
}

fn headers() -> Vec<Option<ResponseHeader>> {
    vec![
        None,
        Some(ResponseHeader::default()),
        Some(ResponseHeader {
            cluster_id: 0xdead_beef_cafe,
            member_id: u64::MAX,
            revision: 123_456,
            raft_term: 7,
        }),
    ]
}

/// Every combination of header, a prefix of the key-values, `more` and `count`.
fn responses() -> Vec<RangeResponse> {
    let all = kvs();
    let mut out = Vec::new();
    for header in headers() {
        for n in 0..=all.len() {
            for more in [false, true] {
                for count in [0, 1, 300, i64::MAX] {
                    out.push(RangeResponse {
                        header,
                        kvs: all[..n].to_vec(),
                        more,
                        count,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn encodes_exactly_like_prost() {
    for resp in responses() {
        let wire = WireRangeResponse::from_response(&resp);
        let want = resp.encode_to_vec();
        assert_eq!(wire.encode_to_vec(), want, "{resp:?}");
        assert_eq!(wire.encoded_len(), want.len());
        // The server wraps stored bytes, not its own encoding: same result.
        let stored = WireRangeResponse {
            kvs: resp
                .kvs
                .iter()
                .map(|kv| EncodedKv::from_bytes(Bytes::from(kv.encode_to_vec())))
                .collect(),
            ..wire.clone()
        };
        assert_eq!(stored.encode_to_vec(), want);
    }
}

#[test]
fn decodes_back_to_the_same_response() {
    for resp in responses() {
        let bytes = resp.encode_to_vec();
        let wire = WireRangeResponse::decode(&bytes[..]).expect("decode");
        assert_eq!(wire.to_response().expect("kvs decode"), resp);
        assert_eq!(wire, WireRangeResponse::from_response(&resp));
    }
}

#[test]
fn stream_chunk_encodes_exactly_like_prost() {
    for resp in responses() {
        for inner in [None, Some(resp.clone())] {
            let plain = RangeStreamResponse {
                range_response: inner.clone(),
            };
            let wire = WireRangeStreamResponse {
                range_response: inner.as_ref().map(WireRangeResponse::from_response),
            };
            let want = plain.encode_to_vec();
            assert_eq!(wire.encode_to_vec(), want);
            assert_eq!(wire.encoded_len(), want.len());
            let back = WireRangeStreamResponse::decode(&want[..]).expect("decode");
            assert_eq!(back.to_response().expect("kvs decode"), plain);
        }
    }
}

#[test]
fn without_value_is_the_encoding_of_the_key_only_kv() {
    for kv in kvs() {
        let keys_only = KeyValue {
            value: Bytes::new(),
            ..kv.clone()
        };
        let stripped = EncodedKv::encode(&kv).without_value().expect("well formed");
        assert_eq!(
            stripped.bytes()[..],
            keys_only.encode_to_vec()[..],
            "{kv:?}"
        );
        assert_eq!(stripped.decode().expect("decode"), keys_only);
    }
}

#[test]
fn without_value_rejects_malformed_records() {
    let kv = EncodedKv::encode(&kvs()[3]);
    // Cut inside the value (field 5, the last written but one): length prefix overruns.
    let cut = EncodedKv::from_bytes(kv.bytes().slice(..kv.len() - 20));
    assert!(cut.without_value().is_err());
    // A lone tag byte with no value behind it.
    assert!(EncodedKv::from_bytes(Bytes::from_static(&[0x10]))
        .without_value()
        .is_err());
    // Group wire types are not KeyValue fields.
    assert!(EncodedKv::from_bytes(Bytes::from_static(&[0x0b]))
        .without_value()
        .is_err());
}
