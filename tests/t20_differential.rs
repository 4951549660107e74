//! Differential test: the same seeded random request sequence (KV, Txn, Compact, Lease,
//! invalid requests, watches) against real etcd 3.5.1 and against Shale, every response
//! compared field by field (generation and comparison: `shale_testkit::diff`).
//!
//! ```text
//! cargo build --release -p shale-server
//! cargo test --release -p shale-tests --test t20_differential -- --nocapture
//! SHALE_DIFF_SEED=3 SHALE_DIFF_OPS=2500 cargo test --release -p shale-tests --test t20_differential etcd_vs_shale -- --nocapture
//! ```
//!
//! `SHALE_DIFF_SEED`: one seed or a comma list (default 1,2,3,4); `SHALE_DIFF_OPS`: total ops
//! over all seeds (default 10,000 etcd-vs-Shale, 1,000 etcd-vs-etcd). Every seed gets fresh
//! servers. Needs etcd 3.5.1 (`bash scripts/install-test-deps.sh`): fails, never skips.

use std::path::Path;

use shale_testkit::diff::{plan_from_env, run_seed, Client};
use shale_testkit::process::{etcd35_bin, shale_bin, EtcdProcess};

const SEEDS: &[u64] = &[1, 2, 3, 4];

fn etcd() -> std::path::PathBuf {
    etcd35_bin().unwrap_or_else(|e| panic!("the differential test needs real etcd 3.5.1: {e:#}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn differential(subject_bin: &Path, subject_args: &[&str], default_total: usize) {
    let etcd_bin = etcd();
    let plan = plan_from_env(SEEDS, default_total).unwrap();
    let rt = runtime();
    let t0 = std::time::Instant::now();
    let mut total = 0;
    for (seed, ops) in plan {
        let reference = EtcdProcess::start(&etcd_bin, &[]).unwrap();
        let subject = EtcdProcess::start(subject_bin, subject_args).unwrap();
        let stats = rt.block_on(async {
            let version = Client::connect(&reference.endpoint())
                .await?
                .server_version()
                .await?;
            anyhow::ensure!(
                version == "3.5.1",
                "reference {} is etcd {version}, expected 3.5.1",
                etcd_bin.display()
            );
            run_seed(&reference.endpoint(), &subject.endpoint(), seed, ops).await
        });
        match stats {
            Ok(s) => {
                println!("{s}");
                total += s.ops;
            }
            Err(e) => panic!("{e:#}"),
        }
    }
    println!("{total} ops in {:.1?}", t0.elapsed());
}

/// The harness against itself: two etcd 3.5.1 must agree on everything it compares.
#[test]
fn etcd_vs_etcd() {
    differential(&etcd(), &[], 1_000);
}

#[test]
fn etcd_vs_shale() {
    let shale = shale_bin().unwrap_or_else(|e| panic!("{e:#}"));
    differential(&shale, &["--log-level", "warn"], 10_000);
}
