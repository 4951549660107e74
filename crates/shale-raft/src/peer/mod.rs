//! The peer side of a member: how the members of a Raft group talk to each other over the
//! peer port (etcd's 2380), on tonic.
//!
//! Three parts:
//! - [`Peers`]: the outgoing side. One lazily connected HTTP/2 channel per peer member,
//!   shared by everything that talks to that peer (Raft replication, votes, snapshots and
//!   forwarded requests), so a pair of members uses one connection each way. Every message
//!   carries this cluster's id and the Raft group id; a receiver refuses a message from
//!   another cluster or for a group it does not run.
//! - [`PeerNetwork`]: openraft's network over [`Peers`]. Requests and answers of openraft
//!   are bincode inside a protobuf envelope (`RaftMessage`).
//! - [`PeerService`]: the incoming side, the `RaftPeer` gRPC service: hands Raft messages
//!   to the local Raft, answers `Hello` (who is in this cluster), and executes requests
//!   forwarded by followers when this member leads (writes, read index, lease keep-alive
//!   and time-to-live, membership changes). It tells a removed member that it has been
//!   removed ([`is_member_removed`]), as etcd does, so that member stops.
//!
//! Invariants: nothing received is trusted to decode (a bad payload is an
//! `InvalidArgument` answer, never a panic); a forwarded write is sent at most once (a
//! transport failure is reported to the client as a possibly-applied timeout, never
//! retried behind its back); reads may be retried because they change nothing.

pub(crate) mod forwarder;
mod network;
mod peers;
mod service;

pub use forwarder::{Forwarder, Route};
pub use network::{PeerConn, PeerNetwork};
pub use peers::{PeerConfig, Peers, MAX_PEER_MESSAGE};
pub use service::{is_member_removed, member_removed, PeerService, MEMBER_REMOVED};
