//! Errors of the MVCC layer, split by what the caller must do.

use shale_api::error::EtcdError;

/// An MVCC error. [`Error::is_deterministic`] tells the applier whether the error is an answer
/// for the client (same input, same error on every member) or a fault of this member that must
/// stop it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request-level error every member reaches identically (compacted, future revision...).
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] shale_storage::Error),
    /// Stored data could not be decoded or is missing where the index says it must be.
    #[error("mvcc data is corrupt: {0}; restore this member from a snapshot or a peer")]
    Corrupt(String),
}

impl Error {
    pub fn is_deterministic(&self) -> bool {
        matches!(self, Error::Etcd(_))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
