//! Invalid and edge-case requests of the [`Generator`].

use bytes::Bytes;
use rand::Rng;
use shale_api::etcdserverpb::{
    request_op, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use super::Generator;
use crate::diff::op::Op;
use crate::diff::{prefix_end, LEASE_IDS, MAX_REQUEST_BYTES, MAX_TXN_OPS, UNKNOWN_LEASE};

impl Generator {
    /// Requests etcd rejects (or that test an edge): each is deterministic.
    pub(super) fn invalid(&mut self) -> Op {
        let k = self.key();
        match self.rng.random_range(0..22) {
            0 => Op::Put(PutRequest {
                key: Bytes::new(),
                value: self.value(),
                ..Default::default()
            }),
            1 => Op::Range(RangeRequest {
                key: Bytes::new(),
                range_end: Bytes::from_static(b"\0"),
                ..Default::default()
            }),
            2 => Op::DeleteRange(DeleteRangeRequest {
                key: Bytes::new(),
                ..Default::default()
            }),
            3 => Op::Put(PutRequest {
                key: k,
                value: Bytes::from_static(b"v"),
                ignore_value: true,
                ..Default::default()
            }),
            4 => Op::Put(PutRequest {
                key: k,
                lease: self.lease(),
                ignore_lease: true,
                ..Default::default()
            }),
            5 => {
                // too many ops in one of compare/success/failure
                let n = MAX_TXN_OPS + 1;
                let mut t = TxnRequest::default();
                match self.rng.random_range(0..3) {
                    0 => t.compare = (0..n).map(|_| self.compare()).collect(),
                    1 => {
                        t.success = (0..n)
                            .map(|_| RequestOp {
                                request: Some(request_op::Request::RequestRange(self.range(true))),
                            })
                            .collect()
                    }
                    _ => {
                        t.failure = (0..n)
                            .map(|_| RequestOp {
                                request: Some(request_op::Request::RequestRange(self.range(true))),
                            })
                            .collect()
                    }
                }
                Op::Txn(t)
            }
            6 => {
                // exactly max ops: allowed
                let t = TxnRequest {
                    success: (0..MAX_TXN_OPS)
                        .map(|_| RequestOp {
                            request: Some(request_op::Request::RequestRange(RangeRequest {
                                key: self.key(),
                                ..Default::default()
                            })),
                        })
                        .collect(),
                    ..Default::default()
                };
                Op::Txn(t)
            }
            7 => {
                // duplicate put
                let put = |v: &'static [u8]| RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: k.clone(),
                        value: Bytes::from_static(v),
                        ..Default::default()
                    })),
                };
                Op::Txn(TxnRequest {
                    success: vec![put(b"1"), put(b"2")],
                    ..Default::default()
                })
            }
            8 => {
                // put overlapping a delete range (either order), maybe nested
                let p = self.prefix();
                let del = RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: Bytes::from_static(p),
                            range_end: prefix_end(p),
                            prev_kv: false,
                        },
                    )),
                };
                let mut key = p.to_vec();
                key.extend_from_slice(b"/dup");
                let put = RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.into(),
                        value: Bytes::from_static(b"d"),
                        ..Default::default()
                    })),
                };
                let inner = if self.p(0.5) {
                    vec![put, del]
                } else {
                    vec![del, put]
                };
                let success = if self.p(0.5) {
                    inner
                } else {
                    let (first, rest) = inner.split_at(1);
                    vec![
                        first[0].clone(),
                        RequestOp {
                            request: Some(request_op::Request::RequestTxn(TxnRequest {
                                success: rest.to_vec(),
                                failure: rest.to_vec(),
                                ..Default::default()
                            })),
                        },
                    ]
                };
                Op::Txn(TxnRequest {
                    success,
                    ..Default::default()
                })
            }
            9 => Op::Txn(TxnRequest {
                success: vec![RequestOp { request: None }],
                ..Default::default()
            }),
            // (no invalid sort order/target: etcd 3.5.1 does not validate them; it ignores an
            // unknown order and crashes on an unknown target — Shale rejects both, DESIGN 2.2)
            10 => Op::Range(RangeRequest {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                revision: self.compact_rev.max(1),
                ..Default::default()
            }),
            11 => {
                // a read at a future or compacted revision inside a txn fails the whole txn
                let revision = if self.compact_rev > 1 && self.p(0.5) {
                    self.compact_rev - 1
                } else {
                    self.cur_rev + 1
                };
                let mut t = self.txn(0);
                t.success.push(RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: k,
                        revision,
                        ..Default::default()
                    })),
                });
                Op::Txn(t)
            }
            12 => Op::Range(RangeRequest {
                key: k,
                revision: self.cur_rev + 1 + self.below(3),
                ..Default::default()
            }),
            13 => Op::Range(RangeRequest {
                key: k,
                range_end: Bytes::from_static(b"\0"),
                revision: (self.compact_rev - 1 - self.below(3)).max(1),
                ..Default::default()
            }),
            14 => Op::Put(PutRequest {
                key: k,
                value: self.value(),
                lease: UNKNOWN_LEASE,
                ..Default::default()
            }),
            15 => Op::LeaseGrant(LeaseGrantRequest {
                ttl: self.pick(&[9_000_000_001, i64::MAX, 9_000_000_000]),
                id: self.pick(LEASE_IDS),
            }),
            16 => Op::LeaseRevoke(LeaseRevokeRequest { id: UNKNOWN_LEASE }),
            17 => {
                // short TTL: granted (etcd raises it to its minimum), revoked by the next op
                let id = self.next_short_lease;
                self.next_short_lease += 1;
                self.pending
                    .push_back(Op::LeaseRevoke(LeaseRevokeRequest { id }));
                Op::LeaseGrant(LeaseGrantRequest {
                    ttl: self.pick(&[-5, 0, 1, 2]),
                    id,
                })
            }
            18 => Op::Compact(CompactionRequest {
                revision: self.pick(&[0, -1]),
                physical: false,
            }),
            19 => Op::Put(PutRequest {
                key: k,
                value: vec![b'x'; MAX_REQUEST_BYTES + 1].into(),
                ..Default::default()
            }),
            20 => Op::Txn(TxnRequest {
                compare: vec![Compare {
                    key: Bytes::new(),
                    ..self.compare()
                }],
                ..self.txn(0)
            }),
            _ => Op::Put(PutRequest {
                key: k,
                ignore_value: true,
                ignore_lease: true,
                prev_kv: true,
                ..Default::default()
            }),
        }
    }
}
