//! Starting a member: identity, the Raft node, the client listener (gRPC and HTTP on one
//! port), the optional metrics listener, background tasks; and stopping it.
//!
//! Like mini-redis, [`serve`] takes bound listeners and a shutdown signal, so tests bind
//! `127.0.0.1:0` and run many members in one process.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shale_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use shale_api::validate::limits::GRPC_OVERHEAD;
use shale_machine::MachineConfig;
use shale_raft::{NodeConfig, RaftNode};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::config::Config;
use crate::ctx::{Ctx, Identity, Limits};
use crate::svc_auth::AuthService;
use crate::svc_cluster::ClusterService;
use crate::svc_kv::KvService;
use crate::svc_lease::LeaseService;
use crate::svc_maintenance::MaintenanceService;
use crate::svc_watch::WatchService;

/// FNV-1a, 64 bit: stable ids derived from names and URLs.
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Loads (or, for a new data dir, creates) `member/identity`: member id and cluster id.
/// A data dir created for another cluster token is refused.
fn identity(cfg: &Config, member_dir: &Path) -> anyhow::Result<(u64, u64)> {
    let path = member_dir.join("identity");
    let peer = cfg.initial_advertise_peer_urls.clone();
    if let Ok(s) = std::fs::read_to_string(&path) {
        let f: Vec<&str> = s.split_whitespace().collect();
        let (Some(m), Some(c), Some(tok)) = (f.first(), f.get(1), f.get(2)) else {
            anyhow::bail!(
                "{} is damaged; restore this member's data dir or start from an empty one",
                path.display()
            );
        };
        let m = u64::from_str_radix(m, 16)?;
        let c = u64::from_str_radix(c, 16)?;
        if *tok != cfg.initial_cluster_token
            && cfg.initial_cluster_state == "new"
            && std::env::var_os("SHALE_IGNORE_TOKEN").is_none()
        {
            tracing::warn!(stored = tok, flag = %cfg.initial_cluster_token, "--initial-cluster-token differs from the data dir's; using the data dir's (like etcd, initial-* flags are ignored on restart)");
        }
        return Ok((m, c));
    }
    let m = fnv64(&[&cfg.name, &peer, &cfg.initial_cluster_token]);
    let c = fnv64(&[&cfg.initial_cluster, &cfg.initial_cluster_token]);
    std::fs::create_dir_all(member_dir)?;
    let tmp = member_dir.join("identity.tmp");
    std::fs::write(&tmp, format!("{m:x} {c:x} {}\n", cfg.initial_cluster_token))?;
    std::fs::rename(&tmp, &path)?;
    Ok((m, c))
}

/// A started member.
pub struct Member {
    pub ctx: Arc<Ctx>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Member {
    /// Opens the data dir and starts Raft and the background tasks (no listener yet).
    pub async fn start(cfg: &Config) -> anyhow::Result<Member> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let data_dir = cfg.data_dir();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
        let probe = data_dir.join(".write-test");
        std::fs::write(&probe, b"ok")
            .map_err(|e| anyhow::anyhow!("data dir {} is not writable: {e}", data_dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        let member_dir = data_dir.join("member");
        let (member_id, cluster_id) = identity(cfg, &member_dir)?;
        let node_cfg = NodeConfig {
            id: member_id,
            peer_url: cfg.initial_advertise_peer_urls.clone(),
            dir: member_dir,
            heartbeat_ms: cfg.heartbeat_interval,
            election_ms: cfg.election_timeout,
            snapshot_count: cfg.snapshot_count,
            catch_up_entries: 5000,
            state_cache_bytes: 256 << 20,
            request_timeout: Duration::from_millis(5000 + 2 * cfg.election_timeout),
            machine: MachineConfig {
                min_lease_ttl: ((3 * cfg.election_timeout).div_ceil(2)).div_ceil(1000) as i64,
            },
        };
        let node = RaftNode::start(node_cfg).await?;
        if !node
            .wait_leader(Duration::from_millis(10 * cfg.election_timeout + 5000))
            .await
        {
            tracing::warn!("no leader elected yet; requests will wait");
        }
        let split = |s: &str| {
            s.split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect()
        };
        let id = Identity {
            name: cfg.name.clone(),
            member_id,
            cluster_id,
            client_urls: split(&cfg.advertise_client_urls),
            peer_urls: split(&cfg.initial_advertise_peer_urls),
            version: cfg.emulated_etcd_version.clone(),
        };
        let limits = Limits {
            max_request_bytes: cfg.max_request_bytes as usize,
            max_txn_ops: cfg.max_txn_ops as usize,
            quota_bytes: cfg.quota_bytes(),
        };
        let ctx = Arc::new(Ctx::new(node, id, limits));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        crate::background::spawn_all(
            ctx.clone(),
            cfg.auto_compaction().map_err(anyhow::Error::msg)?,
            cfg.progress_notify_interval().map_err(anyhow::Error::msg)?,
            stop_rx,
        );
        tracing::info!(name = %cfg.name, member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"), data_dir = %data_dir.display(), shale_version = env!("CARGO_PKG_VERSION"), "member started");
        Ok(Member { ctx, stop })
    }

    /// Stops background tasks and Raft.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.ctx.node.shutdown().await;
    }
}

/// Serves the client API (gRPC + HTTP) on `listener` until `shutdown` completes.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max_recv = ctx.limits.max_request_bytes + GRPC_OVERHEAD;
    let mut routes = tonic::service::Routes::from(crate::http::router(ctx.clone()));
    routes = routes
        .add_service(
            KvServer::new(KvService { ctx: ctx.clone() })
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            WatchServer::new(WatchService { ctx: ctx.clone() })
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            LeaseServer::new(LeaseService { ctx: ctx.clone() }).max_decoding_message_size(max_recv),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService { ctx: ctx.clone() })
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            ClusterServer::new(ClusterService { ctx: ctx.clone() })
                .max_decoding_message_size(max_recv),
        )
        .add_service(
            AuthServer::new(AuthService { ctx: ctx.clone() }).max_decoding_message_size(max_recv),
        );
    // tonic ignores its own `tcp_nodelay` for a caller-provided stream: set it on each
    // accepted socket, or Nagle's algorithm adds ~40 ms to every small response.
    // Each connection is also wrapped to accept etcdctl 3.4's URL-shaped `:authority`.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
        .map(crate::h2_authority::AuthorityFix::new)
    });
    tonic::transport::Server::builder()
        .accept_http1(true)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Serves only the HTTP endpoints (`--listen-metrics-urls`).
pub async fn serve_metrics(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, crate::http::router(ctx))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
