//! The Shale server: etcd's v3 gRPC API and HTTP endpoints over a Raft-replicated MVCC store.
//!
//! * [`config`] — the `shale` command line (etcd's flags).
//! * [`server`] — starting a member and serving a listener until shutdown.
//! * `svc_*` — one module per gRPC service; handlers validate, delegate to the node or the
//!   store, map errors through the single table in `shale_api::error`, and fill headers.
//! * [`http`] / [`metrics`] — `/health`, `/livez`, `/readyz`, `/version`, `/metrics`.
//! * [`background`] — lease expiry, auto-compaction, progress notifications.
//! * [`cork`] — gathers a connection's writes of one scheduler pass into one syscall.
//! * `removal` — a member removed from the cluster stops, as etcd's.
//! * [`probe`] — `shale healthcheck`, the container health probe (std only).
//! * [`h2_authority`] — repairs the URL-shaped HTTP/2 `:authority` etcdctl 3.4 sends.

pub mod auth;
pub mod auth_flags;
pub mod auth_token;
pub mod background;
pub mod config;
pub mod cork;
pub mod ctx;
pub mod front_door;
pub mod h2_authority;
pub mod http;
pub mod list;
pub mod list_pool;
pub mod metrics;
pub mod probe;
mod removal;
pub mod server;
pub mod svc_auth;
pub mod svc_cluster;
pub mod svc_kv;
pub mod svc_lease;
pub mod svc_maintenance;
pub mod svc_watch;
pub mod tls;
