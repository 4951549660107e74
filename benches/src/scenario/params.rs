//! Scenario flags and their per-scenario defaults (DESIGN.md section 6 for full runs, tiny
//! sizes for `--quick`). Every flag is optional; [`ScenarioArgs::resolve`] fills the blanks
//! for the chosen scenario, and the resolved [`Params`] go into the report verbatim.

use clap::Args;
use serde::Serialize;

use crate::kube::ListKind;

/// Which scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioId {
    S1,
    S2,
    S3,
    S4,
    S5,
    S6,
    S7,
}

impl ScenarioId {
    pub fn title(self) -> &'static str {
        match self {
            ScenarioId::S1 => "S1 node-lease heartbeats",
            ScenarioId::S2 => "S2 pod churn with watch fan-out",
            ScenarioId::S3 => "S3 LIST storm",
            ScenarioId::S4 => "S4 events with leases",
            ScenarioId::S5 => "S5 compaction and space",
            ScenarioId::S6 => "S6 etcd benchmark parity",
            ScenarioId::S7 => "S7 scale",
        }
    }
    pub fn id(self) -> &'static str {
        match self {
            ScenarioId::S1 => "s1",
            ScenarioId::S2 => "s2",
            ScenarioId::S3 => "s3",
            ScenarioId::S4 => "s4",
            ScenarioId::S5 => "s5",
            ScenarioId::S6 => "s6",
            ScenarioId::S7 => "s7",
        }
    }
}

/// Scenario size and load flags (shared by `run` and `compare --scenario`).
#[derive(Args, Clone, Debug, Default)]
pub struct ScenarioArgs {
    /// Objects preloaded / in the key space (S1 5000 leases, S2 50000 pods, S3 100000 pods,
    /// S5 10000 keys, S7 1000000 pods).
    #[arg(long)]
    pub objects: Option<u64>,
    /// Value size in bytes (S1 512, S2/S3/S5 4096, S4 1024, S6 256, S7 1024).
    #[arg(long)]
    pub value_size: Option<usize>,
    /// Namespaces the objects are spread over.
    #[arg(long)]
    pub namespaces: Option<u64>,
    /// Open-loop write rates, one phase each (S1 500,2000; S2 200,1000,3000; S4 100,300;
    /// S5 1000; S6 watch-latency puts/s).
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Clients of the closed-loop phase (S1) / of each S6 benchmark (set from `--clients`).
    #[arg(skip)]
    pub clients: Option<usize>,
    /// Prefix-watcher counts, one set of phases each (S1 3; S2 3,300; S4 3; S6 100).
    #[arg(long, value_delimiter = ',')]
    pub watchers: Option<Vec<usize>>,
    /// Watchers multiplexed on one gRPC watch stream.
    #[arg(long)]
    pub watchers_per_stream: Option<usize>,
    /// Seconds per measured phase (S5: the whole run).
    #[arg(long)]
    pub phase_secs: Option<f64>,
    /// S3: concurrent LIST clients, one phase each.
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Option<Vec<usize>>,
    /// S3: LIST shapes (paged-N, unpaged, keys-only, count-only, range-stream).
    #[arg(long, value_delimiter = ',')]
    pub lists: Option<Vec<String>>,
    /// S3: background guarded updates per second during the LISTs.
    #[arg(long)]
    pub bg_rate: Option<f64>,
    /// S4: seconds an event lives (lease TTL = this + the reuse window, as the apiserver does).
    #[arg(long)]
    pub event_ttl: Option<i64>,
    /// S4: seconds one lease is reused for new events.
    #[arg(long)]
    pub lease_reuse: Option<u64>,
    /// S5: seconds between compactions.
    #[arg(long)]
    pub compact_every: Option<f64>,
    /// S6: operations per benchmark (set from `--total`).
    #[arg(skip)]
    pub total: Option<u64>,
    /// gRPC connections (set from `--conns`).
    #[arg(skip)]
    pub conns: Option<usize>,
    /// Per-request timeout in seconds (set from `--timeout`; default 60, S3 300).
    #[arg(skip)]
    pub timeout: Option<f64>,
    /// Seconds to wait for watchers to catch up after the writes of a phase (default 120).
    #[arg(long)]
    pub drain_secs: Option<f64>,
    /// S7: kill -9 / restart cycles timed to the first linearizable read (default 3).
    #[arg(long)]
    pub restarts: Option<usize>,
    /// S7: times each LIST shape (count-only, keys-only, unpaged) is sent (default 3).
    #[arg(long)]
    pub list_reps: Option<u64>,
    /// S7: skip the unpaged LIST when its estimated response is larger than this many MiB
    /// (default 1900: a gRPC message cannot exceed 2 GiB, etcd's send limit is MaxInt32).
    #[arg(long)]
    pub max_list_mib: Option<f64>,
}

/// Resolved parameters of a scenario run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub scenario: ScenarioId,
    pub quick: bool,
    pub objects: u64,
    pub value_size: usize,
    pub namespaces: u64,
    pub rates: Vec<f64>,
    pub clients: usize,
    pub watchers: Vec<usize>,
    pub watchers_per_stream: usize,
    pub phase_secs: f64,
    pub concurrency: Vec<usize>,
    pub lists: Vec<String>,
    pub bg_rate: f64,
    pub event_ttl: i64,
    pub lease_reuse: u64,
    pub compact_every: f64,
    pub total: u64,
    pub conns: usize,
    pub timeout_s: f64,
    pub drain_s: f64,
    /// The load went over TLS (with `compare --tls`: client and peer mTLS on both systems).
    pub tls: bool,
    pub restarts: usize,
    pub list_reps: u64,
    pub max_list_mib: f64,
}

/// `paged-500` → `ListKind::Paged { limit: 500 }` and so on.
pub fn parse_list(s: &str) -> anyhow::Result<ListKind> {
    Ok(match s {
        "unpaged" => ListKind::Paged { limit: 0 },
        "keys-only" => ListKind::KeysOnly,
        "count-only" => ListKind::CountOnly,
        "range-stream" => ListKind::Stream,
        other => match other.strip_prefix("paged-").map(str::parse::<i64>) {
            Some(Ok(n)) if n > 0 => ListKind::Paged { limit: n },
            _ => anyhow::bail!(
                "unknown list shape {other:?} (paged-N, unpaged, keys-only, count-only, range-stream)"
            ),
        },
    })
}

fn pick<T>(quick: bool, full: T, small: T) -> T {
    if quick {
        small
    } else {
        full
    }
}

impl ScenarioArgs {
    pub fn resolve(&self, s: ScenarioId, quick: bool) -> anyhow::Result<Params> {
        use ScenarioId::*;
        let objects = self.objects.unwrap_or(match s {
            S1 => pick(quick, 5_000, 200),
            S2 => pick(quick, 50_000, 500),
            S3 => pick(quick, 100_000, 1_000),
            S4 => 0,
            S5 => pick(quick, 10_000, 200),
            S6 => pick(quick, 100_000, 1_000),
            S7 => pick(quick, 1_000_000, 2_000),
        });
        let value_size = self.value_size.unwrap_or(match s {
            S1 => 512,
            S4 | S7 => 1024,
            S6 => 256,
            _ => 4096,
        });
        let rates = self.rates.clone().unwrap_or(match s {
            S1 => pick(quick, vec![500.0, 2000.0], vec![100.0, 300.0]),
            S2 => pick(quick, vec![200.0, 1000.0, 3000.0], vec![50.0, 200.0]),
            S3 => vec![],
            S4 => pick(quick, vec![100.0, 300.0], vec![100.0]),
            S5 => pick(quick, vec![1000.0], vec![200.0]),
            S6 => vec![100.0],
            S7 => vec![],
        });
        let watchers = self.watchers.clone().unwrap_or(match s {
            S1 | S4 => vec![3],
            S2 => pick(quick, vec![3, 300], vec![3, 20]),
            S6 => pick(quick, vec![100], vec![10]),
            _ => vec![],
        });
        let lists = self.lists.clone().unwrap_or_else(|| {
            [
                "paged-10000",
                "paged-500",
                "unpaged",
                "keys-only",
                "count-only",
                "range-stream",
            ]
            .map(String::from)
            .to_vec()
        });
        for l in &lists {
            parse_list(l)?;
        }
        let p = Params {
            scenario: s,
            quick,
            objects,
            value_size,
            namespaces: self.namespaces.unwrap_or(100),
            rates,
            clients: self.clients.unwrap_or(match s {
                S6 => pick(quick, 100, 8),
                S7 => pick(quick, 200, 16),
                _ => pick(quick, 64, 8),
            }),
            watchers,
            watchers_per_stream: self.watchers_per_stream.unwrap_or(100),
            phase_secs: self.phase_secs.unwrap_or(match s {
                S1 | S2 => pick(quick, 20.0, 2.0),
                S3 => pick(quick, 10.0, 1.5),
                S4 => pick(quick, 150.0, 7.0),
                S5 => pick(quick, 1800.0, 6.0),
                S6 => pick(quick, 600.0, 60.0),
                S7 => pick(quick, 7200.0, 300.0),
            }),
            concurrency: self.concurrency.clone().unwrap_or(pick(
                quick,
                vec![1, 4, 10],
                vec![1, 4],
            )),
            lists,
            bg_rate: self.bg_rate.unwrap_or(pick(quick, 200.0, 50.0)),
            event_ttl: self.event_ttl.unwrap_or(pick(quick, 30, 2)),
            lease_reuse: self.lease_reuse.unwrap_or(pick(quick, 60, 1)),
            compact_every: self.compact_every.unwrap_or(pick(quick, 300.0, 2.0)),
            total: self.total.unwrap_or(pick(quick, 20_000, 300)),
            conns: self.conns.unwrap_or(match s {
                S6 => pick(quick, 10, 2),
                S7 => pick(quick, 20, 4),
                _ => pick(quick, 8, 2),
            }),
            timeout_s: self.timeout.unwrap_or(match s {
                S3 => 300.0,
                S7 => 600.0,
                _ => 60.0,
            }),
            drain_s: self.drain_secs.unwrap_or(120.0),
            tls: false,
            restarts: self.restarts.unwrap_or(3),
            list_reps: self.list_reps.unwrap_or(3),
            max_list_mib: self.max_list_mib.unwrap_or(1900.0),
        };
        anyhow::ensure!(p.conns >= 1, "--conns must be at least 1");
        anyhow::ensure!(p.phase_secs > 0.0, "--phase-secs must be positive");
        anyhow::ensure!(p.list_reps >= 1, "--list-reps must be at least 1");
        anyhow::ensure!(p.max_list_mib >= 0.0, "--max-list-mib must not be negative");
        anyhow::ensure!(
            p.rates.iter().all(|r| *r > 0.0 && r.is_finite()),
            "--rates must be positive"
        );
        Ok(p)
    }
}
