//! Range answered in wire form: stored records go into the response as they are.
//!
//! Every stored change is the protobuf encoding of its `mvccpb.KeyValue` (see
//! [`crate::record`]), and that is exactly what `RangeResponse.kvs` carries on the wire. So
//! for a Range whose result is "the visible keys of the range, in key order" (no sort other
//! than ascending by key, no revision filters) nothing needs decoding: the index lists the
//! visible revisions, storage reads each record into one buffer, and the buffer becomes an
//! [`EncodedKv`] of a [`WireRangeResponse`] that tonic copies once into the wire buffer. A
//! `keys_only` Range needs no value: a key's newest change is rebuilt from the index alone
//! (key, create and mod revision, version, and the lease the index keeps for the newest
//! put), older changes are read and lose their value field ([`EncodedKv::without_value`]).
//! Every other Range (sorts, filters) is answered by
//! [`kv::range`] and encoded afterwards: those need the decoded fields anyway.
//!
//! Size limit: a read stops keeping records once the response would exceed `max_len` bytes,
//! but goes on summing their sizes, so the caller can report the full size (as gRPC does for
//! an oversized message) while holding at most `max_len` bytes of records.
//!
//! Invariants:
//! * The answer is the one [`kv::range`] gives, field for field: same `count` (visible keys
//!   before the limit), same `more`, same header revision, same key-values (tests decode and
//!   compare for every option combination).
//! * The index read lock is held only while listing revisions, never while reading storage.

use bytes::Bytes;
use shale_api::etcdserverpb::{range_request, RangeRequest, ResponseHeader};
use shale_api::mvccpb::KeyValue;
use shale_api::range_wire::{EncodedKv, WireRangeResponse};

use crate::error::{Error, Result};
use crate::key_index::KeyAt;
use crate::key_range::KeyRange;
use crate::kv;
use crate::record::kv_key;
use crate::store::MvccStore;

/// What a wire Range produced.
#[derive(Debug, Clone, PartialEq)]
pub enum WireRange {
    /// The response; its header carries only the revision.
    Ready(WireRangeResponse),
    /// The key-values alone encode to `kvs_len` bytes (as `RangeResponse` field 2), which is
    /// more than the limit; `resp` is the response without them (header, more, count).
    TooLarge {
        resp: WireRangeResponse,
        kvs_len: usize,
    },
}

impl WireRange {
    /// Encoded length of the whole response (with the key-values that were not kept).
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            WireRange::Ready(r) => r.encoded_len(),
            WireRange::TooLarge { resp, kvs_len } => resp.encoded_len() + kvs_len,
        }
    }
}

/// True when the result is the visible keys in key order: the records can be sent as stored.
pub fn is_plain(r: &RangeRequest) -> bool {
    use range_request::{SortOrder, SortTarget};
    let by_key = r.sort_target == SortTarget::Key as i32
        && (r.sort_order == SortOrder::None as i32 || r.sort_order == SortOrder::Ascend as i32);
    by_key
        && r.min_mod_revision == 0
        && r.max_mod_revision == 0
        && r.min_create_revision == 0
        && r.max_create_revision == 0
}

/// Executes `r` against the committed store (as [`kv::range`] does), keeping at most
/// `max_len` bytes of key-values.
pub fn range(store: &MvccStore, r: &RangeRequest, max_len: usize) -> Result<WireRange> {
    if !is_plain(r) {
        let resp = WireRangeResponse::from_response(&kv::range(store, r)?);
        let kvs_len: usize = resp.kvs.iter().map(WireRangeResponse::kv_field_len).sum();
        if kvs_len > max_len {
            return Ok(WireRange::TooLarge {
                resp: WireRangeResponse {
                    kvs: Vec::new(),
                    ..resp
                },
                kvs_len,
            });
        }
        return Ok(WireRange::Ready(resp));
    }
    let shared = &*store.shared;
    let cur = store.current_revision();
    let at = shared.resolve_rev(r.revision, cur, store.compact_revision())?;
    let range = KeyRange::new(r.key.clone(), r.range_end.clone());
    let mut resp = WireRangeResponse {
        header: Some(ResponseHeader {
            revision: cur,
            ..Default::default()
        }),
        ..Default::default()
    };
    if r.count_only {
        resp.count = shared.index.read().count(&range, at) as i64;
        return Ok(WireRange::Ready(resp));
    }
    // `limit + 1` keys tell whether there are more.
    let fetch = if r.limit > 0 { r.limit as usize + 1 } else { 0 };
    let (listed, count) = list(store, &range, at, fetch, true);
    resp.count = count as i64;
    let keep = if r.limit > 0 {
        listed.len().min(r.limit as usize)
    } else {
        listed.len()
    };
    resp.more = listed.len() > keep;
    resp.kvs.reserve_exact(keep);
    let mut kvs_len = 0usize;
    for l in listed.iter().take(keep) {
        let kv = fetch_kv(store, l, at, r.keys_only)?;
        kvs_len += WireRangeResponse::kv_field_len(&kv);
        if kvs_len <= max_len {
            resp.kvs.push(kv);
        } else if !resp.kvs.is_empty() {
            resp.kvs = Vec::new();
        }
    }
    if kvs_len > max_len {
        return Ok(WireRange::TooLarge { resp, kvs_len });
    }
    Ok(WireRange::Ready(resp))
}

/// One page of a RangeStream: the visible keys of `range` at revision `at` (a revision
/// already resolved, see [`MvccStore::current_revision`]), from its start, at most `max_kvs`
/// of them and no more once their encodings pass `max_bytes` (at least one key). Returns the
/// key-values and whether the range holds more keys after them. No count is taken.
pub fn page(
    store: &MvccStore,
    range: &KeyRange,
    at: i64,
    keys_only: bool,
    max_kvs: usize,
    max_bytes: usize,
) -> Result<(Vec<EncodedKv>, bool)> {
    let shared = &*store.shared;
    shared.resolve_rev(at, store.current_revision(), store.compact_revision())?;
    let (listed, _) = list(store, range, at, max_kvs.max(1) + 1, false);
    let mut kvs = Vec::with_capacity(listed.len().min(max_kvs));
    let mut bytes = 0usize;
    for l in listed.iter().take(max_kvs.max(1)) {
        if bytes >= max_bytes.max(1) {
            break;
        }
        let kv = fetch_kv(store, l, at, keys_only)?;
        bytes += kv.len();
        kvs.push(kv);
    }
    let more = listed.len() > kvs.len();
    Ok((kvs, more))
}

/// A key visible at the read revision, as the index lists it.
struct Listed {
    key: Bytes,
    at: KeyAt,
    /// The key's lease when the visible change is its newest one (the index keeps the lease
    /// of the newest put only); `None` when a newer change exists, published or not.
    lease_if_newest: Option<i64>,
}

/// The first `take` (0 = all) visible keys of `range` at `at` and, when `count_all`, the
/// number of visible keys in the whole range (else the number listed). Holds the index
/// read lock only while walking it.
fn list(
    store: &MvccStore,
    range: &KeyRange,
    at: i64,
    take: usize,
    count_all: bool,
) -> (Vec<Listed>, usize) {
    let mut out = Vec::new();
    let mut total = 0usize;
    store
        .shared
        .index
        .read()
        .visit_entries(range, at, |k, a, ki| {
            total += 1;
            if take == 0 || out.len() < take {
                out.push(Listed {
                    key: k.clone(),
                    at: a,
                    lease_if_newest: (ki.modified == a.modified).then_some(ki.lease),
                });
            }
            count_all || take == 0 || out.len() < take
        });
    (out, total)
}

/// The record of a listed key. A keys-only record of a key's newest change is rebuilt from
/// the index (key, revisions, version, lease: every field a keys-only record has), so
/// keys-only LISTs of the current state read no value; every other record is read from
/// storage as stored (without its value when `keys_only`).
fn fetch_kv(store: &MvccStore, l: &Listed, at: i64, keys_only: bool) -> Result<EncodedKv> {
    if keys_only {
        if let Some(lease) = l.lease_if_newest {
            return Ok(EncodedKv::encode(&KeyValue {
                key: l.key.clone(),
                create_revision: l.at.created.main,
                mod_revision: l.at.modified.main,
                version: l.at.version,
                value: Bytes::new(),
                lease,
            }));
        }
    }
    let shared = &*store.shared;
    let stored = shared
        .engine
        .get(&kv_key(l.at.modified, false))?
        .ok_or_else(|| shared.missing(&l.key, l.at.modified, at))?;
    let kv = EncodedKv::from_bytes(stored.into());
    if !keys_only {
        return Ok(kv);
    }
    kv.without_value()
        .map_err(|e| Error::Corrupt(format!("undecodable key-value: {e}")))
}

#[cfg(test)]
mod tests;
