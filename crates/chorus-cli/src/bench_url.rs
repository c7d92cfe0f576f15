//! `chorus bench --url A [--url B ...]`: time to first audio and total time of `POST /tts/bytes` against running
//! servers, one request at a time, the servers interleaved request by request so that drift on a shared machine
//! affects each alike.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// One server's samples, sorted.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UrlMeasurement {
    pub url: String,
    pub ttfa_s: Vec<f64>,
    pub total_s: Vec<f64>,
}

/// Measures every server `iterations` times with `text` (after one unmeasured request each).
pub fn measure(
    urls: &[String],
    api_key: Option<&str>,
    voice: &str,
    text: &str,
    iterations: usize,
) -> Result<Vec<UrlMeasurement>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let body = serde_json::to_vec(&serde_json::json!({
            "model_id": "sonic-3",
            "transcript": text,
            "voice": voice,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
        }))?;
        let mut results: Vec<UrlMeasurement> =
            urls.iter().map(|u| UrlMeasurement { url: u.clone(), ..UrlMeasurement::default() }).collect();
        for round in 0..=iterations {
            for r in &mut results {
                let (ttfa, total) = one(&client, &r.url, api_key, body.clone()).await?;
                if round > 0 {
                    r.ttfa_s.push(ttfa.as_secs_f64());
                    r.total_s.push(total.as_secs_f64());
                }
            }
        }
        for r in &mut results {
            r.ttfa_s.sort_by(f64::total_cmp);
            r.total_s.sort_by(f64::total_cmp);
        }
        Ok(results)
    })
}

async fn one(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    api_key: Option<&str>,
    body: Vec<u8>,
) -> Result<(Duration, Duration)> {
    let mut req = hyper::Request::post(format!("{}/tts/bytes", url.trim_end_matches('/')))
        .header("content-type", "application/json");
    if let Some(key) = api_key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    let t0 = Instant::now();
    let response = client.request(req).await.with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut ttfa = None;
    let mut bytes = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("{url}: the audio stream failed"))?;
        if let Some(data) = frame.data_ref()
            && !data.is_empty()
        {
            ttfa.get_or_insert_with(|| t0.elapsed());
            bytes += data.len();
        }
    }
    let total = t0.elapsed();
    let ttfa = ttfa.with_context(|| format!("{url} sent no audio"))?;
    anyhow::ensure!(bytes > 0, "{url} sent no audio");
    Ok((ttfa, total))
}
