//! A 3-member cluster serves every request on every member: writes and linearizable reads
//! on followers, watches on followers, leases on followers, the member list, MoveLeader,
//! and membership changes (add a learner, start it, promote it, remove an old member), and
//! a removed follower stops itself, as etcd's does.

mod cluster_util;

use std::time::Duration;

use cluster_util::*;
use shale_api::etcdserverpb::cluster_client::ClusterClient;
use shale_api::etcdserverpb::lease_client::LeaseClient;
use shale_api::etcdserverpb::maintenance_client::MaintenanceClient;
use shale_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, MemberAddRequest,
    MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberRemoveRequest,
    MoveLeaderRequest, PutRequest, WatchCreateRequest,
};
use shale_testkit::process::{free_port, shale_bin, EtcdProcess};
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_serves_every_request() {
    let mut c = start(3, &[]);
    let leader = wait_leader(&mut c, T).await.expect("leader");
    let eps: Vec<String> = c.iter().map(|m| m.endpoint()).collect();
    let follower = (leader + 1) % 3;

    // A watcher on a follower, created before the writes.
    let (_tx, mut events) = open_watch(
        &eps[follower],
        WatchCreateRequest {
            key: "/w/".into(),
            range_end: "/w0".into(),
            ..Default::default()
        },
        false,
    )
    .await
    .expect("watch on a follower");

    // Writes through every member; linearizable reads through every member see each.
    for (i, ep) in eps.iter().enumerate() {
        let k = format!("/w/k{i}");
        put(ep, &k, &format!("v{i}")).await.expect("put");
        for other in &eps {
            assert_eq!(
                get(other, &k, false).await.expect("get").as_deref(),
                Some(format!("v{i}").as_str()),
                "linearizable read on {other} after a write on {ep}"
            );
        }
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let r = tokio::time::timeout(T, events.message())
            .await
            .expect("events in time")
            .expect("stream")
            .expect("open");
        got.extend(r.events.into_iter().map(|e| {
            let kv = e.kv.unwrap_or_default();
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        }));
    }
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/w/k0", "/w/k1", "/w/k2"]);
    assert!(got.windows(2).all(|p| p[0].1 < p[1].1), "{got:?}");

    // Leases granted, kept alive and inspected through a follower.
    let mut l = LeaseClient::new(channel(&eps[follower]).await.expect("channel"));
    let g = l
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    let mut kv_f = kv(&eps[follower]).await.expect("kv");
    kv_f.put(PutRequest {
        key: "/w/leased".into(),
        value: "x".into(),
        lease: g.id,
        ..Default::default()
    })
    .await
    .expect("put with lease");
    let ka = l
        .lease_keep_alive(tokio_stream::iter(vec![LeaseKeepAliveRequest { id: g.id }]))
        .await
        .expect("keepalive")
        .into_inner()
        .message()
        .await
        .expect("keepalive answer")
        .expect("one answer");
    assert_eq!(ka.ttl, 30);
    let ttl = l
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        })
        .await
        .expect("ttl")
        .into_inner();
    assert!(ttl.ttl > 25 && ttl.ttl <= 30, "{ttl:?}");
    assert_eq!(ttl.keys, vec![bytes::Bytes::from("/w/leased")]);

    // Member list: three started members with names and client URLs, on every member
    // (once each member's own publish is applied).
    for ep in &eps {
        let mut cl = ClusterClient::new(channel(ep).await.expect("channel"));
        let list = wait_member_list(&mut cl, |list| {
            let mut names: Vec<String> = list.members.iter().map(|m| m.name.clone()).collect();
            names.sort();
            names == ["n1", "n2", "n3"]
        })
        .await;
        assert!(list
            .members
            .iter()
            .all(|m| m.client_ur_ls.len() == 1 && !m.is_learner));
    }
    wait_converged(&mut c, T).await.expect("converged");

    // MoveLeader to a follower: refused on a follower, done by the leader.
    let target = status(&eps[follower])
        .await
        .expect("status")
        .header
        .expect("h")
        .member_id;
    let mut mf = MaintenanceClient::new(channel(&eps[follower]).await.expect("channel"));
    let e = mf
        .move_leader(MoveLeaderRequest { target_id: target })
        .await
        .expect_err("a follower refuses MoveLeader");
    assert_eq!(e.message(), "etcdserver: not leader");
    let mut ml = MaintenanceClient::new(channel(&eps[leader]).await.expect("channel"));
    ml.move_leader(MoveLeaderRequest { target_id: target })
        .await
        .expect("move leader");
    assert_eq!(wait_leader(&mut c, T).await.expect("leader"), follower);
    put(&eps[leader], "/w/after-move", "1")
        .await
        .expect("put after move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_learner_promote_and_remove_under_writes() {
    let mut c = start(3, &[]);
    wait_leader(&mut c, T).await.expect("leader");
    let eps: Vec<String> = c.iter().map(|m| m.endpoint()).collect();
    for i in 0..200 {
        put(&eps[i % 3], &format!("/m/k{i}"), "v")
            .await
            .expect("put");
    }
    // Background writes through n1 during the membership changes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let ep = eps[0].clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if put(&ep, &format!("/m/bg{i}"), "v").await.is_ok() {
                    acked.push(i);
                }
                i += 1;
            }
            acked
        })
    };
    let peer_port = free_port().expect("port");
    let client_port = free_port().expect("port");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut cl = ClusterClient::new(channel(&eps[1]).await.expect("channel"));
    let added = cl
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![peer_url.clone()],
            is_learner: true,
        })
        .await
        .expect("member add")
        .into_inner();
    let new_id = added.member.expect("member").id;
    assert_eq!(added.members.len(), 4);
    // A second learner is refused, as etcd does by default.
    let e = cl
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![format!("http://127.0.0.1:{}", free_port().expect("port"))],
            is_learner: true,
        })
        .await
        .expect_err("second learner");
    assert_eq!(
        e.message(),
        "etcdserver: too many learner members in cluster"
    );
    let initial = format!("{},n4={peer_url}", initial_cluster(&c));
    let mut n4 = EtcdProcess::new(
        &shale_bin().expect("bin"),
        &["--initial-cluster-state", "existing"],
        "n4",
        client_port,
        peer_port,
        initial,
    )
    .expect("n4");
    n4.spawn().expect("spawn n4");
    n4.wait_healthy(T).expect("n4 healthy");
    // The learner catches up, then is promoted.
    let deadline = std::time::Instant::now() + T;
    loop {
        match cl.member_promote(MemberPromoteRequest { id: new_id }).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.message().contains("in sync"), "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("promote: {e:?}"),
        }
    }
    // Remove n3 (the original member, leader or not).
    let n3_id = status(&eps[2])
        .await
        .expect("status")
        .header
        .expect("h")
        .member_id;
    let left = cl
        .member_remove(MemberRemoveRequest { id: n3_id })
        .await
        .expect("remove")
        .into_inner();
    assert_eq!(left.members.len(), 3);
    assert!(left.members.iter().all(|m| m.id != n3_id && !m.is_learner));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(!acked.is_empty());
    c[2].kill9().expect("stop the removed n3");
    let mut rest: Vec<EtcdProcess> = c.into_iter().take(2).collect();
    rest.push(n4);
    wait_leader(&mut rest, T)
        .await
        .expect("leader after changes");
    wait_converged(&mut rest, T).await.expect("converged");
    let on_n4 = dump(&rest[2].endpoint(), "/m/").await.expect("dump n4");
    assert_eq!(
        on_n4.iter().filter(|(k, _)| k.starts_with("/m/k")).count(),
        200
    );
    for i in acked {
        let k = format!("/m/bg{i}");
        assert!(
            on_n4.iter().any(|(x, _)| *x == k),
            "acknowledged {k} missing on n4"
        );
    }
}

/// A follower removed under writes stops by itself (etcd's message, exit code 0), stops
/// again when restarted on its data dir, and the two members left keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_follower_stops_itself() {
    let mut c = start(3, &[]);
    let leader = wait_leader(&mut c, T).await.expect("leader");
    let gone = (leader + 1) % 3;
    let eps: Vec<String> = c.iter().map(|m| m.endpoint()).collect();
    let kept: Vec<String> = (0..3)
        .filter(|i| *i != gone)
        .map(|i| eps[i].clone())
        .collect();
    let gone_id = status(&eps[gone])
        .await
        .expect("status")
        .header
        .expect("h")
        .member_id;
    // Every member has published its name (so each peer knows the follower was a member).
    let mut cl = ClusterClient::new(channel(&kept[0]).await.expect("channel"));
    wait_member_list(&mut cl, |list| {
        list.members.iter().all(|m| !m.name.is_empty())
    })
    .await;
    wait_converged(&mut c, T).await.expect("converged");
    // Writes through the two members that stay, during the removal.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (eps, stop) = (kept.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if put(&eps[i % 2], &format!("/rm/k{i}"), "v").await.is_ok() {
                    acked.push(i);
                }
                i += 1;
            }
            acked
        })
    };
    let t0 = std::time::Instant::now();
    let left = cl
        .member_remove(MemberRemoveRequest { id: gone_id })
        .await
        .expect("remove")
        .into_inner();
    assert!(left.members.iter().all(|m| m.id != gone_id), "{left:?}");
    let exit = c[gone]
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c[gone].log_tail(20)));
    eprintln!(
        "removed follower exited {:.2} s after the removal",
        t0.elapsed().as_secs_f64()
    );
    let log = c[gone].log_tail(40);
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "{log}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(!acked.is_empty());

    // Restarted on its data dir, it is told again and stops again: it never comes back.
    let t0 = std::time::Instant::now();
    c[gone].spawn_again().expect("restart the removed member");
    let exit = c[gone]
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c[gone].log_tail(20)));
    assert_eq!(exit.code(), Some(0), "{}", c[gone].log_tail(20));
    eprintln!(
        "restarted, it exited again after {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // The two members left serve writes and linearizable reads and hold every acked write.
    let mut rest: Vec<EtcdProcess> = c
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, m)| m)
        .collect();
    wait_leader(&mut rest, T).await.expect("leader of the two");
    for (i, ep) in kept.iter().enumerate() {
        put(ep, &format!("/rm/after{i}"), "1")
            .await
            .expect("put after");
        for other in &kept {
            let v = get(other, &format!("/rm/after{i}"), false).await;
            assert_eq!(v.expect("get").as_deref(), Some("1"));
        }
    }
    wait_converged(&mut rest, T).await.expect("converged");
    let on = dump(&kept[1], "/rm/").await.expect("dump");
    for i in acked {
        let k = format!("/rm/k{i}");
        assert!(on.iter().any(|(x, _)| *x == k), "acknowledged {k} missing");
    }
    let list = cl
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("member list")
        .into_inner();
    assert_eq!(list.members.len(), 2, "{list:?}");
}

/// Polls the linearizable member list through `cl` until `done` holds for it (panics after
/// `T`).
async fn wait_member_list(
    cl: &mut ClusterClient<Channel>,
    done: impl Fn(&MemberListResponse) -> bool,
) -> MemberListResponse {
    let deadline = std::time::Instant::now() + T;
    loop {
        let list = cl
            .member_list(MemberListRequest { linearizable: true })
            .await
            .expect("member list")
            .into_inner();
        if done(&list) {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "{list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn initial_cluster(c: &[EtcdProcess]) -> String {
    c.iter()
        .map(|m| format!("{}={}", m.name(), m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_of_another_cluster_is_refused() {
    let mut c = start(3, &[]);
    wait_leader(&mut c, T).await.expect("leader");
    // A new member naming n1 in its --initial-cluster, with another token: another cluster.
    let (cp, pp) = (free_port().expect("port"), free_port().expect("port"));
    let initial = format!(
        "{}={},x1=http://127.0.0.1:{pp}",
        c[0].name(),
        c[0].peer_url()
    );
    let mut stranger = EtcdProcess::new(
        &shale_bin().expect("bin"),
        &["--initial-cluster-token", "another-token"],
        "x1",
        cp,
        pp,
        initial,
    )
    .expect("stranger");
    stranger.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + T;
    while stranger.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "a member of another cluster kept running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = stranger.log_tail(20);
    assert!(
        log.contains("belongs to cluster") && log.contains("--initial-cluster-token"),
        "{log}"
    );
    // The cluster is unharmed.
    put(&c[1].endpoint(), "/other/ok", "1").await.expect("put");
}
