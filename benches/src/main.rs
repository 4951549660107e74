//! `shale-bench`: Kubernetes-shaped scenarios (S1–S6) and etcd-benchmark-style load against
//! any etcd v3 endpoint, and side-by-side Shale vs etcd comparisons. See docs/benchmarks.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use shale_bench::compare::{compare, CompareOpts, WorkloadSel};
use shale_bench::monitor::Servers;
use shale_bench::pool::{ClientPool, Dial};
use shale_bench::report::Report;
use shale_bench::runner::{run, LoadSpec};
use shale_bench::scenario::{ScenarioArgs, ScenarioId};
use shale_bench::scompare::{compare_scenario, run_target, ScenarioCompareOpts};
use shale_bench::workload::{PutWorkload, RangeWorkload};

/// The load generator shares the machine's cores with the servers it measures, so its own cost
/// per request is kept low: mimalloc instead of glibc's malloc (about 10% fewer instructions
/// per request, as for the `shale` binary). Both systems in a comparison get the same client.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "shale-bench",
    version,
    about = "Load harness for etcd v3 endpoints (Shale or etcd)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Put keys, like `etcd benchmark put`.
    Put(PutArgs),
    /// Range one key (or a range), like `etcd benchmark range KEY [END]`.
    Range(RangeArgs),
    /// Run the same load against real etcd and Shale, write DIR/report.md and DIR/report.json.
    Compare(CompareArgs),
    /// Run a Kubernetes-shaped scenario (S1–S6) against running endpoints.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario to run.
    #[arg(long, value_enum)]
    scenario: ScenarioId,
    /// Comma-separated endpoints (`http://host:port` or `host:port`).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Tiny sizes (smoke runs).
    #[arg(long)]
    quick: bool,
    /// Write report.json, report.md and plots here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Server process to sample for RSS/CPU (repeatable); a dying one stops the run.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Server data dir to measure (repeatable).
    #[arg(long)]
    data_dir: Vec<PathBuf>,
    /// gRPC connections (default 8, S6 10; quick 2).
    #[arg(long)]
    conns: Option<usize>,
    /// Closed-loop clients (S1 closed phase, S6).
    #[arg(long)]
    clients: Option<usize>,
    /// S6: operations per benchmark.
    #[arg(long)]
    total: Option<u64>,
    /// Per-request timeout in seconds (default 60).
    #[arg(long)]
    timeout: Option<f64>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    scenario_args: ScenarioArgs,
}

/// etcdctl's client TLS flags. `https://` endpoints need `--cacert` (or
/// `--insecure-skip-tls-verify`); with any of these given, an endpoint without a scheme is
/// dialed over TLS, as etcd's client does.
#[derive(Args, Debug)]
struct TlsArgs {
    /// CA bundle that verifies the servers' certificates.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (for servers with --client-cert-auth); needs --key.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Accept any server certificate (e.g. a server with --auto-tls).
    #[arg(long)]
    insecure_skip_tls_verify: bool,
}

impl TlsArgs {
    fn dial(&self, timeout: Duration) -> Result<Dial> {
        Dial::new(
            timeout,
            &shale_tls::ClientTlsFiles {
                ca: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                insecure_skip_verify: self.insecure_skip_tls_verify,
            },
        )
    }
}

/// Connection and load flags shared by `put` and `range` (etcd's names and defaults).
#[derive(Args, Debug)]
struct LoadArgs {
    /// Comma-separated endpoints (`http://host:port` or `host:port`).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// gRPC connections (HTTP/2 channels); client i uses connection i % conns.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Total requests.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Requests per second over all clients (0 = closed loop, as fast as answers come).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Connect timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    dial_timeout: f64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print progress to stderr every 5 s.
    #[arg(long)]
    progress: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

impl LoadArgs {
    fn spec(&self) -> LoadSpec {
        LoadSpec {
            clients: self.clients,
            total: self.total,
            rate: (self.rate > 0.0).then_some(self.rate),
            timeout: Duration::from_secs_f64(self.timeout),
            progress: self.progress.then_some(Duration::from_secs(5)),
        }
    }
    async fn pool(&self) -> Result<ClientPool> {
        let dial = self.tls.dial(Duration::from_secs_f64(self.dial_timeout))?;
        ClientPool::connect(&self.endpoints, self.conns, &dial).await
    }
}

#[derive(Args, Debug)]
struct PutArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of distinct keys (etcd's --key-space-size; default 1 like etcd).
    #[arg(long, alias = "key-space-size", default_value_t = 1)]
    key_space: u64,
    /// Key i = request number % key-space instead of a random one.
    #[arg(long)]
    sequential_keys: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Consistency {
    /// linearizable
    L,
    /// serializable
    S,
}

#[derive(Args, Debug)]
struct RangeArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Key to read (positional, as in etcd's `benchmark range`; `--key` is the TLS key).
    #[arg(value_name = "KEY", default_value = "foo")]
    range_key: String,
    /// Range end (empty = just the key).
    #[arg(value_name = "END", default_value = "")]
    end: String,
    /// l = linearizable, s = serializable.
    #[arg(long, value_enum, default_value = "l")]
    consistency: Consistency,
    /// Before the run, put the key with a random value of this many bytes (etcd's tool does not).
    #[arg(long)]
    seed_val_size: Option<usize>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// put, range or both (ignored with --scenario).
    #[arg(long, value_enum, default_value = "both")]
    workload: WorkloadSel,
    /// Compare a Kubernetes-shaped scenario instead of put/range.
    #[arg(long, value_enum)]
    scenario: Option<ScenarioId>,
    /// Members per system (1 or 3).
    #[arg(long, default_value_t = 1)]
    members: usize,
    #[command(flatten)]
    scenario_args: ScenarioArgs,
    /// Tiny totals (for smoke tests): 4 conns, 16 clients, 1000 requests unless overridden.
    #[arg(long)]
    quick: bool,
    /// Output directory for report.md and report.json.
    #[arg(long)]
    out: PathBuf,
    /// etcd binary (default: $SHALE_ETCD35_BIN, else `etcd` on PATH).
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// Shale binary (default: $SHALE_BIN, else target/<triple>/release/shale).
    #[arg(long)]
    shale_bin: Option<PathBuf>,
    /// Extra flag for etcd (repeatable), e.g. --etcd-arg=--quota-backend-bytes=8589934592.
    #[arg(long, allow_hyphen_values = true)]
    etcd_arg: Vec<String>,
    /// Extra flag for Shale (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    shale_arg: Vec<String>,
    /// Connections (default 50, quick 4).
    #[arg(long)]
    conns: Option<usize>,
    /// Concurrent clients (default 500, quick 16).
    #[arg(long)]
    clients: Option<usize>,
    /// Requests per system and workload (default 100000, quick 1000).
    #[arg(long)]
    total: Option<u64>,
    /// Requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size for puts and for the seeded range key.
    #[arg(long, default_value_t = 1024)]
    val_size: usize,
    /// Distinct keys for put (random keys unless --sequential-keys).
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    #[arg(long)]
    sequential_keys: bool,
    /// Key for the range workload.
    #[arg(long, default_value = "foo")]
    key: String,
    /// Range consistency: l = linearizable, s = serializable.
    #[arg(long, value_enum, default_value = "l")]
    consistency: Consistency,
    /// Per-request timeout in seconds (default 30; scenarios 60).
    #[arg(long)]
    timeout: Option<f64>,
    /// Print progress to stderr every 5 s.
    #[arg(long)]
    progress: bool,
    /// Start both systems with client and peer mTLS (https:// client and peer URLs,
    /// --client-cert-auth, --peer-client-cert-auth; one openssl-made CA and certificates for
    /// both) and drive them over TLS. Needs `openssl` on PATH.
    #[arg(long)]
    tls: bool,
}

fn print(report: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Put(a) => {
            let w = PutWorkload::new(a.key_size, a.val_size, a.key_space, a.sequential_keys)?;
            let pool = a.load.pool().await?;
            let r = run(&pool, Arc::new(w), &a.load.spec(), None).await?;
            print(&r, a.load.json)
        }
        Cmd::Range(a) => {
            let seed_value = a.seed_val_size.map(|n| {
                let mut v = vec![0u8; n];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut v);
                Bytes::from(v)
            });
            let w = RangeWorkload {
                key: Bytes::from(a.range_key.into_bytes()),
                range_end: Bytes::from(a.end.into_bytes()),
                serializable: matches!(a.consistency, Consistency::S),
                seed_value,
            };
            let pool = a.load.pool().await?;
            let r = run(&pool, Arc::new(w), &a.load.spec(), None).await?;
            print(&r, a.load.json)
        }
        Cmd::Compare(a) if a.scenario.is_some() => {
            let id = a.scenario.expect("checked");
            anyhow::ensure!(a.members == 1 || a.members == 3, "--members must be 1 or 3");
            let mut sa = a.scenario_args.clone();
            sa.clients = a.clients;
            sa.conns = a.conns;
            sa.total = a.total;
            sa.timeout = a.timeout;
            let mut params = sa.resolve(id, a.quick)?;
            params.tls = a.tls;
            let opts = ScenarioCompareOpts {
                params,
                members: a.members,
                out: a.out.clone(),
                etcd_bin: a.etcd_bin,
                shale_bin: a.shale_bin,
                etcd_args: a.etcd_arg,
                shale_args: a.shale_arg,
                progress: true,
                tls: a.tls,
            };
            compare_scenario(&opts).await?;
            eprintln!(
                "compare: wrote {}/report.{{md,json}} and plots",
                opts.out.display()
            );
            print!("{}", std::fs::read_to_string(opts.out.join("report.md"))?);
            Ok(())
        }
        Cmd::Run(a) => {
            let mut sa = a.scenario_args.clone();
            sa.clients = a.clients;
            sa.conns = a.conns;
            sa.total = a.total;
            sa.timeout = a.timeout;
            let mut params = sa.resolve(a.scenario, a.quick)?;
            let dial = a.tls.dial(Duration::from_secs(5))?;
            params.tls = dial.tls.is_some();
            let servers = Servers {
                pids: a.server_pid,
                data_dirs: a.data_dir,
            };
            let md =
                run_target(&a.endpoints, &dial, servers, params, a.out.as_deref(), true).await?;
            print!("{md}");
            Ok(())
        }
        Cmd::Compare(a) => {
            let opts = CompareOpts {
                workload: a.workload,
                quick: a.quick,
                out: a.out,
                etcd_bin: a.etcd_bin,
                shale_bin: a.shale_bin,
                etcd_args: a.etcd_arg,
                shale_args: a.shale_arg,
                conns: a.conns,
                clients: a.clients,
                total: a.total,
                rate: a.rate.filter(|r| *r > 0.0),
                key_size: a.key_size,
                val_size: a.val_size,
                key_space: a.key_space,
                sequential_keys: a.sequential_keys,
                range_key: a.key,
                serializable: matches!(a.consistency, Consistency::S),
                timeout: Duration::from_secs_f64(a.timeout.unwrap_or(30.0)),
                progress: a.progress,
                tls: a.tls,
                members: a.members,
            };
            anyhow::ensure!(a.members == 1 || a.members == 3, "--members must be 1 or 3");
            compare(&opts).await?;
            eprintln!(
                "compare: wrote {} and {}",
                opts.out.join("report.md").display(),
                opts.out.join("report.json").display()
            );
            print!("{}", std::fs::read_to_string(opts.out.join("report.md"))?);
            Ok(())
        }
    }
}
