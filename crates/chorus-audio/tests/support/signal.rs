//! Test signals and their analysis, shared by the unit tests (`src/lib.rs` includes this file) and the
//! integration tests (through `tests/support/mod.rs`).

use std::f64::consts::PI;

/// The model's own rate: the input rate of every encoder and resampler under test.
pub const IN_RATE: u32 = 22050;

/// `n` samples of a sine of `freq` Hz and amplitude `amp` at `rate` Hz.
pub fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n).map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32).collect()
}

/// Goertzel power at `freq` as a fraction of the signal's total power (1.0 for a pure tone).
pub fn tone_fraction(x: &[f32], rate: u32, freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let total: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    // A pure tone of N samples has Goertzel power N^2 A^2 / 4 and total power N A^2 / 2.
    power / (total * x.len() as f64 / 2.0)
}
