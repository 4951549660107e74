//! Authentication and authorization of client requests: the one place where a handler asks
//! "may this caller do this?" ([`Ctx::authorize`]).
//!
//! Follows etcd 3.5 (`server/auth/store.go`, `etcdserver/apply_auth.go`,
//! `etcdserver/v3_server.go`, `api/v3rpc/{key,maintenance,watch}.go`):
//! * While auth is disabled every request is allowed and tokens are ignored.
//! * Who the caller is ([`AuthInfo`]: a user and an auth revision), in etcd's order
//!   (`EtcdServer.AuthInfoFromCtx`):
//!   1. a token from gRPC metadata `token` (or `authorization`, an optional `Bearer ` prefix
//!      stripped), checked by this member's token provider (`--auth-token`, see
//!      [`crate::auth_token`]). An unknown, expired, revoked or badly signed token fails with
//!      `etcdserver: invalid auth token`, even when a client certificate is present;
//!   2. with no token, the Common Name of the client certificate, when the TLS layer
//!      verified one (`--client-cert-auth`), acting at the current auth revision;
//!   3. neither: "no user", which fails checks with `etcdserver: user name is empty`.
//! * Key checks use the union of the user's roles' permissions; the `root` role may do
//!   anything. A key check by credentials older than the auth store (a JWT issued before a
//!   later auth change) fails with `etcdserver: revision of auth store is old` (etcd's
//!   `ErrAuthOldRevision`, which clients answer by authenticating again; etcd 3.5.1 sent it
//!   as `Unknown` `auth: revision in header is old`, 3.5.5 on as Shale does). Admin-only
//!   operations need the `root` role (`etcdserver: permission denied` otherwise,
//!   `etcdserver: user name not found` for a deleted user) and, as in etcd, do not look at
//!   the revision.
//!
//! Checks run here, in the gRPC layer, against the member's applied auth state (etcd checks
//! writes again at apply time; Shale does not, so a permission revoked between the check and
//! the apply of a write does not stop that one write).

use std::collections::HashMap;

use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, TxnRequest};
use shale_machine::auth_store::{Access, AuthStore};
use tonic::Status;

use crate::auth_token::AuthInfo;
use crate::ctx::Ctx;

/// The credentials a request carries: its token, if any, and the Common Name of its
/// verified client certificate, if any. Cheap to take before `Request::into_inner`.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    token: Option<String>,
    common_name: Option<std::sync::Arc<str>>,
}

impl Caller {
    /// The token from metadata `token` (or `authorization`, an optional `Bearer ` prefix
    /// stripped), and the certificate CN the TLS layer put into the request's extensions.
    /// Like etcd's `AuthInfoFromTLS`, a request carrying `grpcgateway-accept` metadata (a
    /// gRPC-gateway proxying with its own certificate) never acts as the certificate's CN.
    pub fn from_request<T>(req: &tonic::Request<T>) -> Caller {
        let md = req.metadata();
        let v = md.get("token").or_else(|| md.get("authorization"));
        let token = v
            .and_then(|v| v.to_str().ok())
            .map(|s| s.strip_prefix("Bearer ").unwrap_or(s).to_string());
        let common_name = if md.contains_key("grpcgateway-accept") {
            None
        } else {
            req.extensions()
                .get::<shale_tls::ConnInfo>()
                .and_then(|c| c.common_name.clone())
        };
        Caller { token, common_name }
    }
}

/// What a request needs to be allowed.
pub enum Need<'a> {
    /// Any authenticated user (etcd's `requireAuthInfo`).
    AnyUser,
    /// The `root` role (etcd's `IsAdminPermitted`).
    Admin,
    /// Read on `[key, range_end)` (Range, Watch create, a txn compare).
    Read(&'a [u8], &'a [u8]),
    Put(&'a PutRequest),
    DeleteRange(&'a DeleteRangeRequest),
    /// Every compare and every operation of both branches, nested txns included.
    Txn(&'a TxnRequest),
    /// Write on every key attached to the lease, or admin (LeaseRevoke, LeaseKeepAlive).
    LeaseWrite(i64),
    /// Read on every key attached to the lease, or admin (LeaseTimeToLive with keys).
    LeaseRead(i64),
    /// Read on every key attached to any lease, or admin (LeaseLeases).
    AllLeasesRead,
    /// Admin, or the user itself.
    UserGet(&'a str),
    /// Admin, or a user holding the role.
    RoleGet(&'a str),
}

/// Keys attached to leases, fetched before the auth store is locked (the lessor lives behind
/// the apply lock; never hold both).
type LeaseKeys = HashMap<i64, Vec<bytes::Bytes>>;

fn collect_txn_leases(t: &TxnRequest, out: &mut Vec<i64>) {
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) if p.lease != 0 => out.push(p.lease),
            Some(request_op::Request::RequestTxn(n)) => collect_txn_leases(n, out),
            _ => {}
        }
    }
}

struct Check<'a> {
    auth: &'a AuthStore,
    user: &'a str,
    /// The auth revision the caller's credentials carry (0 for no user).
    revision: u64,
    leases: &'a LeaseKeys,
}

impl Check<'_> {
    /// etcd's `isOpPermitted`: a user, credentials as new as the auth store, a permission.
    fn op(&self, key: &[u8], end: &[u8], a: Access) -> Result<(), EtcdError> {
        if self.auth.is_enabled() && !self.user.is_empty() && self.revision < self.auth.revision() {
            return Err(EtcdError::AuthOldRevision);
        }
        self.auth.check_op(self.user, key, end, a)
    }

    /// etcd's `checkLeasePuts`: admin, or write on every key attached to the lease.
    fn lease_keys(&self, id: i64, a: Access) -> Result<(), EtcdError> {
        if self.user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.auth.check_admin(self.user).is_ok() {
            return Ok(());
        }
        for k in self.leases.get(&id).into_iter().flatten() {
            self.op(k, b"", a)?;
        }
        Ok(())
    }

    fn put(&self, p: &PutRequest) -> Result<(), EtcdError> {
        self.op(&p.key, b"", Access::Write)?;
        if p.lease != 0 && self.leases.contains_key(&p.lease) {
            self.lease_keys(p.lease, Access::Write)?;
        }
        if p.prev_kv {
            self.op(&p.key, b"", Access::Read)?;
        }
        Ok(())
    }

    fn delete(&self, d: &DeleteRangeRequest) -> Result<(), EtcdError> {
        self.op(&d.key, &d.range_end, Access::Write)?;
        if d.prev_kv {
            self.op(&d.key, &d.range_end, Access::Read)?;
        }
        Ok(())
    }

    fn txn(&self, t: &TxnRequest) -> Result<(), EtcdError> {
        for c in &t.compare {
            self.op(&c.key, &c.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(t.failure.iter()) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    self.op(&r.key, &r.range_end, Access::Read)?
                }
                Some(request_op::Request::RequestPut(p)) => self.put(p)?,
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.op(&d.key, &d.range_end, Access::Read)?;
                    }
                    self.op(&d.key, &d.range_end, Access::Write)?;
                }
                Some(request_op::Request::RequestTxn(n)) => self.txn(n)?,
                None => {}
            }
        }
        Ok(())
    }

    fn need(&self, need: &Need<'_>) -> Result<(), EtcdError> {
        match need {
            Need::AnyUser if self.user.is_empty() => Err(EtcdError::UserEmpty),
            Need::AnyUser => Ok(()),
            Need::Admin => self.auth.check_admin(self.user),
            Need::Read(k, e) => self.op(k, e, Access::Read),
            Need::Put(p) => self.put(p),
            Need::DeleteRange(d) => self.delete(d),
            Need::Txn(t) => self.txn(t),
            Need::LeaseWrite(id) => self.lease_keys(*id, Access::Write),
            Need::LeaseRead(id) => self.lease_keys(*id, Access::Read),
            Need::AllLeasesRead => {
                if self.user.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if self.auth.check_admin(self.user).is_ok() {
                    return Ok(());
                }
                for k in self.leases.values().flatten() {
                    self.op(k, b"", Access::Read)?;
                }
                Ok(())
            }
            Need::UserGet(name) => match self.auth.check_admin(self.user) {
                Err(_) if *name == self.user => Ok(()),
                r => r,
            },
            Need::RoleGet(role) => match self.auth.check_admin(self.user) {
                Err(_) if self.auth.has_role(self.user, role) => Ok(()),
                r => r,
            },
        }
    }
}

impl Ctx {
    /// Who `caller` is (etcd's `AuthInfoFromCtx`): its token's user, else its certificate's
    /// CN, else nobody (an empty user at revision 0).
    pub fn auth_info(&self, caller: &Caller, auth: &AuthStore) -> Result<AuthInfo, Status> {
        if let Some(t) = &caller.token {
            return self
                .tokens
                .info(t, auth)
                .ok_or_else(|| EtcdError::InvalidAuthToken.into());
        }
        Ok(match &caller.common_name {
            Some(cn) => AuthInfo {
                user: cn.to_string(),
                revision: auth.revision(),
            },
            None => AuthInfo {
                user: String::new(),
                revision: 0,
            },
        })
    }

    /// Allows or refuses a request. Free while auth is disabled.
    pub fn authorize(&self, caller: &Caller, need: Need<'_>) -> Result<(), Status> {
        let machine = self.node.machine();
        if !machine.auth().is_enabled() {
            return Ok(());
        }
        // Lease keys first: the lessor is behind the apply lock, which apply holds while it
        // takes the auth store's write lock.
        let mut ids = Vec::new();
        let mut all = false;
        match &need {
            Need::Put(p) if p.lease != 0 => ids.push(p.lease),
            Need::Txn(t) => collect_txn_leases(t, &mut ids),
            Need::LeaseWrite(id) | Need::LeaseRead(id) => ids.push(*id),
            Need::AllLeasesRead => all = true,
            _ => {}
        }
        let leases: LeaseKeys = if ids.is_empty() && !all {
            LeaseKeys::new()
        } else {
            machine.with_lessor(|l| {
                let ids = if all { l.ids() } else { ids };
                ids.into_iter()
                    .filter_map(|id| {
                        l.get(id)
                            .map(|lease| (id, lease.keys.iter().cloned().collect()))
                    })
                    .collect()
            })
        };
        let auth = machine.auth();
        let who = self.auth_info(caller, &auth)?;
        Check {
            auth: &auth,
            user: &who.user,
            revision: who.revision,
            leases: &leases,
        }
        .need(&need)
        .map_err(Status::from)
    }
}

/// How etcd's Go server prints a gRPC error inside a watch `cancel_reason`
/// (`rpc error: code = PermissionDenied desc = etcdserver: permission denied`).
pub fn go_status_string(s: &Status) -> String {
    let code = match s.code() {
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::Unauthenticated => "Unauthenticated",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::Unavailable => "Unavailable",
        _ => "Unknown",
    };
    format!("rpc error: code = {code} desc = {}", s.message())
}
