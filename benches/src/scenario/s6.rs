//! S6: parity with etcd's own `benchmark` tool: `put` (8-byte keys over `objects` keys,
//! `value_size`-byte values), `range` linearizable and serializable of one seeded key,
//! `txn-put` (a Txn with one put, no compare) — each `total` operations closed loop with
//! `clients` clients over `conns` connections — and `watch-latency`: `watchers[0]` watchers
//! (`watchers_per_stream` per stream) on one prefix while puts go to it at `rates[0]`/s; the
//! watch lag is the figure. The summary quotes `put`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;
use tonic::Status;

use super::{Ctx, PhaseWatch};
use crate::phase::{Mode, OpGen, Outcome, Plan};
use crate::pool::kv_client;
use crate::watchers::WatchSpec;
use crate::workload::put_varint;

const WATCH_PREFIX: &[u8] = b"/bench/watch-latency/";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    TxnPut,
    Range { serializable: bool },
    WatchPut,
}

struct ParityGen {
    op: Op,
    key_space: u64,
    value: Bytes,
}

impl ParityGen {
    fn key(&self, rng: &mut StdRng) -> Bytes {
        let mut k = vec![0u8; 8];
        put_varint(&mut k, rng.random_range(0..self.key_space) as i64);
        Bytes::from(k)
    }
}

impl OpGen for ParityGen {
    async fn op(
        &self,
        kv: &mut KvClient<Channel>,
        rng: &mut StdRng,
        seq: u64,
    ) -> Result<Outcome, Status> {
        let written = match self.op {
            Op::Put => {
                let req = PutRequest {
                    key: self.key(rng),
                    value: self.value.clone(),
                    ..Default::default()
                };
                kv.put(req).await?.into_inner().header.map(|h| h.revision)
            }
            Op::WatchPut => {
                let mut k = WATCH_PREFIX.to_vec();
                k.extend_from_slice(format!("{:04}", seq % 1000).as_bytes());
                let req = PutRequest {
                    key: Bytes::from(k),
                    value: self.value.clone(),
                    ..Default::default()
                };
                kv.put(req).await?.into_inner().header.map(|h| h.revision)
            }
            Op::TxnPut => {
                let txn = TxnRequest {
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: self.key(rng),
                            value: self.value.clone(),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                };
                kv.txn(txn).await?.into_inner().header.map(|h| h.revision)
            }
            Op::Range { serializable } => {
                let req = RangeRequest {
                    key: Bytes::from_static(b"foo"),
                    serializable,
                    ..Default::default()
                };
                kv.range(req).await?;
                None
            }
        };
        Ok(Outcome {
            written,
            ..Default::default()
        })
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<usize> {
    let mut value = vec![0u8; ctx.p.value_size];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut value);
    let value = Bytes::from(value);
    let mut kv = kv_client(ctx.pool.channel(0));
    kv.put(PutRequest {
        key: Bytes::from_static(b"foo"),
        value: value.clone(),
        ..Default::default()
    })
    .await
    .map_err(|s| anyhow::anyhow!("seeding the range key: {s}"))?;
    let key_space = ctx.p.objects.max(1);
    let gen = |op| {
        Arc::new(ParityGen {
            op,
            key_space,
            value: value.clone(),
        })
    };
    let (clients, duration, total, timeout) = (
        ctx.p.clients,
        ctx.phase_duration(),
        ctx.p.total,
        ctx.timeout(),
    );
    let closed = |name: &str| Plan {
        name: name.to_string(),
        mode: Mode::Closed { clients },
        duration,
        max_ops: Some(total),
        timeout,
    };
    let head = ctx.phase(gen(Op::Put), closed("put"), None, None).await?;
    let (g, p) = (
        gen(Op::Range {
            serializable: false,
        }),
        closed("range-linearizable"),
    );
    ctx.phase(g, p, None, None).await?;
    let (g, p) = (
        gen(Op::Range { serializable: true }),
        closed("range-serializable"),
    );
    ctx.phase(g, p, None, None).await?;
    ctx.phase(gen(Op::TxnPut), closed("txn-put"), None, None)
        .await?;
    let rate = ctx.p.rates.first().copied().unwrap_or(100.0);
    let cap = if ctx.p.quick { 3.0 } else { 30.0 };
    let secs = (ctx.p.total as f64 / rate).min(cap);
    let watchers = ctx.p.watchers.first().copied().unwrap_or(0);
    let w = (watchers > 0).then(|| PhaseWatch {
        spec: WatchSpec {
            prefix: Bytes::from_static(WATCH_PREFIX),
            watchers,
            per_stream: ctx.p.watchers_per_stream,
            prev_kv: false,
            progress_notify: false,
        },
        capacity: (rate * secs * 1.2) as usize + 1000,
    });
    let plan = Plan {
        name: format!("watch-latency {watchers} watchers, puts {rate}/s"),
        mode: Mode::Open { rate },
        duration: Duration::from_secs_f64(secs),
        max_ops: None,
        timeout: ctx.timeout(),
    };
    ctx.phase(gen(Op::WatchPut), plan, w, None).await?;
    Ok(head)
}
