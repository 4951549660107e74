//! The watch hub: watchers of key ranges, fed in revision order.
//!
//! Model (after etcd's watchable store):
//! * A *stream* is one client Watch RPC; it multiplexes many *watchers* and owns one
//!   [`WatchSink`], an ordered queue towards the client. Everything a stream receives —
//!   created/canceled responses, events, progress — goes through that one queue, so order on
//!   the queue is order on the wire.
//! * A watcher is *synced* when it has been sent every event up to the hub's revision; the
//!   applier's [`WatchHub::notify`] hands each committed batch to synced watchers directly.
//!   Each event is protobuf-encoded once per batch (once more with `prev_kv` if a watcher
//!   wants it) into [`shale_api::watch_wire::EncodedEvent`] bytes that every watcher with the
//!   same settings shares; per watcher only the small response envelope is built, and the
//!   server copies the shared bytes into the response (no re-encoding per watcher).
//! * A watcher is *unsynced* when it must first replay history (it started in the past) or
//!   when its stream's queue was full (a slow client). A background thread replays stored
//!   history from the watcher's next revision, in chunks of whole revisions, and moves it to
//!   the synced group once it has caught up with the hub's revision (under the hub lock, so
//!   no batch can slip between). A watcher whose next revision was compacted away gets a
//!   canceled response carrying `compact_revision`.
//! * A progress request on a stream is answered (`watch_id = -1`) only when every watcher of
//!   the stream is synced; until then it stays pending and is answered by the catch-up thread
//!   right after the last watcher syncs. Since synced watchers have queued every event up to
//!   the hub's revision before the answer, the answer's revision is a true bookmark.

mod catchup;
mod hub;
mod shared;

pub use hub::{StreamId, WatchHub, WatchSink, WatchSpec};
