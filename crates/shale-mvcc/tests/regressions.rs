//! Focused tests for bugs the model check and the watch tests found in shale-mvcc.

use std::sync::Arc;

use bytes::Bytes;
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use shale_mvcc::hash::hash_kv;
use shale_mvcc::{kv, ApplyBatch, Committed, Error, KeyRange, MvccStore};
use shale_storage::{Engine, MemoryEngine};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn store() -> MvccStore {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    MvccStore::open(engine).expect("open")
}

/// Stages a put of `k` (with `lease`, 0 = none) in `batch`, not yet committed.
fn stage_put(batch: &mut ApplyBatch<'_>, k: &str, v: &str, lease: i64) {
    let mut w = batch.write();
    let p = PutRequest {
        key: b(k),
        value: b(v),
        lease,
        ..Default::default()
    };
    kv::put(&mut w, &p, &|_| true, false).expect("put");
}

/// One committed batch holding one put.
fn put_leased(store: &MvccStore, k: &str, v: &str, lease: i64) -> Committed {
    let mut batch = store.begin();
    stage_put(&mut batch, k, v, lease);
    batch.commit().expect("commit")
}

fn put(store: &MvccStore, k: &str, v: &str) -> i64 {
    put_leased(store, k, v, 0).rev
}

fn etcd_err<T: std::fmt::Debug>(r: shale_mvcc::Result<T>) -> EtcdError {
    match r {
        Err(Error::Etcd(e)) => e,
        other => panic!("expected an etcd error, got {other:?}"),
    }
}

/// etcd applies entries one by one: a Compact applied before a Range in the same apply batch
/// must make that Range (and a Txn's Range) fail with `compacted`, whatever the batching.
#[test]
fn compaction_earlier_in_a_batch_applies_to_later_requests() {
    let s = store();
    for i in 0..5 {
        put(&s, "a", &i.to_string());
    }
    assert_eq!(s.current_revision(), 6);
    let mut batch = s.begin();
    batch.compact(5).expect("compact");
    assert_eq!(
        batch.compact_revision(),
        5,
        "the batch reports its own pending compaction"
    );
    let r = RangeRequest {
        key: b("a"),
        revision: 3,
        ..Default::default()
    };
    {
        let w = batch.write();
        assert_eq!(etcd_err(kv::range(&w, &r)), EtcdError::Compacted);
    }
    assert_eq!(
        etcd_err(batch.range(
            &KeyRange::Single(b("a")),
            shale_mvcc::RangeOptions {
                rev: 3,
                ..Default::default()
            }
        )),
        EtcdError::Compacted
    );
    let t = TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(r.clone())),
        }],
        failure: vec![],
    };
    {
        let first = batch.compact_revision();
        let mut w = batch.write();
        assert_eq!(
            etcd_err(kv::txn(&mut w, &t, &|_| true, first)),
            EtcdError::Compacted
        );
    }
    // A read at exactly the compact revision still works.
    {
        let w = batch.write();
        let ok = RangeRequest {
            key: b("a"),
            revision: 5,
            ..Default::default()
        };
        assert_eq!(
            kv::range(&w, &ok).expect("read at compact rev").kvs[0].value,
            b("3")
        );
    }
    batch.commit().expect("commit");
    assert_eq!(etcd_err(kv::range(&s, &r)), EtcdError::Compacted);
}

/// HashKV skips what a compaction deletes, so it must not change when the physical compaction
/// finishes, even when the compaction keeps nothing at all.
#[test]
fn hash_is_stable_when_compaction_keeps_nothing() {
    let s = store();
    put(&s, "a", "1");
    {
        let mut batch = s.begin();
        {
            let mut w = batch.write();
            w.delete_range(&KeyRange::Single(b("a"))).expect("delete");
        }
        batch.commit().expect("commit");
    }
    put(&s, "b", "1");
    {
        let mut batch = s.begin();
        batch.compact(3).expect("compact");
        batch.commit().expect("commit");
    }
    // Everything at or below 3 is dead (a was deleted at 3): nothing is kept.
    let before = hash_kv(&s, 0).expect("hash");
    s.wait_compaction();
    let after = hash_kv(&s, 0).expect("hash");
    assert_eq!(before, after);
}

/// A txn whose delete (range_end "\0", which the duplicate-key validation does not treat as
/// unbounded, like etcd's) removes the key of a later `ignore_value` put in the same txn: the
/// put cannot run (etcd panics here). The txn must fail as a whole, changing nothing.
#[test]
fn txn_failing_half_way_changes_nothing() {
    use shale_api::etcdserverpb::DeleteRangeRequest;
    let s = store();
    put(&s, "a", "1");
    put(&s, "b", "2");
    let op = |r| RequestOp { request: Some(r) };
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b("a"),
                    range_end: b("\0"),
                    prev_kv: false,
                },
            )),
            op(request_op::Request::RequestPut(PutRequest {
                key: b("b"),
                ignore_value: true,
                ..Default::default()
            })),
        ],
        failure: vec![],
    };
    assert!(
        shale_api::validate::check_txn(&t, 128).is_ok(),
        "the gRPC layer lets it through"
    );
    let rev = s.current_revision();
    let mut batch = s.begin();
    {
        let first = batch.compact_revision();
        let mut w = batch.write();
        assert_eq!(
            etcd_err(kv::txn(&mut w, &t, &|_| true, first)),
            EtcdError::KeyNotFound
        );
    }
    let committed = batch.commit().expect("commit");
    assert!(
        committed.changes.is_empty(),
        "no change may be published: {:?}",
        committed.changes
    );
    assert_eq!(s.current_revision(), rev);
    let all = RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        ..Default::default()
    };
    assert_eq!(kv::range(&s, &all).expect("range").kvs.len(), 2);
    // A plain put after the delete is fine: the key is recreated.
    let t2 = TxnRequest {
        compare: vec![],
        success: vec![
            op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b("a"),
                    range_end: b("\0"),
                    prev_kv: false,
                },
            )),
            op(request_op::Request::RequestPut(PutRequest {
                key: b("b"),
                value: b("3"),
                ..Default::default()
            })),
        ],
        failure: vec![],
    };
    let mut batch = s.begin();
    {
        let first = batch.compact_revision();
        let mut w = batch.write();
        kv::txn(&mut w, &t2, &|_| true, first).expect("txn");
    }
    batch.commit().expect("commit");
    let kvs = kv::range(&s, &all).expect("range").kvs;
    assert_eq!(kvs.len(), 1);
    assert_eq!((kvs[0].value.clone(), kvs[0].version), (b("3"), 1));
}

/// A put does not read the previous value; its change still names the previous state
/// (revision and lease), fetchable afterwards, and a batch that compacts reads it before
/// the compaction can delete it.
#[test]
fn puts_leave_the_previous_state_to_be_read_on_demand() {
    let s = store();
    let first = put_leased(&s, "k", "v1", 7);
    assert_eq!(first.changes[0].prev_rev, None);
    assert_eq!(first.changes[0].prev_lease, 0);

    let second = put_leased(&s, "k", "v2", 0);
    let ch = &second.changes[0];
    assert_eq!(ch.prev, None, "not read by the put");
    assert_eq!(ch.prev_lease, 7);
    assert_eq!((ch.kv.create_revision, ch.kv.version), (2, 2));
    let prev = ch.prev_kv(&s).expect("read").expect("previous state");
    assert_eq!((prev.value, prev.lease, prev.mod_revision), (b("v1"), 7, 2));

    // Third value and a compaction above it in one batch: the change's previous state
    // (revision 3) is deleted by that compaction, so commit reads it first.
    let mut batch = s.begin();
    stage_put(&mut batch, "k", "v3", 0);
    batch.compact(4).expect("compact");
    let third = batch.commit().expect("commit");
    s.wait_compaction();
    let prev = third.changes[0].prev.clone().expect("read at commit");
    assert_eq!(prev.value, b("v2"));
    assert_eq!(
        s.get_at_revision(third.changes[0].prev_rev.expect("rev"))
            .expect("get"),
        None
    );

    // A delete reports the lease it detaches.
    put_leased(&s, "k", "v4", 9);
    let mut batch = s.begin();
    {
        let mut w = batch.write();
        w.delete_range(&KeyRange::Single(b("k"))).expect("delete");
    }
    let del = batch.commit().expect("commit");
    assert_eq!(del.changes[0].prev_lease, 9);
    assert_eq!(
        del.changes[0].prev.as_ref().map(|p| p.value.clone()),
        Some(b("v4"))
    );
}

/// The lease of a key's latest put survives a restart (the index is rebuilt from history).
#[test]
fn the_previous_lease_is_known_after_reopening() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    {
        let s = MvccStore::open(engine.clone()).expect("open");
        put_leased(&s, "k", "v", 5);
    }
    let s = MvccStore::open(engine).expect("reopen");
    let c = put_leased(&s, "k", "v2", 0);
    assert_eq!(c.changes[0].prev_lease, 5);
}
