//! [`Generator`]: the seeded random request generator.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use shale_api::etcdserverpb::{
    compare, range_request, request_op, CompactionRequest, Compare, DeleteRangeRequest,
    LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

use super::op::{Op, Reply};
use super::{prefix_end, KEYS, LEASE_IDS, PREFIXES, SHORT_LEASE_BASE, UNKNOWN_LEASE, VALUES};

mod invalid;

/// Seeded random request generator.
pub struct Generator {
    rng: StdRng,
    /// Current revision as last seen in a reference reply.
    pub cur_rev: i64,
    /// Last successful compaction revision (0 = none).
    pub compact_rev: i64,
    granted: BTreeSet<i64>,
    pending: VecDeque<Op>,
    next_short_lease: i64,
    /// The txn being generated has a delete: no ignore_value/ignore_lease puts after it (etcd
    /// 3.5.1 checks those against the state before the txn and panics when the key is gone).
    txn_has_delete: bool,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            cur_rev: 1,
            compact_rev: 0,
            granted: BTreeSet::new(),
            pending: VecDeque::new(),
            next_short_lease: SHORT_LEASE_BASE,
            txn_has_delete: false,
        }
    }

    /// Random number in `0..n`, for the runner's own choices.
    pub fn below(&mut self, n: i64) -> i64 {
        self.rng.random_range(0..n.max(1))
    }

    fn p(&mut self, prob: f64) -> bool {
        self.rng.random_bool(prob)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        *xs.choose(&mut self.rng).expect("non-empty")
    }

    /// Learn from the reference's reply to `op`.
    pub fn observe(&mut self, op: &Op, reply: &Reply) {
        if let Some(rev) = reply.revision() {
            self.cur_rev = self.cur_rev.max(rev);
        }
        if reply.is_err() {
            return;
        }
        match op {
            Op::Compact(c) => self.compact_rev = self.compact_rev.max(c.revision),
            Op::LeaseGrant(g) => {
                self.granted.insert(g.id);
            }
            Op::LeaseRevoke(r) => {
                self.granted.remove(&r.id);
            }
            _ => {}
        }
    }

    fn key(&mut self) -> Bytes {
        Bytes::from_static(self.pick(KEYS))
    }

    /// A key, empty with probability `p_empty`.
    fn key_or_empty(&mut self, p_empty: f64) -> Bytes {
        if self.p(p_empty) {
            Bytes::new()
        } else {
            self.key()
        }
    }

    fn value(&mut self) -> Bytes {
        if self.p(0.1) {
            let n = self.rng.random_range(1..40);
            (0..n)
                .map(|_| self.rng.random::<u8>())
                .collect::<Vec<u8>>()
                .into()
        } else {
            Bytes::from_static(self.pick(VALUES))
        }
    }

    fn prefix(&mut self) -> &'static [u8] {
        if self.p(0.3) {
            self.pick(PREFIXES)
        } else {
            self.pick(KEYS)
        }
    }

    /// (key, range_end) for a range or delete.
    fn span(&mut self, single_weight: u32) -> (Bytes, Bytes) {
        let roll = self.rng.random_range(0..100 + single_weight);
        if roll < single_weight {
            return (self.key_or_empty(0.01), Bytes::new());
        }
        match roll - single_weight {
            0..=49 => {
                let p = self.prefix();
                (Bytes::from_static(p), prefix_end(p))
            }
            50..=64 => (self.key(), Bytes::from_static(b"\0")),
            65..=74 => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
            _ => {
                let (a, b) = (self.key(), self.key());
                if self.p(0.85) && a > b {
                    (b, a)
                } else {
                    (a, b)
                }
            }
        }
    }

    /// A revision near the current one (for compares and filters).
    fn near_rev(&mut self) -> i64 {
        match self.rng.random_range(0..10) {
            0..=1 => 0,
            2 => self.compact_rev,
            _ => (self.cur_rev - self.rng.random_range(0..8)).max(1),
        }
    }

    /// `RangeRequest.revision`: mostly valid past revisions, sometimes compacted or future.
    fn read_rev(&mut self) -> i64 {
        let (cur, compact) = (self.cur_rev, self.compact_rev);
        match self.rng.random_range(0..20) {
            0..=4 => cur,
            5..=12 => (cur - self.rng.random_range(1..12)).max(compact).max(1),
            13..=14 if compact > 0 => compact,
            15 if compact > 1 => compact - 1,
            15 | 16 => self.rng.random_range(1..=cur),
            17 => cur + self.rng.random_range(1..3),
            18 => -1,
            _ => cur,
        }
    }

    fn lease(&mut self) -> i64 {
        if !self.granted.is_empty() && self.p(0.8) {
            let ids: Vec<i64> = self.granted.iter().copied().collect();
            self.pick(&ids)
        } else if self.p(0.5) {
            self.pick(LEASE_IDS)
        } else {
            UNKNOWN_LEASE
        }
    }

    pub fn range(&mut self, in_txn: bool) -> RangeRequest {
        let (key, range_end) = self.span(40);
        let mut r = RangeRequest {
            key,
            range_end,
            ..Default::default()
        };
        if self.p(0.4) {
            r.limit = self.pick(&[1, 1, 2, 3, 5, 10, 100]);
        }
        if self.p(if in_txn { 0.05 } else { 0.2 }) {
            r.revision = self.read_rev();
        }
        if self.p(0.35) {
            r.sort_order = self.rng.random_range(0..3);
            r.sort_target = self.rng.random_range(0..5);
        }
        r.keys_only = self.p(0.15) && r.sort_target != range_request::SortTarget::Value as i32;
        r.count_only = self.p(0.1);
        r.serializable = self.p(0.2);
        if self.p(0.07) {
            r.min_mod_revision = self.near_rev();
        }
        if self.p(0.07) {
            r.max_mod_revision = self.near_rev();
        }
        if self.p(0.07) {
            r.min_create_revision = self.near_rev();
        }
        if self.p(0.07) {
            r.max_create_revision = self.near_rev();
        }
        r
    }

    pub fn put(&mut self) -> PutRequest {
        let mut r = PutRequest {
            key: self.key_or_empty(0.005),
            value: self.value(),
            prev_kv: self.p(0.4),
            ..Default::default()
        };
        if self.p(0.2) {
            r.lease = self.lease();
        }
        if self.p(0.06) {
            r.ignore_value = true;
            if self.p(0.85) {
                r.value = Bytes::new();
            }
        }
        if self.p(0.06) {
            r.ignore_lease = true;
            if self.p(0.85) {
                r.lease = 0;
            }
        }
        r
    }

    pub fn delete(&mut self) -> DeleteRangeRequest {
        let (key, range_end) = if self.p(0.03) {
            (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
        } else {
            let (k, e) = self.span(100);
            if k.as_ref() == b"\0" && e.as_ref() == b"\0" {
                (Bytes::from_static(b"a"), prefix_end(b"a"))
            } else {
                (k, e)
            }
        };
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.p(0.5),
        }
    }

    pub fn compare(&mut self) -> Compare {
        use compare::{CompareTarget as T, TargetUnion as U};
        let target = self.rng.random_range(0..5);
        let union = match T::try_from(target).expect("valid") {
            T::Version => U::Version(self.rng.random_range(0..4)),
            T::Create => U::CreateRevision(self.near_rev()),
            T::Mod => U::ModRevision(self.near_rev()),
            T::Value => U::Value(self.value()),
            T::Lease => U::Lease(if self.p(0.4) { 0 } else { self.lease() }),
        };
        let key = self.key_or_empty(0.005);
        let range_end = if self.p(0.15) {
            if self.p(0.7) {
                prefix_end(&key)
            } else {
                Bytes::from_static(b"\0")
            }
        } else {
            Bytes::new()
        };
        Compare {
            result: self.rng.random_range(0..4),
            target,
            key,
            range_end,
            target_union: if self.p(0.01) { None } else { Some(union) },
        }
    }

    fn branch(&mut self, depth: u32) -> Vec<RequestOp> {
        let n = self.pick(&[0, 1, 1, 2, 2, 3, 4]);
        let mut used: Vec<Bytes> = Vec::new();
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let roll = self.rng.random_range(0..100);
            let req = match roll {
                0..=34 => request_op::Request::RequestRange(self.range(true)),
                35..=69 => {
                    let mut p = self.put();
                    if self.txn_has_delete {
                        p.ignore_value = false;
                        p.ignore_lease = false;
                    }
                    // usually avoid writing a key twice (that is a deterministic error)
                    for _ in 0..4 {
                        if !used.contains(&p.key) || self.p(0.1) {
                            break;
                        }
                        p.key = self.key();
                    }
                    used.push(p.key.clone());
                    request_op::Request::RequestPut(p)
                }
                70..=89 => {
                    self.txn_has_delete = true;
                    let d = if self.p(0.75) {
                        let mut k = self.key();
                        for _ in 0..4 {
                            if !used.contains(&k) {
                                break;
                            }
                            k = self.key();
                        }
                        DeleteRangeRequest {
                            key: k,
                            range_end: Bytes::new(),
                            prev_kv: self.p(0.5),
                        }
                    } else {
                        self.delete()
                    };
                    used.push(d.key.clone());
                    request_op::Request::RequestDeleteRange(d)
                }
                _ if depth < 2 => request_op::Request::RequestTxn(self.txn(depth + 1)),
                _ => request_op::Request::RequestRange(self.range(true)),
            };
            ops.push(RequestOp { request: Some(req) });
        }
        ops
    }

    pub fn txn(&mut self, depth: u32) -> TxnRequest {
        if depth == 0 {
            self.txn_has_delete = false;
        }
        let nc = self.pick(&[0, 1, 1, 1, 2, 3]);
        TxnRequest {
            compare: (0..nc).map(|_| self.compare()).collect(),
            success: self.branch(depth),
            failure: self.branch(depth),
        }
    }

    fn compact(&mut self) -> CompactionRequest {
        let (cur, compact) = (self.cur_rev, self.compact_rev);
        let physical = self.p(0.3);
        // valid targets stay below the current revision (see the module docs)
        let revision = if cur - 1 > compact && self.p(0.8) {
            if self.p(0.5) {
                cur - 1
            } else {
                self.rng.random_range(compact + 1..cur)
            }
        } else if compact > 0 && self.p(0.5) {
            self.rng
                .random_range(compact.saturating_sub(3).max(1)..=compact)
        } else {
            cur + self.rng.random_range(1..4)
        };
        CompactionRequest { revision, physical }
    }

    fn lease_grant(&mut self) -> LeaseGrantRequest {
        LeaseGrantRequest {
            ttl: self.rng.random_range(600..3600),
            id: self.pick(LEASE_IDS),
        }
    }

    /// The next request of the sequence.
    pub fn next_op(&mut self) -> Op {
        if let Some(op) = self.pending.pop_front() {
            return op;
        }
        match self.rng.random_range(0..1000) {
            0..=239 => Op::Put(self.put()),
            240..=489 => Op::Range(self.range(false)),
            490..=559 => Op::DeleteRange(self.delete()),
            560..=759 => Op::Txn(self.txn(0)),
            760..=784 => Op::Compact(self.compact()),
            785..=819 => Op::LeaseGrant(self.lease_grant()),
            820..=844 => Op::LeaseRevoke(LeaseRevokeRequest { id: self.lease() }),
            845..=874 => Op::LeaseTimeToLive(LeaseTimeToLiveRequest {
                id: self.lease(),
                keys: self.p(0.7),
            }),
            875..=889 => Op::LeaseLeases,
            _ => self.invalid(),
        }
    }
}
