//! The replicated state machine of Shale.
//!
//! [`Machine`] applies decided commands ([`shale_api::shalepb::InternalRequest`], one per Raft
//! log entry) to the MVCC store, the lessor and the alarm list, deterministically: the same
//! commands in the same order give every member the same state and the same answers.
//!
//! Invariants:
//! * A whole apply call (many log entries) is one storage batch, and that batch also stores
//!   the caller's opaque Raft state (last applied log id and membership). After a crash the
//!   store is exactly at some applied index: never half an entry, never an entry twice.
//! * Deterministic request errors (lease not found, compacted, no space...) become answers in
//!   [`InternalResponse::error`]; storage failures are returned as [`Error`] and must stop
//!   the member.
//! * Watchers hear about a batch only after it committed.

mod alarms;
pub mod auth_store;
pub mod lessor;
mod machine;
pub mod members;
pub mod snapshot;

pub use machine::{response_result, Error, Machine, MachineConfig, Result};
pub use shale_api::shalepb::{
    internal_request, internal_response, InternalRequest, InternalResponse,
};
