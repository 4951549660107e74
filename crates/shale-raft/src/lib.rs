//! shale-raft: the openraft glue of Shale.
//!
//! The durable Raft log store ([`LogStore`]), the state-machine adapter
//! ([`state_machine`]), the peer transport ([`peer`]), and [`RaftNode`], one member of a
//! group: propose, linearizable read points, membership.

pub mod app;
pub mod cluster;
mod error;
pub mod identity;
mod log_store;
mod meta_file;
pub mod network;
pub mod node;
mod open;
pub mod peer;
mod proposer;
mod read_barrier;
mod read_index;
mod segment;
mod shared_round;
pub mod snap_dir;
pub mod snapshot_trigger;
mod state;
pub mod state_machine;
mod transfer;
pub mod types;
mod writer;

pub use error::LogStoreError;
pub use log_store::{segment_path, LogReader, LogStore, LogStoreOptions};

#[cfg(test)]
mod tests;

pub use app::{Command, NodeId, Raft, Reply, TypeConfig};
pub use node::{NodeConfig, NodeError, NodeStatus, RaftNode, StateEngine};
