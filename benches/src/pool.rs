//! A pool of gRPC channels (HTTP/2 connections) to one or more etcd-API endpoints.

use std::time::Duration;

use anyhow::{Context, Result};
use shale_api::etcdserverpb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

/// `conns` channels, spread round-robin over the endpoints. Each channel is its own TCP
/// connection; many clients share one channel (multiplexed HTTP/2 streams), exactly like
/// etcd's `benchmark --conns N --clients M`.
#[derive(Clone, Debug)]
pub struct ClientPool {
    channels: Vec<Channel>,
    endpoints: Vec<String>,
}

/// `127.0.0.1:2379` → `http://127.0.0.1:2379`; URLs with a scheme are kept.
pub fn normalize_endpoint(e: &str) -> String {
    let e = e.trim();
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

impl ClientPool {
    /// Open `conns` connections now (not lazily), so connection setup is never timed.
    pub async fn connect(
        endpoints: &[String],
        conns: usize,
        dial_timeout: Duration,
    ) -> Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
        anyhow::ensure!(conns >= 1, "--conns must be at least 1");
        let endpoints: Vec<String> = endpoints.iter().map(|e| normalize_endpoint(e)).collect();
        let mut channels = Vec::with_capacity(conns);
        for i in 0..conns {
            let url = &endpoints[i % endpoints.len()];
            let ep = Endpoint::from_shared(url.clone())
                .with_context(|| format!("bad endpoint {url:?}"))?
                .connect_timeout(dial_timeout)
                .tcp_nodelay(true);
            let ch = ep
                .connect()
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
