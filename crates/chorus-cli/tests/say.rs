//! `chorus say` end to end, on the real voice (run `scripts/setup` first): audio that a listener would accept,
//! timestamps that name the user's words, and bad input that fails cleanly.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed
#![allow(clippy::print_stderr)] // the cluster support prints the logs of a failed test

mod cluster_support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use cluster_support::cli as chorus;
use serde_json::Value;

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = chorus();
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("chorus runs");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        // The process may exit before reading everything (a rejected input): ignore a broken pipe.
        let _ = pipe.write_all(bytes);
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

struct Spoken {
    samples: Vec<i16>,
    rate: u32,
    timestamps: Value,
}

impl Spoken {
    fn duration(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }

    fn words(&self) -> Vec<String> {
        self.timestamps["word_timestamps"]["words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    }

    /// Every phoneme spoken, concatenated.
    fn phonemes(&self) -> String {
        let list = self.timestamps["phoneme_timestamps"]["phonemes"].as_array().expect("phoneme timestamps");
        list.iter().map(|p| p.as_str().unwrap()).collect()
    }

    fn times(&self, key: &str) -> Vec<f64> {
        self.timestamps["word_timestamps"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }
}

fn say(text: &str, extra: &[&str]) -> Spoken {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let mut args = vec!["say", text, "-o", out.to_str().unwrap(), "--timestamps"];
    args.extend_from_slice(extra);
    let o = run(&args, None);
    assert!(o.status.success(), "chorus say failed: {}", String::from_utf8_lossy(&o.stderr));
    let mut reader = hound::WavReader::open(&out).unwrap();
    let rate = reader.spec().sample_rate;
    let samples = reader.samples::<i16>().collect::<Result<Vec<_>, _>>().unwrap();
    Spoken { samples, rate, timestamps: serde_json::from_slice(&o.stdout).expect("timestamps JSON") }
}

fn assert_plausible_speech(s: &Spoken, text: &str) {
    let n_words = text.split_whitespace().count() as f64;
    let d = s.duration();
    // Conversational English runs at about 2-4 words per second.
    assert!(d > n_words / 6.0 && d < n_words / 1.2 + 1.0, "{d:.2}s of audio for {n_words} words: {text}");
    let rms = (s.samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.samples.len() as f64).sqrt()
        / 32768.0;
    assert!(rms > 0.02, "audio is near-silent (RMS {rms:.4}): {text}");
    let clipped = s.samples.iter().filter(|&&x| x == i16::MAX || x <= -i16::MAX).count();
    assert!(clipped * 10_000 <= s.samples.len(), "{clipped} clipped samples: {text}");
}

fn assert_timestamps_cover(s: &Spoken, expected_words: &[&str]) {
    assert_eq!(s.words(), expected_words);
    let (start, end) = (s.times("start"), s.times("end"));
    assert_eq!(start.len(), expected_words.len());
    let mut last = 0.0;
    for (i, (a, b)) in start.iter().zip(&end).enumerate() {
        assert!(
            *a >= last - 1e-9 && b >= a,
            "word {i} ({}) at {a:.3}-{b:.3} after {last:.3}",
            expected_words[i]
        );
        assert!(b > a, "word {} has no duration", expected_words[i]);
        last = *b;
    }
    let tail = s.duration() - last;
    assert!((0.0..=0.15).contains(&tail), "last word ends {tail:.3}s before the audio's end");
}

#[test]
fn known_sentences_sound_like_speech_with_word_timestamps() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "Hello there, how can I help you today?",
            &["Hello", "there,", "how", "can", "I", "help", "you", "today?"],
        ),
        (
            "The museum opens at nine. Visitors can explore the new exhibition on ancient navigation!",
            &[
                "The",
                "museum",
                "opens",
                "at",
                "nine.",
                "Visitors",
                "can",
                "explore",
                "the",
                "new",
                "exhibition",
                "on",
                "ancient",
                "navigation!",
            ],
        ),
        (
            "\"Quick,\" she whispered; (nobody) answered.",
            &["\"Quick,\"", "she", "whispered;", "(nobody)", "answered."],
        ),
    ];
    for (text, words) in cases {
        let s = say(text, &[]);
        assert_eq!(s.rate, 22050);
        assert_plausible_speech(&s, text);
        assert_timestamps_cover(&s, words);
    }
}

#[test]
fn speed_one_and_a_half_is_at_least_a_quarter_shorter() {
    let text =
        "Please remember to bring your passport, your boarding pass and a pen to fill in the customs form.";
    let normal = say(text, &[]);
    let fast = say(text, &["--speed", "1.5"]);
    let ratio = fast.duration() / normal.duration();
    assert!(
        ratio <= 0.75,
        "speed 1.5 gave {:.2}s against {:.2}s ({ratio:.2})",
        fast.duration(),
        normal.duration()
    );
    assert_plausible_speech(&fast, text);
    assert_timestamps_cover(&fast, &text.split_whitespace().collect::<Vec<_>>());
}

#[test]
fn normalized_text_is_spoken_and_timestamped_as_written() {
    let text = "$12.50 on 3/4/2025 at 10:30am, 2nd place, Dr. Smith, 40-60%";
    let words = ["$12.50", "on", "3/4/2025", "at", "10:30am,", "2nd", "place,", "Dr.", "Smith,", "40-60%"];
    let on = say(text, &["--phoneme-timestamps"]);
    assert_plausible_speech(
        &on,
        "twelve dollars and fifty cents on March fourth twenty twenty five at ten thirty",
    );
    // The date is read as a date ("March fourth"), not as "three slash four slash two thousand...".
    let phonemes = on.phonemes();
    assert!(phonemes.contains("mˈɑːɹtʃ") && !phonemes.contains("slˈæʃ"), "{phonemes}");
    assert_timestamps_cover(&on, &words);
    // "$12.50" is spoken as "twelve dollars and fifty cents": far longer than any one short word.
    let (start, end) = (on.times("start"), on.times("end"));
    assert!(end[0] - start[0] > 1.0, "\"$12.50\" lasts {:.2}s", end[0] - start[0]);
    assert!(end[2] - start[2] > 1.0, "\"3/4/2025\" lasts {:.2}s", end[2] - start[2]);

    // Off: the text goes to the phonemizer untouched, and the timestamps still name the user's words.
    let off = say(text, &["--no-normalize", "--phoneme-timestamps"]);
    assert_eq!(off.words(), words);
    assert!(off.phonemes().contains("slˈæʃ"), "{}", off.phonemes());
}

#[test]
fn every_format_and_rate_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Testing one two three.";
    for (name, extra, rate) in [
        ("a.wav", vec!["--sample-rate", "48000", "--encoding", "pcm_f32le"], 48000u32),
        ("b.wav", vec!["--sample-rate", "8000", "--encoding", "pcm_mulaw"], 8000),
        ("c.raw", vec!["--sample-rate", "16000", "--encoding", "pcm_alaw"], 16000),
        ("d.raw", vec!["--sample-rate", "24000"], 24000),
        ("e.mp3", vec!["--sample-rate", "44100", "--bit-rate", "64000"], 44100),
    ] {
        let out = dir.path().join(name);
        let mut args = vec!["say", text, "-o", out.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let o = run(&args, None);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&out).unwrap();
        match name {
            "a.wav" => {
                let r = hound::WavReader::open(&out).unwrap();
                assert_eq!((r.spec().sample_rate, r.spec().bits_per_sample), (rate, 32));
                let secs = r.duration() as f64 / f64::from(rate);
                assert!((0.8..4.0).contains(&secs), "{secs}");
            }
            "b.wav" => {
                assert_eq!(&bytes[..4], b"RIFF");
                assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), 7, "mu-law format tag");
                assert_eq!(u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]), rate);
                let data = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) as usize;
                assert!(data + 44 <= bytes.len() && data > 6000, "data size {data} of {}", bytes.len());
            }
            "c.raw" => assert!((8000..64000).contains(&bytes.len()), "{} bytes of 8-bit audio", bytes.len()),
            "d.raw" => {
                assert!((2 * 19_000..2 * 96_000).contains(&bytes.len()), "{} bytes of s16", bytes.len())
            }
            "e.mp3" => {
                let sync = bytes.windows(2).position(|w| w[0] == 0xFF && w[1] & 0xE0 == 0xE0);
                assert_eq!(sync, Some(0), "an MP3 frame header starts the file");
                assert!(bytes.len() > 4000, "{} bytes of mp3", bytes.len());
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn text_from_stdin_and_audio_to_stdout() {
    let o =
        run(&["say", "-", "-o", "-", "--container", "raw"], Some("Reading from standard input.".as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // s16 at 22050 Hz: about a second or two of audio.
    assert!(o.stdout.len() > 22050 && o.stdout.len() < 22050 * 2 * 5, "{} bytes", o.stdout.len());
}

#[test]
fn a_device_is_written_in_place_never_replaced() {
    use std::os::unix::fs::FileTypeExt as _;
    // Renaming the finished temporary file over /dev/null would, as root, replace the device with a file.
    let o = run(&["say", "Into the void.", "-o", "/dev/null"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");
}

fn assert_fails_cleanly(args: &[&str], stdin: Option<&[u8]>, expect_in_message: &str, out: &Path) {
    let o = run(args, stdin);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(expect_in_message), "{args:?}: {stderr}");
    assert!(!out.exists(), "{args:?} left {}", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert!(leftovers.is_empty(), "{args:?} left files behind: {leftovers:?}");
}

#[test]
fn bad_input_fails_with_one_clear_line_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let o = out.to_str().unwrap();
    assert_fails_cleanly(&["say", "", "-o", o], None, "empty", &out);
    assert_fails_cleanly(&["say", "   ", "-o", o], None, "empty", &out);
    assert_fails_cleanly(&["say", "?!... ,;", "-o", o], None, "nothing to speak", &out);
    let megabyte = "All work and no play. ".repeat(1 << 20 >> 4);
    assert!(megabyte.len() >= 1 << 20);
    assert_fails_cleanly(&["say", "-", "-o", o], Some(megabyte.as_bytes()), "limit", &out);
    assert_fails_cleanly(&["say", "-", "-o", o], Some(b"caf\xc3 au lait \xff\xfe"), "UTF-8", &out);
    assert_fails_cleanly(&["say", "hello", "-o", o, "--voice", "en_XX-nobody"], None, "en_XX-nobody", &out);
    assert_fails_cleanly(&["say", "hello", "-o", o, "--sample-rate", "11025"], None, "11025", &out);
    assert_fails_cleanly(&["say", "hello", "-o", o, "--encoding", "pcm_s24le"], None, "pcm_s24le", &out);
    assert_fails_cleanly(&["say", "hello", "-o", o, "--container", "ogg"], None, "ogg", &out);
    assert_fails_cleanly(&["say", "hello", "-o", o, "--speed", "9"], None, "speed", &out);
    assert_fails_cleanly(
        &["say", "hello", "-o", o, "--container", "mp3", "--bit-rate", "100"],
        None,
        "bit rate",
        &out,
    );
    // .flac and .opus are containers now (issue 17): an extension no container has.
    let aiff = dir.path().join("out.aiff");
    assert_fails_cleanly(&["say", "hello", "-o", aiff.to_str().unwrap()], None, ".aiff", &aiff);
    let missing_dir = dir.path().join("no/such/dir/out.wav");
    let o2 = run(&["say", "hello", "-o", missing_dir.to_str().unwrap()], None);
    assert!(!o2.status.success() && !String::from_utf8_lossy(&o2.stderr).contains("panicked"));
}
