//! [`ServerTlsConfig`]: the TLS side of one kind of listening port (client or peer), from
//! etcd's flags to a rustls `ServerConfig`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use crate::options::{parse_cipher_suites, versions};
use crate::verify::AllowedPeer;
use crate::{ReloadingKeyPair, TlsError, TlsVersion};

/// TLS settings of one kind of listening port. Field names follow etcd's flags; for the peer
/// port the flags carry the `peer-` prefix (see [`ServerTlsConfig::flag_prefix`]).
#[derive(Debug, Clone, Default)]
pub struct ServerTlsConfig {
    /// `""` for the client port, `"peer-"` for the peer port: error messages name
    /// `--{prefix}cert-file` and so on.
    pub flag_prefix: String,
    /// The certificate chain presented to clients (`--cert-file`).
    pub cert_file: PathBuf,
    /// Its private key (`--key-file`).
    pub key_file: PathBuf,
    /// CA bundle client certificates must chain to (`--trusted-ca-file`).
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca_file` (`--client-cert-auth`).
    pub client_cert_auth: bool,
    /// Revoked client certificates (`--client-crl-file`, `--peer-crl-file`).
    pub crl_file: Option<PathBuf>,
    /// Only these client certificate CNs (`--peer-cert-allowed-cn`); empty = any.
    pub allowed_cns: Vec<String>,
    /// Only client certificates valid for one of these names (`--peer-cert-allowed-hostname`).
    pub allowed_hostnames: Vec<String>,
    /// `--tls-min-version` (default TLS1.2).
    pub min_version: Option<TlsVersion>,
    /// `--tls-max-version` (default TLS1.3).
    pub max_version: Option<TlsVersion>,
    /// `--cipher-suites`: TLS 1.2 suites by Go's names; empty = rustls' defaults.
    pub cipher_suites: Vec<String>,
}

impl ServerTlsConfig {
    fn flag(&self, name: &str) -> String {
        format!("--{}{name}", self.flag_prefix)
    }

    /// Checks the flag combination (files are checked by [`Self::build`]).
    pub fn validate(&self) -> Result<(), TlsError> {
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return Err(TlsError::Config(format!(
                "{} requires {} (the CA that client certificates must be signed by)",
                self.flag("client-cert-auth"),
                self.flag("trusted-ca-file")
            )));
        }
        if !self.allowed_cns.is_empty() && !self.allowed_hostnames.is_empty() {
            // As etcd: one or the other (etcd's message).
            return Err(TlsError::Config(format!(
                "--peer-cert-allowed-cn and --peer-cert-allowed-hostname are mutually exclusive (cn={:?}, hostname={:?})",
                self.allowed_cns.join(","),
                self.allowed_hostnames.join(",")
            )));
        }
        let cert_auth = self.client_cert_auth;
        if !cert_auth && (!self.allowed_cns.is_empty() || !self.allowed_hostnames.is_empty()) {
            return Err(TlsError::Config(format!(
                "--peer-cert-allowed-cn/--peer-cert-allowed-hostname require {}",
                self.flag("client-cert-auth")
            )));
        }
        if !self.cipher_suites.is_empty() && self.min_version == Some(TlsVersion::Tls13) {
            return Err(TlsError::Config(
                "--cipher-suites cannot be configured when only TLS1.3 is enabled (--tls-min-version=TLS1.3)".into(),
            ));
        }
        versions(self.min_version, self.max_version)?;
        // As etcd, refuse unknown suite names even when no port uses TLS.
        self.provider()?;
        Ok(())
    }

    /// The crypto provider restricted to `--cipher-suites` (TLS 1.3 suites always stay).
    pub(crate) fn provider(&self) -> Result<Arc<CryptoProvider>, TlsError> {
        let mut p = (*crate::provider()).clone();
        if !self.cipher_suites.is_empty() {
            let tls12 = parse_cipher_suites(&p, &self.cipher_suites)?;
            p.cipher_suites
                .retain(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)));
            p.cipher_suites.extend(tls12);
        }
        Ok(Arc::new(p))
    }

    /// Loads the certificate/key pair this port presents.
    pub fn key_pair(&self) -> Result<Arc<ReloadingKeyPair>, TlsError> {
        ReloadingKeyPair::load(
            &self.flag("cert-file"),
            &self.cert_file,
            &self.flag("key-file"),
            &self.key_file,
        )
    }

    /// Reads every file and builds the rustls configuration, presenting `pair`.
    pub fn build_with(
        &self,
        pair: Arc<ReloadingKeyPair>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.validate()?;
        let provider = self.provider()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(self.min_version, self.max_version)?)
            .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
        // The CA and CRL files are read whenever they are given, so a bad one is refused at
        // startup (etcd refuses a bad --trusted-ca-file even without --client-cert-auth);
        // they are used only with client certificate authentication.
        let roots = match &self.trusted_ca_file {
            Some(ca) => Some(crate::pem::roots(&self.flag("trusted-ca-file"), ca)?),
            None => None,
        };
        let crls = match &self.crl_file {
            Some(crl) => {
                let flag = if self.flag_prefix.is_empty() {
                    "--client-crl-file".to_string()
                } else {
                    self.flag("crl-file")
                };
                crate::pem::crls(&flag, crl)?
            }
            None => Vec::new(),
        };
        let builder = match (roots, self.client_cert_auth) {
            (Some(roots), true) => {
                let mut v = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                if !crls.is_empty() {
                    v = v.with_crls(crls);
                }
                let v = v
                    .build()
                    .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
                if self.allowed_cns.is_empty() && self.allowed_hostnames.is_empty() {
                    builder.with_client_cert_verifier(v)
                } else {
                    builder.with_client_cert_verifier(Arc::new(AllowedPeer {
                        inner: v,
                        cns: self.allowed_cns.clone(),
                        hostnames: self.allowed_hostnames.clone(),
                    }))
                }
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(pair);
        cfg.alpn_protocols = crate::ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }

    /// [`Self::build_with`] the pair from this config's own files.
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.validate()?;
        self.build_with(self.key_pair()?)
    }
}
