//! `shale`: start one member. Flags are etcd's (`shale --help`).

use clap::Parser;
use shale_server::config::{parse_urls, Config};
use shale_server::probe;
use shale_server::server::{serve, serve_metrics, Member};

/// mimalloc instead of glibc's malloc: a member allocates and frees a few small buffers per
/// request (HTTP/2 frames, protobuf messages), and glibc's malloc/free took about 12% of a
/// member's CPU under linearizable ranges (perf, 3 members on loopback).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(level: &str) {
    let level = match level {
        "panic" | "fatal" => "error",
        l => l,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHALE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn"
        ))
    });
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Listeners on every URL of the comma list `urls`; an error names `what` they are for.
async fn bind_all(urls: &str, what: &str) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    let mut listeners = Vec::new();
    for u in parse_urls(urls).map_err(anyhow::Error::msg)? {
        let addr = u.bind_addr().map_err(anyhow::Error::msg)?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))?;
        listeners.push(l);
    }
    Ok(listeners)
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    // Bind first so a taken port is reported before anything is written.
    let listeners = bind_all(&cfg.listen_client_urls, "clients").await?;
    let metric_listeners = bind_all(&cfg.listen_metrics_urls, "metrics").await?;
    let peer_listeners = bind_all(&cfg.listen_peer_urls, "peers").await?;
    let member = Member::start(&cfg, peer_listeners).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for l in listeners {
        tracing::info!(address = %l.local_addr()?, "serving client traffic (gRPC and HTTP)");
        let ctx = member.ctx.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            serve(ctx, l, async move {
                let _ = rx.changed().await;
            })
            .await
        }));
    }
    for l in metric_listeners {
        tracing::info!(address = %l.local_addr()?, "serving metrics");
        let ctx = member.ctx.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            serve_metrics(ctx, l, async move {
                let _ = rx.changed().await;
            })
            .await
        }));
    }
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = member.removed() => {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    member.shutdown().await;
    Ok(())
}

/// `shale healthcheck [URL]`: exit 0 when the member at URL (default: this container's
/// own client port) reports itself healthy; used by docker/compose.yaml.
fn healthcheck(url: Option<String>) -> ! {
    let url = url.unwrap_or_else(|| probe::DEFAULT_HEALTH_URL.to_string());
    match probe::check(&url, std::time::Duration::from_secs(3)) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("shale healthcheck: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("healthcheck") {
        healthcheck(args.next());
    }
    let cfg = Config::parse();
    init_logging(&cfg.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shale: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cfg)) {
        eprintln!("shale: {e:#}");
        std::process::exit(1);
    }
}
