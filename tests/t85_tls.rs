//! TLS the way Kubernetes runs etcd (issue 11): etcdctl 3.5 and 3.4 and the Rust
//! `etcd-client` crate against a member with client mTLS; a 3-member cluster with client and
//! peer mTLS (forwarded writes, linearizable reads, a learner that joins over peer TLS and
//! catches up by snapshot); mixed `http://` and `https://` client URLs, `/health` and
//! `/metrics` on the TLS port and plain `--listen-metrics-urls`; certificate rotation under
//! load (no failed request; a mismatched replacement keeps the last good pair); `--auto-tls`;
//! `--tls-min-version TLS1.3`. The harness and certificates are checked against real etcd
//! 3.5.1 too. Every wait polls a condition.

mod tls_util;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, MemberAddOptions, TlsOptions,
    WatchOptions,
};
use shale_testkit::process::{
    etcd35_bin, etcdctl34_bin, etcdctl35_bin, free_port, http_get, shale_bin, EtcdProcess, TlsOpts,
};
use tls_util::{replace_file, s, serial, strs, Certs, Pair};

const T: Duration = Duration::from_secs(30);

/// etcdctl 3.5 or 3.4 (`ETCDCTL_API=3`) against `ep` with the TLS flags `tls`.
fn etcdctl(bin: &Path, ep: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new(bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .args(["--dial-timeout=5s", "--command-timeout=15s"])
        .args(tls)
        .args(args)
        .output()
        .expect("run etcdctl")
}

fn etcdctl_ok(bin: &Path, m: &EtcdProcess, ep: &str, args: &[&str]) -> String {
    let out = etcdctl(bin, ep, &m.etcdctl_tls_args(), args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} at {ep} failed:\n{stdout}\n{}\n--- server log:\n{}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr),
        m.log_tail(30)
    );
    stdout
}

/// Runs `script` with bash; (exit success, stdout + stderr).
fn sh(script: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The serial of the certificate a new TLS connection to `port` is served (`openssl
/// s_client`, presenting the test client certificate).
fn served_serial(certs: &Certs, port: u16) -> String {
    let (ok, out) = sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null \
         | openssl x509 -noout -serial",
        s(&certs.ca),
        s(&certs.client.cert),
        s(&certs.client.key)
    ));
    assert!(ok, "openssl s_client to {port}: {out}");
    out.trim().trim_start_matches("serial=").to_string()
}

/// etcd-client over TLS: trusts the test CA, presents the `CN=root` client certificate.
async fn tls_client(certs: &Certs, eps: &[String]) -> Result<Client, etcd_client::Error> {
    let read = |p: &Path| std::fs::read(p).expect("read a certificate file");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&certs.ca)))
        .identity(Identity::from_pem(
            read(&certs.client.cert),
            read(&certs.client.key),
        ));
    let opts = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(15));
    Client::connect(eps, Some(opts)).await
}

/// put/get/watch/member list/endpoint status/endpoint health with `etcdctl` over client mTLS
/// against `m`, whose endpoint is `https://`.
fn etcdctl_round(ctl: &Path, m: &EtcdProcess, prefix: &str) {
    let ep = m.endpoint();
    assert!(ep.starts_with("https://"), "{ep}");
    let key = format!("{prefix}/k");
    let put = etcdctl_ok(ctl, m, &ep, &["put", &key, "v1", "-w", "json"]);
    let rev: i64 = put
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {put}"));
    let got = etcdctl_ok(ctl, m, &ep, &["get", &key]);
    assert_eq!(got, format!("{key}\nv1\n"));

    // A watch from the put's revision replays it (no race with the watch's creation).
    let mut child = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .args(m.etcdctl_tls_args())
        .args(["watch", &key, &format!("--rev={rev}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcdctl watch");
    let stdout = child.stdout.take().expect("watch stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + T;
    while lines.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("etcdctl watch over TLS: {e} after {lines:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["PUT", key.as_str(), "v1"]);

    let list = etcdctl_ok(ctl, m, &ep, &["member", "list"]);
    assert!(list.contains(&format!(", {ep}")), "{list}");
    let status = etcdctl_ok(ctl, m, &ep, &["endpoint", "status", "-w", "json"]);
    assert!(
        status.contains(&format!("\"Endpoint\":\"{ep}\"")),
        "{status}"
    );
    assert!(status.contains("\"version\":\"3."), "{status}");
    let health = etcdctl(ctl, &ep, &m.etcdctl_tls_args(), &["endpoint", "health"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    assert!(health.status.success(), "{text}");
    assert!(text.contains(&format!("{ep} is healthy")), "{text}");
}

async fn next(stream: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
    tokio::time::timeout(T, stream.message())
        .await
        .expect("a watch response in time")
        .expect("watch stream")
        .expect("stream open")
}

fn mtls_member(bin: &Path, certs: &Certs, extra: &[&str]) -> EtcdProcess {
    let mut args = certs.server_flags();
    args.extend(extra.iter().map(|a| a.to_string()));
    EtcdProcess::start_tls(bin, certs.client_tls(), &strs(&args)).expect("start a TLS member")
}

#[test]
fn etcdctl_35_and_34_over_client_mtls() {
    let certs = Certs::new();
    let m = mtls_member(&shale_bin().expect("shale binary"), &certs, &[]);
    etcdctl_round(&etcdctl35_bin().expect("etcdctl 3.5"), &m, "/ctl35");
    etcdctl_round(&etcdctl34_bin().expect("etcdctl 3.4"), &m, "/ctl34");
    // mTLS is really on: no client certificate, no service.
    let tls = [format!("--cacert={}", s(&certs.ca))];
    let out = etcdctl(
        &etcdctl35_bin().expect("etcdctl 3.5"),
        &m.endpoint(),
        &tls,
        &["get", "/ctl35/k"],
    );
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
}

/// The same round against real etcd 3.5.1: the harness and the certificates are what etcd
/// accepts too.
#[test]
fn harness_and_certificates_work_with_real_etcd() {
    let certs = Certs::new();
    let m = mtls_member(&etcd35_bin().expect("etcd 3.5.1"), &certs, &[]);
    etcdctl_round(&etcdctl35_bin().expect("etcdctl 3.5"), &m, "/etcd");
    assert_eq!(m.get("/health").expect("GET /health over TLS").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_over_client_mtls() {
    let certs = Certs::new();
    let m = mtls_member(&shale_bin().expect("shale binary"), &certs, &[]);
    let mut c = tls_client(&certs, &[m.endpoint()])
        .await
        .expect("etcd-client connects over TLS");
    let mut stream = c
        .watch("/ec/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let created = next(&mut stream).await;
    assert!(created.created(), "{created:?}");
    c.put("/ec/a", "1", None).await.expect("put");
    let got = c.get("/ec/a", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"1");
    let resp = next(&mut stream).await;
    assert_eq!(resp.events()[0].kv().expect("kv").key(), b"/ec/a");
    stream
        .cancel(created.watch_id())
        .await
        .expect("cancel the watch");
    let members = c.member_list().await.expect("member list");
    assert_eq!(members.members()[0].client_urls(), [m.endpoint()]);
    let st = c.status().await.expect("status");
    assert!(st.version().starts_with("3."), "{}", st.version());
    let lease = c.lease_grant(30, None).await.expect("lease grant");
    c.lease_revoke(lease.id()).await.expect("lease revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_client_and_peer_mtls() {
    let certs = Certs::new();
    let bin = shale_bin().expect("shale binary");
    let mut args = certs.server_flags();
    args.extend(certs.peer_flags());
    args.extend(
        [
            "--snapshot-count",
            "100",
            "--experimental-snapshot-catchup-entries",
            "10",
        ]
        .map(String::from),
    );
    let tls = TlsOpts {
        peer: true,
        ..certs.client_tls()
    };
    let mut c = EtcdProcess::start_cluster_tls(&bin, 3, tls.clone(), &strs(&args))
        .expect("start a 3-member TLS cluster");
    let eps: Vec<String> = c.iter().map(EtcdProcess::endpoint).collect();
    let mut clients = Vec::new();
    for ep in &eps {
        clients.push(
            tls_client(&certs, std::slice::from_ref(ep))
                .await
                .expect("connect"),
        );
    }
    // The leader, as each member sees it (wait until all agree).
    let deadline = Instant::now() + T;
    let leader = loop {
        let mut seen = Vec::new();
        for cl in &mut clients {
            if let Ok(st) = cl.status().await {
                seen.push((st.leader(), st.header().map(|h| h.member_id())));
            }
        }
        if seen.len() == 3 && seen.iter().all(|(l, _)| *l != 0 && *l == seen[0].0) {
            break seen
                .iter()
                .position(|(_, id)| *id == Some(seen[0].0))
                .expect("the leader is a member");
        }
        assert!(Instant::now() < deadline, "no common leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A follower forwards writes to the leader over peer TLS; linearizable reads on the
    // other follower (read index over peer TLS) see them.
    for i in 0..150 {
        clients[follower]
            .put(format!("/c/k{i:03}"), format!("v{i}"), None)
            .await
            .expect("put through a follower");
    }
    let got = clients[other]
        .get("/c/k149", None)
        .await
        .expect("linearizable get on the other follower");
    assert_eq!(got.kvs()[0].value(), b"v149");
    // etcdctl 3.5 and 3.4 over TLS on every member see all 150 (linearizable reads).
    for ctl in [
        etcdctl35_bin().expect("etcdctl 3.5"),
        etcdctl34_bin().expect("etcdctl 3.4"),
    ] {
        for (m, ep) in c.iter().zip(&eps) {
            let out = etcdctl_ok(
                &ctl,
                m,
                ep,
                &["get", "/c/", "--prefix", "--keys-only", "-w", "json"],
            );
            assert!(out.contains("\"count\":150"), "{}: {out}", m.name());
        }
    }
    // A write through etcdctl on one follower, read on the other.
    let ctl = etcdctl35_bin().expect("etcdctl 3.5");
    etcdctl_ok(&ctl, &c[follower], &eps[follower], &["put", "/c/ctl", "w"]);
    let got = etcdctl_ok(
        &ctl,
        &c[other],
        &eps[other],
        &["get", "/c/ctl", "--print-value-only"],
    );
    assert_eq!(got, "w\n");
    // Peer ports speak TLS only (so forwarding and reads above went over peer TLS).
    for m in &c {
        let peer_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, m.peer_port()));
        assert!(
            match http_get(peer_addr, "/") {
                Err(_) => true,
                // Go's answer to plain HTTP on a TLS port
                Ok((code, body)) => code == 400 && body.contains("HTTPS"),
            },
            "{} answered plain HTTP on its peer port",
            m.name()
        );
        assert!(
            m.log_tail(10_000)
                .lines()
                .any(|l| l.contains("serving peer traffic") && l.contains("\"tls\":true")),
            "{} does not serve peers over TLS:\n{}",
            m.name(),
            m.log_tail(20)
        );
    }
    let list = clients[other].member_list().await.expect("member list");
    assert_eq!(list.members().len(), 3);
    for mem in list.members() {
        assert!(
            mem.peer_urls().iter().all(|u| u.starts_with("https://")),
            "{mem:?}"
        );
        assert!(
            mem.client_urls().iter().all(|u| u.starts_with("https://")),
            "{mem:?}"
        );
    }

    // Membership over peer TLS: a learner with an https:// peer URL joins, catches up by a
    // snapshot streamed over peer TLS (150 entries > snapshot count + catch-up entries),
    // and is promoted.
    let (c4, p4) = (free_port().expect("port"), free_port().expect("port"));
    let peer4 = format!("https://127.0.0.1:{p4}");
    let added = clients[follower]
        .member_add(
            [peer4.clone()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add over TLS");
    let id4 = added.member().expect("added member").id();
    let initial = c
        .iter()
        .map(|m| format!("{}={}", m.name(), m.peer_url()))
        .chain([format!("n4={peer4}")])
        .collect::<Vec<_>>()
        .join(",");
    args.extend(["--initial-cluster-state", "existing"].map(String::from));
    let mut n4 = EtcdProcess::new(&bin, &strs(&args), "n4", c4, p4, initial)
        .expect("n4")
        .with_tls(tls);
    n4.spawn().expect("spawn n4");
    n4.wait_healthy(T).expect("n4 healthy");
    let mut cl4 = tls_client(&certs, &[n4.endpoint()])
        .await
        .expect("connect n4");
    let deadline = Instant::now() + T;
    loop {
        let got = cl4
            .get("/c/k149", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable get on the learner");
        if got.kvs().first().map(|kv| kv.value()) == Some(b"v149".as_slice()) {
            break;
        }
        assert!(Instant::now() < deadline, "n4 never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        n4.log_tail(10_000)
            .contains("installed a snapshot received from the leader"),
        "n4 caught up without a snapshot; log:\n{}",
        n4.log_tail(40)
    );
    let deadline = Instant::now() + T;
    loop {
        match clients[leader].member_promote(id4).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("in sync"), "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("promote: {e:?}"),
        }
    }
    cl4.put("/c/from-n4", "x", None)
        .await
        .expect("put through the promoted member");
    let got = clients[follower]
        .get("/c/from-n4", None)
        .await
        .expect("get");
    assert_eq!(got.kvs()[0].value(), b"x");
    c.push(n4);
}

/// etcd 3.5.1 as a 3-member cluster with client and peer mTLS, through the same harness.
#[test]
fn harness_starts_a_real_etcd_cluster_with_peer_mtls() {
    let certs = Certs::new();
    let mut args = certs.server_flags();
    args.extend(certs.peer_flags());
    let tls = TlsOpts {
        peer: true,
        ..certs.client_tls()
    };
    let c =
        EtcdProcess::start_cluster_tls(&etcd35_bin().expect("etcd 3.5.1"), 3, tls, &strs(&args))
            .expect("start a 3-member etcd TLS cluster");
    let ctl = etcdctl35_bin().expect("etcdctl 3.5");
    etcdctl_ok(&ctl, &c[0], &c[0].endpoint(), &["put", "/e/k", "v"]);
    let got = etcdctl_ok(&ctl, &c[2], &c[2].endpoint(), &["get", "/e/k"]);
    assert_eq!(got, "/e/k\nv\n");
    let list = etcdctl_ok(&ctl, &c[1], &c[1].endpoint(), &["member", "list"]);
    assert_eq!(list.matches("https://").count(), 6, "{list}");
}

#[test]
fn mixed_http_and_https_client_urls_health_and_metrics() {
    let certs = Certs::new();
    let metrics_port = free_port().expect("port");
    let tls_metrics_port = free_port().expect("port");
    let mut args = certs.server_flags();
    args.extend([
        "--listen-metrics-urls".to_string(),
        format!("http://127.0.0.1:{metrics_port},https://127.0.0.1:{tls_metrics_port}"),
    ]);
    let tls = TlsOpts {
        plain_client_too: true,
        ..certs.client_tls()
    };
    let m = EtcdProcess::start_tls(&shale_bin().expect("shale binary"), tls, &strs(&args))
        .expect("start");
    let plain = m.plain_endpoint().expect("a plain client URL");
    let ctl = etcdctl35_bin().expect("etcdctl 3.5");
    etcdctl_ok(&ctl, &m, &m.endpoint(), &["put", "/mix/k", "over-tls"]);
    let out = etcdctl(&ctl, &plain, &[], &["get", "/mix/k", "--print-value-only"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-tls\n");
    let out = etcdctl(&ctl, &plain, &[], &["put", "/mix/k2", "plain"]);
    assert!(out.status.success(), "{out:?}");
    let got = etcdctl_ok(
        &ctl,
        &m,
        &m.endpoint(),
        &["get", "/mix/k2", "--print-value-only"],
    );
    assert_eq!(got, "plain\n");

    let curl = |path: &str| {
        sh(&format!(
            "curl -sS --fail --max-time 10 --cacert {} --cert {} --key {} {}{path}",
            s(&certs.ca),
            s(&certs.client.cert),
            s(&certs.client.key),
            m.endpoint()
        ))
    };
    let (ok, health) = curl("/health");
    assert!(ok && health.contains("\"health\":\"true\""), "{health}");
    let (ok, metrics) = curl("/metrics");
    assert!(
        ok && metrics.contains("etcd_server_has_leader"),
        "{metrics}"
    );
    let (ok, version) = curl("/version");
    assert!(ok && version.contains("etcdserver"), "{version}");
    // curl over HTTP/2 too (ALPN h2 is what gRPC clients negotiate on the same port).
    let (ok, h2) = sh(&format!(
        "curl -sS --fail --http2 -o /dev/null -w '%{{http_version}}' --cacert {} --cert {} --key {} {}/health",
        s(&certs.ca),
        s(&certs.client.cert),
        s(&certs.client.key),
        m.endpoint()
    ));
    assert!(ok && h2 == "2", "curl --http2 over TLS: {h2}");
    // the plain client URL and the metrics URL speak plain HTTP
    let plain_addr: SocketAddr = plain
        .trim_start_matches("http://")
        .parse()
        .expect("plain address");
    let (code, body) = http_get(plain_addr, "/health").expect("GET /health on http://");
    assert_eq!(code, 200, "{body}");
    let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port));
    let (code, body) = http_get(metrics_addr, "/metrics").expect("GET /metrics on the metrics URL");
    assert_eq!(code, 200);
    assert!(body.contains("etcd_server_has_leader"), "{body}");
    let (code, body) = http_get(metrics_addr, "/health").expect("GET /health on the metrics URL");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"health\":\"true\""), "{body}");
    // An https:// metrics URL is served with the client port's TLS (client certificates
    // required), as etcd does.
    let tls_metrics = |client: &str| {
        sh(&format!(
            "curl -sS --fail --max-time 10 --cacert {} {client} https://127.0.0.1:{tls_metrics_port}/metrics",
            s(&certs.ca),
        ))
    };
    let (ok, body) = tls_metrics(&format!(
        "--cert {} --key {}",
        s(&certs.client.cert),
        s(&certs.client.key)
    ));
    assert!(ok && body.contains("etcd_server_has_leader"), "{body}");
    let (ok, body) = tls_metrics("");
    assert!(
        !ok,
        "no client certificate on the https metrics URL: {body}"
    );
}

/// Puts through new connections and through one long-lived connection while the member's
/// certificate files are replaced: first by a new valid pair (new connections get it), then
/// by a mismatched pair (logged; the last good pair stays). No request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load() {
    let certs = Arc::new(Certs::new());
    let live = Pair {
        cert: certs.dir().join("live.crt"),
        key: certs.dir().join("live.key"),
    };
    replace_file(&certs.server.cert, &live.cert);
    replace_file(&certs.server.key, &live.key);
    let m = EtcdProcess::start_tls(
        &shale_bin().expect("shale binary"),
        certs.client_tls(),
        &strs(&certs.server_flags_with(&live)),
    )
    .expect("start");
    let port = m.client_port();
    let (serial1, serial2) = (serial(&certs.server.cert), serial(&certs.server2.cert));
    assert_ne!(serial1, serial2);
    let cert_serial = {
        let certs = certs.clone();
        move || {
            let certs = certs.clone();
            async move {
                tokio::task::spawn_blocking(move || served_serial(&certs, port))
                    .await
                    .expect("s_client task")
            }
        }
    };
    assert_eq!(cert_serial().await, serial1);

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let long_ops = Arc::new(AtomicU64::new(0));
    let new_conn_ops = Arc::new(AtomicU64::new(0));
    let ep = m.endpoint();
    let mut long_lived = tls_client(&certs, std::slice::from_ref(&ep))
        .await
        .expect("long-lived client");
    let long_task = {
        let (stop, errors, ops) = (stop.clone(), errors.clone(), long_ops.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match long_lived.put(format!("/rot/long/{i}"), "v", None).await {
                    Ok(_) => {
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors
                        .lock()
                        .expect("errors")
                        .push(format!("long-lived: {e}")),
                }
                i += 1;
            }
        })
    };
    // Two tasks dialing a new connection (a new TLS handshake) for every put.
    let new_conn_tasks: Vec<_> = (0..2)
        .map(|t| {
            let (stop, errors, ops) = (stop.clone(), errors.clone(), new_conn_ops.clone());
            let (certs, ep) = (certs.clone(), ep.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = async {
                        let mut c = tls_client(&certs, std::slice::from_ref(&ep)).await?;
                        c.put(format!("/rot/new/{t}/{i}"), "v", None).await
                    }
                    .await;
                    match r {
                        Ok(_) => {
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors
                            .lock()
                            .expect("errors")
                            .push(format!("new connection: {e}")),
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let both_progress = |min_long: u64, min_new: u64| {
        let (long_ops, new_conn_ops) = (long_ops.clone(), new_conn_ops.clone());
        async move {
            let deadline = Instant::now() + T;
            while long_ops.load(Ordering::Relaxed) < min_long
                || new_conn_ops.load(Ordering::Relaxed) < min_new
            {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let marks = || {
        (
            long_ops.load(Ordering::Relaxed) + 20,
            new_conn_ops.load(Ordering::Relaxed) + 5,
        )
    };
    both_progress(20, 5).await;

    // 1. A new valid pair (key first, then certificate: in between the pair does not match
    // and the old one stays).
    replace_file(&certs.server2.key, &live.key);
    replace_file(&certs.server2.cert, &live.cert);
    assert_eq!(
        cert_serial().await,
        serial2,
        "the first new connection after the rotation got the old certificate"
    );
    let (a, b) = marks();
    both_progress(a, b).await;

    // 2. A replacement that does not match the key: the last good pair (server2) stays.
    replace_file(&certs.server.cert, &live.cert);
    assert_eq!(cert_serial().await, serial2);
    let deadline = Instant::now() + T;
    while !m.log_tail(10_000).contains("keeping the last good pair") {
        assert!(
            Instant::now() < deadline,
            "no log line about the bad replacement:\n{}",
            m.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, b) = marks();
    both_progress(a, b).await;
    assert_eq!(cert_serial().await, serial2);

    stop.store(true, Ordering::Relaxed);
    long_task.await.expect("long-lived task");
    for t in new_conn_tasks {
        t.await.expect("new-connection task");
    }
    eprintln!(
        "rotation under load: {} puts on one connection, {} puts on new connections",
        long_ops.load(Ordering::Relaxed),
        new_conn_ops.load(Ordering::Relaxed)
    );
    let errors = errors.lock().expect("errors").clone();
    assert!(
        errors.is_empty(),
        "{} failed requests during rotation, e.g. {:?}\n--- server log:\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        m.log_tail(30)
    );
    // etcdctl (a Go client) agrees after all this.
    let ctl = etcdctl35_bin().expect("etcdctl 3.5");
    let n = long_ops.load(Ordering::Relaxed);
    let out = etcdctl_ok(
        &ctl,
        &m,
        &ep,
        &["get", "/rot/long/", "--prefix", "--keys-only", "-w", "json"],
    );
    assert!(out.contains(&format!("\"count\":{n}")), "{n}: {out}");
}

#[test]
fn auto_tls_serves_a_self_signed_certificate() {
    let tls = TlsOpts {
        client: true,
        insecure_skip_verify: true,
        ..TlsOpts::default()
    };
    let m = EtcdProcess::start_tls(&shale_bin().expect("shale binary"), tls, &["--auto-tls"])
        .expect("start with --auto-tls");
    assert!(m.endpoint().starts_with("https://"));
    let ctl = etcdctl35_bin().expect("etcdctl 3.5");
    assert_eq!(
        m.etcdctl_tls_args(),
        ["--insecure-transport=false", "--insecure-skip-tls-verify"]
    );
    etcdctl_ok(&ctl, &m, &m.endpoint(), &["put", "/auto/k", "v"]);
    let got = etcdctl_ok(
        &ctl,
        &m,
        &m.endpoint(),
        &["get", "/auto/k", "--print-value-only"],
    );
    assert_eq!(got, "v\n");
    let (ok, out) = sh(&format!(
        "openssl s_client -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -subject -issuer",
        m.client_port()
    ));
    assert!(ok, "{out}");
    let subject = out.lines().find_map(|l| l.strip_prefix("subject="));
    let issuer = out.lines().find_map(|l| l.strip_prefix("issuer="));
    assert!(
        subject.is_some() && subject == issuer,
        "not self-signed: {out}"
    );
    // Verified against nothing, it is refused.
    let out = etcdctl(&ctl, &m.endpoint(), &[], &["get", "/auto/k"]);
    assert!(
        !out.status.success(),
        "an unverifiable certificate was accepted"
    );
}

/// `openssl s_client -tls1_2|-tls1_3` to `port` with the test client certificate:
/// (handshake completed, output).
fn s_client(certs: &Certs, port: u16, version: &str) -> (bool, String) {
    sh(&format!(
        "openssl s_client -{version} -connect 127.0.0.1:{port} -CAfile {} -cert {} -key {} </dev/null",
        s(&certs.ca),
        s(&certs.client.cert),
        s(&certs.client.key)
    ))
}

#[test]
fn tls_min_and_max_versions() {
    let certs = Certs::new();
    let bin = shale_bin().expect("shale binary");
    let m13 = mtls_member(&bin, &certs, &["--tls-min-version", "TLS1.3"]);
    let (ok, out) = s_client(&certs, m13.client_port(), "tls1_2");
    assert!(!ok, "a TLS 1.2 client was accepted:\n{out}");
    let (ok, out) = s_client(&certs, m13.client_port(), "tls1_3");
    // s_client names the version in "New, TLSv1.3, Cipher is ..." always, and in its
    // "Protocol  :" session line only when the session was printed after a ticket arrived.
    assert!(ok && out.contains("New, TLSv1.3,"), "{out}");
    // A Go gRPC client over TLS 1.3 (ALPN h2), as a current kube-apiserver dials: etcdctl
    // 3.4.23. (etcdctl 3.5.1 cannot: its TLS client stops at TLS 1.2; and etcd 3.5.1 has
    // no --tls-min-version to compare with.)
    etcdctl_ok(
        &etcdctl34_bin().expect("etcdctl 3.4"),
        &m13,
        &m13.endpoint(),
        &["put", "/v13/go", "v"],
    );
    // etcd-client (rustls) speaks TLS 1.3.
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let mut c = tls_client(&certs, &[m13.endpoint()])
            .await
            .expect("connect over TLS 1.3");
        c.put("/v13/k", "v", None).await.expect("put over TLS 1.3");
    });

    let m12 = mtls_member(&bin, &certs, &["--tls-max-version", "TLS1.2"]);
    let (ok, out) = s_client(&certs, m12.client_port(), "tls1_3");
    assert!(!ok, "a TLS 1.3 client was accepted:\n{out}");
    let (ok, out) = s_client(&certs, m12.client_port(), "tls1_2");
    assert!(ok && out.contains("New, TLSv1.2,"), "{out}");
    rt.block_on(async {
        let mut c = tls_client(&certs, &[m12.endpoint()])
            .await
            .expect("connect over TLS 1.2");
        c.put("/v12/k", "v", None).await.expect("put over TLS 1.2");
    });
}
