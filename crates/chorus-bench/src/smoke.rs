//! `chorus smoke --url URL`: the seed system's smoke tests against a running deployment. Exits non-zero on any
//! failure, printing one line per check.

use std::time::Duration;

use bytes::Bytes;

use crate::client::{self, Connection, HttpClient, Protocol, Target};
use crate::{BenchError, Result};

/// Metric names a deployment must export (cartesia-spec 1.3): checked across every `--metrics-url`.
const REQUIRED_METRICS: [&str; 9] = [
    chorus_proto::metrics::WORKER_CAPACITY,
    chorus_proto::metrics::WORKER_LOAD,
    chorus_proto::metrics::WORKER_TTFA,
    chorus_proto::metrics::WORKER_RTF,
    chorus_proto::metrics::API_QUEUE_SIZE,
    chorus_proto::metrics::API_UNSERVICEABLE,
    chorus_proto::metrics::REQUESTS_TOTAL,
    chorus_proto::metrics::API_TTFA,
    chorus_proto::metrics::REQUEST_DURATION,
];

#[derive(Debug, clap::Args)]
pub struct SmokeArgs {
    /// The API's base URL, e.g. http://127.0.0.1:5000.
    #[arg(long, env = "CHORUS_SMOKE_URL")]
    pub url: String,
    /// API key, if the deployment needs one.
    #[arg(long, env = "CHORUS_SMOKE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// /metrics URLs of the API and workers (repeat); the required metric names must appear across them.
    #[arg(long = "metrics-url")]
    pub metrics_urls: Vec<String>,
    /// Model id to request.
    #[arg(long, default_value = "sonic-3")]
    pub model_id: String,
    /// Seconds each check may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Go-live: after the checks, a short load benchmark whose TTFA p95 and gap-free rate must be within the
    /// figures documented for this worker node type (cpu-2, cpu-16, gpu-h100; docs/operations.md, "Go-live
    /// checks"). Needs --metrics-url (the metric names are a go-live check too).
    #[arg(long, value_name = "NODE_TYPE")]
    pub golive: Option<String>,
    /// Go-live: seconds the benchmark runs.
    #[arg(long, default_value_t = 20.0)]
    pub golive_seconds: f64,
    /// Go-live: the voice the benchmark asks for.
    #[arg(long, default_value = crate::DEFAULT_VOICE)]
    pub golive_voice: String,
}

pub fn run(args: SmokeArgs) -> Result<()> {
    let golive = args.golive.as_deref().map(crate::golive::figures).transpose()?;
    if golive.is_some() && args.metrics_urls.is_empty() {
        return Err(BenchError::Usage(
            "--golive needs --metrics-url (the API's and the workers' /metrics): the metric names are a go-live check"
                .into(),
        ));
    }
    checks(&args)?;
    if let Some(figures) = golive {
        println!(
            "go-live benchmark: {} ({}), {} streams for {} s",
            figures.name, figures.node, figures.concurrency, args.golive_seconds
        );
        let base = args.url.trim_end_matches('/');
        match crate::golive::bench(
            base,
            args.api_key.as_deref(),
            &args.golive_voice,
            &args.model_id,
            &figures,
            args.golive_seconds,
        ) {
            Ok(line) => println!("PASS go-live benchmark: {line}"),
            Err(e) => {
                println!("FAIL go-live benchmark: {}", e.chain().replace('\n', " "));
                return Err(BenchError::Failed(format!(
                    "the go-live benchmark is outside the figures for {}",
                    figures.name
                )));
            }
        }
    }
    Ok(())
}

/// The smoke checks, one line each.
fn checks(args: &SmokeArgs) -> Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let http = client::http_client();
        let base = args.url.trim_end_matches('/').to_owned();
        let timeout = Duration::from_secs(args.timeout);
        let mut failures = 0;
        let mut check = |name: &str, result: Result<String>| match result {
            Ok(detail) => println!("PASS {name}: {detail}"),
            Err(e) => {
                failures += 1;
                println!("FAIL {name}: {}", e.chain().replace('\n', " "));
            }
        };
        check(
            "GET /status",
            tokio::time::timeout(timeout, status(&http, &base)).await.unwrap_or_else(|_| bail_timeout()),
        );
        let voice = tokio::time::timeout(timeout, first_voice(&http, &base, args.api_key.as_deref()))
            .await
            .unwrap_or_else(|_| bail_timeout());
        let voice_id = voice.as_ref().ok().cloned();
        check("GET /voices", voice.map(|v| format!("first voice {v}")));
        if let Some(voice) = voice_id {
            let target = |protocol| Target {
                base: base.clone(),
                api_key: args.api_key.clone(),
                voice: voice.clone(),
                model_id: args.model_id.clone(),
                protocol,
            };
            check(
                "POST /tts/bytes (wav)",
                tokio::time::timeout(timeout, wav(&http, &target(Protocol::Bytes)))
                    .await
                    .unwrap_or_else(|_| bail_timeout()),
            );
            check(
                "WebSocket round trip",
                tokio::time::timeout(timeout, websocket(&http, &target(Protocol::Ws)))
                    .await
                    .unwrap_or_else(|_| bail_timeout()),
            );
        }
        if !args.metrics_urls.is_empty() {
            check(
                "metric names",
                tokio::time::timeout(timeout, metrics(&http, &args.metrics_urls))
                    .await
                    .unwrap_or_else(|_| bail_timeout()),
            );
        }
        if failures > 0 {
            return Err(BenchError::Failed(format!("{failures} smoke check(s) failed")));
        }
        Ok(())
    })
}

fn bail_timeout() -> Result<String> {
    Err(BenchError::Timeout("timed out".into()))
}

/// A check's condition: when it fails, the server answered something wrong.
fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(BenchError::Protocol(what())) }
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| BenchError::json("not JSON", e))
}

async fn get(http: &HttpClient, url: &str, api_key: Option<&str>) -> Result<(u16, Bytes)> {
    client::call(http, url, api_key, None).await
}

async fn status(http: &HttpClient, base: &str) -> Result<String> {
    let (code, body) = get(http, &format!("{base}/status"), None).await?;
    ensure(code == 200, || format!("status {code}"))?;
    let json = parse_json(&body)?;
    ensure(json["ok"] == true, || format!("ok is not true: {json}"))?;
    Ok(format!("{json}"))
}

async fn first_voice(http: &HttpClient, base: &str, api_key: Option<&str>) -> Result<String> {
    let (code, body) = get(http, &format!("{base}/voices?limit=100"), api_key).await?;
    ensure(code == 200, || format!("status {code}: {}", String::from_utf8_lossy(&body)))?;
    let json = parse_json(&body)?;
    let first = json["data"]
        .as_array()
        .and_then(|d| d.first())
        .ok_or_else(|| BenchError::Protocol("no voice listed".into()))?;
    first["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Protocol("a voice without an id".into()))
}

async fn wav(http: &HttpClient, target: &Target) -> Result<String> {
    let body = serde_json::json!({
        "model_id": target.model_id,
        "transcript": "This is a smoke test of the text to speech service.",
        "voice": {"mode": "id", "id": target.voice},
        "output_format": {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 22050},
    });
    let url = format!("{}/tts/bytes", target.base);
    let (code, bytes) = client::call(http, &url, target.api_key.as_deref(), Some(&body)).await?;
    ensure(code == 200, || format!("status {code}: {}", String::from_utf8_lossy(&bytes)))?;
    let (_, data_len, bytes_per_s) = client::wav_layout(&bytes)?;
    let seconds = data_len as f64 / bytes_per_s;
    ensure(seconds > 1.0, || format!("only {seconds:.2} s of audio"))?;
    Ok(format!("{seconds:.2} s of WAV audio"))
}

async fn websocket(http: &HttpClient, target: &Target) -> Result<String> {
    let connection = Connection::open(target, http).await?;
    let outcome = connection.request(target, "Smoke test over the WebSocket.").await;
    connection.close().await;
    let outcome = outcome?;
    ensure(outcome.audio_s() > 0.5, || format!("only {:.2} s of audio", outcome.audio_s()))?;
    Ok(format!("{:.2} s of audio, first after {} ms", outcome.audio_s(), outcome.ttfa.as_millis()))
}

async fn metrics(http: &HttpClient, urls: &[String]) -> Result<String> {
    let mut text = String::new();
    for url in urls {
        let (code, body) = get(http, url, None).await?;
        ensure(code == 200, || format!("{url}: status {code}"))?;
        text.push_str(&String::from_utf8_lossy(&body));
        text.push('\n');
    }
    let missing: Vec<&str> = REQUIRED_METRICS
        .iter()
        .copied()
        .filter(|name| !text.lines().any(|l| l.starts_with(name) && !l.starts_with('#')))
        .collect();
    ensure(missing.is_empty(), || format!("missing {}", missing.join(", ")))?;
    Ok(format!("all of {} present", REQUIRED_METRICS.join(", ")))
}
