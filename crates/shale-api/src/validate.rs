//! # Request validation done before proposing
//!
//! These are the checks etcd's gRPC layer (`v3rpc/key.go`) runs on a request
//! before it is handed to Raft. They are pure functions of the request (no
//! store access), so they run on whichever member received the request and a
//! rejected request never reaches the log. Each returns the exact
//! [`EtcdError`] etcd returns:
//!
//! | check | error |
//! |---|---|
//! | empty key in range / put / delete / compare | [`EtcdError::EmptyKey`] |
//! | sort order or sort target not a known enum value | [`EtcdError::InvalidSortOption`] |
//! | `ignore_value` with a value / `ignore_lease` with a lease | [`EtcdError::ValueProvided`] / [`EtcdError::LeaseProvided`] |
//! | more than `max_txn_ops` compares, success ops or failure ops | [`EtcdError::TooManyOps`] |
//! | txn op with no request set | [`EtcdError::KeyNotFound`] |
//! | a key put twice, or put inside a deleted range, in one txn | [`EtcdError::DuplicateKey`] |
//!
//! ## Txn rules, as etcd applies them
//!
//! * The op budget of a nested txn is `max_txn_ops` minus the largest of the
//!   parent's compare/success/failure counts.
//! * Duplicate detection (`check_intervals`) runs separately on the success
//!   and on the failure list of the top-level txn, and recurses into nested
//!   txns: a nested txn's success and failure branches are mutually
//!   exclusive, so the same key may be put in both; but a key put by one
//!   nested txn may not be put by a sibling nested txn or at the outer level,
//!   and no put may fall inside a delete range of its own level or of any
//!   nested txn processed before it.
//! * Ranges are compared as byte strings. A delete's empty `range_end` means
//!   the single key; a non-empty `range_end` is taken literally as the
//!   exclusive end (so etcd's "`\0` = to the end of the keyspace" form never
//!   overlaps a put here — etcd behaves the same way).

use std::collections::HashSet;

use bytes::Bytes;

use crate::error::EtcdError;
use crate::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::etcdserverpb::request_op::Request;
use crate::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// etcd's default limits (server flags in parentheses).
pub mod limits {
    /// Largest accepted request, in bytes (`--max-request-bytes`, 1.5 MiB).
    pub const MAX_REQUEST_BYTES: usize = 1_572_864;
    /// Most operations in each of compare/success/failure (`--max-txn-ops`).
    pub const MAX_TXN_OPS: usize = 128;
    /// Backend size that raises the NOSPACE alarm (`--quota-backend-bytes`).
    pub const QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
    /// Largest lease TTL in seconds (etcd's `MaxLeaseTTL`).
    pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
    /// Added to `MAX_REQUEST_BYTES` to get the gRPC receive limit.
    pub const GRPC_OVERHEAD: usize = 512 * 1024;
    /// gRPC max receive message size with default settings.
    pub const MAX_RECV_MSG_SIZE: usize = MAX_REQUEST_BYTES + GRPC_OVERHEAD;
}

/// etcd `checkRangeRequest`: non-empty key, known sort order and target.
pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

/// etcd `checkPutRequest`.
pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// etcd `checkDeleteRequest`.
pub fn check_delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// A txn compare must name a key.
pub fn check_compare(c: &Compare) -> Result<(), EtcdError> {
    if c.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd `checkRequestOp`: validates one txn op; nested txns get the budget
/// `max_txn_ops`. An op without a request is [`EtcdError::KeyNotFound`].
pub fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete_range(r),
        Some(Request::RequestTxn(t)) => check_txn_request(t, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// Everything etcd checks for a `Txn` RPC: [`check_txn_request`] and then the
/// duplicate-key rules on the success and on the failure branch.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_request(r, max_txn_ops)?;
    // Overlaps are checked after the size checks to avoid quadratic work on
    // oversized requests (same order as etcd).
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// etcd `checkTxnRequest`: op counts, compare keys, and every op (recursively).
pub fn check_txn_request(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &r.compare {
        check_compare(c)?;
    }
    let nested_budget = max_txn_ops - opc;
    for op in r.success.iter().chain(r.failure.iter()) {
        check_request_op(op, nested_budget)?;
    }
    Ok(())
}

/// A delete range `[start, end)`; `end == None` is the single key `start`.
#[derive(Debug, Clone)]
struct DelRange {
    start: Bytes,
    end: Option<Bytes>,
}

impl DelRange {
    fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => self.start.as_ref() == key,
            Some(end) => self.start.as_ref() <= key && key < end.as_ref(),
        }
    }
}

fn any_contains(dels: &[DelRange], key: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(key))
}

/// [`EtcdError::DuplicateKey`] if the ops of one branch (including nested
/// txns) put a key twice or put a key inside a deleted range. Mirrors etcd's
/// `checkIntervals`.
pub fn check_intervals(reqs: &[RequestOp]) -> Result<(), EtcdError> {
    intervals(reqs).map(|_| ())
}

/// Keys put and ranges deleted by `reqs`, for the caller's level.
fn intervals(reqs: &[RequestOp]) -> Result<(HashSet<Bytes>, Vec<DelRange>), EtcdError> {
    // Deletes of this level first, so lower-level puts are checked against them.
    let mut dels: Vec<DelRange> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(DelRange {
                start: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();

    // Puts and deletes of nested txns.
    let mut puts: HashSet<Bytes> = HashSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || any_contains(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            // The same key in both branches of one txn is fine: only one runs.
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if any_contains(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    // Puts of this level.
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || any_contains(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// A serialized request (or Raft proposal) larger than `max_request_bytes` is
/// rejected with [`EtcdError::RequestTooLarge`].
pub fn check_request_size(encoded_len: usize, max_request_bytes: usize) -> Result<(), EtcdError> {
    if encoded_len > max_request_bytes {
        return Err(EtcdError::RequestTooLarge);
    }
    Ok(())
}

/// A lease TTL above [`limits::MAX_LEASE_TTL`] is
/// [`EtcdError::LeaseTtlTooLarge`] (etcd's lessor check).
pub fn check_lease_grant(r: &LeaseGrantRequest) -> Result<(), EtcdError> {
    if r.ttl > limits::MAX_LEASE_TTL {
        return Err(EtcdError::LeaseTtlTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
