//! The Cluster service of a one-member cluster: the member list. Membership changes need
//! the peer transport and are refused with a clear error until then.

use std::sync::Arc;

use shale_api::etcdserverpb::cluster_server::Cluster;
use shale_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Need};
use crate::ctx::Ctx;

pub struct ClusterService {
    pub ctx: Arc<Ctx>,
}

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        let id = &self.ctx.id;
        vec![Member {
            id: id.member_id,
            name: id.name.clone(),
            peer_ur_ls: id.peer_urls.clone(),
            client_ur_ls: id.client_urls.clone(),
            is_learner: false,
        }]
    }
}

fn unsupported() -> Status {
    Status::failed_precondition(
        "etcdserver: membership changes are not supported by this Shale build (one-member clusters only)",
    )
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_metadata(req.metadata()), Need::Admin)?;
        Err(unsupported())
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_metadata(req.metadata()), Need::Admin)?;
        Err(unsupported())
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_metadata(req.metadata()), Need::Admin)?;
        Err(unsupported())
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_metadata(req.metadata());
        if req.into_inner().linearizable {
            ctx.barrier().await?;
        }
        ctx.authorize(&caller, Need::AnyUser)?;
        Ok(Response::new(MemberListResponse {
            header: Some(ctx.header(0)),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_metadata(req.metadata()), Need::Admin)?;
        Err(unsupported())
    }
}
