//! Differential testing: one seeded random request sequence, sent to a reference server (real
//! etcd 3.5.1) and to a subject (Shale, or a second etcd to check the harness itself), every
//! pair of responses compared field by field.
//!
//! * [`Generator`] produces [`Op`]s over a ~30-key space with shared prefixes: Put (prev_kv,
//!   lease, ignore_value, ignore_lease), Range (single/prefix/from-key/all/arbitrary, limit,
//!   count_only, keys_only, sort, min/max filters, past revisions), DeleteRange, Txn (compares
//!   on every target incl. range compares, nested txns), Compact, LeaseGrant with explicit IDs,
//!   LeaseRevoke, LeaseTimeToLive, LeaseLeases, and invalid requests of every kind. It learns
//!   the current and compacted revision from the reference's replies ([`Generator::observe`])
//!   so that past-revision reads and compactions hit interesting values.
//! * [`compare`] normalizes both replies and demands equality. Ignored: `header.cluster_id`,
//!   `member_id`, `raft_term`; LeaseTimeToLive `TTL` only within ±2 s; the order of lease
//!   lists and of lease keys (etcd returns them in Go map order); and the order of ties of a
//!   non-KEY sort when the range holds more than 6 keys (etcd 3.5.1 sorts with Go's unstable
//!   `sort.Sort`, which is an insertion sort — stable — only up to 6 elements). Errors compare
//!   gRPC code and message exactly.
//! * [`run_seed`] drives one seed against two endpoints, with watch streams on both (a prefix
//!   watch with prev_kv, an all-keys watch, a NODELETE-filtered watch; in the second half a
//!   watch replaying from an old revision, one from a compacted revision, one from a future
//!   revision); at the end the event lists are compared exactly, plus a progress request.
//!
//! Races in etcd that would make its own answers non-deterministic are avoided, not papered
//! over: before every Compact the runner waits until each stream's all-keys watcher has
//! delivered the current revision (etcd fills `prev_kv` of a watch event when sending it, and
//! drops it if the previous revision was compacted meanwhile); watches start strictly after the
//! compacted revision (a tombstone exactly at it disappears asynchronously); leases live
//! 600 s+ (short-TTL grants are revoked by the next op).

use std::collections::{BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::lease_client::LeaseClient;
use shale_api::etcdserverpb::maintenance_client::MaintenanceClient;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{
    compare, range_request, request_op, response_op, watch_create_request, watch_request,
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    StatusRequest, TxnRequest, TxnResponse, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use shale_api::mvccpb::{Event, KeyValue};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

/// The key space: ~30 keys with shared prefixes, apiserver-like keys and odd bytes.
pub const KEYS: &[&[u8]] = &[
    b"a",
    b"a/",
    b"a/1",
    b"a/2",
    b"a/10",
    b"a/1/x",
    b"a/b",
    b"ab",
    b"a\xff",
    b"b",
    b"b/1",
    b"b/2",
    b"b/3",
    b"c",
    b"c\x00",
    b"k",
    b"k0",
    b"k\xff\xff",
    b"/registry/pods/ns1/p1",
    b"/registry/pods/ns1/p2",
    b"/registry/pods/ns2/p1",
    b"/registry/pods",
    b"/registry/podsx",
    b"/registry/health",
    b"compact_rev_key",
    b"\x00",
    b"\x01",
    b"\xff",
    b"\xff\xff",
    b"z",
];

/// Extra prefixes for prefix ranges/deletes (every key is also used as a prefix).
const PREFIXES: &[&[u8]] = &[
    b"a/",
    b"a/1",
    b"b/",
    b"/registry/",
    b"/registry/pods/",
    b"k",
];

/// Small value set, so VALUE compares hit and VALUE sorts have ties.
const VALUES: &[&[u8]] = &[
    b"",
    b"v",
    b"v1",
    b"v2",
    b"v10",
    b"x",
    b"\x00\xff",
    b"value-3",
];

/// Lease IDs the generator grants explicitly (long TTLs).
const LEASE_IDS: &[i64] = &[0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107];
/// A lease ID that is never granted.
const UNKNOWN_LEASE: i64 = 0xdead;
/// First ID of the short-TTL leases (each granted once and revoked by the next op).
const SHORT_LEASE_BASE: i64 = 0x10_000;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 1_572_864;
/// Non-KEY sorts of ranges with more keys than this may order ties differently in etcd.
const STABLE_SORT_MAX: i64 = 6;

/// `key + 1` as etcd's `GetPrefixRangeEnd`: the range end covering every key with this prefix.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end.into();
        }
        end.pop();
    }
    Bytes::from_static(b"\0")
}

// ---------------------------------------------------------------------------------------------
// Requests and replies
// ---------------------------------------------------------------------------------------------

/// One request of the sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    LeaseLeases,
}

impl Op {
    /// Short name for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Range(_) => "range",
            Op::Put(_) => "put",
            Op::DeleteRange(_) => "delete",
            Op::Txn(_) => "txn",
            Op::Compact(_) => "compact",
            Op::LeaseGrant(_) => "lease_grant",
            Op::LeaseRevoke(_) => "lease_revoke",
            Op::LeaseTimeToLive(_) => "lease_ttl",
            Op::LeaseLeases => "lease_leases",
        }
    }

    /// Debug form, shortened when huge (too-many-ops txns, oversized values).
    pub fn brief(&self) -> String {
        let s = format!("{self:?}");
        if s.len() > 600 {
            let cut: String = s.chars().take(600).collect();
            format!("{cut}… ({} chars)", s.len())
        } else {
            s
        }
    }
}

/// One response: the message, or the gRPC error (code and message).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    LeaseLeases(LeaseLeasesResponse),
    Error { code: tonic::Code, message: String },
}

impl Reply {
    pub fn is_err(&self) -> bool {
        matches!(self, Reply::Error { .. })
    }

    /// An error from the transport, not from the server's logic (a crashed server).
    pub fn is_transport_failure(&self) -> bool {
        matches!(self, Reply::Error { code, message }
            if matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
                && !message.starts_with("etcdserver: "))
    }

    /// `header.revision` of a successful reply.
    pub fn revision(&self) -> Option<i64> {
        let h = match self {
            Reply::Range(r) => r.header.as_ref(),
            Reply::Put(r) => r.header.as_ref(),
            Reply::DeleteRange(r) => r.header.as_ref(),
            Reply::Txn(r) => r.header.as_ref(),
            Reply::Compact(r) => r.header.as_ref(),
            Reply::LeaseGrant(r) => r.header.as_ref(),
            Reply::LeaseRevoke(r) => r.header.as_ref(),
            Reply::LeaseTimeToLive(r) => r.header.as_ref(),
            Reply::LeaseLeases(r) => r.header.as_ref(),
            Reply::Error { .. } => None,
        };
        h.map(|h| h.revision)
    }
}

fn reply<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>, f: fn(T) -> Reply) -> Reply {
    match r {
        Ok(resp) => f(resp.into_inner()),
        Err(s) => Reply::Error {
            code: s.code(),
            message: s.message().to_string(),
        },
    }
}

/// gRPC clients of one endpoint.
#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    pub kv: KvClient<Channel>,
    pub lease: LeaseClient<Channel>,
    pub maintenance: MaintenanceClient<Channel>,
    /// On its own channel, without the unary request timeout.
    pub watch: WatchClient<Channel>,
}

const MAX_MSG: usize = 64 << 20;

impl Client {
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let unary = Channel::from_shared(endpoint.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        let streaming = Channel::from_shared(endpoint.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            kv: KvClient::new(unary.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
            lease: LeaseClient::new(unary.clone()),
            maintenance: MaintenanceClient::new(unary),
            watch: WatchClient::new(streaming).max_decoding_message_size(MAX_MSG),
        })
    }

    /// `Maintenance.Status` version string.
    pub async fn server_version(&mut self) -> Result<String> {
        Ok(self
            .maintenance
            .status(StatusRequest {})
            .await
            .with_context(|| format!("Status on {}", self.endpoint))?
            .into_inner()
            .version)
    }

    /// Send one op and capture the reply (errors included).
    pub async fn exec(&mut self, op: &Op) -> Reply {
        match op.clone() {
            Op::Range(r) => reply(self.kv.range(r).await, Reply::Range),
            Op::Put(r) => reply(self.kv.put(r).await, Reply::Put),
            Op::DeleteRange(r) => reply(self.kv.delete_range(r).await, Reply::DeleteRange),
            Op::Txn(r) => reply(self.kv.txn(r).await, Reply::Txn),
            Op::Compact(r) => reply(self.kv.compact(r).await, Reply::Compact),
            Op::LeaseGrant(r) => reply(self.lease.lease_grant(r).await, Reply::LeaseGrant),
            Op::LeaseRevoke(r) => reply(self.lease.lease_revoke(r).await, Reply::LeaseRevoke),
            Op::LeaseTimeToLive(r) => reply(
                self.lease.lease_time_to_live(r).await,
                Reply::LeaseTimeToLive,
            ),
            Op::LeaseLeases => reply(
                self.lease.lease_leases(LeaseLeasesRequest {}).await,
                Reply::LeaseLeases,
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

fn norm_header(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn sort_value(kv: &KeyValue, target: i32) -> (i64, Bytes) {
    use range_request::SortTarget as T;
    match T::try_from(target) {
        Ok(T::Version) => (kv.version, Bytes::new()),
        Ok(T::Create) => (kv.create_revision, Bytes::new()),
        Ok(T::Mod) => (kv.mod_revision, Bytes::new()),
        Ok(T::Value) => (0, kv.value.clone()),
        _ => (0, kv.key.clone()),
    }
}

/// Make tie order of a non-KEY sort irrelevant where etcd's own order is not specified.
fn norm_range(req: Option<&RangeRequest>, resp: &mut RangeResponse) {
    norm_header(&mut resp.header);
    let Some(req) = req else { return };
    if req.sort_target == range_request::SortTarget::Key as i32 || resp.count <= STABLE_SORT_MAX {
        return;
    }
    let mut groups: Vec<Vec<KeyValue>> = Vec::new();
    for kv in resp.kvs.drain(..) {
        match groups.last_mut() {
            Some(g) if sort_value(&g[0], req.sort_target) == sort_value(&kv, req.sort_target) => {
                g.push(kv)
            }
            _ => groups.push(vec![kv]),
        }
    }
    let n = groups.len();
    for (i, mut g) in groups.into_iter().enumerate() {
        if resp.more && i + 1 == n {
            // cut by `limit`: which of the tied keys made it is unspecified; keep the count
            for kv in g {
                let (n, value) = sort_value(&kv, req.sort_target);
                resp.kvs.push(KeyValue {
                    key: Bytes::from_static(b"<one of a tie cut by limit>"),
                    version: n,
                    value,
                    ..Default::default()
                });
            }
        } else {
            g.sort_by(|a, b| a.key.cmp(&b.key));
            resp.kvs.extend(g);
        }
    }
}

fn norm_txn(req: Option<&TxnRequest>, resp: &mut TxnResponse) {
    norm_header(&mut resp.header);
    let branch = req.map(|r| {
        if resp.succeeded {
            &r.success
        } else {
            &r.failure
        }
    });
    for (i, op) in resp.responses.iter_mut().enumerate() {
        let rop = branch
            .and_then(|b| b.get(i))
            .and_then(|o| o.request.as_ref());
        norm_response_op(rop, op);
    }
}

fn norm_response_op(req: Option<&request_op::Request>, op: &mut ResponseOp) {
    use request_op::Request as Q;
    use response_op::Response as R;
    match op.response.as_mut() {
        Some(R::ResponseRange(r)) => norm_range(
            match req {
                Some(Q::RequestRange(q)) => Some(q),
                _ => None,
            },
            r,
        ),
        Some(R::ResponsePut(r)) => norm_header(&mut r.header),
        Some(R::ResponseDeleteRange(r)) => norm_header(&mut r.header),
        Some(R::ResponseTxn(r)) => norm_txn(
            match req {
                Some(Q::RequestTxn(q)) => Some(q),
                _ => None,
            },
            r,
        ),
        None => {}
    }
}

/// Normalize a reply for comparison (see the module docs for what is ignored).
pub fn normalize(op: &Op, reply: &Reply) -> Reply {
    let mut r = reply.clone();
    match (&mut r, op) {
        (Reply::Range(x), Op::Range(q)) => norm_range(Some(q), x),
        (Reply::Range(x), _) => norm_range(None, x),
        (Reply::Put(x), _) => norm_header(&mut x.header),
        (Reply::DeleteRange(x), _) => norm_header(&mut x.header),
        (Reply::Txn(x), Op::Txn(q)) => norm_txn(Some(q), x),
        (Reply::Txn(x), _) => norm_txn(None, x),
        (Reply::Compact(x), _) => norm_header(&mut x.header),
        (Reply::LeaseGrant(x), _) => norm_header(&mut x.header),
        (Reply::LeaseRevoke(x), _) => norm_header(&mut x.header),
        (Reply::LeaseTimeToLive(x), _) => {
            norm_header(&mut x.header);
            x.keys.sort();
        }
        (Reply::LeaseLeases(x), _) => {
            norm_header(&mut x.header);
            x.leases.sort_by_key(|l| l.id);
        }
        (Reply::Error { .. }, _) => {}
    }
    r
}

/// Compare two replies to `op`; `Err` describes the difference.
pub fn compare(op: &Op, a: &Reply, b: &Reply) -> std::result::Result<(), String> {
    let mut na = normalize(op, a);
    let mut nb = normalize(op, b);
    if let (Reply::LeaseTimeToLive(x), Reply::LeaseTimeToLive(y)) = (&mut na, &mut nb) {
        if (x.ttl - y.ttl).abs() > 2 || (x.ttl < 0) != (y.ttl < 0) {
            return Err(format!(
                "LeaseTimeToLive TTL {} vs {} (±2 allowed)",
                x.ttl, y.ttl
            ));
        }
        x.ttl = 0;
        y.ttl = 0;
    }
    if na == nb {
        Ok(())
    } else {
        Err(first_difference(&format!("{na:#?}"), &format!("{nb:#?}")))
    }
}

/// The first differing line of two pretty Debug dumps, with a little context.
pub fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    let ctx = |l: &[&str]| l[i.saturating_sub(3)..(i + 2).min(l.len())].join("\n");
    format!(
        "first difference at line {}:\n  reference: …\n{}\n  subject: …\n{}",
        i + 1,
        ctx(&la),
        ctx(&lb)
    )
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

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

    /// Requests etcd rejects (or that test an edge): each is deterministic.
    fn invalid(&mut self) -> Op {
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

// ---------------------------------------------------------------------------------------------
// Watch streams
// ---------------------------------------------------------------------------------------------

/// One bidi watch stream; responses are collected by a background task.
struct Stream {
    req: mpsc::UnboundedSender<WatchRequest>,
    resp: mpsc::UnboundedReceiver<std::result::Result<WatchResponse, tonic::Status>>,
    got: Vec<WatchResponse>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn open(client: &WatchClient<Channel>, first: WatchRequest) -> Self {
        let (req, req_rx) = mpsc::unbounded_channel();
        // queued before the call: grpc-go sends response headers only with the first message
        req.send(first).expect("receiver alive");
        let (resp_tx, resp) = mpsc::unbounded_channel();
        let mut c = client.clone();
        let task = tokio::spawn(async move {
            match c.watch(UnboundedReceiverStream::new(req_rx)).await {
                Ok(r) => {
                    let mut s = r.into_inner();
                    loop {
                        match s.message().await {
                            Ok(Some(m)) => {
                                if resp_tx.send(Ok(m)).is_err() {
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ = resp_tx.send(Err(e));
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    let _ = resp_tx.send(Err(e));
                }
            }
        });
        Self {
            req,
            resp,
            got: Vec::new(),
            task,
        }
    }

    fn send(&self, r: WatchRequest) -> Result<()> {
        self.req
            .send(r)
            .map_err(|_| anyhow!("watch stream task ended"))
    }

    fn drain(&mut self) -> Result<()> {
        while let Ok(m) = self.resp.try_recv() {
            self.got
                .push(m.map_err(|s| anyhow!("watch stream failed: {s:?}"))?);
        }
        Ok(())
    }

    /// Collect responses until `pred(all responses so far)` holds.
    async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[WatchResponse]) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain()?;
            if pred(&self.got) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.resp.recv()).await {
                Ok(Some(m)) => self
                    .got
                    .push(m.map_err(|s| anyhow!("watch stream failed: {s:?}"))?),
                Ok(None) => bail!("watch stream closed while waiting for {what}"),
                Err(_) => bail!(
                    "timed out after {timeout:?} waiting for {what}; got {} responses, last: {:?}",
                    self.got.len(),
                    self.got.last()
                ),
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn max_rev(got: &[WatchResponse], watch_id: i64) -> i64 {
    got.iter()
        .filter(|r| r.watch_id == watch_id)
        .flat_map(|r| r.events.iter())
        .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
        .max()
        .unwrap_or(0)
}

/// What a watcher was created with, and what the runner expects of it.
#[derive(Debug, Clone)]
struct WatchSpec {
    name: &'static str,
    stream: usize,
    watch_id: i64,
    create: WatchCreateRequest,
    /// All keys: used as the compaction barrier of its stream.
    all_keys: bool,
    /// Started below the compacted revision: expect a cancel, no events.
    expect_cancel: bool,
    /// Events of revisions above this are expected.
    after_rev: i64,
}

/// The same watch streams on the reference (`.0`) and the subject (`.1`).
struct Watches {
    streams: Vec<(Stream, Stream)>,
    specs: Vec<WatchSpec>,
}

fn create_req(c: &WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(c.clone())),
    }
}

/// The parts of a created/canceled response that must match.
fn control_view(r: &WatchResponse) -> String {
    format!(
        "watch_id={} created={} canceled={} compact_revision={} cancel_reason={:?} fragment={} header.revision={:?} events={}",
        r.watch_id,
        r.created,
        r.canceled,
        r.compact_revision,
        r.cancel_reason,
        r.fragment,
        r.header.as_ref().map(|h| h.revision),
        r.events.len()
    )
}

impl Watches {
    fn new() -> Self {
        Self {
            streams: Vec::new(),
            specs: Vec::new(),
        }
    }

    /// Create a watcher (on a new stream when `stream == streams.len()`) on both sides and
    /// compare the `created` responses.
    async fn create(
        &mut self,
        clients: (&Client, &Client),
        stream: usize,
        mut spec: WatchSpec,
    ) -> Result<()> {
        let req = create_req(&spec.create);
        if stream == self.streams.len() {
            self.streams.push((
                Stream::open(&clients.0.watch, req.clone()),
                Stream::open(&clients.1.watch, req),
            ));
        } else {
            self.streams[stream].0.send(req.clone())?;
            self.streams[stream].1.send(req)?;
        }
        let n_created = self.specs.iter().filter(|s| s.stream == stream).count() + 1;
        let (a, b) = &mut self.streams[stream];
        let pred = |got: &[WatchResponse]| got.iter().filter(|r| r.created).count() >= n_created;
        let what = format!("created response of watch {}", spec.name);
        a.wait_for(
            Duration::from_secs(10),
            &format!("{what} (reference)"),
            pred,
        )
        .await?;
        b.wait_for(Duration::from_secs(10), &format!("{what} (subject)"), pred)
            .await?;
        let ca = a
            .got
            .iter()
            .filter(|r| r.created)
            .nth(n_created - 1)
            .unwrap();
        let cb = b
            .got
            .iter()
            .filter(|r| r.created)
            .nth(n_created - 1)
            .unwrap();
        if control_view(ca) != control_view(cb) {
            bail!(
                "watch {}: created responses differ for {:?}\n  reference: {ca:?}\n  subject:   {cb:?}",
                spec.name,
                spec.create
            );
        }
        spec.stream = stream;
        spec.watch_id = ca.watch_id;
        if spec.create.start_revision == 0 {
            spec.after_rev = ca.header.as_ref().map_or(0, |h| h.revision);
        }
        self.specs.push(spec);
        Ok(())
    }

    /// Wait until each stream's all-keys watcher has delivered every revision up to `rev`, on
    /// both sides (see the module docs: keeps etcd's `prev_kv` deterministic).
    async fn barrier(&mut self, rev: i64) -> Result<()> {
        for spec in self.specs.iter().filter(|s| s.all_keys) {
            if rev <= spec.after_rev {
                continue;
            }
            let (a, b) = &mut self.streams[spec.stream];
            let id = spec.watch_id;
            let what = format!("watch {} to reach revision {rev}", spec.name);
            let pred = |got: &[WatchResponse]| max_rev(got, id) >= rev;
            a.wait_for(
                Duration::from_secs(15),
                &format!("{what} (reference)"),
                pred,
            )
            .await?;
            b.wait_for(Duration::from_secs(15), &format!("{what} (subject)"), pred)
                .await?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        for (a, b) in &mut self.streams {
            a.drain()?;
            b.drain()?;
        }
        Ok(())
    }

    /// Wait for every watcher to deliver `final_rev` (or its cancel), then compare everything.
    async fn finish(&mut self, final_rev: i64) -> Result<usize> {
        let mut events = 0;
        for spec in &self.specs {
            let (a, b) = &mut self.streams[spec.stream];
            let id = spec.watch_id;
            for (side, s) in [("reference", &mut *a), ("subject", &mut *b)] {
                if spec.expect_cancel {
                    s.wait_for(
                        Duration::from_secs(15),
                        &format!("cancel of watch {} ({side})", spec.name),
                        |got| got.iter().any(|r| r.watch_id == id && r.canceled),
                    )
                    .await?;
                } else {
                    s.wait_for(
                        Duration::from_secs(15),
                        &format!("watch {} to reach revision {final_rev} ({side})", spec.name),
                        |got| max_rev(got, id) >= final_rev,
                    )
                    .await?;
                }
            }
        }
        // a moment for anything that should not come (duplicates, events after a cancel)
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.drain()?;
        for spec in &self.specs {
            let (a, b) = &self.streams[spec.stream];
            let id = spec.watch_id;
            let ev = |got: &[WatchResponse]| -> Vec<Event> {
                got.iter()
                    .filter(|r| r.watch_id == id)
                    .flat_map(|r| r.events.iter().cloned())
                    .collect()
            };
            let (ea, eb) = (ev(&a.got), ev(&b.got));
            for (side, got) in [("reference", &a.got), ("subject", &b.got)] {
                check_watch_atomic(got, id)
                    .map_err(|e| anyhow!("watch {} ({side}): {e}", spec.name))?;
            }
            if ea != eb {
                let i = ea
                    .iter()
                    .zip(&eb)
                    .position(|(x, y)| x != y)
                    .unwrap_or(ea.len().min(eb.len()));
                bail!(
                    "watch {} ({:?}): event lists differ at event #{i} (reference has {}, subject {})\n  reference: {:?}\n  subject:   {:?}\n  previous (both): {:?}",
                    spec.name,
                    spec.create,
                    ea.len(),
                    eb.len(),
                    ea.get(i),
                    eb.get(i),
                    i.checked_sub(1).and_then(|j| ea.get(j)),
                );
            }
            events += ea.len();
            let ctl = |got: &[WatchResponse]| -> Vec<String> {
                got.iter()
                    .filter(|r| r.watch_id == id && (r.created || r.canceled))
                    .map(control_view)
                    .collect()
            };
            let (ca, cb) = (ctl(&a.got), ctl(&b.got));
            if ca != cb {
                bail!(
                    "watch {} ({:?}): control responses differ\n  reference: {ca:#?}\n  subject:   {cb:#?}",
                    spec.name,
                    spec.create
                );
            }
        }
        // progress request on the first stream: answered with watch_id -1 at the current revision
        let (a, b) = &mut self.streams[0];
        let progress = WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        };
        let mut revs = Vec::new();
        for (side, s) in [("reference", &mut *a), ("subject", &mut *b)] {
            let before = s.got.len();
            s.send(progress.clone())?;
            s.wait_for(
                Duration::from_secs(10),
                &format!("progress response ({side})"),
                |got| got[before..].iter().any(|r| r.watch_id == -1),
            )
            .await?;
            let r = s.got[before..].iter().find(|r| r.watch_id == -1).unwrap();
            revs.push(r.header.as_ref().map(|h| h.revision));
        }
        if revs[0] != revs[1] || revs[0] != Some(final_rev) {
            bail!(
                "progress response revision: reference {:?}, subject {:?}, expected {final_rev}",
                revs[0],
                revs[1]
            );
        }
        Ok(events)
    }
}

/// Events of a watcher: revisions non-decreasing inside a response, and one revision never
/// split across responses.
fn check_watch_atomic(got: &[WatchResponse], watch_id: i64) -> Result<()> {
    let mut last = 0;
    for r in got
        .iter()
        .filter(|r| r.watch_id == watch_id && !r.events.is_empty())
    {
        let revs: Vec<i64> = r
            .events
            .iter()
            .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
            .collect();
        if revs[0] <= last || revs.windows(2).any(|w| w[1] < w[0]) {
            bail!("events out of order or a revision split across responses: previous response ended at {last}, this one has revisions {revs:?}");
        }
        last = *revs.last().unwrap();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------------------------

/// What one seed did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub seed: u64,
    pub ops: usize,
    /// Ops both sides answered with the same error.
    pub errors: usize,
    pub watch_events: usize,
    pub final_revision: i64,
    pub by_kind: std::collections::BTreeMap<&'static str, usize>,
    pub elapsed: Duration,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} ops ({} errors, equal on both) in {:.1?}, final revision {}, {} watch events; {:?}",
            self.seed,
            self.ops,
            self.errors,
            self.elapsed,
            self.final_revision,
            self.watch_events,
            self.by_kind
        )
    }
}

/// Keys the final txn writes so every watcher sees the final revision.
const SENTINELS: &[&[u8]] = &[b"a/~end", b"b/~end", b"/registry/~end", b"\x01~end"];

/// Run `ops` generated ops of `seed` against `reference` and `subject` (fresh servers) and
/// compare every reply and, at the end, every watch event. The error names the seed, the op
/// index, the request and both replies.
pub async fn run_seed(reference: &str, subject: &str, seed: u64, ops: usize) -> Result<Stats> {
    let started = Instant::now();
    let mut ca = Client::connect(reference).await?;
    let mut cb = Client::connect(subject).await?;
    let mut gen = Generator::new(seed);
    let mut stats = Stats {
        seed,
        ..Default::default()
    };
    let mut history: VecDeque<String> = VecDeque::new();
    let trace = std::env::var_os("SHALE_DIFF_TRACE").is_some_and(|v| v != "0");
    let mut watches = Watches::new();
    let ctx = |i: usize, history: &VecDeque<String>| {
        let mut s = format!(
            "seed {seed}, op #{i} (reproduce: SHALE_DIFF_SEED={seed} SHALE_DIFF_OPS={ops}); reference {reference}, subject {subject}"
        );
        if !history.is_empty() {
            s.push_str("\n  preceding ops:");
            for h in history {
                let _ = write!(s, "\n    {h}");
            }
        }
        s
    };

    // stream 0 from the start: prefix watch with prev_kv, all keys, NODELETE-filtered prefix
    let start_specs = [
        WatchSpec {
            name: "s0/prefix-a-prev_kv",
            stream: 0,
            watch_id: 0,
            create: WatchCreateRequest {
                key: Bytes::from_static(b"a"),
                range_end: prefix_end(b"a"),
                prev_kv: true,
                ..Default::default()
            },
            all_keys: false,
            expect_cancel: false,
            after_rev: 0,
        },
        WatchSpec {
            name: "s0/all-keys",
            stream: 0,
            watch_id: 0,
            create: WatchCreateRequest {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                ..Default::default()
            },
            all_keys: true,
            expect_cancel: false,
            after_rev: 0,
        },
        WatchSpec {
            name: "s0/registry-nodelete-prev_kv",
            stream: 0,
            watch_id: 0,
            create: WatchCreateRequest {
                key: Bytes::from_static(b"/registry/"),
                range_end: prefix_end(b"/registry/"),
                prev_kv: true,
                filters: vec![watch_create_request::FilterType::Nodelete as i32],
                ..Default::default()
            },
            all_keys: false,
            expect_cancel: false,
            after_rev: 0,
        },
    ];
    for spec in start_specs {
        watches
            .create((&ca, &cb), 0, spec)
            .await
            .with_context(|| ctx(0, &history))?;
    }

    for i in 0..ops {
        if i == ops / 2 {
            open_second_stream(&mut watches, &mut gen, (&ca, &cb))
                .await
                .with_context(|| ctx(i, &history))?;
        }
        let op = gen.next_op();
        if matches!(op, Op::Compact(_)) {
            watches
                .barrier(gen.cur_rev)
                .await
                .with_context(|| ctx(i, &history))?;
        }
        let (a, b) = tokio::join!(ca.exec(&op), cb.exec(&op));
        for (side, r) in [("reference", &a), ("subject", &b)] {
            if r.is_transport_failure() {
                bail!(
                    "{side} failed at {} (crashed or unreachable?)\n  request: {:#?}\n  reference reply: {a:?}\n  subject reply: {b:?}",
                    ctx(i, &history),
                    op
                );
            }
        }
        if let Err(diff) = compare(&op, &a, &b) {
            bail!(
                "MISMATCH at {}\n  request: {:#?}\n  reference reply: {:#?}\n  subject reply:   {:#?}\n  {diff}",
                ctx(i, &history),
                op,
                a,
                b
            );
        }
        gen.observe(&op, &a);
        stats.ops += 1;
        stats.errors += usize::from(a.is_err());
        *stats.by_kind.entry(op.kind()).or_default() += 1;
        let line = format!("#{i} {} -> {}", op.brief(), brief_reply(&a));
        if trace {
            eprintln!("diff trace: seed {seed} #{i} {op:?} -> {}", brief_reply(&a));
        }
        history.push_back(line);
        if history.len() > 12 {
            history.pop_front();
        }
        if i % 64 == 0 {
            watches.drain().with_context(|| ctx(i, &history))?;
        }
    }

    // final write: one revision every watcher sees
    let fin = Op::Txn(TxnRequest {
        success: SENTINELS
            .iter()
            .map(|k| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: Bytes::from_static(k),
                    value: Bytes::from_static(b"end"),
                    ..Default::default()
                })),
            })
            .collect(),
        ..Default::default()
    });
    let (a, b) = tokio::join!(ca.exec(&fin), cb.exec(&fin));
    if let Err(diff) = compare(&fin, &a, &b) {
        bail!(
            "MISMATCH at final txn ({})\n  reference reply: {a:#?}\n  subject reply: {b:#?}\n  {diff}",
            ctx(ops, &history)
        );
    }
    let final_rev = a.revision().context("final txn failed")?;
    stats.final_revision = final_rev;
    stats.watch_events = watches
        .finish(final_rev)
        .await
        .with_context(|| format!("WATCH MISMATCH: {}", ctx(ops, &history)))?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Stream 1, halfway: replay all keys from an old revision (the barrier of this stream), a
/// watch from a compacted revision (must be canceled), one from a future revision.
async fn open_second_stream(
    watches: &mut Watches,
    gen: &mut Generator,
    clients: (&Client, &Client),
) -> Result<()> {
    let (cur, compact) = (gen.cur_rev, gen.compact_rev);
    let lo = (compact + 1).max(1);
    let start = if cur > lo {
        lo + gen.below((cur - lo).min(200))
    } else {
        cur.max(1)
    };
    watches
        .create(
            clients,
            1,
            WatchSpec {
                name: "s1/all-keys-from-old-rev-prev_kv",
                stream: 1,
                watch_id: 0,
                create: WatchCreateRequest {
                    key: Bytes::from_static(b"\0"),
                    range_end: Bytes::from_static(b"\0"),
                    start_revision: start,
                    prev_kv: true,
                    ..Default::default()
                },
                all_keys: true,
                expect_cancel: false,
                after_rev: start - 1,
            },
        )
        .await?;
    // let it catch up before anything can compact under it
    watches.barrier(cur).await?;
    if compact >= 2 {
        watches
            .create(
                clients,
                1,
                WatchSpec {
                    name: "s1/prefix-b-from-compacted-rev",
                    stream: 1,
                    watch_id: 0,
                    create: WatchCreateRequest {
                        key: Bytes::from_static(b"b"),
                        range_end: prefix_end(b"b"),
                        start_revision: compact - 1,
                        ..Default::default()
                    },
                    all_keys: false,
                    expect_cancel: true,
                    after_rev: 0,
                },
            )
            .await?;
        // etcd cancels it from a sync loop (every 100 ms) with the compact revision of that
        // moment: wait for the cancel before anything else can compact
        let spec = watches.specs.last().expect("just created");
        let id = spec.watch_id;
        let (a, b) = &mut watches.streams[1];
        for (side, s) in [("reference", a), ("subject", b)] {
            s.wait_for(
                Duration::from_secs(10),
                &format!("cancel of watch {} ({side})", spec.name),
                |got| got.iter().any(|r| r.watch_id == id && r.canceled),
            )
            .await?;
        }
    }
    let future = cur + 5;
    watches
        .create(
            clients,
            1,
            WatchSpec {
                name: "s1/prefix-b-from-future-rev-prev_kv",
                stream: 1,
                watch_id: 0,
                create: WatchCreateRequest {
                    key: Bytes::from_static(b"b"),
                    range_end: prefix_end(b"b"),
                    start_revision: future,
                    prev_kv: true,
                    ..Default::default()
                },
                all_keys: false,
                expect_cancel: false,
                after_rev: future - 1,
            },
        )
        .await
}

fn brief_reply(r: &Reply) -> String {
    match r {
        Reply::Error { code, message } => format!("ERR {code:?} {message:?}"),
        Reply::Txn(t) => format!(
            "txn rev {:?} succeeded={} ({} responses)",
            t.header.as_ref().map(|h| h.revision),
            t.succeeded,
            t.responses.len()
        ),
        Reply::Range(x) => format!(
            "range rev {:?} count={} kvs={} more={}",
            x.header.as_ref().map(|h| h.revision),
            x.count,
            x.kvs.len(),
            x.more
        ),
        other => format!("ok rev {:?}", other.revision()),
    }
}

/// Seeds and op counts from the environment: `SHALE_DIFF_SEED` (one seed or a comma list;
/// default `default_seeds`) and `SHALE_DIFF_OPS` (total ops over all seeds; default
/// `default_total`). Returns (seed, ops for that seed).
pub fn plan_from_env(default_seeds: &[u64], default_total: usize) -> Result<Vec<(u64, usize)>> {
    let seeds: Vec<u64> = match std::env::var("SHALE_DIFF_SEED") {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<u64>()
                    .with_context(|| format!("SHALE_DIFF_SEED: bad seed {x:?}"))
            })
            .collect::<Result<_>>()?,
        _ => default_seeds.to_vec(),
    };
    let total: usize = match std::env::var("SHALE_DIFF_OPS") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .with_context(|| format!("SHALE_DIFF_OPS: bad number {s:?}"))?,
        _ => default_total,
    };
    anyhow::ensure!(!seeds.is_empty(), "no seeds");
    let per = total.div_ceil(seeds.len()).max(1);
    Ok(seeds.into_iter().map(|s| (s, per)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_like_etcd() {
        assert_eq!(prefix_end(b"a"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::from_static(b"\0"));
        assert_eq!(prefix_end(b""), Bytes::from_static(b"\0"));
    }

    #[test]
    fn generator_is_deterministic() {
        let (mut a, mut b) = (Generator::new(7), Generator::new(7));
        for _ in 0..2000 {
            assert_eq!(a.next_op(), b.next_op());
        }
    }

    #[test]
    fn ties_of_large_non_key_sorts_are_ignored() {
        let kv = |k: &'static [u8], v: i64| KeyValue {
            key: Bytes::from_static(k),
            version: v,
            ..Default::default()
        };
        let op = Op::Range(RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            sort_target: range_request::SortTarget::Version as i32,
            limit: 3,
            ..Default::default()
        });
        let r = |kvs| {
            Reply::Range(RangeResponse {
                kvs,
                more: true,
                count: 10,
                ..Default::default()
            })
        };
        let a = r(vec![kv(b"b", 1), kv(b"a", 1), kv(b"c", 2)]);
        let b = r(vec![kv(b"a", 1), kv(b"b", 1), kv(b"d", 2)]);
        assert!(compare(&op, &a, &b).is_ok());
        let c = r(vec![kv(b"a", 1), kv(b"c", 2), kv(b"d", 2)]);
        assert!(compare(&op, &a, &c).is_err());
    }
}
