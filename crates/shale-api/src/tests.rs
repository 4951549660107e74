//! Crate-level tests: generated types, wire round trips, service paths.

use bytes::Bytes;
use prost::Message;

use crate::etcdserverpb::{
    compare, request_op, response_op, watch_request, Compare, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RangeStreamResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
};
use crate::mvccpb::KeyValue;
use crate::shalepb::{internal_request, internal_response, InternalRequest, InternalResponse};

fn nested_txn() -> TxnRequest {
    let inner = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::NotEqual as i32,
            target: compare::CompareTarget::Value as i32,
            key: Bytes::from_static(b"inner"),
            target_union: Some(compare::TargetUnion::Value(Bytes::from_static(b"v"))),
            range_end: Bytes::from_static(b"innes"),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: Bytes::from_static(b"inner"),
                value: Bytes::from_static(b"\x00\xffbinary"),
                lease: 42,
                prev_kv: true,
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    TxnRequest {
        compare: vec![Compare {
            target: compare::CompareTarget::Mod as i32,
            key: Bytes::from_static(b"/registry/pods/default/a"),
            target_union: Some(compare::TargetUnion::ModRevision(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(inner)),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: Bytes::from_static(b"/registry/pods/default/a"),
                limit: 1,
                ..Default::default()
            })),
        }],
    }
}

#[test]
fn txn_with_nested_txn_round_trips() {
    let txn = nested_txn();
    let bytes = txn.encode_to_vec();
    let decoded = TxnRequest::decode(bytes.as_slice()).expect("decode");
    assert_eq!(decoded, txn);
    // Decoding from Bytes keeps the key/value fields as Bytes.
    let decoded2 = TxnRequest::decode(Bytes::from(bytes)).expect("decode");
    assert_eq!(decoded2, txn);
}

#[test]
fn internal_request_round_trips() {
    let req = InternalRequest {
        id: 7,
        now_unix_ms: 1_700_000_000_000,
        request: Some(internal_request::Request::Txn(nested_txn())),
    };
    let decoded = InternalRequest::decode(req.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(decoded, req);

    let resp = InternalResponse {
        error: 0,
        response: Some(internal_response::Response::Txn(TxnResponse {
            header: Some(ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
            succeeded: true,
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponsePut(PutResponse {
                    header: None,
                    prev_kv: Some(KeyValue {
                        key: Bytes::from_static(b"k"),
                        ..Default::default()
                    }),
                })),
            }],
        })),
    };
    let decoded = InternalResponse::decode(resp.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(decoded, resp);
}

/// Field numbers are etcd's: a hand-encoded PutRequest decodes as expected.
#[test]
fn wire_numbers_match_etcd() {
    // key=1 "a", value=2 "b", lease=3 5, prev_kv=4 true, ignore_value=5, ignore_lease=6
    let raw = [
        0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 5, 0x20, 1, 0x28, 1, 0x30, 1,
    ];
    let p = PutRequest::decode(&raw[..]).expect("decode");
    assert_eq!(&p.key[..], b"a");
    assert_eq!(&p.value[..], b"b");
    assert_eq!(p.lease, 5);
    assert!(p.prev_kv && p.ignore_value && p.ignore_lease);
    // Compare.range_end is field 64.
    let c = Compare {
        range_end: Bytes::from_static(b"z"),
        ..Default::default()
    };
    assert_eq!(c.encode_to_vec(), vec![0x82, 0x04, 1, b'z']);
    // WatchResponse.events is field 11; RangeStreamResponse wraps field 1.
    let w = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: Bytes::from_static(b"k"),
                ..Default::default()
            },
        )),
    };
    assert_eq!(w.encode_to_vec(), vec![0x0a, 3, 0x0a, 1, b'k']);
    let rs = RangeStreamResponse {
        range_response: Some(RangeResponse {
            count: 1,
            ..Default::default()
        }),
    };
    assert_eq!(rs.encode_to_vec(), vec![0x0a, 2, 0x20, 1]);
}

#[test]
fn file_descriptor_set_is_embedded() {
    assert!(crate::FILE_DESCRIPTOR_SET.len() > 1000);
    let needle = b"etcdserverpb";
    assert!(crate::FILE_DESCRIPTOR_SET
        .windows(needle.len())
        .any(|w| w == needle));
}

#[cfg(feature = "grpc")]
#[test]
fn service_names_match_etcd_paths() {
    use crate::etcdserverpb::*;
    assert_eq!(kv_server::SERVICE_NAME, "etcdserverpb.KV");
    assert_eq!(watch_server::SERVICE_NAME, "etcdserverpb.Watch");
    assert_eq!(lease_server::SERVICE_NAME, "etcdserverpb.Lease");
    assert_eq!(cluster_server::SERVICE_NAME, "etcdserverpb.Cluster");
    assert_eq!(maintenance_server::SERVICE_NAME, "etcdserverpb.Maintenance");
    assert_eq!(auth_server::SERVICE_NAME, "etcdserverpb.Auth");
    // Full method path as the router sees it.
    assert_eq!(
        format!("/{}/Range", kv_server::SERVICE_NAME),
        "/etcdserverpb.KV/Range"
    );
}
