//! The chunk scheduler: model threads take the most urgent chunk next.
//!
//! Every stream has a deadline: the moment its listener's playback buffer would run dry, i.e. when its first audio
//! was ready plus the audio it has received so far. A new stream's first chunk is due now. A chunk must *finish* by
//! its deadline, so the queue orders chunks by their latest start (deadline minus the chunk's expected compute
//! time), ties in arrival order: a new request does not wait behind a long paragraph, a long chunk starts early
//! enough to be ready in time, and a stream that is ahead of real time only gets compute when nothing more urgent
//! is waiting. On a CPU each model thread
//! runs one chunk at a time (batching a VITS graph does not pay there: 0.6-0.95x the throughput of single calls).
//!
//! **Chunks are sized against slack** ([`ChunkPolicy`]): a stream with no audio buffered gets an opening chunk of
//! a few words (fast first audio whatever the text); each later chunk may take a fair share of the audio its
//! listener has buffered, split among the streams competing for the threads, and never more than
//! [`ChunkPolicy::max_pass`] of compute, so no pass holds a thread long while another stream is close to running
//! dry. As a stream gets ahead its chunks grow back to whole sentences.
//!
//! **Preemption on any thread** ([`preemption_victim`]): a chunk that is due now and finds every thread busy stops
//! the pass (ONNX Runtime's terminate flag) whose stream can best afford it: not past half its compute, with at
//! least [`PREEMPTIBLE_SLACK`] after the restart, the least work lost; unless a thread frees up within
//! [`WAIT_RATHER_THAN_PREEMPT`] anyway. The stopped chunk goes back to the queue with its priority.
//!
//! **Capacity** ([`capacity_from_throughput`], [`CapacityControl`]): measured at warm-up with every thread busy at
//! once, lowered while serving when a chunk is ready less than [`NEAR_DRY`] before its listener needs it, raised
//! again one stream at a time when none is.
//!
//! Every stream keeps at most one chunk queued (the synthesis pipeline submits the next chunk when the previous one
//! is done), so the queue holds at most one entry per stream in flight: its bound is the capacity.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running chunk may be preempted only while its latest start is at least this far away (its stream has more
/// than this much audio buffered beyond the chunk's compute), so preemption never makes a stream underrun.
pub const PREEMPTIBLE_SLACK: Duration = Duration::from_millis(500);

/// When a stream's next chunk must be ready: its first audio's time plus the audio sent so far; now for a stream
/// that has no audio yet.
pub fn deadline(first_audio_at: Option<Instant>, audio_sent: Duration, now: Instant) -> Instant {
    match first_audio_at {
        Some(t) => t + audio_sent,
        None => now,
    }
}

/// The latest moment a chunk can start and still be ready by `deadline`: the queue's priority.
pub fn latest_start(deadline: Instant, expected_compute: Duration) -> Instant {
    deadline.checked_sub(expected_compute).unwrap_or(deadline)
}

struct Entry<T> {
    deadline: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && self.seq == other.seq
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline, then the earliest arrival.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.deadline.cmp(&self.deadline).then_with(|| other.seq.cmp(&self.seq))
    }
}

struct State<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    closed: bool,
    /// Threads blocked in `pop` (any item will do).
    idle: usize,
    /// Threads blocked in [`ChunkQueue::pop_batch_where`] for items of a kind: a push wakes every waiter while
    /// there is one, since the thread one wake-up reaches might not take the item.
    choosy: usize,
}

/// An earliest-deadline-first queue shared by a voice's model threads.
pub struct ChunkQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    limit: usize,
}

impl<T> std::fmt::Debug for ChunkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkQueue").field("len", &self.len()).field("limit", &self.limit).finish()
    }
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// More items than the limit are waiting: a bug in admission (each stream holds at most one).
    Full,
    /// The pool is shutting down.
    Closed,
}

impl<T> ChunkQueue<T> {
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                heap: BinaryHeap::new(),
                next_seq: 0,
                closed: false,
                idle: 0,
                choosy: 0,
            }),
            ready: Condvar::new(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item` with priority `deadline` (earliest first; callers pass [`latest_start`]).
    pub fn push(&self, item: T, deadline: Instant) -> Result<(), PushError> {
        self.push_idle(item, deadline).map(drop)
    }

    /// [`ChunkQueue::push`], returning how many threads were idle (blocked in `pop`) when it was queued.
    pub fn push_idle(&self, item: T, deadline: Instant) -> Result<usize, PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        if s.heap.len() >= self.limit {
            return Err(PushError::Full);
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        s.heap.push(Entry { deadline, seq, item });
        let idle = s.idle;
        let choosy = s.choosy > 0;
        drop(s);
        if choosy {
            self.ready.notify_all();
        } else {
            self.ready.notify_one();
        }
        Ok(idle)
    }

    /// Queues every item at once (each with its priority), then wakes every waiting thread: the threads that take
    /// batches find them all.
    pub fn push_all(&self, items: Vec<(T, Instant)>) -> Result<(), PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        if s.heap.len() + items.len() > self.limit {
            return Err(PushError::Full);
        }
        for (item, deadline) in items {
            let seq = s.next_seq;
            s.next_seq += 1;
            s.heap.push(Entry { deadline, seq, item });
        }
        drop(s);
        self.ready.notify_all();
        Ok(())
    }

    /// The most urgent item, waiting for one; `None` once the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        self.pop_batch(1, |_, _| false).and_then(|batch| batch.into_iter().next())
    }

    /// The most urgent item (waiting for one) plus, in priority order, up to `max - 1` more of those waiting
    /// that `compatible` accepts next to it (items that can share its forward pass); `None` once the queue is
    /// closed and empty. The others keep their place.
    pub fn pop_batch(&self, max: usize, compatible: impl Fn(&T, &T) -> bool) -> Option<Vec<T>> {
        let mut s = self.lock();
        let first = loop {
            if let Some(e) = s.heap.pop() {
                break e.item;
            }
            if s.closed {
                return None;
            }
            s.idle += 1;
            s = self.ready.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
            s.idle -= 1;
        };
        Some(Self::fill(s, first, max, compatible))
    }

    /// [`ChunkQueue::pop_batch`] over the items `eligible` accepts only: the most urgent of them (waiting for
    /// one; the others keep their place) plus compatible ones; `None` once the queue is closed and holds none.
    /// The thread of a GPU that serves only new streams' opening chunks takes its work here.
    pub fn pop_batch_where(
        &self,
        eligible: impl Fn(&T) -> bool,
        max: usize,
        compatible: impl Fn(&T, &T) -> bool,
    ) -> Option<Vec<T>> {
        self.pop_eligible(eligible, max, compatible, true)
    }

    /// [`ChunkQueue::pop_batch_where`] without waiting: `None` when no item is eligible now.
    pub fn try_pop_batch_where(
        &self,
        eligible: impl Fn(&T) -> bool,
        max: usize,
        compatible: impl Fn(&T, &T) -> bool,
    ) -> Option<Vec<T>> {
        self.pop_eligible(eligible, max, compatible, false)
    }

    /// [`ChunkQueue::pop_batch_where`], waiting for an eligible item only with `wait`.
    fn pop_eligible(
        &self,
        eligible: impl Fn(&T) -> bool,
        max: usize,
        compatible: impl Fn(&T, &T) -> bool,
        wait: bool,
    ) -> Option<Vec<T>> {
        let mut s = self.lock();
        let first = loop {
            if let Some(item) = Self::take_first(&mut s, &eligible) {
                break item;
            }
            if s.closed || !wait {
                return None;
            }
            s.choosy += 1;
            s = self.ready.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
            s.choosy -= 1;
        };
        Some(Self::fill(s, first, max, |a, b| eligible(b) && compatible(a, b)))
    }

    /// Removes the most urgent item `eligible` accepts; the others keep their place.
    fn take_first(s: &mut State<T>, eligible: &impl Fn(&T) -> bool) -> Option<T> {
        let mut passed = Vec::new();
        let mut found = None;
        while let Some(e) = s.heap.pop() {
            if eligible(&e.item) {
                found = Some(e.item);
                break;
            }
            passed.push(e);
        }
        s.heap.extend(passed);
        found
    }

    /// `first` plus, in priority order, up to `max - 1` of the waiting items `compatible` accepts next to it.
    fn fill(
        mut s: std::sync::MutexGuard<'_, State<T>>,
        first: T,
        max: usize,
        compatible: impl Fn(&T, &T) -> bool,
    ) -> Vec<T> {
        let mut batch = vec![first];
        let mut skipped = Vec::new();
        while batch.len() < max.max(1) {
            let Some(e) = s.heap.pop() else { break };
            if compatible(&batch[0], &e.item) {
                batch.push(e.item);
            } else {
                skipped.push(e);
            }
        }
        // Put back what did not fit, with its original order (sequence numbers are kept).
        s.heap.extend(skipped);
        batch
    }

    /// The most urgent item if one is waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.lock().heap.pop().map(|e| e.item)
    }

    /// No more pushes; `pop` returns `None` once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.lock().heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many streams a voice can keep ahead of real time: the model threads' combined speed (1 / real-time factor
/// each), derated to `utilization` so that first chunks find a free thread quickly.
pub fn capacity(model_threads: usize, rtf: f64, utilization: f64) -> u32 {
    if !(rtf.is_finite() && rtf > 0.0) {
        return 1;
    }
    let streams = (model_threads as f64 * utilization / rtf + 1e-9).floor();
    streams.clamp(1.0, 256.0) as u32
}

/// The streams a pool keeps gap-free, from its throughput measured with every model thread busy at once (audio
/// seconds produced per second): each stream consumes one audio second per second, and [`UTILIZATION`] of the
/// throughput is planned, the rest being the headroom that lets a new stream's first chunk and a stream close to
/// running dry find a thread at once.
pub fn capacity_from_throughput(audio_seconds_per_second: f64) -> u32 {
    if !(audio_seconds_per_second.is_finite() && audio_seconds_per_second > 0.0) {
        return 1;
    }
    (audio_seconds_per_second * UTILIZATION + 1e-9).floor().clamp(1.0, f64::from(MAX_CAPACITY)) as u32
}

/// The most streams a measured capacity declares: far above what one device sustains (an H100 measured 447 audio
/// seconds per second, 267 streams), so that what is declared is the measure, never this bound. (It was 256, which
/// a GPU's measure, taken on a repeated shape, used to hit.)
pub const MAX_CAPACITY: u32 = 1024;

/// Share of the measured concurrent throughput admission plans to use.
pub const UTILIZATION: f64 = 0.6;

/// The capacity that the model threads' current speed sustains while serving (the cost model's running estimate of
/// the throughput): [`capacity_from_throughput`] with a tolerance of [`ESTIMATE_TOLERANCE`], so that an estimate
/// drifting by a few percent around a whole number does not move the declared capacity up and down between
/// requests (a level held at the capacity would then queue a client now and then for a whole stream's length). A
/// real slowdown lowers it; a stream close to running dry lowers it at once through [`CapacityControl`].
pub fn tracking_capacity(audio_seconds_per_second: f64) -> u32 {
    capacity_from_throughput(audio_seconds_per_second * ESTIMATE_TOLERANCE)
}

/// How far the running throughput estimate may fall below the one that justifies a capacity before it lowers it.
pub const ESTIMATE_TOLERANCE: f64 = 1.1;

/// How chunks are sized and how long a forward pass may hold a thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkPolicy {
    /// The most expected compute of one forward pass. Whatever a thread runs, it frees up within this, so a new
    /// stream or one close to running dry never waits longer for a thread (less with preemption).
    pub max_pass: Duration,
    /// Share of its fair part of the slack that a stream's next chunk may take to compute (the rest is margin for
    /// estimation error).
    pub slack_share: f64,
}

impl Default for ChunkPolicy {
    fn default() -> Self {
        Self { max_pass: Duration::from_millis(300), slack_share: 0.8 }
    }
}

impl ChunkPolicy {
    /// The compute a stream's next chunk may take, with `slack` of audio buffered ahead of its listener and
    /// `streams` streams (itself included) sharing `threads` model threads.
    ///
    /// If every stream sized its chunk `c` this way, the chunk waits at worst for one chunk of each other stream
    /// spread over the threads, `(streams - 1) * c / threads`, then computes for `c`: it is ready before the buffer
    /// runs dry when `c <= slack * threads / (streams - 1 + threads)`. A stream with 200 ms buffered gets a short
    /// chunk, one with seconds a long one (up to [`ChunkPolicy::max_pass`]); as a stream gets ahead, its chunks
    /// grow back to whole sentences. On a batched pool (a GPU), `threads` counts a full batch per thread
    /// ([`crate::ModelPool::pass_slots`]): a batch's pass costs about one chunk's, so the chunks wait for each other's
    /// passes spread over that many slots.
    pub fn compute_budget(&self, slack: Duration, streams: usize, threads: usize) -> Duration {
        let threads = threads.max(1) as f64;
        let fair = threads / (streams.max(1) as f64 - 1.0 + threads);
        slack.mul_f64((fair * self.slack_share).clamp(0.0, 1.0)).min(self.max_pass)
    }
}

/// A stream's chunk within this of running dry (its audio ready less than this before the listener needs it) is
/// a near miss: capacity is lowered.
pub const NEAR_DRY: Duration = Duration::from_millis(100);
/// At most one decrease per this interval (a burst of near misses is one event).
const DECREASE_SPACING: Duration = Duration::from_secs(1);
/// No increase until this long after the last near miss.
const RAISE_HOLD: Duration = Duration::from_secs(5);
/// Then one more stream per interval, up to the measured capacity.
const RAISE_EVERY: Duration = Duration::from_secs(2);

/// The capacity a pool declares while it serves: the measured capacity, lowered when streams come close to running
/// dry (so that new requests wait in the API's queue instead of degrading the admitted ones) and raised again,
/// one stream at a time, while none does. Time is passed in, so that tests drive it with a virtual clock.
#[derive(Debug, Clone)]
pub struct CapacityControl {
    max: u32,
    current: u32,
    last_decrease: Option<Instant>,
    last_near_miss: Option<Instant>,
    last_raise: Instant,
    decreases: u64,
}

impl CapacityControl {
    pub fn new(max: u32, now: Instant) -> Self {
        let max = max.max(1);
        Self { max, current: max, last_decrease: None, last_near_miss: None, last_raise: now, decreases: 0 }
    }

    /// The measured capacity, the ceiling of [`CapacityControl::current`].
    pub fn max(&self) -> u32 {
        self.max
    }

    /// How many times capacity was lowered.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// A chunk of a stream with audio buffered was ready `margin` seconds before its listener needed it (negative:
    /// after, an underrun), while `load` streams were in flight. Returns whether capacity was lowered: to one below
    /// the load that came close to running dry, at most once per [`DECREASE_SPACING`] (a burst of near misses of
    /// one episode lowers it once; near misses that go on lower it again).
    pub fn record(&mut self, margin: f64, load: u32, now: Instant) -> bool {
        if margin >= NEAR_DRY.as_secs_f64() {
            return false;
        }
        self.last_near_miss = Some(now);
        if self.last_decrease.is_some_and(|t| now.saturating_duration_since(t) < DECREASE_SPACING) {
            return false;
        }
        let next = self.current.min(load.max(1)).saturating_sub(1).max(1);
        if next >= self.current {
            return false;
        }
        self.last_decrease = Some(now);
        self.current = next;
        self.decreases += 1;
        true
    }

    /// The capacity now: at most `estimate` (what the model threads' current speed sustains, see
    /// [`capacity_from_throughput`]), and at most the last near miss's load less one, raised by one when
    /// [`RAISE_HOLD`] has passed since the last near miss and [`RAISE_EVERY`] since the last change.
    pub fn current(&mut self, now: Instant, estimate: u32) -> u32 {
        self.step(now);
        self.current.min(estimate).max(1)
    }

    fn step(&mut self, now: Instant) {
        if self.current < self.max {
            let calm = self.last_near_miss.is_none_or(|t| now.saturating_duration_since(t) >= RAISE_HOLD);
            let spaced = now.saturating_duration_since(self.last_raise) >= RAISE_EVERY
                && self.last_decrease.is_none_or(|t| now.saturating_duration_since(t) >= RAISE_EVERY);
            if calm && spaced {
                self.current += 1;
                self.last_raise = now;
            }
        } else {
            self.last_raise = now;
        }
    }
}

/// A forward pass in progress, as preemption sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningPass {
    pub started: Instant,
    /// Its expected compute.
    pub expected: Duration,
    /// Its latest start (see [`latest_start`]): the later, the more slack its stream has.
    pub priority: Instant,
    /// Whether the pass can be stopped at all (its model offers an interrupt, and it is not a batch).
    pub stoppable: bool,
}

/// A thread that frees up within this is worth waiting for: no pass is stopped.
pub const WAIT_RATHER_THAN_PREEMPT: Duration = Duration::from_millis(40);

/// Which running pass to stop (its index) so that a chunk that is due now runs at once, when every thread is busy.
/// None when a thread frees up within [`WAIT_RATHER_THAN_PREEMPT`] anyway; otherwise, among the passes not past
/// half their expected compute whose stream keeps at least [`PREEMPTIBLE_SLACK`] after the restart (so stopping
/// one never makes its stream run dry, and a stopped chunk cannot be stopped forever: its slack shrinks), the one
/// with the least work done (the least lost).
pub fn preemption_victim(running: &[Option<RunningPass>], now: Instant) -> Option<usize> {
    let mut soonest_free = Duration::MAX;
    for pass in running {
        let Some(p) = pass else { return None };
        let elapsed = now.saturating_duration_since(p.started);
        soonest_free = soonest_free.min(p.expected.saturating_sub(elapsed));
    }
    if soonest_free <= WAIT_RATHER_THAN_PREEMPT {
        return None;
    }
    running
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .filter(|(_, p)| {
            let elapsed = now.saturating_duration_since(p.started);
            p.stoppable && elapsed < p.expected / 2 && p.priority >= now + PREEMPTIBLE_SLACK
        })
        .min_by_key(|(_, p)| now.saturating_duration_since(p.started))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_estimate_does_not_flap_around_a_whole_number_but_follows_a_real_slowdown() {
        // Warm-up measured 16.7 audio seconds per second: capacity 10.
        assert_eq!(capacity_from_throughput(16.7), 10);
        // The cost model drifting a few percent below it (16.2, 15.6) keeps 10: without the tolerance it read 9.
        assert_eq!(capacity_from_throughput(16.2), 9);
        assert_eq!(tracking_capacity(16.2), 10);
        assert_eq!(tracking_capacity(15.6), 10);
        // A slowdown of a fifth or more lowers it, a threefold one to a third.
        assert_eq!(tracking_capacity(13.4), 8);
        assert_eq!(tracking_capacity(16.7 / 3.0), 3);
    }

    #[test]
    fn a_batch_takes_the_most_urgent_compatible_items_and_leaves_the_rest_in_order() {
        let t0 = Instant::now();
        let q = ChunkQueue::new(16);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        q.push(("a", 1), at(30)).unwrap();
        q.push(("b", 2), at(10)).unwrap();
        q.push(("c", 1), at(0)).unwrap();
        q.push(("d", 1), at(20)).unwrap();
        q.push(("e", 2), at(40)).unwrap();
        q.push(("f", 1), at(50)).unwrap();
        // The most urgent is c (kind 1); d and a are the next of its kind, f does not fit in a batch of 3.
        let batch = q.pop_batch(3, |x, y| x.1 == y.1).unwrap();
        assert_eq!(batch.iter().map(|i| i.0).collect::<Vec<_>>(), ["c", "d", "a"]);
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).map(|i| i.0).collect();
        assert_eq!(rest, ["b", "e", "f"]);
    }

    #[test]
    fn a_choosy_pop_takes_the_most_urgent_eligible_items_and_waits_for_one() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let q = std::sync::Arc::new(ChunkQueue::new(16));
        q.push(("long", false), at(0)).unwrap();
        q.push(("short", true), at(10)).unwrap();
        q.push(("long2", false), at(5)).unwrap();
        q.push(("short2", true), at(20)).unwrap();
        let batch = q.pop_batch_where(|i| i.1, 4, |_, _| true).unwrap();
        assert_eq!(batch.iter().map(|i| i.0).collect::<Vec<_>>(), ["short", "short2"]);
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).map(|i| i.0).collect();
        assert_eq!(rest, ["long", "long2"], "the others keep their order");
        // A choosy waiter and a plain one: each push reaches the thread that takes it.
        let spawn = |choosy: bool| {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || {
                let batch = if choosy {
                    q.pop_batch_where(|i| i.1, 1, |_, _| true)
                } else {
                    q.pop_batch(1, |_, _| true)
                };
                batch.map(|b| b[0].0)
            })
        };
        let (choosy, plain) = (spawn(true), spawn(false));
        let t = Instant::now();
        while {
            let s = q.lock();
            s.choosy + s.idle < 2
        } {
            assert!(t.elapsed() < Duration::from_secs(5), "the waiters never blocked");
            std::thread::sleep(Duration::from_millis(1));
        }
        q.push(("plain item", false), at(0)).unwrap();
        assert_eq!(plain.join().unwrap(), Some("plain item"));
        q.push(("opening", true), at(0)).unwrap();
        assert_eq!(choosy.join().unwrap(), Some("opening"));
        q.push(("left", false), at(0)).unwrap();
        q.close();
        assert_eq!(q.pop_batch_where(|i| i.1, 1, |_, _| true), None, "closed with nothing eligible");
    }

    #[test]
    fn earliest_deadline_first_then_arrival_order() {
        let t0 = Instant::now();
        let q = ChunkQueue::new(16);
        q.push("late", t0 + Duration::from_secs(3)).unwrap();
        q.push("now-1", t0).unwrap();
        q.push("soon", t0 + Duration::from_millis(500)).unwrap();
        q.push("now-2", t0).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(order, ["now-1", "now-2", "soon", "late"]);
    }

    #[test]
    fn a_new_stream_goes_before_streams_that_are_ahead() {
        let t0 = Instant::now();
        // A long stream started 1 s ago and has 4 s of audio out: due at +3 s. A new stream is due now.
        let long = deadline(Some(t0 - Duration::from_secs(1)), Duration::from_secs(4), t0);
        let new = deadline(None, Duration::ZERO, t0);
        let q = ChunkQueue::new(4);
        q.push("long", long).unwrap();
        q.push("new", new).unwrap();
        assert_eq!(q.try_pop(), Some("new"));
        assert_eq!(q.try_pop(), Some("long"));
    }

    #[test]
    fn full_and_closed_are_refused() {
        let t0 = Instant::now();
        let q = ChunkQueue::new(1);
        q.push(1, t0).unwrap();
        assert_eq!(q.push(2, t0), Err(PushError::Full));
        q.close();
        assert_eq!(q.push(3, t0), Err(PushError::Closed));
        assert_eq!(q.pop(), Some(1), "what was queued is still served");
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_gpu_sized_throughput_is_declared_as_measured() {
        // 447 audio seconds per second (an H100 at 64 streams): 267 streams, not a clamp.
        assert_eq!(capacity_from_throughput(446.6), 267);
        assert_eq!(capacity_from_throughput(1e6), MAX_CAPACITY);
        assert_eq!(capacity_from_throughput(f64::NAN), 1);
    }

    #[test]
    fn capacity_from_speed() {
        assert_eq!(capacity(2, 0.05, 0.8), 32);
        assert_eq!(capacity(1, 0.5, 0.8), 1);
        assert_eq!(capacity(2, 0.0, 0.8), 1);
        assert_eq!(capacity(64, 0.001, 1.0), 256);
    }

    #[test]
    fn a_stream_ahead_of_real_time_yields_to_a_new_one() {
        // A FIFO server would run the long stream's queued chunk first; EDF serves the stream with no audio yet.
        let q: ChunkQueue<&str> = ChunkQueue::new(4);
        let t0 = Instant::now();
        q.push("long chunk 2", deadline(Some(t0), Duration::from_secs(5), t0)).unwrap();
        q.push("new stream", deadline(None, Duration::ZERO, t0 + Duration::from_millis(10))).unwrap();
        assert_eq!(q.try_pop(), Some("new stream"));
    }

    #[test]
    fn idle_threads_are_counted() {
        let q = std::sync::Arc::new(ChunkQueue::new(4));
        let waiter = {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || q.pop())
        };
        let t0 = Instant::now();
        while q.lock().idle == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "the waiter never blocked");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(q.push_idle("chunk", Instant::now()), Ok(1));
        assert_eq!(waiter.join().unwrap(), Some("chunk"));
        assert_eq!(q.push_idle("next", Instant::now()), Ok(0), "nobody waits now");
    }
}
