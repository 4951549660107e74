//! etcd's KV request semantics over the MVCC store: Range, Put, DeleteRange, Txn.
//!
//! Everything here is deterministic and answers exactly as etcd 3.5's applier does:
//! * Range fetches `limit + 1` keys to compute `more`, unless a sort or a min/max filter is
//!   set, in which case it fetches everything, filters, sorts, then truncates. `count` is the
//!   number of keys in the range at that revision, before filters and limit.
//! * A Txn evaluates every compare (nested txns' too) against the state before it writes,
//!   then checks the chosen branch (leases exist, `ignore_*` keys exist, range revisions are
//!   valid) and only then executes it; so a Txn either fully applies or changes nothing.
//! * Reads inside a Txn see the Txn's earlier writes. A write request that changes nothing
//!   does not consume a revision.

use bytes::Bytes;
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
};
use shale_api::mvccpb::KeyValue;

use crate::error::Result;
use crate::key_range::KeyRange;
use crate::store::{MvccStore, RangeOptions, RangeResult, WriteTxn};

/// Something a read can run against: the committed store or an in-progress write.
pub trait ReadView {
    fn read(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult>;
    /// Revision the view reads at.
    fn rev(&self) -> i64;
    /// Compaction revision.
    fn first_rev(&self) -> i64;
}

impl ReadView for MvccStore {
    fn read(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        self.range(range, opts)
    }
    fn rev(&self) -> i64 {
        self.current_revision()
    }
    fn first_rev(&self) -> i64 {
        self.compact_revision()
    }
}

/// A view pinned at one revision (for read-only txns, so all their reads agree).
pub struct PinnedView<'a> {
    pub store: &'a MvccStore,
    pub rev: i64,
}

impl ReadView for PinnedView<'_> {
    fn read(&self, range: &KeyRange, mut opts: RangeOptions) -> Result<RangeResult> {
        if opts.rev <= 0 {
            opts.rev = self.rev;
        }
        let mut r = self.store.range(range, opts)?;
        r.rev = self.rev;
        Ok(r)
    }
    fn rev(&self) -> i64 {
        self.rev
    }
    fn first_rev(&self) -> i64 {
        self.store.compact_revision()
    }
}

impl ReadView for WriteTxn<'_, '_> {
    fn read(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        self.range(range, opts)
    }
    fn rev(&self) -> i64 {
        self.read_rev()
    }
    fn first_rev(&self) -> i64 {
        0
    }
}

/// Does a put/lease check need the lessor: answers whether a lease exists.
pub trait Leases {
    fn exists(&self, id: i64) -> bool;
}

impl<F: Fn(i64) -> bool> Leases for F {
    fn exists(&self, id: i64) -> bool {
        self(id)
    }
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

fn key_range(key: &Bytes, end: &Bytes) -> KeyRange {
    KeyRange::new(key.clone(), end.clone())
}

/// Executes a Range request. The header carries only the revision.
pub fn range(view: &impl ReadView, r: &RangeRequest) -> Result<RangeResponse> {
    use range_request::{SortOrder, SortTarget};
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let mut limit = if r.limit > 0 { r.limit as usize } else { 0 };
    if r.sort_order != SortOrder::None as i32 || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit += 1;
    }
    let opts = RangeOptions {
        limit,
        rev: r.revision,
        count_only: r.count_only,
    };
    let rr = view.read(&key_range(&r.key, &r.range_end), opts)?;
    let mut kvs = rr.kvs;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    let mut order = r.sort_order;
    if r.sort_target != SortTarget::Key as i32 && order == SortOrder::None as i32 {
        order = SortOrder::Ascend as i32;
    }
    if order != SortOrder::None as i32 {
        let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
        let cmp = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend as i32 {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    Ok(RangeResponse {
        header: header(rr.rev),
        kvs,
        more,
        count: rr.count as i64,
    })
}

/// Executes a Put. `in_txn` skips the lease check (a Txn checks its branch beforehand).
pub fn put(
    w: &mut WriteTxn<'_, '_>,
    p: &PutRequest,
    leases: &dyn Leases,
    in_txn: bool,
) -> Result<PutResponse> {
    if !in_txn && p.lease != 0 && !leases.exists(p.lease) {
        return Err(EtcdError::LeaseNotFound.into());
    }
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv {
        w.get(&p.key)?
    } else {
        None
    };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(EtcdError::KeyNotFound.into());
    }
    let value = match (&prev, p.ignore_value) {
        (Some(kv), true) => kv.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(kv), true) => kv.lease,
        _ => p.lease,
    };
    let needs_prev = p.ignore_value || p.ignore_lease || p.prev_kv;
    if needs_prev {
        w.put_after_get(p.key.clone(), value, lease, prev.clone())?;
    } else {
        w.put(p.key.clone(), value, lease)?;
    }
    Ok(PutResponse {
        header: header(w.read_rev()),
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

/// Executes a DeleteRange.
pub fn delete_range(
    w: &mut WriteTxn<'_, '_>,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse> {
    let deleted = w.delete_range(&key_range(&d.key, &d.range_end))?;
    Ok(DeleteRangeResponse {
        header: header(w.read_rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
    })
}

/// True when the txn (with every nested txn) contains no write.
pub fn is_txn_readonly(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(n)) => is_txn_readonly(n),
            Some(_) => false,
        })
}

/// Evaluates one compare against `view`.
pub fn compare(view: &impl ReadView, c: &Compare) -> Result<bool> {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let rr = match view.read(&key_range(&c.key, &c.range_end), RangeOptions::default()) {
        Ok(rr) => rr,
        Err(e) if e.is_deterministic() => return Ok(false),
        Err(e) => return Err(e),
    };
    let empty = KeyValue::default();
    let kvs: Vec<&KeyValue> = if rr.kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        vec![&empty]
    } else {
        rr.kvs.iter().collect()
    };
    for kv in kvs {
        let ord = match (CompareTarget::try_from(c.target), &c.target_union) {
            (Ok(CompareTarget::Value), u) => {
                let v: &[u8] = match u {
                    Some(TargetUnion::Value(v)) => v,
                    _ => &[],
                };
                kv.value.as_ref().cmp(v)
            }
            (Ok(t), u) => {
                let want = match (t, u) {
                    (CompareTarget::Version, Some(TargetUnion::Version(v)))
                    | (CompareTarget::Create, Some(TargetUnion::CreateRevision(v)))
                    | (CompareTarget::Mod, Some(TargetUnion::ModRevision(v)))
                    | (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => *v,
                    _ => 0,
                };
                let have = match t {
                    CompareTarget::Version => kv.version,
                    CompareTarget::Create => kv.create_revision,
                    CompareTarget::Mod => kv.mod_revision,
                    CompareTarget::Lease => kv.lease,
                    CompareTarget::Value => unreachable!("handled above"),
                };
                have.cmp(&want)
            }
            (Err(_), _) => std::cmp::Ordering::Equal,
        };
        let ok = match CompareResult::try_from(c.result) {
            Ok(CompareResult::Equal) => ord.is_eq(),
            Ok(CompareResult::NotEqual) => ord.is_ne(),
            Ok(CompareResult::Greater) => ord.is_gt(),
            Ok(CompareResult::Less) => ord.is_lt(),
            Err(_) => true,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The branch taken by a txn and each nested txn on the taken path, in pre-order.
pub fn txn_path(view: &impl ReadView, t: &TxnRequest) -> Result<Vec<bool>> {
    let mut path = Vec::new();
    walk_path(view, t, &mut path)?;
    Ok(path)
}

fn walk_path(view: &impl ReadView, t: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let mut ok = true;
    for c in &t.compare {
        if !compare(view, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let Some(request_op::Request::RequestTxn(n)) = &op.request {
            walk_path(view, n, path)?;
        }
    }
    Ok(())
}

/// Checks the ops on the taken path before anything is written.
fn check_branch(
    view: &impl ReadView,
    t: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
    leases: &dyn Leases,
    writes: bool,
) -> Result<()> {
    let ok = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    for op in if ok { &t.success } else { &t.failure } {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) if writes => {
                if (p.ignore_value || p.ignore_lease)
                    && view
                        .read(&KeyRange::Single(p.key.clone()), RangeOptions::default())?
                        .kvs
                        .is_empty()
                {
                    return Err(EtcdError::KeyNotFound.into());
                }
                if p.lease != 0 && !leases.exists(p.lease) {
                    return Err(EtcdError::LeaseNotFound.into());
                }
            }
            Some(request_op::Request::RequestRange(r)) if !writes => {
                if r.revision > view.rev() {
                    return Err(EtcdError::FutureRev.into());
                }
                if r.revision != 0 && r.revision < view.first_rev() {
                    return Err(EtcdError::Compacted.into());
                }
            }
            Some(request_op::Request::RequestTxn(n)) => {
                check_branch(view, n, path, pos, leases, writes)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Executes a Txn that may write. Header revision: the txn's revision if it wrote, else the
/// current one.
pub fn txn(
    w: &mut WriteTxn<'_, '_>,
    t: &TxnRequest,
    leases: &dyn Leases,
    first_rev: i64,
) -> Result<TxnResponse> {
    let path = txn_path(w, t)?;
    let pinned = FirstRev {
        inner: &*w,
        first: first_rev,
    };
    check_branch(&pinned, t, &path, &mut 0, leases, true)?;
    check_branch(&pinned, t, &path, &mut 0, leases, false)?;
    check_ignore_after_delete(t, &path, &mut 0, &mut Vec::new())?;
    let mut pos = 0;
    let mut resp = exec_txn(w, t, &path, &mut pos, leases)?;
    resp.header = header(w.read_rev());
    Ok(resp)
}

/// A key touched by an earlier op of the txn being checked.
enum Touch {
    Deleted(KeyRange),
    Put(Bytes),
}

/// A put with `ignore_value`/`ignore_lease` needs its key to exist when it runs. A delete
/// earlier in the same txn can remove it when the duplicate-key validation cannot see the
/// overlap (a delete with range_end `"\0"`; etcd panics on such a txn). Fail before writing
/// anything, so the txn stays atomic.
fn check_ignore_after_delete(
    t: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
    trail: &mut Vec<Touch>,
) -> Result<()> {
    let ok = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    for op in if ok { &t.success } else { &t.failure } {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => {
                if p.ignore_value || p.ignore_lease {
                    let deleted = trail.iter().rev().find_map(|touch| match touch {
                        Touch::Deleted(r) if r.contains(&p.key) => Some(true),
                        Touch::Put(k) if *k == p.key => Some(false),
                        _ => None,
                    });
                    if deleted == Some(true) {
                        return Err(EtcdError::KeyNotFound.into());
                    }
                }
                trail.push(Touch::Put(p.key.clone()));
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                trail.push(Touch::Deleted(key_range(&d.key, &d.range_end)))
            }
            Some(request_op::Request::RequestTxn(n)) => {
                check_ignore_after_delete(n, path, pos, trail)?
            }
            _ => {}
        }
    }
    Ok(())
}

struct FirstRev<'a, V: ReadView> {
    inner: &'a V,
    first: i64,
}

impl<V: ReadView> ReadView for FirstRev<'_, V> {
    fn read(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        self.inner.read(range, opts)
    }
    fn rev(&self) -> i64 {
        self.inner.rev()
    }
    fn first_rev(&self) -> i64 {
        self.first
    }
}

/// Executes one request op that is not a nested txn.
type Leaf<'a> = dyn FnMut(&request_op::Request) -> Result<Option<response_op::Response>> + 'a;

/// Walks the taken branch of `t` (and of every nested txn on `path`), answering each op with
/// `leaf`; the one place that shapes txn responses for both write and read-only txns.
fn exec_branch(
    t: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
    leaf: &mut Leaf<'_>,
) -> Result<TxnResponse> {
    let ok = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    let ops = if ok { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestTxn(n)) => {
                let mut r = exec_branch(n, path, pos, leaf)?;
                r.header = Some(ResponseHeader::default());
                Some(response_op::Response::ResponseTxn(r))
            }
            Some(r) => leaf(r)?,
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded: ok,
        responses,
    })
}

fn exec_txn(
    w: &mut WriteTxn<'_, '_>,
    t: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
    leases: &dyn Leases,
) -> Result<TxnResponse> {
    exec_branch(t, path, pos, &mut |r| {
        Ok(match r {
            request_op::Request::RequestRange(r) => {
                Some(response_op::Response::ResponseRange(range(&*w, r)?))
            }
            request_op::Request::RequestPut(p) => {
                Some(response_op::Response::ResponsePut(put(w, p, leases, true)?))
            }
            request_op::Request::RequestDeleteRange(d) => Some(
                response_op::Response::ResponseDeleteRange(delete_range(w, d)?),
            ),
            request_op::Request::RequestTxn(_) => None, // walked by exec_branch
        })
    })
}

/// Executes a read-only Txn against the committed store, all reads at one revision.
pub fn read_txn(store: &MvccStore, t: &TxnRequest) -> Result<TxnResponse> {
    let view = PinnedView {
        store,
        rev: store.current_revision(),
    };
    let path = txn_path(&view, t)?;
    check_branch(&view, t, &path, &mut 0, &|_| true, false)?;
    let mut pos = 0;
    let mut resp = exec_read_txn(&view, t, &path, &mut pos)?;
    resp.header = header(view.rev);
    Ok(resp)
}

fn exec_read_txn(
    view: &PinnedView<'_>,
    t: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
) -> Result<TxnResponse> {
    // A read-only txn holds only ranges (and nested read-only txns).
    exec_branch(t, path, pos, &mut |r| {
        Ok(match r {
            request_op::Request::RequestRange(r) => {
                Some(response_op::Response::ResponseRange(range(view, r)?))
            }
            _ => None,
        })
    })
}
