//! The runner: one seed against two endpoints.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use shale_api::etcdserverpb::{
    request_op, watch_create_request, PutRequest, RequestOp, TxnRequest, WatchCreateRequest,
};

use super::client::Client;
use super::compare::compare;
use super::gen::Generator;
use super::op::{Op, Reply};
use super::prefix_end;
use super::watch::{WatchSpec, Watches};

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
