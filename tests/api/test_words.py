"""Word timestamps name the transcript's tokens as written, across inline tags and WebSocket continuations, or the
normalized words on request; messages of one context meet at seams without merging words, and with
`max_buffer_delay_ms: 0` each is spoken as it arrives."""
from __future__ import annotations

import jiwer

from apisupport import MODEL, VOICE, Collected, RawSocket, assert_speech, gen, raw_format, transcribe, wer_words


def sse(client, transcript: str, **kw) -> Collected:
    out = Collected()
    for ev in client.tts.generate_sse(model_id=MODEL, transcript=transcript, voice=VOICE,
                                      output_format=raw_format("pcm_s16le", 16000), add_timestamps=True, **kw):
        out.add(ev)
    assert not out.errors, out.errors
    return out


def test_tokens_as_written_with_tags_attached(client):
    text = 'Hello, I love to <spell>1234</spell>. Wait <break time="300ms"/> — "really?" (yes)'
    got = sse(client, text)
    assert got.words == ["Hello,", "I", "love", "to", "<spell>1234</spell>.", "Wait", '<break time="300ms"/>', "—",
                         '"really?"', "(yes)"], got.words
    # The spelled digits take four letters' time; the break spans its silence.
    spelled = got.words.index("<spell>1234</spell>.")
    assert got.ends[spelled] - got.starts[spelled] > 0.8, (got.starts[spelled], got.ends[spelled])
    brk = got.words.index('<break time="300ms"/>')
    assert got.ends[brk] - got.starts[brk] >= 0.29, (got.starts[brk], got.ends[brk])


def test_normalized_timestamps_name_the_spoken_words(client):
    text = "It costs $12.50 today."
    written = sse(client, text)
    assert written.words == ["It", "costs", "$12.50", "today."]
    normalized = sse(client, text, use_normalized_timestamps=True)
    spoken = " ".join(normalized.words).lower()
    for w in ("twelve", "dollars", "fifty", "cents"):
        assert w in spoken, normalized.words
    assert "$" not in spoken, normalized.words
    assert normalized.starts == sorted(normalized.starts)


def test_continuations_join_tokens_as_sent(server):
    ws = RawSocket(server)
    try:
        # A word split across messages stays one word; the client's spaces are kept as sent.
        for i, part in enumerate(["Good mor", "ning, every", "one. Wel", "come aboard!"]):
            ws.send(gen("c1", part, cont=True, add_timestamps=True))
        ws.send(gen("c1", "", cont=False))
        got = ws.until_done({"c1"})["c1"]
    finally:
        ws.close()
    assert got.words == ["Good", "morning,", "everyone.", "Welcome", "aboard!"], got.words


def test_back_to_back_trimmed_messages_are_both_spoken(server, whisper):
    """As Pipecat sends sentences: trimmed, no space between them, arriving together, max_buffer_delay_ms 0."""
    first, second = "Hello there, how are you today?", "I would like to book a table for two people."
    ws = RawSocket(server)
    try:
        fmt = raw_format("pcm_s16le", 16000)
        ws.send(gen("b2b", first, cont=True, add_timestamps=True, max_buffer_delay_ms=0, output_format=fmt))
        ws.send(gen("b2b", second, cont=True, add_timestamps=True, max_buffer_delay_ms=0, output_format=fmt))
        ws.send(gen("b2b", "", cont=False, output_format=fmt))
        got = ws.until_done({"b2b"})["b2b"]
    finally:
        ws.close()
    assert got.words == first.split() + second.split(), got.words
    samples = got.samples("pcm_s16le")
    assert_speech(samples, 16000, "back to back")
    heard = transcribe(whisper, samples)
    missing = [w for w in wer_words(first + " " + second).split() if w not in wer_words(heard).split()]
    assert not missing and jiwer.wer(wer_words(first + " " + second), wer_words(heard)) <= 0.15, \
        f"Whisper heard {heard!r}, missing {missing}"


def test_zero_buffer_delay_speaks_each_message_as_it_arrives(server):
    """With max_buffer_delay_ms 0 a message without a sentence end is spoken at once, not held for more text."""
    ws = RawSocket(server)
    try:
        ws.send(gen("now", "One more thing", cont=True, max_buffer_delay_ms=0))
        first = None
        while first is None:
            msg = ws.recv(5)
            assert msg is not None, "nothing came for a message with max_buffer_delay_ms 0"
            if msg["type"] == "chunk":
                first = msg
        ws.send(gen("now", "", cont=False))
        ws.until_done({"now"})
    finally:
        ws.close()


def test_the_sdks_websocket_negotiates_permessage_deflate(client):
    """The Python SDK's `websockets` offers permessage-deflate; Chorus accepts it, and the stream works compressed."""
    from websockets.extensions.permessage_deflate import PerMessageDeflate

    with client.tts.websocket_connect() as conn:
        extensions = conn._connection.protocol.extensions
        assert any(isinstance(e, PerMessageDeflate) for e in extensions), extensions
        ctx = conn.context(model_id=MODEL, voice=VOICE, output_format=raw_format("pcm_s16le", 16000), timeout=30)
        ctx.push("Compressed both ways.")
        ctx.no_more_inputs()
        got = Collected()
        for ev in ctx.receive():
            got.add(ev)
    assert not got.errors and got.types[-1] == "done", got.types
    assert_speech(got.samples("pcm_s16le"), 16000, "deflate")
