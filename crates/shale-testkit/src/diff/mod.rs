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

use bytes::Bytes;

mod client;
mod compare;
mod gen;
mod op;
mod run;
mod stream;
mod watch;

pub use client::Client;
pub use compare::{compare, first_difference, normalize};
pub use gen::Generator;
pub use op::{Op, Reply};
pub use run::{plan_from_env, run_seed, Stats};

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

#[cfg(test)]
mod tests {
    use super::*;
    use shale_api::etcdserverpb::{range_request, RangeRequest, RangeResponse};
    use shale_api::mvccpb::KeyValue;

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
