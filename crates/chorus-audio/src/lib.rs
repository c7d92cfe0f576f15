//! Audio output: sample encodings, resampling, WAV and MP3, all streaming-safe.
