//! [`Client`]: one sequential workload client, and [`send`], one recorded request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use shale_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{
    request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::Channel;

use super::WorkloadConfig;
use crate::linearize::{Expect, KvInput, KvOutput, Recorder};

/// Answered / failed request counts, shared with [`super::KvHistoryWorkload`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) ok: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// One sequential client.
pub(super) struct Client {
    pub(super) id: usize,
    pub(super) cfg: WorkloadConfig,
    pub(super) channels: Vec<Channel>,
    pub(super) endpoint: usize,
    pub(super) rec: Recorder,
    pub(super) counters: Arc<Counters>,
    pub(super) rng: StdRng,
    /// Last (value, mod_revision) this client saw per key.
    pub(super) seen: Vec<(Option<Bytes>, i64)>,
    pub(super) seq: u64,
}

impl Client {
    pub(super) async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            let k = self.rng.random_range(0..self.cfg.keys);
            let input = self.next_input(k);
            let ticket = self.rec.call(self.id, input.clone());
            let kv = KvClient::new(self.channels[self.endpoint].clone());
            let answer = tokio::time::timeout(self.cfg.op_timeout, send(kv, &input)).await;
            match answer {
                Ok(Ok(out)) => {
                    self.rec.ret(ticket, out.clone());
                    self.counters.ok.fetch_add(1, Ordering::SeqCst);
                    self.learn(k, &input, &out);
                }
                _ => {
                    self.rec.fail(ticket);
                    self.counters.failed.fetch_add(1, Ordering::SeqCst);
                    self.endpoint = (self.endpoint + 1) % self.channels.len();
                    tokio::time::sleep(self.cfg.retry_backoff).await;
                }
            }
        }
    }

    fn next_input(&mut self, k: usize) -> KvInput {
        let key = format!("{}{k}", self.cfg.key_prefix);
        self.seq += 1;
        let value = format!("c{}-{}", self.id, self.seq);
        let m = self.cfg.mix;
        let total = (m.get + m.put + m.delete + m.cas_value + m.cas_revision).max(1);
        let mut r = self.rng.random_range(0..total);
        let mut pick = |w: u32| {
            let hit = r < w;
            r = r.saturating_sub(w);
            hit
        };
        let (seen_value, seen_rev) = self.seen[k].clone();
        if pick(m.get) {
            KvInput::get(key)
        } else if pick(m.put) {
            KvInput::put(key, value)
        } else if pick(m.delete) {
            KvInput::delete(key)
        } else if pick(m.cas_value) {
            KvInput::cas(key, Expect::Value(seen_value.map(|v| v.to_vec())), value)
        } else {
            KvInput::cas(key, Expect::ModRevision(seen_rev), value)
        }
    }

    fn learn(&mut self, k: usize, input: &KvInput, out: &KvOutput) {
        let seen = &mut self.seen[k];
        match (input, out) {
            (
                _,
                KvOutput::Get {
                    value,
                    mod_revision,
                },
            ) => *seen = (value.clone().map(Bytes::from), mod_revision.unwrap_or(0)),
            (KvInput::Put { value, .. }, KvOutput::Put { revision }) => {
                *seen = (Some(Bytes::from(value.clone())), revision.unwrap_or(0));
            }
            (
                KvInput::Cas { value, .. },
                KvOutput::Cas {
                    succeeded: true,
                    revision,
                },
            ) => {
                *seen = (Some(Bytes::from(value.clone())), revision.unwrap_or(0));
            }
            (KvInput::Delete { .. }, KvOutput::Delete { .. }) => *seen = (None, 0),
            _ => {}
        }
    }
}

fn header_revision(h: Option<&shale_api::etcdserverpb::ResponseHeader>) -> Option<i64> {
    h.map(|h| h.revision)
}

/// Send one request; errors are the caller's "maybe".
pub(super) async fn send(
    mut kv: KvClient<Channel>,
    input: &KvInput,
) -> Result<KvOutput, tonic::Status> {
    let key = Bytes::from(input.key().to_vec());
    Ok(match input {
        KvInput::Get { .. } => {
            let r = kv
                .range(RangeRequest {
                    key,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let kv0 = r.kvs.first();
            KvOutput::Get {
                value: kv0.map(|kv| kv.value.to_vec()),
                mod_revision: kv0.map(|kv| kv.mod_revision),
            }
        }
        KvInput::Put { value, .. } => {
            let r = kv
                .put(PutRequest {
                    key,
                    value: Bytes::from(value.clone()),
                    ..Default::default()
                })
                .await?
                .into_inner();
            KvOutput::Put {
                revision: header_revision(r.header.as_ref()),
            }
        }
        KvInput::Delete { .. } => {
            let r = kv
                .delete_range(DeleteRangeRequest {
                    key,
                    ..Default::default()
                })
                .await?
                .into_inner();
            KvOutput::Delete {
                deleted: r.deleted,
                revision: header_revision(r.header.as_ref()),
            }
        }
        KvInput::Cas { expect, value, .. } => {
            let compare = match expect {
                Expect::Value(Some(v)) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: key.clone(),
                    target_union: Some(TargetUnion::Value(Bytes::from(v.clone()))),
                    ..Default::default()
                },
                // a value compare on a missing key is always false in etcd: test absence
                Expect::Value(None) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Version as i32,
                    key: key.clone(),
                    target_union: Some(TargetUnion::Version(0)),
                    ..Default::default()
                },
                Expect::ModRevision(r) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: key.clone(),
                    target_union: Some(TargetUnion::ModRevision(*r)),
                    ..Default::default()
                },
            };
            let put = RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key,
                    value: Bytes::from(value.clone()),
                    ..Default::default()
                })),
            };
            let r = kv
                .txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: vec![],
                })
                .await?
                .into_inner();
            KvOutput::Cas {
                succeeded: r.succeeded,
                revision: header_revision(r.header.as_ref()),
            }
        }
    })
}
