//! Hand-written SVG line charts (no plotting dependency): one chart = a title, axis labels
//! and several named series of (x, y) points drawn as polylines over a grid with ticks.
//! The x axis may be the "nines" axis of a latency percentile plot: x = -log10(1 - q), so
//! 90%, 99%, 99.9% are evenly spaced, as in HdrHistogram's plots.

use std::fmt::Write as _;

const W: f64 = 760.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 150.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One line.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The x axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    Linear,
    /// Percentile axis: points carry x = quantile in [0, 1).
    Nines,
}

fn nines(q: f64) -> f64 {
    -(1.0 - q.min(0.99999)).log10()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Render a chart as a standalone SVG document.
pub fn chart(title: &str, x_label: &str, y_label: &str, x: XAxis, series: &[Series]) -> String {
    let tx = |v: f64| if x == XAxis::Nines { nines(v) } else { v };
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let mut y1 = 0.0f64;
    for &(px, py) in pts() {
        x0 = x0.min(tx(px));
        x1 = x1.max(tx(px));
        y1 = y1.max(py);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x == XAxis::Nines {
        x0 = 0.0;
        x1 = x1.max(2.0).ceil();
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.08 };
    let sx = |v: f64| L + (v - x0) / (x1 - x0) * (W - L - R);
    let sy = |v: f64| H - B - v / y1 * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (W - R + L) / 2.0,
        esc(title)
    );
    // y grid
    let step = nice_step(y1);
    let mut v = 0.0;
    while v <= y1 {
        let y = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0,
            fmt_num(v)
        );
        v += step;
    }
    // x ticks
    if x == XAxis::Nines {
        for n in 0..=(x1 as usize) {
            let label = match n {
                0 => "0%".to_string(),
                1 => "90%".to_string(),
                2 => "99%".to_string(),
                n => format!("99.{}%", "9".repeat(n - 2)),
            };
            tick(&mut s, sx(n as f64), &label);
        }
    } else {
        let step = nice_step(x1 - x0);
        let mut v = (x0 / step).ceil() * step;
        while v <= x1 {
            tick(&mut s, sx(v), &fmt_num(v));
            v += step;
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        W - L - R,
        H - T - B
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (W - R + L) / 2.0,
        H - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        H / 2.0,
        H / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = se
            .points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", sx(tx(px)), sy(py)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{}"/>"#,
            path.join(" ")
        );
        let ly = T + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            W - R + 10.0,
            W - R + 30.0,
            W - R + 36.0,
            ly + 4.0,
            esc(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn tick(s: &mut String, x: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        H - B,
        H - B + 16.0,
        esc(label)
    );
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Quantiles for a percentile plot: dense up to 99.99%.
pub fn plot_quantiles() -> Vec<f64> {
    let mut q = Vec::new();
    let mut n = 0.0;
    while n <= 4.0 {
        q.push(1.0 - 10f64.powf(-n));
        n += 0.05;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_looking_svg() {
        let s = chart(
            "t <1>",
            "x",
            "y",
            XAxis::Nines,
            &[Series {
                name: "etcd".into(),
                points: plot_quantiles()
                    .into_iter()
                    .map(|q| (q, q * 10.0))
                    .collect(),
            }],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t &lt;1&gt;") && s.contains("99.9%") && s.contains("polyline"));
        let e = chart("empty", "x", "y", XAxis::Linear, &[]);
        assert!(e.contains("</svg>"));
        assert!(!e.contains("NaN"));
    }
}
