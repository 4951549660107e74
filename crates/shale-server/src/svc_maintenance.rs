//! The Maintenance service: Status, Hash, HashKV, Alarm, Defragment, Snapshot, MoveLeader.

use std::io::Read;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::Stream;
use sha2::{Digest, Sha256};
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::maintenance_server::Maintenance;
use shale_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use shale_api::shalepb::{internal_request::Request as Cmd, internal_response::Response as Ans};
use shale_mvcc::hash;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Need};
use crate::ctx::{status_of, unexpected_response, Ctx};

pub struct MaintenanceService {
    pub ctx: Arc<Ctx>,
}

const SNAPSHOT_CHUNK: usize = 32 * 1024;

fn alarm_name(a: i32) -> &'static str {
    match AlarmType::try_from(a) {
        Ok(AlarmType::Nospace) => "NOSPACE",
        Ok(AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        let caller = Caller::from_request(&req);
        let r = req.into_inner();
        // etcd: listing alarms needs a user, raising or clearing one needs root.
        let get = r.action == shale_api::etcdserverpb::alarm_request::AlarmAction::Get as i32;
        ctx.authorize(&caller, if get { Need::AnyUser } else { Need::Admin })?;
        match ctx.propose(Cmd::Alarm(r)).await? {
            Ans::Alarm(mut a) => {
                ctx.fill(&mut a.header);
                Ok(Response::new(a))
            }
            _ => Err(unexpected_response()),
        }
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let ctx = &self.ctx;
        ctx.check_has_leader(req.metadata())?;
        ctx.authorize(&Caller::from_request(&req), Need::AnyUser)?;
        let st = ctx.node.status();
        let size = ctx.store().engine().size_bytes() as i64;
        ctx.db_size.store(size as u64, Ordering::Relaxed);
        let alarms = ctx.node.machine().has_alarm(AlarmType::Nospace);
        let errors = if alarms {
            vec![format!(
                "memberID:{} alarm:{} ",
                ctx.id.member_id,
                alarm_name(AlarmType::Nospace as i32)
            )]
        } else {
            Vec::new()
        };
        Ok(Response::new(StatusResponse {
            header: Some(ctx.header(0)),
            version: ctx.id.version.clone(),
            db_size: size,
            leader: st.leader.unwrap_or(0),
            raft_index: st.last_log_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors,
            db_size_in_use: size,
            is_learner: st.is_learner,
            storage_version: String::new(),
            db_size_quota: ctx.limits.quota_bytes as i64,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_request(&req), Need::Admin)?;
        // sled needs no stop-the-world defragmentation; flushing is the closest useful work
        // and runs off the request path.
        let store = self.ctx.store().clone();
        tokio::task::spawn_blocking(move || store.engine().flush())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.ctx.header(0)),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_request(&req), Need::Admin)?;
        let store = self.ctx.store().clone();
        let h = tokio::task::spawn_blocking(move || hash::hash_all(&store))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status_of)?;
        Ok(Response::new(HashResponse {
            header: Some(self.ctx.header(0)),
            hash: h,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_request(&req), Need::Admin)?;
        let rev = req.into_inner().revision;
        let store = self.ctx.store().clone();
        let h = tokio::task::spawn_blocking(move || hash::hash_kv(&store, rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status_of)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.ctx.header(h.current_rev)),
            hash: h.hash,
            compact_revision: h.compact_rev,
            hash_revision: h.hash_rev,
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.ctx
            .authorize(&Caller::from_request(&req), Need::Admin)?;
        let ctx = self.ctx.clone();
        let machine = ctx.node.machine().clone();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, String> {
            let mut f = tempfile::tempfile().map_err(|e| e.to_string())?;
            {
                let mut w = std::io::BufWriter::new(&mut f);
                machine.write_snapshot(&mut w).map_err(|e| e.to_string())?;
            }
            use std::io::Seek;
            f.rewind().map_err(|e| e.to_string())?;
            Ok(f)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(Status::internal)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let version = ctx.id.version.clone();
        tokio::task::spawn_blocking(move || {
            // Clients (etcdctl) expect a page-aligned body (a multiple of 512 bytes) followed
            // by its SHA-256; the snapshot format ignores the zero padding after its end.
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let padded = len.div_ceil(512) * 512;
            let total = padded + 32;
            let mut r = std::io::Read::chain(
                std::io::BufReader::new(file),
                std::io::repeat(0).take(padded - len),
            );
            let mut sha = Sha256::new();
            let mut sent: u64 = 0;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                };
                if n == 0 {
                    break;
                }
                sha.update(&buf[..n]);
                sent += n as u64;
                let resp = SnapshotResponse {
                    header: Some(ctx.header(0)),
                    remaining_bytes: total - sent,
                    blob: bytes::Bytes::copy_from_slice(&buf[..n]),
                    version: version.clone(),
                };
                if tx.blocking_send(Ok(resp)).is_err() {
                    return;
                }
            }
            // Like etcd, the last 32 bytes are the SHA-256 of everything before them.
            let digest = sha.finalize();
            let _ = tx.blocking_send(Ok(SnapshotResponse {
                header: Some(ctx.header(0)),
                remaining_bytes: 0,
                blob: bytes::Bytes::copy_from_slice(&digest),
                version,
            }));
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let ctx = &self.ctx;
        ctx.authorize(&Caller::from_request(&req), Need::Admin)?;
        let target = req.into_inner().target_id;
        if !ctx.node.status().is_leader {
            return Err(EtcdError::NotLeader.into());
        }
        if target != ctx.id.member_id {
            match ctx
                .node
                .execute_forwarded(shale_api::shalepb::forward_request::Request::MoveLeader(
                    shale_api::shalepb::MemberIdRequest { id: target },
                ))
                .await
            {
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Response::new(MoveLeaderResponse {
            header: Some(ctx.header(0)),
        }))
    }

    async fn downgrade(
        &self,
        req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        self.ctx
            .authorize(&Caller::from_request(&req), Need::Admin)?;
        Err(EtcdError::ClusterVersionUnavailable.into())
    }
}
