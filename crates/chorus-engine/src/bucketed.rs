//! A Piper voice on shape buckets: the graph split after its duration predictor (`scripts/split_piper.py`), its
//! passes padded to a few shapes (see [`crate::buckets`]).
//!
//! A pass: the items' ids are padded to the bucket of the longest and the items to a batch bucket (with copies of
//! the shortest item), the encoder part gives every id's duration, the decoder part runs on the frame bucket of the
//! longest item's frames (in several passes when the items x frames would exceed
//! [`ShapeBuckets::max_frame_rows`], longest items first), and each item's audio is cut to its own durations' sum.
//! The durations (so the timestamps and the audio's length) are those of an unbucketed pass; the audio differs only
//! by float rounding and by what the padded frames leave in the vocoder's last frames (measured: at most 1.3e-4 of
//! full scale, tests/bucketed.rs).
//!
//! Pinned sessions (a GPU): every shape of the bucket lists has its own ONNX Runtime session, so every pass runs a
//! session on the shape it ran before. ONNX Runtime's CUDA provider keeps one cuDNN plan per convolution, for the
//! shape it last saw, so one session cycling through the buckets would build plans again whenever the shape
//! changes. All of them run once at warm-up ([`Model::warm_shapes`]). A shape outside the lists (an item longer than
//! the last bucket) runs on a shared session at its own shape. Unpinned (a CPU, where a new shape costs nothing
//! more), both parts have one session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ort::session::Session;
use ort::value::Tensor;

use crate::EngineError;
use crate::buckets::ShapeBuckets;
use crate::model::{Interrupt, Model, ModelOutput, Scales};
use crate::piper::{PIPER_HOP_LENGTH, PiperVoice, RunStop, build_session};
use crate::runtime::Device;

/// The encoder part's per-id outputs, host-side, for `rows` items of `width` ids.
struct Encoded {
    rows: usize,
    width: usize,
    /// Channels of the prior (192 for Piper voices).
    channels: usize,
    /// [rows, 1, width]
    durations: Vec<f32>,
    /// [rows, 1, 1, width]
    x_mask: Vec<f32>,
    /// [rows, width, channels]
    m_p: Vec<f32>,
    /// [rows, width, channels]
    logs_p: Vec<f32>,
}

/// One part's sessions: one per pinned shape (items, length), and one for every other shape.
struct Part {
    pinned: HashMap<(usize, usize), Session>,
    any: Session,
}

impl Part {
    fn session(&mut self, shape: (usize, usize)) -> &mut Session {
        match self.pinned.get_mut(&shape) {
            Some(s) => s,
            None => &mut self.any,
        }
    }
}

/// A Piper voice whose passes run on shape buckets.
pub struct BucketedPiper {
    sample_rate: u32,
    buckets: ShapeBuckets,
    encoder: Part,
    decoder: Part,
    stop: Arc<RunStop>,
}

impl std::fmt::Debug for BucketedPiper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketedPiper")
            .field("buckets", &self.buckets)
            .field("pinned", &(self.encoder.pinned.len() + self.decoder.pinned.len()))
            .finish_non_exhaustive()
    }
}

impl BucketedPiper {
    /// Loads the voice's split graph (an error when it has none: run `scripts/setup`) on `device`; with `pinned`,
    /// one session per shape of `buckets` (built on up to `builders` threads at once) plus one shared session per
    /// part, else one session per part.
    pub fn load(
        env: &ort::environment::Environment,
        voice: &PiperVoice,
        intra_threads: usize,
        device: Device,
        buckets: ShapeBuckets,
        pinned: bool,
        builders: usize,
    ) -> Result<Self, EngineError> {
        let split = voice.split.as_ref().ok_or_else(|| EngineError::VoiceLoad {
            voice: voice.id.clone(),
            message: format!(
                "shape buckets need the graph split in two ({0}.enc.onnx and {0}.dec.onnx beside the config; \
                 scripts/setup makes them with scripts/split_piper.py)",
                voice.id
            ),
        })?;
        let build = |path: &std::path::Path, one_shape: bool| {
            build_session(env, voice, path, intra_threads, device, true, one_shape)
        };
        let started = Instant::now();
        let encoder_any = build(&split.encoder, false)?;
        let decoder_any = build(&split.decoder, false)?;
        let (encoder, decoder) = if pinned {
            let jobs: Vec<(bool, (usize, usize))> = buckets
                .encoder_shapes()
                .into_iter()
                .map(|s| (true, s))
                .chain(buckets.decoder_shapes().into_iter().map(|s| (false, s)))
                .collect();
            let built = build_all(&jobs, builders, |&(enc, _)| {
                build(if enc { &split.encoder } else { &split.decoder }, true)
            })?;
            let (mut encoder, mut decoder) = (HashMap::new(), HashMap::new());
            for ((enc, shape), session) in jobs.into_iter().zip(built) {
                if enc { &mut encoder } else { &mut decoder }.insert(shape, session);
            }
            (encoder, decoder)
        } else {
            (HashMap::new(), HashMap::new())
        };
        tracing::debug!(
            voice = %voice.id,
            sessions = encoder.len() + decoder.len() + 2,
            load_ms = started.elapsed().as_millis(),
            "Bucketed sessions built."
        );
        Ok(Self {
            sample_rate: voice.sample_rate,
            buckets,
            encoder: Part { pinned: encoder, any: encoder_any },
            decoder: Part { pinned: decoder, any: decoder_any },
            stop: RunStop::new(voice)?,
        })
    }

    /// The bucket lists this model runs on.
    pub fn buckets(&self) -> &ShapeBuckets {
        &self.buckets
    }

    /// Runs the encoder part on `items` padded to `width` ids (ids past an item's length are Piper's pad, 0).
    fn encode(&mut self, items: &[&[i64]], width: usize, scales: Scales) -> Result<Encoded, EngineError> {
        let fail = |e: &dyn std::fmt::Display| EngineError::Inference(e.to_string());
        let rows = items.len();
        let mut input = Vec::with_capacity(rows * width);
        for ids in items {
            input.extend_from_slice(ids);
            input.resize(input.len() + width - ids.len(), 0);
        }
        let lengths: Vec<i64> = items.iter().map(|ids| ids.len() as i64).collect();
        let input = Tensor::from_array(([rows, width], input)).map_err(|e| fail(&e))?;
        let lengths = Tensor::from_array(([rows], lengths)).map_err(|e| fail(&e))?;
        let scales = scales_tensor(scales)?;
        let options = self.stop.options();
        let session = self.encoder.session((rows, width));
        let outputs = session
            .run_with_options(
                ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales],
                options,
            )
            .map_err(|e| fail(&e))?;
        let take = |name: &str| -> Result<(Vec<usize>, Vec<f32>), EngineError> {
            let (shape, data) = outputs[name].try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
            let shape = shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
            Ok((shape, data.to_vec()))
        };
        let (_, durations) = take("durations")?;
        let (_, x_mask) = take("x_mask")?;
        let (shape, m_p) = take("m_p")?;
        let (_, logs_p) = take("logs_p")?;
        let channels = shape.last().copied().unwrap_or(0);
        let ok = durations.len() == rows * width
            && x_mask.len() == rows * width
            && channels > 0
            && m_p.len() == rows * width * channels
            && logs_p.len() == m_p.len();
        if !ok {
            return Err(EngineError::Inference(format!(
                "unexpected encoder output for {rows} x {width} ids: {} durations, prior {shape:?}",
                durations.len()
            )));
        }
        Ok(Encoded { rows, width, channels, durations, x_mask, m_p, logs_p })
    }

    /// Runs the decoder part on the encoded items `rows` (indices into `enc`), padded to `padded` items with copies
    /// of the last, at `frames` frames. Returns the audio, [padded, samples] flat, and the samples per item.
    fn decode(
        &mut self,
        enc: &Encoded,
        rows: &[usize],
        padded: usize,
        frames: usize,
        scales: Scales,
    ) -> Result<(Vec<f32>, usize), EngineError> {
        let fail = |e: &dyn std::fmt::Display| EngineError::Inference(e.to_string());
        let (w, c) = (enc.width, enc.channels);
        let last = rows.last().copied().unwrap_or(0);
        let picked: Vec<usize> = rows.iter().copied().chain(std::iter::repeat(last)).take(padded).collect();
        let gather = |data: &[f32], per_row: usize| -> Vec<f32> {
            picked.iter().flat_map(|&r| data[r * per_row..(r + 1) * per_row].iter().copied()).collect()
        };
        let durations =
            Tensor::from_array(([padded, 1, w], gather(&enc.durations, w))).map_err(|e| fail(&e))?;
        let x_mask = Tensor::from_array(([padded, 1, 1, w], gather(&enc.x_mask, w))).map_err(|e| fail(&e))?;
        let m_p = Tensor::from_array(([padded, w, c], gather(&enc.m_p, w * c))).map_err(|e| fail(&e))?;
        let logs_p =
            Tensor::from_array(([padded, w, c], gather(&enc.logs_p, w * c))).map_err(|e| fail(&e))?;
        let frames_value = Tensor::from_array(([1usize], vec![frames as i64])).map_err(|e| fail(&e))?;
        let scales = scales_tensor(scales)?;
        let options = self.stop.options();
        let session = self.decoder.session((padded, frames));
        let outputs = session
            .run_with_options(
                ort::inputs![
                    "durations" => durations,
                    "x_mask" => x_mask,
                    "m_p" => m_p,
                    "logs_p" => logs_p,
                    "scales" => scales,
                    "frames" => frames_value
                ],
                options,
            )
            .map_err(|e| fail(&e))?;
        let (shape, audio) = outputs["output"].try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
        let samples = shape.last().map_or(0, |n| usize::try_from(*n).unwrap_or(0));
        if audio.len() != samples * padded || samples < frames * PIPER_HOP_LENGTH {
            return Err(EngineError::Inference(format!(
                "unexpected decoder output: {} samples for {padded} items of {frames} frames",
                audio.len()
            )));
        }
        Ok((audio.iter().map(|s| if s.is_finite() { *s } else { 0.0 }).collect(), samples))
    }
}

/// Builds one session per job on up to `builders` threads at once, in the jobs' order.
fn build_all<J: Sync>(
    jobs: &[J],
    builders: usize,
    build: impl Fn(&J) -> Result<Session, EngineError> + Sync,
) -> Result<Vec<Session>, EngineError> {
    let builders = builders.clamp(1, jobs.len().max(1));
    let per = jobs.len().div_ceil(builders).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|chunk| s.spawn(|| chunk.iter().map(&build).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut all = Vec::with_capacity(jobs.len());
        for h in handles {
            let built = h.join().map_err(|_| EngineError::Runtime("a session builder panicked".into()))??;
            all.extend(built);
        }
        Ok(all)
    })
}

fn scales_tensor(scales: Scales) -> Result<Tensor<f32>, EngineError> {
    Tensor::from_array(([3usize], vec![scales.noise_scale, scales.length_scale, scales.noise_w]))
        .map_err(|e| EngineError::Inference(e.to_string()))
}

/// An item's frame count as the graph computes it: its durations' sum, at least one.
fn frames_of(durations: &[f32]) -> usize {
    durations.iter().map(|d| f64::from(d.max(0.0))).sum::<f64>().round().max(1.0) as usize
}

impl Model for BucketedPiper {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn hop_length(&self) -> usize {
        PIPER_HOP_LENGTH
    }

    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.stop) as Arc<dyn Interrupt>)
    }

    fn infer(&mut self, ids: &[i64], scales: Scales) -> Result<ModelOutput, EngineError> {
        let mut out = self.infer_batch(&[ids], scales)?;
        out.pop().ok_or_else(|| EngineError::Inference("no output".into()))
    }

    fn infer_batch(&mut self, items: &[&[i64]], scales: Scales) -> Result<Vec<ModelOutput>, EngineError> {
        let n = items.len();
        let Some(longest) = items.iter().map(|ids| ids.len()).max() else { return Ok(Vec::new()) };
        let shortest = (0..n).min_by_key(|&i| items[i].len()).unwrap_or(0);
        let width = self.buckets.ids_bucket(longest).unwrap_or(longest);
        let rows = self.buckets.batch_bucket(n);
        let padded: Vec<&[i64]> =
            items.iter().copied().chain(std::iter::repeat(items[shortest])).take(rows).collect();
        let enc = self.encode(&padded, width, scales)?;
        let durations = |i: usize, len: usize| enc.durations[i * enc.width..i * enc.width + len].to_vec();
        let frames: Vec<usize> = (0..n).map(|i| frames_of(&durations(i, items[i].len()))).collect();
        // Longest first; each decoder pass takes as many as fit its frame bucket's limit.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(frames[i]));
        let mut outputs: Vec<Option<ModelOutput>> = vec![None; n];
        let mut rest = order.as_slice();
        while let Some(&first) = rest.first() {
            let f = self.buckets.frames_bucket(frames[first]).unwrap_or(frames[first]);
            let (group, tail) = rest.split_at(self.buckets.decoder_rows(f).min(rest.len()));
            let padded_rows = self.buckets.batch_bucket(group.len());
            let (audio, samples) = self.decode(&enc, group, padded_rows, f, scales)?;
            for (j, &i) in group.iter().enumerate() {
                let len = (frames[i] * PIPER_HOP_LENGTH).min(samples);
                let audio = audio[j * samples..j * samples + len].to_vec();
                outputs[i] = Some(ModelOutput { audio, durations: durations(i, items[i].len()) });
            }
            rest = tail;
        }
        outputs
            .into_iter()
            .map(|o| o.ok_or_else(|| EngineError::Inference("an item got no audio".into())))
            .collect()
    }

    /// Runs every pinned shape once: each encoder shape on copies of `ids` (cut to the bucket), each decoder shape
    /// on a short item's encoding, so that no request pays a first-of-its-shape cost.
    fn warm_shapes(&mut self, ids: &[i64], scales: Scales) -> Result<usize, EngineError> {
        let started = Instant::now();
        let cut = |ids: &[i64], n: usize| -> Vec<i64> {
            match ids.split_last() {
                Some((last, body)) if ids.len() > n => {
                    body[..n.saturating_sub(1)].iter().chain([last]).copied().collect()
                }
                _ => ids.to_vec(),
            }
        };
        let mut encoder: Vec<(usize, usize)> = self.encoder.pinned.keys().copied().collect();
        encoder.sort_unstable();
        for &(rows, width) in &encoder {
            let item = cut(ids, width);
            let items = vec![item.as_slice(); rows];
            self.encode(&items, width, scales)?;
        }
        let mut decoder: Vec<(usize, usize)> = self.decoder.pinned.keys().copied().collect();
        decoder.sort_unstable();
        let short = cut(ids, 10);
        let width = self.buckets.ids_bucket(short.len()).unwrap_or(short.len());
        let mut encoded: Option<Encoded> = None;
        for &(rows, frames) in &decoder {
            let enc = match encoded.take() {
                Some(enc) if enc.rows == rows => enc,
                _ => self.encode(&vec![short.as_slice(); rows], width, scales)?,
            };
            let all: Vec<usize> = (0..rows).collect();
            self.decode(&enc, &all, rows, frames, scales)?;
            encoded = Some(enc);
        }
        let shapes = encoder.len() + decoder.len();
        tracing::debug!(shapes, warm_ms = started.elapsed().as_millis(), "Every bucket shape warmed.");
        Ok(shapes)
    }
}
