//! `chorus smoke --golive NODE_TYPE`: the go-live checks as one command. After the smoke checks (with the metric
//! names), a short closed-loop load benchmark (`/tts/bytes`, medium texts, clients started over 2 s) whose TTFA p95
//! and gap-free rate must be within the figures documented for the node type (docs/operations.md, "Go-live
//! checks"; the table there is checked against [`NODE_TYPES`] by a test).

use std::path::Path;

use crate::client::Protocol;
use crate::load::LoadArgs;
use crate::stats::LevelSummary;
use crate::{BenchError, Result};

/// What one worker node type must deliver in the go-live benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeFigures {
    /// The `--golive` value.
    pub name: &'static str,
    /// What the node is.
    pub node: &'static str,
    /// Concurrent streams of the benchmark (what one such worker serves comfortably).
    pub concurrency: usize,
    /// The TTFA p95 the level must stay at or under, in ms.
    pub ttfa_p95_max_ms: f64,
    /// The share of requests that must complete without error and without a single underrun.
    pub gap_free_min: f64,
    /// Where the figure comes from (docs/benchmarks.md).
    pub measured: &'static str,
}

/// The documented figures, with headroom over what docs/benchmarks.md measured on each node (a busy node still
/// passes; a misconfigured one, a CPU pool scheduled on the wrong nodes or a starved worker does not).
pub const NODE_TYPES: [NodeFigures; 3] = [
    NodeFigures {
        name: "cpu-2",
        node: "2 vCPU (one worker pod with requests.cpu 2)",
        concurrency: 4,
        ttfa_p95_max_ms: 450.0,
        gap_free_min: 0.95,
        measured: "benchmarks 3: p95 251-269 ms at 4 streams, no underrun",
    },
    NodeFigures {
        name: "cpu-16",
        node: "16 CPU cores (one worker, one session per core)",
        concurrency: 32,
        ttfa_p95_max_ms: 800.0,
        gap_free_min: 0.95,
        measured: "benchmarks 4.1: p95 496 ms at 32 streams, no underrun",
    },
    NodeFigures {
        name: "gpu-h100",
        node: "one NVIDIA H100 (batches of up to 16)",
        concurrency: 32,
        ttfa_p95_max_ms: 1100.0,
        gap_free_min: 0.95,
        measured: "benchmarks 4.1: p95 692 ms at 32 streams, no underrun",
    },
];

/// The figures of a node type, by name.
pub fn figures(name: &str) -> Result<NodeFigures> {
    NODE_TYPES.iter().copied().find(|f| f.name == name).ok_or_else(|| {
        let known: Vec<&str> = NODE_TYPES.iter().map(|f| f.name).collect();
        BenchError::Usage(format!("unknown node type '{name}' (known: {})", known.join(", ")))
    })
}

/// Requests that completed without error and without an underrun, over all requests of the level.
pub fn gap_free_rate(level: &LevelSummary) -> f64 {
    if level.requests == 0 {
        return 0.0;
    }
    let clean = level.requests.saturating_sub(level.errors).saturating_sub(level.underrun_streams);
    clean as f64 / level.requests as f64
}

/// The verdict on one level: `Ok(summary line)` inside the range, else `Err(what is outside)`.
pub fn judge(figures: &NodeFigures, level: &LevelSummary) -> Result<String, String> {
    let rate = gap_free_rate(level);
    let line = format!(
        "{} requests at {} streams, {} errors, TTFA p95 {:.0} ms (at most {:.0}), gap-free {:.1}% (at least {:.1}%)",
        level.requests,
        level.concurrency,
        level.errors,
        level.ttfa_p95_ms,
        figures.ttfa_p95_max_ms,
        rate * 100.0,
        figures.gap_free_min * 100.0
    );
    let mut outside = Vec::new();
    if level.requests == 0 {
        outside.push("no request finished".to_owned());
    }
    // NaN (no TTFA measured) is outside the range too.
    if level.ttfa_p95_ms.is_nan() || level.ttfa_p95_ms > figures.ttfa_p95_max_ms {
        outside
            .push(format!("TTFA p95 {:.0} ms is above {:.0} ms", level.ttfa_p95_ms, figures.ttfa_p95_max_ms));
    }
    if rate < figures.gap_free_min {
        outside.push(format!(
            "gap-free rate {:.1}% is below {:.1}%",
            rate * 100.0,
            figures.gap_free_min * 100.0
        ));
    }
    if outside.is_empty() { Ok(line) } else { Err(format!("{line}: {}", outside.join("; "))) }
}

/// Runs the go-live benchmark against `url` and judges it.
pub fn bench(
    url: &str,
    api_key: Option<&str>,
    voice: &str,
    model_id: &str,
    figures: &NodeFigures,
    seconds: f64,
) -> Result<String> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(BenchError::Usage("--golive-seconds must be a positive number of seconds".into()));
    }
    let args = LoadArgs {
        protocol: Some(Protocol::Bytes),
        concurrency: Some(vec![figures.concurrency]),
        duration: Some(seconds),
        texts: Some("medium".into()),
        model_id: model_id.to_owned(),
        timeout: 60.0,
        ramp: 2.0,
        warmup: 1,
        seed: 1,
        label: Some(format!("go-live {}", figures.name)),
        ..LoadArgs::default()
    };
    let json = std::env::temp_dir().join(format!("chorus-golive-{}.json", std::process::id()));
    let measured = crate::load::run(url, api_key, voice, Some(&json), &args).and_then(|()| read_level(&json));
    let _ = std::fs::remove_file(&json);
    judge(figures, &measured?).map_err(BenchError::Failed)
}

fn read_level(path: &Path) -> Result<LevelSummary> {
    let levels: Vec<LevelSummary> = crate::load::read_json(path, "the benchmark's JSON")?;
    levels.into_iter().next().ok_or_else(|| BenchError::Measure("the benchmark measured no level".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(requests: usize, errors: usize, underrun_streams: usize, p95: f64) -> LevelSummary {
        LevelSummary {
            concurrency: 4,
            requests,
            errors,
            underrun_streams,
            ttfa_p95_ms: p95,
            ..LevelSummary::default()
        }
    }

    #[test]
    fn gap_free_counts_errors_and_underrun_streams() {
        assert!((gap_free_rate(&level(40, 0, 0, 1.0)) - 1.0).abs() < 1e-9);
        assert!((gap_free_rate(&level(40, 1, 1, 1.0)) - 0.95).abs() < 1e-9);
        assert!(gap_free_rate(&level(0, 0, 0, 1.0)).abs() < 1e-9);
    }

    #[test]
    fn judge_passes_inside_and_fails_outside_the_range() {
        let f = figures("cpu-2").unwrap();
        assert!(judge(&f, &level(40, 0, 0, 300.0)).is_ok());
        let slow = judge(&f, &level(40, 0, 0, 451.0)).unwrap_err();
        assert!(slow.contains("TTFA p95 451 ms is above 450 ms"), "{slow}");
        let gaps = judge(&f, &level(40, 0, 3, 300.0)).unwrap_err();
        assert!(gaps.contains("gap-free rate 92.5% is below 95.0%"), "{gaps}");
        assert!(judge(&f, &level(0, 0, 0, f64::NAN)).unwrap_err().contains("no request finished"));
        assert!(judge(&f, &level(40, 0, 0, f64::NAN)).is_err(), "no TTFA is not inside the range");
    }

    #[test]
    fn unknown_node_types_are_refused_with_the_known_ones() {
        let e = figures("cpu-3").unwrap_err().to_string();
        assert_eq!(e, "unknown node type 'cpu-3' (known: cpu-2, cpu-16, gpu-h100)");
    }

    /// docs/operations.md, "Go-live checks", documents exactly these figures.
    #[test]
    fn the_documented_table_is_this_one() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md"))
            .unwrap();
        for f in NODE_TYPES {
            let row = format!(
                "| `{}` | {} | {} | {:.0} ms | {:.0}% | {} |",
                f.name,
                f.node,
                f.concurrency,
                f.ttfa_p95_max_ms,
                f.gap_free_min * 100.0,
                f.measured
            );
            assert!(doc.contains(&row), "docs/operations.md lacks the row\n{row}");
        }
    }
}
