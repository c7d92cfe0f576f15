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
//! A chunk runs to its end unless preempted: with a work-conserving pool, a new stream's first chunk would wait
//! behind whole chunks of streams that are seconds ahead of real time. So one model thread per voice (the last) is
//! **preemptible**: while it runs a chunk that is not due for at least [`PREEMPTIBLE_SLACK`], a chunk that is due
//! now and finds no idle thread stops that forward pass (ONNX Runtime's terminate flag) unless it is past half its
//! expected compute; the stopped chunk goes back to the queue with its priority and the urgent one runs. The cost
//! is the stopped pass's work (less than half a chunk), paid only when a new stream arrives while every thread is
//! busy.
//!
//! Every stream keeps at most one chunk queued (the synthesis pipeline submits the next chunk when the previous one
//! is done), so the queue holds at most one entry per stream in flight: its bound is the capacity.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running chunk may be preempted only while its latest start is at least this far away (its stream has more
/// than this much audio buffered beyond the chunk's compute), so preemption never makes a stream underrun.
pub const PREEMPTIBLE_SLACK: Duration = Duration::from_millis(1000);

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
    /// Threads blocked in `pop`.
    idle: usize,
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
            state: Mutex::new(State { heap: BinaryHeap::new(), next_seq: 0, closed: false, idle: 0 }),
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
        drop(s);
        self.ready.notify_one();
        Ok(idle)
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
        Some(batch)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn capacity_from_speed() {
        assert_eq!(capacity(2, 0.05, 0.8), 32);
        assert_eq!(capacity(1, 0.5, 0.8), 1);
        assert_eq!(capacity(2, 0.0, 0.8), 1);
        assert_eq!(capacity(64, 0.001, 1.0), 256);
    }

    /// A discrete-event simulation of the policy with a virtual clock and a model of known cost: `threads` model
    /// threads, streams arriving at given times, each a list of chunk lengths (seconds of audio); a chunk costs
    /// `rtf` times its length. Returns per stream (time to first audio, underruns).
    fn simulate(threads: usize, rtf: f64, streams: &[(f64, Vec<f64>)]) -> Vec<(f64, usize)> {
        simulate_with(threads, false, rtf, streams).0
    }

    /// As [`simulate`]; with `preempt`, the last thread's chunk is stopped (its work lost, the chunk queued again)
    /// when a chunk due now is queued, no thread is idle, the running chunk had [`PREEMPTIBLE_SLACK`] when it
    /// started and is not past half its compute, as `pool` does. Also returns the compute lost (seconds).
    fn simulate_with(
        threads: usize,
        preempt: bool,
        rtf: f64,
        streams: &[(f64, Vec<f64>)],
    ) -> (Vec<(f64, usize)>, f64) {
        let slack = PREEMPTIBLE_SLACK.as_secs_f64();
        let base = Instant::now();
        let at = |s: f64| base + Duration::from_secs_f64(s);
        let secs = |t: Instant| t.saturating_duration_since(base).as_secs_f64();
        let q: ChunkQueue<(usize, usize, f64)> = ChunkQueue::new(streams.len());
        let cost = |s: usize, c: usize| streams[s].1[c] * rtf;
        let mut free_at = vec![0.0f64; threads];
        let mut first_audio: Vec<Option<f64>> = vec![None; streams.len()];
        let mut audio_out = vec![0.0f64; streams.len()];
        let mut underruns = vec![0usize; streams.len()];
        let mut next_arrival = 0usize;
        let mut wasted = 0.0f64;
        // (time a chunk finishes, stream, chunk, thread, start, priority, preemptible)
        let mut running: Vec<(f64, usize, usize, usize, f64, f64, bool)> = Vec::new();
        let mut now = 0.0f64;
        let mut due_pushed = false;
        loop {
            while next_arrival < streams.len() && streams[next_arrival].0 <= now + 1e-12 {
                // A first chunk is due now; its priority is its latest start (in the past by its compute).
                q.push((next_arrival, 0, now), at(now)).unwrap();
                next_arrival += 1;
                due_pushed = true;
            }
            let last = threads - 1;
            let stoppable = |r: &(f64, usize, usize, usize, f64, f64, bool)| {
                r.3 == last && r.6 && now - r.4 < (r.0 - r.4) / 2.0
            };
            if preempt
                && due_pushed
                && free_at.iter().all(|f| *f > now + 1e-12)
                && let Some(k) = running.iter().position(stoppable)
            {
                let (_, s, c, _, start, priority, _) = running.remove(k);
                wasted += now - start;
                q.push((s, c, priority), at(priority)).unwrap();
                free_at[last] = now;
            }
            due_pushed = false;
            // Start work on every free thread.
            for (i, f) in free_at.iter_mut().enumerate() {
                if *f > now + 1e-12 {
                    continue;
                }
                if let Some((s, c, priority)) = q.try_pop() {
                    let end = now + cost(s, c);
                    *f = end;
                    running.push((end, s, c, i, now, priority, priority > now + slack));
                }
            }
            // Advance to the next event.
            let next_done = running.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
            let next_arr = streams.get(next_arrival).map_or(f64::INFINITY, |s| s.0);
            let t = next_done.min(next_arr);
            if !t.is_finite() {
                break;
            }
            now = t;
            let (done, rest): (Vec<_>, Vec<_>) = running.into_iter().partition(|r| r.0 <= now + 1e-12);
            running = rest;
            for (end, s, c, ..) in done {
                match first_audio[s] {
                    None => first_audio[s] = Some(end),
                    Some(fa) => {
                        if end > fa + audio_out[s] + 1e-9 {
                            underruns[s] += 1;
                        }
                    }
                }
                audio_out[s] += streams[s].1[c];
                if c + 1 < streams[s].1.len() {
                    let fa = first_audio[s].unwrap_or(end);
                    let due = at(fa + audio_out[s]);
                    let priority = latest_start(due, Duration::from_secs_f64(cost(s, c + 1)));
                    due_pushed |= secs(priority) <= now + 1e-12;
                    q.push((s, c + 1, secs(priority)), priority).unwrap();
                }
            }
        }
        let results = streams
            .iter()
            .enumerate()
            .map(|(i, (arrive, _))| (first_audio[i].unwrap_or(f64::INFINITY) - arrive, underruns[i]))
            .collect();
        (results, wasted)
    }

    #[test]
    fn up_to_capacity_no_stream_underruns_and_first_audio_stays_fast() {
        // 2 threads at RTF 0.1, planned utilization 0.7: capacity 14 streams, arriving 200 ms apart (a closed-loop
        // ramp). Each stream's chunks ramp up as the front end makes them (a short first clause, then longer):
        // 1, 2, 4, 5, 5, 5 s.
        let rtf = 0.1;
        let cap = capacity(2, rtf, 0.7) as usize;
        assert_eq!(cap, 14);
        let chunks = vec![1.0, 2.0, 4.0, 5.0, 5.0, 5.0];
        let streams: Vec<(f64, Vec<f64>)> = (0..cap).map(|i| (i as f64 * 0.2, chunks.clone())).collect();
        let results = simulate(2, rtf, &streams);
        for (i, (ttfa, underruns)) in results.iter().enumerate() {
            assert_eq!(*underruns, 0, "stream {i} underran");
            // A first chunk waits at most for the chunks running on both threads (0.5 s each) plus its own 0.1 s.
            assert!(*ttfa <= 0.6 + 1e-9, "stream {i}: first audio after {ttfa:.2} s");
        }
    }

    #[test]
    fn beyond_capacity_the_simulation_shows_underruns() {
        // Twice the capacity at once: the model cannot keep every stream ahead of real time. (Admission keeps this
        // from happening: requests beyond capacity wait in the API's queue.) The check guards the simulation itself.
        let rtf = 0.1;
        let streams: Vec<(f64, Vec<f64>)> =
            (0..40).map(|i| (i as f64 * 0.01, vec![1.0, 2.0, 4.0, 5.0, 5.0])).collect();
        let total: usize = simulate(2, rtf, &streams).iter().map(|r| r.1).sum();
        assert!(total > 0);
    }

    #[test]
    fn long_streams_do_not_starve_and_new_streams_cut_in() {
        // One thread. A long stream (ten 5 s chunks) runs; 20 short streams arrive over 10 s. All finish; the long one
        // never underruns, and each short one gets its first audio within one chunk's compute.
        let rtf = 0.1;
        let mut streams = vec![(0.0, vec![5.0; 10])];
        streams.extend((0..20).map(|i| (0.5 + i as f64 * 0.5, vec![1.0, 2.0])));
        let results = simulate(1, rtf, &streams);
        assert_eq!(results[0].1, 0, "the long stream underran");
        for (i, (ttfa, underruns)) in results.iter().enumerate().skip(1) {
            assert!(ttfa.is_finite(), "stream {i} starved");
            assert!(*ttfa <= 0.5 + 0.1 + 1e-9, "stream {i}: first audio after {ttfa:.2} s");
            assert_eq!(*underruns, 0, "stream {i} underran");
        }
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
    fn preempting_work_that_is_not_due_keeps_first_audio_fast_under_saturation() {
        // Two threads at RTF 0.1 saturated by 6 streams that started together, each of eight 5 s chunks (0.5 s of
        // compute each), then, once they are ahead of real time, new short streams arriving every 0.73 s from 4 s
        // on. Work-conserving without preemption, a new stream's first chunk waits for a running 0.5 s chunk (0.1 s
        // to 0.35 s of first audio here, 0.22 s on average); preempting the last thread's chunk that is not due
        // (unless past half its compute), a first chunk waits at most half a running chunk (0.31 s worst, 0.16 s on
        // average here). No stream underruns either way, and preemption costs only the stopped passes' work, each
        // under half a chunk.
        let rtf = 0.1;
        let mut streams: Vec<(f64, Vec<f64>)> = (0..6).map(|i| (i as f64 * 0.001, vec![5.0; 8])).collect();
        streams.extend((0..10).map(|i| (4.0 + i as f64 * 0.73, vec![1.0, 2.0])));
        let worst = |results: &[(f64, usize)]| results[6..].iter().map(|r| r.0).fold(0.0f64, f64::max);
        let (plain, no_waste) = simulate_with(2, false, rtf, &streams);
        let (preempted, wasted) = simulate_with(2, true, rtf, &streams);
        for (i, (ttfa, underruns)) in preempted.iter().enumerate() {
            assert!(ttfa.is_finite(), "stream {i} starved");
            assert_eq!(*underruns, 0, "stream {i} underran with preemption");
        }
        let mean = |results: &[(f64, usize)]| results[6..].iter().map(|r| r.0).sum::<f64>() / 10.0;
        eprintln!(
            "first audio, worst / mean: {:.3} / {:.3} s plain, {:.3} / {:.3} s preempting; {wasted:.2} s lost",
            worst(&plain),
            mean(&plain),
            worst(&preempted),
            mean(&preempted)
        );
        assert!(worst(&preempted) <= 0.1 + 0.25 + 1e-6, "first audio after {:.3} s", worst(&preempted));
        assert!(mean(&preempted) < mean(&plain) - 0.03, "preemption did not shorten the first-audio wait");
        assert!(
            worst(&plain) > 0.2,
            "the work-conserving pool made no new stream wait: {:.3} s",
            worst(&plain)
        );
        assert_eq!(no_waste, 0.0);
        // At most one stopped pass per new stream, each less than half a 0.5 s chunk.
        assert!(wasted > 0.0 && wasted <= 10.0 * 0.25, "{wasted:.2} s of compute lost");
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
