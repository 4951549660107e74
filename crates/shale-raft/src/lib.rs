//! shale-raft: the openraft glue of Shale.
//!
//! The durable Raft log store ([`LogStore`]), the state-machine adapter
//! ([`state_machine`]), the peer transport ([`peer`]), and [`RaftNode`], one member of a
//! group: propose, linearizable read points, membership.

pub mod app;
mod error;
mod log_store;
mod meta_file;
pub mod cluster;
pub mod identity;
pub mod network;
pub mod peer;
pub mod node;
mod open;
mod proposer;
mod read_barrier;
mod segment;
mod state;
mod transfer;
pub mod state_machine;
pub mod types;
mod writer;

pub use error::LogStoreError;
pub use log_store::{segment_path, LogReader, LogStore, LogStoreOptions};

#[cfg(test)]
mod tests;

pub use app::{Command, NodeId, Raft, Reply, TypeConfig};
pub use node::{NodeConfig, NodeError, NodeStatus, RaftNode};
