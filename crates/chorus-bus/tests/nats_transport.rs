//! The NATS transport on its own, against a real `nats-server` (installed by `scripts/setup --dev`): an API side
//! (`NatsBus`) and a worker side (`NatsWorkerHost`) in one process, with a worker that speaks a scripted stream
//! (numbered chunks, then `Done`) so that what is checked is the transport: order and content of the events,
//! the request id on the worker side, a slot held until the job ends and a second job waiting for it, and a
//! dropped handle reaching the worker and freeing its slot.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_bus::{
    Bus, ModelInfo, NatsBus, NatsBusConfig, NatsWorkerHost, Offer, Refusal, Worker, WorkerStatus,
    reserve_slot,
};
use chorus_proto::{AudioEvent, JobEvent, SynthesisJob};

const MODEL: &str = "scripted-voice";

/// A `nats-server` on a free loopback port, killed on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/setup --dev installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url: format!("nats://127.0.0.1:{port}") }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Speaks `chunks` numbered chunks of 100 samples, `pace` apart, each sample the chunk's number; stops at once
/// when the events channel closes.
struct Scripted {
    capacity: u32,
    load: Arc<AtomicU32>,
    chunks: u64,
    pace: Duration,
    seen_request_ids: Arc<Mutex<Vec<String>>>,
    saw_close: Arc<AtomicBool>,
    /// Serves no model any more (so it sends no heartbeat: they go out on the models' subjects).
    retired: AtomicBool,
}

impl Worker for Scripted {
    fn status(&self) -> WorkerStatus {
        let models = if self.retired.load(Ordering::SeqCst) {
            Vec::new()
        } else {
            vec![ModelInfo { id: MODEL.into(), language: "en".into(), sample_rate: 22050 }]
        };
        WorkerStatus::serving("scripted-1", models, self.capacity, self.load.load(Ordering::SeqCst))
    }

    fn accept(&self, offer: Offer) -> Result<(), Refusal> {
        let Offer { job, events, slot, .. } = offer;
        if job.model != MODEL {
            return Err(Refusal::UnknownModel(job.model));
        }
        reserve_slot(&self.load, self.capacity)?;
        self.seen_request_ids.lock().unwrap().push(job.request_id.clone());
        let (load, chunks, pace, saw_close) =
            (Arc::clone(&self.load), self.chunks, self.pace, Arc::clone(&self.saw_close));
        std::thread::spawn(move || {
            let _slot = slot;
            let mut finished = true;
            for seq in 0..chunks {
                std::thread::sleep(pace);
                let audio = AudioEvent {
                    seq,
                    sample_rate: 22050,
                    samples: vec![seq as f32; 100],
                    step_time_ms: 1.0,
                    flush_id: 1,
                };
                if events.blocking_send(JobEvent::Audio(audio)).is_err() {
                    saw_close.store(true, Ordering::SeqCst);
                    finished = false;
                    break;
                }
            }
            if finished {
                let _ = events.blocking_send(JobEvent::Done);
            }
            load.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(())
    }
}

struct Cluster {
    _nats: Nats,
    bus: NatsBus,
    worker: Arc<Scripted>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn cluster(capacity: u32, chunks: u64, pace: Duration) -> Cluster {
    let nats = Nats::start();
    let config = NatsBusConfig {
        heartbeat: Duration::from_millis(100),
        queue_timeout: Duration::from_secs(3),
        ..NatsBusConfig::default()
    };
    let worker = Arc::new(Scripted {
        capacity,
        load: Arc::new(AtomicU32::new(0)),
        chunks,
        pace,
        seen_request_ids: Arc::default(),
        saw_close: Arc::default(),
        retired: AtomicBool::new(false),
    });
    let worker_client = async_nats::connect(&nats.url).await.unwrap();
    let host = NatsWorkerHost::new(worker_client, Arc::clone(&worker) as Arc<dyn Worker>, config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(host.run(async move {
        let _ = stopped.await;
    }));
    let api_client = async_nats::connect(&nats.url).await.unwrap();
    let bus = NatsBus::start(api_client, config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.models().is_empty() {
        assert!(Instant::now() < deadline, "the worker's heartbeat never reached the API side");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Cluster { _nats: nats, bus, worker, _stop: stop }
}

/// Every event of a job until its end, with the time each arrived.
async fn drain(events: &mut tokio::sync::mpsc::Receiver<JobEvent>) -> Vec<(JobEvent, Instant)> {
    let mut out = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        let end = matches!(event, JobEvent::Done | JobEvent::Error(_));
        out.push((event, Instant::now()));
        if end {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_crosses_nats_in_order_with_its_request_id_and_ends_with_done() {
    let c = cluster(2, 6, Duration::from_millis(5)).await;
    let mut handle = c.bus.start(SynthesisJob::new("req-nats-1", MODEL, "Hello.")).await.unwrap();
    let events = drain(&mut handle.events).await;
    let audio: Vec<&AudioEvent> =
        events.iter().filter_map(|(e, _)| if let JobEvent::Audio(a) = e { Some(a) } else { None }).collect();
    assert_eq!(audio.iter().map(|a| a.seq).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    for a in &audio {
        assert_eq!(a.samples, vec![a.seq as f32; 100], "chunk {} arrived with other samples", a.seq);
    }
    assert!(matches!(events.last(), Some((JobEvent::Done, _))), "the stream did not end with Done");
    assert_eq!(*c.worker.seen_request_ids.lock().unwrap(), vec!["req-nats-1".to_owned()]);
    // A job for a model no worker serves waits at most the queue timeout (3 s here), then is refused.
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        c.bus.start(SynthesisJob::new("req-2", "nobody", "Hi.")),
    )
    .await;
    assert!(matches!(refused, Ok(Err(_))), "a job for a model no worker serves was not refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_waits_for_the_slot_and_is_served_when_the_first_ends() {
    let c = cluster(1, 10, Duration::from_millis(30)).await;
    let mut first = c.bus.start(SynthesisJob::new("first", MODEL, "One.")).await.unwrap();
    // Let the worker's heartbeat report the slot taken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bus = c.bus.clone();
    let second = tokio::spawn(async move {
        let mut h = bus.start(SynthesisJob::new("second", MODEL, "Two.")).await.unwrap();
        drain(&mut h.events).await
    });
    let first_events = drain(&mut first.events).await;
    let first_done = first_events.last().map(|(_, t)| *t).unwrap();
    assert!(matches!(first_events.last(), Some((JobEvent::Done, _))));
    let second_events = second.await.unwrap();
    assert!(matches!(second_events.last(), Some((JobEvent::Done, _))), "the queued job was not served");
    let second_first_audio = second_events.first().map(|(_, t)| *t).unwrap();
    assert!(
        second_first_audio >= first_done,
        "the second job ran beside the first on a worker of capacity 1"
    );
    assert_eq!(*c.worker.seen_request_ids.lock().unwrap(), vec!["first".to_owned(), "second".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_reaches_the_worker_and_frees_its_slot() {
    let c = cluster(1, 500, Duration::from_millis(20)).await;
    let mut handle = c.bus.start(SynthesisJob::new("dropped", MODEL, "A long one.")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), handle.events.recv()).await.unwrap();
    assert!(matches!(first, Some(JobEvent::Audio(_))));
    drop(handle);
    let dropped_at = Instant::now();
    while c.worker.load.load(Ordering::SeqCst) != 0 {
        assert!(
            dropped_at.elapsed() < Duration::from_secs(2),
            "the worker still runs the job 2 s after the drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.worker.saw_close.load(Ordering::SeqCst), "the job ended without seeing its events closed");
    // The freed slot takes the next job at once.
    let mut next = c.bus.start(SynthesisJob::new("next", MODEL, "Next.")).await.unwrap();
    let next_first = tokio::time::timeout(Duration::from_secs(5), next.events.recv()).await.unwrap();
    assert!(matches!(next_first, Some(JobEvent::Audio(_))), "the slot was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_heartbeats_stop_leaves_the_announcements() {
    let c = cluster(1, 1, Duration::from_millis(1)).await;
    let mut announced = c.bus.announcements();
    assert_eq!(announced.borrow_and_update().iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [MODEL]);
    // No heartbeat comes any more: the model is announced gone once the worker times out, with no request asking.
    c.worker.retired.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(15), announced.wait_for(Vec::is_empty))
        .await
        .expect("the silent worker's model was still announced after 15 s")
        .unwrap();
    assert!(c.bus.models().is_empty());
}
