//! RIFF/WAVE headers: a fixed 44-byte header for every encoding, streamable with unknown sizes.

use std::io::{self, Seek, SeekFrom, Write};

use chorus_proto::Encoding;

/// Length of the header written by [`wav_header`]: RIFF header, a 16-byte `fmt ` chunk and the
/// `data` chunk header. The sample data starts at this offset.
pub const WAV_HEADER_LEN: usize = 44;

/// Offset of the RIFF chunk size field.
const RIFF_SIZE_OFFSET: u64 = 4;
/// Offset of the `data` chunk size field.
const DATA_SIZE_OFFSET: u64 = 40;
/// Size field value meaning "unknown, read to the end of the stream".
const UNKNOWN_SIZE: u32 = u32::MAX;

/// WAVE format tag and bits per sample for an encoding.
fn format_tag(encoding: Encoding) -> (u16, u16) {
    match encoding {
        Encoding::PcmS16le => (1, 16), // WAVE_FORMAT_PCM
        Encoding::PcmF32le => (3, 32), // WAVE_FORMAT_IEEE_FLOAT
        Encoding::PcmAlaw => (6, 8),   // WAVE_FORMAT_ALAW
        Encoding::PcmMulaw => (7, 8),  // WAVE_FORMAT_MULAW
    }
}

/// The RIFF size (`36 + data`, plus the pad byte of an odd data chunk) and data size fields
/// for `data_len` bytes of samples, each clamped to `0xFFFFFFFF`.
fn size_fields(data_len: u64) -> (u32, u32) {
    let riff = data_len.saturating_add(36 + (data_len & 1));
    (u32::try_from(riff).unwrap_or(UNKNOWN_SIZE), u32::try_from(data_len).unwrap_or(UNKNOWN_SIZE))
}

/// A 44-byte mono WAV header (`fmt ` chunk of 16 bytes) for `encoding` at `sample_rate`.
///
/// Format tags: 1 (PCM) for s16, 3 (IEEE float) for f32, 6 for A-law, 7 for mu-law.
/// With `data_len = None` (streaming) the RIFF and data sizes are `0xFFFFFFFF`, which readers
/// take as "until the end of the stream"; patch them later with [`wav_sizes_patch`] or
/// [`finalize_wav_file`] when writing a file.
pub fn wav_header(sample_rate: u32, encoding: Encoding, data_len: Option<u32>) -> Vec<u8> {
    let (tag, bits) = format_tag(encoding);
    let block_align = bits / 8;
    let (riff_size, data_size) = match data_len {
        Some(len) => size_fields(u64::from(len)),
        None => (UNKNOWN_SIZE, UNKNOWN_SIZE),
    };
    let mut h = Vec::with_capacity(WAV_HEADER_LEN);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_size.to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&tag.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // channels
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&sample_rate.saturating_mul(u32::from(block_align)).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_size.to_le_bytes());
    h
}

/// The two writes that turn a streaming header into an exact one once `data_len` bytes of
/// samples follow it: `(offset from the start of the file, little-endian bytes)` for the RIFF
/// size and the data size. Sizes over 4 GiB are clamped to `0xFFFFFFFF`.
///
/// When `data_len` is odd the RIFF size counts the pad byte that RIFF requires after the data
/// chunk; the writer must append one zero byte (as [`finalize_wav_file`] does).
pub fn wav_sizes_patch(data_len: u64) -> [(u64, [u8; 4]); 2] {
    let (riff, data) = size_fields(data_len);
    [(RIFF_SIZE_OFFSET, riff.to_le_bytes()), (DATA_SIZE_OFFSET, data.to_le_bytes())]
}

/// Finishes a WAV file that starts with a [`wav_header`] followed by `data_len` bytes of
/// samples: appends the pad byte if `data_len` is odd, writes the exact sizes, and leaves the
/// position at the end of the file.
pub fn finalize_wav_file<F: Write + Seek>(file: &mut F, data_len: u64) -> io::Result<()> {
    if data_len & 1 == 1 {
        file.seek(SeekFrom::End(0))?;
        file.write_all(&[0])?;
    }
    for (offset, bytes) in wav_sizes_patch(data_len) {
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&bytes)?;
    }
    file.seek(SeekFrom::End(0))?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn u16_at(h: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([h[at], h[at + 1]])
    }
    fn u32_at(h: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
    }

    #[test]
    fn streaming_header_has_unknown_sizes() {
        for (enc, tag, bits) in [
            (Encoding::PcmS16le, 1, 16),
            (Encoding::PcmF32le, 3, 32),
            (Encoding::PcmAlaw, 6, 8),
            (Encoding::PcmMulaw, 7, 8),
        ] {
            let h = wav_header(8000, enc, None);
            assert_eq!(h.len(), WAV_HEADER_LEN);
            assert_eq!(&h[0..4], b"RIFF");
            assert_eq!(u32_at(&h, 4), 0xFFFF_FFFF);
            assert_eq!(&h[8..16], b"WAVEfmt ");
            assert_eq!(u32_at(&h, 16), 16);
            assert_eq!(u16_at(&h, 20), tag);
            assert_eq!(u16_at(&h, 22), 1);
            assert_eq!(u32_at(&h, 24), 8000);
            assert_eq!(u32_at(&h, 28), 8000 * u32::from(bits / 8));
            assert_eq!(u16_at(&h, 32), bits / 8);
            assert_eq!(u16_at(&h, 34), bits);
            assert_eq!(&h[36..40], b"data");
            assert_eq!(u32_at(&h, 40), 0xFFFF_FFFF);
        }
    }

    #[test]
    fn exact_header_and_patch() {
        let h = wav_header(22050, Encoding::PcmS16le, Some(1000));
        assert_eq!(u32_at(&h, 4), 1036);
        assert_eq!(u32_at(&h, 40), 1000);
        assert_eq!(wav_sizes_patch(1000), [(4, 1036u32.to_le_bytes()), (40, 1000u32.to_le_bytes())]);
        // Odd data length: the RIFF size counts the pad byte.
        assert_eq!(wav_sizes_patch(7)[0].1, 44u32.to_le_bytes());
        // Over 4 GiB: clamped.
        let big = wav_sizes_patch(5 << 30);
        assert_eq!(big[0].1, [0xFF; 4]);
        assert_eq!(big[1].1, [0xFF; 4]);
        assert_eq!(wav_sizes_patch(u64::MAX)[0].1, [0xFF; 4]);
    }

    #[test]
    fn finalize_patches_sizes_and_pads() {
        let mut file = Cursor::new(wav_header(8000, Encoding::PcmMulaw, None));
        file.seek(SeekFrom::End(0)).ok();
        file.write_all(&[0xFF; 5]).ok();
        finalize_wav_file(&mut file, 5).ok();
        let bytes = file.into_inner();
        assert_eq!(bytes.len(), WAV_HEADER_LEN + 6);
        assert_eq!(u32_at(&bytes, 4), bytes.len() as u32 - 8);
        assert_eq!(u32_at(&bytes, 40), 5);
    }
}
