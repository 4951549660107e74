//! # shale-api — the etcd v3 wire contract of Shale
//!
//! This crate is the bottom of Shale's dependency graph. It owns three things
//! that every other crate must agree on byte for byte:
//!
//! 1. **Wire types.** Rust code generated at build time from the `.proto`
//!    files in the repository's `proto/` directory:
//!    [`etcdserverpb`] (the etcd v3 API: KV, Watch, Lease, Cluster,
//!    Maintenance, Auth), [`mvccpb`] (`KeyValue`, `Event`), [`authpb`]
//!    (users, roles, permissions) and [`shalepb`] (Shale's own Raft command
//!    envelope, `InternalRequest` / `InternalResponse`). Package, service,
//!    message and field names and field numbers are etcd's, so gRPC paths
//!    (`/etcdserverpb.KV/Range`, …) and encoded bytes are identical to etcd's.
//!    Every protobuf `bytes` field is a [`bytes::Bytes`], so keys and values
//!    can be shared between the network, the Raft log and the store without
//!    copying.
//! 2. **Errors.** [`error::EtcdError`] is the single table of every error the
//!    server can return to a client, with etcd's exact gRPC code and message
//!    (clients such as kube-apiserver and etcd's clientv3 match on the text).
//! 3. **Request validation.** [`validate`] performs the checks etcd runs in its
//!    gRPC layer before a request is proposed to Raft, and [`validate::limits`]
//!    holds etcd's default limits.
//! 4. **Shared watch events.** [`watch_wire`]: the server's `WatchResponse`
//!    encoding, whose events are encoded once and shared by every watcher.
//!    The generated Watch *server* (`etcdserverpb::watch_server`) sends
//!    [`watch_wire::WireWatchResponse`]; the Watch *client* receives the
//!    ordinary `etcdserverpb::WatchResponse` (same bytes on the wire).
//! 5. **Pre-encoded range results.** [`range_wire`]: the server's `RangeResponse` and
//!    `RangeStreamResponse` encodings, whose key-values are the stored record bytes, copied
//!    once into the wire buffer. Clients receive the ordinary messages.
//!
//! ## Features
//!
//! * default: messages only (prost). Storage, MVCC and state-machine crates
//!   use this and do not depend on tonic.
//! * `grpc`: additionally generates tonic servers and clients
//!   (`etcdserverpb::kv_server::{Kv, KvServer}`,
//!   `etcdserverpb::kv_client::KvClient`, …) and conversions between
//!   [`EtcdError`] and `tonic::Status`.
//!
//! ## Invariants
//!
//! * The `.proto` files never renumber or retype a field; `shalepb` is
//!   persisted in the Raft log, so it only ever grows.
//! * `EtcdError::code_number()` values are persisted (in
//!   `InternalResponse.error`) and must never be reused or changed.

pub mod encoded;
pub mod error;
pub mod range_wire;
pub mod validate;
pub mod watch_wire;
#[cfg(feature = "grpc")]
pub mod wire_codec;

pub use error::{Code, EtcdError};

/// etcd's storage types: `KeyValue` and `Event` (package `mvccpb`).
#[allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's auth storage types: `User`, `Role`, `Permission` (package `authpb`).
#[allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// The etcd v3 gRPC API (package `etcdserverpb`): all request and response
/// messages and, with the `grpc` feature, the service servers and clients.
#[allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// Shale's Raft command envelope (package `shalepb`): what the leader
/// proposes (`InternalRequest`) and what apply returns (`InternalResponse`).
#[allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
pub mod shalepb {
    include!(concat!(env!("OUT_DIR"), "/shalepb.rs"));
}

/// Encoded `google.protobuf.FileDescriptorSet` of every `.proto` file of this
/// crate (with imports and source info), e.g. for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shale_descriptor.bin"));

#[cfg(test)]
mod tests;
