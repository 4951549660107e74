//! What one request of a run is. `put` and `range` follow etcd's `benchmark put` and
//! `benchmark range` (tools/benchmark in the etcd repository).

use std::future::Future;

use anyhow::Result;
use bytes::Bytes;
use rand::{Rng, RngCore};
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

use crate::pool::{kv_client, ClientPool};

/// A kind of request. The runner makes one `Client` per concurrent client (on that client's
/// channel) and calls [`Workload::op`] with the global sequence number of each request.
pub trait Workload: Send + Sync + 'static {
    /// Per-client state (gRPC stubs, a private RNG, ...).
    type Client: Send + 'static;

    /// Short name for reports (`put`, `range`, ...).
    fn name(&self) -> String;

    /// One-time setup before timing starts (e.g. write the key a range reads).
    fn prepare(&self, _pool: &ClientPool) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    fn client(&self, channel: Channel) -> Self::Client;

    /// Issue request number `seq` (0-based, unique across clients) and wait for its answer.
    fn op(
        &self,
        client: &mut Self::Client,
        seq: u64,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

/// etcd's `binary.PutVarint`: zig-zag, then LEB128, into `buf`; returns bytes written.
pub fn put_varint(buf: &mut [u8], x: i64) -> usize {
    let mut ux = ((x as u64) << 1) ^ ((x >> 63) as u64);
    let mut i = 0;
    while ux >= 0x80 {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    buf[i] = ux as u8;
    i + 1
}

fn varint_len(x: i64) -> usize {
    put_varint(&mut [0u8; 10], x)
}

/// `benchmark put`: keys of `key_size` bytes holding a varint key number in
/// `[0, key_space)` (random, or `seq % key_space` with `sequential`), zero padded; one random
/// value of `val_size` bytes shared by all requests.
#[derive(Clone, Debug)]
pub struct PutWorkload {
    pub key_size: usize,
    pub key_space: u64,
    pub sequential: bool,
    pub value: Bytes,
}

impl PutWorkload {
    pub fn new(key_size: usize, val_size: usize, key_space: u64, sequential: bool) -> Result<Self> {
        anyhow::ensure!(key_space >= 1, "--key-space must be at least 1");
        let need = varint_len(key_space as i64 - 1);
        anyhow::ensure!(
            key_size >= need,
            "--key-size {key_size} is too small for --key-space {key_space} (needs {need} bytes)"
        );
        let mut value = vec![0u8; val_size];
        rand::rng().fill_bytes(&mut value);
        Ok(Self {
            key_size,
            key_space,
            sequential,
            value: Bytes::from(value),
        })
    }

    /// Key for request `seq` (random keys draw from the thread RNG).
    pub fn key(&self, seq: u64) -> Bytes {
        let n = if self.sequential {
            seq % self.key_space
        } else {
            rand::rng().random_range(0..self.key_space)
        };
        let mut k = vec![0u8; self.key_size];
        put_varint(&mut k, n as i64);
        Bytes::from(k)
    }
}

impl Workload for PutWorkload {
    type Client = KvClient<Channel>;

    fn name(&self) -> String {
        "put".into()
    }

    fn client(&self, channel: Channel) -> Self::Client {
        kv_client(channel)
    }

    fn op(
        &self,
        client: &mut Self::Client,
        seq: u64,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let req = PutRequest {
            key: self.key(seq),
            value: self.value.clone(),
            ..Default::default()
        };
        async move { client.put(req).await.map(|_| ()) }
    }
}

/// `benchmark range KEY [END] --consistency l|s`: the same Range over and over.
/// `seed_value`, when set, is written to `key` once before the run (etcd's tool does not do
/// this; `compare` does, so the range returns a real key-value).
#[derive(Clone, Debug)]
pub struct RangeWorkload {
    pub key: Bytes,
    pub range_end: Bytes,
    pub serializable: bool,
    pub seed_value: Option<Bytes>,
}

impl Workload for RangeWorkload {
    type Client = KvClient<Channel>;

    fn name(&self) -> String {
        if self.serializable {
            "range-serializable".into()
        } else {
            "range-linearizable".into()
        }
    }

    fn prepare(&self, pool: &ClientPool) -> impl Future<Output = Result<()>> + Send {
        let mut kv = pool.kv(0);
        let req = self.seed_value.clone().map(|value| PutRequest {
            key: self.key.clone(),
            value,
            ..Default::default()
        });
        async move {
            if let Some(req) = req {
                kv.put(req)
                    .await
                    .map_err(|s| anyhow::anyhow!("seeding the range key: {s}"))?;
            }
            Ok(())
        }
    }

    fn client(&self, channel: Channel) -> Self::Client {
        kv_client(channel)
    }

    fn op(
        &self,
        client: &mut Self::Client,
        _seq: u64,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let req = RangeRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            serializable: self.serializable,
            ..Default::default()
        };
        async move { client.range(req).await.map(|_| ()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_go() {
        // Go: binary.PutVarint(buf, 0) = [0]; 1 = [2]; -1 = [1]; 64 = [128 1]; 99999 = [190 154 12]
        let enc = |x| {
            let mut b = [0u8; 10];
            let n = put_varint(&mut b, x);
            b[..n].to_vec()
        };
        assert_eq!(enc(0), vec![0]);
        assert_eq!(enc(1), vec![2]);
        assert_eq!(enc(-1), vec![1]);
        assert_eq!(enc(64), vec![128, 1]);
        assert_eq!(enc(99_999), vec![190, 154, 12]);
    }

    #[test]
    fn put_keys() {
        let w = PutWorkload::new(8, 16, 100, true).unwrap();
        assert_eq!(w.value.len(), 16);
        assert_eq!(&w.key(101)[..], &[2, 0, 0, 0, 0, 0, 0, 0]);
        for s in 0..1000 {
            assert_eq!(w.key(s).len(), 8);
        }
        let r = PutWorkload::new(8, 1, 1 << 40, false).unwrap();
        assert_eq!(r.key(0).len(), 8);
        assert!(PutWorkload::new(1, 1, 100_000, false).is_err());
    }
}
