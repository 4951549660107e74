//! The Cluster service: the member list, and membership changes executed by the leader
//! (a follower forwards them over the peer port).

use std::sync::Arc;

use shale_api::etcdserverpb::cluster_server::Cluster;
use shale_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use shale_api::shalepb::{
    forward_request::Request as Fwd, forward_response::Response as FwdAnswer, MemberChangeResult,
    MemberIdRequest, PeerMember,
};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Need};
use crate::ctx::{unexpected_response, Ctx};

pub struct ClusterService {
    pub ctx: Arc<Ctx>,
}

fn to_member(m: PeerMember) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        let ctx = &self.ctx;
        ctx.node
            .members()
            .into_iter()
            .map(|mut m| {
                // This member's own attributes are known before its publish is applied.
                if m.id == ctx.id.member_id && m.name.is_empty() {
                    m.name = ctx.id.name.clone();
                    m.client_urls = ctx.id.client_urls.clone();
                }
                to_member(m)
            })
            .collect()
    }

    /// Sends a membership change to the leader and returns (changed member, all members).
    async fn change(&self, req: Fwd) -> Result<(Option<Member>, Vec<Member>), Status> {
        match self.ctx.node.on_leader(req).await? {
            FwdAnswer::MemberChange(MemberChangeResult { member, members }) => Ok((
                member.map(to_member),
                members.into_iter().map(to_member).collect(),
            )),
            _ => Err(unexpected_response()),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.authorize(&Caller::from_request(&req), Need::Admin)?;
        let r = req.into_inner();
        let (member, members) = self
            .change(Fwd::MemberAdd(shale_api::shalepb::MemberAddRequest {
                peer_urls: r.peer_ur_ls,
                is_learner: r.is_learner,
            }))
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(ctx.header(0)),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.authorize(&Caller::from_request(&req), Need::Admin)?;
        let id = req.into_inner().id;
        let (_, members) = self
            .change(Fwd::MemberRemove(MemberIdRequest { id }))
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(ctx.header(0)),
            members,
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.authorize(&Caller::from_request(&req), Need::Admin)?;
        let r = req.into_inner();
        let (_, members) = self
            .change(Fwd::MemberUpdate(shale_api::shalepb::MemberUpdateRequest {
                id: r.id,
                peer_urls: r.peer_ur_ls,
            }))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(ctx.header(0)),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
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
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.authorize(&Caller::from_request(&req), Need::Admin)?;
        let id = req.into_inner().id;
        let (_, members) = self
            .change(Fwd::MemberPromote(MemberIdRequest { id }))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(ctx.header(0)),
            members,
        }))
    }
}
