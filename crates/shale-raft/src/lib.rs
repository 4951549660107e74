//! shale-raft: the openraft glue of Shale.
//!
//! So far this crate holds the durable Raft log store ([`LogStore`]), generic over the openraft
//! type config. The state-machine adapter and the network come next.

pub mod app;
mod error;
mod log_store;
mod meta_file;
pub mod network;
pub mod node;
mod open;
mod proposer;
mod read_barrier;
mod segment;
mod state;
pub mod state_machine;
pub mod types;
mod writer;

pub use error::LogStoreError;
pub use log_store::{segment_path, LogReader, LogStore, LogStoreOptions};

#[cfg(test)]
mod tests;

pub use app::{Command, NodeId, Raft, Reply, TypeConfig};
pub use node::{NodeConfig, NodeError, NodeStatus, RaftNode};
