//! A discrete-event simulation of the whole scheduling policy with a virtual clock and a model of known cost: the
//! real [`ChunkQueue`], [`ChunkPolicy`], [`preemption_victim`], [`CapacityControl`], [`CostModel`] and
//! [`Playback`], with admission as the API's queue does it (a stream beyond capacity waits for a slot). Streams are
//! amounts of audio; a chunk's audio is what its compute budget buys at the estimated cost, at least an opening
//! chunk's; a pass really costs `overhead + rtf(t) * audio` on its thread.
//!
//! A GPU is simulated too: passes of up to `batch` chunks of one bucket (a pass costs its bucket's audio, each
//! chunk after the first `batch_cost` of the first), an opening lane (the first thread takes only opening chunks),
//! and threads that share one device (`shared`: `k` passes at once each run at 1/k of their speed).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{
    CapacityControl, ChunkPolicy, ChunkQueue, RunningPass, capacity_from_throughput, latest_start,
    tracking_capacity,
};
use crate::Playback;
use crate::pool::CostModel;

/// What is simulated.
pub struct Config {
    pub threads: usize,
    /// Fixed compute of every pass, seconds.
    pub overhead: f64,
    /// Compute per second of audio at virtual time `t` (a machine that slows down is a rising curve).
    pub rtf: Box<dyn Fn(f64) -> f64>,
    pub policy: ChunkPolicy,
    /// Audio seconds of an opening chunk (a few words).
    pub opening: f64,
    /// The most audio seconds of one chunk (the front end's phoneme limit).
    pub max_chunk: f64,
    /// A fixed capacity, or `None`: measured from the throughput at `rtf(0)` and adapted by [`CapacityControl`].
    pub capacity: Option<u32>,
    /// Stop passes for urgent chunks (passes of one chunk only).
    pub preempt: bool,
    /// The most chunks of one pass (1: a CPU).
    pub batch: usize,
    /// The compute of each chunk of a pass after the first, as a share of the first's.
    pub batch_cost: f64,
    /// Audio-second buckets: a pass takes chunks of one bucket and costs its bucket's audio; empty: none.
    pub buckets: Vec<f64>,
    /// The first thread takes opening chunks only (with two threads or more).
    pub lane: bool,
    /// The threads share one device: `k` passes at once each run at 1/k of their speed.
    pub shared: bool,
}

impl Config {
    pub fn new(threads: usize, overhead: f64, rtf: f64) -> Self {
        Self {
            threads,
            overhead,
            rtf: Box::new(move |_| rtf),
            policy: ChunkPolicy::default(),
            opening: 0.9,
            max_chunk: 25.0,
            capacity: None,
            preempt: true,
            batch: 1,
            batch_cost: 1.0,
            buckets: Vec::new(),
            lane: false,
            shared: false,
        }
    }

    /// Threads that take any chunk.
    fn general(&self) -> usize {
        self.threads - usize::from(self.has_lane())
    }

    fn has_lane(&self) -> bool {
        self.lane && self.threads >= 2
    }

    /// Passes that run at full speed at once: the general threads, or one device they share.
    fn devices(&self) -> f64 {
        if self.shared { 1.0 } else { self.general() as f64 }
    }

    /// The audio a pass over chunks of up to `audio` seconds is computed for: its bucket's.
    fn padded(&self, audio: f64) -> f64 {
        self.buckets.iter().copied().find(|&b| b >= audio - 1e-9).unwrap_or(audio)
    }

    fn bucket_of(&self, audio: f64) -> usize {
        self.buckets.iter().position(|&b| b >= audio - 1e-9).unwrap_or(self.buckets.len())
    }

    /// What a pass of `n` chunks of up to `audio` seconds costs at virtual time `t`.
    fn pass_cost(&self, n: usize, audio: f64, t: f64) -> f64 {
        self.overhead
            + (self.rtf)(t) * self.padded(audio) * (1.0 + self.batch_cost * n.saturating_sub(1) as f64)
    }

    /// The capacity the pool would measure: its throughput with every general thread busy on full batches of
    /// warm-up passes of 4 s.
    pub fn measured_capacity(&self) -> u32 {
        let batch = self.batch.max(1);
        capacity_from_throughput(self.devices() * (batch as f64) * 4.0 / self.pass_cost(batch, 4.0, 0.0))
    }
}

/// Who asks for audio: streams arriving at given times, and closed-loop clients that send their next request
/// when the previous one ends, until `until`.
pub struct Load {
    /// (arrival, audio seconds)
    pub arrivals: Vec<(f64, f64)>,
    /// (clients, audio seconds per request, stop issuing at)
    pub closed: Option<(usize, f64, f64)>,
    /// The closed-loop clients start evenly over this many seconds (0: all at once).
    pub ramp: f64,
}

#[derive(Debug, Clone, Default)]
pub struct StreamResult {
    pub arrived: f64,
    /// From arrival (queueing for a slot included) to the first chunk's audio.
    pub ttfa: f64,
    pub underruns: usize,
    pub worst_gap: f64,
    /// Audio seconds of each chunk, in order.
    pub chunks: Vec<f64>,
    pub finished: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub streams: Vec<StreamResult>,
    /// (time, capacity) at every change.
    pub capacity: Vec<(f64, u32)>,
    /// Compute lost to stopped passes, seconds.
    pub lost: f64,
    /// Compute of passes that completed, seconds.
    pub useful: f64,
    /// Audio produced, seconds; and the virtual time the last stream ended.
    pub audio: f64,
    pub end: f64,
    /// Every completed pass: its thread and its chunks (audio seconds, whether an opening chunk).
    pub passes: Vec<(usize, Vec<(f64, bool)>)>,
}

impl Outcome {
    pub fn underruns(&self) -> usize {
        self.streams.iter().map(|s| s.underruns).sum()
    }

    pub fn ttfa_quantile(&self, q: f64) -> f64 {
        let mut v: Vec<f64> = self.streams.iter().map(|s| s.ttfa).collect();
        v.sort_by(f64::total_cmp);
        v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN)
    }
}

struct Stream {
    result: StreamResult,
    remaining: f64,
    playback: Option<Playback>,
    admitted: bool,
    client: Option<usize>,
}

#[derive(Clone, Copy)]
struct Chunk {
    stream: usize,
    audio: f64,
    expected: Duration,
    priority: Instant,
    due: Option<Instant>,
    /// Its stream had no audio buffered.
    opening: bool,
}

struct Pass {
    chunks: Vec<Chunk>,
    start: f64,
    end: f64,
    /// On a shared device: compute left at full speed, seconds.
    work: f64,
}

/// Audio seconds count as ids of one millisecond each in the cost model.
const IDS_PER_SECOND: f64 = 1000.0;

pub fn run(config: &Config, load: &Load) -> Outcome {
    let base = Instant::now();
    let at = |t: f64| base + Duration::from_secs_f64(t.max(0.0));
    let secs = |i: Instant| i.saturating_duration_since(base).as_secs_f64();
    let batch = config.batch.max(1);
    // Per pass, as the pool's measure sets it: a full batch's cost over the longest chunk, with every general thread
    // running one at once (on a shared device, each pass at 1/threads of its speed).
    let full = 1.0 + config.batch_cost * (batch - 1) as f64;
    let sharing = if config.shared { config.general() as f64 } else { 1.0 };
    let cost = CostModel::new(config.overhead, (config.rtf)(0.0) * full * sharing / IDS_PER_SECOND);
    // What chunks are sized against, as the pool's `pass_slots`: a full batch per device.
    let slots = config.devices() as usize * batch;
    let mut control =
        CapacityControl::new(config.capacity.unwrap_or_else(|| config.measured_capacity()), base);
    let mut sim = Sim {
        config,
        running: (0..config.threads).map(|_| None).collect(),
        queue: ChunkQueue::new(100_000),
        out: Outcome::default(),
    };
    let mut streams: Vec<Stream> = Vec::new();
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut arrivals: Vec<(f64, f64, Option<usize>)> =
        load.arrivals.iter().map(|&(t, a)| (t, a, None)).collect();
    if let Some((clients, audio, _)) = load.closed {
        arrivals.extend((0..clients).map(|c| (load.ramp * c as f64 / clients as f64, audio, Some(c))));
    }
    arrivals.sort_by(|a, b| b.0.total_cmp(&a.0)); // popped from the end: earliest first
    let mut active = 0usize;
    let mut now = 0.0f64;
    let mut last = 0.0f64;
    let mut last_capacity = 0u32;

    let submit = |s: usize, streams: &mut Vec<Stream>, now: f64, active: usize, queue: &ChunkQueue<Chunk>| {
        let st = &mut streams[s];
        let slack = st.playback.map(|p| p.slack(at(now))).filter(|d| !d.is_zero());
        let audio = match slack {
            Some(slack) => {
                let compute = config.policy.compute_budget(slack, active, slots);
                let audio = cost.ids_within(compute) as f64 / IDS_PER_SECOND;
                // On buckets, no longer than the largest bucket the budget holds: padding would exceed it.
                let audio = config
                    .buckets
                    .iter()
                    .copied()
                    .filter(|&b| b <= audio)
                    .fold(audio.min(config.buckets.first().copied().unwrap_or(audio)), f64::max);
                audio.clamp(config.opening, config.max_chunk)
            }
            None => config.opening,
        }
        .min(st.remaining);
        st.remaining -= audio;
        let expected = cost.expected((audio * IDS_PER_SECOND) as usize);
        let due = slack.and(st.playback.map(|p| p.runs_dry_at()));
        let priority = latest_start(due.unwrap_or(at(now)), expected);
        let chunk = Chunk { stream: s, audio, expected, priority, due, opening: slack.is_none() };
        let _ = queue.push(chunk, priority);
        chunk
    };

    loop {
        // A shared device: every running pass progressed at 1/k of its speed since the last event.
        if config.shared {
            let k = sim.running.iter().flatten().count().max(1) as f64;
            for p in sim.running.iter_mut().flatten() {
                p.work -= (now - last) / k;
            }
        }
        last = now;
        // Arrivals.
        arrive(now, &mut arrivals, &mut streams, &mut waiting);
        // Completions.
        for thread in 0..sim.running.len() {
            let done = sim.running[thread]
                .as_ref()
                .is_some_and(|p| if config.shared { p.work <= 1e-9 } else { p.end <= now + 1e-12 });
            if !done {
                continue;
            }
            let Some(pass) = sim.running[thread].take() else { continue };
            let seconds = if config.shared { now - pass.start } else { pass.end - pass.start };
            sim.out.useful += seconds;
            let longest = pass.chunks.iter().map(|c| c.audio).fold(0.0, f64::max);
            cost.observe((config.padded(longest) * IDS_PER_SECOND) as usize, seconds);
            sim.out.passes.push((thread, pass.chunks.iter().map(|c| (c.audio, c.opening)).collect()));
            for c in pass.chunks {
                let st = &mut streams[c.stream];
                if let Some(due) = c.due {
                    let margin = secs(due) - now;
                    if margin < -1e-9 {
                        st.result.underruns += 1;
                        st.result.worst_gap = st.result.worst_gap.max(-margin);
                    }
                    control.record(margin, active as u32, at(now));
                }
                if st.result.chunks.is_empty() {
                    st.result.ttfa = now - st.result.arrived;
                }
                st.result.chunks.push(c.audio);
                sim.out.audio += c.audio;
                let audio = Duration::from_secs_f64(c.audio);
                match &mut st.playback {
                    Some(p) => p.push(audio, at(now)),
                    None => st.playback = Some(Playback { started: at(now), queued: audio }),
                }
                if st.remaining > 1e-9 {
                    let chunk = submit(c.stream, &mut streams, now, active, &sim.queue);
                    preempt_for(chunk, now, base, &mut sim);
                } else {
                    let st = &mut streams[c.stream];
                    st.result.finished = true;
                    active -= 1;
                    sim.out.end = sim.out.end.max(now);
                    if let (Some(client), Some((_, audio, until))) = (st.client, load.closed)
                        && now < until
                    {
                        arrivals.push((now, audio, Some(client)));
                        arrivals.sort_by(|a, b| b.0.total_cmp(&a.0));
                    }
                }
            }
        }
        // New arrivals right now (closed loop) are admitted in this same step.
        arrive(now, &mut arrivals, &mut streams, &mut waiting);
        // Admission.
        let estimate = tracking_capacity(
            config.devices() * (batch as f64) * 4.0
                / cost.expected((4.0 * IDS_PER_SECOND) as usize).as_secs_f64(),
        );
        let capacity = config.capacity.unwrap_or_else(|| control.current(at(now), estimate)) as usize;
        if capacity as u32 != last_capacity {
            sim.out.capacity.push((now, capacity as u32));
            last_capacity = capacity as u32;
        }
        while active < capacity {
            let Some(s) = waiting.pop_front() else { break };
            streams[s].admitted = true;
            active += 1;
            let chunk = submit(s, &mut streams, now, active, &sim.queue);
            preempt_for(chunk, now, base, &mut sim);
        }
        // Idle threads take the most urgent chunks: one, or a batch of one bucket (the lane: opening chunks only).
        let lane = config.has_lane();
        let same_bucket = |a: &Chunk, b: &Chunk| config.bucket_of(a.audio) == config.bucket_of(b.audio);
        for (thread, slot) in sim.running.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let chunks = if batch == 1 {
                sim.queue.try_pop().map(|c| vec![c])
            } else if lane && thread == 0 {
                sim.queue.try_pop_batch_where(|c| c.opening, batch, same_bucket)
            } else if sim.queue.is_empty() {
                None
            } else {
                sim.queue.pop_batch(batch, same_bucket)
            };
            if let Some(chunks) = chunks {
                *slot = Some(start_pass(config, chunks, now));
            }
        }
        // Next event.
        if config.shared {
            let k = sim.running.iter().flatten().count().max(1) as f64;
            for p in sim.running.iter_mut().flatten() {
                p.end = now + p.work.max(0.0) * k;
            }
        }
        let next_done = sim.running.iter().flatten().map(|p| p.end).fold(f64::INFINITY, f64::min);
        let next_arrival = arrivals.last().map_or(f64::INFINITY, |a| a.0);
        let poll = if waiting.is_empty() { f64::INFINITY } else { now + 0.1 };
        let t = next_done.min(next_arrival).min(poll);
        if !t.is_finite() {
            break;
        }
        now = t.max(now);
    }
    sim.out.streams = streams.into_iter().filter(|s| s.admitted).map(|s| s.result).collect();
    sim.out
}

/// A pass over `chunks` starting at `now`.
fn start_pass(config: &Config, chunks: Vec<Chunk>, now: f64) -> Pass {
    let longest = chunks.iter().map(|c| c.audio).fold(0.0, f64::max);
    let work = config.pass_cost(chunks.len(), longest, now);
    Pass { chunks, start: now, end: now + work, work }
}

/// Streams whose arrival time has come join the wait for a slot.
fn arrive(
    now: f64,
    arrivals: &mut Vec<(f64, f64, Option<usize>)>,
    streams: &mut Vec<Stream>,
    waiting: &mut VecDeque<usize>,
) {
    while arrivals.last().is_some_and(|a| a.0 <= now + 1e-12) {
        let Some((t, audio, client)) = arrivals.pop() else { break };
        streams.push(Stream {
            result: StreamResult { arrived: t, ..StreamResult::default() },
            remaining: audio,
            playback: None,
            admitted: false,
            client,
        });
        waiting.push_back(streams.len() - 1);
    }
}

/// A chunk due now that finds every thread busy stops the pass [`preemption_victim`] picks, and the freed thread
/// takes the most urgent chunk. Passes of one chunk only, as in the pool.
fn preempt_for(chunk: Chunk, now: f64, base: Instant, sim: &mut Sim<'_>) {
    let at = |t: f64| base + Duration::from_secs_f64(t.max(0.0));
    if !sim.config.preempt
        || sim.config.batch > 1
        || sim.running.iter().any(Option::is_none)
        || chunk.priority > at(now)
    {
        return;
    }
    let view: Vec<Option<RunningPass>> = sim
        .running
        .iter()
        .map(|p| {
            p.as_ref().map(|p| RunningPass {
                started: at(p.start),
                expected: p.chunks[0].expected,
                priority: p.chunks[0].priority,
                stoppable: true,
            })
        })
        .collect();
    if let Some(victim) = super::preemption_victim(&view, at(now))
        && let Some(pass) = sim.running[victim].take()
    {
        sim.out.lost += now - pass.start;
        for c in pass.chunks {
            let _ = sim.queue.push(c, c.priority);
        }
        if let Some(next) = sim.queue.try_pop() {
            sim.running[victim] = Some(start_pass(sim.config, vec![next], now));
        }
    }
}

/// The parts of the simulation preemption touches.
struct Sim<'a> {
    config: &'a Config,
    running: Vec<Option<Pass>>,
    queue: ChunkQueue<Chunk>,
    out: Outcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-core machine as measured here: 20 ms per pass plus 0.12 s of compute per second of audio per thread.
    fn two_cores() -> Config {
        Config::new(2, 0.02, 0.12)
    }

    fn closed(clients: usize, audio: f64, until: f64) -> Load {
        Load { arrivals: Vec::new(), closed: Some((clients, audio, until)), ramp: 0.0 }
    }

    /// Poisson arrivals at `rate` per second until `until` (a fixed seed: the same arrivals every run).
    fn poisson(rate: f64, audio: f64, until: f64) -> Load {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut t = 0.0;
        let mut arrivals = Vec::new();
        loop {
            t += -(1.0 - uniform()).ln() / rate;
            if t >= until {
                break;
            }
            arrivals.push((t, audio));
        }
        Load { arrivals, closed: None, ramp: 0.0 }
    }

    /// The first chunk of one stream alone: the C=1 time to first audio.
    fn alone(config: &Config) -> f64 {
        run(config, &closed(1, 12.0, 30.0)).ttfa_quantile(0.5)
    }

    #[test]
    fn the_measured_capacity_is_over_half_the_throughput_and_every_stream_up_to_it_is_gap_free() {
        let config = two_cores();
        let cap = config.measured_capacity() as usize;
        assert!(cap >= 8, "capacity {cap}");
        // Every client starts at once (no ramp), medium texts (12 s of audio), 60 s.
        let out = run_at_capacity(&config, cap, 60.0);
        // A burst of `cap` first chunks on two threads: the last one waits for the others, no more.
        let c1 = alone(&config);
        let worst = out.ttfa_quantile(1.0);
        let bound = (cap as f64 / 2.0).ceil() * c1 + 0.05;
        assert!(worst <= bound, "worst first audio {worst:.3} s, C=1 {c1:.3} s");
        // Past the burst, clients arrive spread out: first audio stays within 3x the C=1 figure.
        assert_later_first_audio_within_3x(&out, c1);
    }

    /// `cap` clients of medium texts (12 s of audio) started at once on `config`, for `until` seconds: every
    /// stream finishes without a gap, and the capacity is honest, not sandbagged (at least half the audio seconds
    /// per second served at it).
    fn run_at_capacity(config: &Config, cap: usize, until: f64) -> Outcome {
        let out = run(config, &closed(cap, 12.0, until));
        assert_eq!(out.underruns(), 0, "streams with a gap at capacity {cap}");
        assert!(out.streams.iter().all(|s| s.finished));
        let throughput = out.audio / out.end;
        assert!(cap as f64 >= 0.5 * throughput, "capacity {cap} for {throughput:.1} audio s/s");
        out
    }

    /// Of the streams that arrived after the first second, at most one in twenty waited over 3x the C=1 time to
    /// first audio `c1`.
    fn assert_later_first_audio_within_3x(out: &Outcome, c1: f64) {
        let later: Vec<f64> = out.streams.iter().filter(|s| s.arrived > 1.0).map(|s| s.ttfa).collect();
        let over = later.iter().filter(|t| **t > 3.0 * c1).count();
        assert!(
            over * 20 <= later.len(),
            "{over} of {} later first chunks over 3x C=1 ({c1:.3} s)",
            later.len()
        );
    }

    /// Twice `cap` clients of medium texts started at once on `config`, for `until` seconds: the admitted streams
    /// never underrun, and at least half the excess waits for a slot (first audio after 2 s).
    fn run_at_twice_capacity(config: &Config, cap: usize, until: f64) {
        let out = run(config, &closed(2 * cap, 12.0, until));
        assert_eq!(out.underruns(), 0, "admitted streams with a gap at twice the capacity {cap}");
        let waited = out.streams.iter().filter(|s| s.ttfa > 2.0).count();
        assert!(waited >= cap / 2, "only {waited} of {} streams waited", 2 * cap);
    }

    #[test]
    fn open_loop_arrivals_at_the_capacity_are_gap_free_and_the_excess_waits() {
        let config = two_cores();
        let cap = config.measured_capacity();
        // Mean concurrency = rate x duration of a 12 s stream: arrivals at cap / 12 per second.
        let out = run(&config, &poisson(f64::from(cap) / 12.0, 12.0, 120.0));
        assert!(out.streams.len() > 50);
        assert_eq!(out.underruns(), 0, "admitted streams with a gap");
        assert!(out.streams.iter().all(|s| s.finished));
    }

    #[test]
    fn at_twice_the_capacity_admitted_streams_stay_gap_free_and_the_others_wait() {
        let config = two_cores();
        let cap = config.measured_capacity() as usize;
        // Half the clients wait for a slot: their first audio comes after a stream ends.
        run_at_twice_capacity(&config, cap, 60.0);
    }

    #[test]
    fn the_simulation_shows_gaps_where_the_policy_is_not_followed() {
        // Guards the simulation itself: three times the capacity admitted at once, and chunks sized greedily
        // (whole sentences regardless of slack), both underrun.
        let config = two_cores();
        let cap = config.measured_capacity();
        let overload = Config { capacity: Some(3 * cap), ..copy(&config) };
        assert!(run(&overload, &closed(3 * cap as usize, 12.0, 30.0)).underruns() > 0);
        // The previous policy: a first clause of up to 6 s, then chunks that take the whole slack up to 4 s of
        // compute, at its capacity estimate (0.7 of the threads over one stream's real-time factor, 11 here).
        let mut greedy = copy(&config);
        greedy.policy = ChunkPolicy { max_pass: Duration::from_secs(4), slack_share: 10.0 };
        greedy.opening = 6.0;
        greedy.max_chunk = 40.0;
        greedy.capacity = Some(11);
        assert!(run(&greedy, &closed(11, 40.0, 60.0)).underruns() > 0);
    }

    #[test]
    fn chunks_grow_with_slack_and_shrink_with_competition() {
        let config = two_cores();
        let one = run(&config, &closed(1, 30.0, 1.0));
        let chunks = &one.streams[0].chunks;
        assert!((chunks[0] - config.opening).abs() < 1e-9, "an opening chunk of a few words: {chunks:?}");
        assert!(chunks[1] > 2.0 * chunks[0], "the second chunk uses the slack: {chunks:?}");
        // The budget's cap: a pass computes at most max_pass.
        let cap_audio = (config.policy.max_pass.as_secs_f64() - config.overhead) / 0.12;
        assert!(chunks.iter().all(|c| *c <= cap_audio + 0.01), "{chunks:?}");
        assert!(chunks.iter().rev().skip(1).take(3).all(|c| *c > cap_audio - 0.05), "{chunks:?}");
        // Eight streams started together: each second chunk is sized for its share of the threads.
        let eight = run(&config, &closed(8, 30.0, 1.0));
        let second: Vec<f64> = eight.streams.iter().map(|s| s.chunks[1]).collect();
        assert!(second.iter().all(|c| *c < chunks[1]), "{second:?} vs {}", chunks[1]);
        assert_eq!(eight.underruns(), 0);
    }

    #[test]
    fn a_long_stream_never_starves_while_short_ones_come_and_go() {
        let config = two_cores();
        let mut load = poisson(0.8, 3.0, 100.0);
        load.arrivals.insert(0, (0.0, 110.0));
        let out = run(&config, &load);
        let long = &out.streams[0];
        assert!(long.finished && long.underruns == 0, "the long stream: {long:?}");
        assert_eq!(out.underruns(), 0);
        let c1 = alone(&config);
        assert!(out.ttfa_quantile(0.95) <= 3.0 * c1, "p95 first audio {:.3} s", out.ttfa_quantile(0.95));
    }

    #[test]
    fn capacity_falls_when_the_threads_slow_down_and_rises_again() {
        let mut config = two_cores();
        // Three times slower between 20 s and 50 s (another process takes the cores).
        config.rtf = Box::new(|t| if (20.0..50.0).contains(&t) { 0.36 } else { 0.12 });
        let cap = config.measured_capacity();
        let out = run(&config, &closed(cap as usize, 6.0, 100.0));
        let low = out.capacity.iter().filter(|(t, _)| (20.0..50.0).contains(t)).map(|c| c.1).min();
        assert!(low.is_some_and(|c| c < cap / 2), "capacity during the slowdown: {:?}", out.capacity);
        let first_drop = out.capacity.iter().find(|(_, c)| *c < cap).map(|c| c.0);
        assert!(first_drop.is_some_and(|t| (20.0..23.0).contains(&t)), "lowered at {first_drop:?}");
        assert_eq!(out.capacity.last().map(|c| c.1), Some(cap), "not raised again: {:?}", out.capacity);
        // The streams admitted once capacity had come down play without a gap, during the slowdown too.
        let settled = out.streams.iter().filter(|s| (35.0..44.0).contains(&s.arrived));
        let gaps: usize = settled.clone().map(|s| s.underruns).sum();
        assert!(settled.count() > 0);
        assert_eq!(gaps, 0, "streams admitted at the lowered capacity had gaps");
        // Before the slowdown and after recovery: no gap at all.
        let calm: usize =
            out.streams.iter().filter(|s| s.arrived < 14.0 || s.arrived > 65.0).map(|s| s.underruns).sum();
        assert_eq!(calm, 0);
    }

    #[test]
    fn preemption_shortens_first_audio_under_saturation_without_gaps() {
        // Long streams far ahead of real time hold both threads with long passes; new short streams arrive.
        let mut config = two_cores();
        config.policy.max_pass = Duration::from_millis(800);
        config.capacity = Some(12);
        let mut load =
            Load { arrivals: (0..6).map(|i| (f64::from(i) * 0.01, 60.0)).collect(), closed: None, ramp: 0.0 };
        load.arrivals.extend((0..20).map(|i| (8.0 + f64::from(i) * 1.37, 2.0)));
        let plain = run(&Config { preempt: false, ..copy(&config) }, &load);
        let preempted = run(&config, &load);
        let mean = |o: &Outcome| {
            let v: Vec<f64> = o.streams.iter().filter(|s| s.arrived >= 8.0).map(|s| s.ttfa).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert_eq!(preempted.underruns(), 0);
        assert!(mean(&preempted) < mean(&plain) - 0.03, "{:.3} s vs {:.3} s", mean(&preempted), mean(&plain));
        assert!(
            preempted.lost > 0.0 && preempted.lost < 0.1 * preempted.useful,
            "lost {:.2} s",
            preempted.lost
        );
        assert_eq!(plain.lost, 0.0);
    }

    #[test]
    fn on_two_cores_with_shape_buckets_streams_up_to_the_measured_capacity_are_gap_free() {
        // `--shape-buckets on` on a CPU: every pass padded up to its bucket (lists about 1.25x apart, as the finer
        // CPU lists of docs/benchmarks.md section 4.4: up to a quarter more compute than the chunk needs), one chunk
        // per pass, preemption as without buckets. The capacity the pool measures (warm-up passes of 4 s, a bucket) and
        // the cost model that follows the padded passes must keep every admitted stream gap-free.
        let mut config = two_cores();
        config.buckets =
            vec![0.5, 0.64, 0.8, 1.0, 1.28, 1.6, 2.0, 2.56, 3.2, 4.0, 5.12, 6.4, 8.0, 10.24, 12.8, 16.0];
        let cap = config.measured_capacity() as usize;
        let out = run_at_capacity(&config, cap, 60.0);
        assert_later_first_audio_within_3x(&out, alone(&config));
        let open = run(&config, &poisson(cap as f64 / 12.0, 12.0, 120.0));
        assert_eq!(open.underruns(), 0, "open loop at the capacity: admitted streams with a gap");
        let twice = run(&config, &closed(2 * cap, 12.0, 60.0));
        assert_eq!(twice.underruns(), 0, "twice the capacity: admitted streams with a gap");
    }

    /// A GPU as modelled here (not measured): three threads share one device; a pass costs 15 ms plus 4 ms per
    /// second of its bucket's audio, each chunk after the first 30% of the first; batches of up to 16 chunks of one
    /// bucket (audio seconds in powers of two, as the id buckets are); no preemption.
    fn gpu(lane: bool) -> Config {
        let mut c = Config::new(3, 0.015, 0.004);
        c.batch = 16;
        c.batch_cost = 0.3;
        c.buckets = vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
        c.lane = lane;
        c.shared = true;
        c.preempt = false;
        c
    }

    /// The 95th percentile of first audio of the streams that arrived after `after` seconds.
    fn ttfa_p95_after(o: &Outcome, after: f64) -> f64 {
        let mut v: Vec<f64> = o.streams.iter().filter(|s| s.arrived > after).map(|s| s.ttfa).collect();
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * 0.95).round() as usize]
    }

    #[test]
    fn on_a_shared_gpu_64_streams_are_gap_free_and_first_chunks_ride_only_with_their_bucket() {
        // 64 clients started over 2 s (as scripts/bench-gpu starts them), closed loop, medium texts (12 s of
        // audio), 30 s.
        let config = gpu(true);
        assert!(config.measured_capacity() >= 64, "capacity {}", config.measured_capacity());
        let out = run(&config, &Load { ramp: 2.0, ..closed(64, 12.0, 30.0) });
        let p95 = ttfa_p95_after(&out, 1.0);
        println!(
            "{} streams, {:.0} audio s/s, first audio p50 {:.3} s, p95 {p95:.3} s, {} underruns",
            out.streams.len(),
            out.audio / out.end,
            out.ttfa_quantile(0.5),
            out.underruns()
        );
        assert_eq!(out.underruns(), 0, "streams with a gap");
        assert!(out.streams.len() > 64 * 10, "only {} streams in 30 s", out.streams.len());
        assert!(p95 < 0.25, "first audio p95 {p95:.3} s");
        // The lane ran opening chunks only; no opening chunk rode in a pass of a longer bucket; passes batched.
        for (thread, chunks) in &out.passes {
            let top = chunks.iter().map(|c| config.bucket_of(c.0)).max().unwrap_or(0);
            assert!(
                chunks.iter().all(|&(audio, opening)| !opening || config.bucket_of(audio) == top),
                "{chunks:?}"
            );
            assert!(*thread != 0 || chunks.iter().all(|c| c.1), "the lane ran {chunks:?}");
        }
        let mean = out.passes.iter().map(|(_, c)| c.len()).sum::<usize>() as f64 / out.passes.len() as f64;
        assert!(mean > 2.0, "{mean:.1} chunks per pass");
    }

    #[test]
    fn on_a_shared_gpu_streams_at_the_measured_capacity_and_at_twice_it_are_gap_free() {
        // The capacity the pool would declare for this device, every client started at once, then twice as many:
        // admitted streams never underrun, the excess waits for a slot.
        let config = gpu(true);
        let cap = config.measured_capacity() as usize;
        run_at_capacity(&config, cap, 30.0);
        run_at_twice_capacity(&config, cap, 30.0);
        // Without admission (all of them let in at once) the same device underruns: the bound is what keeps it.
        let unbounded = Config { capacity: Some(4 * cap as u32), ..copy(&config) };
        assert!(run(&unbounded, &closed(4 * cap, 12.0, 30.0)).underruns() > 0);
    }

    #[test]
    fn an_opening_lane_keeps_first_audio_short_while_long_passes_hold_the_gpu() {
        // Long streams (10 minutes of audio each) far ahead of real time keep both general threads in long passes
        // (up to 0.8 s of compute); new short streams arrive meanwhile. Without the lane their first chunk waits for
        // a pass to end.
        let with_pass = |lane: bool| {
            let mut c = gpu(lane);
            c.policy.max_pass = Duration::from_millis(800);
            c
        };
        let mut load = Load {
            arrivals: (0..24).map(|i| (f64::from(i) * 0.01, 600.0)).collect(),
            closed: None,
            ramp: 0.0,
        };
        load.arrivals.extend((0..20).map(|i| (8.0 + f64::from(i) * 1.37, 2.0)));
        let (lane, plain) = (run(&with_pass(true), &load), run(&with_pass(false), &load));
        let late = |o: &Outcome| {
            let v: Vec<f64> = o.streams.iter().filter(|s| s.arrived >= 8.0).map(|s| s.ttfa).collect();
            (v.iter().sum::<f64>() / v.len() as f64, v.iter().copied().fold(0.0, f64::max))
        };
        let ((with, with_worst), (without, without_worst)) = (late(&lane), late(&plain));
        println!(
            "first audio of the late streams: mean {with:.3} s, worst {with_worst:.3} s with the lane; \
             {without:.3} s, {without_worst:.3} s without"
        );
        assert_eq!((lane.underruns(), plain.underruns()), (0, 0), "streams with a gap");
        // The lane's first chunks wait for no long pass: at worst they share the device with two of them.
        assert!(
            with_worst < 0.1 && with_worst < 0.5 * without_worst,
            "worst first audio {with_worst:.3} s with the lane, {without_worst:.3} s without"
        );
        assert!(with < without, "mean first audio {with:.3} s with the lane, {without:.3} s without");
    }

    fn copy(c: &Config) -> Config {
        let rtf = (c.rtf)(0.0);
        Config { rtf: Box::new(move |_| rtf), ..Config { ..Config::new(c.threads, c.overhead, rtf) } }.with(c)
    }

    impl Config {
        fn with(mut self, c: &Config) -> Self {
            self.policy = c.policy;
            self.opening = c.opening;
            self.max_chunk = c.max_chunk;
            self.capacity = c.capacity;
            self.preempt = c.preempt;
            self.batch = c.batch;
            self.batch_cost = c.batch_cost;
            self.buckets = c.buckets.clone();
            self.lane = c.lane;
            self.shared = c.shared;
            self
        }
    }
}
