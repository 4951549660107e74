//! Certificates for `compare --tls`: one CA and the server, peer and client pairs both
//! systems are started with, made by the `openssl` command line in a temp dir.
//!
//! Keys are RSA 2048 and certificates carry the key usages and names kubeadm gives etcd's:
//! the server and peer certificates are for `127.0.0.1`, `::1` and `localhost` with
//! serverAuth + clientAuth (a member dials its peers with its peer certificate), the client
//! certificate has clientAuth only. Go's TLS (etcd) ignores the CN for host checks, so the
//! names are subjectAltNames.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use shale_testkit::process::TlsOpts;
use shale_tls::ClientTlsFiles;

/// The files of one `--tls` comparison; removed with the temp dir when dropped.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

const SERVER_EXT: &str = "basicConstraints=critical,CA:FALSE\n\
    keyUsage=critical,digitalSignature,keyEncipherment\n\
    extendedKeyUsage=serverAuth,clientAuth\n\
    subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n";
const CLIENT_EXT: &str = "basicConstraints=critical,CA:FALSE\n\
    keyUsage=critical,digitalSignature,keyEncipherment\n\
    extendedKeyUsage=clientAuth\n";

impl TestCerts {
    /// Make the CA (`ca.crt`) and the pairs `server`, `peer` and `client` (`NAME.crt`,
    /// `NAME.key`), valid for two days.
    pub fn make() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shale-bench-tls-")
            .tempdir()
            .context("creating a temp dir for the certificates")?;
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=shale-bench-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            ],
        )?;
        std::fs::write(d.join("server.ext"), SERVER_EXT)?;
        std::fs::write(d.join("client.ext"), CLIENT_EXT)?;
        for (i, (name, ext)) in [
            ("server", "server"),
            ("peer", "server"),
            ("client", "client"),
        ]
        .into_iter()
        .enumerate()
        {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN=shale-bench-{name}"),
                ],
            )?;
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    &(1000 + i).to_string(),
                    "-days",
                    "2",
                    "-sha256",
                    "-extfile",
                    &format!("{ext}.ext"),
                    "-out",
                    &crt,
                ],
            )?;
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.file("ca.crt")
    }

    /// The server flags both systems get: client and peer mTLS, etcd's names.
    pub fn server_flags(&self) -> Vec<String> {
        let f = |n: &str| self.file(n).display().to_string();
        vec![
            format!("--cert-file={}", f("server.crt")),
            format!("--key-file={}", f("server.key")),
            format!("--trusted-ca-file={}", f("ca.crt")),
            "--client-cert-auth".into(),
            format!("--peer-cert-file={}", f("peer.crt")),
            format!("--peer-key-file={}", f("peer.key")),
            format!("--peer-trusted-ca-file={}", f("ca.crt")),
            "--peer-client-cert-auth".into(),
        ]
    }

    /// What the load generator presents (etcdctl's `--cacert`, `--cert`, `--key`).
    pub fn client_files(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca: Some(self.ca()),
            cert: Some(self.file("client.crt")),
            key: Some(self.file("client.key")),
            insecure_skip_verify: false,
        }
    }

    /// The testkit's options: `https://` client and peer URLs, health probed with the
    /// client pair.
    pub fn testkit_opts(&self) -> TlsOpts {
        TlsOpts::client_and_peer_mtls(self.ca(), self.file("client.crt"), self.file("client.key"))
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running `openssl` (needed by --tls to make the test certificates)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_load_as_a_client_config() {
        let c = TestCerts::make().unwrap();
        for f in ["ca.crt", "server.key", "peer.crt", "client.key"] {
            assert!(c.dir().join(f).is_file(), "{f}");
        }
        shale_tls::client_config(&c.client_files()).unwrap();
        assert!(c.server_flags().iter().any(|f| f == "--client-cert-auth"));
    }
}
