//! MP3 output decodes (with symphonia) to audio of the right rate, length and pitch.

mod support;

use chorus_audio::{StreamEncoder, mp3_bit_rate};
use chorus_proto::{Container, Encoding, OutputFormat, SUPPORTED_SAMPLE_RATES};
use support::decode;
use support::signal::{IN_RATE, sine, tone_fraction};

fn mp3(sample_rate: u32, bit_rate: Option<u32>) -> OutputFormat {
    OutputFormat { container: Container::Mp3, encoding: Encoding::PcmS16le, sample_rate, bit_rate }
}

/// Streams `input` through an MP3 encoder in uneven chunks; returns the bytes and samples_out.
fn encode(format: OutputFormat, input: &[f32], chunk: usize) -> (Vec<u8>, u64) {
    let mut enc = StreamEncoder::new(IN_RATE, format).expect("encoder");
    let mut bytes = Vec::new();
    for (i, part) in input.chunks(chunk).enumerate() {
        bytes.extend(enc.push(part).expect("push"));
        if i % 3 == 0 {
            bytes.extend(enc.push(&[]).expect("empty push"));
        }
    }
    bytes.extend(enc.finish().expect("finish"));
    (bytes, enc.samples_out())
}

#[test]
fn mp3_decodes_at_every_rate() {
    // 10 s so that LAME's fixed delay and padding (about 2 frames) stay well under 5 %.
    let input = sine(1000.0, IN_RATE, 10 * IN_RATE as usize, 0.5);
    for &rate in &SUPPORTED_SAMPLE_RATES {
        let (bytes, samples_out) = encode(mp3(rate, None), &input, 7919);
        // CBR at 128 kbit/s (64 at 8 kHz), 10 s, no tag frame.
        let expected_bytes = f64::from(mp3_bit_rate(&mp3(rate, None))) / 8.0 * 10.0;
        let ratio = bytes.len() as f64 / expected_bytes;
        assert!((0.97..1.05).contains(&ratio), "{rate} Hz: {} bytes", bytes.len());

        let (dec_rate, channels, samples) = decode::<f32>(bytes, "mp3");
        assert_eq!((dec_rate, channels), (rate, 1), "{rate} Hz");
        let duration = samples.len() as f64 / f64::from(rate);
        let want = samples_out as f64 / f64::from(rate);
        assert!((want - 10.0).abs() < 1e-3, "{rate} Hz: {want} s resampled");
        assert!((duration / want - 1.0).abs() < 0.05, "{rate} Hz: decoded {duration} s, want {want} s");
        let mid = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let rms = (mid.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        // LAME's CBR presets up to 160 kbit/s scale the input by 0.95 to avoid clipping.
        let level = rms / (0.5 / 2f64.sqrt());
        assert!((0.93..1.01).contains(&level), "{rate} Hz: rms {rms}");
        let frac = tone_fraction(mid, rate, 1000.0);
        assert!(frac > 0.95, "{rate} Hz: 1 kHz holds {frac} of the power");
    }
}

#[test]
fn mp3_chunking_does_not_change_the_bytes() {
    let input = sine(440.0, IN_RATE, 3 * IN_RATE as usize, 0.5);
    for rate in [16000, 22050, 44100] {
        let (a, _) = encode(mp3(rate, Some(64_000)), &input, 1);
        let (b, _) = encode(mp3(rate, Some(64_000)), &input, 5000);
        let (c, _) = encode(mp3(rate, Some(64_000)), &input, input.len());
        assert_eq!(a, c, "{rate} Hz: 1-sample chunks");
        assert_eq!(b, c, "{rate} Hz: 5000-sample chunks");
    }
}

#[test]
fn mp3_bit_rates_are_honoured() {
    let input = sine(440.0, IN_RATE, 4 * IN_RATE as usize, 0.5);
    for (rate, br, effective) in [
        (48000, 192_000, 192_000),
        (44100, 32_000, 32_000),
        (24000, 192_000, 160_000),
        (8000, 32_000, 32_000),
        (8000, 128_000, 64_000),
    ] {
        let fmt = mp3(rate, Some(br));
        assert_eq!(mp3_bit_rate(&fmt), effective);
        let (bytes, _) = encode(fmt, &input, 4096);
        let kbps = bytes.len() as f64 * 8.0 / 4.0 / 1000.0;
        let want = f64::from(effective) / 1000.0;
        assert!((kbps / want - 1.0).abs() < 0.06, "{rate} Hz {br}: {kbps} kbit/s");
        let (dec_rate, _, samples) = decode::<f32>(bytes, "mp3");
        assert_eq!(dec_rate, rate);
        assert!(samples.len() as f64 / f64::from(rate) > 3.9);
    }
}
