//! A deliberately simple reference model of etcd's KV semantics.
//!
//! [`Model`] keeps every version of every key ever written (nothing is ever physically
//! removed: compaction only raises the floor below which reads fail) and answers requests by
//! naive scans. It is written from etcd's semantics (`server/etcdserver/txn`,
//! `server/storage/mvcc`), not from Shale's store, so that random operation sequences can be
//! checked against it response by response.
//!
//! Semantics modelled (etcd 3.5 applier):
//! * One revision counter, starting at 1. A write request that changes at least one key gets
//!   the next revision; all its changes share it (with increasing sub-revisions). A request
//!   that changes nothing (a delete of nothing, a txn whose branch only reads) consumes none.
//! * Headers carry only `revision`: the current revision for reads, `begin + 1` for a put,
//!   `begin + 1` for a delete or txn that changed something (else `begin`). Responses of ops
//!   inside a txn carry the revision the op saw; nested txn responses carry an empty header.
//! * Range: `range_end` empty = one key, `"\0"` = every key `>= key`, else `[key, range_end)`.
//!   `count` counts every key at that revision before filters and limit; min/max mod/create
//!   filters apply after fetching; without sort order and filters only the first `limit + 1`
//!   keys are fetched; a sort target other than KEY with order NONE then sorts those
//!   ascending; `more` when more than `limit` keys remain. Ties of a sort keep key order
//!   (etcd's sort is not stable, so ties are unspecified there).
//! * Revisions: a read above the current revision fails with `FutureRev`; below the compact
//!   revision (initially -1) with `Compacted`; exactly at the compact revision it works.
//! * Txn: compares (nested ones included) are evaluated on the state before the txn; then
//!   the taken branch is checked before anything is written — first every put (ignore_value /
//!   ignore_lease needs the key, a lease must exist), then every range (`revision` above the
//!   current one: `FutureRev`, below the compact revision: `Compacted`); then ops run in order
//!   and reads see the txn's earlier writes.
//! * Compact: `rev <= compact` → `Compacted`, `rev > current` → `FutureRev`.

mod requests;
mod txn;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use shale_api::etcdserverpb::ResponseHeader;
use shale_api::mvccpb::{event::EventType, Event, KeyValue};

/// One change to one key: a put (`kv = Some`) or a delete (`kv = None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChange {
    pub main: i64,
    pub sub: i64,
    pub key: Bytes,
    pub kv: Option<KeyValue>,
}

/// The reference model. See the module documentation.
#[derive(Debug, Clone)]
pub struct Model {
    rev: i64,
    compact: i64,
    /// Every change, in revision order.
    log: Vec<ModelChange>,
    /// Per key: indexes into `log` of its changes, in order.
    by_key: BTreeMap<Bytes, Vec<usize>>,
    leases: BTreeSet<i64>,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// An open write request: the revision it started at and how many changes it made.
struct Write {
    begin: i64,
    subs: i64,
}

impl Write {
    fn read_rev(&self) -> i64 {
        if self.subs > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn write_rev(&self) -> i64 {
        self.begin + 1
    }
}

/// The branch a txn takes, and the branches of the nested txns of that branch (in op order).
struct Path {
    ok: bool,
    nested: Vec<Path>,
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

/// Does `key` belong to the request range `start`/`end`?
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0u8] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl Model {
    pub fn new() -> Self {
        Self {
            rev: 1,
            compact: -1,
            log: Vec::new(),
            by_key: BTreeMap::new(),
            leases: BTreeSet::new(),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// The compact revision (-1 when never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact
    }

    /// Every change ever made, in revision order.
    pub fn log(&self) -> &[ModelChange] {
        &self.log
    }

    // ---- leases -------------------------------------------------------------------------

    pub fn grant(&mut self, id: i64) {
        self.leases.insert(id);
    }

    pub fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains(&id)
    }

    /// Revokes a lease: every live key attached to it is deleted by one write request (one
    /// revision, keys in key order). Returns the deleted key-values.
    pub fn revoke(&mut self, id: i64) -> Vec<KeyValue> {
        self.leases.remove(&id);
        let mut w = Write {
            begin: self.rev,
            subs: 0,
        };
        let attached: Vec<KeyValue> = self
            .live_at(w.read_rev())
            .into_iter()
            .filter(|kv| kv.lease == id)
            .collect();
        for kv in &attached {
            self.record(&mut w, kv.key.clone(), None);
        }
        self.finish(w);
        attached
    }

    // ---- state --------------------------------------------------------------------------

    /// The change of `key` visible at revision `at` (put or delete), if any.
    fn change_at(&self, key: &[u8], at: i64) -> Option<&ModelChange> {
        let idxs = self.by_key.get(key)?;
        idxs.iter()
            .rev()
            .map(|&i| &self.log[i])
            .find(|c| c.main <= at)
    }

    /// The live key-value of `key` at revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        self.change_at(key, at).and_then(|c| c.kv.clone())
    }

    /// Every live key-value at revision `at`, in key order.
    pub fn live_at(&self, at: i64) -> Vec<KeyValue> {
        self.by_key.keys().filter_map(|k| self.get(k, at)).collect()
    }

    /// Live key-values of a request range at revision `at`, in key order.
    fn in_range_at(&self, start: &[u8], end: &[u8], at: i64) -> Vec<KeyValue> {
        self.by_key
            .keys()
            .filter(|k| in_range(k, start, end))
            .filter_map(|k| self.get(k, at))
            .collect()
    }

    fn record(&mut self, w: &mut Write, key: Bytes, kv: Option<KeyValue>) {
        let i = self.log.len();
        self.log.push(ModelChange {
            main: w.write_rev(),
            sub: w.subs,
            key: key.clone(),
            kv,
        });
        self.by_key.entry(key).or_default().push(i);
        w.subs += 1;
    }

    fn finish(&mut self, w: Write) {
        if w.subs > 0 {
            self.rev = w.write_rev();
        }
    }

    /// Undoes every change of an unfinished write (a request that failed half-way; etcd would
    /// panic, the model simply refuses it).
    fn rollback(&mut self, w: Write) {
        let rev = w.write_rev();
        while self.log.last().is_some_and(|c| c.main == rev) {
            let c = self.log.pop().expect("non-empty");
            let idxs = self.by_key.get_mut(&c.key).expect("indexed");
            idxs.pop();
            if idxs.is_empty() {
                self.by_key.remove(&c.key);
            }
        }
    }

    // ---- watch --------------------------------------------------------------------------

    /// The watch events of revisions `from..=to` (in revision order, as a watcher of every
    /// key sees them). `prev_kv` is the key's state at `main - 1` (etcd's definition), taken
    /// from the full history: the caller must not expect it below the compact revision.
    pub fn events(&self, from: i64, to: i64) -> Vec<Event> {
        self.log
            .iter()
            .filter(|c| c.main >= from && c.main <= to)
            .map(|c| {
                let prev_kv = self.get(&c.key, c.main - 1);
                match &c.kv {
                    Some(kv) => Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv.clone()),
                        prev_kv,
                    },
                    None => Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue {
                            key: c.key.clone(),
                            mod_revision: c.main,
                            ..Default::default()
                        }),
                        prev_kv,
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_api::error::EtcdError;
    use shale_api::etcdserverpb::{
        request_op, response_op, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
    };

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(k: &str, v: &str) -> PutRequest {
        PutRequest {
            key: b(k),
            value: b(v),
            ..Default::default()
        }
    }

    #[test]
    fn revisions_versions_and_generations() {
        let mut m = Model::new();
        assert_eq!(m.revision(), 1);
        assert_eq!(m.put(&put("a", "1")).unwrap().header.unwrap().revision, 2);
        assert_eq!(m.put(&put("a", "2")).unwrap().header.unwrap().revision, 3);
        let kv = m.get(b"a", 3).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        let d = m
            .delete_range(&DeleteRangeRequest {
                key: b("a"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((d.deleted, d.header.unwrap().revision), (1, 4));
        let d = m
            .delete_range(&DeleteRangeRequest {
                key: b("a"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((d.deleted, d.header.unwrap().revision), (0, 4));
        m.put(&put("a", "3")).unwrap();
        let kv = m.get(b"a", 5).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
        assert_eq!(m.compact(6), Err(EtcdError::FutureRev));
        m.compact(4).unwrap();
        assert_eq!(m.compact(4), Err(EtcdError::Compacted));
        let at = |rev| {
            m.range(&RangeRequest {
                key: b("a"),
                revision: rev,
                ..Default::default()
            })
        };
        assert_eq!(at(3), Err(EtcdError::Compacted));
        assert_eq!(at(4).unwrap().count, 0);
        assert_eq!(at(5).unwrap().count, 1);
        assert_eq!(at(6), Err(EtcdError::FutureRev));
    }

    #[test]
    fn txn_reads_its_own_writes_and_checks_before_writing() {
        let mut m = Model::new();
        m.put(&put("a", "1")).unwrap();
        let op = |r| shale_api::etcdserverpb::RequestOp { request: Some(r) };
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                op(request_op::Request::RequestPut(put("b", "x"))),
                op(request_op::Request::RequestRange(RangeRequest {
                    key: b("b"),
                    ..Default::default()
                })),
            ],
            failure: vec![],
        };
        let r = m.txn(&t).unwrap();
        assert_eq!(r.header.unwrap().revision, 3);
        match &r.responses[1].response {
            Some(response_op::Response::ResponseRange(rr)) => {
                assert_eq!(rr.kvs.len(), 1);
                assert_eq!(rr.header.as_ref().unwrap().revision, 3);
            }
            other => panic!("{other:?}"),
        }
        let bad = TxnRequest {
            compare: vec![],
            success: vec![
                op(request_op::Request::RequestPut(put("c", "x"))),
                op(request_op::Request::RequestPut(PutRequest {
                    key: b("d"),
                    lease: 7,
                    ..Default::default()
                })),
            ],
            failure: vec![],
        };
        assert_eq!(m.txn(&bad), Err(EtcdError::LeaseNotFound));
        assert_eq!(m.revision(), 3);
        assert!(m.get(b"c", 3).is_none());
    }
}
