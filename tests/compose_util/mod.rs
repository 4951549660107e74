//! Driving `docker/compose.yaml` (or its TLS variant, `docker/compose.tls.yaml`, with
//! certificates made by `docker/tls/gen-certs.sh` in a temp dir) from tests: one compose
//! project per test, with its own project name and free host ports, torn down (volumes
//! included) when dropped.
//!
//! The compose tool is `docker compose` when the plugin is installed, else the standalone
//! `docker-compose`. Without a Docker engine the tests skip themselves, unless
//! `SHALE_DOCKER_TESTS=1` demands them (then a missing engine is a failure). Every wait
//! polls a condition (container health, member status), never a fixed sleep.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shale_testkit::process::{free_port, repo_root, shale_bin};

use crate::cluster_util::{hash_kv, status};

/// The compose services, in order; member `i` publishes its client port on `ports[i]`.
pub const SERVICES: [&str; 3] = ["shale-1", "shale-2", "shale-3"];

/// Whether Docker tests run: an engine answers, or `SHALE_DOCKER_TESTS=1` insists.
pub fn docker_available() -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if engine {
        return true;
    }
    if std::env::var("SHALE_DOCKER_TESTS").as_deref() == Ok("1") {
        panic!("SHALE_DOCKER_TESTS=1 but no Docker engine answers `docker info`");
    }
    eprintln!("skipped: no Docker engine (set SHALE_DOCKER_TESTS=1 to require one)");
    false
}

/// `docker compose` if the plugin exists, else `docker-compose`.
fn compose_program() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if plugin {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

fn run(mut cmd: Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `docker <args>`, failing with its output on a non-zero exit.
pub fn docker(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout)
        .trim()
        .to_string())
}

/// One running copy of docker/compose.yaml.
pub struct Compose {
    program: Vec<String>,
    project: String,
    /// Host ports of the members' client URLs, in [`SERVICES`] order.
    pub ports: [u16; 3],
    /// `SHALE_TARGET` for the Dockerfile: the triple directory holding the release binary.
    target: String,
    /// The compose file, relative to the repository root.
    file: &'static str,
    /// The TLS variant's certificates (`SHALE_TLS_DIR`), removed after the project is down.
    pki: Option<tempfile::TempDir>,
}

impl Compose {
    /// A new project named after `test` (nothing started yet).
    pub fn new(test: &str) -> Result<Self> {
        let bin = shale_bin()?;
        let target = bin
            .parent()
            .and_then(|release| release.parent())
            .and_then(|t| t.file_name())
            .map(|t| t.to_string_lossy().into_owned())
            .context("release binary is not under target/<triple>/release")?;
        Ok(Compose {
            program: compose_program(),
            project: format!("shale-{test}-{}", std::process::id()),
            ports: [free_port()?, free_port()?, free_port()?],
            target,
            file: "docker/compose.yaml",
            pki: None,
        })
    }

    /// A new project of the TLS variant, with fresh certificates for shale-1..3 made by
    /// `docker/tls/gen-certs.sh` (nothing started yet).
    pub fn tls(test: &str) -> Result<Self> {
        let pki = tempfile::Builder::new().prefix("shale-pki-").tempdir()?;
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("docker/tls/gen-certs.sh"))
            .arg(pki.path())
            .args(SERVICES);
        run(cmd)?;
        let mut c = Self::new(test)?;
        c.file = "docker/compose.tls.yaml";
        c.pki = Some(pki);
        Ok(c)
    }

    /// The TLS variant's certificate directory (kubeadm's layout, see gen-certs.sh).
    pub fn pki(&self) -> Option<&Path> {
        self.pki.as_ref().map(tempfile::TempDir::path)
    }

    fn file(&self) -> PathBuf {
        repo_root().join(self.file)
    }

    /// The compose tool with this project's name, file and ports.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .arg("-f")
            .arg(self.file())
            .args(["-p", &self.project])
            .args(args)
            .env("SHALE_TARGET", &self.target)
            .env("SHALE_1_CLIENT_PORT", self.ports[0].to_string())
            .env("SHALE_2_CLIENT_PORT", self.ports[1].to_string())
            .env("SHALE_3_CLIENT_PORT", self.ports[2].to_string())
            .env("SHALE_TLS_1_CLIENT_PORT", self.ports[0].to_string())
            .env("SHALE_TLS_2_CLIENT_PORT", self.ports[1].to_string())
            .env("SHALE_TLS_3_CLIENT_PORT", self.ports[2].to_string());
        if let Some(pki) = self.pki() {
            cmd.env("SHALE_TLS_DIR", pki);
        }
        cmd
    }

    /// Runs the compose tool with `args`.
    pub fn compose(&self, args: &[&str]) -> Result<String> {
        Ok(String::from_utf8_lossy(&run(self.cmd(args))?.stdout)
            .trim()
            .to_string())
    }

    /// `up -d --build`.
    pub fn up(&self) -> Result<()> {
        self.compose(&["up", "-d", "--build"]).map(drop)
    }

    /// The client endpoint of member `i` (`https://` for the TLS variant).
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.ports[i])
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..3).map(|i| self.endpoint(i)).collect()
    }

    /// The container id of member `i`.
    pub fn container(&self, i: usize) -> Result<String> {
        let id = self.compose(&["ps", "-q", SERVICES[i]])?;
        if id.is_empty() {
            bail!("no container for {}", SERVICES[i]);
        }
        Ok(id)
    }

    /// `docker inspect --format <format>` of member `i`'s container.
    pub fn inspect(&self, i: usize, format: &str) -> Result<String> {
        docker(&["inspect", "--format", format, &self.container(i)?])
    }

    /// The compose network's name (as Docker knows it).
    pub fn network(&self) -> Result<String> {
        self.inspect(
            0,
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
        )
    }

    /// Waits until Docker's health check reports every container healthy.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            let mut states = Vec::new();
            for i in 0..3 {
                states.push(
                    self.inspect(i, "{{.State.Status}}/{{.State.Health.Status}}")
                        .unwrap_or_else(|e| format!("{e:#}")),
                );
            }
            if states.iter().all(|s| s == "running/healthy") {
                return Ok(start.elapsed());
            }
            last = format!("{states:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("containers not healthy within {timeout:?}: {last}")
    }

    /// Index of the member that every member in `among` names as leader.
    pub async fn wait_leader(&self, among: &[usize], timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut ids = Vec::new();
            let mut leaders = Vec::new();
            for &i in among {
                match status(&self.endpoint(i)).await {
                    Ok(s) => {
                        ids.push((i, s.header.map_or(0, |h| h.member_id)));
                        leaders.push(s.leader);
                    }
                    Err(e) => last = format!("{}: {e:#}", SERVICES[i]),
                }
            }
            if leaders.len() == among.len() && leaders.iter().all(|l| *l != 0 && *l == leaders[0]) {
                if let Some((i, _)) = ids.iter().find(|(_, id)| *id == leaders[0]) {
                    return Ok(*i);
                }
            }
            last = format!("leaders seen: {leaders:x?} {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("no agreed leader among {among:?} within {timeout:?}: {last}")
    }

    /// Waits until every member answers with the same applied index and HashKV.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<(u32, i64)> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut seen = Vec::new();
            for (i, service) in SERVICES.iter().enumerate() {
                let ep = self.endpoint(i);
                match (status(&ep).await, hash_kv(&ep).await) {
                    (Ok(s), Ok(h)) => seen.push((s.raft_applied_index, h)),
                    (a, b) => last = format!("{service}: {:?} {:?}", a.err(), b.err()),
                }
            }
            if seen.len() == 3 && seen.iter().all(|s| *s == seen[0]) {
                return Ok(seen[0].1);
            }
            last = format!("{seen:?} {last}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("members did not converge within {timeout:?}: {last}")
    }

    /// The last log lines of every container, for failure messages.
    pub fn logs(&self) -> String {
        self.compose(&["logs", "--no-color", "--tail", "40"])
            .unwrap_or_else(|e| format!("{e:#}"))
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- container logs ---\n{}", self.logs());
        }
        // Unpause first: a paused container cannot be stopped.
        for i in 0..3 {
            if let Ok(id) = self.container(i) {
                let _ = docker(&["unpause", &id]);
            }
        }
        if let Err(e) = self.compose(&["down", "-v", "-t", "3", "--remove-orphans"]) {
            eprintln!("compose down failed: {e:#}");
        }
    }
}
