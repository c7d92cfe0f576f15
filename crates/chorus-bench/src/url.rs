//! `chorus bench --url A [--url B ...]`: time to first audio and total time of `POST /tts/bytes` against running
//! servers, one request at a time, the servers interleaved request by request so that drift on a shared machine
//! affects each alike.

use crate::Result;
use crate::client::{Connection, Protocol, Target, http_client};

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
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let http = http_client();
        let targets: Vec<Target> = urls
            .iter()
            .map(|u| Target {
                base: u.trim_end_matches('/').to_owned(),
                api_key: api_key.map(str::to_owned),
                voice: voice.to_owned(),
                model_id: "sonic-3".into(),
                protocol: Protocol::Bytes,
            })
            .collect();
        let connection = Connection::Http(Box::new(http));
        let mut results: Vec<UrlMeasurement> =
            urls.iter().map(|u| UrlMeasurement { url: u.clone(), ..UrlMeasurement::default() }).collect();
        for round in 0..=iterations {
            for (r, target) in results.iter_mut().zip(&targets) {
                let outcome = connection.request(target, text).await?;
                if round > 0 {
                    r.ttfa_s.push(outcome.ttfa.as_secs_f64());
                    r.total_s.push(outcome.total.as_secs_f64());
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
