//! The dialing side: [`ClientTlsConfig`] builds a rustls `ClientConfig` (a trusted CA,
//! optionally a client certificate that reloads like the server's, a CRL, or no
//! verification at all), and [`TlsConnector`] dials a TLS connection for tonic.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::options::versions;
use crate::verify::SkipServerVerify;
use crate::{ReloadingKeyPair, TlsError, TlsVersion};

/// How a client verifies servers and proves who it is.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsConfig {
    /// CA bundle the server's certificate must chain to, with the flag that named it.
    pub trusted_ca: Option<(String, PathBuf)>,
    /// Revoked server certificates, with the flag that named the file.
    pub crl: Option<(String, PathBuf)>,
    /// The client certificate presented when the server asks for one.
    pub key_pair: Option<Arc<ReloadingKeyPair>>,
    /// Accept any server certificate (`--insecure-skip-tls-verify`, `--peer-auto-tls`).
    pub insecure_skip_verify: bool,
    /// Crypto provider (cipher suites); `None` = ring's defaults.
    pub provider: Option<Arc<CryptoProvider>>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
}

impl ClientTlsConfig {
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = self.provider.clone().unwrap_or_else(crate::provider);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(self.min_version, self.max_version)?)
            .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipServerVerify(provider.clone())))
        } else {
            let (flag, ca) = self.trusted_ca.as_ref().ok_or_else(|| {
                TlsError::Config(
                    "a trusted CA file is required to verify TLS servers (or skip verification explicitly)".into(),
                )
            })?;
            let roots = crate::pem::roots(flag, ca)?;
            let mut v = WebPkiServerVerifier::builder_with_provider(roots, provider.clone());
            if let Some((flag, crl)) = &self.crl {
                v = v.with_crls(crate::pem::crls(flag, crl)?);
            }
            let v = v
                .build()
                .map_err(|e| TlsError::Config(format!("server certificate verifier: {e}")))?;
            builder.with_webpki_verifier(v)
        };
        let mut cfg = match &self.key_pair {
            Some(pair) => builder.with_client_cert_resolver(pair.clone()),
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Client TLS files as tools take them (etcdctl's `--cacert`, `--cert`, `--key`,
/// `--insecure-skip-tls-verify`).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// A client configuration from etcdctl-style files (ALPN `h2`).
pub fn client_config(f: &ClientTlsFiles) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let key_pair = match (&f.cert, &f.key) {
        (Some(c), Some(k)) => Some(ReloadingKeyPair::load("--cert", c, "--key", k)?),
        (None, None) => None,
        _ => {
            return Err(TlsError::Config(
                "--cert and --key must be given together".into(),
            ))
        }
    };
    if f.ca.is_none() && !f.insecure_skip_verify {
        return Err(TlsError::Config(
            "--cacert is required to verify a TLS server (or pass --insecure-skip-tls-verify)"
                .into(),
        ));
    }
    ClientTlsConfig {
        trusted_ca: f.ca.clone().map(|p| ("--cacert".to_string(), p)),
        key_pair,
        insecure_skip_verify: f.insecure_skip_verify,
        ..Default::default()
    }
    .build()
}

/// A tonic connector that dials TCP and then TLS.
///
/// tonic refuses `https://` URIs unless its own TLS is compiled in, so endpoints that use
/// this connector are given as `http://host:port`; the connector verifies the server's
/// certificate for `host` (or for [`TlsConnector::server_name`] when set).
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    server_name: Option<String>,
}

impl TlsConnector {
    pub fn new(config: Arc<rustls::ClientConfig>, connect_timeout: Duration) -> Self {
        Self {
            config,
            connect_timeout,
            server_name: None,
        }
    }

    /// Verify the server as `name` instead of the dialed host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Dials `host:port` and completes a TLS handshake, within the connect timeout.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
            .to_owned();
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let host = host.to_string();
        let dial = async move {
            let tcp =
                TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
                    .await?;
            tcp.set_nodelay(true)?;
            connector.connect(name, tcp).await
        };
        tokio::time::timeout(self.connect_timeout, dial)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS connect timed out")
            })?
    }
}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = std::io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>>
            + Send,
    >,
>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            this.connect(&host, port).await.map(TokioIo::new)
        })
    }
}
