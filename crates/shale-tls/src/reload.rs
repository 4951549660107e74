//! [`ReloadingKeyPair`]: a certificate and key read from files, reloaded when the files
//! change, without a restart.
//!
//! etcd re-reads its certificate files for every new connection. Shale looks at the files'
//! metadata (inode, size, modification time) instead, which costs two `stat` calls per
//! handshake, and loads the pair only when something changed. Invariants:
//! - the pair in use was loaded in full and its key matches its certificate;
//! - a change that cannot be loaded (a half-written file, a key of another pair) is logged
//!   once per change and the last good pair stays in use; when the files change again
//!   (the writer finished), the next handshake tries again;
//! - connections that are already open keep the pair they started with.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::sign::CertifiedKey;

use crate::TlsError;

/// Metadata of both files; a different value means "reload".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Stamp([(u64, u64, i64, i64); 2]);

fn stamp_of(paths: [&Path; 2]) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
            .unwrap_or_default()
    };
    Stamp([one(paths[0]), one(paths[1])])
}

#[derive(Debug)]
struct Current {
    stamp: Stamp,
    pair: Arc<CertifiedKey>,
}

/// A certificate/key pair from two files, reloaded when they change (see the module docs).
#[derive(Debug)]
pub struct ReloadingKeyPair {
    cert_flag: String,
    cert: PathBuf,
    key_flag: String,
    key: PathBuf,
    current: Mutex<Current>,
}

impl ReloadingKeyPair {
    /// Loads the pair now; an error names the flag and file at fault.
    pub fn load(
        cert_flag: &str,
        cert: &Path,
        key_flag: &str,
        key: &Path,
    ) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp_of([cert, key]);
        let pair = crate::pem::key_pair(cert_flag, cert, key_flag, key)?;
        Ok(Arc::new(Self {
            cert_flag: cert_flag.to_string(),
            cert: cert.to_path_buf(),
            key_flag: key_flag.to_string(),
            key: key.to_path_buf(),
            current: Mutex::new(Current { stamp, pair }),
        }))
    }

    /// The pair to use for a new connection (reloaded first if the files changed).
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamp = stamp_of([&self.cert, &self.key]);
        let mut cur = self.current.lock();
        if cur.stamp != stamp {
            cur.stamp = stamp;
            match crate::pem::key_pair(&self.cert_flag, &self.cert, &self.key_flag, &self.key) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), key = %self.key.display(), "loaded the replaced TLS certificate and key; new connections use them");
                    cur.pair = pair;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load the replaced TLS certificate/key; keeping the last good pair")
                }
            }
        }
        cur.pair.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingKeyPair {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingKeyPair {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
