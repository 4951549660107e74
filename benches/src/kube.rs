//! The requests kube-apiserver sends to etcd (DESIGN.md section 2.1), and the client-side
//! table of objects the scenarios write.
//!
//! Writes are the apiserver's Txn shapes:
//! * create: `compare mod_revision(key) == 0`, success `put`, failure `range(key)`;
//! * guarded update: `compare mod_revision(key) == R`, success `put`, failure `range(key)`;
//! * delete: `compare mod_revision(key) == R`, success `delete_range(key)`, failure `range(key)`.
//!
//! Lists are prefix Ranges with a limit, the first page at revision 0 and every later page
//! pinned to the first page's header revision, continuing from `last key + "\0"`.
//!
//! [`Slots`] is the harness's view of which objects exist and at which `mod_revision`. A
//! writer claims a slot (atomically marking it busy), sends its Txn with the slot's revision
//! and releases the slot with the revision the server answered, so two writers never race on
//! one key and every guarded update carries the current revision (no conflicts by
//! construction; a conflict the server reports anyway is counted, and the slot takes the
//! revision the failure branch returned).

use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use rand::Rng;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Status;

/// A slot some writer is working on.
const BUSY: i64 = -1;

/// mod_revision per object slot (0 = absent, -1 = claimed by a writer).
#[derive(Debug)]
pub struct Slots {
    revs: Vec<AtomicI64>,
}

impl Slots {
    pub fn new(n: usize) -> Self {
        Self {
            revs: (0..n).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.revs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Record `rev` for an unclaimed slot (preload).
    pub fn set(&self, i: usize, rev: i64) {
        self.revs[i].store(rev, Ordering::Release);
    }

    pub fn get(&self, i: usize) -> i64 {
        self.revs[i].load(Ordering::Acquire)
    }

    /// Claim a random slot that is present (`Some(true)`), absent (`Some(false)`) or either
    /// (`None`); returns `(slot, mod_revision)`. Gives up after 256 tries.
    pub fn claim(&self, rng: &mut impl Rng, present: Option<bool>) -> Option<(usize, i64)> {
        if self.revs.is_empty() {
            return None;
        }
        for _ in 0..256 {
            let i = rng.random_range(0..self.revs.len());
            let cur = self.revs[i].load(Ordering::Acquire);
            if cur == BUSY || present.is_some_and(|p| p != (cur > 0)) {
                continue;
            }
            if self.revs[i]
                .compare_exchange(cur, BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some((i, cur));
            }
        }
        None
    }

    /// Give a claimed slot back with its new mod_revision (0 = now absent).
    pub fn release(&self, i: usize, rev: i64) {
        self.revs[i].store(rev, Ordering::Release);
    }

    pub fn present(&self) -> usize {
        self.revs
            .iter()
            .filter(|r| r.load(Ordering::Relaxed) != 0)
            .count()
    }
}

fn mod_equals(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: key.clone(),
        target_union: Some(compare::TargetUnion::ModRevision(rev)),
        range_end: Bytes::new(),
    }
}

fn get_op(key: &Bytes) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    }
}

/// Create or guarded update (`rev` = 0 for a create), optionally attached to `lease`.
pub fn put_txn(key: Bytes, value: Bytes, rev: i64, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![mod_equals(&key, rev)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.clone(),
                value,
                lease,
                ..Default::default()
            })),
        }],
        failure: vec![get_op(&key)],
    }
}

/// Guarded delete of `key` at `rev`.
pub fn delete_txn(key: Bytes, rev: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![mod_equals(&key, rev)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                },
            )),
        }],
        failure: vec![get_op(&key)],
    }
}

/// What a write Txn did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The compare held; the write got this revision.
    Done(i64),
    /// The compare failed; the key's current mod_revision (0 = absent).
    Conflict(i64),
}

/// Send a write Txn built by [`put_txn`] / [`delete_txn`].
pub async fn write(kv: &mut KvClient<Channel>, txn: TxnRequest) -> Result<WriteOutcome, Status> {
    let r = kv.txn(txn).await?.into_inner();
    let rev = r.header.map(|h| h.revision).unwrap_or(0);
    if r.succeeded {
        return Ok(WriteOutcome::Done(rev));
    }
    let cur = r
        .responses
        .into_iter()
        .find_map(|op| match op.response {
            Some(response_op::Response::ResponseRange(rr)) => {
                Some(rr.kvs.first().map(|kv| kv.mod_revision).unwrap_or(0))
            }
            _ => None,
        })
        .unwrap_or(0);
    Ok(WriteOutcome::Conflict(cur))
}

/// `prefix` → the end of its range (last byte + 1).
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// How a LIST is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Pages of `limit` keys (0 = one unpaged Range).
    Paged {
        limit: i64,
    },
    KeysOnly,
    CountOnly,
    /// Server-streaming `KV/RangeStream` (etcd 3.7; etcd 3.5 answers Unimplemented).
    Stream,
}

impl ListKind {
    pub fn label(self) -> String {
        match self {
            ListKind::Paged { limit: 0 } => "unpaged".into(),
            ListKind::Paged { limit } => format!("paged-{limit}"),
            ListKind::KeysOnly => "keys-only".into(),
            ListKind::CountOnly => "count-only".into(),
            ListKind::Stream => "range-stream".into(),
        }
    }
}

/// What one complete LIST returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    pub objects: u64,
    pub bytes: u64,
    pub pages: u64,
    pub revision: i64,
}

/// One complete LIST of `prefix` (all pages).
pub async fn list(
    kv: &mut KvClient<Channel>,
    prefix: &[u8],
    kind: ListKind,
) -> Result<ListResult, Status> {
    let end = prefix_end(prefix);
    let mut req = RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: end,
        ..Default::default()
    };
    let mut out = ListResult::default();
    match kind {
        ListKind::CountOnly | ListKind::KeysOnly => {
            req.count_only = kind == ListKind::CountOnly;
            req.keys_only = kind == ListKind::KeysOnly;
            let r = kv.range(req).await?.into_inner();
            out.pages = 1;
            out.revision = r.header.map(|h| h.revision).unwrap_or(0);
            out.objects = if kind == ListKind::CountOnly {
                r.count as u64
            } else {
                r.kvs.len() as u64
            };
            out.bytes = r.kvs.iter().map(|kv| kv.key.len() as u64).sum();
        }
        ListKind::Stream => {
            let mut s = kv.range_stream(req).await?.into_inner();
            while let Some(chunk) = s.next().await {
                let chunk = chunk?;
                if let Some(r) = chunk.range_response {
                    out.pages += 1;
                    out.objects += r.kvs.len() as u64;
                    out.bytes += r.kvs.iter().map(|kv| kv.value.len() as u64).sum::<u64>();
                    if let Some(h) = r.header {
                        out.revision = out.revision.max(h.revision);
                    }
                }
            }
        }
        ListKind::Paged { limit } => {
            req.limit = limit;
            loop {
                let r = kv.range(req.clone()).await?.into_inner();
                out.pages += 1;
                if out.revision == 0 {
                    out.revision = r.header.map(|h| h.revision).unwrap_or(0);
                    req.revision = out.revision;
                }
                out.objects += r.kvs.len() as u64;
                out.bytes += r.kvs.iter().map(|kv| kv.value.len() as u64).sum::<u64>();
                match (r.more, r.kvs.last()) {
                    (true, Some(last)) => {
                        let mut next = last.key.to_vec();
                        next.push(0);
                        req.key = Bytes::from(next);
                    }
                    _ => break,
                }
            }
        }
    }
    Ok(out)
}

/// The current revision (a limit-1 Range on `key`, like the apiserver's resourceVersion probe).
pub async fn current_revision(kv: &mut KvClient<Channel>, key: &[u8]) -> Result<i64, Status> {
    let r = kv
        .range(RangeRequest {
            key: Bytes::copy_from_slice(key),
            limit: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.header.map(|h| h.revision).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(&prefix_end(b"/registry/pods/")[..], b"/registry/pods0");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff")[..], b"\0");
    }

    #[test]
    fn slots_claim_release() {
        let s = Slots::new(4);
        let mut rng = rand::rng();
        assert!(s.claim(&mut rng, Some(true)).is_none());
        s.set(2, 10);
        let (i, r) = s.claim(&mut rng, Some(true)).unwrap();
        assert_eq!((i, r), (2, 10));
        assert!(s.claim(&mut rng, Some(true)).is_none(), "busy slot");
        s.release(2, 11);
        assert_eq!(s.get(2), 11);
        let (i, r) = s.claim(&mut rng, Some(false)).unwrap();
        assert_ne!(i, 2);
        assert_eq!(r, 0);
        s.release(i, 0);
        assert_eq!(s.present(), 1);
    }

    #[test]
    fn txn_shapes() {
        let t = put_txn(Bytes::from_static(b"/k"), Bytes::from_static(b"v"), 0, 7);
        assert_eq!(t.compare.len(), 1);
        assert_eq!(
            t.compare[0].target_union,
            Some(compare::TargetUnion::ModRevision(0))
        );
        assert!(matches!(
            &t.success[0].request,
            Some(request_op::Request::RequestPut(p)) if p.lease == 7
        ));
        assert!(matches!(
            &t.failure[0].request,
            Some(request_op::Request::RequestRange(_))
        ));
        let d = delete_txn(Bytes::from_static(b"/k"), 5);
        assert!(matches!(
            &d.success[0].request,
            Some(request_op::Request::RequestDeleteRange(_))
        ));
    }
}
