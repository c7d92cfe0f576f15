"""`WS /tts/websocket` through the SDK's connection and contexts (and the raw `websockets` client where timing or
exact frames matter): multiplexed contexts, continuation, flush ids, cancel (spec 2.4.4)."""
from __future__ import annotations

import time
import uuid

import pytest

from apisupport import (
    MODEL,
    VOICE,
    Collected,
    RawSocket,
    gen,
    assert_duration_close,
    assert_monotonic_words,
    assert_speech,
    raw_format,
    stamp_words,
    text_words,
)

ENC, RATE = "pcm_s16le", 22050
FMT = raw_format(ENC, RATE)  # the format of apisupport.gen()
LONG = ("The museum opens at nine in the morning and closes at six in the evening, except on public holidays. "
        "Visitors are asked to leave their bags in the cloakroom and to keep their voices down in the galleries. "
        "Guided tours start every hour from the main hall and last about forty minutes.")
SHORT = "Good morning, everyone."


def receive_all(ctx) -> Collected:
    out = Collected()
    for ev in ctx.receive():
        out.add(ev)
    return out


@pytest.fixture
def ws_conn(client):
    with client.tts.websocket_connect() as conn:
        yield conn


def reference_duration(client, text: str) -> float:
    """How long `text` lasts when asked for on its own over `/tts/bytes`."""
    audio = client.tts.generate(model_id=MODEL, transcript=text, voice=VOICE, output_format=FMT).read()
    return len(audio) / 2 / RATE


def test_two_concurrent_contexts_get_their_own_audio(client, ws_conn):
    a = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, add_timestamps=True, timeout=30)
    b = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, add_timestamps=True, timeout=30)
    a.push(LONG, continue_=False)
    b.push(SHORT, continue_=False)
    got_a, got_b = receive_all(a), receive_all(b)
    for name, got, text in (("A", got_a, LONG), ("B", got_b, SHORT)):
        assert not got.errors, f"context {name}: {got.errors}"
        assert got.types[-1] == "done" and got.types.count("done") == 1, f"context {name}: {got.types}"
        samples = got.samples(ENC)
        duration = len(samples) / RATE
        assert_speech(samples, RATE, f"context {name}")
        assert stamp_words(got.words) == text_words(text), f"context {name} timestamps: {got.words}"
        assert_monotonic_words(got.words, got.starts, got.ends, duration, f"context {name}")
        # Each context's audio lasts as long as its own text does on its own.
        assert_duration_close(duration, reference_duration(client, text), f"context {name}", low=0.8, high=1.25)


def test_contexts_are_multiplexed_not_queued(server):
    """A short context sent right after a long one on the same socket finishes first (it is not queued behind)."""
    sock = RawSocket(server)
    try:
        sock.send(gen("long", LONG + " " + LONG))
        sock.send(gen("short", SHORT))
        order = []
        out = {"long": Collected(), "short": Collected()}
        while len(order) < 2:
            msg = sock.recv(30)
            assert msg is not None, f"timed out; done so far {order}"
            out[msg["context_id"]].add(msg)
            if msg["type"] in ("done", "error"):
                order.append(msg["context_id"])
        assert not out["long"].errors and not out["short"].errors, (out["long"].errors, out["short"].errors)
        assert order == ["short", "long"], f"contexts finished in the order {order}: the short one waited for the long one"
    finally:
        sock.close()


def test_continue_in_three_pieces(ws_conn):
    pieces = ["The quick brown fox ", "jumps over the lazy dog, ", "and then it runs into the forest."]
    whole = "".join(pieces)
    ctx = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, add_timestamps=True, timeout=30)
    for p in pieces:
        ctx.push(p)
    ctx.no_more_inputs()
    got = receive_all(ctx)
    assert not got.errors, got.errors
    assert got.types[-1] == "done" and got.types.count("done") == 1, got.types
    samples = got.samples(ENC)
    duration = len(samples) / RATE
    assert_speech(samples, RATE, "continued context")
    assert stamp_words(got.words) == text_words(whole), f"timestamps: {got.words}"
    assert_monotonic_words(got.words, got.starts, got.ends, duration, "continued context")
    assert duration >= 0.2 * len(text_words(whole)), f"{duration:.2f} s for {len(text_words(whole))} words"


def test_continue_joins_pieces_verbatim(ws_conn):
    """Transcripts are concatenated verbatim: a word split across two messages is one word."""
    pieces = ["Good morn", "ing every", "one, welcome aboard."]
    ctx = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, add_timestamps=True, timeout=30)
    for p in pieces:
        ctx.push(p)
    ctx.no_more_inputs()
    got = receive_all(ctx)
    assert not got.errors, got.errors
    assert stamp_words(got.words) == ["Good", "morning", "everyone", "welcome", "aboard"], got.words


def test_flush_ids(ws_conn):
    first, second = "Hello there, this is the first part.", "And this is the second part."
    ctx = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, add_timestamps=True, timeout=30)
    ctx.push(first)
    t_flush = time.monotonic()
    ctx.send(transcript="", voice=VOICE, flush=True)  # continue defaults to true: a manual flush, sent alone
    events = ctx.receive()
    before = Collected()
    for ev in events:
        before.add(ev)
        if ev.type in ("flush_done", "done", "error"):
            break
    waited = time.monotonic() - t_flush
    assert before.types[-1] == "flush_done", f"expected flush_done, got {before.types}"
    assert waited < 2.0, f"flush_done came {waited:.2f} s after the flush: the flush did not force generation"
    flush_done = before.events[-1]
    assert flush_done.flush_id == 1 and flush_done.flush_done is True and flush_done.done is False, flush_done
    assert "chunk" in before.types, f"no audio before flush_done: {before.types}"
    for ev in before.events[:-1]:
        if ev.type in ("chunk", "timestamps"):
            assert ev.flush_id == 1, f"{ev.type} before the first flush has flush_id {ev.flush_id}"
    assert stamp_words(before.words) == text_words(first), before.words

    ctx.push(second)
    ctx.no_more_inputs()
    after = Collected()
    for ev in events:
        after.add(ev)
    assert not after.errors, after.errors
    assert after.types[-1] == "done", after.types
    assert "chunk" in after.types, f"no audio after the flush: {after.types}"
    for ev in after.events:
        if ev.type in ("chunk", "timestamps"):
            assert ev.flush_id == 2, f"{ev.type} after the first flush has flush_id {ev.flush_id}"
    assert "flush_done" not in after.types or all(
        e.flush_id == 2 for e in after.events if e.type == "flush_done"), after.types
    assert stamp_words(after.words) == text_words(second), after.words
    assert_speech(after.samples(ENC), RATE, "audio after the flush")


def test_cancel_stops_a_context_and_spares_the_other(server):
    """After `{"context_id", "cancel": true}` nothing more arrives for that context, not even `done`; another
    context on the same socket still completes."""
    sock = RawSocket(server)
    try:
        sock.send(gen("doomed", " ".join([LONG] * 4)))
        first = sock.recv(30)
        assert first is not None and first["context_id"] == "doomed" and first["type"] == "chunk", first
        sock.send(gen("survivor", SHORT, add_timestamps=True))
        sock.send({"context_id": "doomed", "cancel": True})
        t_cancel = time.monotonic()
        doomed, survivor = Collected(), Collected()
        doomed.add(first)
        late = []
        survivor_done = None
        deadline = time.monotonic() + 30
        while True:
            if survivor_done is not None:
                wait = survivor_done + 1.0 - time.monotonic()  # then listen a further second
                if wait <= 0:
                    break
            else:
                wait = deadline - time.monotonic()
                assert wait > 0, f"survivor never finished: {survivor.types}"
            msg = sock.recv(wait)
            if msg is None:
                continue
            if msg.get("context_id") == "doomed":
                doomed.add(msg)
                if msg["_t"] - t_cancel > 0.3:
                    late.append(msg["type"])
            else:
                assert msg.get("context_id") == "survivor", msg
                survivor.add(msg)
                if msg["type"] in ("done", "error"):
                    survivor_done = time.monotonic()
        assert "done" not in doomed.types and "error" not in doomed.types, (
            f"the cancelled context got {doomed.types[-3:]}: nothing, not even done, may follow a cancel")
        assert not late, f"{len(late)} messages ({set(late)}) for the cancelled context came >0.3 s after the cancel"
        full = 4 * 25.0  # the cancelled text lasts well over a minute
        assert doomed.duration(ENC, RATE) < full / 2, f"{doomed.duration(ENC, RATE):.1f} s of cancelled audio arrived"
        assert not survivor.errors and survivor.types[-1] == "done", survivor.types
        assert stamp_words(survivor.words) == text_words(SHORT), survivor.words
        assert_speech(survivor.samples(ENC), RATE, "survivor")
    finally:
        sock.close()


def test_cancel_through_the_sdk(ws_conn):
    """The SDK's `ctx.cancel()`; the next context on the socket is unaffected (no stray `done` ends it early)."""
    doomed = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, timeout=30)
    doomed.push(" ".join([LONG] * 3), continue_=False)
    events = doomed.receive()
    first = next(events)
    assert first.type == "chunk", first
    doomed.cancel()
    other = ws_conn.context(model_id=MODEL, voice=VOICE, output_format=FMT, add_timestamps=True, timeout=30)
    other.push(SHORT, continue_=False)
    got = Collected()
    for ev in other.receive():
        got.add(ev)
    # Chunks of the cancelled context already in flight are handed over "for backwards compatibility", but a
    # `done` for it would end this loop early: the words and the done must be this context's.
    mine = [e for e in got.events if getattr(e, "context_id", None) == other._context_id]
    assert mine and mine[-1].type == "done", [(e.type, getattr(e, "context_id", None)) for e in got.events[-3:]]
    assert stamp_words(got.words) == text_words(SHORT), got.words


def test_timestamps_only_when_asked(server):
    sock = RawSocket(server)
    try:
        sock.send(gen("plain", SHORT))
        got = sock.until_done({"plain"})["plain"]
        assert set(got.types) == {"chunk", "done"}, got.types
        for ev in got.events:
            assert ev.get("status_code") and isinstance(ev["status_code"], int), ev
    finally:
        sock.close()


def test_closing_message_may_name_another_voice_and_model(server):
    """`no_more_inputs()` may carry the SDK's fallback voice, `sonic-latest` and the default format."""
    sock = RawSocket(server)
    try:
        sock.send(gen("ctx", "This context closes with a different voice. ", cont=True))
        sock.send({"context_id": "ctx", "model_id": "sonic-latest", "transcript": "",
                   "voice": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b",
                   "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100},
                   "continue": False})
        got = sock.until_done({"ctx"})["ctx"]
        assert not got.errors, got.errors
        assert got.types[-1] == "done"
        assert_speech(got.samples(ENC), RATE, "closed with another voice")
    finally:
        sock.close()


def test_many_contexts_on_one_socket(server):
    sock = RawSocket(server)
    texts = {f"c{i}-{uuid.uuid4().hex[:6]}": f"This is context number {i}, with {'many ' * i}words." for i in range(6)}
    try:
        for cid, text in texts.items():
            sock.send(gen(cid, text, add_timestamps=True))
        got = sock.until_done(set(texts))
        for cid, text in texts.items():
            assert not got[cid].errors, got[cid].errors
            assert stamp_words(got[cid].words) == text_words(text), (cid, got[cid].words)
    finally:
        sock.close()
