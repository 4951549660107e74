//! A network partition, made with one TCP proxy per member pair on the peer port: the
//! isolated old leader acknowledges no write, serves no linearizable read and answers
//! `hasleader` requests with "etcdserver: no leader" (and ends such watch streams); the majority elects a leader and
//! goes on; after healing, every member converges and the minority's unacknowledged write
//! is gone.

mod cluster_util;

use std::time::Duration;

use cluster_util::*;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest};
use shale_testkit::mesh::{Fault, PartitionedMesh};
use shale_testkit::process::{free_port, shale_bin, EtcdProcess};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_acknowledges_nothing_and_heals() {
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| (free_port().expect("port"), free_port().expect("port")))
        .collect();
    let mesh = PartitionedMesh::for_peer_ports(&ports.iter().map(|p| p.1).collect::<Vec<_>>())
        .expect("mesh");
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("n{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let bin = shale_bin().expect("bin");
    let mut c: Vec<EtcdProcess> = ports
        .iter()
        .enumerate()
        .map(|(i, (cp, pp))| {
            let name = format!("n{}", i + 1);
            let dial = mesh.dial_override(&name);
            let mut m = EtcdProcess::new(
                &bin,
                &["--experimental-peer-dial-override", &dial],
                &name,
                *cp,
                *pp,
                initial.clone(),
            )
            .expect("member");
            m.spawn().expect("spawn");
            m
        })
        .collect();
    for m in c.iter_mut() {
        m.wait_healthy(T).expect("healthy");
    }
    let leader = wait_leader(&mut c, T).await.expect("leader");
    let eps: Vec<String> = c.iter().map(|m| m.endpoint()).collect();
    put(&eps[leader], "/p/before", "1").await.expect("put");
    wait_converged(&mut c, T).await.expect("converged");

    // A hasleader watch on the leader-to-be-isolated: ended with "no leader".
    let (wtx, mut watch) = open_watch(
        &eps[leader],
        WatchCreateRequest {
            key: "/p/".into(),
            range_end: "/p0".into(),
            ..Default::default()
        },
        true,
    )
    .await
    .expect("hasleader watch");

    let old = c[leader].name().to_string();
    mesh.isolate_with(&old, Fault::Blackhole);
    let ended = tokio::time::timeout(T, async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    })
    .await
    .expect("the hasleader watch ends");
    assert_eq!(
        ended.map(|e| e.message().to_string()).as_deref(),
        Some("etcdserver: no leader")
    );
    drop(wtx);

    // The majority elects a new leader and takes writes.
    let mut majority: Vec<EtcdProcess> = Vec::new();
    let mut minority = None;
    for (i, m) in c.into_iter().enumerate() {
        if i == leader {
            minority = Some(m);
        } else {
            majority.push(m);
        }
    }
    let minority = minority.expect("old leader");
    let new_leader = wait_leader(&mut majority, T).await.expect("new leader");
    put(&majority[new_leader].endpoint(), "/p/majority", "1")
        .await
        .expect("the majority takes writes");

    // The isolated old leader acknowledges nothing and serves no linearizable read.
    let ch = tonic::transport::Endpoint::from_shared(minority.endpoint())
        .expect("endpoint")
        .timeout(Duration::from_secs(4))
        .connect()
        .await
        .expect("connect");
    let mut kv = KvClient::new(ch);
    let w = kv
        .put(PutRequest {
            key: "/p/minority".into(),
            value: "lost".into(),
            ..Default::default()
        })
        .await;
    assert!(w.is_err(), "the minority acknowledged a write: {w:?}");
    let r = kv
        .range(RangeRequest {
            key: "/p/majority".into(),
            ..Default::default()
        })
        .await;
    assert!(r.is_err(), "the minority served a linearizable read: {r:?}");
    // A serializable read is served from its own (stale) copy.
    let s = kv
        .range(RangeRequest {
            key: "/p/before".into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .expect("serializable read on the minority");
    assert_eq!(s.into_inner().kvs.len(), 1);
    // hasleader: refused once it has not heard from a quorum for an election timeout.
    let mut req = tonic::Request::new(RangeRequest {
        key: "/p/before".into(),
        serializable: true,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("hasleader", "true".parse().expect("metadata"));
    let e = kv.range(req).await.expect_err("hasleader on the minority");
    assert_eq!(e.message(), "etcdserver: no leader");

    // Heal: everyone converges; the minority's write never happened.
    mesh.heal_all();
    let mut all = majority;
    all.push(minority);
    wait_leader(&mut all, T).await.expect("leader after heal");
    wait_converged(&mut all, T)
        .await
        .expect("converged after heal");
    for m in &all {
        let ep = m.endpoint();
        assert_eq!(
            get(&ep, "/p/majority", true).await.expect("get").as_deref(),
            Some("1")
        );
        assert_eq!(get(&ep, "/p/minority", true).await.expect("get"), None);
    }
}
