//! [`Machine`]: deterministic apply of decided commands.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmResponse, AlarmType,
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse, AuthRoleRevokePermissionResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse, CompactionResponse, LeaseGrantResponse, LeaseRevokeResponse,
    ResponseHeader, TxnRequest,
};
use shale_api::shalepb::{
    internal_request::Request, internal_response::Response, InternalRequest, InternalResponse,
};
use shale_api::validate::limits::MAX_LEASE_TTL;
use shale_mvcc::kv;
use shale_mvcc::watch::WatchHub;
use shale_mvcc::{ApplyBatch, Change, KeyRange, MvccStore};
use shale_storage::Engine;

use crate::alarms::{alarm_key, parse_alarm_key, Alarms, ALARM_PREFIX};
use crate::auth_store::{AuthStore, MetaWrite};
use crate::lessor::{lease_key, Lessor, DEFAULT_MIN_TTL, LEASE_PREFIX};

/// Storage key of the caller's Raft state, written with every applied batch.
pub const RAFT_STATE_KEY: &[u8] = b"r/applied";

/// Errors that stop the member (never answers to a client).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Mvcc(#[from] shale_mvcc::Error),
    #[error(transparent)]
    Storage(#[from] shale_storage::Error),
    #[error("state machine data is corrupt: {0}; restore this member from a snapshot or a peer")]
    Corrupt(String),
    #[error("invalid state machine configuration: {0}")]
    Config(String),
    #[error("snapshot i/o failed: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Configuration of the state machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// The smallest lease TTL granted, in seconds (etcd: ceil(1.5 × election timeout)).
    pub min_lease_ttl: i64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            min_lease_ttl: DEFAULT_MIN_TTL,
        }
    }
}

impl MachineConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.min_lease_ttl < 1 {
            return Err(format!(
                "min lease TTL must be >= 1 second, got {}",
                self.min_lease_ttl
            ));
        }
        Ok(())
    }
}

pub(crate) struct Inner {
    pub lessor: Lessor,
    pub alarms: Alarms,
}

/// The state machine: MVCC store, watch hub, lessor, alarms.
pub struct Machine {
    store: Arc<MvccStore>,
    hub: WatchHub,
    pub(crate) inner: Mutex<Inner>,
    /// Users, roles and permissions: read on every request while auth is enabled, so kept
    /// apart from `inner` (which apply holds for a whole batch).
    pub(crate) auth: RwLock<AuthStore>,
    pub(crate) apply_lock: Mutex<()>,
    pub(crate) config: MachineConfig,
}

/// Splits an apply answer into the response or the client error.
pub fn response_result(r: InternalResponse) -> std::result::Result<Response, EtcdError> {
    if r.error != 0 {
        return Err(EtcdError::from_code_number(r.error).unwrap_or(EtcdError::Corrupt));
    }
    r.response.ok_or(EtcdError::Corrupt)
}

fn ok(r: Response) -> InternalResponse {
    InternalResponse {
        error: 0,
        response: Some(r),
    }
}

fn fail(e: EtcdError) -> InternalResponse {
    InternalResponse {
        error: e.code_number(),
        response: None,
    }
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

impl Machine {
    /// Opens the machine over `engine`, rebuilding leases and alarms.
    pub fn open(engine: Arc<dyn Engine>, cfg: MachineConfig) -> Result<Self> {
        cfg.validate().map_err(Error::Config)?;
        let store = Arc::new(MvccStore::open(engine)?);
        let inner = load_inner(&store, &cfg)?;
        let auth = load_auth(&store)?;
        let hub = WatchHub::new(store.clone());
        Ok(Self {
            store,
            hub,
            inner: Mutex::new(inner),
            auth: RwLock::new(auth),
            apply_lock: Mutex::new(()),
            config: cfg,
        })
    }

    pub fn store(&self) -> &Arc<MvccStore> {
        &self.store
    }

    pub fn hub(&self) -> &WatchHub {
        &self.hub
    }

    /// Runs `f` on the lessor (for keep-alive, time-to-live, expiry checks).
    pub fn with_lessor<T>(&self, f: impl FnOnce(&mut Lessor) -> T) -> T {
        f(&mut self.inner.lock().lessor)
    }

    /// The auth store (users, roles, permissions), for checks and local reads.
    pub fn auth(&self) -> RwLockReadGuard<'_, AuthStore> {
        self.auth.read()
    }

    pub fn has_alarm(&self, a: AlarmType) -> bool {
        self.inner.lock().alarms.has(a)
    }

    /// Names and client URLs the members have published (see [`crate::members`]).
    pub fn member_attrs(&self) -> Result<Vec<shale_api::shalepb::MemberAttr>> {
        crate::members::load_member_attrs(&**self.store.engine())
    }

    /// The Raft state stored with the last applied batch.
    pub fn raft_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.store.engine().get(RAFT_STATE_KEY)?)
    }

    /// Applies decided entries in order (`None` = an entry without a command, e.g. a Raft
    /// membership or blank entry) and stores `raft_state` in the same atomic batch.
    pub fn apply(
        &self,
        entries: Vec<Option<InternalRequest>>,
        raft_state: Vec<u8>,
    ) -> Result<Vec<InternalResponse>> {
        let _apply = self.apply_lock.lock();
        let mut inner = self.inner.lock();
        let mut batch = self.store.begin();
        batch.reserve(entries.len());
        let mut out = Vec::with_capacity(entries.len());
        let now = Instant::now();
        for e in entries {
            let Some(req) = e else {
                out.push(InternalResponse::default());
                continue;
            };
            let before = batch.changes().len();
            let r = match apply_one(&mut inner, &self.auth, &mut batch, req, now) {
                Ok(r) => r,
                Err(shale_mvcc::Error::Etcd(e)) => fail(e),
                Err(e) => return Err(e.into()),
            };
            track_leases(&mut inner.lessor, &batch.changes()[before..]);
            out.push(r);
        }
        batch.put_meta(RAFT_STATE_KEY.to_vec(), raft_state);
        let committed = batch.commit()?;
        drop(inner);
        self.hub.notify(&committed);
        Ok(out)
    }
}

pub(crate) fn load_auth(store: &MvccStore) -> Result<AuthStore> {
    AuthStore::load(&**store.engine()).map_err(Error::Corrupt)
}

pub(crate) fn load_inner(store: &MvccStore, cfg: &MachineConfig) -> Result<Inner> {
    let now = Instant::now();
    let mut lessor = Lessor::new(cfg.min_lease_ttl);
    let end = shale_storage::engine_prefix_end(LEASE_PREFIX).unwrap_or_else(|| vec![0xff]);
    for item in store
        .engine()
        .scan(Bound::Included(LEASE_PREFIX), Bound::Excluded(&end[..]))
    {
        let (k, v) = item?;
        let id = k
            .get(LEASE_PREFIX.len()..)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| Error::Corrupt(format!("bad lease key {k:?}")))?;
        let ttl = v
            .as_slice()
            .try_into()
            .map(i64::from_be_bytes)
            .map_err(|_| Error::Corrupt(format!("bad lease record for {id}")))?;
        lessor.restore(id, ttl, now);
    }
    // Re-attach keys to their leases from the key index (it knows each live key's lease:
    // no value is read, which kept a member with a million keys from serving for seconds).
    for (key, lease) in store.leased_keys() {
        lessor.attach(lease, &key);
    }
    let mut alarms = Alarms::default();
    let end = shale_storage::engine_prefix_end(ALARM_PREFIX).unwrap_or_else(|| vec![0xff]);
    for item in store
        .engine()
        .scan(Bound::Included(ALARM_PREFIX), Bound::Excluded(&end[..]))
    {
        let (k, _) = item?;
        let (m, a) =
            parse_alarm_key(&k).ok_or_else(|| Error::Corrupt(format!("bad alarm key {k:?}")))?;
        alarms.insert(m, a);
    }
    Ok(Inner { lessor, alarms })
}

/// Keeps lease→keys attachments in step with the changes of one request.
fn track_leases(lessor: &mut Lessor, changes: &[Change]) {
    for c in changes {
        let old = c.prev_lease;
        let new = if c.is_delete { 0 } else { c.kv.lease };
        if old != 0 && old != new {
            lessor.detach(old, &c.kv.key);
        }
        if new != 0 {
            lessor.attach(new, &c.kv.key);
        }
    }
}

fn txn_has_put(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(n)) => txn_has_put(n),
            _ => false,
        })
}

fn apply_one(
    inner: &mut Inner,
    auth: &RwLock<AuthStore>,
    batch: &mut ApplyBatch<'_>,
    req: InternalRequest,
    now: Instant,
) -> shale_mvcc::Result<InternalResponse> {
    let Some(request) = req.request else {
        return Ok(InternalResponse::default());
    };
    let nospace = inner.alarms.has(AlarmType::Nospace);
    let lessor = &inner.lessor;
    let leases = |id: i64| lessor.exists(id);
    Ok(match request {
        Request::Put(p) => {
            if nospace {
                return Err(EtcdError::NoSpace.into());
            }
            let mut w = batch.write();
            ok(Response::Put(kv::put(&mut w, &p, &leases, false)?))
        }
        Request::DeleteRange(d) => {
            let mut w = batch.write();
            ok(Response::DeleteRange(kv::delete_range(&mut w, &d)?))
        }
        Request::Txn(t) => {
            if nospace && txn_has_put(&t) {
                return Err(EtcdError::NoSpace.into());
            }
            let first = batch.compact_revision();
            let mut w = batch.write();
            ok(Response::Txn(kv::txn(&mut w, &t, &leases, first)?))
        }
        Request::Compaction(c) => {
            batch.compact(c.revision)?;
            ok(Response::Compaction(CompactionResponse {
                header: header(batch.rev()),
            }))
        }
        Request::LeaseGrant(g) => {
            if nospace {
                return Err(EtcdError::NoSpace.into());
            }
            if g.ttl > MAX_LEASE_TTL {
                return Err(EtcdError::LeaseTtlTooLarge.into());
            }
            if inner.lessor.exists(g.id) {
                return Err(EtcdError::LeaseExist.into());
            }
            let ttl = inner.lessor.grant(g.id, g.ttl, now).ttl;
            batch.put_meta(lease_key(g.id), ttl.to_be_bytes().to_vec());
            ok(Response::LeaseGrant(LeaseGrantResponse {
                header: header(batch.rev()),
                id: g.id,
                ttl,
                error: String::new(),
            }))
        }
        Request::LeaseRevoke(r) => {
            let Some(lease) = inner.lessor.get(r.id) else {
                return Err(EtcdError::LeaseNotFound.into());
            };
            let keys: Vec<Bytes> = lease.keys.iter().cloned().collect();
            {
                let mut w = batch.write();
                for k in keys {
                    w.delete_range(&KeyRange::Single(k))?;
                }
            }
            inner.lessor.remove(r.id);
            batch.delete_meta(lease_key(r.id));
            ok(Response::LeaseRevoke(LeaseRevokeResponse {
                header: header(batch.rev()),
            }))
        }
        Request::Alarm(a) => ok(Response::Alarm(apply_alarm(inner, batch, &a))),
        Request::MemberPublish(m) => {
            batch.put_meta(
                crate::members::member_key(m.id),
                prost::Message::encode_to_vec(&m),
            );
            ok(Response::MemberPublish(m))
        }
        other => apply_auth(&mut auth.write(), batch, other)?,
    })
}

/// Applies an auth command; its storage writes join the batch.
fn apply_auth(
    auth: &mut AuthStore,
    batch: &mut ApplyBatch<'_>,
    req: Request,
) -> shale_mvcc::Result<InternalResponse> {
    let mut w: Vec<MetaWrite> = Vec::new();
    let h = header(batch.rev());
    let resp = match req {
        Request::AuthEnable(_) => auth
            .auth_enable(&mut w)
            .map(|_| Response::AuthEnable(AuthEnableResponse { header: h })),
        Request::AuthDisable(_) => {
            auth.auth_disable(&mut w);
            Ok(Response::AuthDisable(AuthDisableResponse { header: h }))
        }
        Request::AuthUserAdd(r) => auth
            .user_add(&r, &mut w)
            .map(|_| Response::AuthUserAdd(AuthUserAddResponse { header: h })),
        Request::AuthUserDelete(r) => auth
            .user_delete(&r.name, &mut w)
            .map(|_| Response::AuthUserDelete(AuthUserDeleteResponse { header: h })),
        Request::AuthUserChangePassword(r) => auth.user_change_password(&r, &mut w).map(|_| {
            Response::AuthUserChangePassword(AuthUserChangePasswordResponse { header: h })
        }),
        Request::AuthUserGrantRole(r) => auth
            .user_grant_role(&r.user, &r.role, &mut w)
            .map(|_| Response::AuthUserGrantRole(AuthUserGrantRoleResponse { header: h })),
        Request::AuthUserRevokeRole(r) => auth
            .user_revoke_role(&r.name, &r.role, &mut w)
            .map(|_| Response::AuthUserRevokeRole(AuthUserRevokeRoleResponse { header: h })),
        Request::AuthRoleAdd(r) => auth
            .role_add(&r.name, &mut w)
            .map(|_| Response::AuthRoleAdd(AuthRoleAddResponse { header: h })),
        Request::AuthRoleDelete(r) => auth
            .role_delete(&r.role, &mut w)
            .map(|_| Response::AuthRoleDelete(AuthRoleDeleteResponse { header: h })),
        Request::AuthRoleGrantPermission(r) => auth.role_grant_permission(&r, &mut w).map(|_| {
            Response::AuthRoleGrantPermission(AuthRoleGrantPermissionResponse { header: h })
        }),
        Request::AuthRoleRevokePermission(r) => auth.role_revoke_permission(&r, &mut w).map(|_| {
            Response::AuthRoleRevokePermission(AuthRoleRevokePermissionResponse { header: h })
        }),
        _ => return Ok(InternalResponse::default()),
    };
    for (k, v) in w {
        match v {
            Some(v) => batch.put_meta(k, v),
            None => batch.delete_meta(k),
        }
    }
    Ok(match resp {
        Ok(r) => ok(r),
        Err(e) => fail(e),
    })
}

fn apply_alarm(inner: &mut Inner, batch: &mut ApplyBatch<'_>, a: &AlarmRequest) -> AlarmResponse {
    let mut resp = AlarmResponse {
        header: header(batch.rev()),
        alarms: Vec::new(),
    };
    match AlarmAction::try_from(a.action) {
        Ok(AlarmAction::Get) => resp.alarms = inner.alarms.list(a.alarm),
        Ok(AlarmAction::Activate) => {
            if a.alarm == AlarmType::None as i32 {
                return resp;
            }
            if inner.alarms.insert(a.member_id, a.alarm) {
                batch.put_meta(alarm_key(a.member_id, a.alarm), Vec::new());
            }
            resp.alarms.push(shale_api::etcdserverpb::AlarmMember {
                member_id: a.member_id,
                alarm: a.alarm,
            });
        }
        Ok(AlarmAction::Deactivate) => {
            if inner.alarms.remove(a.member_id, a.alarm) {
                batch.delete_meta(alarm_key(a.member_id, a.alarm));
                resp.alarms.push(shale_api::etcdserverpb::AlarmMember {
                    member_id: a.member_id,
                    alarm: a.alarm,
                });
            }
        }
        Err(_) => {}
    }
    resp
}
