//! Server behaviour behind flags and limits: watch progress notifications and fragments,
//! auto-compaction, the NOSPACE quota alarm, request size and txn limits, HTTP endpoints,
//! `shale healthcheck` over TLS, and refusing bad command lines. Every wait is on a
//! condition, with a deadline.

mod tls_util;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::maintenance_client::MaintenanceClient;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{
    alarm_request::AlarmAction, request_op, watch_request::RequestUnion, AlarmRequest, AlarmType,
    HashKvRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use shale_testkit::process::{http_get, shale_bin, EtcdProcess};
use tonic::Code;

fn start(args: &[&str]) -> EtcdProcess {
    EtcdProcess::start(&shale_bin().expect("shale binary"), args).expect("start shale")
}

fn addr(p: &EtcdProcess) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p.client_port()))
}

async fn put(
    kv: &mut KvClient<tonic::transport::Channel>,
    k: &str,
    v: Vec<u8>,
) -> Result<i64, tonic::Status> {
    kv.put(PutRequest {
        key: k.to_string().into(),
        value: v.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().header.map_or(0, |h| h.revision))
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("watch response in time")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_requests_and_fragments() {
    let p = start(&[
        "--experimental-watch-progress-notify-interval",
        "200ms",
        "--max-request-bytes",
        "4096",
    ]);
    let mut kv = KvClient::connect(p.endpoint()).await.expect("connect");
    let mut w = WatchClient::connect(p.endpoint()).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<WatchRequest>();
    let mut stream = w
        .watch(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let create = |key: &str, progress: bool, fragment: bool, id: i64| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_string().into(),
            range_end: format!("{}0", key.trim_end_matches('/')).into(),
            progress_notify: progress,
            fragment,
            watch_id: id,
            ..Default::default()
        })),
    };
    tx.send(create("/p/", true, false, 7)).expect("send");
    let created = next(&mut stream).await;
    assert!(created.created && created.watch_id == 7);
    // Periodic progress notification: empty events, the watcher's id, current revision.
    let rev = put(&mut kv, "/other", b"x".to_vec()).await.expect("put");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = next(&mut stream).await;
        if r.events.is_empty()
            && r.watch_id == 7
            && r.header.as_ref().map_or(0, |h| h.revision) >= rev
        {
            break;
        }
        assert!(Instant::now() < deadline, "no progress notification");
    }
    // Progress request: answered with watch_id -1.
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    })
    .expect("send");
    loop {
        let r = next(&mut stream).await;
        if r.watch_id == -1 {
            assert!(r.header.expect("header").revision >= rev);
            break;
        }
    }
    // Fragments: four 3 KiB puts replayed from history arrive as one 12 KiB response, which a
    // 4 KiB request limit must split.
    let mut first = 0;
    for i in 0..4 {
        let r = put(&mut kv, &format!("/f/{i}"), vec![b'v'; 3000])
            .await
            .expect("put");
        if i == 0 {
            first = r;
        }
    }
    let mut req = create("/f/", false, true, 8);
    if let Some(RequestUnion::CreateRequest(c)) = req.request_union.as_mut() {
        c.start_revision = first;
    }
    tx.send(req).expect("send");
    let mut events = 0;
    let mut fragments = 0;
    while events < 4 {
        let r = next(&mut stream).await;
        if r.watch_id != 8 || r.events.is_empty() {
            continue;
        }
        events += r.events.len();
        if r.fragment {
            fragments += 1;
        }
    }
    assert_eq!(events, 4);
    assert!(
        fragments >= 1,
        "a 12 KiB revision with a 4 KiB limit must arrive in fragments"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_runs() {
    let p = start(&[
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        "1s",
    ]);
    let mut kv = KvClient::connect(p.endpoint()).await.expect("connect");
    let mut m = MaintenanceClient::connect(p.endpoint())
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        put(&mut kv, "/ac", b"x".to_vec()).await.expect("put");
        let h = m
            .hash_kv(HashKvRequest { revision: 0 })
            .await
            .expect("hashkv")
            .into_inner();
        if h.compact_revision > 1 {
            break;
        }
        assert!(Instant::now() < deadline, "auto-compaction never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_auto_compaction_flag_is_accepted_and_validated() {
    let p = start(&[
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "1000",
    ]);
    let mut kv = KvClient::connect(p.endpoint()).await.expect("connect");
    put(&mut kv, "/x", b"y".to_vec()).await.expect("put");
    let out = Command::new(shale_bin().expect("bin"))
        .args([
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1h",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auto-compaction-retention"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_and_refuses_writes() {
    let p = start(&["--quota-backend-bytes", "2000000"]);
    let mut kv = KvClient::connect(p.endpoint()).await.expect("connect");
    let mut m = MaintenanceClient::connect(p.endpoint())
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    let err = loop {
        match put(&mut kv, "/big", vec![b'x'; 100_000]).await {
            Ok(_) => {}
            Err(e) => break e,
        }
        assert!(Instant::now() < deadline, "quota never reached");
    };
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
    let alarms = m
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .expect("alarm list")
        .into_inner();
    assert_eq!(alarms.alarms.len(), 1);
    assert_eq!(alarms.alarms[0].alarm, AlarmType::Nospace as i32);
    // Reads still work; deletes are allowed.
    kv.range(RangeRequest {
        key: "/big".into(),
        ..Default::default()
    })
    .await
    .expect("range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_txn_limits() {
    let p = start(&["--max-request-bytes", "10000", "--max-txn-ops", "4"]);
    let mut kv = KvClient::connect(p.endpoint()).await.expect("connect");
    let e = put(&mut kv, "/k", vec![0; 20_000])
        .await
        .expect_err("too large");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    put(&mut kv, "/k", vec![0; 5_000]).await.expect("fits");
    let ops: Vec<RequestOp> = (0..5)
        .map(|i| RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: format!("/k{i}").into(),
                ..Default::default()
            })),
        })
        .collect();
    let e = kv
        .txn(TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .expect_err("too many ops");
    assert_eq!(
        e.message(),
        "etcdserver: too many operations in txn request"
    );
    // hasleader metadata on a healthy member is served normally.
    let mut req = tonic::Request::new(RangeRequest {
        key: "/k".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("hasleader", "true".parse().expect("metadata"));
    assert_eq!(
        kv.range(req).await.expect("range").into_inner().kvs.len(),
        1
    );
}

#[test]
fn http_endpoints() {
    let p = start(&[]);
    let a = addr(&p);
    let (code, body) = http_get(a, "/health").expect("health");
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"health":"true","reason":""}"#)
    );
    assert_eq!(http_get(a, "/livez").expect("livez").0, 200);
    assert_eq!(http_get(a, "/readyz").expect("readyz").0, 200);
    let (code, body) = http_get(a, "/version").expect("version");
    assert_eq!(code, 200);
    assert!(
        body.contains(r#""etcdserver":"3.5.17""#) && body.contains(r#""shale":"#),
        "{body}"
    );
    let (code, body) = http_get(a, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    for m in [
        "etcd_server_has_leader 1",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_debugging_mvcc_current_revision",
    ] {
        assert!(body.contains(m), "missing {m}");
    }
}

#[test]
fn bad_command_lines_fail_with_one_clear_line() {
    let bin = shale_bin().expect("bin");
    let run = |args: &[&str]| Command::new(&bin).args(args).output().expect("run");
    let o = run(&["--name", "n1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(r#"couldn't find local name "n1""#));
    let o = run(&["--listen-client-urls", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no scheme"));
    let o = run(&[
        "--data-dir",
        "/proc/shale-cannot-write-here",
        "--listen-client-urls",
        "http://127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("data dir"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `shale healthcheck` against a member with client mTLS: etcdctl's flags and `ETCDCTL_*`
/// variables pass; no client certificate, a CA that did not sign the member, or `http://`
/// to the TLS port fail with exit code 1 and a reason.
#[test]
fn healthcheck_over_tls() {
    let certs = tls_util::Certs::new();
    let flags = certs.server_flags();
    let bin = shale_bin().expect("shale binary");
    let m = EtcdProcess::start_tls(&bin, certs.client_tls(), &tls_util::strs(&flags))
        .expect("start a member with client mTLS");
    let url = m.endpoint();
    assert!(url.starts_with("https://"), "{url}");
    let run = |args: &[&str], env: &[(&str, &str)]| -> (Option<i32>, String) {
        let out = Command::new(&bin)
            .arg("healthcheck")
            .args(args)
            .env_remove("ETCDCTL_CACERT")
            .env_remove("ETCDCTL_CERT")
            .env_remove("ETCDCTL_KEY")
            .env_remove("ETCDCTL_INSECURE_SKIP_TLS_VERIFY")
            .envs(env.iter().copied())
            .output()
            .expect("run shale healthcheck");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ca = tls_util::s(&certs.ca);
    let (cert, key) = (
        tls_util::s(&certs.client.cert),
        tls_util::s(&certs.client.key),
    );
    let ok = run(
        &[&url, "--cacert", &ca, "--cert", &cert, "--key", &key],
        &[],
    );
    assert_eq!(ok.0, Some(0), "{}", ok.1);
    let vars = [
        ("ETCDCTL_CACERT", ca.as_str()),
        ("ETCDCTL_CERT", cert.as_str()),
        ("ETCDCTL_KEY", key.as_str()),
    ];
    let ok = run(&[&format!("{url}/readyz")], &vars);
    assert_eq!(ok.0, Some(0), "{}", ok.1);

    let (code, err) = run(&[&url, &format!("--cacert={ca}")], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("CertificateRequired"), "{err}");
    let other = tls_util::s(&certs.other_ca);
    let (code, err) = run(
        &[&url, "--cacert", &other, "--cert", &cert, "--key", &key],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let (code, err) = run(&[&url.replacen("https://", "http://", 1)], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("use https://"), "{err}");
}
