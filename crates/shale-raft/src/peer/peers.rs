//! [`Peers`]: one outgoing channel per peer member, keyed by member id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shale_api::shalepb::raft_peer_client::RaftPeerClient;
use shale_tls::rustls::ClientConfig;
use shale_tls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::app::NodeId;

/// Largest message a member sends to or accepts from a peer (Raft batches, snapshot chunks).
pub const MAX_PEER_MESSAGE: usize = 512 << 20;

/// Identity and dialing rules of this member's peer traffic.
#[derive(Debug, Clone, Default)]
pub struct PeerConfig {
    /// This cluster's id: sent with every message, required on every message received.
    pub cluster_id: u64,
    /// The Raft group this member runs (0: the one group holding every key).
    pub group_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// This member's name (`--name`).
    pub name: String,
    /// Where to dial a peer instead of its advertised URL: advertised peer URL → `host:port`.
    /// Used by fault tests that put a proxy on each link; empty in normal operation.
    pub dial_overrides: HashMap<String, String>,
    /// Connect timeout of a peer channel (TCP connect and TLS handshake).
    pub connect_timeout: Duration,
    /// TLS for `https://` peers: this member's peer certificate and the CA peers' must chain
    /// to (`--peer-*` flags). `None`: peers are dialed in plain HTTP/2.
    pub tls: Option<Arc<ClientConfig>>,
}

impl PeerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.member_id == 0 {
            return Err("member id must not be 0".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("peer connect timeout must be > 0".into());
        }
        Ok(())
    }
}

/// The outgoing channels of this member.
#[derive(Debug)]
pub struct Peers {
    cfg: PeerConfig,
    channels: Mutex<HashMap<NodeId, (String, Channel)>>,
}

impl Peers {
    pub fn new(cfg: PeerConfig) -> Self {
        Self {
            cfg,
            channels: Mutex::default(),
        }
    }

    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// The URL to dial for a member advertised at `urls` (comma separated; the first wins).
    pub fn dial_url(&self, urls: &str) -> String {
        let first = urls.split(',').map(str::trim).next().unwrap_or_default();
        match self.cfg.dial_overrides.get(first) {
            Some(addr) => format!("http://{addr}"),
            None => first.to_string(),
        }
    }

    /// A client for member `id` advertised at `urls`. The channel is created on first use
    /// (and again if the member's URLs change) and connects lazily, reconnecting by itself.
    pub fn client(&self, id: NodeId, urls: &str) -> Result<RaftPeerClient<Channel>, String> {
        let mut map = self.channels.lock();
        if let Some((u, ch)) = map.get(&id) {
            if u == urls {
                return Ok(Self::wrap(ch.clone()));
            }
        }
        let (ep, tls) = self
            .endpoint(urls)
            .map_err(|e| format!("{e} (member {id:x})"))?;
        let ep = ep
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let ch = Self::connect_lazy(ep, tls);
        map.insert(id, (urls.to_string(), ch.clone()));
        Ok(Self::wrap(ch))
    }

    fn wrap(ch: Channel) -> RaftPeerClient<Channel> {
        RaftPeerClient::new(ch)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }

    /// A one-off client for an address that is not (yet) a member, e.g. while joining.
    pub fn client_for_url(&self, url: &str) -> Result<RaftPeerClient<Channel>, String> {
        let (ep, tls) = self.endpoint(url)?;
        Ok(Self::wrap(Self::connect_lazy(ep, tls)))
    }

    fn connect_lazy(ep: Endpoint, tls: Option<TlsConnector>) -> Channel {
        match tls {
            Some(c) => ep.connect_with_connector_lazy(c),
            None => ep.connect_lazy(),
        }
    }

    /// The endpoint to dial for `urls` (after dial overrides), with this member's timeouts,
    /// and the TLS connector when the peer is advertised at an `https://` URL. tonic only
    /// takes `http://` URIs with a connector of its own, so the endpoint says `http://` and
    /// the connector verifies the peer's certificate for the advertised host.
    fn endpoint(&self, urls: &str) -> Result<(Endpoint, Option<TlsConnector>), String> {
        let advertised = urls.split(',').map(str::trim).next().unwrap_or_default();
        let mut url = self.dial_url(urls);
        let tls = match advertised.strip_prefix("https://") {
            Some(rest) => {
                let cfg = self.cfg.tls.clone().ok_or_else(|| {
                    format!("peer URL {advertised} is https:// but this member has no peer TLS (--peer-cert-file/--peer-key-file or --peer-auto-tls)")
                })?;
                let host = match rest.trim_end_matches('/').rsplit_once(':') {
                    Some((h, _)) => h.to_string(),
                    None => rest.to_string(),
                };
                if let Some(r) = url.strip_prefix("https://") {
                    url = format!("http://{r}");
                }
                Some(TlsConnector::new(cfg, self.cfg.connect_timeout).server_name(host))
            }
            None => None,
        };
        let ep = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("bad peer URL {url:?}: {e}"))?
            .connect_timeout(self.cfg.connect_timeout)
            .tcp_nodelay(true);
        Ok((ep, tls))
    }
}
