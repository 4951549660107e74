//! Shared helpers of the cluster tests (t50–t70): start members, find the leader, wait
//! until members converge, and small gRPC calls. Every wait polls a condition.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::maintenance_client::MaintenanceClient;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{
    watch_request, HashKvRequest, PutRequest, RangeRequest, StatusRequest, StatusResponse,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use shale_testkit::process::{shale_bin, EtcdProcess};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Streaming;

/// Election timeout the cluster tests run with (etcd's default).
pub const ELECTION_MS: u64 = 1000;

pub fn start(n: usize, extra: &[&str]) -> Vec<EtcdProcess> {
    EtcdProcess::start_cluster(&shale_bin().expect("shale binary"), n, extra)
        .expect("start the cluster")
}

pub async fn channel(ep: &str) -> Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(ep.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .connect()
        .await?)
}

pub async fn kv(ep: &str) -> Result<KvClient<Channel>> {
    Ok(KvClient::new(channel(ep).await?))
}

pub async fn status(ep: &str) -> Result<StatusResponse> {
    let mut m = MaintenanceClient::new(channel(ep).await?);
    Ok(m.status(StatusRequest {}).await?.into_inner())
}

pub async fn hash_kv(ep: &str) -> Result<(u32, i64)> {
    let mut m = MaintenanceClient::new(channel(ep).await?);
    let r = m.hash_kv(HashKvRequest { revision: 0 }).await?.into_inner();
    Ok((r.hash, r.header.map_or(0, |h| h.revision)))
}

pub async fn put(ep: &str, k: &str, v: &str) -> Result<i64> {
    let r = kv(ep)
        .await?
        .put(PutRequest {
            key: k.to_string().into(),
            value: v.to_string().into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.header.map_or(0, |h| h.revision))
}

/// A watch stream on `ep` with one watcher (`create`), `hasleader` metadata when asked; the
/// creation answer is checked. Keep the sender: dropping it ends the stream.
pub async fn open_watch(
    ep: &str,
    create: WatchCreateRequest,
    hasleader: bool,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>)> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .context("queue the create request")?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if hasleader {
        req.metadata_mut()
            .insert("hasleader", "true".parse().expect("metadata"));
    }
    let mut stream = WatchClient::new(channel(ep).await?)
        .watch(req)
        .await?
        .into_inner();
    let created = stream
        .message()
        .await?
        .context("stream ended before created")?;
    anyhow::ensure!(
        created.created,
        "first answer is not `created`: {created:?}"
    );
    Ok((tx, stream))
}

/// The value of `k` read from `ep` (`serializable`: from that member's own state).
pub async fn get(ep: &str, k: &str, serializable: bool) -> Result<Option<String>> {
    let r = kv(ep)
        .await?
        .range(RangeRequest {
            key: k.to_string().into(),
            serializable,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

/// Index (into `members`) of the one running member every running member agrees leads.
pub async fn wait_leader(members: &mut [EtcdProcess], timeout: Duration) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for (i, m) in members.iter_mut().enumerate() {
            if !m.is_running() {
                continue;
            }
            match status(&m.endpoint()).await {
                Ok(s) => {
                    ids.push((i, s.header.map_or(0, |h| h.member_id)));
                    leaders.push(s.leader);
                }
                Err(e) => last = format!("{}: {e:#}", m.name()),
            }
        }
        if !leaders.is_empty() && leaders.iter().all(|l| *l != 0 && *l == leaders[0]) {
            if let Some((i, _)) = ids.iter().find(|(_, id)| *id == leaders[0]) {
                return Ok(*i);
            }
        }
        last = format!("leaders seen: {leaders:x?} {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no agreed leader within {timeout:?}: {last}")
}

/// Waits until every running member has applied the same index and has the same HashKV.
pub async fn wait_converged(members: &mut [EtcdProcess], timeout: Duration) -> Result<(u32, i64)> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut seen = Vec::new();
        for m in members.iter_mut() {
            if !m.is_running() {
                continue;
            }
            let ep = m.endpoint();
            match (status(&ep).await, hash_kv(&ep).await) {
                (Ok(s), Ok(h)) => seen.push((s.raft_applied_index, h)),
                (a, b) => last = format!("{}: {:?} {:?}", m.name(), a.err(), b.err()),
            }
        }
        if !seen.is_empty() && seen.iter().all(|s| *s == seen[0]) {
            return Ok(seen[0].1);
        }
        last = format!("{seen:?} {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("members did not converge within {timeout:?}: {last}")
}

/// Every key under `prefix` on `ep`, serializable (that member's own copy).
pub async fn dump(ep: &str, prefix: &str) -> Result<Vec<(String, String)>> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(l) = end.last_mut() {
        *l += 1;
    }
    let r = kv(ep)
        .await?
        .range(RangeRequest {
            key: prefix.to_string().into(),
            range_end: end.into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .context("range")?
        .into_inner();
    Ok(r.kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect())
}
