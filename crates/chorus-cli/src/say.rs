//! `chorus say`: text in, audio file out, written chunk by chunk as it is synthesized.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chorus_audio::output::OutputFile;
use chorus_audio::{StreamEncoder, finalize_wav_file};
use chorus_engine::{Engine, SynthesisRequest};
use chorus_proto::{Container, Encoding, OutputFormat, PhonemeTimestamps, SynthesisParams, WordTimestamps};

use crate::paths::PathArgs;

/// The voice `scripts/setup` installs.
use chorus_bench::DEFAULT_VOICE;

#[derive(Debug, clap::Args)]
pub struct SayArgs {
    /// The text to speak; `-` reads it from standard input.
    pub text: String,
    /// Output file (`-` for standard output). The container follows the extension (.wav, .mp3, .opus/.ogg,
    /// .flac, .raw/.pcm) unless --container is given.
    #[arg(short, long, env = "CHORUS_SAY_OUTPUT")]
    pub output: PathBuf,
    /// Voice id (a directory under the models directory).
    #[arg(long, env = "CHORUS_VOICE", default_value = DEFAULT_VOICE)]
    pub voice: String,
    /// Output sample rate in Hz: 8000, 16000, 22050, 24000, 44100 or 48000 (default: the voice's own).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Sample encoding for wav and raw: pcm_s16le, pcm_f32le, pcm_mulaw or pcm_alaw.
    #[arg(long, default_value = "pcm_s16le")]
    pub encoding: Encoding,
    /// Container: wav, mp3, opus, flac or raw (default: from the output file's extension, else wav).
    #[arg(long)]
    pub container: Option<Container>,
    /// MP3 or Opus bit rate in bits per second.
    #[arg(long)]
    pub bit_rate: Option<u32>,
    /// Speaking rate: 1.0 natural, 1.5 is 50% faster, 0.75 slower.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f32,
    /// Linear volume.
    #[arg(long, default_value_t = 1.0)]
    pub volume: f32,
    /// Speak the text as written: no expansion of numbers, dates, currency or abbreviations.
    #[arg(long)]
    pub no_normalize: bool,
    /// Print word timestamps as JSON on standard output when done.
    #[arg(long)]
    pub timestamps: bool,
    /// Include phoneme timestamps in the JSON.
    #[arg(long)]
    pub phoneme_timestamps: bool,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long, env = "CHORUS_THREADS")]
    pub threads: Option<usize>,
    /// Shape buckets (see `chorus serve --help`): on or off (default off, as on every CPU).
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    pub shape_buckets: Option<bool>,
}

/// The JSON `--timestamps` prints.
#[derive(Debug, serde::Serialize)]
struct TimestampReport {
    word_timestamps: WordTimestamps,
    #[serde(skip_serializing_if = "Option::is_none")]
    phoneme_timestamps: Option<PhonemeTimestamps>,
    /// Seconds of audio written.
    duration: f64,
    sample_rate: u32,
}

pub fn run(paths: &PathArgs, args: SayArgs) -> Result<()> {
    let text = read_text(&args.text)?;
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && (args.timestamps || args.phoneme_timestamps) {
        bail!("--timestamps prints JSON on standard output, so the audio needs a file (-o FILE)");
    }
    let container = match args.container {
        Some(c) => c,
        None => container_from_extension(&args.output)?,
    };
    let params = SynthesisParams { speed: args.speed, volume: args.volume, ..SynthesisParams::default() };
    params.validate()?;

    let mut config = paths.engine_config();
    config.voices = vec![args.voice.clone()];
    if let Some(t) = args.threads {
        config.intra_threads = t.max(1);
    }
    if args.shape_buckets == Some(true) {
        config.shape_buckets = Some(chorus_engine::ShapeBuckets::defaults(1));
    }
    // Check the format and the text before the model loads: bad input fails at once.
    let format = OutputFormat {
        container,
        encoding: args.encoding,
        sample_rate: args.sample_rate.unwrap_or(22050),
        bit_rate: args.bit_rate,
    };
    format.validate()?;
    config.frontend.validate(&text)?;

    let engine = Engine::load(&config).context("cannot load the engine")?;
    let voice = engine.voice(&args.voice).context("voice not loaded")?;
    let format = OutputFormat { sample_rate: args.sample_rate.unwrap_or(voice.sample_rate), ..format };
    let request = SynthesisRequest {
        params,
        normalize: !args.no_normalize,
        ..SynthesisRequest::new(text, &args.voice)
    };
    let synthesis = engine.synthesize(&request)?;
    let mut encoder = StreamEncoder::new(synthesis.sample_rate(), format)?;

    let mut sink = OutputFile::open(&args.output)?;
    let mut words = WordTimestamps::default();
    let mut phonemes = PhonemeTimestamps::default();
    let written = (|| -> Result<()> {
        for chunk in synthesis {
            let chunk = chunk?;
            words.extend_shifted(&chunk.words, 0.0);
            phonemes.extend_shifted(&chunk.phonemes, 0.0);
            sink.write(&encoder.push(&chunk.samples)?)?;
        }
        sink.write(&encoder.finish()?)?;
        Ok(())
    })();
    if let Err(e) = written {
        sink.abandon();
        return Err(e);
    }
    let data_len = encoder.data_len();
    sink.commit(|file| if container == Container::Wav { finalize_wav_file(file, data_len) } else { Ok(()) })?;

    if args.timestamps || args.phoneme_timestamps {
        let report = TimestampReport {
            word_timestamps: words,
            phoneme_timestamps: args.phoneme_timestamps.then_some(phonemes),
            duration: encoder.samples_out() as f64 / f64::from(encoder.output_rate()),
            sample_rate: encoder.output_rate(),
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn read_text(arg: &str) -> Result<String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "standard input is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn container_from_extension(path: &Path) -> Result<Container> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("wav");
    Container::from_extension(ext).with_context(|| {
        format!("cannot tell the container from '.{ext}': use --container wav|mp3|opus|flac|raw")
    })
}
