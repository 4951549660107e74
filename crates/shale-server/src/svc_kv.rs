//! The KV service: Range, Put, DeleteRange, Txn, Compact and RangeStream.
//!
//! Every handler is validate → delegate → map error → fill header. Reads run against the
//! local MVCC store (after a read barrier unless `serializable`); writes and compactions go
//! through Raft. Read-only Txns never touch the Raft log, as in etcd.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use shale_api::etcdserverpb::kv_server::Kv;
use shale_api::etcdserverpb::{
    range_request, request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RangeStreamResponse,
    TxnRequest, TxnResponse,
};
use shale_api::shalepb::{internal_request::Request as Cmd, internal_response::Response as Ans};
use shale_api::validate;
use shale_mvcc::kv;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Need};
use crate::ctx::{status_of, unexpected_response, Ctx};

pub struct KvService {
    pub ctx: Arc<Ctx>,
}

fn txn_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => r.serializable,
            Some(request_op::Request::RequestTxn(n)) => txn_serializable(n),
            _ => true,
        })
}

/// Keys per RangeStream chunk.
const STREAM_CHUNK: i64 = 500;

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            ctx.barrier().await?;
        }
        ctx.authorize(&caller, Need::Read(&r.key, &r.range_end))?;
        let store = ctx.store().clone();
        let mut resp = if r.limit == 0 && !r.range_end.is_empty() {
            // Potentially large: keep the runtime responsive.
            tokio::task::spawn_blocking(move || kv::range(&*store, &r))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(status_of)?
        } else {
            kv::range(&*store, &r).map_err(status_of)?
        };
        ctx.metrics
            .ranges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        validate::check_put(&r)?;
        ctx.authorize(&caller, Need::Put(&r))?;
        ctx.check_quota(r.key.len() + r.value.len()).await?;
        match ctx.propose(Cmd::Put(r)).await? {
            Ans::Put(mut p) => {
                ctx.fill(&mut p.header);
                Ok(Response::new(p))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        validate::check_delete_range(&r)?;
        ctx.authorize(&caller, Need::DeleteRange(&r))?;
        match ctx.propose(Cmd::DeleteRange(r)).await? {
            Ans::DeleteRange(mut d) => {
                ctx.fill(&mut d.header);
                Ok(Response::new(d))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        validate::check_txn(&r, ctx.limits.max_txn_ops)?;
        if kv::is_txn_readonly(&r) {
            if !txn_serializable(&r) {
                ctx.barrier().await?;
            }
            ctx.authorize(&caller, Need::Txn(&r))?;
            let mut resp = kv::read_txn(ctx.store(), &r).map_err(status_of)?;
            ctx.fill(&mut resp.header);
            return Ok(Response::new(resp));
        }
        ctx.authorize(&caller, Need::Txn(&r))?;
        ctx.check_quota(prost::Message::encoded_len(&r)).await?;
        match ctx.propose(Cmd::Txn(r)).await? {
            Ans::Txn(mut t) => {
                ctx.fill(&mut t.header);
                Ok(Response::new(t))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.authorize(&Caller::from_request(&req), Need::Admin)?;
        let r = req.into_inner();
        let physical = r.physical;
        match ctx.propose(Cmd::Compaction(r)).await? {
            Ans::Compaction(mut c) => {
                if physical {
                    let store = ctx.store().clone();
                    tokio::task::spawn_blocking(move || store.wait_compaction())
                        .await
                        .map_err(|e| Status::internal(e.to_string()))?;
                }
                ctx.fill(&mut c.header);
                Ok(Response::new(c))
            }
            _ => Err(unexpected_response()),
        }
    }

    type RangeStreamStream =
        Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

    async fn range_stream(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let ctx = self.ctx.clone();
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let mut r = req.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            ctx.barrier().await?;
        }
        ctx.authorize(&caller, Need::Read(&r.key, &r.range_end))?;
        // Pin the revision so every chunk reads the same snapshot.
        let current = ctx.store().current_revision();
        if r.revision <= 0 {
            r.revision = current;
        }
        let plain = r.sort_order == range_request::SortOrder::None as i32
            && (r.sort_target == range_request::SortTarget::Key as i32)
            && r.min_mod_revision == 0
            && r.max_mod_revision == 0
            && r.min_create_revision == 0
            && r.max_create_revision == 0
            && !r.count_only;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RangeStreamResponse, Status>>(2);
        tokio::spawn(async move {
            let result = stream_chunks(&ctx, r, plain, &tx).await;
            if let Err(s) = result {
                let _ = tx.send(Err(s)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

async fn stream_chunks(
    ctx: &Arc<Ctx>,
    r: RangeRequest,
    plain: bool,
    tx: &tokio::sync::mpsc::Sender<Result<RangeStreamResponse, Status>>,
) -> Result<(), Status> {
    let wrap = |resp: RangeResponse| RangeStreamResponse {
        range_response: Some(resp),
    };
    if !plain {
        let mut resp = kv::range(&**ctx.store(), &r).map_err(status_of)?;
        ctx.fill(&mut resp.header);
        let mut kvs = std::mem::take(&mut resp.kvs);
        while kvs.len() > STREAM_CHUNK as usize {
            let rest = kvs.split_off(STREAM_CHUNK as usize);
            let chunk = RangeResponse {
                kvs,
                ..Default::default()
            };
            if tx.send(Ok(wrap(chunk))).await.is_err() {
                return Ok(());
            }
            kvs = rest;
        }
        resp.kvs = kvs;
        let _ = tx.send(Ok(wrap(resp))).await;
        return Ok(());
    }
    let mut sent: i64 = 0;
    let mut key = r.key.clone();
    loop {
        let want = if r.limit > 0 {
            (r.limit - sent).min(STREAM_CHUNK)
        } else {
            STREAM_CHUNK
        };
        let page = RangeRequest {
            key: key.clone(),
            limit: want,
            ..r.clone()
        };
        let store = ctx.store().clone();
        let mut resp = tokio::task::spawn_blocking(move || kv::range(&*store, &page))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status_of)?;
        sent += resp.kvs.len() as i64;
        let done = !resp.more || (r.limit > 0 && sent >= r.limit);
        if done {
            let total = kv::range(
                &**ctx.store(),
                &RangeRequest {
                    count_only: true,
                    ..r.clone()
                },
            )
            .map_err(status_of)?;
            resp.count = total.count;
            resp.more = r.limit > 0 && total.count > sent;
            ctx.fill(&mut resp.header);
            let _ = tx.send(Ok(wrap(resp))).await;
            return Ok(());
        }
        if let Some(last) = resp.kvs.last() {
            let mut next = last.key.to_vec();
            next.push(0);
            key = Bytes::from(next);
        }
        let chunk = RangeResponse {
            kvs: resp.kvs,
            ..Default::default()
        };
        if tx.send(Ok(wrap(chunk))).await.is_err() {
            return Ok(());
        }
    }
}
