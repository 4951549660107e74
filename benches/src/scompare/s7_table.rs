//! The S7 (scale) table of a report: one row per figure the issue asks for (load rate, RSS,
//! disk, each LIST shape, each restart), one column per system, and shale / etcd where both
//! ran. Figures a system did not produce (a skipped LIST, restarts under `run`) read "n/a"
//! or carry their reason, never a zero.

use std::fmt::Write as _;

use anyhow::Result;

use super::Summary;
use crate::scenario::s7::keys;
use crate::scenario::Params;

/// A row's figure and note for one system.
type Cell = (Option<f64>, Option<String>);

/// One row: label, per-system value and note, decimals shown.
struct Row {
    label: String,
    values: Vec<Option<f64>>,
    notes: Vec<Option<String>>,
    prec: usize,
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The `## S7: scale` section for `systems` (failed systems are left out here; the summary
/// above shows their error).
pub fn render(p: &Params, systems: &[(String, Result<Summary>)]) -> String {
    let ok: Vec<(&str, &Summary)> = systems
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|s| (n.as_str(), s)))
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |label: &str, prec: usize, f: &dyn Fn(&Summary) -> Cell| {
        let (values, notes) = ok.iter().map(|(_, s)| f(s)).unzip();
        rows.push(Row {
            label: label.to_string(),
            values,
            notes,
            prec,
        });
    };
    let extra = |k: &'static str| move |s: &Summary| (s.extra.get(k).copied(), None);
    row("objects loaded", 0, &extra(keys::LOADED));
    row("load rate, puts/s", 0, &extra(keys::LOAD_RATE));
    row("load: put p99 ms", 1, &|s: &Summary| {
        (s.phases.first().map(|p| p.load.report.p99_ms), None)
    });
    row("load: server CPU ms / 1k puts", 1, &|s: &Summary| {
        (
            s.phases.first().and_then(|p| p.server_cpu_ms_per_1k_ops),
            None,
        )
    });
    row("RSS after load, MiB", 0, &extra(keys::RSS_AFTER_LOAD));
    row("peak RSS (whole run), MiB", 0, &|s: &Summary| {
        (s.peak_rss_mib, None)
    });
    row("data dir after load, MiB", 0, &extra(keys::DISK_AFTER_LOAD));
    row("live keys + values, MiB", 0, &extra(keys::LIVE_MIB));
    for shape in ["count-only", "keys-only", "unpaged"] {
        let name = format!("list {shape}");
        let find = move |s: &Summary| {
            s.phases
                .iter()
                .find(|p| p.load.report.name == name)
                .cloned()
        };
        let f2 = find.clone();
        row(
            &format!("LIST {shape}: median ms"),
            1,
            &move |s: &Summary| match find(s) {
                Some(p) if p.unsupported.is_some() => (None, p.unsupported.clone()),
                Some(p) if p.load.report.ok > 0 => (Some(p.load.report.p50_ms), None),
                Some(p) => (None, Some(format!("{} errors", p.load.report.errors))),
                None => (None, None),
            },
        );
        if shape != "count-only" {
            row(
                &format!("LIST {shape}: response MiB"),
                1,
                &move |s: &Summary| match f2(s) {
                    Some(p) => (
                        p.extra
                            .get("response_mib")
                            .or(p.extra.get("estimated_response_mib"))
                            .copied(),
                        p.unsupported.as_ref().map(|_| "estimated".to_string()),
                    ),
                    None => (None, None),
                },
            );
        }
    }
    for i in 0..p.restarts {
        row(
            &format!("restart {}: kill -9 to listening, s", i + 1),
            2,
            &move |s: &Summary| (s.restarts.get(i).map(|r| r.listening_s), None),
        );
        row(
            &format!("restart {}: kill -9 to linearizable read, s", i + 1),
            2,
            &move |s: &Summary| {
                (
                    s.restarts.get(i).map(|r| r.ready_s),
                    s.restart_error.clone().filter(|_| i == 0),
                )
            },
        );
    }
    row("RSS after last restart (ready), MiB", 0, &|s: &Summary| {
        (s.restarts.last().and_then(|r| r.rss_at_ready_mib), None)
    });

    let mut s = String::new();
    let _ = writeln!(s, "\n## S7: scale\n");
    let _ = writeln!(
        s,
        "{} pods (`/registry/pods/ns-NNN/pod-NNNNNNN-7d9f8c6b5` keys over {} namespaces) of {} B, \
         loaded with single Puts by {} clients on {} connections, each key written once; \
         LISTs sent one at a time, {} of each shape; {} kill -9 restarts.\n",
        p.objects, p.namespaces, p.value_size, p.clients, p.conns, p.list_reps, p.restarts
    );
    let names: Vec<&str> = ok.iter().map(|(n, _)| *n).collect();
    let both = names
        .iter()
        .position(|n| *n == "etcd")
        .zip(names.iter().position(|n| *n == "shale"));
    let _ = write!(s, "| figure |");
    for n in &names {
        let _ = write!(s, " {n} |");
    }
    if both.is_some() {
        let _ = write!(s, " shale / etcd |");
    }
    let _ = write!(s, "\n|---|");
    for _ in &names {
        let _ = write!(s, "---:|");
    }
    if both.is_some() {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    for r in &rows {
        let _ = write!(s, "| {} |", r.label);
        for (v, note) in r.values.iter().zip(&r.notes) {
            let cell = match (v, note) {
                (Some(_), Some(n)) => format!("{} ({n})", fmt(*v, r.prec)),
                (None, Some(n)) => n.clone(),
                _ => fmt(*v, r.prec),
            };
            let _ = write!(s, " {} |", cell.replace('|', "/"));
        }
        if let Some((e, x)) = both {
            let ratio = match (r.values[e], r.values[x]) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
                _ => String::new(),
            };
            let _ = write!(s, " {ratio} |");
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\nRestart times run from the kill to the first TCP connect on the client port \
         (listening) and to the first successful linearizable Range of a loaded key (ready), \
         polled every 10 ms. Plot: `restart.svg` (plus `rss.svg`, `disk.svg`, `throughput.svg`)."
    );
    s
}
