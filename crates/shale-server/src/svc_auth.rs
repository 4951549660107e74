//! The Auth service: etcd's users, roles and permissions.
//!
//! Changes go through Raft as `shalepb.InternalRequest` auth commands and are applied by the
//! machine's auth store; passwords are bcrypt-hashed here, before proposing (as etcd's
//! `v3_server.go` does), so apply stays cheap and deterministic. Reads (status, get, list)
//! are answered from the local auth store after a read barrier. Every method except
//! `Authenticate` needs the `root` role while auth is enabled (`UserGet` also allows the user
//! itself, `RoleGet` a holder of the role).

use std::sync::Arc;

use shale_api::error::EtcdError;
use shale_api::etcdserverpb::auth_server::Auth;
use shale_api::etcdserverpb::*;
use shale_api::shalepb::{internal_request::Request as Cmd, internal_response::Response as Ans};
use shale_machine::auth_store::encode_base64;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Need};
use crate::auth_token::TokenError;
use crate::ctx::{unexpected_response, Ctx};

pub struct AuthService {
    pub ctx: Arc<Ctx>,
}

/// bcrypt hash (`$2a$`, like Go's) of a password at `cost` (`--bcrypt-cost`), base64-encoded
/// as etcd puts it in `hashedPassword`. Runs off the async runtime: it costs tens of
/// milliseconds at the default cost.
async fn hash_password(password: String, cost: u32) -> Result<String, Status> {
    let h = tokio::task::spawn_blocking(move || {
        bcrypt::non_truncating_hash_with_result(password, cost)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| match e {
        bcrypt::BcryptError::Truncation(_) => {
            Status::unknown("bcrypt: password length exceeds 72 bytes")
        }
        e => Status::internal(e.to_string()),
    })?;
    Ok(encode_base64(
        h.format_for_version(bcrypt::Version::TwoA).as_bytes(),
    ))
}

/// Generates the proposal for one auth change: check the caller, propose, unwrap the answer.
macro_rules! change {
    ($self:ident, $req:ident, $need:expr, $cmd:ident, $ans:ident) => {{
        let ctx = &$self.ctx;
        ctx.check_has_leader($req.metadata())?;
        let caller = Caller::from_request(&$req);
        let r = $req.into_inner();
        ctx.authorize(&caller, $need(&r))?;
        match ctx.propose(Cmd::$cmd(r)).await? {
            Ans::$ans(mut a) => {
                ctx.fill(&mut a.header);
                Ok(Response::new(a))
            }
            _ => Err(unexpected_response()),
        }
    }};
}

fn admin<T>(_: &T) -> Need<'static> {
    Need::Admin
}

impl AuthService {
    /// Read barrier and permission check for a local read.
    async fn read_check<T>(&self, req: &Request<T>, need: Need<'_>) -> Result<(), Status> {
        self.ctx.check_has_leader(req.metadata())?;
        self.ctx.barrier().await?;
        self.ctx.authorize(&Caller::from_request(req), need)
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        change!(self, req, admin, AuthEnable, AuthEnable)
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let resp = change!(self, req, admin, AuthDisable, AuthDisable);
        if resp.is_ok() {
            self.ctx.tokens.disable();
        }
        resp
    }

    async fn auth_status(
        &self,
        req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        self.read_check(&req, Need::Admin).await?;
        let auth = self.ctx.node.machine().auth();
        let (enabled, auth_revision) = (auth.is_enabled(), auth.revision());
        drop(auth);
        Ok(Response::new(AuthStatusResponse {
            header: Some(self.ctx.header(0)),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.barrier().await?;
        let r = req.into_inner();
        loop {
            // etcd's CheckPassword: the hash and the auth revision it was read at.
            let (hash, checked) = {
                let auth = ctx.node.machine().auth();
                if !auth.is_enabled() {
                    return Err(EtcdError::AuthNotEnabled.into());
                }
                let Some(u) = auth.user(&r.name) else {
                    return Err(EtcdError::AuthFailed.into());
                };
                if u.options.is_some_and(|o| o.no_password) {
                    return Err(Status::unknown(
                        "auth: authentication failed, password was given for no password user",
                    ));
                }
                (
                    String::from_utf8_lossy(&u.password).into_owned(),
                    auth.revision(),
                )
            };
            let password = r.password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
            if !ok {
                tracing::info!(user = %r.name, "invalid password");
                return Err(EtcdError::AuthFailed.into());
            }
            // Optimistic concurrency like etcd: retry if the auth store changed meanwhile.
            if ctx.node.machine().auth().revision() != checked {
                continue;
            }
            let token = ctx.tokens.assign(&r.name, checked).map_err(|e| match e {
                TokenError::NoTokens => EtcdError::AuthFailed.into(),
                e => Status::unknown(e.to_string()),
            })?;
            return Ok(Response::new(AuthenticateResponse {
                header: Some(ctx.header(0)),
                token,
            }));
        }
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let mut r = req.into_inner();
        ctx.authorize(&caller, Need::Admin)?;
        if !r.options.is_some_and(|o| o.no_password) {
            r.hashed_password =
                hash_password(std::mem::take(&mut r.password), ctx.bcrypt_cost).await?;
        }
        r.password.clear();
        match ctx.propose(Cmd::AuthUserAdd(r)).await? {
            Ans::AuthUserAdd(mut a) => {
                ctx.fill(&mut a.header);
                Ok(Response::new(a))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let name = req.get_ref().name.clone();
        self.read_check(&req, Need::UserGet(&name)).await?;
        let auth = self.ctx.node.machine().auth();
        let roles = auth
            .user(&name)
            .map(|u| u.roles.clone())
            .ok_or(EtcdError::UserNotFound)?;
        drop(auth);
        Ok(Response::new(AuthUserGetResponse {
            header: Some(self.ctx.header(0)),
            roles,
        }))
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        self.read_check(&req, Need::Admin).await?;
        let users = self.ctx.node.machine().auth().user_names();
        Ok(Response::new(AuthUserListResponse {
            header: Some(self.ctx.header(0)),
            users,
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        change!(self, req, admin, AuthUserDelete, AuthUserDelete)
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let mut r = req.into_inner();
        ctx.authorize(&caller, Need::Admin)?;
        if !r.password.is_empty() {
            r.hashed_password =
                hash_password(std::mem::take(&mut r.password), ctx.bcrypt_cost).await?;
        }
        match ctx.propose(Cmd::AuthUserChangePassword(r)).await? {
            Ans::AuthUserChangePassword(mut a) => {
                ctx.fill(&mut a.header);
                Ok(Response::new(a))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        change!(self, req, admin, AuthUserGrantRole, AuthUserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        change!(self, req, admin, AuthUserRevokeRole, AuthUserRevokeRole)
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        change!(self, req, admin, AuthRoleAdd, AuthRoleAdd)
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let role = req.get_ref().role.clone();
        self.read_check(&req, Need::RoleGet(&role)).await?;
        let auth = self.ctx.node.machine().auth();
        let perm = auth
            .role(&role)
            .map(|r| r.key_permission.clone())
            .ok_or(EtcdError::RoleNotFound)?;
        drop(auth);
        Ok(Response::new(AuthRoleGetResponse {
            header: Some(self.ctx.header(0)),
            perm,
        }))
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        self.read_check(&req, Need::Admin).await?;
        let roles = self.ctx.node.machine().auth().role_names();
        Ok(Response::new(AuthRoleListResponse {
            header: Some(self.ctx.header(0)),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        change!(self, req, admin, AuthRoleDelete, AuthRoleDelete)
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        change!(
            self,
            req,
            admin,
            AuthRoleGrantPermission,
            AuthRoleGrantPermission
        )
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        change!(
            self,
            req,
            admin,
            AuthRoleRevokePermission,
            AuthRoleRevokePermission
        )
    }
}

#[cfg(test)]
mod tests {
    use super::hash_password;
    use shale_machine::auth_store::decode_base64;

    #[tokio::test]
    async fn passwords_are_hashed_at_the_given_cost() {
        for cost in [4, 5] {
            let h = hash_password("pw".into(), cost).await.expect("hash");
            let h = String::from_utf8(decode_base64(&h).expect("base64")).expect("utf8");
            assert!(h.starts_with(&format!("$2a$0{cost}$")), "{h}");
            assert!(bcrypt::verify("pw", &h).expect("verify"));
        }
    }
}
