//! The Rust `etcd-client` crate as a second real client: KV, Txn, Watch, Lease (with
//! keep-alive and expiry), Maintenance and Cluster calls against a Shale member.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use shale_testkit::process::{shale_bin, EtcdProcess};

async fn client(p: &EtcdProcess) -> Client {
    Client::connect([p.endpoint()], None)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_txn_watch_lease_maintenance() {
    let server = EtcdProcess::start(&shale_bin().expect("shale binary"), &[]).expect("start shale");
    let mut c = client(&server).await;

    // KV
    let put = c.put("/registry/pods/ns/a", "v1", None).await.expect("put");
    let r1 = put.header().expect("header").revision();
    c.put("/registry/pods/ns/b", "v2", None).await.expect("put");
    let got = c
        .get(
            "/registry/pods/",
            Some(GetOptions::new().with_prefix().with_limit(1)),
        )
        .await
        .expect("get");
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(got.count(), 2);
    assert!(got.more());
    assert_eq!(got.kvs()[0].mod_revision(), r1);
    let prev = c
        .put(
            "/registry/pods/ns/a",
            "v3",
            Some(PutOptions::new().with_prev_key()),
        )
        .await
        .expect("put");
    assert_eq!(prev.prev_key().expect("prev").value(), b"v1");

    // Txn in the apiserver's update shape.
    let cur = c.get("/registry/pods/ns/a", None).await.expect("get").kvs()[0].mod_revision();
    let txn = Txn::new()
        .when([Compare::mod_revision(
            "/registry/pods/ns/a",
            CompareOp::Equal,
            cur,
        )])
        .and_then([TxnOp::put("/registry/pods/ns/a", "v4", None)])
        .or_else([TxnOp::get("/registry/pods/ns/a", None)]);
    let t = c.txn(txn.clone()).await.expect("txn");
    assert!(t.succeeded());
    let t2 = c.txn(txn).await.expect("txn");
    assert!(!t2.succeeded(), "stale mod revision must fail the compare");

    // Watch from the past with prev_kv.
    let mut stream = c
        .watch(
            "/registry/pods/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(r1),
            ),
        )
        .await
        .expect("watch");
    let mut seen = Vec::new();
    let mut watch_id = None;
    while seen.len() < 4 {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("watch events in time")
            .expect("stream")
            .expect("message");
        watch_id = Some(resp.watch_id());
        for e in resp.events() {
            seen.push((e.event_type(), e.kv().expect("kv").mod_revision()));
        }
    }
    assert_eq!(seen[0], (EventType::Put, r1));
    assert!(
        seen.windows(2).all(|p| p[0].1 < p[1].1),
        "events in revision order: {seen:?}"
    );
    stream
        .cancel(watch_id.expect("watch id"))
        .await
        .expect("cancel");
    // A progress request is answered (watch_id -1 in etcd's protocol) once we are caught up.
    stream.request_progress().await.expect("progress request");
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("progress in time")
            .expect("stream")
            .expect("message");
        if resp.watch_id() == -1 {
            break;
        }
    }

    // Lease: grant, attach, keep alive once, then let it expire and see the key go.
    let lease = c.lease_grant(2, None).await.expect("grant");
    c.put(
        "/registry/events/ns/e1",
        "x",
        Some(PutOptions::new().with_lease(lease.id())),
    )
    .await
    .expect("put");
    let (mut keeper, mut ka) = c.lease_keep_alive(lease.id()).await.expect("keepalive");
    keeper.keep_alive().await.expect("send keepalive");
    let k = ka.message().await.expect("stream").expect("message");
    assert_eq!(k.ttl(), 2);
    let ttl = c
        .lease_time_to_live(
            lease.id(),
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("ttl");
    assert_eq!(ttl.keys().len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = c.get("/registry/events/ns/e1", None).await.expect("get");
        if r.kvs().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leased key not removed after expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Maintenance and cluster.
    let st = c.status().await.expect("status");
    assert!(st.version().starts_with("3."));
    assert_eq!(st.leader(), st.header().expect("header").member_id());
    let members = c.member_list().await.expect("members");
    assert_eq!(members.members().len(), 1);
    let rev = c
        .get("x", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    c.compact(rev - 1, None).await.expect("compact");
    let err = c
        .get(
            "/registry/pods/ns/a",
            Some(GetOptions::new().with_revision(r1)),
        )
        .await
        .expect_err("compacted");
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );
    let h = c.hash_kv(0).await.expect("hashkv");
    assert_eq!(h.compact_version(), rev - 1);
}
