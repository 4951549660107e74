//! [`self_signed`]: the certificate of `--auto-tls` / `--peer-auto-tls`.
//!
//! As etcd does, a member with auto TLS makes a self-signed certificate for the hosts of
//! its listen URLs and keeps it in the data dir (`fixtures/client`, `fixtures/peer`); an
//! existing pair there is reused, so clients that pinned it keep working across restarts.

use std::path::{Path, PathBuf};

use crate::TlsError;

/// Returns `(cert.pem, key.pem)` in `dir`, making a self-signed pair for `hosts` (DNS names
/// or IP addresses) when `dir` does not hold a usable one.
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if crate::pem::key_pair("--auto-tls", &cert, "--auto-tls", &key).is_ok() {
        return Ok((cert, key));
    }
    let mut names: Vec<String> = hosts.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    names.sort();
    names.dedup();
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::Config(format!("--auto-tls: cannot make a certificate: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::file("--auto-tls", dir, e))?;
    let write = |path: &Path, body: String| -> Result<(), TlsError> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body).map_err(|e| TlsError::file("--auto-tls", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TlsError::file("--auto-tls", path, e))
    };
    write(&key, made.signing_key.serialize_pem())?;
    write(&cert, made.cert.pem())?;
    Ok((cert, key))
}
