//! The KV service: Range, Put, DeleteRange, Txn, Compact and RangeStream.
//!
//! Every handler is validate → delegate → map error → fill header. Reads run against the
//! local MVCC store (after a read barrier unless `serializable`); writes and compactions go
//! through Raft. Read-only Txns never touch the Raft log, as in etcd. Range and RangeStream
//! are answered by [`crate::list`] from the stored records.

use std::sync::Arc;

use shale_api::etcdserverpb::kv_server::Kv;
use shale_api::etcdserverpb::{
    request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, TxnRequest, TxnResponse,
};
use shale_api::range_wire::WireRangeResponse;
use shale_api::shalepb::{internal_request::Request as Cmd, internal_response::Response as Ans};
use shale_api::validate;
use shale_mvcc::kv;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Need};
use crate::ctx::{status_of, unexpected_response, Ctx};
use crate::list;

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

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<WireRangeResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            ctx.barrier().await?;
        }
        ctx.authorize(&caller, Need::Read(&r.key, &r.range_end))?;
        let resp = list::range(ctx, r).await?;
        ctx.metrics
            .ranges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    type RangeStreamStream = list::RangeStream;

    async fn range_stream(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let ctx = self.ctx.clone();
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            ctx.barrier().await?;
        }
        ctx.authorize(&caller, Need::Read(&r.key, &r.range_end))?;
        Ok(Response::new(list::stream(ctx, r)))
    }
}
