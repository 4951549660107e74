//! A follower that was down while the leader compacted its log past the follower's last
//! entry catches up by snapshot (streamed over the peer port), then by the log, and ends
//! with the same data and HashKV as the others. Writes continue during the catch-up.

mod cluster_util;

use std::time::Duration;

use cluster_util::*;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    catch_up_by_snapshot(&[]).await;
}

/// The same with sled as the state engine (the default is the log engine; snapshot install
/// clears and refills either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot_sled_engine() {
    catch_up_by_snapshot(&["--experimental-state-engine", "sled"]).await;
}

async fn catch_up_by_snapshot(engine: &[&str]) {
    let mut args = vec![
        "--snapshot-count",
        "100",
        "--experimental-snapshot-catchup-entries",
        "10",
    ];
    args.extend_from_slice(engine);
    let mut c = start(3, &args);
    let leader = wait_leader(&mut c, T).await.expect("leader");
    let lagging = (leader + 1) % 3;
    let eps: Vec<String> = c.iter().map(|m| m.endpoint()).collect();
    put(&eps[leader], "/snap/first", "1").await.expect("put");
    wait_converged(&mut c, T).await.expect("converged");
    c[lagging].kill9().expect("stop a follower");
    // Many entries (one per sequential put) while it is down: several snapshots, and the
    // log behind them purged down to 10 entries.
    for i in 0..1500 {
        put(&eps[leader], &format!("/snap/k{i:05}"), &format!("v{i}"))
            .await
            .expect("put while a follower is down");
    }
    c[lagging].start_again().expect("restart the follower");
    for i in 0..200 {
        put(&eps[leader], &format!("/snap/after{i:03}"), "x")
            .await
            .expect("put during catch-up");
    }
    wait_converged(&mut c, T)
        .await
        .expect("converged after catch-up");
    assert!(
        c[lagging]
            .log_tail(10_000)
            .contains("installed a snapshot received from the leader"),
        "the follower caught up without a snapshot; log:\n{}",
        c[lagging].log_tail(40)
    );
    let on_lagging = dump(&eps[lagging], "/snap/").await.expect("dump");
    assert_eq!(on_lagging.len(), 1 + 1500 + 200);
    assert_eq!(
        on_lagging,
        dump(&eps[leader], "/snap/").await.expect("dump")
    );
}
