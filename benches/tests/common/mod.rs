//! Checks shared by the harness's smoke tests: one system's summary in a report.

use serde_json::Value;

/// `systems.<sys>` of `report`: present, every field of `fields` a finite number >= 0, some
/// throughput, and no failed request (`context` names what to print on failure).
pub fn check_summary<'a>(
    report: &'a Value,
    sys: &str,
    fields: &[&str],
    context: &str,
) -> &'a Value {
    let s = &report["systems"][sys];
    assert!(s.is_object(), "systems.{sys} missing: {report:#}");
    for f in [
        "throughput_ops",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
    ]
    .iter()
    .chain(fields)
    {
        let v = s[*f].as_f64();
        assert!(
            v.is_some_and(|v| v.is_finite() && v >= 0.0),
            "systems.{sys}.{f} = {:?}",
            s[*f]
        );
    }
    assert!(
        s["throughput_ops"].as_f64().is_some_and(|t| t > 0.0),
        "{sys}: no throughput: {s:#}"
    );
    assert_eq!(
        s["errors"].as_u64(),
        Some(0),
        "{sys}: errors in {:#}",
        s[context]
    );
    s
}
