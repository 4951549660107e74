//! S3: LIST storm. `objects` pods of `value_size` bytes; every LIST shape in `lists` (paged
//! 10000 and 500, unpaged, keys_only, count_only, RangeStream) at every concurrency in
//! `concurrency` (closed loop: each client starts its next complete LIST when the previous
//! one ends), each phase with `bg_rate` guarded pod updates per second beside it. A system
//! without RangeStream (etcd 3.5 answers Unimplemented) gets that phase marked unsupported.
//! The summary quotes the first shape at the highest concurrency; peak server RSS is the
//! figure this scenario is about.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use shale_api::etcdserverpb::RangeRequest;

use super::gens::ListGen;
use super::params::parse_list;
use super::{prefix, BgLoad, Ctx, PhaseResult};
use crate::kube::ListKind;
use crate::objects::Kind;
use crate::phase::{Mode, Plan};
use crate::pool::kv_client;

/// `None` if the server has RangeStream, else why not.
async fn range_stream_missing(ctx: &Ctx) -> Option<String> {
    let mut kv = kv_client(ctx.pool.channel(0));
    let req = RangeRequest {
        key: Bytes::from_static(b"/registry/health"),
        ..Default::default()
    };
    match kv.range_stream(req).await {
        Err(s) if s.code() == tonic::Code::Unimplemented => Some(format!(
            "KV/RangeStream not implemented by this server: {}",
            s.message()
        )),
        _ => None,
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<usize> {
    let bg: Arc<dyn BgLoad> = Arc::new(ctx.preloaded_churn(Kind::Pod, 1, (100, 0)).await?);
    let conc = ctx.p.concurrency.clone();
    let max_c = conc.iter().copied().max().unwrap_or(1);
    let mut headline = None;
    for shape in ctx.p.lists.clone() {
        let kind = parse_list(&shape)?;
        let missing = if kind == ListKind::Stream {
            range_stream_missing(ctx).await
        } else {
            None
        };
        for &c in &conc {
            let name = format!("list {} x{c}", kind.label());
            let mode = Mode::Closed { clients: c };
            if let Some(why) = &missing {
                ctx.phases
                    .push(PhaseResult::not_run(&name, mode, why.clone()));
                continue;
            }
            let gen = Arc::new(ListGen::new(prefix(Kind::Pod), kind));
            let plan = Plan {
                name,
                mode,
                duration: ctx.phase_duration(),
                max_ops: None,
                timeout: ctx.timeout(),
            };
            let bg_plan = Plan {
                name: format!("background updates {}/s", ctx.p.bg_rate),
                mode: Mode::Open {
                    rate: ctx.p.bg_rate,
                },
                ..plan.clone()
            };
            let i = ctx
                .phase(gen.clone(), plan, None, Some((bg.clone(), bg_plan)))
                .await?;
            let ph = &mut ctx.phases[i];
            let lists = ph.load.report.ok.max(1) as f64;
            ph.extra.insert(
                "objects_per_list".into(),
                gen.objects.load(Ordering::Relaxed) as f64 / lists,
            );
            ph.extra.insert(
                "mib_per_list".into(),
                gen.bytes.load(Ordering::Relaxed) as f64 / lists / 1048576.0,
            );
            ph.extra.insert(
                "pages_per_list".into(),
                gen.pages.load(Ordering::Relaxed) as f64 / lists,
            );
            if c == max_c && headline.is_none() {
                headline = Some(i);
            }
        }
    }
    Ok(headline.unwrap_or(0))
}
