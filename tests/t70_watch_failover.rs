//! Watchers on a follower across a leader change (kill -9 of the leader under writes):
//! events arrive in revision order, none twice, and every acknowledged write is seen.

mod cluster_util;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cluster_util::*;
use shale_api::etcdserverpb::WatchCreateRequest;

const T: Duration = Duration::from_secs(30);
const WRITES: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_watch_survives_leader_change() {
    let mut c = start(3, &[]);
    let leader = wait_leader(&mut c, T).await.expect("leader");
    let watcher_at = (leader + 1) % 3;
    let writer_at = (leader + 2) % 3;
    let eps: Vec<String> = c.iter().map(|m| m.endpoint()).collect();

    let (_tx, mut stream) = open_watch(
        &eps[watcher_at],
        WatchCreateRequest {
            key: "/wf/".into(),
            range_end: "/wf0".into(),
            prev_kv: true,
            ..Default::default()
        },
        false,
    )
    .await
    .expect("watch on a follower");
    let reader = tokio::spawn(async move {
        let mut seen: Vec<(String, i64)> = Vec::new();
        while let Ok(Some(r)) = stream.message().await {
            assert!(!r.canceled, "watch canceled: {r:?}");
            for e in r.events {
                let kv = e.kv.unwrap_or_default();
                seen.push((
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                ));
            }
            if seen.iter().any(|(k, _)| k == "/wf/done") {
                break;
            }
        }
        seen
    });

    let mut acked = Vec::new();
    let mut killed = false;
    let mut i = 0;
    let deadline = Instant::now() + T;
    while acked.len() < WRITES {
        assert!(
            Instant::now() < deadline,
            "writes stalled after the leader change"
        );
        if acked.len() == WRITES / 2 && !killed {
            c[leader].kill9().expect("kill the leader");
            killed = true;
        }
        let k = format!("/wf/k{i:05}");
        i += 1;
        if put(&eps[writer_at], &k, "v").await.is_ok() {
            acked.push(k);
        }
    }
    put(&eps[writer_at], "/wf/done", "1")
        .await
        .expect("last put");
    let seen = tokio::time::timeout(T, reader)
        .await
        .expect("all events arrive")
        .expect("reader");
    assert!(
        seen.windows(2).all(|p| p[0].1 < p[1].1),
        "events out of order or duplicated"
    );
    let keys: HashSet<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), seen.len(), "an event arrived twice");
    for k in &acked {
        assert!(
            keys.contains(k.as_str()),
            "acknowledged {k} never reached the watcher"
        );
    }
}
