//! Auth end to end: users, roles and permissions driven by etcdctl 3.5 (exact messages), the
//! same script checked against real etcd 3.5.1; tokens and watch refusals at the gRPC level;
//! auth state surviving a restart.

#[path = "auth_util/mod.rs"]
mod auth_util;

use auth_util::{etcdctl_input, etcdctl_setup_steps};
use futures::StreamExt;
use shale_api::etcdserverpb::auth_client::AuthClient;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{
    watch_request, AuthUserChangePasswordRequest, AuthenticateRequest, RangeRequest,
    WatchCreateRequest, WatchRequest,
};
use shale_testkit::process::{etcd35_bin, shale_bin, EtcdProcess};
use tonic::Request;

/// Runs etcdctl; returns (success, stdout, stderr without client warning logs).
fn ctl(server: &EtcdProcess, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    etcdctl_input(&server.endpoint(), args, stdin)
}

/// etcdctl must succeed and print exactly `want` (plus a newline).
#[track_caller]
fn ok(s: &EtcdProcess, want: &str, args: &[&str]) {
    let (okk, out, err) = ctl(s, args, None);
    assert!(
        okk,
        "etcdctl {args:?} failed: {err}\n--- server log:\n{}",
        s.log_tail(20)
    );
    assert_eq!(out, format!("{want}\n"), "etcdctl {args:?}");
}

/// etcdctl must fail with `Error: <want>` on stderr.
#[track_caller]
fn fails(s: &EtcdProcess, want: &str, args: &[&str]) {
    let (okk, out, err) = ctl(s, args, None);
    assert!(!okk, "etcdctl {args:?} succeeded: {out}");
    assert!(
        err.contains(&format!("Error: {want}\n")),
        "etcdctl {args:?}: want {want:?}, stderr:\n{err}"
    );
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:apw";

/// Steps on which etcd 3.5.1 and Shale (which follows the newest 3.5 release) agree.
fn common_script(s: &EtcdProcess) {
    ok(s, "User root created", &["user", "add", "root:rootpw"]);
    ok(s, "User alice created", &["user", "add", "alice:apw"]);
    ok(s, "Role r created", &["role", "add", "r"]);
    ok(
        s,
        "Role r updated",
        &[
            "role",
            "grant-permission",
            "r",
            "readwrite",
            "/a/",
            "--prefix",
        ],
    );
    ok(
        s,
        "Role r updated",
        &["role", "grant-permission", "r", "read", "/b"],
    );
    ok(
        s,
        "Role r updated",
        &["role", "grant-permission", "r", "write", "/z", "--from-key"],
    );
    ok(
        s,
        "Role r is granted to user alice",
        &["user", "grant-role", "alice", "r"],
    );
    ok(
        s,
        "Authentication Status: false\nAuthRevision: 8",
        &["auth", "status"],
    );
    ok(s, "Authentication Enabled", &["auth", "enable"]);
    ok(
        s,
        "Authentication Status: true\nAuthRevision: 10",
        &[ROOT, "auth", "status"],
    );

    // No user, wrong password, unknown user.
    fails(s, "etcdserver: user name is empty", &["get", "/a/x"]);
    fails(s, "etcdserver: user name is empty", &["auth", "status"]);
    fails(
        s,
        "etcdserver: authentication failed, invalid user ID or password",
        &["--user=alice:wrong", "get", "/a/x"],
    );
    fails(
        s,
        "etcdserver: authentication failed, invalid user ID or password",
        &["--user=bob:x", "get", "/a/x"],
    );

    // Key permissions.
    ok(s, "OK", &[ALICE, "put", "/a/x", "1"]);
    ok(s, "/a/x\n1", &[ALICE, "get", "/a/x"]);
    ok(s, "/a/x\n1", &[ALICE, "get", "/a/", "--prefix"]);
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "get", "/a", "--prefix"],
    );
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "put", "/b", "v"],
    );
    fails(s, "etcdserver: permission denied", &[ALICE, "get", "/c"]);
    ok(s, "OK", &[ALICE, "put", "/zz", "1"]);
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "put", "/zz", "2", "--prev-kv"],
    );
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "get", "/zz", "--from-key"],
    );
    fails(s, "etcdserver: permission denied", &[ALICE, "del", "/b"]);
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "del", "/zz", "--prev-kv"],
    );
    // A txn needs read on its compares and the right access on every op.
    let (okk, out, err) = ctl(
        s,
        &[ALICE, "txn"],
        Some("value(\"/a/x\") = \"1\"\n\nput /a/y 2\n\nput /a/z 3\n\n"),
    );
    assert!(okk, "allowed txn: {err}");
    assert_eq!(out, "SUCCESS\n\nOK\n");
    let (okk, _, err) = ctl(
        s,
        &[ALICE, "txn"],
        Some("value(\"/a/x\") = \"1\"\n\nput /a/y 2\n\nput /b 3\n\n"),
    );
    assert!(
        !okk && err.contains("Error: etcdserver: permission denied"),
        "write to /b in the failure branch: {err}"
    );
    let (okk, _, err) = ctl(
        s,
        &[ALICE, "txn"],
        Some("value(\"/c\") = \"1\"\n\nput /a/y 2\n\n\n"),
    );
    assert!(
        !okk && err.contains("Error: etcdserver: permission denied"),
        "compare on /c: {err}"
    );

    // Admin-only and self-service reads.
    fails(s, "etcdserver: permission denied", &[ALICE, "user", "list"]);
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "user", "get", "root"],
    );
    ok(s, "User: alice\nRoles: r", &[ALICE, "user", "get", "alice"]);
    ok(
        s,
        "Role r\nKV Read:\n\t[/a/, /a0) (prefix /a/)\n\t/b\nKV Write:\n\t[/a/, /a0) (prefix /a/)\n\t[/z, <open ended>",
        &[ALICE, "role", "get", "r"],
    );
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "role", "get", "root"],
    );
    fails(
        s,
        "etcdserver: permission denied",
        &[ALICE, "role", "add", "x"],
    );
    ok(s, "alice\nroot", &[ROOT, "user", "list"]);
    ok(s, "r\nroot", &[ROOT, "role", "list"]);

    // Watch: refused creates are canceled by the server.
    let (okk, _, err) = ctl(s, &[ALICE, "watch", "/c"], None);
    assert!(!okk);
    assert!(
        err.contains("watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission denied)\n"),
        "watch /c: {err}"
    );

    // Management errors.
    fails(
        s,
        "etcdserver: invalid auth management",
        &[ROOT, "user", "delete", "root"],
    );
    fails(
        s,
        "etcdserver: invalid auth management",
        &[ROOT, "role", "delete", "root"],
    );
    fails(
        s,
        "etcdserver: invalid auth management",
        &[ROOT, "user", "revoke-role", "root", "root"],
    );
    fails(
        s,
        "etcdserver: permission is not granted to the role",
        &[ROOT, "role", "revoke-permission", "r", "/c"],
    );
    ok(
        s,
        "Permission of key /b is revoked from role r",
        &[ROOT, "role", "revoke-permission", "r", "/b"],
    );
    fails(s, "etcdserver: permission denied", &[ALICE, "get", "/b"]);
    fails(
        s,
        "etcdserver: role name not found",
        &[ROOT, "user", "grant-role", "alice", "nope"],
    );
    fails(
        s,
        "etcdserver: role is not granted to the user",
        &[ROOT, "user", "revoke-role", "alice", "nope"],
    );
    fails(
        s,
        "etcdserver: user name already exists",
        &[ROOT, "user", "add", "alice:x"],
    );
    fails(
        s,
        "etcdserver: role name already exists",
        &[ROOT, "role", "add", "r"],
    );
    fails(
        s,
        "etcdserver: user name not found",
        &[ROOT, "user", "get", "nobody"],
    );
    fails(
        s,
        "etcdserver: role name not found",
        &[ROOT, "role", "get", "nobody"],
    );

    // Password change: the old password stops working.
    let (okk, out, err) = ctl(
        s,
        &[ROOT, "user", "passwd", "alice", "--interactive=false"],
        Some("newpw\n"),
    );
    assert!(okk, "passwd: {err}");
    assert_eq!(out, "Password updated\n");
    fails(
        s,
        "etcdserver: authentication failed, invalid user ID or password",
        &[ALICE, "get", "/a/x"],
    );
    ok(s, "/a/x\n1", &["--user=alice:newpw", "get", "/a/x"]);
}

#[test]
fn etcdctl_auth_against_shale() {
    let mut s = EtcdProcess::start(&shale_bin().expect("shale binary"), &[]).expect("start shale");
    common_script(&s);

    // Newest-3.5 rules (etcd 3.5.1 was laxer): compaction needs root, lease grant and
    // status need a user, permission ranges must be valid.
    fails(
        &s,
        "etcdserver: permission denied",
        &["--user=alice:newpw", "compaction", "1"],
    );
    fails(
        &s,
        "failed to grant lease (etcdserver: user name is empty)",
        &["lease", "grant", "100"],
    );
    fails(
        &s,
        "etcdserver: invalid auth management",
        &[ROOT, "role", "grant-permission", "r", "read", "/q", "/p"],
    );
    let (okk, out, _) = ctl(&s, &["--user=alice:newpw", "defrag"], None);
    assert!(!okk, "defrag by non-root: {out}");

    // Auth state survives a restart.
    s.restart().expect("restart shale");
    fails(&s, "etcdserver: user name is empty", &["get", "/a/x"]);
    ok(&s, "/a/x\n1", &["--user=alice:newpw", "get", "/a/x"]);
    ok(
        &s,
        "Authentication Status: true\nAuthRevision: 12",
        &[ROOT, "auth", "status"],
    );

    ok(&s, "Authentication Disabled", &[ROOT, "auth", "disable"]);
    ok(&s, "/a/x\n1", &["get", "/a/x"]);
    ok(
        &s,
        "Authentication Status: false\nAuthRevision: 13",
        &["auth", "status"],
    );
}

#[test]
fn etcdctl_auth_script_holds_on_real_etcd35() {
    let s = EtcdProcess::start(&etcd35_bin().expect("etcd 3.5.1"), &[]).expect("start etcd");
    common_script(&s);
}

fn with_token<T>(msg: T, key: &'static str, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(key, token.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_watch_refusals() {
    let s = EtcdProcess::start(&shale_bin().expect("shale binary"), &[]).expect("start shale");
    for args in etcdctl_setup_steps(false) {
        let (okk, _, err) = ctl(&s, args, None);
        assert!(okk, "{args:?}: {err}");
    }
    let ep = s.endpoint();
    let mut auth = AuthClient::connect(ep.clone()).await.expect("connect");
    let mut kv = KvClient::connect(ep.clone()).await.expect("connect");
    let token = auth
        .authenticate(AuthenticateRequest {
            name: "alice".into(),
            password: "apw".into(),
        })
        .await
        .expect("authenticate")
        .into_inner()
        .token;
    let (prefix, index) = token.split_once('.').expect("simple token is PREFIX.INDEX");
    assert_eq!(prefix.len(), 16);
    assert!(
        prefix.chars().all(|c| c.is_ascii_alphabetic()) && index.parse::<u64>().is_ok(),
        "{token}"
    );

    let get = |k: &str| RangeRequest {
        key: k.as_bytes().to_vec().into(),
        ..Default::default()
    };
    kv.range(with_token(get("/a/x"), "token", &token))
        .await
        .expect("read with token");
    kv.range(with_token(get("/a/x"), "authorization", &token))
        .await
        .expect("read with authorization");
    let e = kv
        .range(with_token(get("/b"), "token", &token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied"
        )
    );
    let e = kv.range(Request::new(get("/a/x"))).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: user name is empty"
        )
    );
    let e = kv
        .range(with_token(get("/a/x"), "token", "bogus.1"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::Unauthenticated,
            "etcdserver: invalid auth token"
        )
    );

    // Watch: a refused create is a created+canceled response with watch_id -1.
    let mut w = WatchClient::connect(ep.clone()).await.expect("connect");
    let create = |k: &str| WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: k.as_bytes().to_vec().into(),
                ..Default::default()
            },
        )),
    };
    // Keep the request side open: a finished request stream ends the watch stream.
    let requests =
        futures::stream::iter(vec![create("/b"), create("/a/x")]).chain(futures::stream::pending());
    let mut stream = w
        .watch(with_token(requests, "token", &token))
        .await
        .expect("watch")
        .into_inner();
    let denied = stream.message().await.expect("recv").expect("response");
    assert!(
        denied.created && denied.canceled && denied.watch_id == -1,
        "{denied:?}"
    );
    assert_eq!(
        denied.cancel_reason,
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    let allowed = stream.message().await.expect("recv").expect("response");
    assert!(
        allowed.created && !allowed.canceled && allowed.watch_id >= 0,
        "{allowed:?}"
    );

    // A password change invalidates the user's tokens.
    let root = auth
        .authenticate(AuthenticateRequest {
            name: "root".into(),
            password: "rootpw".into(),
        })
        .await
        .expect("authenticate root")
        .into_inner()
        .token;
    let change = AuthUserChangePasswordRequest {
        name: "alice".into(),
        password: "new".into(),
        ..Default::default()
    };
    let e = auth
        .user_change_password(with_token(change.clone(), "token", &token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied"
        )
    );
    auth.user_change_password(with_token(change, "token", &root))
        .await
        .expect("change password");
    let e = kv
        .range(with_token(get("/a/x"), "token", &token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::Unauthenticated,
            "etcdserver: invalid auth token"
        )
    );
    kv.range(with_token(get("/a/x"), "token", &root))
        .await
        .expect("root token still valid");
}
