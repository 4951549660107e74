//! The MVCC layer of Shale: etcd's data model, pure and synchronous.
//!
//! * [`MvccStore`] — revisions, the key index with generations, history, compaction.
//! * [`kv`] — etcd's request semantics on top of it: Range (filters, sort, limit, count),
//!   Put, DeleteRange and Txn (compares, nested branches), exactly as etcd answers them.
//! * [`watch`] — the watch hub: watchers grouped as synced (fed from each committed batch)
//!   or unsynced (catching up from stored history), progress notifications.
//! * [`hash`] — etcd-compatible `Hash`/`HashKV` over the stored history.
//! * [`checkpoint`] — the persisted key index that makes opening independent of data size.
//! * [`wire_range`] — Range answered with the stored records as its wire encoding (LISTs).
//!
//! Nothing here knows about Raft, tokio or gRPC: the state machine drives [`MvccStore`] with
//! decided commands, and the server wires watchers to streams through [`watch::WatchSink`].

mod batch;
pub mod checkpoint;
mod compactor;
pub mod error;
pub mod hash;
pub mod key_index;
pub mod key_range;
pub mod kv;
pub mod record;
mod recovery;
pub mod revision;
pub mod store;
pub mod tree_index;
pub mod watch;
pub mod wire_range;

pub use checkpoint::{CheckpointConfig, CheckpointStats, Recovery};
pub use error::{Error, Result};
pub use key_range::KeyRange;
pub use revision::Revision;
pub use store::{ApplyBatch, Change, Committed, MvccStore, RangeOptions, RangeResult, WriteTxn};
