//! Certificate checks beyond chain validation:
//! - [`AllowedPeer`]: `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname`, checked
//!   after the chain (and CRL) check of the wrapped verifier; as in etcd, the connection is
//!   refused when the client certificate's CN (or its DNS/IP names) is not allowed.
//! - [`SkipServerVerify`]: `--insecure-skip-tls-verify` for tools, and the peer client of
//!   a member with `--peer-auto-tls` (self-signed peers cannot be verified; etcd skips too).
//!   Handshake signatures are still checked, so the peer holds the certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// A client-certificate verifier that also requires an allowed CN or hostname.
#[derive(Debug)]
pub struct AllowedPeer {
    pub inner: Arc<dyn ClientCertVerifier>,
    /// Allowed Common Names (any one); empty = any.
    pub cns: Vec<String>,
    /// Allowed hostnames (the certificate must be valid for one); empty = any.
    pub hostnames: Vec<String>,
}

impl AllowedPeer {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if !self.cns.is_empty() {
            let cn = crate::pem::common_name(cert);
            if !cn.as_ref().is_some_and(|c| self.cns.contains(c)) {
                return Err(rustls::Error::General(format!(
                    "peer certificate CN {:?} is not allowed (--peer-cert-allowed-cn={})",
                    cn.unwrap_or_default(),
                    self.cns.join(",")
                )));
            }
        }
        if !self.hostnames.is_empty() {
            let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
            let ok = self.hostnames.iter().any(|h| {
                ServerName::try_from(h.as_str())
                    .ok()
                    .is_some_and(|name| rustls::client::verify_server_name(&parsed, &name).is_ok())
            });
            if !ok {
                return Err(rustls::Error::General(format!(
                    "peer certificate is not valid for an allowed hostname (--peer-cert-allowed-hostname={})",
                    self.hostnames.join(",")
                )));
            }
        }
        Ok(())
    }
}

impl ClientCertVerifier for AllowedPeer {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check(end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate (see the module docs); signatures are still verified.
#[derive(Debug)]
pub struct SkipServerVerify(pub Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
