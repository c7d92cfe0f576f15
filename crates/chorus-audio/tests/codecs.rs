//! Ogg Opus and FLAC output: FLAC decodes with symphonia (an independent pure-Rust decoder) to the very samples
//! pushed; Ogg Opus is a well-formed RFC 7845 stream (headers, granule positions, end of stream) whose packets
//! libopus decodes back to the tone, whatever the chunking. (ffmpeg decodes both in the end-to-end suite.)
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod support;

use chorus_audio::{StreamEncoder, opus_rate};
use chorus_proto::{Container, Encoding, OutputFormat, SUPPORTED_SAMPLE_RATES};
use support::decode;
use support::signal::{IN_RATE, sine, tone_fraction};

fn format(container: Container, sample_rate: u32) -> OutputFormat {
    OutputFormat { container, encoding: Encoding::PcmS16le, sample_rate, bit_rate: None }
}

/// Streams `input` in uneven chunks.
fn encode(format: OutputFormat, input: &[f32], chunk: usize) -> (Vec<u8>, StreamEncoder) {
    let mut enc = StreamEncoder::new(IN_RATE, format).unwrap();
    let mut bytes = Vec::new();
    for part in input.chunks(chunk) {
        bytes.extend(enc.push(part).unwrap());
        bytes.extend(enc.push(&[]).unwrap());
    }
    bytes.extend(enc.finish().unwrap());
    (bytes, enc)
}

#[test]
fn flac_is_lossless_at_every_rate_and_chunking() {
    let input = sine(440.0, IN_RATE, 3 * IN_RATE as usize + 123, 0.6);
    for &rate in &SUPPORTED_SAMPLE_RATES {
        // The same 16-bit samples a WAV of this rate holds.
        let (wav, _) = encode(OutputFormat::wav_s16(rate), &input, 5000);
        let want: Vec<i16> = wav[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let mut first: Option<Vec<u8>> = None;
        for chunk in [1_000, 7_919, input.len()] {
            let (bytes, enc) = encode(format(Container::Flac, rate), &input, chunk);
            assert_eq!(&bytes[..4], b"fLaC");
            assert!(bytes.len() < want.len() * 2, "{rate} Hz: FLAC no smaller than PCM");
            let (dec_rate, channels, got) = decode::<i16>(bytes.clone(), "flac");
            assert_eq!((dec_rate, channels), (rate, 1));
            assert_eq!(got.len() as u64, enc.samples_out(), "{rate} Hz");
            assert_eq!(got, want, "{rate} Hz, chunks of {chunk}: not lossless");
            // Chunking changes nothing.
            assert_eq!(first.get_or_insert_with(|| bytes.clone()), &bytes, "{rate} Hz chunks of {chunk}");
        }
    }
}

/// The packets of an Ogg stream with each page's granule position and flags.
struct Page {
    granule: u64,
    eos: bool,
    packets: Vec<Vec<u8>>,
}

fn read_ogg(bytes: &[u8]) -> Vec<Page> {
    // RFC 3533 pages: "OggS", version, flags, granule (8), serial, sequence, CRC, segments, lacing, data.
    let mut pages = Vec::new();
    let mut at = 0;
    let mut partial: Vec<u8> = Vec::new();
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"OggS", "page at {at}");
        let flags = bytes[at + 5];
        let granule = u64::from_le_bytes(bytes[at + 6..at + 14].try_into().unwrap());
        let n = bytes[at + 26] as usize;
        let lacing = &bytes[at + 27..at + 27 + n];
        let mut data = at + 27 + n;
        let mut packets = Vec::new();
        for &l in lacing {
            partial.extend_from_slice(&bytes[data..data + l as usize]);
            data += l as usize;
            if l < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pages.push(Page { granule, eos: flags & 4 != 0, packets });
        at = data;
    }
    pages
}

#[test]
fn ogg_opus_is_a_valid_stream_that_decodes_to_the_tone() {
    let input = sine(440.0, IN_RATE, 2 * IN_RATE as usize + 77, 0.5);
    for rate in [8000, 16000, 22050, 24000, 44100, 48000] {
        let mut outputs = Vec::new();
        for chunk in [3_000, input.len()] {
            let (bytes, enc) = encode(format(Container::Opus, rate), &input, chunk);
            let coded = opus_rate(rate);
            assert_eq!(enc.output_rate(), coded);
            let pages = read_ogg(&bytes);
            // Identification header (own page, input rate = the requested rate), comment header, audio.
            let head = &pages[0].packets[0];
            assert_eq!(&head[..8], b"OpusHead");
            assert_eq!((head[8], head[9]), (1, 1), "version 1, mono");
            let pre_skip = u64::from(u16::from_le_bytes([head[10], head[11]]));
            assert_eq!(u32::from_le_bytes(head[12..16].try_into().unwrap()), rate);
            assert_eq!(pages[0].packets.len(), 1);
            assert_eq!(&pages[1].packets[0][..8], b"OpusTags");
            assert!(pages.last().unwrap().eos && pages.iter().filter(|p| p.eos).count() == 1);
            // Granule positions grow and the last one counts exactly the samples pushed (in 48 kHz units).
            assert!(pages.windows(2).all(|w| w[0].granule <= w[1].granule));
            let scale = u64::from(48_000 / coded);
            assert_eq!(pages.last().unwrap().granule, pre_skip + enc.samples_out() * scale, "{rate} Hz");

            let mut decoder = opus::Decoder::new(coded, opus::Channels::Mono).unwrap();
            let mut pcm = Vec::new();
            let mut buf = vec![0f32; 5760];
            for packet in pages.iter().skip(2).flat_map(|p| &p.packets) {
                let n = decoder.decode_float(packet, &mut buf, false).unwrap();
                assert_eq!(n, coded as usize / 50, "20 ms packets");
                pcm.extend_from_slice(&buf[..n]);
            }
            let pcm = &pcm[(pre_skip / scale) as usize..(pre_skip / scale + enc.samples_out()) as usize];
            let mid = &pcm[pcm.len() / 4..pcm.len() * 3 / 4];
            let frac = tone_fraction(mid, coded, 440.0);
            assert!(frac > 0.9, "{rate} Hz: 440 Hz holds {frac} of the power");
            outputs.push(pcm.len());
        }
        assert_eq!(outputs[0], outputs[1], "{rate} Hz: chunking changed the length");
    }
}

#[test]
fn empty_streams_are_still_valid() {
    for container in [Container::Opus, Container::Flac] {
        let mut enc = StreamEncoder::new(IN_RATE, format(container, 24000)).unwrap();
        let bytes = enc.finish().unwrap();
        match container {
            Container::Flac => assert_eq!(&bytes[..4], b"fLaC"),
            Container::Opus | Container::Raw | Container::Wav | Container::Mp3 => {
                let pages = read_ogg(&bytes);
                assert!(pages.len() >= 3 && pages.last().unwrap().eos);
            }
        }
    }
}
