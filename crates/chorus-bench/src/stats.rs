//! The statistics of `chorus bench --url` load runs: percentiles, the playback simulator that counts stream
//! underruns, and the per-level summary written as JSON and as a markdown table.

use serde::{Deserialize, Deserializer, Serialize};

/// The `p`-th percentile (0..=100) of sorted samples, interpolated linearly between the closest ranks (numpy's
/// default). NaN when there are no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted {
        [] => f64::NAN,
        [only] => *only,
        _ => {
            let rank = (p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            let frac = rank - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// Audio received at one moment: `at_s` seconds after the request was sent, `bytes` bytes of audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at_s: f64,
    pub bytes: usize,
}

/// What a real-time player would have suffered on one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Underruns {
    /// Times the player ran dry before the next audio arrived.
    pub count: usize,
    /// The longest silence, in seconds (0 without underruns).
    pub worst_gap_s: f64,
}

/// Plays a stream in real time from its first audio byte, with no other buffering: each arrival adds its audio
/// to the queue; an arrival after the queue ran dry is an underrun whose gap is the silence, and playback resumes
/// from that arrival. Arrivals must be in time order; empty ones are ignored.
pub fn simulate_playback(arrivals: &[Arrival], bytes_per_s: f64) -> Underruns {
    let mut out = Underruns::default();
    // When the audio received so far finishes playing; None until the first audio.
    let mut runs_dry_at: Option<f64> = None;
    for a in arrivals.iter().filter(|a| a.bytes > 0) {
        let duration = a.bytes as f64 / bytes_per_s;
        runs_dry_at = Some(match runs_dry_at {
            None => a.at_s + duration,
            Some(dry) if a.at_s > dry => {
                out.count += 1;
                out.worst_gap_s = out.worst_gap_s.max(a.at_s - dry);
                a.at_s + duration
            }
            Some(dry) => dry + duration,
        });
    }
    out
}

/// One successful request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Send to the first audio byte.
    pub ttfa_s: f64,
    /// Send to the end of the stream.
    pub total_s: f64,
    /// Seconds of audio received.
    pub audio_s: f64,
    /// Characters of the text.
    pub chars: usize,
    pub underruns: Underruns,
}

/// Null (how JSON carries NaN) reads back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One level of a run (one concurrency, or one arrival rate): the JSON object `chorus bench --json` writes per
/// level. The first twelve fields are the contract (issue 5); the rest describe the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelSummary {
    /// Clients (closed loop), or the most requests in flight at once (open loop).
    pub concurrency: usize,
    /// Requests finished in the level, errors included.
    pub requests: usize,
    pub errors: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub ttfa_p50_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub ttfa_p95_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub ttfa_p99_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub rtf_p50: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub rtf_p95: f64,
    /// Characters of the successful requests per second of the level's wall time.
    pub chars_per_s: f64,
    /// Seconds of audio received per second of the level's wall time.
    pub audio_s_per_s: f64,
    /// Underrun events over all streams of the level.
    pub underruns: usize,
    /// The longest underrun gap of the level, in ms (0 without underruns).
    pub worst_underrun_ms: f64,

    /// Series name (`--label`, else protocol and URL).
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub protocol: String,
    /// `closed` (fixed clients) or `open` (arrivals at a rate).
    #[serde(default)]
    pub mode: String,
    /// Open loop: the arrival rate asked for, per second.
    #[serde(default)]
    pub offered_rate: Option<f64>,
    #[serde(default)]
    pub texts: String,
    /// Streams with at least one underrun.
    #[serde(default)]
    pub underrun_streams: usize,
    /// Share of the level's streams (successful requests) that played with no underrun at all, 0 to 1; NaN (null
    /// in JSON) without a stream. The headline figure: the declared capacity is the load at which it stays 1.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub gap_free_rate: f64,
    #[serde(default, deserialize_with = "nan_if_null")]
    pub ttfa_mean_ms: f64,
    #[serde(default, deserialize_with = "nan_if_null")]
    pub total_p50_ms: f64,
    /// From the level's start to the end of its last request.
    #[serde(default)]
    pub wall_s: f64,
    /// The first error message, if any.
    #[serde(default)]
    pub first_error: Option<String>,
}

impl LevelSummary {
    /// Summarizes one level's successful samples; `errors` failed requests; `wall_s` the level's duration.
    pub fn from_samples(concurrency: usize, samples: &[Sample], errors: usize, wall_s: f64) -> Self {
        let sorted = |f: fn(&Sample) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let ttfa = sorted(|s| s.ttfa_s * 1e3);
        let rtf = sorted(|s| if s.audio_s > 0.0 { s.total_s / s.audio_s } else { f64::INFINITY });
        let total = sorted(|s| s.total_s * 1e3);
        let chars: usize = samples.iter().map(|s| s.chars).sum();
        let audio: f64 = samples.iter().map(|s| s.audio_s).sum();
        let per_s = |x: f64| if wall_s > 0.0 { x / wall_s } else { 0.0 };
        Self {
            concurrency,
            requests: samples.len() + errors,
            errors,
            ttfa_p50_ms: percentile(&ttfa, 50.0),
            ttfa_p95_ms: percentile(&ttfa, 95.0),
            ttfa_p99_ms: percentile(&ttfa, 99.0),
            rtf_p50: percentile(&rtf, 50.0),
            rtf_p95: percentile(&rtf, 95.0),
            chars_per_s: per_s(chars as f64),
            audio_s_per_s: per_s(audio),
            underruns: samples.iter().map(|s| s.underruns.count).sum(),
            worst_underrun_ms: samples.iter().map(|s| s.underruns.worst_gap_s * 1e3).fold(0.0, f64::max),
            underrun_streams: samples.iter().filter(|s| s.underruns.count > 0).count(),
            gap_free_rate: if samples.is_empty() {
                f64::NAN
            } else {
                samples.iter().filter(|s| s.underruns.count == 0).count() as f64 / samples.len() as f64
            },
            ttfa_mean_ms: if ttfa.is_empty() {
                f64::NAN
            } else {
                ttfa.iter().sum::<f64>() / ttfa.len() as f64
            },
            total_p50_ms: percentile(&total, 50.0),
            wall_s,
            ..Self::default()
        }
    }

    /// The x coordinate of this level in plots: the offered rate in open loop, else the concurrency.
    pub fn x(&self) -> f64 {
        match self.offered_rate {
            Some(rate) if self.mode == "open" => rate,
            Some(_) | None => self.concurrency as f64,
        }
    }
}

/// A markdown table of one series' levels.
pub fn markdown_table(levels: &[LevelSummary]) -> String {
    let open = levels.iter().any(|l| l.mode == "open");
    let first = if open { "arrivals/s | peak in flight" } else { "concurrency" };
    let mut s = format!(
        "| {first} | requests | errors | TTFA p50 (ms) | TTFA p95 (ms) | TTFA p99 (ms) | RTF p50 | RTF p95 | chars/s | \
         audio s/s | gap-free | underruns (streams) | worst underrun (ms) |\n"
    );
    let cols = if open { 14 } else { 13 };
    s.push_str(&format!("|{}\n", "---|".repeat(cols)));
    for l in levels {
        let lead = if open {
            format!("{:.2} | {}", l.offered_rate.unwrap_or(f64::NAN), l.concurrency)
        } else {
            l.concurrency.to_string()
        };
        s.push_str(&format!(
            "| {lead} | {} | {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} | {:.0} | {:.2} | {} | {} ({}) | {:.0} |\n",
            l.requests,
            l.errors,
            l.ttfa_p50_ms,
            l.ttfa_p95_ms,
            l.ttfa_p99_ms,
            l.rtf_p50,
            l.rtf_p95,
            l.chars_per_s,
            l.audio_s_per_s,
            gap_free_percent(l.gap_free_rate),
            l.underruns,
            l.underrun_streams,
            l.worst_underrun_ms,
        ));
    }
    s
}

/// The gap-free rate as a table cell: `100%`, `95.2%`, or `-` without streams.
pub fn gap_free_percent(rate: f64) -> String {
    if !rate.is_finite() {
        "-".into()
    } else if rate >= 1.0 {
        "100%".into()
    } else {
        format!("{:.1}%", rate * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(close(percentile(&v, 50.0), 50.5));
        assert!(close(percentile(&v, 95.0), 95.05));
        assert!(close(percentile(&v, 99.0), 99.01));
        assert!(close(percentile(&v, 0.0), 1.0));
        assert!(close(percentile(&v, 100.0), 100.0));
        assert!(close(percentile(&[10.0, 20.0, 30.0, 40.0], 50.0), 25.0));
        assert!(close(percentile(&[7.0], 99.0), 7.0));
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn a_stream_faster_than_real_time_never_underruns() {
        // 0.1 s of audio (4410 bytes at 44100 B/s) every 0.05 s.
        let arrivals: Vec<Arrival> =
            (0..20).map(|i| Arrival { at_s: 0.2 + f64::from(i) * 0.05, bytes: 4410 }).collect();
        assert_eq!(simulate_playback(&arrivals, 44100.0), Underruns::default());
        assert_eq!(simulate_playback(&[], 44100.0), Underruns::default());
    }

    #[test]
    fn late_chunks_are_counted_with_the_worst_gap() {
        let a = |at_s: f64, bytes: usize| Arrival { at_s, bytes };
        // Starts at 1.0 with 0.5 s of audio: dry at 1.5.
        // 1.4: 0.5 s more, dry at 2.0. 2.3: late by 0.3, dry at 2.8. 2.75: in time, dry at 2.9. 3.0: late by 0.1, dry at 3.5. An empty arrival at 5.0 is ignored.
        let arrivals = [a(1.0, 22050), a(1.4, 22050), a(2.3, 22050), a(2.75, 4410), a(3.0, 22050), a(5.0, 0)];
        let u = simulate_playback(&arrivals, 44100.0);
        assert_eq!(u.count, 2);
        assert!(close(u.worst_gap_s, 0.3), "{u:?}");
    }

    #[test]
    fn the_first_chunk_starts_playback_whenever_it_arrives() {
        let u = simulate_playback(
            &[Arrival { at_s: 9.0, bytes: 44100 }, Arrival { at_s: 9.5, bytes: 100 }],
            44100.0,
        );
        assert_eq!(u, Underruns::default());
    }

    #[test]
    fn a_level_summarizes_its_samples() {
        let s = |ttfa_s: f64, u: usize| Sample {
            ttfa_s,
            total_s: 0.5,
            audio_s: 2.0,
            chars: 40,
            underruns: Underruns { count: u, worst_gap_s: 0.01 * u as f64 },
        };
        let l = LevelSummary::from_samples(2, &[s(0.1, 0), s(0.2, 2), s(0.3, 1)], 1, 2.0);
        assert_eq!((l.concurrency, l.requests, l.errors), (2, 4, 1));
        assert!(close(l.ttfa_p50_ms, 200.0));
        assert!(close(l.ttfa_p95_ms, 290.0));
        assert!(close(l.rtf_p50, 0.25));
        assert!(close(l.chars_per_s, 60.0));
        assert!(close(l.audio_s_per_s, 3.0));
        assert_eq!((l.underruns, l.underrun_streams), (3, 2));
        assert!(close(l.worst_underrun_ms, 20.0));
        // One stream of three played without a gap (the failed request is not a stream).
        assert!(close(l.gap_free_rate, 1.0 / 3.0));
        assert!(markdown_table(&[l]).contains("| 33.3% |"));
        let clean = LevelSummary::from_samples(1, &[s(0.1, 0), s(0.1, 0)], 0, 1.0);
        assert!(close(clean.gap_free_rate, 1.0));
        assert!(markdown_table(&[clean]).contains("| 100% |"));
    }

    #[test]
    fn json_has_the_contract_field_names_and_reads_back() {
        let l = LevelSummary::from_samples(1, &[], 3, 1.0);
        let v = serde_json::to_value(&l).unwrap();
        for key in [
            "concurrency",
            "requests",
            "errors",
            "ttfa_p50_ms",
            "ttfa_p95_ms",
            "ttfa_p99_ms",
            "rtf_p50",
            "rtf_p95",
            "chars_per_s",
            "audio_s_per_s",
            "underruns",
            "worst_underrun_ms",
            "gap_free_rate",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        // No successful sample: percentiles are NaN, written as null, read back as NaN.
        assert!(v["ttfa_p50_ms"].is_null());
        assert!(v["gap_free_rate"].is_null(), "no stream, no rate");
        let back: LevelSummary = serde_json::from_value(v).unwrap();
        assert!(back.ttfa_p50_ms.is_nan());
        assert_eq!(back.errors, 3);
        // The contract fields alone are enough to read a level (e.g. from another tool).
        let minimal = serde_json::json!({"concurrency": 4, "requests": 10, "errors": 0, "ttfa_p50_ms": 50.0,
            "ttfa_p95_ms": 80.0, "ttfa_p99_ms": 90.0, "rtf_p50": 0.1, "rtf_p95": 0.2, "chars_per_s": 100.0,
            "audio_s_per_s": 5.0, "underruns": 0, "worst_underrun_ms": 0.0});
        let l: LevelSummary = serde_json::from_value(minimal).unwrap();
        assert_eq!(l.concurrency, 4);
        assert!(close(l.x(), 4.0));
    }

    #[test]
    fn the_table_has_one_row_per_level() {
        let levels = [
            LevelSummary { concurrency: 1, ..LevelSummary::default() },
            LevelSummary { concurrency: 8, ..LevelSummary::default() },
        ];
        let t = markdown_table(&levels);
        assert_eq!(t.lines().count(), 4);
        assert!(t.lines().nth(3).unwrap().starts_with("| 8 |"));
        assert_eq!(t.lines().nth(1).unwrap().matches("---").count(), 13);
    }
}
