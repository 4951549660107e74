//! Latency recording (HDR histogram) and the summary report of one run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest trackable latency: 1 hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;
/// Distinct error messages kept per run (the rest are counted under "other").
const MAX_ERROR_KINDS: usize = 20;

/// Latencies of one client (or, merged, of a whole run), in microseconds, 3 significant digits.
#[derive(Clone, Debug)]
pub struct Recorder {
    hist: Histogram<u64>,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
            errors: 0,
            error_kinds: BTreeMap::new(),
        }
    }

    /// A successful request that took `d`.
    pub fn ok(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_US);
        self.hist.saturating_record(us);
    }

    /// A failed request; `what` is the error text (counted per distinct text).
    pub fn err(&mut self, what: &str) {
        self.errors += 1;
        let key = if self.error_kinds.len() < MAX_ERROR_KINDS || self.error_kinds.contains_key(what)
        {
            what.to_string()
        } else {
            "other".to_string()
        };
        *self.error_kinds.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.hist
            .add(&other.hist)
            .expect("histograms with equal bounds");
        self.errors += other.errors;
        for (k, v) in &other.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += v;
        }
    }

    /// Latency at quantile `q` (0..=1) in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// Successful requests slower than `d`.
    pub fn count_above(&self, d: Duration) -> u64 {
        let us = d.as_micros() as u64;
        if self.hist.is_empty() || self.hist.max() <= us {
            return 0;
        }
        self.hist
            .count_between(self.hist.next_non_equivalent(us), self.hist.max())
    }

    pub fn successes(&self) -> u64 {
        self.hist.len()
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Summarize a run that took `elapsed` wall-clock time.
    pub fn report(&self, name: &str, elapsed: Duration) -> Report {
        let h = &self.hist;
        let ms = |us: u64| us as f64 / 1000.0;
        let ok = h.len();
        let secs = elapsed.as_secs_f64();
        let (min, mean, stddev, max) = if ok == 0 {
            (0.0, 0.0, 0.0, 0.0)
        } else {
            (
                ms(h.min()),
                h.mean() / 1000.0,
                h.stdev() / 1000.0,
                ms(h.max()),
            )
        };
        let q = |p: f64| {
            if ok == 0 {
                0.0
            } else {
                ms(h.value_at_quantile(p))
            }
        };
        Report {
            name: name.to_string(),
            requests: ok + self.errors,
            ok,
            errors: self.errors,
            error_kinds: self.error_kinds.clone(),
            elapsed_s: secs,
            throughput_ops: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            min_ms: min,
            mean_ms: mean,
            stddev_ms: stddev,
            p10_ms: q(0.10),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: max,
        }
    }
}

/// Summary of one run. Latencies are in milliseconds; throughput counts successful requests
/// per second of wall-clock time (first request sent → last response received).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub name: String,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub throughput_ops: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub stddev_ms: f64,
    pub p10_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Report {
    /// Human-readable summary in the spirit of etcd's `benchmark` output.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Summary ({}):", self.name);
        let _ = writeln!(s, "  Total:        {:.4} secs.", self.elapsed_s);
        let _ = writeln!(
            s,
            "  Requests:     {} ({} ok, {} errors)",
            self.requests, self.ok, self.errors
        );
        let _ = writeln!(s, "  Slowest:      {:.4} ms.", self.max_ms);
        let _ = writeln!(s, "  Fastest:      {:.4} ms.", self.min_ms);
        let _ = writeln!(s, "  Average:      {:.4} ms.", self.mean_ms);
        let _ = writeln!(s, "  Stddev:       {:.4} ms.", self.stddev_ms);
        let _ = writeln!(s, "  Requests/sec: {:.1}", self.throughput_ops);
        let _ = writeln!(s, "\nLatency distribution:");
        for (p, v) in [
            ("10", self.p10_ms),
            ("50", self.p50_ms),
            ("90", self.p90_ms),
            ("95", self.p95_ms),
            ("99", self.p99_ms),
            ("99.9", self.p999_ms),
        ] {
            let _ = writeln!(s, "  {p}% in {v:.4} ms.");
        }
        let _ = writeln!(s, "  max in {:.4} ms.", self.max_ms);
        if !self.error_kinds.is_empty() {
            let _ = writeln!(s, "\nErrors:");
            for (k, v) in &self.error_kinds {
                let _ = writeln!(s, "  {v} x {k}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_errors() {
        let mut a = Recorder::new();
        for i in 1..=1000u64 {
            a.ok(Duration::from_micros(i * 1000));
        }
        let mut b = Recorder::new();
        b.err("boom");
        b.err("boom");
        a.merge(&b);
        let r = a.report("t", Duration::from_secs(2));
        assert_eq!((r.requests, r.ok, r.errors), (1002, 1000, 2));
        assert_eq!(r.error_kinds["boom"], 2);
        assert!((r.throughput_ops - 500.0).abs() < 1e-9);
        assert!((r.p50_ms - 500.0).abs() < 1.0, "{}", r.p50_ms);
        assert!((r.p99_ms - 990.0).abs() < 1.0, "{}", r.p99_ms);
        assert!((r.max_ms - 1000.0).abs() < 1.0, "{}", r.max_ms);
        assert!(r.to_text().contains("Requests/sec: 500.0"));
    }

    #[test]
    fn quantiles_and_stalls() {
        let mut a = Recorder::new();
        for i in 1..=100u64 {
            a.ok(Duration::from_millis(i));
        }
        assert_eq!(a.count_above(Duration::from_millis(90)), 10);
        assert_eq!(a.count_above(Duration::from_secs(1)), 0);
        assert!((a.quantile_ms(0.5) - 50.0).abs() < 0.5);
        assert_eq!(Recorder::new().quantile_ms(0.99), 0.0);
    }

    #[test]
    fn empty_report_is_zero() {
        let r = Recorder::new().report("t", Duration::ZERO);
        assert_eq!(r.ok, 0);
        assert_eq!(r.throughput_ops, 0.0);
        assert_eq!(r.p99_ms, 0.0);
    }
}
