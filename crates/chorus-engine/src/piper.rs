//! Piper (VITS) voices on ONNX Runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chorus_text::PhonemeIdMap;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::Tensor;

use crate::EngineError;
use crate::model::{Interrupt, Model, ModelOutput, Scales};
use crate::runtime::{ConvSearch, Device};

/// Samples per duration frame in Piper's VITS vocoder.
pub const PIPER_HOP_LENGTH: usize = 256;

/// A Piper voice on disk: `<id>.onnx.json` plus the graph (`<id>.dur.onnx`, durations exposed, preferred).
#[derive(Debug, Clone)]
pub struct PiperVoice {
    pub id: String,
    pub model_path: PathBuf,
    /// True when the graph outputs per-phoneme durations (needed for timestamps).
    pub has_durations: bool,
    pub sample_rate: u32,
    pub espeak_voice: String,
    pub language: String,
    pub default_scales: Scales,
    pub ids: Arc<PhonemeIdMap>,
    /// The graph split after its duration predictor (`<id>.enc.onnx` and `<id>.dec.onnx` beside the config, made
    /// by `scripts/split_piper.py`), which shape buckets need; `None` when either part is missing.
    pub split: Option<SplitGraph>,
}

/// The two parts of a voice's graph split after its duration predictor (see [`crate::buckets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitGraph {
    /// ids -> durations and the prior per id.
    pub encoder: PathBuf,
    /// The prior expanded to a frame count the caller chooses -> audio.
    pub decoder: PathBuf,
}

impl PiperVoice {
    /// Reads `dir/<id>.onnx.json` and finds the graph beside it.
    pub fn load(config_path: &Path) -> Result<Self, EngineError> {
        let file = config_path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let id = file.strip_suffix(".onnx.json").unwrap_or(file).to_owned();
        let fail = |message: String| EngineError::VoiceLoad { voice: id.clone(), message };
        let raw = std::fs::read_to_string(config_path)
            .map_err(|e| fail(format!("{}: {e}", config_path.display())))?;
        let json: serde_json::Value =
            serde_json::from_str(&raw).map_err(|e| fail(format!("invalid JSON: {e}")))?;
        let sample_rate = json
            .pointer("/audio/sample_rate")
            .and_then(serde_json::Value::as_u64)
            .and_then(|r| u32::try_from(r).ok())
            .ok_or_else(|| fail("audio.sample_rate missing".into()))?;
        let espeak_voice =
            json.pointer("/espeak/voice").and_then(serde_json::Value::as_str).unwrap_or("en-us").to_owned();
        let language =
            json.pointer("/language/family").and_then(serde_json::Value::as_str).unwrap_or("en").to_owned();
        let scale = |key: &str, default: f32| {
            json.pointer(&format!("/inference/{key}"))
                .and_then(serde_json::Value::as_f64)
                .map_or(default, |v| v as f32)
        };
        let default_scales = Scales {
            noise_scale: scale("noise_scale", 0.667),
            length_scale: scale("length_scale", 1.0),
            noise_w: scale("noise_w", 0.8),
        };
        let map = json.get("phoneme_id_map").ok_or_else(|| fail("phoneme_id_map missing".into()))?;
        let ids = Arc::new(PhonemeIdMap::from_json(map).map_err(|e| fail(e.to_string()))?);
        let dir = config_path.parent().unwrap_or(Path::new("."));
        let with_durations = dir.join(format!("{id}.dur.onnx"));
        let (model_path, has_durations) = if with_durations.is_file() {
            (with_durations, true)
        } else {
            let plain = dir.join(format!("{id}.onnx"));
            if !plain.is_file() {
                return Err(fail(format!("no {id}.dur.onnx or {id}.onnx beside the config")));
            }
            tracing::warn!(voice = %id, "The graph does not expose durations: timestamps are estimated.");
            (plain, false)
        };
        let (encoder, decoder) = (dir.join(format!("{id}.enc.onnx")), dir.join(format!("{id}.dec.onnx")));
        let split = (encoder.is_file() && decoder.is_file()).then_some(SplitGraph { encoder, decoder });
        Ok(Self {
            id,
            model_path,
            has_durations,
            sample_rate,
            espeak_voice,
            language,
            default_scales,
            ids,
            split,
        })
    }

    /// Every voice under `models_dir` (one level of sub-directories), sorted by id.
    pub fn discover(models_dir: &Path) -> Result<Vec<PiperVoice>, EngineError> {
        let mut configs = Vec::new();
        let entries = std::fs::read_dir(models_dir).map_err(|e| EngineError::VoiceLoad {
            voice: "*".into(),
            message: format!("cannot read {}: {e} (run scripts/setup)", models_dir.display()),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let candidates: Vec<PathBuf> = if path.is_dir() {
                std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()).collect()
            } else {
                vec![path]
            };
            configs.extend(candidates.into_iter().filter(|p| p.to_string_lossy().ends_with(".onnx.json")));
        }
        let mut voices = configs.iter().map(|p| PiperVoice::load(p)).collect::<Result<Vec<_>, _>>()?;
        voices.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(voices)
    }
}

/// One ONNX Runtime session of a Piper voice. `Session::run` takes `&mut self`: one per model thread.
#[derive(Debug)]
pub struct PiperModel {
    session: Session,
    sample_rate: u32,
    has_durations: bool,
    stop: Arc<RunStop>,
}

/// ONNX Runtime's terminate flag for one session's runs, as an [`Interrupt`].
pub(crate) struct RunStop {
    options: RunOptions,
    requested: AtomicBool,
}

impl std::fmt::Debug for RunStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStop").field("requested", &self.requested).finish_non_exhaustive()
    }
}

impl Interrupt for RunStop {
    fn interrupt(&self) {
        self.requested.store(true, Ordering::Release);
        if let Err(e) = self.options.terminate() {
            tracing::warn!(error = %e, "Cannot interrupt a forward pass.");
        }
    }

    fn interrupted(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    fn reset(&self) {
        if let Err(e) = self.options.unterminate() {
            tracing::warn!(error = %e, "Cannot reset a forward pass's terminate flag.");
        }
        self.requested.store(false, Ordering::Release);
    }
}

impl PiperModel {
    /// Builds a session with `intra_threads` threads for the voice's graph, on `device`.
    pub fn load(
        env: &ort::environment::Environment,
        voice: &PiperVoice,
        intra_threads: usize,
        device: Device,
    ) -> Result<Self, EngineError> {
        Self::load_with(env, voice, intra_threads, device, true)
    }

    /// [`PiperModel::load`]; `spin: false` keeps the session's intra-op threads from busy-waiting between passes
    /// (ONNX Runtime's `session.intra_op.allow_spinning`), for a session that shares the cores with others.
    pub fn load_with(
        env: &ort::environment::Environment,
        voice: &PiperVoice,
        intra_threads: usize,
        device: Device,
        spin: bool,
    ) -> Result<Self, EngineError> {
        let session = build_session(env, voice, &voice.model_path, intra_threads, device, spin, false)?;
        let stop = RunStop::new(voice)?;
        Ok(Self { session, sample_rate: voice.sample_rate, has_durations: voice.has_durations, stop })
    }

    /// Runs the graph on `input` ([batch, ids]).
    fn run(&mut self, input: Vec<i64>, lengths: Vec<i64>, scales: Scales) -> Result<RawOutput, EngineError> {
        let fail = |e: &dyn std::fmt::Display| EngineError::Inference(e.to_string());
        let batch = lengths.len();
        let width = input.len() / batch.max(1);
        let input = Tensor::from_array(([batch, width], input)).map_err(|e| fail(&e))?;
        let lengths = Tensor::from_array(([batch], lengths)).map_err(|e| fail(&e))?;
        let scales =
            Tensor::from_array(([3usize], vec![scales.noise_scale, scales.length_scale, scales.noise_w]))
                .map_err(|e| fail(&e))?;
        let outputs = self
            .session
            .run_with_options(
                ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales],
                &self.stop.options,
            )
            .map_err(|e| fail(&e))?;
        let (shape, audio) = outputs["output"].try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
        let samples = shape.last().map_or(0, |n| usize::try_from(*n).unwrap_or(0));
        let audio: Vec<f32> = audio.iter().map(|s| if s.is_finite() { *s } else { 0.0 }).collect();
        let durations = if self.has_durations {
            let (_, d) = outputs["durations"].try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
            Some(d.to_vec())
        } else {
            None
        };
        Ok(RawOutput { audio, samples, durations })
    }
}

/// A pass's outputs as flat arrays: audio [batch, 1, samples] and durations [batch, 1, ids] (when the graph has
/// them).
struct RawOutput {
    audio: Vec<f32>,
    samples: usize,
    durations: Option<Vec<f32>>,
}

/// A session for the graph at `path` (one of `voice`'s), with `intra_threads` threads, on `device`. `one_shape`: the
/// session only ever runs one input shape, so its GPU memory arena grows by what is asked, not to the next power of
/// two (ONNX Runtime's default, which suits a session whose shapes keep growing).
pub(crate) fn build_session(
    env: &ort::environment::Environment,
    voice: &PiperVoice,
    path: &Path,
    intra_threads: usize,
    device: Device,
    spin: bool,
    one_shape: bool,
) -> Result<Session, EngineError> {
    let fail = |e: &dyn std::fmt::Display| EngineError::VoiceLoad {
        voice: voice.id.clone(),
        message: e.to_string(),
    };
    let builder = Session::builder(env)
        .map_err(|e| fail(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail(&e))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(|e| fail(&e))?
        .with_inter_threads(1)
        .map_err(|e| fail(&e))?
        .with_intra_op_spinning(spin)
        .map_err(|e| fail(&e))?;
    let mut builder = match device {
        Device::Cpu => builder,
        Device::Cuda { id, conv_search } => {
            with_cuda(builder, id, conv_search, one_shape).map_err(|e| fail(&e))?
        }
    };
    builder.commit_from_file(path).map_err(|e| fail(&e))
}

impl RunStop {
    pub(crate) fn new(voice: &PiperVoice) -> Result<Arc<Self>, EngineError> {
        let options = RunOptions::new()
            .map_err(|e| EngineError::VoiceLoad { voice: voice.id.clone(), message: e.to_string() })?;
        Ok(Arc::new(Self { options, requested: AtomicBool::new(false) }))
    }

    /// The options every forward pass runs with (its terminate flag).
    pub(crate) fn options(&self) -> &RunOptions {
        &self.options
    }
}

/// Adds ONNX Runtime's CUDA execution provider: an error, never a silent fallback to the CPU, when the GPU, the
/// provider library or the CUDA libraries are missing.
#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    id: i32,
    conv_search: ConvSearch,
    one_shape: bool,
) -> Result<ort::session::builder::SessionBuilder, String> {
    use ort::ep::cuda::ConvAlgorithmSearch;
    // Not ONNX Runtime's default exhaustive search, which times every convolution algorithm again for each new
    // input length: every chunk has its own.
    let search = match conv_search {
        ConvSearch::Heuristic => ConvAlgorithmSearch::Heuristic,
        ConvSearch::Fixed => ConvAlgorithmSearch::Default,
        ConvSearch::Exhaustive => ConvAlgorithmSearch::Exhaustive,
    };
    let mut cuda = ort::ep::CUDA::default().with_device_id(id).with_conv_algorithm_search(search);
    if one_shape {
        cuda = cuda.with_arena_extend_strategy(ort::ep::ArenaExtendStrategy::SameAsRequested);
    }
    let cuda = cuda.build().error_on_failure();
    builder.with_execution_providers([cuda]).map_err(|e| {
        format!("cannot use CUDA device {id}: {e} (the GPU build of ONNX Runtime and the CUDA libraries are needed)")
    })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _builder: ort::session::builder::SessionBuilder,
    id: i32,
    _: ConvSearch,
    _: bool,
) -> Result<ort::session::builder::SessionBuilder, String> {
    Err(format!("cannot use CUDA device {id}: this build has no CUDA support (build with --features cuda)"))
}

impl Model for PiperModel {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.stop) as Arc<dyn Interrupt>)
    }

    fn hop_length(&self) -> usize {
        PIPER_HOP_LENGTH
    }

    fn infer(&mut self, ids: &[i64], scales: Scales) -> Result<ModelOutput, EngineError> {
        let n = ids.len();
        let RawOutput { audio, durations, .. } = self.run(ids.to_vec(), vec![n as i64], scales)?;
        let durations = durations.unwrap_or_else(|| {
            // Without the duration tensor, spread the audio evenly over the ids (estimated timestamps).
            let frames = audio.len() as f32 / PIPER_HOP_LENGTH as f32;
            vec![frames / n.max(1) as f32; n]
        });
        Ok(ModelOutput { audio, durations })
    }

    /// One forward pass over the items padded to the longest. Each item's audio is cut to its own length (its
    /// durations' sum): the padded tail is not silent. A graph without durations runs the items one by one.
    fn infer_batch(&mut self, items: &[&[i64]], scales: Scales) -> Result<Vec<ModelOutput>, EngineError> {
        if items.len() <= 1 || !self.has_durations {
            return items.iter().map(|ids| self.infer(ids, scales)).collect();
        }
        let width = items.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut input = Vec::with_capacity(items.len() * width);
        for ids in items {
            input.extend_from_slice(ids);
            // Padding is masked by the lengths; Piper's pad id is 0.
            input.resize(input.len() + width - ids.len(), 0);
        }
        let lengths = items.iter().map(|ids| ids.len() as i64).collect();
        let RawOutput { audio, samples, durations } = self.run(input, lengths, scales)?;
        let durations = durations.unwrap_or_default();
        if audio.len() != samples * items.len() || durations.len() != width * items.len() {
            return Err(EngineError::Inference(format!(
                "unexpected batch output: {} samples and {} durations for {} items",
                audio.len(),
                durations.len(),
                items.len()
            )));
        }
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, ids)| {
                let durations = durations[i * width..i * width + ids.len()].to_vec();
                let frames: f32 = durations.iter().map(|d| d.max(0.0)).sum();
                let len = (frames.round() as usize).saturating_mul(PIPER_HOP_LENGTH).min(samples);
                ModelOutput { audio: audio[i * samples..i * samples + len].to_vec(), durations }
            })
            .collect())
    }
}
