//! Cluster mode end to end (issue 4): a real `nats-server` on a free loopback port, `chorus api` and
//! `chorus worker` as real processes, real voices. Each scenario starts its own processes, and they run one at a
//! time; every process is SIGKILLed when its test ends, however it ends.
//!
//! Shown here: requests spread over two API servers and by capacity over two workers; a worker joining under load
//! takes queued work; a request for a model no worker serves waits (unserviceable) until one joins; a worker killed
//! before the first audio (dispatched to it while it was still counted live, or accepted by it) costs the client
//! nothing but latency; a worker killed mid-stream is a clear error within 2.5 s; API servers and workers reconnect after a NATS restart; SIGTERM drains a worker without losing its
//! stream; a worker of another bus protocol version is ignored with a warning. The metrics are scraped and parsed
//! with a Prometheus exposition parser (`prometheus-parse`) throughout.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed
#![allow(clippy::print_stderr)] // timings, for whoever reads the test log

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use cluster_support::{Cluster, MODEL, SseOutcome, WorkerOpts, long_text, poll, serial, tts_bytes, tts_sse};

/// A short request: about 4 s of audio.
const SHORT: &str = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.";

/// A runtime and a NATS client of the cluster's bus, to play a worker on it.
fn bus_client(c: &Cluster) -> (tokio::runtime::Runtime, async_nats::Client) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = runtime.block_on(async_nats::connect(c.nats.url())).unwrap();
    (runtime, client)
}

/// The heartbeat of a fake worker `id` of the model, idle.
fn fake_status(id: &str, capacity: u32, version: &str, protocol_version: u32) -> chorus_bus::WorkerStatus {
    let models = vec![chorus_bus::ModelInfo { id: MODEL.into(), language: "en".into(), sample_rate: 22050 }];
    chorus_bus::WorkerStatus {
        version: version.into(),
        protocol_version,
        ..chorus_bus::WorkerStatus::serving(id, models, capacity, 0)
    }
}

/// Workers first (they load in parallel), then the API servers; returns once every API sees the workers.
fn cluster(apis: usize, workers: &[(&str, WorkerOpts)]) -> Cluster {
    let mut c = Cluster::new();
    let started = Instant::now();
    for (id, opts) in workers {
        c.spawn_worker(id, *opts);
    }
    for _ in 0..apis {
        c.start_api();
    }
    for i in 0..workers.len() {
        c.wait_worker(i);
    }
    if !workers.is_empty() {
        c.wait_apis_see_workers();
    }
    eprintln!(
        "cluster of {apis} API(s) and {} worker(s) up in {:.1} s",
        workers.len(),
        started.elapsed().as_secs_f64()
    );
    c
}

/// Scenario 1: two API servers share two workers of capacities 1 and 3. Under sustained concurrent load every
/// request succeeds through both APIs, both workers complete jobs, the bigger one takes more, each worker's load
/// rises above 0 but never above its capacity, and returns to 0 afterwards.
#[test]
fn load_spreads_over_apis_and_by_capacity() {
    let _serial = serial();
    let c = cluster(
        2,
        &[
            ("small", WorkerOpts::with_capacity(1)),
            ("big", WorkerOpts { capacity: 3, sessions: 3, ..WorkerOpts::default() }),
        ],
    );
    let (small, big) = (&c.workers[0], &c.workers[1]);
    // The capacity gauges say what the flags said; the gauges are typed as such in the exposition.
    let (ms, mb) = (small.scrape(), big.scrape());
    assert_eq!(ms.value("inferno_worker_capacity", &[]), Some(1.0));
    assert_eq!(mb.value("inferno_worker_capacity", &[]), Some(3.0));
    assert_eq!(ms.kind("inferno_worker_load"), Some("gauge"));
    assert_eq!(ms.value("inferno_worker_load", &[]), Some(0.0));
    assert_eq!(mb.value("inferno_worker_load", &[]), Some(0.0));

    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 4;
    let text = long_text(150);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (outcomes, peaks) = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            // Peak load per worker and how many scrapes saw it above 0.
            let mut peaks = [(0.0f64, 0usize); 2];
            while !stop.load(Ordering::Acquire) {
                for (i, w) in [small, big].into_iter().enumerate() {
                    let load = w.load();
                    peaks[i].0 = peaks[i].0.max(load);
                    peaks[i].1 += usize::from(load > 0.0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peaks
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                let api = c.apis[k % 2].addr;
                let text = &text;
                s.spawn(move || (0..PER_CLIENT).map(|_| (k % 2, tts_bytes(api, text))).collect::<Vec<_>>())
            })
            .collect();
        // Stop the scraper before looking at the results, so that a failed client cannot leave it running.
        let joined: Vec<_> = clients.into_iter().map(|h| h.join()).collect();
        stop.store(true, Ordering::Release);
        let peaks = scraper.join().unwrap();
        let outcomes: Vec<_> = joined.into_iter().flat_map(|r| r.unwrap()).collect();
        (outcomes, peaks)
    });
    let traffic = started.elapsed();

    for (api, o) in &outcomes {
        o.assert_complete(4.0, &format!("a request through API {}", api + 1));
    }
    for api in 0..2 {
        assert_eq!(outcomes.iter().filter(|(a, _)| *a == api).count(), CLIENTS / 2 * PER_CLIENT);
    }
    eprintln!(
        "{} requests in {:.1} s; peak loads small {:?}, big {:?}",
        outcomes.len(),
        traffic.as_secs_f64(),
        peaks[0],
        peaks[1]
    );
    assert_eq!(peaks[0].0, 1.0, "the small worker's load never reached its capacity of 1, or exceeded it");
    assert!(peaks[1].0 >= 2.0 && peaks[1].0 <= 3.0, "the big worker's peak load {} (capacity 3)", peaks[1].0);
    assert!(peaks[0].1 > 0 && peaks[1].1 > 0, "a worker's load never rose above 0 under traffic");

    // Load returns to 0 once the traffic is over.
    for w in [small, big] {
        let idle = poll(Duration::from_secs(5), || (w.load() == 0.0).then_some(()));
        assert!(idle.is_some(), "worker {}'s load did not return to 0", w.id);
    }
    let (done_small, done_big) = (small.completed(), big.completed());
    eprintln!("completed: small {done_small}, big {done_big}");
    assert_eq!(done_small + done_big, (CLIENTS * PER_CLIENT) as f64, "every job completed exactly once");
    assert!(done_small >= 1.0, "the small worker completed nothing");
    assert!(done_big > done_small, "the bigger worker should take more: {done_big} vs {done_small}");
    // Every job had a first audio and an RTF: the histograms count them.
    for w in [small, big] {
        let m = w.scrape();
        assert_eq!(m.kind("inferno_worker_ttfa"), Some("histogram"));
        let completed = m.value("chorus_worker_jobs_total", &[("outcome", "completed")]).unwrap();
        assert_eq!(
            m.histogram_count("inferno_worker_ttfa", &[]),
            Some(completed),
            "TTFA observations on {}",
            w.id
        );
        assert_eq!(
            m.histogram_count("inferno_worker_rtf", &[]),
            Some(completed),
            "RTF observations on {}",
            w.id
        );
    }
    // Nothing waits any more.
    for api in &c.apis {
        assert_eq!(api.queued(), 0.0);
        assert_eq!(api.unserviceable(), 0.0);
    }
}

/// Scenario 2: one worker of capacity 1 and several concurrent requests: the API queues them (its queue gauge
/// shows it); a second worker started then takes some of the queued requests; every request succeeds.
#[test]
fn worker_joining_under_load_takes_queued_work() {
    let _serial = serial();
    let mut c = cluster(1, &[("first", WorkerOpts::with_capacity(1))]);
    const REQUESTS: usize = 8;
    let text = long_text(300);
    let api = c.apis[0].addr;
    let (tx, rx) = mpsc::channel();
    for _ in 0..REQUESTS {
        let (tx, text) = (tx.clone(), text.clone());
        std::thread::spawn(move || tx.send(tts_bytes(api, &text)).unwrap());
    }
    drop(tx);
    let queued = poll(Duration::from_secs(5), || {
        let q = c.apis[0].queued();
        (q > 0.0).then_some(q)
    });
    let queued =
        queued.expect("api_queue_size never rose above 0 with 8 requests for a worker of capacity 1");
    eprintln!("api_queue_size reached {queued}");
    assert_eq!(c.apis[0].unserviceable(), 0.0, "queued requests are not unserviceable");
    let done_before_join = c.workers[0].completed();

    let joined = Instant::now();
    let second = c.start_worker("second", WorkerOpts::with_capacity(2));
    eprintln!(
        "second worker ready after {:.1} s; first had completed {done_before_join}",
        joined.elapsed().as_secs_f64()
    );
    let outcomes: Vec<_> = rx.iter().collect();
    assert_eq!(outcomes.len(), REQUESTS);
    for o in &outcomes {
        o.assert_complete(12.0, "a queued request");
    }
    let (first_done, second_done) = (c.workers[0].completed(), c.workers[second].completed());
    eprintln!("completed: first {first_done}, second {second_done}");
    assert!(second_done >= 1.0, "the joining worker took none of the queued requests");
    assert_eq!(first_done + second_done, REQUESTS as f64);
    assert_eq!(c.apis[0].queued(), 0.0, "the queue gauge did not return to 0");
}

/// Scenario 3: an API server with no worker for the model: the request waits, counted by
/// `api_unserviceable_requests_size`; a worker starts and the request succeeds; the gauge returns to 0.
#[test]
fn unserviceable_request_waits_for_a_worker() {
    let _serial = serial();
    let mut c = cluster(1, &[]);
    let api = c.apis[0].addr;
    let sent = Instant::now();
    let request = std::thread::spawn(move || tts_bytes(api, SHORT));
    let waiting = poll(Duration::from_secs(5), || (c.apis[0].unserviceable() > 0.0).then_some(()));
    assert!(
        waiting.is_some(),
        "api_unserviceable_requests_size never rose above 0:\n{}",
        c.apis[0].proc.log_text()
    );
    assert_eq!(c.apis[0].queued(), 0.0, "a request with no worker at all is unserviceable, not queued");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!request.is_finished(), "the request ended while no worker served its model");

    let worker_started = sent.elapsed();
    c.start_worker("late", WorkerOpts::default());
    let outcome = request.join().unwrap();
    outcome.assert_complete(3.0, "the waiting request");
    assert!(outcome.elapsed > worker_started, "the request was served before a worker existed");
    eprintln!("unserviceable request served after {:.1} s", outcome.elapsed.as_secs_f64());
    assert_eq!(c.apis[0].unserviceable(), 0.0, "the unserviceable gauge did not return to 0");
    assert_eq!(c.workers[0].completed(), 1.0);
}

/// Scenario 4a: a worker SIGKILLed while the API servers still count it live (heartbeats are 1.5 s from
/// forgotten): requests dispatched to it go to the other worker, and every client gets complete audio.
#[test]
fn worker_killed_before_dispatch_costs_only_latency() {
    let _serial = serial();
    let mut c =
        cluster(2, &[("doomed", WorkerOpts::with_capacity(6)), ("survivor", WorkerOpts::with_capacity(6))]);
    const REQUESTS: usize = 6;
    let survivor_before = c.workers[1].completed();
    let start = Arc::new(Barrier::new(REQUESTS + 1));
    let clients: Vec<_> = (0..REQUESTS)
        .map(|k| {
            let (api, start) = (c.apis[k % 2].addr, Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                tts_sse(api, SHORT).collect(|_| {})
            })
        })
        .collect();
    c.workers[0].proc.kill();
    let killed = Instant::now();
    start.wait();
    let outcomes: Vec<SseOutcome> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!("{REQUESTS} requests after the kill served in {:.1} s", killed.elapsed().as_secs_f64());
    for o in &outcomes {
        o.assert_complete(SHORT, "a request sent as its worker died");
    }
    assert_eq!(c.workers[1].completed() - survivor_before, REQUESTS as f64, "the survivor served them all");
    // The dead worker was chosen (it was still counted live) and skipped: the path under test was taken.
    let skipped: usize =
        c.apis.iter().map(|a| a.proc.log_text().matches("Worker did not answer").count()).sum();
    assert!(skipped >= 1, "no API dispatched to the dead worker; the scenario did not happen");
}

/// Scenario 4b: a worker accepts a job and is lost before its first audio: the job is dispatched again to another
/// worker and the client gets complete audio, never an error. The lost worker is a bus client of the test that
/// heartbeats like a worker, accepts the job, then drops its connection and goes silent, exactly what the API sees
/// of a worker SIGKILLed at that moment (a real worker's first audio comes within a chunk's compute of acceptance,
/// too short a window to kill it in reliably). The real worker is half busy with a long stream, so that the idle
/// impostor is the least loaded and gets the job.
#[test]
fn worker_lost_after_accepting_before_first_audio_is_retried() {
    let _serial = serial();
    let c = cluster(1, &[("real", WorkerOpts::with_capacity(2))]);
    let api = c.apis[0].addr;
    let long = long_text(1200);
    let (first_tx, first_rx) = mpsc::channel();
    let background = {
        let long = long.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            tts_sse(api, &long).collect(|e| {
                if e.event == "chunk" && !sent {
                    sent = true;
                    first_tx.send(()).unwrap();
                }
            })
        })
    };
    first_rx.recv_timeout(Duration::from_secs(15)).expect("no first audio on the background stream");

    let (runtime, impostor) = bus_client(&c);
    let mut offers = runtime.block_on(impostor.subscribe("chorus.v1.worker.impostor.jobs")).unwrap();
    let status = fake_status("impostor", 2, env!("CARGO_PKG_VERSION"), chorus_proto::PROTOCOL_VERSION);
    let heartbeats = {
        let (client, payload) = (impostor.clone(), serde_json::to_vec(&status).unwrap());
        runtime.spawn(async move {
            loop {
                client.publish(format!("chorus.v1.status.{MODEL}"), payload.clone().into()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1200));

    let text = long_text(200);
    let sent = Instant::now();
    let job = {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut first: Option<Duration> = None;
            let o = tts_sse(api, &text).collect(|e| {
                if e.event == "chunk" {
                    first.get_or_insert_with(|| sent.elapsed());
                }
            });
            (o, first)
        })
    };
    // The impostor takes the job, then dies: no event, no heartbeat, its connection gone.
    let offer = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), offers.next()).await })
        .expect("the job was not offered to the idle impostor")
        .unwrap();
    let request: serde_json::Value = serde_json::from_slice(&offer.payload).unwrap();
    assert_eq!(request["job"]["transcript"], text.as_str());
    let reply = serde_json::json!({"accepted": true});
    runtime
        .block_on(impostor.publish(offer.reply.clone().unwrap(), serde_json::to_vec(&reply).unwrap().into()))
        .unwrap();
    runtime.block_on(impostor.flush()).unwrap();
    heartbeats.abort();
    drop(offers);
    drop(impostor);
    runtime.shutdown_timeout(Duration::from_secs(1));
    let lost = Instant::now();

    let (outcome, first_audio) = job.join().unwrap();
    outcome.assert_complete(&text, "the job whose worker was lost before its first audio");
    let first_audio = first_audio.unwrap();
    eprintln!(
        "first audio {:.2} s after the request (the impostor died {:.2} s after it)",
        first_audio.as_secs_f64(),
        (lost - sent).as_secs_f64()
    );
    assert!(sent + first_audio > lost, "audio before the impostor died?");
    let log = c.apis[0].proc.log_text();
    assert!(log.contains("Worker lost before the first audio; dispatching again"), "no retry logged:\n{log}");
    assert!(log.contains("worker_id=impostor"), "{log}");
    background.join().unwrap().assert_complete(&long, "the background stream");
    assert_eq!(c.workers[0].completed(), 2.0, "the real worker served the retried job and its own stream");
}

/// Scenario 5: a worker SIGKILLed mid-stream (after the first audio) while another worker is there: the SSE client
/// gets an `error` event (`worker_lost`) and the bytes client a broken transfer, both within 2.5 s, never a clean
/// end; the stream is not restarted elsewhere; the next request is served by the other worker.
#[test]
fn worker_killed_mid_stream_is_a_clear_error() {
    let _serial = serial();
    let mut c = cluster(2, &[("victim", WorkerOpts::with_capacity(4))]);
    let text = long_text(1800);
    let (sse_api, bytes_api) = (c.apis[0].addr, c.apis[1].addr);
    let (first_tx, first_rx) = mpsc::channel::<&'static str>();
    let sse = {
        let (text, first_tx) = (text.clone(), first_tx.clone());
        std::thread::spawn(move || {
            let mut sent = false;
            let o = tts_sse(sse_api, &text).collect(|e| {
                if e.event == "chunk" && !sent {
                    sent = true;
                    first_tx.send("sse").unwrap();
                }
            });
            (o, Instant::now())
        })
    };
    let bytes = std::thread::spawn(move || {
        let mut response = cluster_support::request(
            bytes_api,
            "POST",
            "/tts/bytes",
            Some(&cluster_support::tts_body(&text, false)),
        )
        .unwrap();
        assert_eq!(response.status, 200);
        let mut received = 0usize;
        let end = loop {
            match response.next_piece() {
                Ok(Some(p)) => {
                    if received == 0 && !p.is_empty() {
                        first_tx.send("bytes").unwrap();
                    }
                    received += p.len();
                }
                Ok(None) => break Ok(received),
                Err(e) => break Err((e, received)),
            }
        };
        (end, Instant::now())
    });
    for _ in 0..2 {
        first_rx.recv_timeout(Duration::from_secs(15)).expect("no first audio");
    }
    // A second worker joins while both streams run: a lost stream must not restart on it.
    c.start_worker("bystander", WorkerOpts::with_capacity(4));
    assert_eq!(c.workers[0].load(), 2.0, "both streams should still be running on the victim");
    c.workers[0].proc.kill();
    let killed = Instant::now();

    let (sse_outcome, sse_end) = sse.join().unwrap();
    let (bytes_end, bytes_at) = bytes.join().unwrap();
    let (sse_after, bytes_after) = (sse_end - killed, bytes_at - killed);
    eprintln!(
        "after the kill: SSE error in {:.2} s, bytes broken in {:.2} s",
        sse_after.as_secs_f64(),
        bytes_after.as_secs_f64()
    );
    assert!(sse_outcome.chunks > 0);
    assert!(!sse_outcome.done, "the SSE stream ended as done");
    assert!(
        sse_outcome.broken.is_none(),
        "the SSE stream should end with an error event, not a broken transfer"
    );
    let error = sse_outcome.error.clone().expect("an SSE error event");
    assert_eq!(error["error_code"], "worker_lost", "{error}");
    assert_eq!(sse_outcome.after_end, 0);
    assert!(sse_after < Duration::from_millis(2500), "the SSE error took {sse_after:?}");
    let (why, received) = bytes_end.expect_err("the bytes stream of a lost worker ended cleanly");
    assert!(received > 0);
    eprintln!("bytes transfer broke off after {received} bytes: {why}");
    assert!(bytes_after < Duration::from_millis(2500), "the bytes failure took {bytes_after:?}");

    // Nothing was restarted on the bystander, which serves the next request.
    let bystander = &c.workers[1];
    let m = bystander.scrape();
    assert_eq!(
        m.value("inferno_worker_load", &[]),
        Some(0.0),
        "a lost stream was restarted on the bystander"
    );
    assert_eq!(
        m.value("chorus_worker_jobs_total", &[("outcome", "completed")]),
        Some(0.0),
        "no job completed"
    );
    let next = tts_bytes(c.apis[0].addr, SHORT);
    next.assert_complete(3.0, "the next request");
    assert_eq!(bystander.completed(), 1.0);
}

/// Scenario 6: nats-server killed and started again on the same port: API servers and workers reconnect by
/// themselves; a request sent during the outage waits and is served, and both APIs serve again.
#[test]
fn nats_restart_reconnects_everyone() {
    let _serial = serial();
    let mut c = cluster(2, &[("one", WorkerOpts::with_capacity(2)), ("two", WorkerOpts::with_capacity(2))]);
    for api in &c.apis {
        tts_bytes(api.addr, SHORT).assert_complete(3.0, "before the restart");
    }
    let before: Vec<f64> = c.workers.iter().map(|w| w.completed()).collect();
    c.nats.kill();
    let down = Instant::now();
    // Past the workers' 1.5 s timeout: the APIs know no worker now.
    std::thread::sleep(Duration::from_secs(2));
    let api = c.apis[0].addr;
    let during = std::thread::spawn(move || tts_bytes(api, SHORT));
    std::thread::sleep(Duration::from_millis(500));
    let waiting = c.apis[0].unserviceable();
    assert_eq!(waiting, 1.0, "the request sent during the outage should wait as unserviceable");
    c.nats.restart();
    let up = Instant::now();
    eprintln!("NATS down for {:.1} s", (up - down).as_secs_f64());

    let outage_request = during.join().unwrap();
    outage_request.assert_complete(3.0, "the request sent during the outage");
    eprintln!(
        "the request sent during the outage was served {:.1} s after NATS came back",
        up.elapsed().as_secs_f64()
    );
    for (i, a) in c.apis.iter().enumerate() {
        let served = poll(Duration::from_secs(20), || {
            let o = tts_bytes(a.addr, SHORT);
            (o.status == 200 && o.broken.is_none()).then_some(o)
        });
        let o = served.unwrap_or_else(|| panic!("API {} did not serve within 20 s of the restart", i + 1));
        o.assert_complete(3.0, "after the restart");
    }
    // Both workers are back on the bus: each is seen live (a burst uses both).
    let burst: Vec<_> = (0..4)
        .map(|k| {
            let api = c.apis[k % 2].addr;
            std::thread::spawn(move || tts_bytes(api, &long_text(200)))
        })
        .collect();
    for h in burst {
        h.join().unwrap().assert_complete(8.0, "a burst after the restart");
    }
    let after: Vec<f64> = c.workers.iter().map(|w| w.completed()).collect();
    eprintln!("completed per worker: {before:?} before the restart, {after:?} after");
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "a worker took no work after the restart: {before:?} -> {after:?}"
    );
}

/// Scenario 7: SIGTERM on the worker serving a long stream: it announces draining (capacity 0, not ready), new
/// requests go to the other worker, the stream completes with every word and a clean end, and the process exits by
/// itself afterwards.
#[test]
fn sigterm_drains_the_worker_without_losing_its_stream() {
    let _serial = serial();
    let mut c = cluster(2, &[("a", WorkerOpts::with_capacity(2)), ("b", WorkerOpts::with_capacity(2))]);
    let text = long_text(1500);
    let api = c.apis[0].addr;
    let (first_tx, first_rx) = mpsc::channel();
    let stream = {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            let o = tts_sse(api, &text).collect(|e| {
                if e.event == "chunk" && !sent {
                    sent = true;
                    first_tx.send(()).unwrap();
                }
            });
            (o, Instant::now())
        })
    };
    first_rx.recv_timeout(Duration::from_secs(15)).expect("no first audio");
    let victim = c.workers.iter().position(|w| w.load() == 1.0).expect("one worker serves the stream");
    let other = 1 - victim;
    let other_before = c.workers[other].completed();
    c.workers[victim].proc.signal("TERM");
    let termed = Instant::now();

    // Draining is visible on the victim's internal port while its stream runs.
    let draining = poll(Duration::from_secs(2), || {
        let w = &c.workers[victim];
        let m = w.scrape();
        (m.value("inferno_worker_capacity", &[]) == Some(0.0) && !w.ready()).then_some(())
    });
    assert!(draining.is_some(), "the worker did not announce draining after SIGTERM");
    // The startup probe agrees: not ready while draining, ready on the other worker.
    assert!(!probe_ready(&c.workers[victim]), "`chorus probe ready` passed on a draining worker");
    assert!(probe_ready(&c.workers[other]), "`chorus probe ready` failed on a serving worker");

    // New work goes to the other worker, through both APIs.
    const NEW: usize = 4;
    let news: Vec<_> = (0..NEW)
        .map(|k| {
            let api = c.apis[k % 2].addr;
            std::thread::spawn(move || tts_bytes(api, SHORT))
        })
        .collect();
    for h in news {
        h.join().unwrap().assert_complete(3.0, "a request during the drain");
    }
    assert_eq!(
        c.workers[other].completed() - other_before,
        NEW as f64,
        "the other worker took the new requests"
    );
    assert!(!stream.is_finished(), "the long stream ended too early to show the drain");
    {
        let w = &c.workers[victim];
        let m = w.scrape();
        assert_eq!(m.value("inferno_worker_load", &[]), Some(1.0), "the draining worker took new work");
        assert_eq!(
            m.value("chorus_worker_jobs_total", &[("outcome", "completed")]),
            Some(0.0),
            "no job completed"
        );
    }

    // The victim lives while its stream runs...
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stream.is_finished() {
        assert!(Instant::now() < deadline, "the drained stream did not end within 60 s");
        assert!(
            c.workers[victim].proc.try_wait().is_none(),
            "the draining worker exited before its stream ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (outcome, ended) = stream.join().unwrap();
    outcome.assert_complete(&text, "the stream of the draining worker");
    // ...and exits by itself afterwards.
    let exit = c.workers[victim].proc.wait_exit(Duration::from_secs(10));
    let exited = Instant::now();
    let status = exit.expect("the drained worker did not exit by itself");
    assert!(status.success(), "the drained worker exited with {status}");
    eprintln!(
        "stream ended {:.1} s after SIGTERM; worker exited {:.2} s after that",
        (ended - termed).as_secs_f64(),
        (exited - ended).as_secs_f64()
    );
    let log = c.workers[victim].proc.log_text();
    assert!(log.contains("SIGTERM: draining"), "{log}");
}

/// `chorus probe ready --url http://<metrics>/ready` exits 0.
fn probe_ready(w: &cluster_support::Worker) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["probe", "ready", "--url", &format!("http://{}/ready", w.metrics)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Scenario 8: a worker that speaks another bus protocol version heartbeats on the model's subject: the API server
/// ignores it with a warning (no job is ever sent to it) and keeps serving on the real worker. The other way round,
/// the real worker refuses a job from an API server of another protocol version, and says why.
#[test]
fn another_protocol_version_is_ignored_with_a_warning() {
    let _serial = serial();
    let c = cluster(1, &[("real", WorkerOpts::with_capacity(2))]);
    let (runtime, client) = bus_client(&c);
    let alien = fake_status("alien", 100, "99.0.0", 99);
    let payload = serde_json::to_vec(&alien).unwrap();
    // Jobs offered to the alien (there must be none).
    let mut offered = runtime.block_on(client.subscribe("chorus.v1.worker.alien.jobs")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeats = {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        runtime.spawn(async move {
            while !stop.load(Ordering::Acquire) {
                client.publish(format!("chorus.v1.status.{MODEL}"), payload.clone().into()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    let requests: Vec<_> = (0..4)
        .map(|_| {
            let api = c.apis[0].addr;
            std::thread::spawn(move || tts_bytes(api, SHORT))
        })
        .collect();
    for h in requests {
        h.join().unwrap().assert_complete(3.0, "a request while an alien worker heartbeats");
    }
    assert_eq!(c.workers[0].completed(), 4.0);
    stop.store(true, Ordering::Release);
    runtime.block_on(heartbeats).unwrap();
    let none =
        runtime.block_on(async { tokio::time::timeout(Duration::from_millis(200), offered.next()).await });
    assert!(none.is_err(), "a job was offered to the worker of another protocol version");
    let log = c.apis[0].proc.log_text();
    assert!(log.contains("another bus protocol version"), "no warning in the API log:\n{log}");
    assert_eq!(log.matches("another bus protocol version").count(), 1, "warned once per version");

    // An API server of another protocol version offers the real worker a job: refused, with a clear log line.
    let mut job = chorus_proto::SynthesisJob::new("version-test", MODEL, SHORT);
    job.protocol_version = 99;
    let offer = serde_json::json!({
        "job": job,
        "events_subject": "chorus.v1.ctx.version-test.a.out",
        "inputs_subject": "chorus.v1.ctx.version-test.a.in",
    });
    let reply = runtime
        .block_on(client.request("chorus.v1.worker.real.jobs", serde_json::to_vec(&offer).unwrap().into()))
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["accepted"], false, "{reply}");
    assert_eq!(reply["refusal"], "version", "{reply}");
    let worker_log = c.workers[0].proc.log_text();
    assert!(worker_log.contains("another protocol version"), "no refusal in the worker log:\n{worker_log}");
}
