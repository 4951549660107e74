//! The servers of one side of a comparison: 1 or 3 members of etcd or Shale on loopback.
//!
//! Members are started with `shale_testkit::process::EtcdProcess` (free ports, a temp data
//! dir each, readiness polled through `GET /health`). A 3-member topology starts all three
//! processes with the same `--initial-cluster` before waiting for any, as etcd's bootstrap
//! needs. Both systems get the same flags: `--log-level warn`, progress notifications every
//! 5 s, an 8 GiB backend quota (S3/S5 write several GiB of history), plus any extra flags.
//! A start failure carries the member's last log lines, so e.g. Shale's own "multi-member
//! not supported" message reaches the report as is.
//!
//! With TLS ([`TestCerts`]) both systems get the same certificates and flags: `https://`
//! client and peer URLs, `--client-cert-auth` and `--peer-client-cert-auth`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use shale_testkit::process::EtcdProcess;

use crate::certs::TestCerts;

use crate::monitor::Servers;

/// Flags every server gets in `compare` (both systems alike).
pub const COMMON_FLAGS: &[&str] = &[
    "--log-level",
    "warn",
    "--experimental-watch-progress-notify-interval",
    "5s",
    "--quota-backend-bytes",
    "8589934592",
];

/// Running members of one system.
pub struct Topology {
    pub bin: PathBuf,
    members: Vec<EtcdProcess>,
}

impl Topology {
    /// Start `members` members of `bin` (client and peer mTLS with `tls`) and wait until
    /// all are healthy.
    pub fn start(
        bin: &Path,
        members: usize,
        extra: &[String],
        tls: Option<&TestCerts>,
    ) -> Result<Self> {
        let tls_flags = tls.map(TestCerts::server_flags).unwrap_or_default();
        let mut args: Vec<&str> = COMMON_FLAGS.to_vec();
        args.extend(tls_flags.iter().map(String::as_str));
        args.extend(extra.iter().map(String::as_str));
        let opts = tls.map(TestCerts::testkit_opts).unwrap_or_default();
        let members = if members == 1 {
            vec![EtcdProcess::start_tls(bin, opts, &args)?]
        } else {
            EtcdProcess::start_cluster_tls(bin, members, opts, &args)?
        };
        Ok(Self {
            bin: bin.to_path_buf(),
            members,
        })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdProcess::endpoint).collect()
    }

    pub fn servers(&self) -> Servers {
        Servers {
            pids: self.members.iter().filter_map(EtcdProcess::pid).collect(),
            data_dirs: self.members.iter().map(EtcdProcess::data_dir).collect(),
        }
    }

    /// `GET /version` of the first member (over TLS when its client URL is `https://`).
    pub fn version(&self) -> String {
        self.members[0]
            .get("/version")
            .map(|(_, body)| body.trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({e:#})"))
    }

    /// Member `i` (0-based), e.g. to kill and restart it ([`crate::restart`]).
    pub fn member_mut(&mut self, i: usize) -> Option<&mut EtcdProcess> {
        self.members.get_mut(i)
    }

    /// Whether every member still runs.
    pub fn all_running(&mut self) -> bool {
        self.members.iter_mut().all(EtcdProcess::is_running)
    }

    /// The last log lines of every member.
    pub fn log_tails(&self, n: usize) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ({}) log {}:\n{}",
                    m.name(),
                    self.bin.display(),
                    m.log_path().display(),
                    m.log_tail(n)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM every member (SIGKILL after 10 s).
    pub fn stop(mut self) -> Result<()> {
        for m in &mut self.members {
            m.terminate(Duration::from_secs(10))
                .with_context(|| format!("stopping {}", m.name()))?;
        }
        Ok(())
    }
}
