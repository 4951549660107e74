//! The Auth service. Shale does not implement users and roles yet: authentication is always
//! disabled and answers are those etcd gives while auth is disabled (`AuthStatus` = disabled,
//! `Authenticate` = "authentication is not enabled", `AuthEnable` = "root user does not
//! exist"); user and role management is refused with a clear message.

use std::sync::Arc;

use shale_api::error::EtcdError;
use shale_api::etcdserverpb::auth_server::Auth;
use shale_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::ctx::Ctx;

pub struct AuthService {
    pub ctx: Arc<Ctx>,
}

fn unsupported() -> Status {
    Status::unimplemented("etcdserver: users and roles are not supported by Shale yet (auth is always disabled)")
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, _r: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        Err(EtcdError::RootUserNotExist.into())
    }

    async fn auth_disable(&self, _r: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        Ok(Response::new(AuthDisableResponse { header: Some(self.ctx.header(0)) }))
    }

    async fn auth_status(&self, _r: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(AuthStatusResponse { header: Some(self.ctx.header(0)), enabled: false, auth_revision: 0 }))
    }

    async fn authenticate(&self, _r: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        Err(EtcdError::AuthNotEnabled.into())
    }

    async fn user_add(&self, _r: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        Err(unsupported())
    }

    async fn user_get(&self, _r: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        Err(unsupported())
    }

    async fn user_list(&self, _r: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        Err(unsupported())
    }

    async fn user_delete(&self, _r: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        Err(unsupported())
    }

    async fn user_change_password(&self, _r: Request<AuthUserChangePasswordRequest>) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        Err(unsupported())
    }

    async fn user_grant_role(&self, _r: Request<AuthUserGrantRoleRequest>) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        Err(unsupported())
    }

    async fn user_revoke_role(&self, _r: Request<AuthUserRevokeRoleRequest>) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        Err(unsupported())
    }

    async fn role_add(&self, _r: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        Err(unsupported())
    }

    async fn role_get(&self, _r: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        Err(unsupported())
    }

    async fn role_list(&self, _r: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        Err(unsupported())
    }

    async fn role_delete(&self, _r: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        Err(unsupported())
    }

    async fn role_grant_permission(&self, _r: Request<AuthRoleGrantPermissionRequest>) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        Err(unsupported())
    }

    async fn role_revoke_permission(&self, _r: Request<AuthRoleRevokePermissionRequest>) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        Err(unsupported())
    }
}
