use super::*;
use crate::etcdserverpb::{compare, request_op};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        ..Default::default()
    }
}

fn put(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b(key),
            ..Default::default()
        })),
    }
}

fn del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: b(key),
                range_end: b(end),
                ..Default::default()
            },
        )),
    }
}

fn get(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range(key))),
    }
}

fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success,
        failure,
    }
}

fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(txn(success, failure))),
    }
}

fn cmp(key: &str) -> Compare {
    Compare {
        key: b(key),
        target: compare::CompareTarget::Mod as i32,
        target_union: Some(compare::TargetUnion::ModRevision(0)),
        ..Default::default()
    }
}

const MAX: usize = limits::MAX_TXN_OPS;

#[test]
fn range_checks() {
    assert_eq!(check_range(&range("a")), Ok(()));
    assert_eq!(check_range(&range("")), Err(EtcdError::EmptyKey));
    let mut r = range("a");
    r.sort_order = SortOrder::Descend as i32;
    r.sort_target = SortTarget::Value as i32;
    assert_eq!(check_range(&r), Ok(()));
    r.sort_order = 3;
    assert_eq!(check_range(&r), Err(EtcdError::InvalidSortOption));
    r.sort_order = 0;
    r.sort_target = 5;
    assert_eq!(check_range(&r), Err(EtcdError::InvalidSortOption));
    r.sort_target = -1;
    assert_eq!(check_range(&r), Err(EtcdError::InvalidSortOption));
}

#[test]
fn put_checks() {
    let ok = PutRequest {
        key: b("k"),
        value: b("v"),
        lease: 7,
        ..Default::default()
    };
    assert_eq!(check_put(&ok), Ok(()));
    let empty = PutRequest::default();
    assert_eq!(check_put(&empty), Err(EtcdError::EmptyKey));
    let iv = PutRequest {
        key: b("k"),
        value: b("v"),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(check_put(&iv), Err(EtcdError::ValueProvided));
    let iv_ok = PutRequest {
        key: b("k"),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(check_put(&iv_ok), Ok(()));
    let il = PutRequest {
        key: b("k"),
        lease: 1,
        ignore_lease: true,
        ..Default::default()
    };
    assert_eq!(check_put(&il), Err(EtcdError::LeaseProvided));
    let il_ok = PutRequest {
        key: b("k"),
        ignore_lease: true,
        ..Default::default()
    };
    assert_eq!(check_put(&il_ok), Ok(()));
}

#[test]
fn delete_and_compare_checks() {
    let d = DeleteRangeRequest {
        key: b("a"),
        range_end: b("b"),
        prev_kv: true,
    };
    assert_eq!(check_delete_range(&d), Ok(()));
    assert_eq!(
        check_delete_range(&DeleteRangeRequest::default()),
        Err(EtcdError::EmptyKey)
    );
    assert_eq!(check_compare(&cmp("a")), Ok(()));
    assert_eq!(check_compare(&cmp("")), Err(EtcdError::EmptyKey));
}

#[test]
fn txn_basic_and_empty_compare_key() {
    // The apiserver's create: compare MOD(key)==0, success put.
    let mut t = txn(vec![put("/registry/pods/a")], vec![get("/registry/pods/a")]);
    t.compare.push(cmp("/registry/pods/a"));
    assert_eq!(check_txn(&t, MAX), Ok(()));
    t.compare.push(cmp(""));
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::EmptyKey));
}

#[test]
fn txn_invalid_nested_ops() {
    let t = txn(vec![put("")], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::EmptyKey));
    let t = txn(vec![], vec![RequestOp { request: None }]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::KeyNotFound));
    let t = txn(vec![nested(vec![get("")], vec![])], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::EmptyKey));
}

#[test]
fn txn_too_many_ops() {
    let ops = |n: usize| (0..n).map(|i| put(&format!("k{i}"))).collect::<Vec<_>>();
    assert_eq!(check_txn(&txn(ops(MAX), vec![]), MAX), Ok(()));
    assert_eq!(
        check_txn(&txn(ops(MAX + 1), vec![]), MAX),
        Err(EtcdError::TooManyOps)
    );
    assert_eq!(
        check_txn(&txn(vec![], ops(MAX + 1)), MAX),
        Err(EtcdError::TooManyOps)
    );
    let mut t = txn(vec![], vec![]);
    t.compare = (0..=MAX).map(|i| cmp(&format!("k{i}"))).collect();
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::TooManyOps));
    // A nested txn only gets what the parent left over: 4 - 2 = 2.
    let t = txn(vec![put("a"), nested(ops(2), vec![])], vec![]);
    assert_eq!(check_txn(&t, 4), Ok(()));
    let t = txn(vec![put("a"), nested(ops(3), vec![])], vec![]);
    assert_eq!(check_txn(&t, 4), Err(EtcdError::TooManyOps));
}

#[test]
fn duplicate_puts() {
    let t = txn(vec![put("a"), put("a")], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    // Success and failure are separate lists: the same key in each is fine.
    let t = txn(vec![put("a")], vec![put("a")]);
    assert_eq!(check_txn(&t, MAX), Ok(()));
    // Reads never conflict.
    let t = txn(vec![put("a"), get("a"), get("a")], vec![]);
    assert_eq!(check_txn(&t, MAX), Ok(()));
}

#[test]
fn put_vs_delete_same_level() {
    assert_eq!(
        check_txn(&txn(vec![del("a", ""), put("a")], vec![]), MAX),
        Err(EtcdError::DuplicateKey)
    );
    assert_eq!(
        check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), MAX),
        Err(EtcdError::DuplicateKey)
    );
    // range_end is exclusive.
    assert_eq!(
        check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), MAX),
        Ok(())
    );
    // A point delete only covers its own key.
    assert_eq!(
        check_txn(&txn(vec![put("ab"), del("a", "")], vec![]), MAX),
        Ok(())
    );
    // Two deletes may overlap.
    assert_eq!(
        check_txn(&txn(vec![del("a", "z"), del("b", "")], vec![]), MAX),
        Ok(())
    );
    // etcd takes "\0" literally in this check, so it never overlaps a put.
    assert_eq!(
        check_txn(&txn(vec![put("b"), del("a", "\0")], vec![]), MAX),
        Ok(())
    );
}

#[test]
fn nested_txn_rules() {
    // Then/else of one nested txn are exclusive: same key allowed.
    let t = txn(vec![nested(vec![put("a")], vec![put("a")])], vec![]);
    assert_eq!(check_txn(&t, MAX), Ok(()));
    // Outer put vs nested put.
    let t = txn(vec![put("a"), nested(vec![put("a")], vec![])], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    let t = txn(vec![put("a"), nested(vec![], vec![put("a")])], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    // Two sibling nested txns putting the same key.
    let t = txn(
        vec![
            nested(vec![put("a")], vec![]),
            nested(vec![put("a")], vec![]),
        ],
        vec![],
    );
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    let t = txn(
        vec![
            nested(vec![put("a")], vec![]),
            nested(vec![], vec![put("a")]),
        ],
        vec![],
    );
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    // Outer delete range covers a nested put.
    let t = txn(vec![del("a", "c"), nested(vec![put("b")], vec![])], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    // A nested delete covers an outer put.
    let t = txn(vec![put("b"), nested(vec![], vec![del("a", "c")])], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    // Put and delete inside one nested branch conflict too.
    let t = txn(vec![nested(vec![put("b"), del("b", "")], vec![])], vec![]);
    assert_eq!(check_txn(&t, MAX), Err(EtcdError::DuplicateKey));
    // Disjoint keys across levels are fine; also at depth 3.
    let deep = nested(vec![nested(vec![put("x")], vec![put("y")])], vec![put("z")]);
    let t = txn(vec![put("a"), del("b", "c"), deep], vec![]);
    assert_eq!(check_txn(&t, MAX), Ok(()));
}

#[test]
fn size_and_lease_limits() {
    assert_eq!(
        check_request_size(limits::MAX_REQUEST_BYTES, limits::MAX_REQUEST_BYTES),
        Ok(())
    );
    assert_eq!(
        check_request_size(limits::MAX_REQUEST_BYTES + 1, limits::MAX_REQUEST_BYTES),
        Err(EtcdError::RequestTooLarge)
    );
    let ok = LeaseGrantRequest {
        ttl: limits::MAX_LEASE_TTL,
        id: 0,
    };
    assert_eq!(check_lease_grant(&ok), Ok(()));
    let big = LeaseGrantRequest {
        ttl: limits::MAX_LEASE_TTL + 1,
        id: 0,
    };
    assert_eq!(check_lease_grant(&big), Err(EtcdError::LeaseTtlTooLarge));
    assert_eq!(limits::MAX_RECV_MSG_SIZE, 1_572_864 + 524_288);
    assert_eq!(limits::QUOTA_BACKEND_BYTES, 2_147_483_648);
}
