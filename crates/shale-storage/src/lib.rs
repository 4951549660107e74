//! Storage engines for Shale's state machine.
//!
//! The state machine (MVCC data, leases, the applied Raft index) lives in one ordered byte
//! keyspace. Logical tables are key prefixes chosen by the layers above; the engine knows
//! nothing about them. The contract is deliberately small:
//!
//! * point reads and ordered range scans of the keyspace;
//! * [`WriteBatch`]es that commit atomically: after a crash either every write of a batch is
//!   visible or none is. The state machine relies on this to store data and the applied Raft
//!   index together, so re-applying a log entry is never possible;
//! * `flush` to push written batches towards disk.
//!
//! Durability: the state store does not have to be power-loss safe on its own. The Raft log
//! (fsynced before an append is acknowledged) is the source of truth; after a crash the state
//! machine resumes from its applied index and the log re-applies what is missing. An engine
//! must therefore only guarantee *atomicity and prefix order* of batches, which sled does.
//!
//! Three engines implement [`Engine`]: [`LogEngine`], the default for new members (a
//! log-structured store: batches appended to data files, keys and value locations in memory;
//! see its module for why), [`SledEngine`] (`--experimental-state-engine=sled`, and members
//! created before the log engine) and [`MemoryEngine`], an in-memory twin used by tests. All
//! pass the conformance suite ([`conformance`]).

pub mod conformance;
mod engine;
mod log_engine;
mod memory;
mod sled_engine;

pub use engine::{
    prefix_end as engine_prefix_end, Engine, Error, KvPair, Result, ScanIter, WriteBatch, WriteOp,
};
pub use log_engine::{files_opened_from_hints, LogEngine, LogEngineConfig, OpenStats};
pub use memory::MemoryEngine;
pub use sled_engine::SledEngine;
