//! Certificates for the TLS tests (t85, t86), made with the `openssl` command line (OpenSSL
//! 3.0 or later; every key is EC P-256).
//!
//! [`Certs::new`] makes, in a temp dir that lives as long as the value:
//! - `ca` — the test CA (`CN=shale-test-ca`), which signs everything below unless noted;
//! - `server` — `CN=shale-server`, SANs `localhost` and `127.0.0.1`, EKU serverAuth +
//!   clientAuth: a member's client *and* peer certificate (etcd's peer certificates are used
//!   both ways);
//! - `server2` — the same names, another key and serial: the rotation target;
//! - `peer` — `CN=shale-peer`, same SANs and EKUs (a second peer identity);
//! - `client` — `CN=root`, EKU clientAuth (etcdctl / etcd-client's identity);
//! - `expired_client` — `CN=root`, valid only in January 2020;
//! - `expired_server` — like `server`, valid only in January 2020;
//! - `revoked_client` — `CN=root`, revoked in `crl` (a CRL of the test CA);
//! - `other_ca` with `other_client` (`CN=root`) and `other_server` (server SANs): a second,
//!   untrusted CA and certificates it signed.
//!
//! More certificates: [`Certs::issue_client`] (a chosen CN) and [`Certs::issue`] (chosen CN,
//! SANs, EKUs, validity). Flags: [`Certs::server_flags`], [`Certs::peer_flags`]; the
//! testkit's client side: [`Certs::client_tls`].
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use shale_testkit::process::TlsOpts;

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test PKI (see the module docs). Paths are absolute; the files are PEM.
pub struct Certs {
    dir: tempfile::TempDir,
    /// `openssl ca` keeps a serial file and an index: one signing at a time.
    lock: Mutex<()>,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub server: Pair,
    pub server2: Pair,
    pub peer: Pair,
    pub client: Pair,
    pub expired_client: Pair,
    pub expired_server: Pair,
    pub revoked_client: Pair,
    /// CRL of the test CA revoking `revoked_client`.
    pub crl: PathBuf,
    pub other_ca: PathBuf,
    pub other_client: Pair,
    pub other_server: Pair,
}

/// `openssl ca` configuration: one section per kind of certificate; `SANS` comes from the
/// environment.
const CA_CONFIG: &str = r#"
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = .
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
policy = policy_any
unique_subject = no
default_crl_days = 3650
[ policy_any ]
commonName = supplied
[ server_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $ENV::SANS
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"#;

/// The default SANs of server and peer certificates.
pub const LOOPBACK_SANS: &str = "DNS:localhost,IP:127.0.0.1";

/// Kinds of certificate [`Certs::issue`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// EKU serverAuth + clientAuth, with SANs.
    Server,
    /// EKU clientAuth, no SANs.
    Client,
}

fn run(dir: &Path, script: &str, env: &[(&str, &str)]) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run bash (openssl)");
    assert!(
        out.status.success(),
        "openssl script failed:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Shell snippet: a new P-256 key `$1.key` and CSR `$1.csr` with `CN=$2`.
const NEW_KEY: &str = r#"newkey() { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null; }
"#;

impl Certs {
    /// Makes the whole set (about 20 openssl runs, well under a second).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shale-tls-certs-")
            .tempdir()
            .expect("temp dir for certificates");
        let d = dir.path();
        std::fs::write(d.join("ca.cnf"), CA_CONFIG).expect("write ca.cnf");
        // `openssl ca` signs with -startdate/-enddate, which also makes the expired ones.
        let script = format!(
            r#"{NEW_KEY}
mkdir -p newcerts other/newcerts
for c in . other; do : > $c/index.txt; echo 1000 > $c/serial; echo 1000 > $c/crlnumber; done
cp ca.cnf other/ca.cnf
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=shale-test-ca 2>/dev/null
(cd other && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=shale-other-ca 2>/dev/null)
sign() {{ # dir name cn ext [startdate enddate]
  local d=$1 n=$2 cn=$3 ext=$4
  local dates="-days 3650"
  if [ $# -ge 6 ]; then dates="-startdate $5 -enddate $6"; fi
  newkey "$n" "$cn"
  (cd "$d" && openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key $dates -extensions "$ext" -in "$OLDPWD/$n.csr" -out "$OLDPWD/$n.crt" 2>/dev/null)
  rm "$n.csr"
}}
sign . server shale-server server_ext
sign . server2 shale-server server_ext
sign . peer shale-peer server_ext
sign . client root client_ext
sign . expired_client root client_ext 20200101000000Z 20200201000000Z
sign . expired_server shale-server server_ext 20200101000000Z 20200201000000Z
sign . revoked_client root client_ext
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -revoke revoked_client.crt 2>/dev/null
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -gencrl -out crl.pem 2>/dev/null
sign other other_client root client_ext
sign other other_server shale-server server_ext
cp other/ca.crt other_ca.crt
"#
        );
        run(d, &script, &[("SANS", LOOPBACK_SANS)]);
        let pair = |n: &str| Pair {
            cert: d.join(format!("{n}.crt")),
            key: d.join(format!("{n}.key")),
        };
        Self {
            ca: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            server: pair("server"),
            server2: pair("server2"),
            peer: pair("peer"),
            client: pair("client"),
            expired_client: pair("expired_client"),
            expired_server: pair("expired_server"),
            revoked_client: pair("revoked_client"),
            crl: d.join("crl.pem"),
            other_ca: d.join("other_ca.crt"),
            other_client: pair("other_client"),
            other_server: pair("other_server"),
            lock: Mutex::new(()),
            dir,
        }
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new certificate `name.crt`/`name.key` signed by the test CA: `cn`, `kind`, `sans`
    /// (for [`Kind::Server`]; e.g. [`LOOPBACK_SANS`]) and, when given, the validity
    /// `(notBefore, notAfter)` as `YYYYMMDDHHMMSSZ`.
    pub fn issue(
        &self,
        name: &str,
        cn: &str,
        kind: Kind,
        sans: &str,
        validity: Option<(&str, &str)>,
    ) -> Pair {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let ext = match kind {
            Kind::Server => "server_ext",
            Kind::Client => "client_ext",
        };
        let dates = validity
            .map(|(a, b)| format!("-startdate {a} -enddate {b}"))
            .unwrap_or_else(|| "-days 3650".to_string());
        let script = format!(
            r#"{NEW_KEY}
newkey '{name}' '{cn}'
openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key {dates} -extensions {ext} -in '{name}.csr' -out '{name}.crt' 2>/dev/null
rm '{name}.csr'
"#
        );
        let sans = if sans.is_empty() { LOOPBACK_SANS } else { sans };
        run(self.dir(), &script, &[("SANS", sans)]);
        Pair {
            cert: self.dir().join(format!("{name}.crt")),
            key: self.dir().join(format!("{name}.key")),
        }
    }

    /// A client certificate (EKU clientAuth) with Common Name `cn`, signed by the test CA.
    pub fn issue_client(&self, name: &str, cn: &str) -> Pair {
        self.issue(name, cn, Kind::Client, "", None)
    }

    /// A member's client-port flags: `server` as its certificate, and client certificates
    /// required (`--client-cert-auth --trusted-ca-file ca`).
    pub fn server_flags(&self) -> Vec<String> {
        self.server_flags_with(&self.server)
    }

    /// [`Certs::server_flags`] with another certificate/key pair.
    pub fn server_flags_with(&self, pair: &Pair) -> Vec<String> {
        vec![
            "--cert-file".into(),
            s(&pair.cert),
            "--key-file".into(),
            s(&pair.key),
            "--trusted-ca-file".into(),
            s(&self.ca),
            "--client-cert-auth".into(),
        ]
    }

    /// A member's peer flags: `server` as its peer certificate (both ways) and peer
    /// certificates required (`--peer-client-cert-auth --peer-trusted-ca-file ca`).
    pub fn peer_flags(&self) -> Vec<String> {
        vec![
            "--peer-cert-file".into(),
            s(&self.server.cert),
            "--peer-key-file".into(),
            s(&self.server.key),
            "--peer-trusted-ca-file".into(),
            s(&self.ca),
            "--peer-client-cert-auth".into(),
        ]
    }

    /// The testkit's client side for a member with `https://` client URLs: trusts `ca`,
    /// presents `client` (`CN=root`).
    pub fn client_tls(&self) -> TlsOpts {
        TlsOpts::client_mtls(&self.ca, &self.client.cert, &self.client.key)
    }
}

/// A path as a flag value.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `&[String]` as the `&[&str]` the testkit takes.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The serial number of a PEM certificate file, as `openssl x509 -serial` prints it
/// (upper-case hex, e.g. `1000`).
pub fn serial(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl x509");
    assert!(
        out.status.success(),
        "openssl x509 -serial {}",
        cert.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

/// Replace `dst` with a copy of `src` atomically (copy to a temp file beside it, rename).
pub fn replace_file(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("tmp-replace");
    std::fs::copy(src, &tmp).expect("copy the replacement file");
    std::fs::rename(&tmp, dst).expect("rename the replacement into place");
}
