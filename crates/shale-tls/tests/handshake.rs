//! Real handshakes over loopback between rustls clients and [`shale_tls::incoming`]:
//! client-certificate checks, the CN a request sees, allowed peer CNs, and rotation of the
//! server's certificate files (a good replacement is used by the next connection, a bad
//! one is ignored and the last good pair stays).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use shale_tls::{ClientTlsConfig, ReloadingKeyPair, ServerTlsConfig, TlsConnector};
use tokio::net::TcpListener;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca"))
    }

    /// Writes `name.crt`/`name.key` signed by this CA, with `cn` and SANs localhost/127.0.0.1.
    fn issue(&self, dir: &Path, name: &str, cn: &str) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.0).expect("sign");
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }

    fn write(&self, dir: &Path) {
        std::fs::write(dir.join("ca.crt"), self.0.pem()).expect("write ca");
    }
}

/// Serves `cfg` on a loopback port; each accepted connection reports the client's CN.
async fn serve(
    cfg: Arc<shale_tls::rustls::ServerConfig>,
) -> (u16, tokio::sync::mpsc::Receiver<Option<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut inc = Box::pin(shale_tls::incoming(l, Some(cfg)));
        while let Some(Ok(conn)) = inc.next().await {
            let cn = conn.info().common_name.as_deref().map(str::to_string);
            let _ = tx.send(cn).await;
            // Echo what the client sends until it is done.
            tokio::spawn(async move {
                let mut conn = conn;
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await {
                    if tokio::io::AsyncWriteExt::write_all(&mut conn, &buf[..n])
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    (port, rx)
}

fn client(dir: &Path, ca: &str, pair: Option<&str>) -> TlsConnector {
    let key_pair = pair.map(|n| {
        ReloadingKeyPair::load(
            "--cert",
            &dir.join(format!("{n}.crt")),
            "--key",
            &dir.join(format!("{n}.key")),
        )
        .expect("client pair")
    });
    let cfg = ClientTlsConfig {
        trusted_ca: Some(("--cacert".into(), dir.join(ca))),
        key_pair,
        ..Default::default()
    }
    .build()
    .expect("client config");
    TlsConnector::new(cfg, Duration::from_secs(5))
}

/// The serial number of the certificate the server presented on a new connection.
async fn served_cert(c: &TlsConnector, port: u16) -> std::io::Result<Vec<u8>> {
    let s = c.connect("127.0.0.1", port).await?;
    // A TLS 1.3 server may only notice a bad client certificate after the handshake: read.
    let certs = s
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certs")
        .to_vec();
    Ok(certs[0].to_vec())
}

fn server_cfg(dir: &Path, auth: bool, cns: &[&str]) -> ServerTlsConfig {
    ServerTlsConfig {
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        trusted_ca_file: Some(dir.join("ca.crt")),
        client_cert_auth: auth,
        allowed_cns: cns.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Whether a connection with `c` is accepted (the server reports it) within a short time.
async fn accepted(
    c: &TlsConnector,
    port: u16,
    rx: &mut tokio::sync::mpsc::Receiver<Option<String>>,
) -> Option<Option<String>> {
    let conn = c.connect("127.0.0.1", port).await.ok();
    let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten();
    drop(conn);
    got
}

#[tokio::test]
async fn client_certificates_are_checked_and_their_cn_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ca = Ca::new("ca");
    ca.write(d);
    ca.issue(d, "server", "server");
    ca.issue(d, "alice", "alice");
    let other = Ca::new("other");
    other.issue(d, "mallory", "alice");
    let (port, mut rx) = serve(server_cfg(d, true, &[]).build().expect("server")).await;

    assert_eq!(
        accepted(&client(d, "ca.crt", Some("alice")), port, &mut rx).await,
        Some(Some("alice".into()))
    );
    assert_eq!(
        accepted(&client(d, "ca.crt", None), port, &mut rx).await,
        None,
        "no client certificate"
    );
    assert_eq!(
        accepted(&client(d, "ca.crt", Some("mallory")), port, &mut rx).await,
        None,
        "another CA"
    );
    // The listener still serves good clients after the refusals.
    assert_eq!(
        accepted(&client(d, "ca.crt", Some("alice")), port, &mut rx).await,
        Some(Some("alice".into()))
    );
}

#[tokio::test]
async fn allowed_cn_refuses_other_peers() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ca = Ca::new("ca");
    ca.write(d);
    ca.issue(d, "server", "server");
    ca.issue(d, "n1", "member-1");
    ca.issue(d, "intruder", "intruder");
    let (port, mut rx) = serve(
        server_cfg(d, true, &["member-1", "member-2"])
            .build()
            .expect("server"),
    )
    .await;
    assert_eq!(
        accepted(&client(d, "ca.crt", Some("n1")), port, &mut rx).await,
        Some(Some("member-1".into()))
    );
    assert_eq!(
        accepted(&client(d, "ca.crt", Some("intruder")), port, &mut rx).await,
        None
    );
}

#[tokio::test]
async fn replaced_files_are_used_by_new_connections_and_bad_ones_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ca = Ca::new("ca");
    ca.write(d);
    ca.issue(d, "server", "server");
    let (port, _rx) = serve(server_cfg(d, false, &[]).build().expect("server")).await;
    let c = client(d, "ca.crt", None);
    let first = served_cert(&c, port).await.expect("first");
    let mut kept_open = c.connect("127.0.0.1", port).await.expect("long-lived");

    // A good replacement (written elsewhere, renamed in place).
    ca.issue(d, "next", "server");
    std::fs::rename(d.join("next.key"), d.join("server.key")).expect("mv key");
    std::fs::rename(d.join("next.crt"), d.join("server.crt")).expect("mv crt");
    let second = served_cert(&c, port).await.expect("second");
    assert_ne!(
        first, second,
        "a new connection gets the replaced certificate"
    );

    // A certificate whose key is not the key on disk: keep the last good pair.
    ca.issue(d, "third", "server");
    std::fs::rename(d.join("third.crt"), d.join("server.crt")).expect("mv crt");
    assert_eq!(served_cert(&c, port).await.expect("third"), second);
    // Half-written file: still the last good pair.
    std::fs::write(d.join("server.crt"), "-----BEGIN CERTIFICATE-----\nMIIB").expect("truncate");
    assert_eq!(served_cert(&c, port).await.expect("fourth"), second);
    // The connection opened before the rotation still carries data both ways.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    kept_open
        .write_all(b"ping")
        .await
        .expect("write on the old connection");
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), kept_open.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("read on the old connection");
    assert_eq!(&back, b"ping");
}

#[test]
fn startup_errors_name_the_flag_and_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let ca = Ca::new("ca");
    ca.write(d);
    ca.issue(d, "server", "server");
    ca.issue(d, "other", "other");
    let mut cfg = server_cfg(d, true, &[]);
    cfg.key_file = d.join("other.key");
    let e = cfg.build().unwrap_err().to_string();
    assert!(
        e.contains("--cert-file") && e.contains("does not match") && e.contains("other.key"),
        "{e}"
    );
    let mut cfg = server_cfg(d, true, &[]);
    cfg.trusted_ca_file = Some(d.join("missing.crt"));
    let e = cfg.build().unwrap_err().to_string();
    assert!(
        e.contains("--trusted-ca-file") && e.contains("missing.crt"),
        "{e}"
    );
    std::fs::write(d.join("junk.crt"), "not pem").expect("write");
    let mut cfg = server_cfg(d, false, &[]);
    cfg.cert_file = d.join("junk.crt");
    let e = cfg.build().unwrap_err().to_string();
    assert!(
        e.contains("--cert-file") && e.contains("junk.crt") && e.contains("PEM"),
        "{e}"
    );
    let mut cfg = server_cfg(d, true, &[]);
    cfg.trusted_ca_file = None;
    assert!(cfg
        .build()
        .unwrap_err()
        .to_string()
        .contains("--client-cert-auth requires --trusted-ca-file"));
}
