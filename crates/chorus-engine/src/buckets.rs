//! Shape buckets: the few input shapes a bucketed voice's forward passes run on.
//!
//! On a GPU, a forward pass of a shape the session has not just run costs far more than a repeated one (ONNX
//! Runtime's CUDA provider builds cuDNN execution plans for a convolution whenever its input shape differs from
//! that node's previous run; docs/benchmarks.md section 4). Every chunk has its own number of phoneme ids and of
//! frames, so unbucketed nearly every pass is a new shape. A bucketed voice ([`crate::piper::BucketedPiper`])
//! pads the ids of a pass to one of a few lengths, runs the graph's encoder part, pads the frame count the
//! durations give to one of a few frame counts and runs the decoder part on it, and pads the number of items to
//! one of a few batch sizes; each item's audio is then cut to its own durations (timestamps are unchanged, since the
//! durations are). Frames and ids past an item's length are masked as a batch's padding always was.

use std::fmt;

/// The bucket lists of a voice's passes: ids per item, frames per item, and items per pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeBuckets {
    /// Lengths the phoneme ids of a pass are padded to (ascending).
    pub ids: Vec<usize>,
    /// Frame counts the decoder runs on (ascending).
    pub frames: Vec<usize>,
    /// Items per pass (ascending, starting at 1).
    pub batches: Vec<usize>,
    /// The most items x frames one decoder pass takes (its activations are about 200 KB per frame of each item);
    /// a pass with more is run as several decoder passes.
    pub max_frame_rows: usize,
}

/// Ids of an opening chunk: a few words of at most 20 phonemes, two ids each plus the ends and punctuation.
pub const OPENING_IDS: usize = 64;
/// Frames of an opening chunk at the slowest speed (0.5): about 110 frames at speed 1.
pub const OPENING_FRAMES: usize = 256;

impl ShapeBuckets {
    /// The default lists for passes of up to `max_batch` items: ids 32 to 1024 and frames 128 to 4096 in powers of
    /// two (a chunk holds at most 400 phonemes, about 810 ids and 2600 frames), batches in powers of two up to
    /// `max_batch`, and at most 8192 frames x items per decoder pass (about 1.6 GB of activations).
    pub fn defaults(max_batch: usize) -> Self {
        Self {
            ids: vec![32, 64, 128, 256, 512, 1024],
            frames: vec![128, 256, 512, 1024, 2048, 4096],
            batches: batch_sizes(max_batch),
            max_frame_rows: 8192,
        }
    }

    /// Lists with every entry checked (positive, sorted, deduplicated); `batches` follows `max_batch`.
    pub fn new(
        ids: Vec<usize>,
        frames: Vec<usize>,
        max_batch: usize,
        max_frame_rows: usize,
    ) -> Result<Self, String> {
        let clean = |mut v: Vec<usize>, what: &str| -> Result<Vec<usize>, String> {
            if v.is_empty() || v.contains(&0) {
                return Err(format!("{what} buckets must be positive numbers, at least one"));
            }
            v.sort_unstable();
            v.dedup();
            Ok(v)
        };
        if max_frame_rows == 0 {
            return Err("the frames x items limit of a decoder pass must be positive".into());
        }
        Ok(Self {
            ids: clean(ids, "id")?,
            frames: clean(frames, "frame")?,
            batches: batch_sizes(max_batch),
            max_frame_rows,
        })
    }

    /// The same lists without the ids and frames above `max_ids` and `max_frames` (at least the first of each): the
    /// shapes a thread that only runs opening chunks needs.
    pub fn up_to(&self, max_ids: usize, max_frames: usize) -> Self {
        let keep = |v: &[usize], max: usize| {
            let kept: Vec<usize> = v.iter().copied().filter(|&n| n <= max).collect();
            if kept.is_empty() { v.iter().take(1).copied().collect() } else { kept }
        };
        Self { ids: keep(&self.ids, max_ids), frames: keep(&self.frames, max_frames), ..self.clone() }
    }

    /// The id length a pass whose longest item has `n` ids runs at; `None` beyond the last bucket (such a pass
    /// runs at its own length).
    pub fn ids_bucket(&self, n: usize) -> Option<usize> {
        self.ids.iter().copied().find(|&b| b >= n)
    }

    /// The frame count a decoder pass whose longest item has `n` frames runs at; `None` beyond the last bucket.
    pub fn frames_bucket(&self, n: usize) -> Option<usize> {
        self.frames.iter().copied().find(|&b| b >= n)
    }

    /// The number of items a pass of `n` items runs with (padded with copies); `n` itself beyond the last bucket.
    pub fn batch_bucket(&self, n: usize) -> usize {
        self.batches.iter().copied().find(|&b| b >= n).unwrap_or(n)
    }

    /// The most items one decoder pass at `frames` frames takes: the largest batch bucket within
    /// [`ShapeBuckets::max_frame_rows`], at least 1.
    pub fn decoder_rows(&self, frames: usize) -> usize {
        let fit = self.max_frame_rows / frames.max(1);
        self.batches.iter().copied().filter(|&b| b <= fit).max().unwrap_or(1)
    }

    /// Every encoder shape (items, ids).
    pub fn encoder_shapes(&self) -> Vec<(usize, usize)> {
        self.batches.iter().flat_map(|&b| self.ids.iter().map(move |&w| (b, w))).collect()
    }

    /// Every decoder shape (items, frames) within the frames x items limit.
    pub fn decoder_shapes(&self) -> Vec<(usize, usize)> {
        self.frames
            .iter()
            .flat_map(|&f| {
                let rows = self.decoder_rows(f);
                self.batches.iter().copied().filter(move |&b| b <= rows).map(move |b| (b, f))
            })
            .collect()
    }
}

/// Powers of two below `max_batch`, then `max_batch`.
fn batch_sizes(max_batch: usize) -> Vec<usize> {
    let max = max_batch.max(1);
    let mut v: Vec<usize> =
        std::iter::successors(Some(1usize), |b| b.checked_mul(2)).take_while(|&b| b < max).collect();
    v.push(max);
    v
}

impl fmt::Display for ShapeBuckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[usize]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        write!(
            f,
            "ids {}; frames {}; items {}; at most {} frames x items per decoder pass",
            list(&self.ids),
            list(&self.frames),
            list(&self.batches),
            self.max_frame_rows
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_go_to_the_smallest_bucket_that_holds_them() {
        let b = ShapeBuckets::defaults(16);
        assert_eq!(b.batches, [1, 2, 4, 8, 16]);
        assert_eq!(b.ids_bucket(1), Some(32));
        assert_eq!(b.ids_bucket(33), Some(64));
        assert_eq!(b.ids_bucket(1024), Some(1024));
        assert_eq!(b.ids_bucket(1025), None);
        assert_eq!(b.frames_bucket(129), Some(256));
        assert_eq!(b.batch_bucket(3), 4);
        assert_eq!(b.batch_bucket(17), 17);
        assert_eq!(ShapeBuckets::defaults(12).batches, [1, 2, 4, 8, 12]);
        assert_eq!(ShapeBuckets::defaults(1).batches, [1]);
    }

    #[test]
    fn decoder_passes_stay_within_the_frame_rows_limit() {
        let b = ShapeBuckets::defaults(16);
        assert_eq!(b.decoder_rows(512), 16);
        assert_eq!(b.decoder_rows(1024), 8);
        assert_eq!(b.decoder_rows(4096), 2);
        assert_eq!(b.decoder_rows(100_000), 1);
        let shapes = b.decoder_shapes();
        assert!(shapes.iter().all(|(rows, f)| rows * f <= b.max_frame_rows));
        assert!(shapes.contains(&(16, 512)) && !shapes.contains(&(16, 1024)) && shapes.contains(&(2, 4096)));
        assert_eq!(b.encoder_shapes().len(), 5 * 6);
    }

    #[test]
    fn lists_are_checked_and_the_opening_lane_keeps_the_small_shapes() {
        let b = ShapeBuckets::new(vec![64, 32, 64], vec![256], 4, 4096).unwrap();
        assert_eq!((b.ids.as_slice(), b.batches.as_slice()), ([32, 64].as_slice(), [1, 2, 4].as_slice()));
        assert!(ShapeBuckets::new(vec![], vec![1], 4, 1).is_err());
        assert!(ShapeBuckets::new(vec![1], vec![1], 4, 0).is_err());
        let lane = ShapeBuckets::defaults(16).up_to(OPENING_IDS, OPENING_FRAMES);
        assert_eq!(
            (lane.ids.as_slice(), lane.frames.as_slice()),
            ([32, 64].as_slice(), [128, 256].as_slice())
        );
        assert_eq!(ShapeBuckets::defaults(16).up_to(1, 1).ids, [32], "at least one bucket");
    }
}
