//! The Markdown form of a scenario report: setup, a summary table per system, the ratios,
//! and one row per phase and system.

use std::fmt::Write as _;

use anyhow::Result;

use super::Summary;
use crate::scenario::{Params, ScenarioId};

/// Operations per second: whole numbers, except below 10 (LISTs of 100k objects).
fn ops(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "n/a".into())
}

pub fn render(
    p: &Params,
    members: usize,
    date: &str,
    machine: &str,
    systems: &[(String, Result<Summary>)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# shale-bench {}\n", p.scenario.title());
    let _ = writeln!(s, "- date: {date}");
    let _ = writeln!(s, "- machine: {machine}");
    let _ = writeln!(s, "- members per system: {members}");
    let _ = writeln!(
        s,
        "- params: objects {}, value {} B, namespaces {}, rates {:?}, clients {}, watchers {:?} ({} per stream), phase {} s, conns {}",
        p.objects, p.value_size, p.namespaces, p.rates, p.clients, p.watchers,
        p.watchers_per_stream, p.phase_secs, p.conns
    );
    if p.tls {
        let _ = writeln!(
            s,
            "- TLS: the load generator connects over TLS; `compare --tls` starts every member with \
             client and peer mTLS (`--client-cert-auth`, `--peer-client-cert-auth`, the same RSA 2048 \
             certificates for both systems)"
        );
    }
    if p.quick {
        let _ = writeln!(
            s,
            "- **--quick run: tiny sizes, numbers are not meaningful**"
        );
    }
    let _ = writeln!(
        s,
        "- load generator and servers share the machine's cores; systems run one after the other"
    );
    let _ = writeln!(s, "\n## Summary\n");
    let _ = writeln!(
        s,
        "| system | version | headline phase | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | watch events | lost | dup | out of order | lag p99 ms | peak RSS MiB | CPU ms / 1k ops | disk MiB |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, r) in systems {
        match r {
            Ok(x) => {
                let _ = writeln!(
                    s,
                    "| {name} | `{}` | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                    x.version.replace('|', "/"),
                    x.headline_phase,
                    ops(x.throughput_ops),
                    x.p50_ms,
                    x.p99_ms,
                    x.p999_ms,
                    x.max_ms,
                    x.errors,
                    x.watch_events,
                    x.lost_events,
                    x.duplicate_events,
                    x.out_of_order_events,
                    opt(x.watch_lag_p99_ms, 2),
                    opt(x.peak_rss_mib, 0),
                    opt(x.server_cpu_ms_per_1k_ops, 1),
                    x.disk_mib
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {name} | **failed** | {} |||||||||||||||",
                    format!("{e:#}")
                        .lines()
                        .next()
                        .unwrap_or("")
                        .replace('|', "/")
                );
            }
        }
    }
    let get = |n: &str| {
        systems
            .iter()
            .find(|(m, _)| m == n)
            .and_then(|(_, r)| r.as_ref().ok())
    };
    if let (Some(e), Some(x)) = (get("etcd"), get("shale")) {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let _ = writeln!(
            s,
            "\nshale / etcd (headline phase): throughput **{:.2}x**, p99 {:.2}x, peak RSS {:.2}x",
            div(x.throughput_ops, e.throughput_ops),
            div(x.p99_ms, e.p99_ms),
            div(x.peak_rss_mib.unwrap_or(0.0), e.peak_rss_mib.unwrap_or(0.0))
        );
    }
    if p.scenario == ScenarioId::S7 {
        s.push_str(&super::s7_table::render(p, systems));
    }
    let _ = writeln!(s, "\n## Phases\n");
    let _ = writeln!(
        s,
        "| phase | system | ok | errors | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | watchers | events | lost | dup | ooo | lag p50 ms | lag p99 ms | CPU ms / 1k ops | notes |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let n_phases = systems
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|x| x.phases.len())
        .max()
        .unwrap_or(0);
    for i in 0..n_phases {
        for (name, r) in systems {
            let Some(ph) = r.as_ref().ok().and_then(|x| x.phases.get(i)) else {
                continue;
            };
            let t = &ph.load.report;
            let mut notes: Vec<String> = ph
                .extra
                .iter()
                .map(|(k, v)| format!("{k} {v:.1}"))
                .collect();
            if let Some(why) = &ph.unsupported {
                notes.insert(0, format!("unsupported: {why}"));
            }
            if let Some(b) = &ph.background {
                notes.push(format!(
                    "background writes {:.0}/s p99 {:.2} ms, {} errors",
                    b.throughput_ops, b.p99_ms, b.errors
                ));
            }
            if let Some(w) = ph.watch.as_ref().filter(|w| w.behind_at_end > 0) {
                notes.push(format!(
                    "{} watchers behind at the drain deadline, {} events undelivered",
                    w.behind_at_end, w.undelivered_at_deadline
                ));
            }
            if ph.load.conflicts > 0 {
                notes.push(format!("conflicts {}", ph.load.conflicts));
            }
            if !t.error_kinds.is_empty() {
                notes.push(format!("errors {:?}", t.error_kinds));
            }
            let (w, ev, lost, dup, ooo, l50, l99) = match &ph.watch {
                Some(w) => (
                    w.watchers.to_string(),
                    w.events.to_string(),
                    w.lost_events.to_string(),
                    w.duplicate_events.to_string(),
                    w.out_of_order_events.to_string(),
                    format!("{:.2}", w.lag_p50_ms),
                    format!("{:.2}", w.lag_p99_ms),
                ),
                None => Default::default(),
            };
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {w} | {ev} | {lost} | {dup} | {ooo} | {l50} | {l99} | {} | {} |",
                t.name,
                t.ok,
                t.errors,
                ops(t.throughput_ops),
                t.p50_ms,
                t.p99_ms,
                t.p999_ms,
                t.max_ms,
                opt(ph.server_cpu_ms_per_1k_ops, 1),
                notes.join("; ").replace('|', "/")
            );
        }
    }
    let _ = writeln!(
        s,
        "\nOpen-loop latency is measured from each operation's scheduled send time. Watch lag = \
         event received minus write acknowledged (0 if the event came first). Plots: \
         `latency_cdf.svg`, `throughput.svg`, `rss.svg`, `disk.svg`."
    );
    for (name, r) in systems {
        if let Err(e) = r {
            let _ = writeln!(s, "\n## {name} failed\n\n```\n{e:#}\n```");
        }
    }
    s
}
