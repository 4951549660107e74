//! [`TlsFlags`]: etcd's TLS flags for the client and peer ports, turned into the rustls
//! configurations the listeners and the peer client use (the mechanics live in
//! `shale-tls`).
//!
//! As in etcd:
//! - a listener is TLS when its URL is `https://`; `http://` and `https://` URLs may be
//!   mixed, and each serves gRPC and the HTTP endpoints;
//! - an `https://` client URL needs `--cert-file`/`--key-file` or `--auto-tls` (an
//!   `https://` peer URL the `--peer-*` equivalents); `--client-cert-auth` needs
//!   `--trusted-ca-file`; explicit files win over auto TLS (with a warning);
//! - with `--client-cert-auth`, every client must present a certificate signed by the
//!   trusted CA (and not revoked by `--client-crl-file`);
//! - members dial `https://` peers presenting their peer certificate and verifying the
//!   peer's against `--peer-trusted-ca-file` (with `--peer-auto-tls`, without verifying:
//!   self-signed peers cannot be);
//! - `--tls-min-version`, `--tls-max-version` and `--cipher-suites` apply to both ports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shale_tls::rustls::{ClientConfig, ServerConfig};
use shale_tls::{ClientTlsConfig, ServerTlsConfig, TlsVersion};

use crate::config::{parse_urls, split_list};

fn bool_flag(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

/// etcd's TLS flags (client port, peer port, and both).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long = "cert-file", env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long = "key-file", env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long = "trusted-ca-file", env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long = "client-cert-auth", env = "ETCD_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = bool_flag)]
    pub client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long = "client-crl-file", env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<PathBuf>,
    /// Client TLS using generated certificates.
    #[arg(long = "auto-tls", env = "ETCD_AUTO_TLS", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = bool_flag)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long = "peer-cert-file", env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long = "peer-key-file", env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long = "peer-trusted-ca-file", env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long = "peer-client-cert-auth", env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = bool_flag)]
    pub peer_client_cert_auth: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long = "peer-crl-file", env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<PathBuf>,
    /// Peer TLS using generated certificates.
    #[arg(long = "peer-auto-tls", env = "ETCD_PEER_AUTO_TLS", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = bool_flag)]
    pub peer_auto_tls: bool,
    /// Allowed CN for inter peer authentication (comma-separated: any of them).
    #[arg(
        long = "peer-cert-allowed-cn",
        env = "ETCD_PEER_CERT_ALLOWED_CN",
        default_value = ""
    )]
    pub peer_cert_allowed_cn: String,
    /// Allowed TLS hostname for inter peer authentication (comma-separated: any of them).
    #[arg(
        long = "peer-cert-allowed-hostname",
        env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME",
        default_value = ""
    )]
    pub peer_cert_allowed_hostname: String,
    /// Minimum TLS version supported by etcd (TLS1.2 or TLS1.3).
    // Strings checked by `validate` (not clap value parsers): a bad value is then refused
    // like every other bad TLS flag, in one line with exit code 1.
    #[arg(
        long = "tls-min-version",
        env = "ETCD_TLS_MIN_VERSION",
        default_value = "TLS1.2"
    )]
    pub tls_min_version: String,
    /// Maximum TLS version supported by etcd (empty: no maximum, i.e. TLS1.3).
    #[arg(
        long = "tls-max-version",
        env = "ETCD_TLS_MAX_VERSION",
        default_value = ""
    )]
    pub tls_max_version: String,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers
    /// (empty will be auto-populated). Applies to TLS 1.2; TLS 1.3 suites are fixed.
    #[arg(long = "cipher-suites", env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,
}

/// Which port a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Client,
    Peer,
}

impl TlsFlags {
    /// `--tls-min-version` and `--tls-max-version` (empty: no maximum).
    fn versions(&self) -> Result<(TlsVersion, Option<TlsVersion>), String> {
        let min = self
            .tls_min_version
            .parse::<TlsVersion>()
            .map_err(|e| format!("--tls-min-version: {e}"))?;
        let max = match self.tls_max_version.as_str() {
            "" => None,
            v => Some(
                v.parse::<TlsVersion>()
                    .map_err(|e| format!("--tls-max-version: {e}"))?,
            ),
        };
        Ok((min, max))
    }

    fn server_config(
        &self,
        port: Port,
        cert: PathBuf,
        key: PathBuf,
    ) -> Result<ServerTlsConfig, String> {
        let (min_version, max_version) = self.versions()?;
        let (prefix, ca, auth, crl, cns, hosts) = match port {
            Port::Client => (
                "",
                &self.trusted_ca_file,
                self.client_cert_auth,
                &self.client_crl_file,
                String::new(),
                String::new(),
            ),
            Port::Peer => (
                "peer-",
                &self.peer_trusted_ca_file,
                self.peer_client_cert_auth,
                &self.peer_crl_file,
                self.peer_cert_allowed_cn.clone(),
                self.peer_cert_allowed_hostname.clone(),
            ),
        };
        Ok(ServerTlsConfig {
            flag_prefix: prefix.into(),
            cert_file: cert,
            key_file: key,
            trusted_ca_file: ca.clone(),
            client_cert_auth: auth,
            crl_file: crl.clone(),
            allowed_cns: split_list(&cns),
            allowed_hostnames: split_list(&hosts),
            min_version: Some(min_version),
            max_version,
            cipher_suites: split_list(&self.cipher_suites),
        })
    }

    /// The explicit certificate files of a port, if both are given.
    fn files(&self, port: Port) -> Option<(PathBuf, PathBuf)> {
        match port {
            Port::Client => self.cert_file.clone().zip(self.key_file.clone()),
            Port::Peer => self.peer_cert_file.clone().zip(self.peer_key_file.clone()),
        }
    }

    fn auto(&self, port: Port) -> bool {
        match port {
            Port::Client => self.auto_tls,
            Port::Peer => self.peer_auto_tls,
        }
    }

    /// Checks the flags against the listen URLs (files are read by the builders).
    pub fn validate(&self, client_urls: &str, peer_urls: &str) -> Result<(), String> {
        for (port, urls, what, flags) in [
            (
                Port::Client,
                client_urls,
                "client",
                "--cert-file, --key-file",
            ),
            (
                Port::Peer,
                peer_urls,
                "peer",
                "--peer-cert-file, --peer-key-file",
            ),
        ] {
            let (cert, key) = match port {
                Port::Client => (&self.cert_file, &self.key_file),
                Port::Peer => (&self.peer_cert_file, &self.peer_key_file),
            };
            if cert.is_some() != key.is_some() {
                return Err(format!("TLS key/cert ({flags}) must be given together"));
            }
            for u in parse_urls(urls)? {
                if u.scheme == "https" && cert.is_none() && !self.auto(port) {
                    return Err(format!(
                        "TLS key/cert ({flags}) must be provided for {what} url https://{}:{} with HTTPS scheme",
                        u.host, u.port
                    ));
                }
            }
            let cfg = self.server_config(
                port,
                cert.clone().unwrap_or_default(),
                key.clone().unwrap_or_default(),
            )?;
            cfg.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Whether any of `urls` is `https://`.
    fn any_https(urls: &str) -> bool {
        parse_urls(urls)
            .map(|u| u.iter().any(|u| u.scheme == "https"))
            .unwrap_or(false)
    }

    /// The certificate and key a port presents: the flags' files, or (with auto TLS) a
    /// self-signed pair kept under `data_dir/fixtures/{client,peer}` for `urls`' hosts.
    fn pair_files(
        &self,
        port: Port,
        data_dir: &Path,
        urls: &str,
    ) -> Result<(PathBuf, PathBuf), String> {
        if let Some(f) = self.files(port) {
            if self.auto(port) {
                tracing::warn!(port = ?port, "ignoring auto TLS since certificate files are given");
            }
            return Ok(f);
        }
        let sub = if port == Port::Client {
            "client"
        } else {
            "peer"
        };
        let hosts: Vec<String> = parse_urls(urls)?
            .into_iter()
            .map(|u| u.host)
            .filter(|h| h != "0.0.0.0" && h != "::")
            .collect();
        shale_tls::self_signed(&data_dir.join("fixtures").join(sub), &hosts)
            .map_err(|e| e.to_string())
    }

    /// The client port's TLS configuration, when some client listen URL is `https://`.
    pub fn client_server(
        &self,
        data_dir: &Path,
        listen_urls: &str,
    ) -> Result<Option<Arc<ServerConfig>>, String> {
        if !Self::any_https(listen_urls) {
            return Ok(None);
        }
        let (cert, key) = self.pair_files(Port::Client, data_dir, listen_urls)?;
        let mut cfg = self.server_config(Port::Client, cert, key)?;
        if self.files(Port::Client).is_none() && cfg.client_cert_auth {
            tracing::warn!("--client-cert-auth is ignored with --auto-tls (as in etcd)");
            cfg.client_cert_auth = false;
        }
        cfg.build().map(Some).map_err(|e| e.to_string())
    }

    /// The peer port's server and client TLS configurations, when TLS is used between
    /// members (an `https://` peer URL of this member, or peer TLS files given).
    #[allow(clippy::type_complexity)]
    pub fn peer(
        &self,
        data_dir: &Path,
        listen_urls: &str,
        advertise_urls: &str,
    ) -> Result<Option<(Arc<ServerConfig>, Arc<ClientConfig>)>, String> {
        let uses_tls = Self::any_https(listen_urls)
            || Self::any_https(advertise_urls)
            || self.files(Port::Peer).is_some()
            || self.peer_auto_tls;
        if !uses_tls {
            return Ok(None);
        }
        let (cert, key) = self.pair_files(Port::Peer, data_dir, listen_urls)?;
        let auto = self.files(Port::Peer).is_none();
        let mut scfg = self.server_config(Port::Peer, cert, key)?;
        if auto && scfg.client_cert_auth {
            tracing::warn!("--peer-client-cert-auth is ignored with --peer-auto-tls (as in etcd)");
            scfg.client_cert_auth = false;
        }
        if !auto && self.peer_trusted_ca_file.is_none() {
            tracing::warn!("no --peer-trusted-ca-file: peers' certificates are not verified when dialing them (Shale has no system CA roots)");
        }
        let pair = scfg.key_pair().map_err(|e| e.to_string())?;
        let server = scfg.build_with(pair.clone()).map_err(|e| e.to_string())?;
        let client = ClientTlsConfig {
            trusted_ca: self
                .peer_trusted_ca_file
                .clone()
                .map(|p| ("--peer-trusted-ca-file".to_string(), p)),
            crl: self
                .peer_crl_file
                .clone()
                .map(|p| ("--peer-crl-file".to_string(), p)),
            key_pair: Some(pair),
            insecure_skip_verify: auto || self.peer_trusted_ca_file.is_none(),
            provider: None,
            min_version: scfg.min_version,
            max_version: scfg.max_version,
        }
        .build()
        .map_err(|e| e.to_string())?;
        Ok(Some((server, client)))
    }
}

/// A bound listener and whether it speaks TLS (its URL is `https://`).
#[derive(Debug)]
pub struct Listener {
    pub inner: tokio::net::TcpListener,
    pub tls: bool,
}

/// Listeners on every URL of the comma list `urls`; an error names `what` they are for.
pub async fn bind_all(urls: &str, what: &str) -> anyhow::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for u in parse_urls(urls).map_err(anyhow::Error::msg)? {
        let addr = u.bind_addr().map_err(anyhow::Error::msg)?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))?;
        listeners.push(Listener {
            inner: l,
            tls: u.scheme == "https",
        });
    }
    Ok(listeners)
}
