//! The wire Range against [`kv::range`]: the same answer, byte for byte, for every option
//! combination, plus the size limit.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use shale_api::etcdserverpb::{range_request, DeleteRangeRequest, PutRequest, RangeRequest};
use shale_storage::{Engine, MemoryEngine};

use super::{range, WireRange};
use crate::kv;
use crate::store::MvccStore;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A store with history: several versions, leases, a deleted and a recreated key, values of
/// several sizes (empty included). Returns it with its revision.
fn store() -> MvccStore {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let s = MvccStore::open(engine).expect("open");
    let put = |k: &str, v: Vec<u8>, lease: i64| {
        let mut batch = s.begin();
        {
            let mut w = batch.write();
            let p = PutRequest {
                key: b(k),
                value: v.into(),
                lease,
                ..Default::default()
            };
            kv::put(&mut w, &p, &|_| true, false).expect("put");
        }
        batch.commit().expect("commit");
    };
    for i in 0..6 {
        put(&format!("/p/{i}"), vec![b'a' + i as u8; 40 * i], 0);
    }
    put("/p/1", b"second".to_vec(), 7);
    put("/p/3", Vec::new(), 0);
    put("/q", vec![1; 300], 0x7fff_0000_0000);
    {
        let mut batch = s.begin();
        {
            let mut w = batch.write();
            let d = DeleteRangeRequest {
                key: b("/p/2"),
                ..Default::default()
            };
            kv::delete_range(&mut w, &d).expect("delete");
        }
        batch.commit().expect("commit");
    }
    put("/p/4", b"again".to_vec(), 0);
    put("/p/2", b"back".to_vec(), 9);
    s
}

/// Every combination of key range, limit, revision, sort, filter, keys_only and count_only.
fn requests(rev: i64) -> Vec<RangeRequest> {
    use range_request::{SortOrder, SortTarget};
    let ranges: [(&str, &str); 6] = [
        ("/p/1", ""),
        ("/p/2", ""),
        ("/nope", ""),
        ("/p/", "/p0"),
        ("\0", "\0"),
        ("/p/3", "\0"),
    ];
    let sorts = [
        (SortOrder::None, SortTarget::Key),
        (SortOrder::Ascend, SortTarget::Key),
        (SortOrder::Descend, SortTarget::Key),
        (SortOrder::None, SortTarget::Value),
        (SortOrder::Descend, SortTarget::Mod),
        (SortOrder::Ascend, SortTarget::Version),
    ];
    let filters = [(0, 0, 0, 0), (3, 0, 0, 0), (0, 8, 0, 0), (0, 0, 2, 5)];
    let mut out = Vec::new();
    for (key, end) in ranges {
        for limit in [0, 1, 2, 100] {
            for revision in [0, 4, rev] {
                for (order, target) in sorts {
                    for (min_mod, max_mod, min_create, max_create) in filters {
                        for keys_only in [false, true] {
                            for count_only in [false, true] {
                                out.push(RangeRequest {
                                    key: b(key),
                                    range_end: b(end),
                                    limit,
                                    revision,
                                    sort_order: order as i32,
                                    sort_target: target as i32,
                                    serializable: false,
                                    keys_only,
                                    count_only,
                                    min_mod_revision: min_mod,
                                    max_mod_revision: max_mod,
                                    min_create_revision: min_create,
                                    max_create_revision: max_create,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn byte_identical_to_the_decoded_range_for_every_option() {
    let s = store();
    let rev = s.current_revision();
    let mut plain = 0;
    for r in requests(rev) {
        let want = kv::range(&s, &r).expect("kv::range");
        let got = match range(&s, &r, usize::MAX).expect("wire range") {
            WireRange::Ready(resp) => resp,
            other => panic!("no limit, yet {other:?}"),
        };
        assert_eq!(got.encode_to_vec(), want.encode_to_vec(), "{r:?}");
        assert_eq!(got.to_response().expect("decode"), want, "{r:?}");
        plain += usize::from(super::is_plain(&r) && !want.kvs.is_empty());
    }
    assert!(plain > 100, "the raw path ran only {plain} times");
}

#[test]
fn errors_match_the_decoded_range() {
    let s = store();
    let future = RangeRequest {
        key: b("/p/1"),
        revision: s.current_revision() + 1,
        ..Default::default()
    };
    let want = kv::range(&s, &future).expect_err("future").to_string();
    let got = range(&s, &future, usize::MAX).expect_err("future");
    assert_eq!(got.to_string(), want);
    {
        let mut batch = s.begin();
        batch.compact(5).expect("compact");
        batch.commit().expect("commit");
    }
    s.wait_compaction();
    let old = RangeRequest {
        key: b("/p/1"),
        revision: 4,
        ..Default::default()
    };
    let want = kv::range(&s, &old).expect_err("compacted").to_string();
    assert_eq!(
        range(&s, &old, usize::MAX)
            .expect_err("compacted")
            .to_string(),
        want
    );
}

#[test]
fn a_response_over_the_limit_reports_its_full_size_and_keeps_nothing() {
    let s = store();
    for sort in [0, 2] {
        let all = RangeRequest {
            key: b("\0"),
            range_end: b("\0"),
            sort_order: sort,
            ..Default::default()
        };
        let full = kv::range(&s, &all).expect("range");
        let len = full.encoded_len();
        // Exactly at the limit: sent.
        let mut bare = full.clone();
        bare.kvs.clear();
        let kvs_len = len - bare.encoded_len();
        match range(&s, &all, kvs_len).expect("at the limit") {
            WireRange::Ready(resp) => assert_eq!(resp.encode_to_vec(), full.encode_to_vec()),
            other => panic!("at the limit, yet {other:?}"),
        }
        // One byte less: too large, with the size of the whole response.
        match range(&s, &all, kvs_len - 1).expect("over the limit") {
            got @ WireRange::TooLarge { .. } => {
                assert_eq!(got.encoded_len(), len);
                let WireRange::TooLarge { resp, .. } = got else {
                    unreachable!()
                };
                assert!(resp.kvs.is_empty());
                assert_eq!(resp.count, full.count);
            }
            other => panic!("over the limit, yet {other:?}"),
        }
    }
}

/// A keys-only record is rebuilt from the index only for a key's newest change: a put staged
/// by the applier but not yet published (index entry above the read revision, lease already
/// replaced in the index) must not leak its lease into a read.
#[test]
fn keys_only_ignores_an_unpublished_put() {
    let s = store();
    let all = RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        keys_only: true,
        ..Default::default()
    };
    let before = kv::range(&s, &all).expect("range");
    let mut batch = s.begin();
    {
        let mut w = batch.write();
        for (k, lease) in [("/p/1", 0), ("/p/4", 11), ("/q", 0)] {
            let p = PutRequest {
                key: b(k),
                value: b("staged"),
                lease,
                ..Default::default()
            };
            kv::put(&mut w, &p, &|_| true, false).expect("put");
        }
    }
    let WireRange::Ready(during) = range(&s, &all, usize::MAX).expect("range") else {
        panic!("no limit")
    };
    assert_eq!(during.encode_to_vec(), before.encode_to_vec());
    batch.commit().expect("commit");
    let after = kv::range(&s, &all).expect("range");
    let WireRange::Ready(got) = range(&s, &all, usize::MAX).expect("range") else {
        panic!("no limit")
    };
    assert_eq!(got.encode_to_vec(), after.encode_to_vec());
    assert_ne!(after, before);
}

/// Pages cover the range exactly once, in order, whatever the page size and byte budget.
#[test]
fn pages_cover_the_range() {
    let s = store();
    let rev = s.current_revision();
    for keys_only in [false, true] {
        for at in [4, rev] {
            let all = RangeRequest {
                key: b("\0"),
                range_end: b("\0"),
                revision: at,
                keys_only,
                ..Default::default()
            };
            let want = kv::range(&s, &all).expect("range").kvs;
            for (max_kvs, max_bytes) in [(1, usize::MAX), (2, usize::MAX), (100, 1), (3, 90)] {
                let mut got = Vec::new();
                let mut key = b("\0");
                loop {
                    let r = crate::KeyRange::new(key.clone(), b("\0"));
                    let (kvs, more) =
                        super::page(&s, &r, at, keys_only, max_kvs, max_bytes).expect("page");
                    assert!(!kvs.is_empty() || !more);
                    assert!(kvs.len() <= max_kvs);
                    for kv in &kvs {
                        got.push(kv.decode().expect("decode"));
                    }
                    if !more {
                        break;
                    }
                    let mut next = got.last().expect("a key").key.to_vec();
                    next.push(0);
                    key = next.into();
                }
                assert_eq!(got, want, "{max_kvs} {max_bytes} at {at}");
            }
        }
    }
}
