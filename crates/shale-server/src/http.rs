//! Plain HTTP endpoints served on the client port next to gRPC: `/health`, `/livez`,
//! `/readyz`, `/version` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use shale_api::etcdserverpb::AlarmType;

use crate::ctx::Ctx;
use crate::metrics::Gauges;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

fn json(code: StatusCode, body: String) -> impl IntoResponse {
    (code, [("content-type", "application/json")], body)
}

/// etcd's health check: a leader exists, no alarm is raised, and a linearizable read
/// completes within a second.
async fn health_reason(ctx: &Ctx) -> Option<String> {
    if !ctx.node.has_leader() {
        return Some("RAFT NO LEADER".into());
    }
    if ctx.node.machine().has_alarm(AlarmType::Nospace) {
        return Some("ALARM NOSPACE".into());
    }
    match tokio::time::timeout(Duration::from_secs(1), ctx.node.read_barrier()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("QGET ERROR:{e}")),
        Err(_) => Some("QGET ERROR:timeout".into()),
    }
}

async fn health(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    match health_reason(&ctx).await {
        None => json(StatusCode::OK, r#"{"health":"true","reason":""}"#.into()),
        Some(r) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":"{r}"}}"#),
        ),
    }
}

async fn livez() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn readyz(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    match health_reason(&ctx).await {
        None => (StatusCode::OK, "ok".to_string()),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]{r}\nreadyz check failed"),
        ),
    }
}

async fn version(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    let v = &ctx.id.version;
    let cluster = v
        .rsplit_once('.')
        .map_or(v.clone(), |(mm, _)| format!("{mm}.0"));
    json(
        StatusCode::OK,
        format!(
            r#"{{"etcdserver":"{v}","etcdcluster":"{cluster}","shale":"{}"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
    )
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    let st = ctx.node.status();
    let store = ctx.store();
    let (watchers, slow) = ctx.node.machine().hub().watcher_counts();
    let g = Gauges {
        has_leader: st.leader.is_some(),
        is_leader: st.is_leader,
        term: st.term,
        applied_index: st.applied_index,
        committed_index: st.last_log_index,
        snapshot_index: st.snapshot_index,
        purged_index: st.purged_index,
        snapshots: st.snapshots,
        db_size: ctx.db_size.load(std::sync::atomic::Ordering::Relaxed),
        keys: store.key_count(),
        revision: store.current_revision(),
        compact_revision: store.compact_revision(),
        watchers,
        slow_watchers: slow,
        quota: ctx.limits.quota_bytes,
        version: ctx.id.version.clone(),
    };
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        ctx.metrics.render(&g),
    )
}
