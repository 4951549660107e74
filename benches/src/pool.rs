//! A pool of gRPC channels (HTTP/2 connections) to one or more etcd-API endpoints, plain or
//! over TLS.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_tls::{rustls, ClientTlsFiles, TlsConnector};
use tonic::transport::{Channel, Endpoint};

/// `conns` channels, spread round-robin over the endpoints. Each channel is its own TCP
/// connection; many clients share one channel (multiplexed HTTP/2 streams), exactly like
/// etcd's `benchmark --conns N --clients M`.
#[derive(Clone, Debug)]
pub struct ClientPool {
    channels: Vec<Channel>,
    endpoints: Vec<String>,
}

/// How connections are dialed: a connect timeout and, for `https://` endpoints, the client
/// TLS configuration made from etcdctl's flags (`--cacert`, `--cert`, `--key`,
/// `--insecure-skip-tls-verify`).
#[derive(Clone, Debug)]
pub struct Dial {
    pub timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Dial {
    /// Plain connections only (an `https://` endpoint is refused).
    pub fn plain(timeout: Duration) -> Self {
        Self { timeout, tls: None }
    }

    /// From etcdctl-style TLS files; with none of them given, as [`Dial::plain`].
    pub fn new(timeout: Duration, files: &ClientTlsFiles) -> Result<Self> {
        let any = files.ca.is_some()
            || files.cert.is_some()
            || files.key.is_some()
            || files.insecure_skip_verify;
        let tls = if any {
            Some(shale_tls::client_config(files).context("client TLS flags")?)
        } else {
            None
        };
        Ok(Self { timeout, tls })
    }

    /// `127.0.0.1:2379` → `http://127.0.0.1:2379`, or `https://…` when TLS flags were given
    /// (as etcd's client does for an endpoint without a scheme); URLs with a scheme are kept.
    pub fn normalize(&self, e: &str) -> String {
        normalize_endpoint(e, self.tls.is_some())
    }

    /// `GET path` over HTTP/1.1 on `endpoint` (over TLS for `https://`): the body.
    pub fn http_get(&self, endpoint: &str, path: &str) -> Result<String> {
        let url = self.normalize(endpoint);
        let (scheme, rest) = url.split_once("://").expect("normalized");
        let hostport = rest.split('/').next().unwrap_or_default();
        let addr: SocketAddr = hostport
            .to_socket_addrs()
            .with_context(|| format!("resolving {hostport}"))?
            .next()
            .with_context(|| format!("{hostport} resolves to nothing"))?;
        let (code, body) = if scheme == "https" {
            let mut cfg = (**self.tls_for(&url)?).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            shale_testkit::process::https_get(addr, Arc::new(cfg), path)?
        } else {
            shale_testkit::process::http_get(addr, path)?
        };
        anyhow::ensure!(code == 200, "GET {path} on {url}: {code} {}", body.trim());
        Ok(body)
    }

    fn tls_for(&self, url: &str) -> Result<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref().with_context(|| {
            format!(
                "{url}: an https:// endpoint needs --cacert (or --insecure-skip-tls-verify), \
                 and --cert/--key when the server checks client certificates"
            )
        })
    }

    /// One connection to `url` (normalized). Plain endpoints take tonic's own connector;
    /// `https://` ones are dialed as `http://host:port` through [`TlsConnector`] (tonic
    /// refuses `https://` with a custom connector), which verifies the server for `host`.
    async fn connect(&self, url: &str) -> Result<Channel> {
        match url.strip_prefix("https://") {
            None => Ok(Endpoint::from_shared(url.to_string())
                .with_context(|| format!("bad endpoint {url:?}"))?
                .connect_timeout(self.timeout)
                .tcp_nodelay(true)
                .connect()
                .await?),
            Some(rest) => {
                let tls = self.tls_for(url)?.clone();
                Ok(Endpoint::from_shared(format!("http://{rest}"))
                    .with_context(|| format!("bad endpoint {url:?}"))?
                    .connect_timeout(self.timeout)
                    .tcp_nodelay(true)
                    .connect_with_connector(TlsConnector::new(tls, self.timeout))
                    .await?)
            }
        }
    }
}

/// `127.0.0.1:2379` → `http://127.0.0.1:2379` (`https://` with `tls`); URLs with a scheme
/// are kept.
pub fn normalize_endpoint(e: &str, tls: bool) -> String {
    let e = e.trim();
    if e.contains("://") {
        e.to_string()
    } else if tls {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    }
}

impl ClientPool {
    /// Open `conns` connections now (not lazily), so connection setup (and the TLS
    /// handshake) is never timed.
    pub async fn connect(endpoints: &[String], conns: usize, dial: &Dial) -> Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
        anyhow::ensure!(conns >= 1, "--conns must be at least 1");
        let endpoints: Vec<String> = endpoints.iter().map(|e| dial.normalize(e)).collect();
        let mut channels = Vec::with_capacity(conns);
        for i in 0..conns {
            let url = &endpoints[i % endpoints.len()];
            let ch = dial
                .connect(url)
                .await
                .with_context(|| format!("connecting to {url} (connection {i} of {conns})"))?;
            channels.push(ch);
        }
        Ok(Self {
            channels,
            endpoints,
        })
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The channel client number `client` uses (`client % conns`).
    pub fn channel(&self, client: usize) -> Channel {
        self.channels[client % self.channels.len()].clone()
    }

    /// A KV client on the channel of client number `client`.
    pub fn kv(&self, client: usize) -> KvClient<Channel> {
        kv_client(self.channel(client))
    }
}

/// KV client without tonic's 4 MiB response limit (LIST scenarios read big ranges).
pub fn kv_client(ch: Channel) -> KvClient<Channel> {
    KvClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_a_scheme_follow_the_tls_flags() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", true),
            "https://127.0.0.1:2379"
        );
        assert_eq!(normalize_endpoint("http://h:1", true), "http://h:1");
        assert_eq!(normalize_endpoint(" https://h:1", false), "https://h:1");
    }

    #[tokio::test]
    async fn https_without_tls_flags_says_which_flag() {
        let err = ClientPool::connect(
            &["https://127.0.0.1:1".into()],
            1,
            &Dial::plain(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("--cacert"), "{err:#}");
    }

    #[test]
    fn half_a_key_pair_is_refused() {
        let files = ClientTlsFiles {
            cert: Some("/nonexistent.crt".into()),
            ..Default::default()
        };
        let err = Dial::new(Duration::from_secs(1), &files).unwrap_err();
        assert!(format!("{err:#}").contains("--key"), "{err:#}");
    }
}
