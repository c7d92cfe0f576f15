//! Shared helpers of the integration tests: test signals and a symphonia decoder.

pub mod signal;

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::conv::ConvertibleSample;
use symphonia::core::errors::Error;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Decodes a file of the format its `extension` names (`"flac"`, `"mp3"`) with symphonia:
/// (sample rate, channels, interleaved samples).
pub fn decode<S: ConvertibleSample>(bytes: Vec<u8>, extension: &str) -> (u32, usize, Vec<S>) {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .unwrap_or_else(|e| panic!("probe {extension}: {e}"));
    let mut reader = probed.format;
    let params = reader.default_track().expect("a track").codec_params.clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .unwrap_or_else(|e| panic!("{extension} decoder: {e}"));
    let mut samples = Vec::new();
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read: {e}"),
        };
        let decoded = decoder.decode(&packet).expect("decode");
        let mut buf = SampleBuffer::<S>::new(decoded.capacity() as u64, *decoded.spec());
        buf.copy_interleaved_ref(decoded);
        samples.extend_from_slice(buf.samples());
    }
    let rate = params.sample_rate.expect("sample rate");
    let channels = params.channels.expect("channels").count();
    (rate, channels, samples)
}
