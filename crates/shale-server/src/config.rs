//! [`Config`]: the `shale` command line, with etcd's flag names, defaults and `ETCD_*`
//! environment variables, so an existing etcd manifest starts Shale unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The etcd version Shale reports to clients by default (kube-apiserver enables consistent
/// reads from its watch cache from 3.5.13 on).
pub const DEFAULT_EMULATED_VERSION: &str = "3.5.17";

/// Command-line flags of `shale`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "shale",
    version,
    about = "Shale: a drop-in etcd v3 replacement"
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `${name}.shale`).
    #[arg(long = "data-dir", env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic (comma-separated).
    #[arg(
        long = "listen-client-urls",
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long = "advertise-client-urls",
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long = "listen-peer-urls",
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long = "initial-advertise-peer-urls",
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (`name=peer-url,...`).
    #[arg(
        long = "initial-cluster",
        env = "ETCD_INITIAL_CLUSTER",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(
        long = "initial-cluster-state",
        env = "ETCD_INITIAL_CLUSTER_STATE",
        default_value = "new"
    )]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long = "initial-cluster-token",
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Test hook, not an etcd flag: dial some peers at another address than they advertise,
    /// as `name=host:port` or `peer-url=host:port`, comma separated. Fault tests put a TCP
    /// proxy on every link this way.
    #[arg(
        long = "experimental-peer-dial-override",
        env = "SHALE_PEER_DIAL_OVERRIDE",
        default_value = "",
        hide = true
    )]
    pub peer_dial_override: String,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(
        long = "quota-backend-bytes",
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0
    )]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(
        long = "max-request-bytes",
        env = "ETCD_MAX_REQUEST_BYTES",
        default_value_t = 1_572_864
    )]
    pub max_request_bytes: u32,
    /// Largest Range response the server sends; a larger one fails with gRPC's
    /// ResourceExhausted, as etcd 3.5's fixed limit (math.MaxInt32) does. Shale only.
    #[arg(
        long = "max-response-bytes",
        env = "SHALE_MAX_RESPONSE_BYTES",
        default_value_t = 2_147_483_647,
        hide = true
    )]
    pub max_response_bytes: u64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long = "max-txn-ops", env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(
        long = "auto-compaction-mode",
        env = "ETCD_AUTO_COMPACTION_MODE",
        default_value = "periodic"
    )]
    pub auto_compaction_mode: String,
    /// Auto compaction retention (periodic: hours or a duration like 5m; revision: a count). 0 = off.
    #[arg(
        long = "auto-compaction-retention",
        env = "ETCD_AUTO_COMPACTION_RETENTION",
        default_value = "0"
    )]
    pub auto_compaction_retention: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(
        long = "heartbeat-interval",
        env = "ETCD_HEARTBEAT_INTERVAL",
        default_value_t = 100
    )]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(
        long = "election-timeout",
        env = "ETCD_ELECTION_TIMEOUT",
        default_value_t = 1000
    )]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(
        long = "snapshot-count",
        env = "ETCD_SNAPSHOT_COUNT",
        default_value_t = 100_000
    )]
    pub snapshot_count: u64,
    /// Number of entries for a slow follower to catch up after compacting the raft log.
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub snapshot_catchup_entries: u64,
    /// The state machine's storage engine: `sled` or `log` (log-structured: batches appended
    /// to data files, keys and value locations in memory). Fixed for a data dir; unset = the
    /// data dir's own engine, or the default for a new member.
    #[arg(
        long = "experimental-state-engine",
        env = "ETCD_EXPERIMENTAL_STATE_ENGINE",
        value_parser = |s: &str| s.parse::<shale_raft::StateEngine>()
    )]
    pub state_engine: Option<shale_raft::StateEngine>,
    /// TLS of the client and peer ports (etcd's flags; see [`crate::tls`]).
    #[command(flatten)]
    pub tls: crate::tls::TlsFlags,
    /// List of additional URLs to listen on that respond to /metrics and /health.
    #[arg(
        long = "listen-metrics-urls",
        env = "ETCD_LISTEN_METRICS_URLS",
        default_value = ""
    )]
    pub listen_metrics_urls: String,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level", env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Logger (accepted for compatibility: only 'zap'-style structured JSON logs are written).
    #[arg(long = "logger", env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Log outputs (accepted for compatibility; Shale logs to stderr).
    #[arg(
        long = "log-outputs",
        env = "ETCD_LOG_OUTPUTS",
        default_value = "default"
    )]
    pub log_outputs: String,
    /// Duration of periodic watch progress notifications.
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m"
    )]
    pub watch_progress_notify_interval: String,
    /// Accepted for compatibility (Shale checks its data on open).
    #[arg(long = "experimental-initial-corrupt-check", env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub initial_corrupt_check: bool,
    /// The etcd version Shale reports in Status and /version (must be >= 3.5.13 for kube-apiserver's consistent reads).
    #[arg(long = "emulated-etcd-version", env = "SHALE_EMULATED_ETCD_VERSION", default_value = DEFAULT_EMULATED_VERSION)]
    pub emulated_etcd_version: String,
    /// Authentication: `--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`.
    #[command(flatten)]
    pub auth: crate::auth_flags::AuthFlags,
}

/// A parsed `scheme://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("URL {s:?} has no scheme (want http://host:port)"))?;
        if scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs" {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {s}"
            ));
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("URL {s:?} has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("URL {s:?} has an invalid port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Url {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    /// Socket address to bind: `localhost` binds the loopback address.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
            .parse()
            .or_else(|_| format!("[{host}]:{}", self.port).parse())
            .map_err(|_| {
                format!(
                    "cannot listen on {}:{} (use an IP address)",
                    self.host, self.port
                )
            })
    }
}

pub fn parse_urls(s: &str) -> Result<Vec<Url>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(Url::parse)
        .collect()
}

/// Auto-compaction settings derived from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep this much history (in time).
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// Parses a Go-style duration ("10m", "1h30m", "500ms", "2s").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        let secs = match unit.as_str() {
            "h" => v * 3600.0,
            "m" => v * 60.0,
            "s" => v,
            "ms" => v / 1000.0,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        total += Duration::from_secs_f64(secs);
    }
    if !num.is_empty() {
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(format!("invalid duration {s:?}: missing unit"));
    }
    Ok(total)
}

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.shale", self.name)))
    }

    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes <= 0 {
            shale_api::validate::limits::QUOTA_BACKEND_BYTES
        } else {
            self.quota_backend_bytes as u64
        }
    }

    pub fn auto_compaction(&self) -> Result<AutoCompaction, String> {
        let r = self.auto_compaction_retention.trim();
        match self.auto_compaction_mode.as_str() {
            "periodic" => {
                if let Ok(hours) = r.parse::<u64>() {
                    return Ok(if hours == 0 {
                        AutoCompaction::Off
                    } else {
                        AutoCompaction::Periodic(Duration::from_secs(hours * 3600))
                    });
                }
                let d = parse_duration(r)
                    .map_err(|e| format!("invalid --auto-compaction-retention: {e}"))?;
                Ok(if d.is_zero() {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Periodic(d)
                })
            }
            "revision" => {
                let n: i64 = r.parse().map_err(|_| format!("invalid --auto-compaction-retention {r:?} for revision mode (want an integer)"))?;
                Ok(if n <= 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Revision(n)
                })
            }
            m => Err(format!("unknown auto-compaction-mode {m:?}")),
        }
    }

    pub fn progress_notify_interval(&self) -> Result<Duration, String> {
        parse_duration(&self.watch_progress_notify_interval)
            .map_err(|e| format!("invalid --experimental-watch-progress-notify-interval: {e}"))
    }

    /// The members of `--initial-cluster` as (name, peer URL).
    pub fn initial_members(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for part in self
            .initial_cluster
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (n, u) = part
                .split_once('=')
                .ok_or_else(|| format!("--initial-cluster entry {part:?} is not name=url"))?;
            Url::parse(u)?;
            out.push((n.to_string(), u.to_string()));
        }
        Ok(out)
    }

    /// This member's advertised peer URLs.
    pub fn my_peer_urls(&self) -> Vec<String> {
        split_list(&self.initial_advertise_peer_urls)
    }

    /// `--initial-cluster` grouped by member name (a member may list several peer URLs).
    pub fn initial_cluster_members(&self) -> Result<Vec<(String, Vec<String>)>, String> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (n, u) in self.initial_members()? {
            match out.iter_mut().find(|(m, _)| *m == n) {
                Some((_, urls)) => urls.push(u),
                None => out.push((n, vec![u])),
            }
        }
        Ok(out)
    }

    /// `--experimental-peer-dial-override` as advertised peer URL → `host:port`.
    pub fn dial_overrides(&self) -> Result<std::collections::HashMap<String, String>, String> {
        let members = self.initial_cluster_members()?;
        let mut out = std::collections::HashMap::new();
        for part in split_list(&self.peer_dial_override) {
            let (k, addr) = part.rsplit_once('=').ok_or_else(|| {
                format!("--experimental-peer-dial-override entry {part:?} is not name=host:port")
            })?;
            if k.contains("://") {
                out.insert(k.to_string(), addr.to_string());
                continue;
            }
            let (_, urls) = members.iter().find(|(n, _)| n == k).ok_or_else(|| {
                format!("--experimental-peer-dial-override names {k:?}, which is not in --initial-cluster")
            })?;
            for u in urls {
                out.insert(u.clone(), addr.to_string());
            }
        }
        Ok(out)
    }

    /// Checks the whole configuration; the message is what the operator sees.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, v) in [
            ("--listen-client-urls", &self.listen_client_urls),
            ("--advertise-client-urls", &self.advertise_client_urls),
            ("--listen-peer-urls", &self.listen_peer_urls),
            (
                "--initial-advertise-peer-urls",
                &self.initial_advertise_peer_urls,
            ),
            ("--listen-metrics-urls", &self.listen_metrics_urls),
        ] {
            let urls = parse_urls(v).map_err(|e| format!("invalid {flag}: {e}"))?;
            if urls.is_empty() && flag != "--listen-metrics-urls" {
                return Err(format!("{flag} must not be empty"));
            }
            for u in &urls {
                if u.scheme == "unixs" || u.scheme == "unix" {
                    return Err(format!("{flag}: {}:// URLs are not supported yet by Shale; use http:// or https://", u.scheme));
                }
            }
        }
        // An https:// metrics URL is served with the client port's TLS, as in etcd.
        self.tls.validate(
            &format!("{},{}", self.listen_client_urls, self.listen_metrics_urls),
            &self.listen_peer_urls,
        )?;
        if self.initial_cluster_state != "new" && self.initial_cluster_state != "existing" {
            return Err(format!(
                "invalid value {:?} for --initial-cluster-state (want 'new' or 'existing')",
                self.initial_cluster_state
            ));
        }
        let members = self.initial_members()?;
        let mine: Vec<&(String, String)> =
            members.iter().filter(|(n, _)| n == &self.name).collect();
        if mine.is_empty() {
            return Err(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            ));
        }
        let mut mine: Vec<String> = mine.iter().map(|(_, u)| u.clone()).collect();
        let mut advertised = self.my_peer_urls();
        mine.sort();
        advertised.sort();
        if mine != advertised {
            return Err(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                self.name,
                mine.join(","),
                self.initial_advertise_peer_urls
            ));
        }
        self.dial_overrides()?;
        if self.max_request_bytes == 0 {
            return Err("--max-request-bytes must be > 0".into());
        }
        if self.max_txn_ops == 0 {
            return Err("--max-txn-ops must be > 0".into());
        }
        if !matches!(
            self.log_level.as_str(),
            "debug" | "info" | "warn" | "error" | "panic" | "fatal"
        ) {
            return Err(format!("unknown log level {:?}", self.log_level));
        }
        let v: Vec<&str> = self.emulated_etcd_version.split('.').collect();
        if v.len() != 3 || v.iter().any(|p| p.parse::<u32>().is_err()) {
            return Err(format!(
                "--emulated-etcd-version {:?} is not a version like 3.5.17",
                self.emulated_etcd_version
            ));
        }
        self.auto_compaction()?;
        self.progress_notify_interval()?;
        self.auth.validate()?;
        Ok(())
    }
}

/// A comma-separated flag value as its non-empty, trimmed parts.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Config {
        let mut v = vec!["shale"];
        v.extend_from_slice(args);
        Config::parse_from(v)
    }

    #[test]
    fn defaults_are_etcds() {
        let c = cfg(&[]);
        c.validate().expect("valid");
        assert_eq!(c.data_dir(), PathBuf::from("default.shale"));
        assert_eq!(c.quota_bytes(), 2 << 30);
        assert_eq!(
            parse_urls(&c.listen_client_urls).expect("urls")[0]
                .bind_addr()
                .expect("addr")
                .to_string(),
            "127.0.0.1:2379"
        );
        assert_eq!(c.auto_compaction(), Ok(AutoCompaction::Off));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        assert!(cfg(&["--name", "n1"])
            .validate()
            .unwrap_err()
            .contains("couldn't find local name"));
        assert!(cfg(&["--initial-cluster-state", "x"]).validate().is_err());
        assert!(cfg(&["--listen-client-urls", "127.0.0.1:2379"])
            .validate()
            .is_err());
        assert!(cfg(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1h"
        ])
        .validate()
        .is_err());
        assert_eq!(
            cfg(&[
                "--auto-compaction-mode",
                "revision",
                "--auto-compaction-retention",
                "1000"
            ])
            .auto_compaction(),
            Ok(AutoCompaction::Revision(1000))
        );
        assert_eq!(
            cfg(&["--auto-compaction-retention", "5m"]).auto_compaction(),
            Ok(AutoCompaction::Periodic(Duration::from_secs(300)))
        );
        assert_eq!(
            parse_duration("1h30m").expect("d"),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("250ms").expect("d"),
            Duration::from_millis(250)
        );
    }
}
