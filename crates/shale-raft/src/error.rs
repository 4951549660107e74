//! Errors of the durable Raft log store.
//!
//! Every message is written for the operator who reads it in a log line at 3 a.m.: it names
//! the file and offset involved and says what to do next. Corruption that cannot be explained by
//! a crash (anything but a torn tail of the last segment) is never repaired silently: the member
//! refuses to start and must be restored from a peer or a snapshot, because serving from a log
//! with a hole in it could un-commit acknowledged writes.

use std::io;
use std::path::PathBuf;

use openraft::{AnyError, ErrorSubject, ErrorVerb, NodeId, StorageError, StorageIOError};

/// Everything that can go wrong while opening or operating a [`crate::LogStore`].
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// An operating-system level IO error on a named path.
    #[error(
        "raft log IO error on {path}: {source}; check that the data directory exists, is writable \
         by this user and that the disk is healthy and not full"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A segment holds bad data somewhere other than its torn tail.
    #[error(
        "raft log segment {file} is corrupt at offset {offset} ({reason}) and this is not a torn \
         tail left by a crash; refusing to start. Restore this member from a peer or a snapshot \
         (remove it from the cluster, wipe its data directory and add it back)"
    )]
    CorruptSegment {
        file: String,
        offset: u64,
        reason: String,
    },

    /// A segment file is missing from the middle of the sequence.
    #[error(
        "raft log segment {file} is missing (segments {before} and {after} exist around it); the \
         log has a hole, refusing to start. Restore this member from a peer or a snapshot"
    )]
    MissingSegment {
        file: String,
        before: String,
        after: String,
    },

    /// A small metadata file (vote, purged id) failed its checksum or could not be decoded.
    #[error(
        "raft {what} file {path} is corrupt ({reason}); a member must never forget its vote or \
         its purge point, refusing to start. Restore this member from a peer or a snapshot"
    )]
    CorruptMeta {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// The directory does not look like a Shale raft log (wrong magic or format version).
    #[error(
        "{path} is not a Shale raft log segment of a supported format ({reason}); point \
         --data-dir at the right directory or remove the stray file"
    )]
    Foreign { path: PathBuf, reason: String },

    /// An entry could not be serialized or deserialized.
    #[error("raft log entry {index} could not be encoded or decoded: {reason}")]
    Codec { index: u64, reason: String },

    /// A request that would break the log's invariants (holes, overwrites, purged entries).
    #[error("invalid raft log request: {0}")]
    Invalid(String),

    /// An earlier IO error stopped the writer. After a failed fsync the page cache state is
    /// unknown, so nothing more is written until the process restarts and re-scans the log.
    #[error(
        "raft log writer stopped after an earlier IO error ({0}); restart this member, it will \
         re-validate the log on open"
    )]
    Poisoned(String),

    /// The background writer thread is gone (the store is shutting down).
    #[error("raft log writer thread has stopped; the log store is shutting down")]
    WriterGone,
}

impl LogStoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogStoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Convert to openraft's storage error with the given subject and verb.
    pub(crate) fn into_storage<NID: NodeId>(
        self,
        subject: ErrorSubject<NID>,
        verb: ErrorVerb,
    ) -> StorageError<NID> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }

    /// Convert to the `io::Error` handed to openraft's `LogFlushed` callback.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            LogStoreError::Io { source, path } => {
                io::Error::new(source.kind(), format!("{}: {}", path.display(), source))
            }
            other => io::Error::other(other.to_string()),
        }
    }
}
