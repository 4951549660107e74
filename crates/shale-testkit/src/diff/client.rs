//! [`Client`]: the gRPC clients of one endpoint.

use std::time::Duration;

use anyhow::{Context, Result};
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::lease_client::LeaseClient;
use shale_api::etcdserverpb::maintenance_client::MaintenanceClient;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{LeaseLeasesRequest, StatusRequest};
use tonic::transport::Channel;

use super::op::{reply, Op, Reply};

/// gRPC clients of one endpoint.
#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    pub kv: KvClient<Channel>,
    pub lease: LeaseClient<Channel>,
    pub maintenance: MaintenanceClient<Channel>,
    /// On its own channel, without the unary request timeout.
    pub watch: WatchClient<Channel>,
}

const MAX_MSG: usize = 64 << 20;

impl Client {
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let unary = Channel::from_shared(endpoint.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        let streaming = Channel::from_shared(endpoint.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            kv: KvClient::new(unary.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
            lease: LeaseClient::new(unary.clone()),
            maintenance: MaintenanceClient::new(unary),
            watch: WatchClient::new(streaming).max_decoding_message_size(MAX_MSG),
        })
    }

    /// `Maintenance.Status` version string.
    pub async fn server_version(&mut self) -> Result<String> {
        Ok(self
            .maintenance
            .status(StatusRequest {})
            .await
            .with_context(|| format!("Status on {}", self.endpoint))?
            .into_inner()
            .version)
    }

    /// Send one op and capture the reply (errors included).
    pub async fn exec(&mut self, op: &Op) -> Reply {
        match op.clone() {
            Op::Range(r) => reply(self.kv.range(r).await, Reply::Range),
            Op::Put(r) => reply(self.kv.put(r).await, Reply::Put),
            Op::DeleteRange(r) => reply(self.kv.delete_range(r).await, Reply::DeleteRange),
            Op::Txn(r) => reply(self.kv.txn(r).await, Reply::Txn),
            Op::Compact(r) => reply(self.kv.compact(r).await, Reply::Compact),
            Op::LeaseGrant(r) => reply(self.lease.lease_grant(r).await, Reply::LeaseGrant),
            Op::LeaseRevoke(r) => reply(self.lease.lease_revoke(r).await, Reply::LeaseRevoke),
            Op::LeaseTimeToLive(r) => reply(
                self.lease.lease_time_to_live(r).await,
                Reply::LeaseTimeToLive,
            ),
            Op::LeaseLeases => reply(
                self.lease.lease_leases(LeaseLeasesRequest {}).await,
                Reply::LeaseLeases,
            ),
        }
    }
}
