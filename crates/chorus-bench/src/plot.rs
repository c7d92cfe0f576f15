//! `chorus bench --plot OUT.svg`: time to first audio (p50 solid, p95 dashed, log scale) and throughput (audio
//! seconds per second) against concurrency (or arrival rate), one colour per series. Hand-written SVG.

use std::fmt::Write as _;

use crate::stats::LevelSummary;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 470.0;
const TOP: f64 = 100.0;
const BOTTOM: f64 = 400.0;
const LEFT_PANEL: (f64, f64) = (80.0, 470.0);
const RIGHT_PANEL: (f64, f64) = (580.0, 970.0);
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Numbers as axis labels: no trailing zeros.
fn tick_label(v: f64) -> String {
    if v >= 1000.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A linear axis from 0 to a round maximum, with its ticks.
fn linear_ticks(max: f64) -> (f64, Vec<f64>) {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| s * 5.0 >= max).unwrap_or(10.0 * mag);
    let top = (max / step).ceil() * step;
    let n = (top / step).round() as usize;
    (top, (0..=n).map(|i| i as f64 * step).collect())
}

/// A log axis over whole decades covering `[lo, hi]`, with ticks at 1, 2 and 5 of each decade.
fn log_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let (lo, hi) = if lo > 0.0 && hi >= lo && hi.is_finite() { (lo, hi) } else { (1.0, 10.0) };
    let a = lo.log10().floor() as i32;
    let mut b = hi.log10().ceil() as i32;
    if b <= a {
        b = a + 1;
    }
    let mut ticks = Vec::new();
    for e in a..=b {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v <= 10f64.powi(b) * 1.000_001 {
                ticks.push(v);
            }
        }
    }
    (10f64.powi(a), 10f64.powi(b), ticks)
}

/// Positions of the x values: log2 spacing when all are positive, else linear.
struct XAxis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl XAxis {
    fn new(series: &[(String, Vec<LevelSummary>)]) -> Self {
        let mut xs: Vec<f64> = series.iter().flat_map(|(_, l)| l.iter().map(LevelSummary::x)).collect();
        xs.retain(|x| x.is_finite());
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let log = xs.iter().all(|&x| x > 0.0);
        let f = |x: f64| if log { x.log2() } else { x };
        let lo = xs.first().map_or(0.0, |&x| f(x));
        let hi = xs.last().map_or(1.0, |&x| f(x));
        Self { lo, hi, log, ticks: xs }
    }

    fn pos(&self, x: f64, (left, right): (f64, f64)) -> f64 {
        let v = if self.log { x.log2() } else { x };
        let pad = 20.0;
        if (self.hi - self.lo).abs() < 1e-12 {
            return (left + right) / 2.0;
        }
        left + pad + (v - self.lo) / (self.hi - self.lo) * (right - left - 2.0 * pad)
    }
}

fn polyline(out: &mut String, points: &[(f64, f64)], colour: &str, dashed: bool) {
    if points.is_empty() {
        return;
    }
    let pts: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let dash = if dashed { " stroke-dasharray=\"6 4\"" } else { "" };
    let _ = writeln!(
        out,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
        pts.join(" ")
    );
    for (x, y) in points {
        if dashed {
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" fill=\"white\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
                x - 3.5,
                y - 3.5
            );
        } else {
            let _ = writeln!(out, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{colour}\"/>");
        }
    }
}

fn frame(out: &mut String, (left, right): (f64, f64), x: &XAxis, x_title: &str, y_title: &str) {
    let _ = writeln!(
        out,
        "<rect x=\"{left}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        right - left,
        BOTTOM - TOP
    );
    for &t in &x.ticks {
        let px = x.pos(t, (left, right));
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{BOTTOM}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"#444\"/>",
            BOTTOM + 5.0
        );
        let _ = writeln!(
            out,
            "<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            BOTTOM + 20.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (left + right) / 2.0,
        BOTTOM + 42.0,
        escape(x_title)
    );
    let _ = writeln!(
        out,
        "<text transform=\"translate({:.1},{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        left - 55.0,
        (TOP + BOTTOM) / 2.0,
        escape(y_title)
    );
}

fn y_tick(out: &mut String, (left, right): (f64, f64), py: f64, label: &str) {
    let _ =
        writeln!(out, "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{right}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>");
    let _ =
        writeln!(out, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>", left - 6.0, py + 4.0);
}

/// The SVG of one or several series (label, levels sorted by x).
pub fn svg(series: &[(String, Vec<LevelSummary>)]) -> String {
    let x = XAxis::new(series);
    let open = series.iter().flat_map(|(_, l)| l).any(|l| l.mode == "open");
    let x_title = if open { "arrivals per second (open loop)" } else { "concurrent streams (closed loop)" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">Time to first audio and throughput against load</text>",
        WIDTH / 2.0
    );
    // Legend: one entry per series, then the line styles.
    let mut lx = 80.0;
    for (i, (label, _)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(out, "<rect x=\"{lx}\" y=\"40\" width=\"14\" height=\"10\" fill=\"{colour}\"/>");
        let _ = writeln!(out, "<text x=\"{}\" y=\"50\">{}</text>", lx + 20.0, escape(label));
        lx += 40.0 + 7.0 * label.chars().count() as f64;
    }
    let _ = writeln!(
        out,
        "<text x=\"80\" y=\"72\" fill=\"#444\">TTFA: solid line p50, dashed line p95 (log scale). Throughput: seconds of \
         audio delivered per second, each level marked with its gap-free rate (streams with no underrun; red below \
         100%).</text>"
    );

    // Left: TTFA.
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, l)| l.iter().flat_map(|l| [l.ttfa_p50_ms, l.ttfa_p95_ms]))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (ylo, yhi, ticks) = log_ticks(lo, hi);
    let ypos = |v: f64| BOTTOM - (v.log10() - ylo.log10()) / (yhi.log10() - ylo.log10()) * (BOTTOM - TOP);
    for t in ticks {
        y_tick(&mut out, LEFT_PANEL, ypos(t), &tick_label(t));
    }
    frame(&mut out, LEFT_PANEL, &x, x_title, "time to first audio (ms)");
    for (i, (_, levels)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        for (dashed, get) in [
            (false, (|l: &LevelSummary| l.ttfa_p50_ms) as fn(&LevelSummary) -> f64),
            (true, |l| l.ttfa_p95_ms),
        ] {
            let pts: Vec<(f64, f64)> = levels
                .iter()
                .filter(|l| get(l).is_finite() && get(l) > 0.0)
                .map(|l| (x.pos(l.x(), LEFT_PANEL), ypos(get(l))))
                .collect();
            polyline(&mut out, &pts, colour, dashed);
        }
    }

    // Right: throughput.
    let max = series.iter().flat_map(|(_, l)| l.iter().map(|l| l.audio_s_per_s)).fold(0.0, f64::max);
    let (top, ticks) = linear_ticks(max);
    let ypos = |v: f64| BOTTOM - v / top * (BOTTOM - TOP);
    for t in ticks {
        y_tick(&mut out, RIGHT_PANEL, ypos(t), &tick_label(t));
    }
    frame(&mut out, RIGHT_PANEL, &x, x_title, "audio seconds per second");
    for (i, (_, levels)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, f64)> = levels
            .iter()
            .filter(|l| l.audio_s_per_s.is_finite())
            .map(|l| (x.pos(l.x(), RIGHT_PANEL), ypos(l.audio_s_per_s)))
            .collect();
        polyline(&mut out, &pts, colour, false);
        for l in levels.iter().filter(|l| l.audio_s_per_s.is_finite() && l.gap_free_rate.is_finite()) {
            let (px, py) = (x.pos(l.x(), RIGHT_PANEL), ypos(l.audio_s_per_s));
            let fill = if l.gap_free_rate >= 1.0 { colour } else { "#d00" };
            let _ = writeln!(
                out,
                "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{fill}\">{}</text>",
                py - 6.0 - 11.0 * i as f64,
                crate::stats::gap_free_percent(l.gap_free_rate)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(c: usize, p50: f64, p95: f64, thr: f64) -> LevelSummary {
        LevelSummary {
            concurrency: c,
            ttfa_p50_ms: p50,
            ttfa_p95_ms: p95,
            audio_s_per_s: thr,
            gap_free_rate: if c >= 4 { 0.75 } else { 1.0 },
            ..Default::default()
        }
    }

    #[test]
    fn axes_are_round() {
        let (top, ticks) = linear_ticks(37.0);
        assert_eq!(top, 40.0);
        assert_eq!(ticks, [0.0, 10.0, 20.0, 30.0, 40.0]);
        let (lo, hi, ticks) = log_ticks(23.0, 1800.0);
        assert_eq!((lo, hi), (10.0, 10000.0));
        assert_eq!(ticks.first(), Some(&10.0));
        assert_eq!(ticks.last(), Some(&10000.0));
    }

    #[test]
    fn the_plot_has_a_line_per_series_and_percentile() {
        let series = vec![
            (
                "chorus <ws>".to_owned(),
                vec![level(1, 40.0, 50.0, 5.0), level(2, 45.0, 60.0, 9.0), level(4, 50.0, 80.0, 15.0)],
            ),
            ("piper".to_owned(), vec![level(1, 400.0, 500.0, 4.0), level(2, f64::NAN, f64::NAN, 0.0)]),
        ];
        let s = svg(&series);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        // Two TTFA lines per series and one throughput line each.
        assert_eq!(s.matches("<polyline").count(), 6);
        assert!(s.contains("chorus &lt;ws&gt;"));
        assert!(!s.contains("NaN"));
        // Every level with streams carries its gap-free rate; the one below 100% is red.
        assert_eq!(s.matches(">100%</text>").count(), 4);
        assert!(s.contains("fill=\"#d00\">75.0%</text>"));
        // One x tick per distinct concurrency in each panel.
        for c in ["1", "2", "4"] {
            assert!(s.matches(&format!(">{c}</text>")).count() >= 2, "{c}");
        }
    }
}
