//! kill -9 during concurrent writes: after a restart every acknowledged write is present
//! with its value, and the revision counter continues from where it was. Each test runs with
//! both state engines: the default (log) and `--experimental-state-engine sled`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{PutRequest, RangeRequest};
use shale_testkit::process::{shale_bin, EtcdProcess};

const WRITERS: usize = 8;

fn total_acks(a: &Arc<Mutex<HashMap<String, (String, i64)>>>) -> i64 {
    a.lock()
        .expect("lock")
        .values()
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(0)
}

const LOG_ENGINE: &[&str] = &["--experimental-state-engine", "log"];
const SLED_ENGINE: &[&str] = &["--experimental-state-engine", "sled"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    writes_survive_kill_9(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_sled_engine() {
    writes_survive_kill_9(SLED_ENGINE).await;
}

async fn writes_survive_kill_9(args: &[&str]) {
    let mut server =
        EtcdProcess::start(&shale_bin().expect("shale binary"), args).expect("start shale");
    let acked: Arc<Mutex<HashMap<String, (String, i64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let ep = server.endpoint();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut kv) = KvClient::connect(ep).await else {
                return;
            };
            for i in 0u64.. {
                let key = format!("/crash/w{w}/k{}", i % 50);
                let value = format!("w{w}-{i}");
                match kv
                    .put(PutRequest {
                        key: key.clone().into(),
                        value: value.clone().into(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(r) => {
                        let rev = r.into_inner().header.map_or(0, |h| h.revision);
                        acked.lock().expect("lock").insert(key, (value, rev));
                    }
                    Err(_) => return, // the server died: this write may or may not be applied
                }
            }
        }));
    }
    // Wait (on a condition, not a fixed time) until plenty of writes were acknowledged.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < WRITERS * 50 || total_acks(&acked) < 2_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "writes are not being acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9().expect("kill -9");
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    let max_rev = acked.values().map(|(_, r)| *r).max().unwrap_or(0);
    server.restart().expect("restart");
    let mut kv = KvClient::connect(server.endpoint()).await.expect("connect");
    let all = kv
        .range(RangeRequest {
            key: "/crash/".into(),
            range_end: "/crash0".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert!(
        all.header.expect("header").revision >= max_rev,
        "revision went backwards after restart"
    );
    let found: HashMap<String, (String, i64)> = all
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                ),
            )
        })
        .collect();
    for (k, (v, rev)) in &acked {
        let (fv, frev) = found
            .get(k)
            .unwrap_or_else(|| panic!("acknowledged key {k} lost"));
        // A later unacknowledged write to the same key may have been applied; never an older one.
        assert!(
            frev >= rev,
            "key {k}: found revision {frev} older than acknowledged {rev}"
        );
        if frev == rev {
            assert_eq!(
                fv, v,
                "key {k} has the wrong value at its acknowledged revision"
            );
        }
    }
    // The member takes writes again, at new revisions.
    let r = kv
        .put(PutRequest {
            key: "/crash/after".into(),
            value: "x".into(),
            ..Default::default()
        })
        .await
        .expect("put");
    assert!(r.into_inner().header.expect("header").revision > max_rev);
}

/// With a small `--snapshot-count` the member records snapshot points and purges the log; a
/// kill -9 and restart then recovers from its store + log tail with every write present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_restart_from_them() {
    snapshot_restart(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_restart_from_them_sled_engine() {
    snapshot_restart(SLED_ENGINE).await;
}

async fn snapshot_restart(engine: &[&str]) {
    let mut args = vec!["--snapshot-count", "100"];
    args.extend_from_slice(engine);
    let mut server =
        EtcdProcess::start(&shale_bin().expect("shale binary"), &args).expect("start shale");
    let mut kv = KvClient::connect(server.endpoint()).await.expect("connect");
    let snap_dir = server.data_dir().join("member").join("snap");
    let has_snapshot = || {
        std::fs::read_dir(&snap_dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "meta"))
            })
            .unwrap_or(false)
    };
    let mut i = 0u32;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while i < 300 || !has_snapshot() {
        kv.put(PutRequest {
            key: format!("/snap/{i}").into(),
            value: format!("v{i}").into(),
            ..Default::default()
        })
        .await
        .expect("put");
        i += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot was taken"
        );
    }
    server.kill9().expect("kill -9");
    server.restart().expect("restart");
    let mut kv = KvClient::connect(server.endpoint()).await.expect("connect");
    let all = kv
        .range(RangeRequest {
            key: "/snap/".into(),
            range_end: "/snap0".into(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(
        all.count, i as i64,
        "every write survives snapshot + restart"
    );
}

/// A data dir written by one state engine is refused by the other, with the flag to use
/// (without the flag a member opens the engine its data dir has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_keeps_its_state_engine() {
    let bin = shale_bin().expect("shale binary");
    let mut server = EtcdProcess::start(&bin, LOG_ENGINE).expect("start shale");
    let mut kv = KvClient::connect(server.endpoint()).await.expect("connect");
    kv.put(PutRequest {
        key: "/engine/k".into(),
        value: "v".into(),
        ..Default::default()
    })
    .await
    .expect("put");
    server.kill9().expect("kill -9");
    // The same ports and name as before: only the engine differs.
    let (c, p) = (server.client_port(), server.peer_port());
    let out = std::process::Command::new(&bin)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{p}"),
        ])
        .args([
            "--initial-cluster",
            &format!("{}=http://127.0.0.1:{p}", server.name()),
        ])
        .args(["--name", server.name()])
        .args(["--experimental-state-engine", "sled"])
        .output()
        .expect("run shale");
    assert!(!out.status.success(), "sled opened a log-engine data dir");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--experimental-state-engine=log"),
        "unclear refusal: {stderr}"
    );
    // Nothing was lost by the refused start.
    server.restart().expect("restart with the log engine");
    let mut kv = KvClient::connect(server.endpoint()).await.expect("connect");
    let r = kv
        .range(RangeRequest {
            key: "/engine/k".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(r.kvs.len(), 1);
}
