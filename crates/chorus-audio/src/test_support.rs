//! Helpers shared by the unit tests of this crate.

#[path = "../tests/support/signal.rs"]
mod signal;

pub(crate) use signal::{IN_RATE, sine, tone_fraction};

use crate::Resampler;

/// The reference: the whole input (at [`IN_RATE`]) resampled to `rate` in one go.
pub(crate) fn resample_all(rate: u32, input: &[f32]) -> Vec<f32> {
    let mut r = Resampler::new(IN_RATE, rate).expect("resampler");
    let mut out = Vec::new();
    r.process(input, &mut out).expect("process");
    r.finish(&mut out).expect("finish");
    out
}
