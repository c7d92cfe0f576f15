//! `POST /tts/bytes` and `POST /tts/sse` against the sine worker.
#![allow(clippy::unwrap_used)]

mod http_support;

use std::io::Cursor;
use std::time::Duration;

use axum::http::header;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chorus_api::ApiConfig;
use chorus_bus::LocalBusConfig;
use futures_util::StreamExt as _;
use http_support::{
    DE_VOICE, EN_RATE, EN_VOICE, FAIL_EARLY, FAIL_LATE, SLOW, TestServer, VANISH, post_json, post_raw,
    resampled_len, sentence_samples, sse_events, tts_body,
};
use serde_json::{Value, json};

fn raw(encoding: &str, rate: u32) -> Value {
    json!({"container": "raw", "encoding": encoding, "sample_rate": rate})
}

#[tokio::test]
async fn raw_pcm_at_the_model_rate_is_exact() {
    let server = TestServer::open();
    let reply =
        server.fetch(post_json("/tts/bytes", &tts_body("One. Two.", raw("pcm_s16le", EN_RATE)))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/octet-stream"));
    assert_eq!(reply.bytes().len(), 2 * sentence_samples(EN_RATE) * 2);
    assert_eq!(reply.header("cartesia-file-id"), None);
}

#[tokio::test]
async fn wav_is_streamed_with_a_readable_header() {
    let server = TestServer::open();
    let format = json!({"container": "wav", "encoding": "pcm_s16le", "sample_rate": 44100});
    let req = post_json("/tts/bytes", &tts_body("One. Two. Three.", format));
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("audio/wav"));
    let bytes = reply.bytes().to_vec();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(&bytes[4..8], &[0xFF; 4], "streaming header: unknown size");
    let data_len = (bytes.len() - chorus_audio::WAV_HEADER_LEN) as u64;
    let mut file = Cursor::new(bytes);
    chorus_audio::finalize_wav_file(&mut file, data_len).unwrap();
    file.set_position(0);
    let reader = hound::WavReader::new(file).unwrap();
    assert_eq!(
        (reader.spec().sample_rate, reader.spec().channels, reader.spec().bits_per_sample),
        (44100, 1, 16)
    );
    let expected = resampled_len(3 * sentence_samples(EN_RATE), EN_RATE, 44100);
    assert!(reader.len().abs_diff(expected as u32) <= 2, "{} vs {expected}", reader.len());
}

#[tokio::test]
async fn mp3_and_g711_formats() {
    let server = TestServer::open();
    let mp3 = json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 128000});
    let reply = server.fetch(post_json("/tts/bytes", &tts_body("Hello.", mp3))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("audio/mpeg"));
    let bytes = reply.bytes();
    assert!(bytes.len() > 1000);
    assert_eq!(bytes[0], 0xFF, "an MPEG frame sync");
    assert_eq!(bytes[1] & 0xE0, 0xE0);

    let reply = server.fetch(post_json("/tts/bytes", &tts_body("Hello.", raw("pcm_mulaw", 8000)))).await;
    assert_eq!(reply.status, 200);
    let expected = resampled_len(sentence_samples(EN_RATE), EN_RATE, 8000);
    assert!(reply.bytes().len().abs_diff(expected) <= 2);
}

#[tokio::test]
async fn every_voice_form_and_any_accept_header() {
    let server = TestServer::open();
    for voice in [json!(EN_VOICE), json!({"id": EN_VOICE}), json!({"mode": "id", "id": EN_VOICE, "x": 1})] {
        let mut body = tts_body("Hi.", raw("pcm_f32le", 24000));
        body["voice"] = voice.clone();
        let mut req = post_json("/tts/bytes", &body);
        req.headers_mut().insert(header::ACCEPT, "audio/wav".parse().unwrap());
        let reply = server.fetch(req).await;
        assert_eq!(reply.status, 200, "{voice}");
    }
}

#[tokio::test]
async fn save_gives_a_file_id() {
    let server = TestServer::open();
    let mut body = tts_body("Hi.", raw("pcm_s16le", 16000));
    body["save"] = json!(true);
    let reply = server.fetch(post_json("/tts/bytes", &body)).await;
    assert_eq!(reply.status, 200);
    assert!(uuid::Uuid::parse_str(reply.header("cartesia-file-id").unwrap()).is_ok());
}

#[tokio::test]
async fn bad_input_is_a_json_error_before_any_audio() {
    let server = TestServer::open();
    let ok_format = raw("pcm_s16le", 22050);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"model_id": "nope", "transcript": "Hi.", "voice": EN_VOICE, "output_format": ok_format}),
            400,
            "model_not_found",
        ),
        (
            json!({"model_id": "sonic-3", "transcript": "Hi.", "voice": "nope", "output_format": ok_format}),
            404,
            "voice_not_found",
        ),
        (
            json!({"model_id": 3, "transcript": "Hi.", "voice": EN_VOICE, "output_format": ok_format}),
            422,
            "invalid_request",
        ),
        (json!({"transcript": "Hi.", "voice": EN_VOICE, "output_format": ok_format}), 422, "invalid_request"),
        (
            tts_body("Hi.", json!({"container": "ogg", "encoding": "pcm_s16le", "sample_rate": 8000})),
            400,
            "invalid_request",
        ),
        (tts_body("Hi.", raw("pcm_s16le", 11025)), 400, "invalid_request"),
        (tts_body("Hi.", raw("pcm_s24le", 8000)), 400, "invalid_request"),
        (
            tts_body("Hi.", json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 100})),
            400,
            "invalid_request",
        ),
        (tts_body("", ok_format.clone()), 400, "empty_transcript"),
        (tts_body("?!", ok_format.clone()), 400, "empty_transcript"),
        (tts_body(&"word ".repeat(20_000), ok_format.clone()), 400, "text_too_long"),
        (
            json!({"model_id": "sonic-3", "transcript": "Hi.", "voice": EN_VOICE, "output_format": ok_format,
                   "pronunciation_dict_id": "nope"}),
            404,
            "not_found",
        ),
        (
            json!({"model_id": "sonic-3", "transcript": "Hi.", "voice": EN_VOICE, "output_format": ok_format,
                   "language": "fr"}),
            400,
            "invalid_request",
        ),
        (
            json!({"model_id": "sonic-3", "transcript": "Hi.", "voice": EN_VOICE, "output_format": ok_format,
                   "generation_config": {"speed": 9.0}}),
            400,
            "invalid_request",
        ),
        (tts_body(FAIL_EARLY, ok_format.clone()), 500, "inference_failed"),
    ];
    for (body, status, code) in cases {
        for route in ["/tts/bytes", "/tts/sse"] {
            let reply = server.fetch(post_json(route, &body)).await;
            let short: String = body.to_string().chars().take(120).collect();
            assert_eq!(reply.status.as_u16(), status, "{route} {short}: {:?}", reply.body);
            reply.assert_error(status, code);
        }
    }
    let reply = server.fetch(post_raw("/tts/bytes", "{\"model_id\": ")).await;
    let body = reply.assert_error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("malformed JSON"));
    server.fetch(post_raw("/tts/sse", "{oops")).await.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_100_kb_transcript_is_text_too_long_not_413() {
    let server = TestServer::open();
    let body = tts_body(&"x".repeat(100_000), raw("pcm_s16le", 22050));
    server.fetch(post_json("/tts/bytes", &body)).await.assert_error(400, "text_too_long");
}

#[tokio::test]
async fn a_failure_after_audio_aborts_the_body() {
    let server = TestServer::open();
    for transcript in [FAIL_LATE, VANISH] {
        let reply =
            server.fetch(post_json("/tts/bytes", &tts_body(transcript, raw("pcm_s16le", 22050)))).await;
        assert_eq!(reply.status, 200, "headers were sent with the first audio");
        assert!(reply.body.is_err(), "{transcript}: the transfer must fail, not end cleanly");
    }
}

#[tokio::test]
async fn dropping_the_body_mid_stream_stops_the_worker() {
    let server = TestServer::open();
    let mut req = post_json("/tts/bytes", &tts_body(SLOW, raw("pcm_s16le", 22050)));
    req.headers_mut().insert("x-request-id", "hang-up-1".parse().unwrap());
    let response = server.call(req).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    assert!(
        server.record.wait_closed("hang-up-1", Duration::from_secs(5)).await,
        "the worker saw the hang-up"
    );
    assert!(server.record.finished.lock().unwrap().is_empty());
}

#[tokio::test]
async fn busy_workers_give_429_with_retry_after() {
    let config = LocalBusConfig { max_queue: 0, queue_timeout: Duration::from_millis(50) };
    let server = TestServer::build(ApiConfig::default(), 1, config);
    let busy = server.call(post_json("/tts/bytes", &tts_body(SLOW, raw("pcm_s16le", 22050)))).await;
    assert_eq!(busy.status(), 200);
    let reply = server.fetch(post_json("/tts/bytes", &tts_body("Hi.", raw("pcm_s16le", 22050)))).await;
    reply.assert_error(429, "concurrency_limited");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.header("x-should-retry"), Some("true"));
    drop(busy);
}

#[tokio::test]
async fn sse_sends_chunks_timestamps_and_ends_after_done() {
    let server = TestServer::open();
    let body = json!({
        "model_id": "sonic-3", "transcript": "Hello big world. Bye now!", "voice": EN_VOICE,
        "output_format": raw("pcm_f32le", 22050), "add_timestamps": true, "add_phoneme_timestamps": true,
        "context_id": "ctx-7",
    });
    let mut req = post_json("/tts/sse", &body);
    req.headers_mut().insert(header::ACCEPT, "text/event-stream".parse().unwrap());
    let reply = server.fetch(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events = sse_events(reply.bytes());
    let types: Vec<&str> = events.iter().map(|(_, d)| d["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["chunk", "timestamps", "phoneme_timestamps", "chunk", "timestamps", "phoneme_timestamps", "done"]
    );
    for (name, data) in &events {
        assert_eq!(name, data["type"].as_str().unwrap(), "event name = type");
        assert_eq!(data["context_id"], "ctx-7");
    }
    let audio: usize = events
        .iter()
        .filter(|(_, d)| d["type"] == "chunk")
        .map(|(_, d)| {
            assert_eq!((d["done"].clone(), d["status_code"].clone()), (json!(false), json!(206)));
            assert!(d["step_time"].is_number());
            BASE64.decode(d["data"].as_str().unwrap()).unwrap().len()
        })
        .sum();
    assert_eq!(audio, 2 * sentence_samples(EN_RATE) * 4, "f32 samples");
    let words = &events[1].1["word_timestamps"];
    assert_eq!(words["words"], json!(["Hello", "big", "world."]));
    assert_eq!(words["start"].as_array().unwrap().len(), 3);
    assert_eq!(words["end"].as_array().unwrap().len(), 3);
    assert_eq!(events[2].1["phoneme_timestamps"]["phonemes"].as_array().unwrap().len(), 13);
    assert_eq!(
        events.last().unwrap().1,
        json!({"type": "done", "done": true, "status_code": 200, "context_id": "ctx-7"})
    );
}

#[tokio::test]
async fn sse_without_timestamps_and_with_resampling() {
    let server = TestServer::open();
    let reply =
        server.fetch(post_json("/tts/sse", &tts_body("One. Two. Three.", raw("pcm_s16le", 48000)))).await;
    let events = sse_events(reply.bytes());
    assert!(events.iter().all(|(_, d)| d["type"] == "chunk" || d["type"] == "done"));
    assert_eq!(events.last().unwrap().1["type"], "done");
    assert!(events.iter().all(|(_, d)| d.get("context_id").is_none()));
    let bytes: usize = events
        .iter()
        .filter(|(_, d)| d["type"] == "chunk")
        .map(|(_, d)| BASE64.decode(d["data"].as_str().unwrap()).unwrap().len())
        .sum();
    let expected = resampled_len(3 * sentence_samples(EN_RATE), EN_RATE, 48000) * 2;
    assert!(bytes.abs_diff(expected) <= 4, "{bytes} vs {expected}");
}

#[tokio::test]
async fn sse_is_raw_only() {
    let server = TestServer::open();
    let wav = json!({"container": "wav", "encoding": "pcm_s16le", "sample_rate": 22050});
    let body =
        server.fetch(post_json("/tts/sse", &tts_body("Hi.", wav))).await.assert_error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("raw"));
}

#[tokio::test]
async fn sse_error_after_audio_is_an_error_event_then_the_end() {
    let server = TestServer::open();
    let mut body = tts_body(FAIL_LATE, raw("pcm_s16le", 22050));
    body["context_id"] = json!("c1");
    let reply = server.fetch(post_json("/tts/sse", &body)).await;
    assert_eq!(reply.status, 200);
    let events = sse_events(reply.bytes());
    let types: Vec<&str> = events.iter().map(|(_, d)| d["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["chunk", "error"]);
    let (name, error) = &events[1];
    assert_eq!(name, "error");
    assert_eq!(error["done"], true);
    assert_eq!(error["status_code"], 500);
    assert_eq!(error["error_code"], "inference_failed");
    assert_eq!(error["context_id"], "c1");
    assert_eq!(error["request_id"].as_str(), reply.header("x-request-id"));
    assert!(error["title"].is_string() && error["message"].is_string());
}

#[tokio::test]
async fn the_job_gets_what_the_request_asked_for() {
    let server = TestServer::open();
    let body = json!({
        "model_id": "sonic-2-2025-03-07", "transcript": "Guten Tag.", "voice": DE_VOICE,
        "output_format": raw("pcm_s16le", 16000), "language": "de",
        "generation_config": {"speed": 1.25, "volume": 0.8}, "normalization": "off",
    });
    let reply = server.fetch(post_json("/tts/bytes", &body)).await;
    assert_eq!(reply.status, 200);
    let job = server.record.last_job();
    assert_eq!(job.model, DE_VOICE);
    assert_eq!(job.transcript, "Guten Tag.");
    assert!((job.params.speed - 1.25).abs() < 1e-6 && (job.params.volume - 0.8).abs() < 1e-6);
    assert!(!job.normalize);
    assert_eq!(reply.header("x-request-id"), Some(job.request_id.as_str()));
    assert_eq!(reply.bytes().len(), sentence_samples(16_000) * 2);
}
