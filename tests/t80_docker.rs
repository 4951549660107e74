//! The docker compose cluster (docker/compose.yaml) under Docker's own faults:
//! - `up -d --build` gives three healthy containers, one leader, every member serving;
//! - `docker kill` of the leader under writes loses no acknowledged write;
//! - `docker pause` of the leader past the election timeout, then `unpause`: no stale read
//!   from the old leader, and nothing it acknowledges is lost;
//! - `docker network disconnect` of a member, writes, `connect`: it catches up;
//! - `docker compose restart` keeps all data;
//! - the TLS variant (docker/compose.tls.yaml, certificates from docker/tls/gen-certs.sh):
//!   healthy through `shale healthcheck` over mutual TLS, etcdctl with kubeadm's client
//!   certificates works on every member, a client without a certificate is refused.
//!
//! Needs the release binary (`cargo build --release`) and a Docker engine; without an engine
//! the tests skip themselves unless `SHALE_DOCKER_TESTS=1`. Tests run one at a time (each
//! has a whole 3-container cluster) and tear their project down, volumes included.

mod cluster_util;
mod compose_util;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_util::{dump, get, kv, put, status};
use compose_util::{docker, docker_available, Compose, SERVICES};
use shale_api::etcdserverpb::PutRequest;
use shale_testkit::process::etcdctl35_bin;
use tokio::sync::MutexGuard;

/// One compose cluster at a time: 2 cores do not run two well.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HEALTHY: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(60);

/// For one test: the turn (held until the test ends; the cluster is torn down first) and a
/// cluster that is up, healthy and has a leader; `None` without a Docker engine.
async fn setup(test: &str) -> Option<(MutexGuard<'static, ()>, Compose, usize)> {
    if !docker_available() {
        return None;
    }
    let turn = ONE_AT_A_TIME.lock().await;
    let c = Compose::new(test).expect("compose project");
    let t0 = Instant::now();
    c.up().expect("compose up");
    c.wait_healthy(HEALTHY).await.expect("healthy");
    eprintln!(
        "{test}: up to healthy in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let leader = c.wait_leader(&[0, 1, 2], SETTLE).await.expect("leader");
    Some((turn, c, leader))
}

/// Writers putting unique keys `<prefix>w<id>/<seq>` through all members (moving on after
/// an error); every acknowledged key is recorded.
struct Writers {
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(eps: Vec<String>, prefix: &str, n: usize) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..n)
            .map(|id| {
                let (eps, acked, count, stop) =
                    (eps.clone(), acked.clone(), count.clone(), stop.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut home = id % eps.len();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut client) = kv(&eps[home]).await else {
                            home = (home + 1) % eps.len();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        while !stop.load(Ordering::Relaxed) {
                            seq += 1;
                            let key = format!("{prefix}w{id}/{seq}");
                            let put = client.put(PutRequest {
                                key: key.clone().into(),
                                value: "v".into(),
                                ..Default::default()
                            });
                            match tokio::time::timeout(Duration::from_secs(5), put).await {
                                Ok(Ok(_)) => {
                                    acked.lock().expect("lock").push(key);
                                    count.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {
                                    home = (home + 1) % eps.len();
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Writers {
            acked,
            count,
            stop,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    async fn wait_for(&self, n: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        while self.count() < n {
            assert!(
                start.elapsed() < timeout,
                "only {} of {n} writes acknowledged within {timeout:?}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer");
        }
        let acked = self.acked.lock().expect("lock").clone();
        acked
    }
}

/// Every key of `acked` is on every member (each member's own copy).
async fn assert_all_present(c: &Compose, prefix: &str, acked: &[String]) {
    for (i, service) in SERVICES.iter().enumerate() {
        let have: BTreeSet<String> = dump(&c.endpoint(i), prefix)
            .await
            .expect("dump")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|k| !have.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "{service}: {} acknowledged writes missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_compose_up_is_healthy() {
    let Some((_turn, c, leader)) = setup("up").await else {
        return;
    };
    let size =
        docker(&["image", "inspect", "--format", "{{.Size}}", "shale:local"]).expect("image size");
    eprintln!("image shale:local: {size} bytes");
    let mut cluster_ids = BTreeSet::new();
    for i in 0..3 {
        let s = status(&c.endpoint(i)).await.expect("status");
        let h = s.header.expect("header");
        cluster_ids.insert(h.cluster_id);
        assert_eq!(
            s.leader,
            status(&c.endpoint(leader))
                .await
                .unwrap()
                .header
                .unwrap()
                .member_id
        );
    }
    assert_eq!(cluster_ids.len(), 1, "one cluster id: {cluster_ids:x?}");
    // Members know each other by their compose names.
    let mut cl = shale_api::etcdserverpb::cluster_client::ClusterClient::new(
        cluster_util::channel(&c.endpoint(0)).await.unwrap(),
    );
    let members = cl
        .member_list(shale_api::etcdserverpb::MemberListRequest::default())
        .await
        .expect("member list")
        .into_inner()
        .members;
    let mut names: Vec<(String, Vec<String>)> = members
        .into_iter()
        .map(|m| (m.name, m.client_ur_ls))
        .collect();
    names.sort();
    assert_eq!(
        names,
        SERVICES
            .iter()
            .map(|s| (s.to_string(), vec![format!("http://{s}:2379")]))
            .collect::<Vec<_>>()
    );
    // Any member takes writes and serves linearizable reads of the others' writes.
    for i in 0..3 {
        put(&c.endpoint(i), &format!("/up/{i}"), "v")
            .await
            .expect("put");
        let next = c.endpoint((i + 1) % 3);
        assert_eq!(
            get(&next, &format!("/up/{i}"), false).await.expect("get"),
            Some("v".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_docker_kill_leader_loses_no_write() {
    let Some((_turn, c, leader)) = setup("kill").await else {
        return;
    };
    let writers = Writers::start(c.endpoints(), "/kill/", 6);
    writers.wait_for(300, SETTLE).await;
    let victim = c.container(leader).expect("leader container");
    docker(&["kill", &victim]).expect("docker kill");
    let killed_at = writers.count();
    let resumed = writers.wait_for(killed_at + 300, SETTLE).await;
    eprintln!(
        "kill: {} was leader; 300 more writes acknowledged {:.2} s after the kill",
        SERVICES[leader],
        resumed.as_secs_f64()
    );
    let acked = writers.stop().await;
    if c.inspect(leader, "{{.State.Running}}").expect("inspect") != "true" {
        docker(&["start", &victim]).expect("docker start");
    }
    c.wait_healthy(HEALTHY).await.expect("healthy again");
    c.wait_converged(SETTLE).await.expect("converged");
    assert_all_present(&c, "/kill/", &acked).await;
    eprintln!("kill: {} acknowledged writes on all members", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_docker_pause_leader_no_stale_read() {
    let Some((_turn, c, old)) = setup("pause").await else {
        return;
    };
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    put(&c.endpoint(old), "/pause/k", "before")
        .await
        .expect("put");
    let paused = c.container(old).expect("container");
    docker(&["pause", &paused]).expect("docker pause");
    let t0 = Instant::now();
    // A write sent to the frozen leader: it must not be acknowledged while paused.
    let to_old = c.endpoint(old);
    let stale_put = tokio::spawn(async move {
        tokio::time::timeout(
            Duration::from_secs(30),
            put(&to_old, "/pause/sent-to-old", "x"),
        )
        .await
    });
    let new = c.wait_leader(&others, SETTLE).await.expect("new leader");
    assert_ne!(new, old);
    eprintln!(
        "pause: {} elected {:.2} s after pausing {}",
        SERVICES[new],
        t0.elapsed().as_secs_f64(),
        SERVICES[old]
    );
    put(&c.endpoint(new), "/pause/k", "after")
        .await
        .expect("put via new leader");
    assert!(
        !stale_put.is_finished(),
        "the paused leader answered a write"
    );
    docker(&["unpause", &paused]).expect("docker unpause");
    // Straight after unpause the old leader may still think it leads: every linearizable
    // read through it must see "after" or fail, never "before".
    let mut reads = Vec::new();
    for _ in 0..20 {
        let ep = c.endpoint(old);
        reads.push(tokio::spawn(
            async move { get(&ep, "/pause/k", false).await },
        ));
    }
    let mut answered = 0;
    for r in reads {
        if let Ok(v) = r.await.expect("read task") {
            assert_eq!(
                v.as_deref(),
                Some("after"),
                "stale read from the old leader"
            );
            answered += 1;
        }
    }
    // Writes through the old leader after unpause: whatever it acknowledges must stay.
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("/pause/after-unpause/{i}");
        if put(&c.endpoint(old), &key, "v").await.is_ok() {
            acked.push(key);
        }
    }
    let stale = stale_put.await.expect("task");
    c.wait_converged(SETTLE).await.expect("converged");
    if let Ok(Ok(_)) = stale {
        acked.push("/pause/sent-to-old".into());
    }
    assert_all_present(&c, "/pause/", &acked).await;
    for i in 0..3 {
        assert_eq!(
            get(&c.endpoint(i), "/pause/k", true).await.expect("get"),
            Some("after".into())
        );
    }
    eprintln!(
        "pause: {answered}/20 reads through the old leader answered (all current); \
         {} writes through it acknowledged and kept; the write sent while paused: {}",
        acked.len(),
        match stale {
            Ok(Ok(_)) => "acknowledged after unpause, kept",
            _ => "failed",
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_docker_network_disconnect_catches_up() {
    let Some((_turn, c, leader)) = setup("net").await else {
        return;
    };
    let cut = (leader + 1) % 3;
    let net = c.network().expect("network");
    let id = c.container(cut).expect("container");
    docker(&["network", "disconnect", &net, &id]).expect("disconnect");
    // Cut off for real: inside its container the member soon reports no leader.
    let t0 = Instant::now();
    loop {
        let probe = std::process::Command::new("docker")
            .args(["exec", &id, "/shale", "healthcheck"])
            .output()
            .expect("docker exec");
        if !probe.status.success() {
            eprintln!(
                "net: {} unhealthy {:.2} s after the disconnect: {}",
                SERVICES[cut],
                t0.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&probe.stderr).trim()
            );
            break;
        }
        assert!(
            t0.elapsed() < SETTLE,
            "the disconnected member stayed healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live: Vec<String> = (0..3)
        .filter(|i| *i != cut)
        .map(|i| c.endpoint(i))
        .collect();
    let writers = Writers::start(live, "/net/", 4);
    writers.wait_for(500, SETTLE).await;
    let acked = writers.stop().await;
    docker(&["network", "connect", "--alias", SERVICES[cut], &net, &id]).expect("connect");
    let t0 = Instant::now();
    c.wait_converged(SETTLE).await.expect("converged");
    eprintln!(
        "net: {} caught up on {} writes {:.2} s after reconnecting",
        SERVICES[cut],
        acked.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_all_present(&c, "/net/", &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t84_compose_restart_keeps_data() {
    let Some((_turn, c, _)) = setup("restart").await else {
        return;
    };
    let writers = Writers::start(c.endpoints(), "/restart/", 4);
    writers.wait_for(300, SETTLE).await;
    let acked = writers.stop().await;
    let (_, rev_before) = c.wait_converged(SETTLE).await.expect("converged");
    let t0 = Instant::now();
    c.compose(&["restart"]).expect("compose restart");
    c.wait_healthy(HEALTHY)
        .await
        .expect("healthy after restart");
    eprintln!(
        "restart: healthy {:.1} s after `compose restart`",
        t0.elapsed().as_secs_f64()
    );
    let (_, rev_after) = c.wait_converged(SETTLE).await.expect("converged");
    assert_eq!(rev_after, rev_before, "revision changed across the restart");
    assert_all_present(&c, "/restart/", &acked).await;
}

/// etcdctl 3.5 against member `i` of a TLS cluster with `tls` (its --cacert/--cert/--key
/// flags): (success, stdout, stderr).
fn etcdctl_tls(c: &Compose, i: usize, tls: &[String], args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(etcdctl35_bin().expect("etcdctl 3.5"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.endpoint(i)))
        .args(["--dial-timeout=3s", "--command-timeout=5s"])
        .args(tls)
        .args(args)
        .output()
        .expect("run etcdctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_compose_tls_mutual_tls() {
    if !docker_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let c = Compose::tls("tls").expect("compose project with certificates");
    let t0 = Instant::now();
    c.up().expect("compose up");
    // Docker's health check is `shale healthcheck https://…` with the health-check client
    // certificate: healthy means that probe passed on every member.
    c.wait_healthy(HEALTHY).await.expect("healthy");
    eprintln!("tls: up to healthy in {:.1} s", t0.elapsed().as_secs_f64());
    let pki = c.pki().expect("certificates").to_path_buf();
    let flags = |cert: &str| -> Vec<String> {
        let mut f = vec![format!("--cacert={}", pki.join("etcd/ca.crt").display())];
        if !cert.is_empty() {
            f.push(format!(
                "--cert={}",
                pki.join(format!("{cert}.crt")).display()
            ));
            f.push(format!(
                "--key={}",
                pki.join(format!("{cert}.key")).display()
            ));
        }
        f
    };
    let apiserver = flags("apiserver-etcd-client");
    // One leader, seen by every member over mutual TLS (the peers talk over mTLS too).
    let deadline = Instant::now() + SETTLE;
    loop {
        let leaders: BTreeSet<String> = (0..3)
            .map(|i| {
                let (ok, out, err) =
                    etcdctl_tls(&c, i, &apiserver, &["endpoint", "status", "-w", "fields"]);
                let leader = out.lines().find(|l| l.starts_with("\"Leader\""));
                match (ok, leader) {
                    (true, Some(l)) => l.to_string(),
                    _ => format!("{}: {err}", SERVICES[i]),
                }
            })
            .collect();
        if leaders.len() == 1 && !leaders.iter().any(|l| l.ends_with(": 0")) {
            break;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Writes through every member with the apiserver's certificate; linearizable reads of
    // them on the next member, with the health-check client's.
    let health = flags("etcd/healthcheck-client");
    for i in 0..3 {
        let key = format!("/tls/{i}");
        let (ok, out, err) = etcdctl_tls(&c, i, &apiserver, &["put", &key, "v"]);
        assert!(ok && out == "OK", "put on {}: {out} {err}", SERVICES[i]);
        let (ok, out, err) = etcdctl_tls(
            &c,
            (i + 1) % 3,
            &health,
            &["get", &key, "--print-value-only"],
        );
        assert!(
            ok && out == "v",
            "get on {}: {out:?} {err}",
            SERVICES[(i + 1) % 3]
        );
    }
    // A client that trusts the CA but has no certificate of its own is refused.
    let (ok, out, err) = etcdctl_tls(&c, 0, &flags(""), &["get", "/tls/0", "--print-value-only"]);
    assert!(
        !ok && !out.contains('v'),
        "a client without a certificate got {out:?} {err}"
    );
    eprintln!(
        "tls: no client certificate: {}",
        err.lines().last().unwrap_or_default()
    );
}
