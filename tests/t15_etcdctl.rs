//! etcdctl end to end: `tests/etcdctl/e2e.sh` drives every etcdctl command group against a
//! fresh Shale member, with etcdctl 3.5 and 3.4. The same script is checked against real etcd
//! 3.5.1 so its expectations are etcd's own output.

use std::path::Path;
use std::process::Command;

use shale_testkit::process::{
    etcd35_bin, etcdctl34_bin, etcdctl35_bin, repo_root, shale_bin, EtcdProcess,
};

fn e2e(server: &EtcdProcess, ctl: &Path) {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/etcdctl/e2e.sh"))
        .arg(server.endpoint())
        .arg(ctl)
        .output()
        .expect("run e2e.sh");
    assert!(
        out.status.success(),
        "e2e.sh with {} failed:\n{}\n{}\n--- server log:\n{}",
        ctl.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_tail(40)
    );
}

// One server per test: e2e.sh wipes the keyspace and tests run in parallel.
#[test]
fn etcdctl35_against_shale() {
    let s = EtcdProcess::start(&shale_bin().expect("shale binary"), &[]).expect("start shale");
    e2e(&s, &etcdctl35_bin().expect("etcdctl 3.5"));
}

#[test]
fn etcdctl34_against_shale() {
    let s = EtcdProcess::start(&shale_bin().expect("shale binary"), &[]).expect("start shale");
    e2e(&s, &etcdctl34_bin().expect("etcdctl 3.4"));
}

#[test]
fn e2e_script_expectations_hold_on_real_etcd35() {
    let s = EtcdProcess::start(&etcd35_bin().expect("etcd 3.5.1"), &[]).expect("start etcd");
    e2e(&s, &etcdctl35_bin().expect("etcdctl 3.5"));
}
