//! [`TlsError`]: what an operator got wrong, naming the flag and the file.

use std::path::PathBuf;

/// A TLS configuration that cannot be used. Every variant is the operator's to fix (the
/// member refuses to start); none is transient.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by `flag` could not be read or does not hold what it should.
    #[error("{flag} {}: {reason}", path.display())]
    File {
        flag: String,
        path: PathBuf,
        reason: String,
    },
    /// A combination of flags that cannot work.
    #[error("{0}")]
    Config(String),
}

impl TlsError {
    pub(crate) fn file(flag: &str, path: &std::path::Path, reason: impl ToString) -> TlsError {
        TlsError::File {
            flag: flag.to_string(),
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
