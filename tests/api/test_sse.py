"""`POST /tts/sse` through the Cartesia SDK (`client.tts.generate_sse`): audio chunks, word and phoneme timestamps
against the words as written, and a stream that ends right after `done` (spec 2.4.3)."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from apisupport import (
    MODEL,
    VOICE,
    Collected,
    assert_monotonic_words,
    assert_speech,
    raw_format,
    stamp_words,
    text_words,
    tts_body,
)

TEXTS = [
    "The tickets cost $12.50 each and the show starts at 7:30pm.",
    "Hello there, how can I help you today?",
    "Dr. Smith lives at 221B Baker Street, and he was born on 3/4/1985.",
]


def collect_sse(client, transcript: str, encoding: str = "pcm_f32le", rate: int = 44100, **kw) -> Collected:
    out = Collected()
    for ev in client.tts.generate_sse(model_id=MODEL, transcript=transcript, voice=VOICE,
                                      output_format=raw_format(encoding, rate), **kw):
        out.add(ev)
    return out


@pytest.mark.parametrize("text", TEXTS)
def test_sse_audio_and_timestamps(client, text):
    rate, enc = 44100, "pcm_f32le"
    got = collect_sse(client, text, enc, rate, add_timestamps=True, add_phoneme_timestamps=True, context_id="sse-ctx-1")
    assert not got.errors, f"error events: {got.errors}"
    assert got.types.count("chunk") >= 1, got.types
    assert got.types[-1] == "done" and got.types.count("done") == 1, f"the stream must end with one done: {got.types}"
    for ev in got.events:
        assert getattr(ev, "context_id", None) == "sse-ctx-1", f"context_id not echoed in {ev.type} event"
        assert isinstance(getattr(ev, "status_code", None), int), f"{ev.type} event without status_code"
        if ev.type == "chunk":
            assert ev.done is False and isinstance(ev.step_time, (int, float)), ev
    samples = got.samples(enc)
    duration = len(samples) / rate
    assert_speech(samples, rate, text)
    # Each whitespace-separated token exactly as written, punctuation attached ("$12.50", "7:30pm.", "Street,").
    assert got.words == text.split(), f"timestamps say {got.words}, the text is {text!r}"
    assert stamp_words(got.words) == text_words(text)
    assert_monotonic_words(got.words, got.starts, got.ends, duration, text)
    # Phoneme timestamps: present, ordered, inside the audio.
    assert got.phonemes, "no phoneme timestamps"
    assert len(got.phonemes) == len(got.p_starts) == len(got.p_ends)
    for i in range(1, len(got.p_starts)):
        assert got.p_starts[i] >= got.p_starts[i - 1] - 1e-3, f"phoneme {i} goes back in time"
    assert max(got.p_ends) <= duration + 0.05
    assert max(got.p_ends) >= duration - 0.3, f"phonemes end at {max(got.p_ends):.2f} s, audio lasts {duration:.2f} s"


def test_sse_without_timestamps_sends_none(client):
    got = collect_sse(client, "No timestamps, please.", "pcm_s16le", 16000)
    assert set(got.types) == {"chunk", "done"}, got.types
    assert_speech(got.samples("pcm_s16le"), 16000, "sse s16")


@pytest.mark.parametrize(("encoding", "rate"), [("pcm_s16le", 8000), ("pcm_mulaw", 8000), ("pcm_alaw", 16000),
                                                ("pcm_f32le", 24000)])
def test_sse_encodings(client, encoding, rate):
    got = collect_sse(client, "Every raw encoding streams over events.", encoding, rate, add_timestamps=True)
    samples = got.samples(encoding)
    assert_speech(samples, rate, f"sse {encoding} {rate}")
    assert_monotonic_words(got.words, got.starts, got.ends, len(samples) / rate, f"sse {encoding} {rate}")


def test_sse_wire_framing_ends_after_done(server):
    """On the wire: every event has one JSON `data:` with a `type`, and the body ends right after `done` (the SDK
    reads until the body ends, so a server that keeps the stream open hangs it)."""
    body = tts_body("Framing check, one two three.", raw_format("pcm_s16le", 16000), add_timestamps=True)
    t0 = time.monotonic()
    with httpx.stream("POST", f"{server.base_url}/tts/sse", json=body, timeout=30,
                      headers={**server.auth, "Accept": "text/event-stream"}) as r:
        assert r.status_code == 200, r.read()[:300]
        assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers.get("content-type")
        raw = r.read().decode()
        done_at = time.monotonic() - t0
    events = [e for e in raw.replace("\r\n", "\n").split("\n\n") if e.strip()]
    types = []
    for e in events:
        data_lines = [ln[5:].strip() for ln in e.split("\n") if ln.startswith("data:")]
        if not data_lines:
            assert all(ln.startswith(":") for ln in e.split("\n")), f"event without data: {e!r}"
            continue
        payload = json.loads("\n".join(data_lines))
        assert isinstance(payload, dict) and "type" in payload, payload
        types.append(payload["type"])
    assert types and types[-1] == "done", types
    assert done_at < 20, f"the stream took {done_at:.1f} s to end"
