//! Reading PEM files: certificate chains, private keys, CA bundles and CRLs.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::TlsError;

fn readable(flag: &str, path: &Path) -> Result<(), TlsError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| TlsError::file(flag, path, format!("cannot read: {e}")))
}

/// Every certificate in the PEM file `path` (at least one).
pub fn certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    readable(flag, path)?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::file(flag, path, format!("not a PEM certificate file: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(flag, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            flag,
            path,
            "not a PEM certificate file: no CERTIFICATE block",
        ));
    }
    Ok(certs)
}

/// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    readable(flag, path)?;
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::file(flag, path, format!("not a PEM private key file: {e}")))
}

/// A trust store from the CA bundle `path`.
pub fn roots(flag: &str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(flag, path)? {
        store
            .add(c)
            .map_err(|e| TlsError::file(flag, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// The revocation lists in the PEM file `path`.
pub fn crls(
    flag: &str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    readable(flag, path)?;
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| TlsError::file(flag, path, format!("not a PEM CRL file: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(flag, path, format!("not a PEM CRL file: {e}")))?;
    if crls.is_empty() {
        return Err(TlsError::file(
            flag,
            path,
            "not a PEM CRL file: no X509 CRL block",
        ));
    }
    Ok(crls)
}

/// A certificate chain and its key, checked to belong together.
pub fn key_pair(
    cert_flag: &str,
    cert: &Path,
    key_flag: &str,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs(cert_flag, cert)?;
    let der = key(key_flag, key_path)?;
    let provider = crate::provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::file(key_flag, key_path, format!("unusable private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|_| {
        TlsError::file(
            cert_flag,
            cert,
            format!(
                "the certificate does not match the private key in {key_flag} {}",
                key_path.display()
            ),
        )
    })?;
    Ok(Arc::new(pair))
}

/// The subject Common Name of a DER certificate, if it has one.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
