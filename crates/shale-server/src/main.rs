//! `shale`: start one member. Flags are etcd's (`shale --help`).

use clap::Parser;
use shale_server::config::Config;
use shale_server::probe;
use shale_server::server::{serve, serve_metrics, Member};
use shale_server::tls::bind_all;

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

async fn run(cfg: Config) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    // Bind first so a taken port is reported before anything is written.
    let listeners = bind_all(&cfg.listen_client_urls, "clients").await?;
    let metric_listeners = bind_all(&cfg.listen_metrics_urls, "metrics").await?;
    let peer_listeners = bind_all(&cfg.listen_peer_urls, "peers").await?;
    let client_tls = cfg
        .tls
        .client_server(
            &cfg.data_dir(),
            &format!("{},{}", cfg.listen_client_urls, cfg.listen_metrics_urls),
        )
        .map_err(anyhow::Error::msg)?;
    let member = Member::start(&cfg, peer_listeners).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for l in listeners {
        let tls = if l.tls { client_tls.clone() } else { None };
        tracing::info!(address = %l.inner.local_addr()?, tls = tls.is_some(), "serving client traffic (gRPC and HTTP)");
        let ctx = member.ctx.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            serve(ctx, l.inner, tls, async move {
                let _ = rx.changed().await;
            })
            .await
        }));
    }
    for l in metric_listeners {
        let tls = if l.tls { client_tls.clone() } else { None };
        let l = l.inner;
        tracing::info!(address = %l.local_addr()?, tls = tls.is_some(), "serving metrics");
        let ctx = member.ctx.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            serve_metrics(ctx, l, tls, async move {
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

/// `shale healthcheck [URL] [--cacert F --cert F --key F | --insecure-skip-tls-verify]`:
/// exit 0 when the member at URL (default: this container's own client port) reports
/// itself healthy; used by docker/compose.yaml and docker/compose.tls.yaml. TLS files may
/// also come from etcdctl's `ETCDCTL_CACERT`, `ETCDCTL_CERT` and `ETCDCTL_KEY`.
fn healthcheck(args: Vec<String>) -> ! {
    let verdict = probe::Probe::from_args(args, |var| std::env::var(var).ok())
        .and_then(|p| probe::check(&p, std::time::Duration::from_secs(3)));
    match verdict {
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
        healthcheck(args.collect());
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
