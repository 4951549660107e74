//! S7: scale. Loads `objects` Kubernetes-shaped pods (`/registry/pods/ns-NNN/pod-NNNNNNN-…`,
//! 44-byte keys at 1M, spread over `namespaces`) of `value_size` bytes with plain Puts, as
//! `shale-bench put --sequential-keys` does: a closed loop of `clients` clients on `conns`
//! connections, key i = request i, so every key is written exactly once (no overwrites).
//! Then it records the member's RSS and data-dir size, and times the three LISTs of the whole
//! prefix that do not page: count-only, keys-only and unpaged (values included), `list_reps`
//! times each, one at a time.
//!
//! Restart-to-ready (kill -9, start on the same data dir, time until a linearizable read
//! succeeds) needs the processes themselves, which a scenario does not own: `compare` runs it
//! after this scenario, see [`crate::restart`].
//!
//! Invariants: the bench holds no per-key state (the key and value of request i are computed
//! from i), so 10M objects cost the client nothing but the LIST responses; the unpaged LIST is
//! skipped, with the reason in the report, when its estimated size (the keys-only response plus
//! every value) exceeds `max_list_mib`; a LIST that returns a different number of objects than
//! the load wrote fails the run (a count mismatch is a correctness bug, not a slow system).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use prost::Message;
use rand::rngs::StdRng;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;
use tonic::Status;

use super::{prefix, Ctx, PhaseResult};
use crate::kube::prefix_end;
use crate::objects::{key, Kind, ObjectTemplate};
use crate::phase::{Mode, OpGen, Outcome, Plan};

/// Extra-map keys of the scenario result (read by the S7 table in the report).
pub mod keys {
    pub const LOADED: &str = "s7_loaded_objects";
    pub const LOAD_RATE: &str = "s7_load_puts_per_s";
    pub const RSS_AFTER_LOAD: &str = "s7_rss_after_load_mib";
    pub const DISK_AFTER_LOAD: &str = "s7_disk_after_load_mib";
    pub const LIVE_MIB: &str = "s7_live_kv_mib";
}

/// Put of object `seq`: the key and value are functions of the request number.
pub struct LoadGen {
    namespaces: u64,
    tpl: ObjectTemplate,
}

impl OpGen for LoadGen {
    async fn op(
        &self,
        kv: &mut KvClient<Channel>,
        _rng: &mut StdRng,
        seq: u64,
    ) -> Result<Outcome, Status> {
        let r = kv
            .put(PutRequest {
                key: key(Kind::Pod, seq, self.namespaces),
                value: self.tpl.render(seq),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(Outcome {
            written: r.header.map(|h| h.revision),
            ..Default::default()
        })
    }
}

/// Which non-paging LIST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    CountOnly,
    KeysOnly,
    Unpaged,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::CountOnly => "count-only",
            Shape::KeysOnly => "keys-only",
            Shape::Unpaged => "unpaged",
        }
    }
}

/// One whole-prefix Range per operation; records the objects and encoded response bytes.
pub struct WholeList {
    prefix: Bytes,
    shape: Shape,
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    /// Lists whose object count was not the expected one.
    pub mismatches: AtomicU64,
    expect: u64,
}

impl OpGen for WholeList {
    async fn op(
        &self,
        kv: &mut KvClient<Channel>,
        _rng: &mut StdRng,
        _seq: u64,
    ) -> Result<Outcome, Status> {
        let r = kv
            .range(RangeRequest {
                key: self.prefix.clone(),
                range_end: prefix_end(&self.prefix),
                count_only: self.shape == Shape::CountOnly,
                keys_only: self.shape == Shape::KeysOnly,
                ..Default::default()
            })
            .await?
            .into_inner();
        let n = match self.shape {
            Shape::CountOnly => r.count as u64,
            _ => r.kvs.len() as u64,
        };
        if n != self.expect {
            self.mismatches.fetch_add(1, Ordering::Relaxed);
        }
        self.objects.fetch_add(n, Ordering::Relaxed);
        self.bytes
            .fetch_add(r.encoded_len() as u64, Ordering::Relaxed);
        Ok(Outcome::default())
    }
}

/// Estimated unpaged response size: the keys-only response plus every value and its field
/// header (tag + length varint).
pub fn unpaged_estimate_bytes(keys_only_bytes: f64, objects: u64, value_size: usize) -> f64 {
    let varint = |n: usize| (usize::BITS - n.max(1).leading_zeros()).div_ceil(7) as f64;
    keys_only_bytes + objects as f64 * (value_size as f64 + 1.0 + varint(value_size))
}

pub async fn run(ctx: &mut Ctx) -> Result<usize> {
    let n = ctx.p.objects;
    anyhow::ensure!(n >= 1, "S7 needs --objects >= 1");
    let gen = Arc::new(LoadGen {
        namespaces: ctx.p.namespaces,
        tpl: ObjectTemplate::new(Kind::Pod, b"pod-scale", ctx.p.value_size),
    });
    let plan = Plan {
        name: format!("load {n} x {} B puts", ctx.p.value_size),
        mode: Mode::Closed {
            clients: ctx.p.clients,
        },
        duration: ctx.phase_duration(),
        max_ops: Some(n),
        timeout: ctx.timeout(),
    };
    let load = ctx.phase(gen, plan, None, None).await?;
    let ph = &ctx.phases[load];
    let loaded = ph.load.report.ok;
    if ph.load.report.errors > 0 || loaded < n {
        bail!(
            "the load wrote {loaded} of {n} objects ({} errors {:?}; --phase-secs {} caps the load)",
            ph.load.report.errors,
            ph.load.report.error_kinds,
            ctx.p.phase_secs
        );
    }
    let rate = ph.load.report.throughput_ops;
    let key_len = key(Kind::Pod, n - 1, ctx.p.namespaces).len();
    let live = n as f64 * (key_len + ctx.p.value_size) as f64 / 1048576.0;
    ctx.extra.insert(keys::LOADED.into(), loaded as f64);
    ctx.extra.insert(keys::LOAD_RATE.into(), rate);
    ctx.extra.insert(keys::LIVE_MIB.into(), live);
    if let Some(rss) = ctx.servers.rss_mib() {
        ctx.extra.insert(keys::RSS_AFTER_LOAD.into(), rss);
    }
    let servers = ctx.servers.clone();
    let disk = tokio::task::spawn_blocking(move || servers.disk_bytes()).await?;
    ctx.extra
        .insert(keys::DISK_AFTER_LOAD.into(), disk as f64 / 1048576.0);

    let mut keys_only_mib = None;
    for shape in [Shape::CountOnly, Shape::KeysOnly, Shape::Unpaged] {
        let name = format!("list {}", shape.label());
        if shape == Shape::Unpaged {
            let est = unpaged_estimate_bytes(
                keys_only_mib.unwrap_or(0.0) * 1048576.0,
                n,
                ctx.p.value_size,
            ) / 1048576.0;
            if est > ctx.p.max_list_mib {
                ctx.phases.push(skipped(
                    &name,
                    format!(
                        "skipped: estimated response {est:.0} MiB > --max-list-mib {}",
                        ctx.p.max_list_mib
                    ),
                    est,
                ));
                continue;
            }
        }
        let gen = Arc::new(WholeList {
            prefix: prefix(Kind::Pod),
            shape,
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            expect: n,
        });
        let plan = Plan {
            name,
            mode: Mode::Closed { clients: 1 },
            duration: Duration::from_secs_f64(ctx.p.timeout_s * ctx.p.list_reps as f64 + 1.0),
            max_ops: Some(ctx.p.list_reps),
            timeout: ctx.timeout(),
        };
        let i = ctx.phase(gen.clone(), plan, None, None).await?;
        let ph = &mut ctx.phases[i];
        let lists = ph.load.report.ok.max(1) as f64;
        let mib = gen.bytes.load(Ordering::Relaxed) as f64 / lists / 1048576.0;
        ph.extra.insert("response_mib".into(), mib);
        ph.extra.insert(
            "objects_per_list".into(),
            gen.objects.load(Ordering::Relaxed) as f64 / lists,
        );
        let bad = gen.mismatches.load(Ordering::Relaxed);
        if bad > 0 {
            bail!(
                "{bad} {} LIST(s) did not return the {n} objects written",
                shape.label()
            );
        }
        if shape == Shape::KeysOnly && ph.load.report.ok > 0 {
            keys_only_mib = Some(mib);
        }
    }
    Ok(load)
}

/// A LIST phase that was not sent (too large).
fn skipped(name: &str, why: String, estimate_mib: f64) -> PhaseResult {
    let mut p = PhaseResult::not_run(name, Mode::Closed { clients: 1 }, why);
    p.extra
        .insert("estimated_response_mib".into(), estimate_mib);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaged_estimate_adds_values_and_headers() {
        // 1 KiB values: 1 tag byte + 2 length bytes each
        assert_eq!(
            unpaged_estimate_bytes(100.0, 10, 1024),
            100.0 + 10.0 * 1027.0
        );
        // 100-byte values: 1 + 1
        assert_eq!(unpaged_estimate_bytes(0.0, 3, 100), 3.0 * 102.0);
    }
}
