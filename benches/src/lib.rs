//! # shale-bench — load harness for any etcd v3 endpoint
//!
//! The same load runs against Shale and real etcd so their numbers can be compared on one
//! machine (DESIGN.md section 6). The pieces, each reusable by the Kubernetes-shaped
//! scenarios S1–S6 that grow on top of them:
//!
//! * [`pool`] — `--conns` gRPC channels (one HTTP/2 connection each) over the `--endpoints`;
//!   client `i` uses channel `i % conns`, as etcd's `benchmark` does; `https://` endpoints
//!   with etcdctl's `--cacert`/`--cert`/`--key`/`--insecure-skip-tls-verify`.
//! * [`workload`] — what one request is ([`workload::Workload`]); `put` and `range` follow
//!   etcd's `benchmark put` / `benchmark range`.
//! * [`runner`] — drives `--clients` concurrent clients through `--total` requests, closed
//!   loop or at a fixed `--rate`, recording latencies.
//! * [`report`] — HDR-histogram latency recorder and the [`report::Report`] (throughput,
//!   percentiles, errors) printed as text or JSON.
//! * [`sysinfo`] — process CPU / RSS from `/proc`, machine description, dates.
//! * [`compare`] — starts etcd and Shale one after the other with fresh data dirs, runs the
//!   identical load against each and writes `report.md` / `report.json`; with `--tls` both
//!   run with client and peer mTLS on certificates made by [`certs`].
//! * [`restart`] — kill -9 a member, start it on the same data dir, time it until a
//!   linearizable read succeeds (S7's restart-to-ready).

pub mod certs;
pub mod compare;
pub mod continuity;
pub mod kube;
pub mod monitor;
pub mod objects;
pub mod phase;
pub mod plot;
pub mod pool;
pub mod report;
pub mod restart;
pub mod runner;
pub mod scenario;
pub mod scompare;
pub mod sysinfo;
pub mod topology;
pub mod watchers;
pub mod workload;
