//! The Lease service. Grant and revoke go through Raft; keep-alive, time-to-live and the
//! list are answered by this member's lessor (the leader's clock is the one that counts).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use shale_api::etcdserverpb::lease_server::Lease;
use shale_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use shale_api::shalepb::{
    forward_request::Request as Fwd, forward_response::Response as FwdAnswer,
    internal_request::Request as Cmd, internal_response::Response as Ans, LeaseIdRequest,
};
use shale_api::validate;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Caller, Need};
use crate::ctx::{unexpected_response, Ctx};

pub struct LeaseService {
    pub ctx: Arc<Ctx>,
}

impl LeaseService {
    /// Remaining and granted TTL of lease `id` by the leader's clock (-1 when unknown):
    /// read here when this member leads, else asked of the leader.
    async fn leader_ttl(ctx: &Ctx, id: i64, renew: bool) -> Result<(i64, i64), Status> {
        if ctx.node.status().is_leader {
            let now = Instant::now();
            return Ok(ctx.node.machine().with_lessor(|l| {
                if renew {
                    let t = l.renew(id, now).unwrap_or(0);
                    (t, t)
                } else {
                    (
                        l.remaining(id, now).unwrap_or(-1),
                        l.get(id).map_or(0, |x| x.ttl),
                    )
                }
            }));
        }
        let req = LeaseIdRequest { id };
        let fwd = if renew {
            Fwd::LeaseKeepAlive(req)
        } else {
            Fwd::LeaseTimeToLive(req)
        };
        match ctx.node.on_leader(fwd).await? {
            FwdAnswer::Lease(t) => Ok((t.ttl, t.granted_ttl)),
            _ => Err(unexpected_response()),
        }
    }

    async fn keep_alive_once(ctx: &Ctx, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        let (ttl, _) = Self::leader_ttl(ctx, id, true).await?;
        Ok(LeaseKeepAliveResponse {
            header: Some(ctx.header(0)),
            id,
            ttl,
        })
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let mut r = req.into_inner();
        validate::check_lease_grant(&r)?;
        ctx.authorize(&caller, Need::AnyUser)?;
        ctx.check_quota(0).await?;
        if r.id == 0 {
            // Decided here, before proposing, so apply stays deterministic.
            loop {
                let id = (rand::random::<u64>() >> 1) as i64;
                if id != 0 && !ctx.node.machine().with_lessor(|l| l.exists(id)) {
                    r.id = id;
                    break;
                }
            }
        }
        match ctx.propose(Cmd::LeaseGrant(r)).await? {
            Ans::LeaseGrant(mut g) => {
                ctx.fill(&mut g.header);
                Ok(Response::new(g))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        ctx.authorize(&caller, Need::LeaseWrite(r.id))?;
        match ctx.propose(Cmd::LeaseRevoke(r)).await? {
            Ans::LeaseRevoke(mut g) => {
                ctx.fill(&mut g.header);
                Ok(Response::new(g))
            }
            _ => Err(unexpected_response()),
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let ctx = self.ctx.clone();
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let inbound = req.into_inner();
        let out = inbound.then(move |m| {
            let ctx = ctx.clone();
            let caller = caller.clone();
            async move {
                let r = m?;
                ctx.authorize(&caller, Need::LeaseWrite(r.id))?;
                LeaseService::keep_alive_once(&ctx, r.id).await
            }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        ctx.authorize(
            &caller,
            if r.keys {
                Need::LeaseRead(r.id)
            } else {
                Need::AnyUser
            },
        )?;
        ctx.barrier().await?;
        let (ttl, granted_ttl) = Self::leader_ttl(ctx, r.id, false).await?;
        let resp = ctx.node.machine().with_lessor(|l| match l.get(r.id) {
            None => LeaseTimeToLiveResponse {
                header: Some(ctx.header(0)),
                id: r.id,
                ttl: -1,
                ..Default::default()
            },
            Some(lease) => LeaseTimeToLiveResponse {
                header: Some(ctx.header(0)),
                id: r.id,
                ttl,
                granted_ttl,
                keys: if r.keys {
                    lease.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
        });
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.barrier().await?;
        ctx.authorize(&Caller::from_request(&req), Need::AllLeasesRead)?;
        let leases = ctx
            .node
            .machine()
            .with_lessor(|l| l.ids())
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(ctx.header(0)),
            leases,
        }))
    }
}
