//! The Raft log stays bounded by `--snapshot-count` *requests* (etcd's unit), however many
//! requests each entry batches, the catch-up tail kept behind a point is counted in requests
//! too, and a snapshot point copies nothing: `member/snap/` holds only point metadata. After kill -9 the member reopens from its store and the short log
//! tail, with every acknowledged write.

use std::time::{Duration, Instant};

use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{PutRequest, RangeRequest};
use shale_testkit::process::{shale_bin, EtcdProcess};

const WRITERS: usize = 32;
const PUTS_EACH: usize = 300;
const SNAPSHOT_COUNT: u64 = 500;
/// More than the entries the load makes (they batch many requests each), fewer requests.
const CATCH_UP: u64 = 2000;

fn metric(server: &EtcdProcess, name: &str) -> u64 {
    let (code, body) = server.get("/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

async fn count(ep: &str, prefix: &str) -> i64 {
    let mut kv = KvClient::connect(ep.to_string()).await.expect("connect");
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    kv.range(RangeRequest {
        key: prefix.to_string().into(),
        range_end: end.into(),
        count_only: true,
        ..Default::default()
    })
    .await
    .expect("count")
    .into_inner()
    .count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_purged_every_snapshot_count_requests() {
    let count_arg = SNAPSHOT_COUNT.to_string();
    let catch_up_arg = CATCH_UP.to_string();
    let mut server = EtcdProcess::start(
        &shale_bin().expect("shale binary"),
        &[
            "--snapshot-count",
            &count_arg,
            "--experimental-snapshot-catchup-entries",
            &catch_up_arg,
        ],
    )
    .expect("start shale");
    let ep = server.endpoint();
    let value = vec![b'v'; 1024];
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let ep = ep.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut kv = KvClient::connect(ep).await.expect("connect");
            for i in 0..PUTS_EACH {
                kv.put(PutRequest {
                    key: format!("/bounded/w{w:02}/k{i:04}").into(),
                    value: value.clone().into(),
                    ..Default::default()
                })
                .await
                .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let requests = (WRITERS * PUTS_EACH) as u64;
    // Points are taken in the background: wait for the count the requests call for.
    let want = requests / SNAPSHOT_COUNT - 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "shale_raft_snapshots_total") < want {
        assert!(
            Instant::now() < deadline,
            "only {} snapshot points after {requests} requests (want >= {want})",
            metric(&server, "shale_raft_snapshots_total")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Purged behind the points, keeping CATCH_UP requests (not CATCH_UP entries: the whole
    // log has fewer entries than that).
    while metric(&server, "shale_raft_purged_index") == 0 {
        assert!(Instant::now() < deadline, "the log was never purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied = metric(&server, "etcd_server_proposals_applied_total");
    let purged = metric(&server, "shale_raft_purged_index");
    let point = metric(&server, "shale_raft_snapshot_index");
    eprintln!("{requests} requests in {applied} entries; point at {point}, purged to {purged}");
    assert!(
        applied < CATCH_UP,
        "the load did not batch: {applied} entries"
    );
    assert!(point <= applied && purged <= point);
    // Points copy nothing: only metadata (and the empty stand-in file) in snap/.
    let snap = server.data_dir().join("member").join("snap");
    for e in std::fs::read_dir(&snap).expect("ls snap") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().to_string();
        let len = e.metadata().expect("stat").len();
        assert!(
            name.ends_with(".meta") || name == "empty",
            "unexpected file {name} ({len} bytes) in {}",
            snap.display()
        );
        assert!(len < 4096, "{name} is {len} bytes: a copy of the data?");
    }

    server.kill9().expect("kill -9");
    server.start_again().expect("restart");
    assert_eq!(count(&ep, "/bounded/").await, requests as i64);
    server.terminate(Duration::from_secs(10)).expect("stop");
}
