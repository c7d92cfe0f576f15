"""Sixteen simultaneous SSE requests with sixteen different texts: each gets its own audio and timestamps, never
another request's, and the worker's load returns to zero."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from apisupport import (

    MODEL,
    VOICE,
    Collected,
    assert_monotonic_words,
    assert_speech,
    poll,
    raw_format,
    stamp_words,
    text_words,
)

COMPLETED = 'chorus_worker_jobs_total{outcome="completed"}'

TEXTS = [
    "Yes.",
    "Hello there, how can I help you today?",
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Please remember to bring your passport and your boarding pass to the gate.",
    "Could you send me the report before the meeting on Friday afternoon?",
    "Seven green parrots sat on the fence.",
    "My flight leaves from gate twelve at half past four, so I should hurry.",
    "Thank you very much.",
    "The weather tomorrow will be cloudy with a chance of light rain in the north, and sunny spells in the south.",
    "Bananas are yellow.",
    "Our quarterly results beat expectations, and the board approved a larger budget for research next year.",
    "Turn left at the second traffic light.",
    "Winter is coming early this year, say the farmers in the valley.",
    "A cup of tea, please, with milk and no sugar.",
    "The library will be closed on Monday for maintenance, but the reading room upstairs stays open all week long.",
    "Goodbye for now.",
]
ENC, RATE = "pcm_s16le", 16000


def test_sixteen_simultaneous_requests(client, server):
    assert len(set(TEXTS)) == 16
    before = server.metrics()
    barrier = threading.Barrier(len(TEXTS))

    def one(text: str) -> Collected:
        barrier.wait(timeout=30)
        got = Collected()
        for ev in client.tts.generate_sse(model_id=MODEL, transcript=text, voice=VOICE, add_timestamps=True,
                                          output_format=raw_format(ENC, RATE), context_id=f"ctx-{TEXTS.index(text)}"):
            got.add(ev)
        return got

    with ThreadPoolExecutor(len(TEXTS)) as pool:
        results = list(pool.map(one, TEXTS))

    per_word = []
    for i, (text, got) in enumerate(zip(TEXTS, results)):
        label = f"request {i} ({text[:30]!r})"
        assert not got.errors, f"{label}: {got.errors}"
        assert got.types[-1] == "done", f"{label}: {got.types}"
        assert all(getattr(e, "context_id", None) == f"ctx-{i}" for e in got.events), f"{label}: foreign context_id"
        assert stamp_words(got.words) == text_words(text), f"{label}: got the words {got.words}"
        samples = got.samples(ENC)
        duration = len(samples) / RATE
        assert_speech(samples, RATE, label)
        assert_monotonic_words(got.words, got.starts, got.ends, duration, label)
        per_word.append(duration / len(text_words(text)))
    # Durations follow each request's own text: seconds per word stay within a speech-like band.
    for i, spw in enumerate(per_word):
        assert 0.12 < spw < 1.2, f"request {i}: {spw:.2f} s per word for {TEXTS[i]!r}"

    def idle():
        m = server.metrics()
        return m if m.get("inferno_worker_load", 1) == 0 else None

    after = poll(idle, timeout=3)
    assert after, f"inferno_worker_load did not return to 0: {server.metrics()}"
    completed = after.get(COMPLETED, 0) - before.get(COMPLETED, 0)
    assert completed >= 16, f"chorus_jobs_completed rose by {completed}, expected at least 16"
