//! Scenario runs: `shale-bench run --scenario sN` against given endpoints, and
//! `shale-bench compare --scenario sN`, which starts etcd and then Shale with the same
//! topology (1 or 3 members, fresh temp data dirs, same flags), runs the scenario against
//! each, stops them, and writes `report.json`, `report.md` and SVG plots.
//!
//! Each system's summary quotes the scenario's headline phase for throughput and latency
//! and sums the correctness counters (lost / duplicate / out-of-order events) over all
//! phases; the watch lag figures are the worst phase's. A system that cannot start or dies
//! gets `{"error": ...}` in the report (with its last log lines) and `compare` fails after
//! writing the report, so a broken side is never mistaken for a slow one.
//!
//! `--tls` starts both systems with client and peer mTLS on the same certificates (made
//! once per comparison, see [`crate::certs`]) and drives them over TLS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::certs::TestCerts;
use crate::compare::{resolve_etcd, resolve_shale};
use crate::monitor::{Monitor, Sample, Servers};
use crate::plot::{chart, plot_quantiles, Series, XAxis};
use crate::pool::{ClientPool, Dial};
use crate::restart::{self, RestartResult};
use crate::scenario::{self, Ctx, Params, PhaseResult, ScenarioId, ScenarioResult};
use crate::sysinfo;
use crate::topology::Topology;

mod markdown;
mod s7_table;

/// One system's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub binary: String,
    pub version: String,
    pub members: usize,
    pub headline_phase: String,
    pub throughput_ops: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub ok: u64,
    pub errors: u64,
    pub conflicts: u64,
    pub watch_events: u64,
    pub lost_events: u64,
    pub duplicate_events: u64,
    pub out_of_order_events: u64,
    /// Events still on their way when the drain deadline passed (slow, not lost).
    pub undelivered_at_deadline: u64,
    pub watch_lag_p50_ms: Option<f64>,
    pub watch_lag_p99_ms: Option<f64>,
    pub watch_lag_max_ms: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_ms_per_1k_ops: Option<f64>,
    pub disk_mib: f64,
    pub preload_s: f64,
    pub phases: Vec<PhaseResult>,
    pub samples: Vec<Sample>,
    /// Scenario-level figures (S7: load rate, RSS and disk after the load, ...).
    pub extra: BTreeMap<String, f64>,
    /// S7 under `compare`: the timed kill -9 restarts.
    pub restarts: Vec<RestartResult>,
    /// S7 under `compare`: why the restarts could not be timed (the comparison then fails).
    pub restart_error: Option<String>,
}

impl Summary {
    fn new(
        binary: String,
        version: String,
        members: usize,
        r: &ScenarioResult,
        samples: Vec<Sample>,
        peak_rss_mib: Option<f64>,
        disk_mib: f64,
    ) -> Self {
        let h = r
            .phases
            .get(r.headline)
            .map(|p| p.load.report.clone())
            .unwrap_or_else(|| crate::report::Recorder::new().report("none", Duration::ZERO));
        let watches = r.phases.iter().filter_map(|p| p.watch.as_ref());
        let worst = |f: fn(&crate::watchers::WatchStats) -> f64| {
            r.phases
                .iter()
                .filter_map(|p| p.watch.as_ref())
                .filter(|w| w.lag_samples > 0)
                .map(f)
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
        };
        let cpu: Option<f64> = r
            .phases
            .iter()
            .filter_map(|p| p.server_cpu_s)
            .fold(None, |a, b| Some(a.unwrap_or(0.0) + b));
        let ops: u64 = r.phases.iter().map(|p| p.load.report.ok).sum();
        Summary {
            binary,
            version,
            members,
            headline_phase: h.name.clone(),
            throughput_ops: h.throughput_ops,
            p50_ms: h.p50_ms,
            p90_ms: h.p90_ms,
            p99_ms: h.p99_ms,
            p999_ms: h.p999_ms,
            max_ms: h.max_ms,
            ok: ops,
            errors: r.phases.iter().map(|p| p.load.report.errors).sum(),
            conflicts: r.phases.iter().map(|p| p.load.conflicts).sum(),
            watch_events: watches.clone().map(|w| w.events).sum(),
            lost_events: watches.clone().map(|w| w.lost_events).sum(),
            duplicate_events: watches.clone().map(|w| w.duplicate_events).sum(),
            out_of_order_events: watches.clone().map(|w| w.out_of_order_events).sum(),
            undelivered_at_deadline: watches.map(|w| w.undelivered_at_deadline).sum(),
            watch_lag_p50_ms: worst(|w| w.lag_p50_ms),
            watch_lag_p99_ms: worst(|w| w.lag_p99_ms),
            watch_lag_max_ms: worst(|w| w.lag_max_ms),
            peak_rss_mib,
            server_cpu_ms_per_1k_ops: cpu.filter(|_| ops > 0).map(|c| c * 1e6 / ops as f64),
            server_cpu_s: cpu,
            disk_mib,
            preload_s: r.preload_s,
            phases: r.phases.clone(),
            samples,
            extra: r.extra.clone(),
            restarts: Vec::new(),
            restart_error: None,
        }
    }
}

/// Run the scenario against `endpoints`; `servers` (may be empty) are sampled and watched.
pub async fn run_scenario(
    endpoints: &[String],
    dial: &Dial,
    servers: Servers,
    params: Params,
    progress: bool,
) -> Result<(ScenarioResult, Vec<Sample>, Option<f64>)> {
    let pool = ClientPool::connect(endpoints, params.conns, dial).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = Monitor::start(servers.clone(), stop.clone());
    let ctx = Ctx {
        pool,
        p: params,
        stop: stop.clone(),
        servers,
        epoch: Instant::now(),
        phases: Vec::new(),
        extra: BTreeMap::new(),
        progress,
    };
    let r = scenario::run(ctx).await;
    let dead = monitor.dead();
    let (samples, peak) = monitor.stop().await;
    if let Some(pid) = dead {
        bail!("server process {pid} died during the run");
    }
    Ok((r?, samples, peak))
}

/// Options of `compare --scenario`.
#[derive(Clone, Debug)]
pub struct ScenarioCompareOpts {
    pub params: Params,
    pub members: usize,
    pub out: PathBuf,
    pub etcd_bin: Option<PathBuf>,
    pub shale_bin: Option<PathBuf>,
    pub etcd_args: Vec<String>,
    pub shale_args: Vec<String>,
    pub progress: bool,
    /// Client and peer mTLS for both systems (`params.tls` says so in the report).
    pub tls: bool,
}

async fn one_system(
    name: &str,
    bin: &Path,
    opts: &ScenarioCompareOpts,
    extra: &[String],
    certs: Option<&Arc<TestCerts>>,
) -> Result<Summary> {
    eprintln!(
        "compare {}: starting {name} ({} member(s), {})",
        opts.params.scenario.id(),
        opts.members,
        bin.display()
    );
    let (b, n, x, c) = (
        bin.to_path_buf(),
        opts.members,
        extra.to_vec(),
        certs.cloned(),
    );
    let mut topo = tokio::task::spawn_blocking(move || Topology::start(&b, n, &x, c.as_deref()))
        .await?
        .with_context(|| format!("starting {name} ({n} member(s), {})", bin.display()))?;
    let version = topo.version();
    let servers = topo.servers();
    let dial = match certs {
        Some(c) => Dial::new(Duration::from_secs(5), &c.client_files())?,
        None => Dial::plain(Duration::from_secs(5)),
    };
    let run = run_scenario(
        &topo.endpoints(),
        &dial,
        servers.clone(),
        opts.params.clone(),
        opts.progress,
    )
    .await;
    if !topo.all_running() {
        bail!(
            "{name} ({}) died during the run{}\n{}",
            bin.display(),
            run.err().map(|e| format!(" ({e:#})")).unwrap_or_default(),
            topo.log_tails(30)
        );
    }
    let (r, samples, peak) = run.with_context(|| {
        format!(
            "scenario {} against {name}; server logs:\n{}",
            opts.params.scenario.id(),
            topo.log_tails(15)
        )
    })?;
    let disk_mib = servers.disk_bytes() as f64 / 1048576.0;
    let restarts = if opts.params.scenario == ScenarioId::S7 {
        Some(restart::s7_cycles(&mut topo, &dial, &opts.params).await)
    } else {
        None
    };
    tokio::task::spawn_blocking(move || topo.stop()).await??;
    let mut s = Summary::new(
        bin.display().to_string(),
        version,
        opts.members,
        &r,
        samples,
        peak,
        disk_mib,
    );
    match restarts {
        Some(Ok(v)) => s.restarts = v,
        Some(Err(e)) => s.restart_error = Some(format!("{e:#}")),
        None => {}
    }
    eprintln!(
        "compare {}: {name}: {:.0} ops/s, p99 {:.2} ms, lost events {}, peak RSS {} MiB",
        opts.params.scenario.id(),
        s.throughput_ops,
        s.p99_ms,
        s.lost_events,
        s.peak_rss_mib
            .map(|v| format!("{v:.0}"))
            .unwrap_or("n/a".into())
    );
    Ok(s)
}

/// Run `compare --scenario`; writes the report even when a system failed, then fails.
pub async fn compare_scenario(opts: &ScenarioCompareOpts) -> Result<Value> {
    let etcd = resolve_etcd(opts.etcd_bin.as_deref())?;
    let shale = resolve_shale(opts.shale_bin.as_deref())?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating output dir {}", opts.out.display()))?;
    let certs = if opts.tls {
        Some(Arc::new(
            tokio::task::spawn_blocking(TestCerts::make).await??,
        ))
    } else {
        None
    };
    let mut systems: Vec<(String, Result<Summary>)> = Vec::new();
    for (name, bin, extra) in [
        ("etcd", &etcd, &opts.etcd_args),
        ("shale", &shale, &opts.shale_args),
    ] {
        let r = one_system(name, bin, opts, extra, certs.as_ref()).await;
        if let Err(e) = &r {
            eprintln!("compare: {name} failed: {e:#}");
        }
        systems.push((name.to_string(), r));
    }
    let ok: Vec<(String, &Summary)> = systems
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|s| (n.clone(), s)))
        .collect();
    write_report(&opts.out, &opts.params, opts.members, &systems)?;
    write_plots(&opts.out, &ok)?;
    let failed: Vec<String> = systems
        .iter()
        .filter_map(|(n, r)| match r {
            Err(e) => Some(format!("{n}: {e:#}")),
            Ok(s) => s
                .restart_error
                .as_ref()
                .map(|e| format!("{n}: restart: {e}")),
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "report written to {}, but: {}",
            opts.out.display(),
            failed.join("; ")
        );
    }
    let text = std::fs::read_to_string(opts.out.join("report.json"))?;
    Ok(serde_json::from_str(&text)?)
}

/// Write `report.json` and `report.md` for the given systems.
pub fn write_report(
    out: &Path,
    params: &Params,
    members: usize,
    systems: &[(String, Result<Summary>)],
) -> Result<()> {
    let date = sysinfo::utc_now();
    let machine = sysinfo::machine();
    let mut sys = serde_json::Map::new();
    for (n, r) in systems {
        let v = match r {
            Ok(s) => serde_json::to_value(s)?,
            Err(e) => json!({ "error": format!("{e:#}") }),
        };
        sys.insert(n.clone(), v);
    }
    let ok = |n: &str| {
        systems
            .iter()
            .find(|(m, _)| m == n)
            .and_then(|(_, r)| r.as_ref().ok())
    };
    let ratios = match (ok("etcd"), ok("shale")) {
        (Some(e), Some(s)) => {
            let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            json!({
                "throughput": div(s.throughput_ops, e.throughput_ops),
                "p99": div(s.p99_ms, e.p99_ms),
                "peak_rss": div(s.peak_rss_mib.unwrap_or(0.0), e.peak_rss_mib.unwrap_or(0.0)),
            })
        }
        _ => Value::Null,
    };
    let report = json!({
        "scenario": params.scenario.id(),
        "title": params.scenario.title(),
        "quick": params.quick,
        "members": members,
        "date": date,
        "machine": machine,
        "params": params,
        "systems": sys,
        "ratios": ratios,
    });
    let p = out.join("report.json");
    std::fs::write(&p, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", p.display()))?;
    let p = out.join("report.md");
    std::fs::write(
        &p,
        markdown::render(params, members, &date, &machine, systems),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// Latency CDF (headline phase), throughput over time, RSS over time (and disk for S5).
pub fn write_plots(out: &Path, systems: &[(String, &Summary)]) -> Result<()> {
    let mut cdf = Vec::new();
    let mut tput = Vec::new();
    let mut rss = Vec::new();
    let mut disk = Vec::new();
    for (name, s) in systems {
        if let Some(h) = s
            .phases
            .iter()
            .find(|p| p.load.report.name == s.headline_phase)
        {
            let rec = &h.load.recorder;
            cdf.push(Series {
                name: name.clone(),
                points: plot_quantiles()
                    .into_iter()
                    .map(|q| (q, rec.quantile_ms(q)))
                    .collect(),
            });
        }
        let mut pts = Vec::new();
        for p in &s.phases {
            for (i, n) in p.load.per_second.iter().enumerate() {
                pts.push((p.t_start_s + i as f64 + 0.5, *n as f64));
            }
        }
        tput.push(Series {
            name: name.clone(),
            points: pts,
        });
        rss.push(Series {
            name: name.clone(),
            points: s.samples.iter().map(|x| (x.t_s, x.rss_mib)).collect(),
        });
        disk.push(Series {
            name: name.clone(),
            points: s.samples.iter().map(|x| (x.t_s, x.disk_mib)).collect(),
        });
    }
    let files = [
        (
            "latency_cdf.svg",
            chart(
                "latency by percentile (headline phase)",
                "percentile",
                "latency ms",
                XAxis::Nines,
                &cdf,
            ),
        ),
        (
            "throughput.svg",
            chart(
                "completed operations per second",
                "seconds since server start",
                "ops/s",
                XAxis::Linear,
                &tput,
            ),
        ),
        (
            "rss.svg",
            chart(
                "server RSS",
                "seconds since server start",
                "MiB",
                XAxis::Linear,
                &rss,
            ),
        ),
        (
            "disk.svg",
            chart(
                "data dir size",
                "seconds since server start",
                "MiB",
                XAxis::Linear,
                &disk,
            ),
        ),
    ];
    for (f, svg) in files {
        let p = out.join(f);
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
    }
    if systems.iter().any(|(_, s)| !s.restarts.is_empty()) {
        let mut series = Vec::new();
        for (name, s) in systems {
            type Pick = fn(&RestartResult) -> f64;
            for (what, f) in [
                ("ready", (|r| r.ready_s) as Pick),
                ("listening", |r| r.listening_s),
            ] {
                series.push(Series {
                    name: format!("{name} {what}"),
                    points: s
                        .restarts
                        .iter()
                        .enumerate()
                        .map(|(i, r)| ((i + 1) as f64, f(r)))
                        .collect(),
                });
            }
        }
        let svg = chart(
            "kill -9 to listening / to a linearizable read",
            "restart",
            "seconds",
            XAxis::Linear,
            &series,
        );
        let p = out.join("restart.svg");
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `run --scenario`: one system at `endpoints`; prints the Markdown report and, with `out`,
/// writes the report files (system name `target`).
pub async fn run_target(
    endpoints: &[String],
    dial: &Dial,
    servers: Servers,
    params: Params,
    out: Option<&Path>,
    progress: bool,
) -> Result<String> {
    let (r, samples, peak) =
        run_scenario(endpoints, dial, servers.clone(), params.clone(), progress).await?;
    let disk = servers.disk_bytes() as f64 / 1048576.0;
    let version = endpoints
        .first()
        .and_then(|e| dial.http_get(e, "/version").ok())
        .map(|body| body.trim().to_string())
        .unwrap_or_default();
    let s = Summary::new(
        endpoints.join(","),
        version,
        endpoints.len(),
        &r,
        samples,
        peak,
        disk,
    );
    let systems = vec![("target".to_string(), Ok(s))];
    let date = sysinfo::utc_now();
    let md = markdown::render(
        &params,
        endpoints.len(),
        &date,
        &sysinfo::machine(),
        &systems,
    );
    if let Some(out) = out {
        std::fs::create_dir_all(out)?;
        write_report(out, &params, endpoints.len(), &systems)?;
        let ok: Vec<(String, &Summary)> = systems
            .iter()
            .filter_map(|(n, r)| r.as_ref().ok().map(|s| (n.clone(), s)))
            .collect();
        write_plots(out, &ok)?;
    }
    Ok(md)
}
