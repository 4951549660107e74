//! Helpers of the JWT and certificate-CN auth tests (t36): key pairs and certificates made
//! with the `openssl` command line, the standard users and roles set up over gRPC, small
//! gRPC calls that carry a token, and etcdctl runs. t35 uses its etcdctl runs too.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use shale_api::authpb::{permission, Permission};
use shale_api::etcdserverpb::auth_client::AuthClient;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthenticateRequest, RangeRequest,
};
use shale_testkit::process::{etcdctl35_bin, EtcdProcess};
use tonic::{Request, Status};

/// Runs `openssl` with `args` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key pairs for every sign method, in the encodings operators use: `NAME.key` (private)
/// and `NAME.pub` (SPKI public key).
pub struct KeyFiles {
    pub dir: tempfile::TempDir,
}

/// (sign-method, key pair name) for every method; the RSA pair is PKCS#8, `rsa1` PKCS#1, the
/// P-256 and P-521 keys SEC1 (`EC PRIVATE KEY`), the P-384 key PKCS#8.
pub const METHODS: &[(&str, &str)] = &[
    ("RS256", "rsa"),
    ("RS384", "rsa1"),
    ("RS512", "rsa"),
    ("PS256", "rsa1"),
    ("PS384", "rsa"),
    ("PS512", "rsa"),
    ("ES256", "ec256"),
    ("ES384", "ec384"),
    ("ES512", "ec521"),
    ("EdDSA", "ed"),
    ("HS256", "hmac"),
];

impl KeyFiles {
    pub fn new() -> KeyFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let rsa_pkcs8 = |name: &str| {
            let out = format!("{name}.key");
            openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &out,
                ],
            );
        };
        rsa_pkcs8("rsa");
        openssl(d, &["genrsa", "-traditional", "-out", "rsa1.key", "2048"]);
        rsa_pkcs8("other");
        openssl(
            d,
            &[
                "ecparam",
                "-genkey",
                "-noout",
                "-name",
                "prime256v1",
                "-out",
                "ec256.key",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "ec384.key",
            ],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-genkey",
                "-noout",
                "-name",
                "secp521r1",
                "-out",
                "ec521.key",
            ],
        );
        openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.key"]);
        for k in ["rsa", "rsa1", "other", "ec256", "ec384", "ec521", "ed"] {
            openssl(
                d,
                &[
                    "pkey",
                    "-in",
                    &format!("{k}.key"),
                    "-pubout",
                    "-out",
                    &format!("{k}.pub"),
                ],
            );
        }
        std::fs::write(d.join("hmac.key"), b"a shared secret for HS256").expect("write");
        std::fs::write(d.join("junk.pem"), b"this is not a key\n").expect("write");
        KeyFiles { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `--auth-token` for `method` with the pair `pair` (HMAC: the secret only) and `ttl`.
    pub fn flag(&self, method: &str, pair: &str, ttl: &str) -> String {
        let private = self.path(&format!("{pair}.key"));
        let mut f = format!(
            "jwt,priv-key={},sign-method={method},ttl={ttl}",
            private.display()
        );
        if pair != "hmac" {
            f.push_str(&format!(
                ",pub-key={}",
                self.path(&format!("{pair}.pub")).display()
            ));
        }
        f
    }
}

/// A test CA with certificates for the server (`127.0.0.1`, `localhost`) and for clients
/// with chosen Common Names: `ca.crt`, `server.{crt,key}`, `<cn>.{crt,key}`.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(client_cns: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec![
            "req",
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=t36-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ];
        args.extend(ec);
        openssl(d, &args);
        let sign = |name: &str, subj: &str, ext: &str| {
            let mut args = vec!["req", "-subj", subj, "-keyout", "k.tmp", "-out", "csr.tmp"];
            args.extend(ec);
            openssl(d, &args);
            std::fs::rename(d.join("k.tmp"), d.join(format!("{name}.key"))).expect("rename");
            std::fs::write(d.join("ext.tmp"), ext).expect("write");
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "csr.tmp",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-extfile",
                    "ext.tmp",
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        };
        sign(
            "server",
            "/CN=t36-server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        for cn in client_cns {
            sign(cn, &format!("/CN={cn}"), "extendedKeyUsage=clientAuth\n");
        }
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The server flags of a member with client certificate auth.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            format!("--cert-file={}", self.path("server.crt")),
            format!("--key-file={}", self.path("server.key")),
            format!("--trusted-ca-file={}", self.path("ca.crt")),
            "--client-cert-auth".to_string(),
        ]
    }

    /// etcdctl's flags to present the certificate of `cn`.
    pub fn etcdctl_flags(&self, cn: &str) -> Vec<String> {
        vec![
            format!("--cacert={}", self.path("ca.crt")),
            format!("--cert={}", self.path(&format!("{cn}.crt"))),
            format!("--key={}", self.path(&format!("{cn}.key"))),
        ]
    }
}

/// Runs etcdctl 3.5 against `ep`: (success, stdout, stderr without client warning logs).
pub fn etcdctl(ep: &str, args: &[String]) -> (bool, String, String) {
    etcdctl_input(ep, args, None)
}

/// [`etcdctl`] with `stdin` (if any) written to its standard input.
pub fn etcdctl_input<A: AsRef<OsStr>>(
    ep: &str,
    args: &[A],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new(etcdctl35_bin().expect("etcdctl 3.5"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=15s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    if let Some(s) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("etcdctl stdin");
        pipe.write_all(s.as_bytes()).expect("write etcdctl stdin");
    }
    let out = child.wait_with_output().expect("etcdctl");
    let err: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("\"level\":\"warn\""))
        .map(|l| format!("{l}\n"))
        .collect();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

/// The etcdctl steps that set up the users and roles of [`setup_users`] (with `root` given
/// the role `root` first when `grant_root` is set), then enable auth.
pub fn etcdctl_setup_steps(grant_root: bool) -> Vec<&'static [&'static str]> {
    let mut steps: Vec<&[&str]> = vec![&["user", "add", "root:rootpw"]];
    if grant_root {
        steps.push(&["user", "grant-role", "root", "root"]);
    }
    steps.extend([
        &["user", "add", "alice:apw"][..],
        &["role", "add", "r"],
        &[
            "role",
            "grant-permission",
            "r",
            "readwrite",
            "/a/",
            "--prefix",
        ],
        &["user", "grant-role", "alice", "r"],
        &["auth", "enable"],
    ]);
    steps
}

pub fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("token", token.parse().expect("ascii token"));
    r
}

/// The users and roles of these tests, then auth enabled: `root` (password `rootpw`) and
/// `alice` (`apw`) with role `r`: readwrite on the prefix `/a/`. Any client may do this
/// while auth is off. Leaves the auth revision at 7 (as on etcd).
pub async fn setup_users(ep: &str) -> anyhow::Result<()> {
    let mut a = AuthClient::connect(ep.to_string()).await?;
    for (name, password) in [("root", "rootpw"), ("alice", "apw")] {
        a.user_add(AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            ..Default::default()
        })
        .await?;
    }
    a.role_add(AuthRoleAddRequest { name: "r".into() }).await?;
    a.role_grant_permission(AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: Some(Permission {
            perm_type: permission::Type::Readwrite as i32,
            key: "/a/".into(),
            range_end: "/a0".into(),
        }),
    })
    .await?;
    for (user, role) in [("root", "root"), ("alice", "r")] {
        a.user_grant_role(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await?;
    }
    a.auth_enable(AuthEnableRequest {}).await?;
    Ok(())
}

pub async fn authenticate(ep: &str, name: &str, password: &str) -> Result<String, Status> {
    let mut a = AuthClient::connect(ep.to_string())
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(a.authenticate(AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    })
    .await?
    .into_inner()
    .token)
}

/// A Range of `key` carrying `token`; the number of keys found.
pub async fn get(ep: &str, token: &str, key: &str) -> Result<usize, Status> {
    let mut kv = KvClient::connect(ep.to_string())
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let r = kv
        .range(with_token(
            RangeRequest {
                key: key.to_string().into(),
                ..Default::default()
            },
            token,
        ))
        .await?;
    Ok(r.into_inner().kvs.len())
}

/// UserList (admin only) carrying `token`.
pub async fn user_list(ep: &str, token: &str) -> Result<Vec<String>, Status> {
    let mut a = AuthClient::connect(ep.to_string())
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(a.user_list(with_token(AuthUserListRequest {}, token))
        .await?
        .into_inner()
        .users)
}

/// A token's (header, claims) as JSON, decoded without checking anything.
pub fn token_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let json = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("json")
    };
    (json(parts[0]), json(parts[1]))
}

/// (code, message) of a failed call.
pub fn code_msg<T: std::fmt::Debug>(r: Result<T, Status>) -> (tonic::Code, String) {
    let e = r.expect_err("the call should fail");
    (e.code(), e.message().to_string())
}

pub fn invalid_token() -> (tonic::Code, String) {
    (
        tonic::Code::Unauthenticated,
        "etcdserver: invalid auth token".to_string(),
    )
}

/// The process started with `args` exits by itself (a bad flag): its exit code and log.
pub fn exit_of(bin: &Path, args: &[&str]) -> (Option<i32>, String) {
    let ports = (
        shale_testkit::process::free_port().expect("port"),
        shale_testkit::process::free_port().expect("port"),
    );
    let cluster = format!("n1=http://127.0.0.1:{}", ports.1);
    let mut p = EtcdProcess::new(bin, args, "n1", ports.0, ports.1, cluster).expect("process");
    p.spawn().expect("spawn");
    let status = p
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("the process should stop by itself");
    (status.code(), p.log_tail(30))
}
