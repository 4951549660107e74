//! Raft type configuration.
//!
//! The production `TypeConfig` (`openraft::declare_raft_types!` with Shale's command and
//! response types, `NodeId = u64`, the node address type and the snapshot data type) is declared
//! here by the lead once `shale-machine` is ready. [`crate::LogStore`] stays generic over any
//! `C: openraft::RaftTypeConfig` whose `C::Entry: Clone` (true for `openraft::Entry<C>`);
//! entries are persisted with serde/bincode, which openraft's `serde` feature already requires
//! of `C::Entry`.
