//! [`Ctx`]: what every service handler shares — the member's Raft node, its identity and
//! limits — and the handler plumbing: header filling, proposing, read barriers, the
//! `hasleader` check and the mapping of internal errors to gRPC statuses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{AlarmRequest, AlarmType, ResponseHeader};
use shale_api::shalepb::{internal_request::Request, internal_response::Response, InternalRequest};
use shale_machine::response_result;
use shale_mvcc::MvccStore;
use shale_raft::RaftNode;
use tonic::{metadata::MetadataMap, Status};

use crate::metrics::Metrics;

/// Static facts about this member, fixed at start.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    /// etcd version reported to clients.
    pub version: String,
}

/// Limits enforced on requests.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_bytes: usize,
    /// Largest Range response sent (`--max-response-bytes`, see [`crate::list`]).
    pub max_response_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_bytes: u64,
}

/// Shared state of the client-facing services.
pub struct Ctx {
    pub node: Arc<RaftNode>,
    pub id: Identity,
    pub limits: Limits,
    pub metrics: Metrics,
    next_req: AtomicU64,
    /// Cached state store size, refreshed in the background (reading it walks files).
    pub db_size: AtomicU64,
    /// This member's auth tokens (`--auth-token`, see [`crate::auth_token`]).
    pub tokens: crate::auth_token::TokenProvider,
    /// The bcrypt cost new passwords are hashed with (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
}

/// Maps any internal error to the status a client sees. Deterministic etcd errors use the
/// one table in `shale_api::error`; everything else is an internal error with its message.
pub fn status_of(e: impl Into<AnyError>) -> Status {
    match e.into() {
        AnyError::Etcd(e) => e.into(),
        AnyError::Other(m) => Status::internal(m),
    }
}

pub enum AnyError {
    Etcd(EtcdError),
    Other(String),
}

impl From<EtcdError> for AnyError {
    fn from(e: EtcdError) -> Self {
        AnyError::Etcd(e)
    }
}

impl From<shale_mvcc::Error> for AnyError {
    fn from(e: shale_mvcc::Error) -> Self {
        match e {
            shale_mvcc::Error::Etcd(e) => AnyError::Etcd(e),
            e => AnyError::Other(e.to_string()),
        }
    }
}

impl Ctx {
    /// `tokens` and `bcrypt_cost` come from the auth flags (`crate::auth_flags::AuthFlags`).
    pub fn new(
        node: Arc<RaftNode>,
        id: Identity,
        limits: Limits,
        tokens: crate::auth_token::TokenProvider,
        bcrypt_cost: u32,
    ) -> Self {
        Self {
            node,
            id,
            limits,
            metrics: Metrics::default(),
            next_req: AtomicU64::new(rand::random::<u32>() as u64 + 1),
            db_size: AtomicU64::new(0),
            tokens,
            bcrypt_cost,
        }
    }

    pub fn store(&self) -> &Arc<MvccStore> {
        self.node.machine().store()
    }

    /// A response header for the current state.
    pub fn header(&self, rev: i64) -> ResponseHeader {
        let rev = if rev == 0 {
            self.store().current_revision()
        } else {
            rev
        };
        ResponseHeader {
            cluster_id: self.id.cluster_id,
            member_id: self.id.member_id,
            revision: rev,
            raft_term: self.node.status().term,
        }
    }

    /// Fills a response header the way etcd's gRPC layer does (keeps a set revision).
    pub fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map_or(0, |h| h.revision);
        *h = Some(self.header(rev));
    }

    /// A fresh id for a request (or a lease).
    pub fn next_id(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }

    /// `hasleader=true` metadata: fail at once while this member has no leader.
    pub fn check_has_leader(&self, md: &MetadataMap) -> Result<(), Status> {
        if requires_leader(md) && !self.node.has_leader() {
            return Err(EtcdError::NoLeader.into());
        }
        Ok(())
    }

    /// Linearizable read point.
    pub async fn barrier(&self) -> Result<(), Status> {
        self.node.read_barrier().await.map_err(Status::from)
    }

    /// Refuses writes that would grow the store past its quota, raising the NOSPACE alarm
    /// (as etcd does) the first time.
    pub async fn check_quota(&self, cost: usize) -> Result<(), Status> {
        let size = self.db_size.load(Ordering::Relaxed);
        if size + cost as u64 <= self.limits.quota_bytes {
            return Ok(());
        }
        if !self.node.machine().has_alarm(AlarmType::Nospace) {
            let req = Request::Alarm(AlarmRequest {
                action: shale_api::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                member_id: self.id.member_id,
                alarm: AlarmType::Nospace as i32,
            });
            let _ = self.propose(req).await;
        }
        Err(EtcdError::NoSpace.into())
    }

    /// Proposes a command through Raft and returns the state machine's answer.
    pub async fn propose(&self, req: Request) -> Result<Response, Status> {
        let msg = InternalRequest {
            id: self.next_id(),
            now_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            request: Some(req),
        };
        if prost::Message::encoded_len(&msg) > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge.into());
        }
        self.metrics
            .proposals_pending
            .fetch_add(1, Ordering::Relaxed);
        let r = self.node.propose(msg).await;
        self.metrics
            .proposals_pending
            .fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(resp) => {
                self.metrics
                    .proposals_applied
                    .fetch_add(1, Ordering::Relaxed);
                response_result(resp).map_err(Status::from)
            }
            Err(e) => {
                self.metrics
                    .proposals_failed
                    .fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }
}

/// The state machine answered a proposal with a response of another kind (a bug).
pub fn unexpected_response() -> Status {
    Status::internal("state machine answered with an unexpected response type")
}

/// True when the request carries `hasleader=true`.
pub fn requires_leader(md: &MetadataMap) -> bool {
    md.get("hasleader").and_then(|v| v.to_str().ok()) == Some("true")
}
