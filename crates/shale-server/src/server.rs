//! Starting a member: identity, the Raft node, the client listener (gRPC and HTTP on one
//! port), the optional metrics listener, background tasks; and stopping it.
//!
//! Like mini-redis, [`serve`] takes bound listeners and a shutdown signal, so tests bind
//! `127.0.0.1:0` and run many members in one process.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use shale_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use shale_api::shalepb::internal_request::Request as Cmd;
use shale_api::shalepb::raft_peer_server::RaftPeerServer;
use shale_api::shalepb::{HelloRequest, MemberAttr};
use shale_api::validate::limits::GRPC_OVERHEAD;
use shale_machine::MachineConfig;
use shale_raft::identity;
use shale_raft::peer::{PeerConfig, PeerService, Peers};
use shale_raft::{NodeConfig, RaftNode};
use shale_tls::rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::config::{split_list, Config};
use crate::ctx::{Ctx, Identity, Limits};
use crate::front_door::FrontDoor;
use crate::svc_auth::AuthService;
use crate::svc_cluster::ClusterService;
use crate::svc_kv::KvService;
use crate::svc_lease::LeaseService;
use crate::svc_maintenance::MaintenanceService;
use crate::svc_watch::WatchService;

/// Who this member is and, for a new cluster, who its first members are.
struct MemberIdentity {
    member_id: u64,
    cluster_id: u64,
    /// The members of a new cluster (empty when joining an existing one).
    bootstrap: BTreeMap<u64, BasicNode>,
}

/// The members of `--initial-cluster`, with their derived ids.
fn initial_ids(cfg: &Config) -> anyhow::Result<Vec<(u64, String, Vec<String>)>> {
    Ok(cfg
        .initial_cluster_members()
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|(name, urls)| {
            (
                identity::member_id(&urls, &cfg.initial_cluster_token),
                name,
                urls,
            )
        })
        .collect())
}

/// Loads (or, for a new data dir, decides) `member/identity`: member id, cluster id and the
/// token. A new cluster's ids are derived from `--initial-cluster` and the token; a member
/// joining an existing cluster (`--initial-cluster-state existing`) asks the members of
/// `--initial-cluster` for the cluster and finds itself by its peer URLs.
async fn identity(
    cfg: &Config,
    member_dir: &Path,
    probe: &Peers,
) -> anyhow::Result<MemberIdentity> {
    let path = member_dir.join("identity");
    let initial = initial_ids(cfg)?;
    let bootstrap_of = |me: u64| -> BTreeMap<u64, BasicNode> {
        if cfg.initial_cluster_state != "new" || !initial.iter().any(|(id, _, _)| *id == me) {
            return BTreeMap::new();
        }
        initial
            .iter()
            .map(|(id, _, urls)| {
                (
                    *id,
                    BasicNode {
                        addr: urls.join(","),
                    },
                )
            })
            .collect()
    };
    if let Ok(s) = std::fs::read_to_string(&path) {
        let f: Vec<&str> = s.split_whitespace().collect();
        let (Some(m), Some(c), Some(tok)) = (f.first(), f.get(1), f.get(2)) else {
            anyhow::bail!(
                "{} is damaged; restore this member's data dir or start from an empty one",
                path.display()
            );
        };
        let member_id = u64::from_str_radix(m, 16)?;
        let cluster_id = u64::from_str_radix(c, 16)?;
        if *tok != cfg.initial_cluster_token {
            tracing::warn!(stored = tok, flag = %cfg.initial_cluster_token, "--initial-cluster-token differs from the data dir's; using the data dir's (like etcd, initial-* flags are ignored on restart)");
        }
        return Ok(MemberIdentity {
            member_id,
            cluster_id,
            bootstrap: bootstrap_of(member_id),
        });
    }
    let (member_id, cluster_id) = if cfg.initial_cluster_state == "new" {
        let ids: Vec<u64> = initial.iter().map(|(id, _, _)| *id).collect();
        let me = identity::member_id(&cfg.my_peer_urls(), &cfg.initial_cluster_token);
        (me, identity::cluster_id(&ids, &cfg.initial_cluster_token))
    } else {
        join_existing(cfg, &initial, probe).await?
    };
    std::fs::create_dir_all(member_dir)?;
    let tmp = member_dir.join("identity.tmp");
    std::fs::write(
        &tmp,
        format!(
            "{member_id:x} {cluster_id:x} {}\n",
            cfg.initial_cluster_token
        ),
    )?;
    std::fs::rename(&tmp, &path)?;
    Ok(MemberIdentity {
        member_id,
        cluster_id,
        bootstrap: bootstrap_of(member_id),
    })
}

/// Asks the other members of `--initial-cluster` which cluster they form and which id
/// `MemberAdd` gave this member (found by its peer URLs).
async fn join_existing(
    cfg: &Config,
    initial: &[(u64, String, Vec<String>)],
    probe: &Peers,
) -> anyhow::Result<(u64, u64)> {
    let mut mine = cfg.my_peer_urls();
    mine.sort();
    let mut last_err = String::from("no other member is listed in --initial-cluster");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        for (_, name, urls) in initial.iter().filter(|(_, n, _)| *n != cfg.name) {
            let Some(url) = urls.first() else { continue };
            let mut client = probe.client_for_url(url).map_err(anyhow::Error::msg)?;
            let hello = HelloRequest {
                cluster_id: 0,
                from: 0,
                from_name: cfg.name.clone(),
                from_peer_urls: cfg.my_peer_urls(),
            };
            match tokio::time::timeout(Duration::from_secs(2), client.hello(hello)).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    let found = r.members.iter().find(|m| {
                        let mut u = m.peer_urls.clone();
                        u.sort();
                        u == mine
                    });
                    return match found {
                        Some(m) => Ok((m.id, r.cluster_id)),
                        None => Err(anyhow::anyhow!(
                            "member {name} ({url}) of cluster {:x} does not know a member with peer URLs {}: add this member first (`etcdctl member add {} --peer-urls={}`)",
                            r.cluster_id,
                            mine.join(","),
                            cfg.name,
                            mine.join(",")
                        )),
                    };
                }
                Ok(Err(e)) => last_err = format!("{name} ({url}): {}", e.message()),
                Err(_) => last_err = format!("{name} ({url}): no answer"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!(
        "cannot join the existing cluster: no member of --initial-cluster answered ({last_err})"
    )
}

/// Refuses to run next to members of another cluster: asks each other initial member once
/// (for a few seconds) which cluster it belongs to.
async fn check_peers_cluster(cfg: &Config, peers: &Peers) -> anyhow::Result<()> {
    let ours = peers.config().cluster_id;
    let me = peers.config().member_id;
    let initial = initial_ids(cfg)?;
    let checks = initial.iter().filter(|(id, _, _)| *id != me).map(|(_, name, urls)| {
        let url = urls.first().cloned().unwrap_or_default();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < deadline {
                let Ok(mut client) = peers.client_for_url(&url) else {
                    return Ok(());
                };
                let hello = HelloRequest {
                    cluster_id: ours,
                    from: me,
                    from_name: cfg.name.clone(),
                    from_peer_urls: cfg.my_peer_urls(),
                };
                if let Ok(Ok(r)) =
                    tokio::time::timeout(Duration::from_secs(1), client.hello(hello)).await
                {
                    let r = r.into_inner();
                    if r.cluster_id != ours {
                        anyhow::bail!(
                            "member {name} ({url}) belongs to cluster {:x}, this member to cluster {ours:x}: every member must be started with the same --initial-cluster and --initial-cluster-token (and a data dir of another cluster cannot be reused)",
                            r.cluster_id
                        );
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(())
        }
    });
    for r in futures::future::join_all(checks).await {
        r?;
    }
    Ok(())
}

/// Publishes this member's name and client URLs through the log (once they are applied as
/// they are, there is nothing to do), retrying until it succeeds or the member stops.
async fn publish_attrs(ctx: Arc<Ctx>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let attr = MemberAttr {
        id: ctx.id.member_id,
        name: ctx.id.name.clone(),
        client_urls: ctx.id.client_urls.clone(),
    };
    loop {
        let current = ctx.node.machine().member_attrs().unwrap_or_default();
        if current.contains(&attr) {
            return;
        }
        if let Err(e) = ctx.propose(Cmd::MemberPublish(attr.clone())).await {
            tracing::debug!(error = %e.message(), "publishing member attributes failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// A started member.
pub struct Member {
    pub ctx: Arc<Ctx>,
    stop: tokio::sync::watch::Sender<bool>,
    removed: tokio::sync::watch::Receiver<bool>,
}

impl Member {
    /// Opens the data dir, starts Raft, serves the peer port on `peer_listeners`, waits
    /// (bounded) for a leader and starts the background tasks (no client listener yet).
    pub async fn start(
        cfg: &Config,
        peer_listeners: Vec<crate::tls::Listener>,
    ) -> anyhow::Result<Member> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let data_dir = cfg.data_dir();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
        let probe = data_dir.join(".write-test");
        std::fs::write(&probe, b"ok")
            .map_err(|e| anyhow::anyhow!("data dir {} is not writable: {e}", data_dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        let member_dir = data_dir.join("member");
        let peer_tls = cfg
            .tls
            .peer(
                &data_dir,
                &cfg.listen_peer_urls,
                &cfg.initial_advertise_peer_urls,
            )
            .map_err(anyhow::Error::msg)?;
        let mut peer_cfg = PeerConfig {
            cluster_id: 0,
            group_id: 0,
            member_id: 1,
            name: cfg.name.clone(),
            dial_overrides: cfg.dial_overrides().map_err(anyhow::Error::msg)?,
            connect_timeout: Duration::from_millis(cfg.election_timeout.max(1000)),
            tls: peer_tls.as_ref().map(|(_, client)| client.clone()),
        };
        let me = identity(cfg, &member_dir, &Peers::new(peer_cfg.clone())).await?;
        let (member_id, cluster_id) = (me.member_id, me.cluster_id);
        peer_cfg.member_id = member_id;
        peer_cfg.cluster_id = cluster_id;
        let node_cfg = NodeConfig {
            id: member_id,
            peer_url: cfg.initial_advertise_peer_urls.clone(),
            peer: peer_cfg,
            bootstrap: me.bootstrap,
            dir: member_dir,
            heartbeat_ms: cfg.heartbeat_interval,
            election_ms: cfg.election_timeout,
            snapshot_count: cfg.snapshot_count,
            catch_up_entries: cfg.snapshot_catchup_entries,
            state_cache_bytes: 256 << 20,
            state_engine: cfg.state_engine,
            request_timeout: Duration::from_millis(5000 + 2 * cfg.election_timeout),
            machine: MachineConfig {
                min_lease_ttl: ((3 * cfg.election_timeout).div_ceil(2)).div_ceil(1000) as i64,
            },
        };
        let node = RaftNode::start(node_cfg).await?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        for l in peer_listeners {
            let tls = match (&peer_tls, l.tls) {
                (Some((server, _)), true) => Some(server.clone()),
                _ => None,
            };
            tracing::info!(address = %l.inner.local_addr()?, tls = tls.is_some(), "serving peer traffic");
            let node = node.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let r = serve_peer(node, l.inner, tls, async move {
                    let _ = rx.changed().await;
                })
                .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "peer server stopped");
                }
            });
        }
        check_peers_cluster(cfg, node.peers()).await?;
        let id = Identity {
            name: cfg.name.clone(),
            member_id,
            cluster_id,
            client_urls: split_list(&cfg.advertise_client_urls),
            peer_urls: cfg.my_peer_urls(),
            version: cfg.emulated_etcd_version.clone(),
        };
        let limits = Limits {
            max_request_bytes: cfg.max_request_bytes as usize,
            max_response_bytes: cfg.max_response_bytes as usize,
            max_txn_ops: cfg.max_txn_ops as usize,
            quota_bytes: cfg.quota_bytes(),
        };
        let tokens = cfg.auth.token_provider().map_err(anyhow::Error::new)?;
        let ctx = Arc::new(Ctx::new(node, id, limits, tokens, cfg.auth.bcrypt_cost()));
        // Watch for a removal before waiting for a leader: a removed member restarted on its
        // data dir never sees one, and must hear it from its peers and stop at once.
        let (removed_tx, removed) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::removal::watch_removal(ctx.clone(), removed_tx));
        let mut gone = removed.clone();
        tokio::select! {
            elected = ctx
                .node
                .wait_leader(Duration::from_millis(10 * cfg.election_timeout + 5000)) => {
                if !elected {
                    tracing::warn!("no leader elected yet; requests will wait");
                }
            }
            _ = gone.wait_for(|r| *r) => {}
        }
        tokio::spawn(publish_attrs(ctx.clone(), stop_rx.clone()));
        crate::background::spawn_all(
            ctx.clone(),
            cfg.auto_compaction().map_err(anyhow::Error::msg)?,
            cfg.progress_notify_interval().map_err(anyhow::Error::msg)?,
            stop_rx,
        );
        tracing::info!(name = %cfg.name, member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"), data_dir = %data_dir.display(), shale_version = env!("CARGO_PKG_VERSION"), "member started");
        Ok(Member { ctx, stop, removed })
    }

    /// Resolves when the member has been removed from its cluster and should stop.
    pub fn removed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.removed.clone();
        async move {
            let _ = rx.wait_for(|r| *r).await;
        }
    }

    /// Stops background tasks and Raft.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.ctx.node.shutdown().await;
    }
}

/// Serves the client API (gRPC + HTTP) on `listener` (TLS with `tls`) until `shutdown`
/// completes.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max_recv = ctx.limits.max_request_bytes + GRPC_OVERHEAD;
    let kv = KvServer::new(KvService { ctx: ctx.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let mut routes = tonic::service::Routes::from(crate::http::router(ctx.clone()));
    routes = routes
        .add_service(kv.clone())
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
    // Accepted sockets get TCP_NODELAY (tonic ignores its own setting for a caller-provided
    // stream) and, on an https:// listener, a TLS handshake of their own (`shale_tls`).
    // Each connection is also wrapped to accept etcdctl 3.4's URL-shaped `:authority`, and
    // corked so the responses of one scheduler pass leave in one write (see `cork`).
    let incoming = shale_tls::incoming(listener, tls).map(|conn| {
        conn.map(|s| crate::h2_authority::AuthorityFix::new(crate::cork::Cork::new(s)))
    });
    tonic::transport::Server::builder()
        .accept_http1(true)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .serve_with_incoming_shutdown(FrontDoor::new(kv, routes), incoming, shutdown)
        .await?;
    Ok(())
}

/// Serves the peer protocol on `listener` until `shutdown` completes.
pub async fn serve_peer(
    node: Arc<RaftNode>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max = shale_raft::peer::MAX_PEER_MESSAGE;
    let svc = RaftPeerServer::new(PeerService::new(node))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let incoming = shale_tls::incoming(listener, tls).map(|conn| conn.map(crate::cork::Cork::new));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Serves only the HTTP endpoints (`--listen-metrics-urls`): plain HTTP, or, for an
/// `https://` metrics URL, TLS with the client port's configuration (as etcd does).
pub async fn serve_metrics(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let routes = tonic::service::Routes::from(crate::http::router(ctx));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .serve_with_incoming_shutdown(routes, shale_tls::incoming(listener, tls), shutdown)
        .await?;
    Ok(())
}
