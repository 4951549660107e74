//! The linearizability workload against real servers: the checker must accept what etcd 3.5.1
//! (and a single Shale) do, including across a cut client link and a crash-restart.

use std::net::SocketAddr;
use std::time::Duration;

use shale_testkit::linearize::{check_kv, stats, CheckOptions};
use shale_testkit::process::{etcd35_bin, shale_bin, EtcdProcess};
use shale_testkit::proxy::LinkProxy;
use shale_testkit::workload::{KvHistoryWorkload, WorkloadConfig};

const PROGRESS: Duration = Duration::from_secs(60);

fn run_plain(server: &EtcdProcess, seed: u64) {
    let mut cfg = WorkloadConfig::new(vec![server.endpoint()]);
    cfg.seed = seed;
    cfg.key_prefix = format!("plain{seed}/k");
    let w = KvHistoryWorkload::start(cfg).unwrap();
    w.wait_progress(600, PROGRESS).unwrap();
    let res = w.stop();
    assert_eq!(res.watch_error, None);
    let r = res.check();
    eprintln!("{:?}, {:?}: {r}", stats(&res.raw), res.patch);
    r.assert_ok();
    // the raw history (no failures here) checks too
    check_kv(&res.raw, &CheckOptions::default()).assert_ok();
}

#[test]
fn etcd35_history_is_linearizable() {
    let etcd = EtcdProcess::start(&etcd35_bin().unwrap(), &[]).unwrap();
    run_plain(&etcd, 1);
}

/// Needs target/<triple>/release/shale (`cargo build --release -p shale-server`).
#[test]
fn shale_history_is_linearizable() {
    let shale = EtcdProcess::start(&shale_bin().unwrap(), &["--log-level", "warn"]).unwrap();
    run_plain(&shale, 2);
}

/// Clients go through a proxy that is cut and healed, and the server is killed and restarted:
/// failed writes become maybe-applied and the history must still check.
#[test]
fn etcd35_history_with_faults_is_linearizable() {
    run_with_faults(EtcdProcess::start(&etcd35_bin().unwrap(), &[]).unwrap());
}

/// Needs target/<triple>/release/shale.
#[test]
fn shale_history_with_faults_is_linearizable() {
    run_with_faults(EtcdProcess::start(&shale_bin().unwrap(), &["--log-level", "warn"]).unwrap());
}

fn run_with_faults(mut etcd: EtcdProcess) {
    let target: SocketAddr = ([127, 0, 0, 1], etcd.client_port()).into();
    let proxy = LinkProxy::start(target).unwrap();
    let mut cfg = WorkloadConfig::new(vec![format!("http://{}", proxy.addr())]);
    cfg.clients = 5;
    cfg.op_timeout = Duration::from_millis(500);
    cfg.seed = 3;
    let w = KvHistoryWorkload::start(cfg).unwrap();
    w.wait_progress(200, PROGRESS).unwrap();
    for _ in 0..2 {
        proxy.cut();
        let failed = w.failed_count();
        // wait until the cut is observed by some client
        let deadline = std::time::Instant::now() + PROGRESS;
        while w.failed_count() == failed {
            assert!(std::time::Instant::now() < deadline, "cut never observed");
            std::thread::sleep(Duration::from_millis(10));
        }
        proxy.heal();
        w.wait_progress(200, PROGRESS).unwrap();
        proxy.blackhole();
        let failed = w.failed_count();
        while w.failed_count() < failed + 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "blackhole never observed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        proxy.heal();
        w.wait_progress(200, PROGRESS).unwrap();
    }
    etcd.kill9().unwrap();
    etcd.start_again().unwrap();
    w.wait_progress(200, PROGRESS).unwrap();
    let res = w.stop();
    let st = stats(&res.raw);
    assert_eq!(res.watch_error, None);
    let r = res.check();
    eprintln!(
        "raw {st:?}, resolved {:?}, {:?}: {r}",
        stats(res.history()),
        res.patch
    );
    assert!(st.maybe > 0, "no write failed: the faults did not bite");
    r.assert_ok();
    // the raw history may be too hard to decide, but it must never be illegal
    let quick = CheckOptions {
        timeout: Duration::from_secs(20),
        max_steps_per_key: 2_000_000,
    };
    let raw = check_kv(&res.raw, &quick);
    eprintln!("raw history: {raw}");
    assert!(!raw.is_illegal(), "{raw}");
}
