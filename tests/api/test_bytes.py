"""`POST /tts/bytes` through the Cartesia SDK (`client.tts.generate`): every container, encoding and sample rate
gives well-formed, audible audio of a plausible length (spec 2.4.1, 2.4.2)."""
from __future__ import annotations

import io
import wave

import pytest

from apisupport import (
    BYTES_PER_SAMPLE,
    MODEL,
    VOICE,
    WAV_FORMAT,
    assert_duration_close,
    assert_speech,
    decode_pcm,
    parse_mp3,
    parse_wav,
    raw_format,
    tts_body,
)

TEXT = "Hello from Chorus, an open text to speech server that speaks clearly."


@pytest.fixture(scope="module")
def reference_duration(client) -> float:
    """How long TEXT lasts (s16 WAV at the voice's own rate), to judge every other format against."""
    body = client.tts.generate(model_id=MODEL, transcript=TEXT, voice=VOICE,
                               output_format={"container": "wav", "encoding": "pcm_s16le", "sample_rate": 22050}).read()
    wav = parse_wav(body)
    duration = len(wav.data) / 2 / 22050
    assert 1.5 <= duration <= 10, f"{TEXT!r} lasts {duration:.2f} s"
    return duration


WAV_CASES = [
    ("pcm_s16le", 44100),
    ("pcm_f32le", 24000),
    ("pcm_mulaw", 8000),
    ("pcm_alaw", 16000),
    ("pcm_s16le", 48000),
]
RAW_CASES = [
    ("pcm_s16le", 22050),
    ("pcm_f32le", 48000),
    ("pcm_mulaw", 16000),
    ("pcm_alaw", 8000),
    ("pcm_f32le", 44100),
]
MP3_CASES = [(44100, 128000), (24000, 64000), (8000, 32000), (48000, 192000)]


@pytest.mark.parametrize(("encoding", "rate"), WAV_CASES)
def test_wav(client, reference_duration, encoding, rate):
    fmt = {"container": "wav", "encoding": encoding, "sample_rate": rate}
    body = client.tts.generate(model_id=MODEL, transcript=TEXT, voice=VOICE, output_format=fmt).read()
    wav = parse_wav(body)
    tag, bits = WAV_FORMAT[encoding]
    label = f"wav {encoding} {rate}"
    assert (wav.format_tag, wav.bits, wav.channels, wav.sample_rate) == (tag, bits, 1, rate), (
        f"{label}: header says format {wav.format_tag}, {wav.bits} bits, {wav.channels} channels, {wav.sample_rate} Hz"
    )
    assert wav.block_align == bits // 8 and wav.byte_rate == rate * bits // 8, (
        f"{label}: block_align {wav.block_align}, byte_rate {wav.byte_rate}"
    )
    samples = decode_pcm(wav.data, encoding)
    assert_duration_close(len(samples) / rate, reference_duration, label)
    assert_speech(samples, rate, label)
    if encoding == "pcm_s16le":
        # A stock reader plays it.
        with wave.open(io.BytesIO(body)) as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (rate, 2, 1)
            assert len(w.readframes(10**9)) == len(wav.data)


@pytest.mark.parametrize(("encoding", "rate"), RAW_CASES)
def test_raw(client, reference_duration, encoding, rate):
    body = client.tts.generate(model_id=MODEL, transcript=TEXT, voice=VOICE, output_format=raw_format(encoding, rate)).read()
    label = f"raw {encoding} {rate}"
    assert body[:4] != b"RIFF", f"{label}: raw output carries a WAV header"
    assert len(body) % BYTES_PER_SAMPLE[encoding] == 0, f"{label}: {len(body)} bytes"
    samples = decode_pcm(body, encoding)
    assert_duration_close(len(samples) / rate, reference_duration, label)
    assert_speech(samples, rate, label)


@pytest.mark.parametrize(("rate", "bit_rate"), MP3_CASES)
def test_mp3(client, reference_duration, rate, bit_rate):
    fmt = {"container": "mp3", "sample_rate": rate, "bit_rate": bit_rate}
    body = client.tts.generate(model_id=MODEL, transcript=TEXT, voice=VOICE, output_format=fmt).read()
    label = f"mp3 {rate} {bit_rate}"
    info = parse_mp3(body)
    assert info.sample_rate == rate, f"{label}: frames at {info.sample_rate} Hz"
    # Encoder delay and padding add up to a couple of frames.
    assert_duration_close(info.duration, reference_duration, label, low=0.75, high=1.3)
    assert info.duration <= reference_duration * 1.3 + 0.1
    average = info.audio_bytes * 8 / info.duration
    assert 0.85 * bit_rate <= average <= 1.15 * bit_rate, f"{label}: {average:.0f} bit/s on average, asked {bit_rate}"


@pytest.mark.parametrize("model_id", ["sonic-3", "sonic-2", "sonic-latest", "chorus-piper", "sonic-3-2025-10-27"])
def test_model_ids_resolve(client, model_id):
    body = client.tts.generate(model_id=model_id, transcript="Model check.", voice=VOICE,
                               output_format=raw_format("pcm_s16le", 8000)).read()
    assert_speech(decode_pcm(body, "pcm_s16le"), 8000, model_id)


@pytest.mark.parametrize("voice", [VOICE, {"id": VOICE}, {"mode": "id", "id": VOICE}, {"id": VOICE, "extra": 1}],
                         ids=["string", "id-object", "mode-id", "extra-keys"])
def test_voice_specifier_forms(http, voice):
    r = http.post("/tts/bytes", json=tts_body("Voice check.", raw_format("pcm_s16le", 8000), voice=voice),
                  headers={"Accept": "audio/wav"})
    assert r.status_code == 200, f"voice {voice!r}: {r.status_code} {r.text[:300]}"
    assert_speech(decode_pcm(r.content, "pcm_s16le"), 8000, f"voice {voice!r}")


def test_any_accept_header_and_x_api_key(server, http):
    """The SDK sends `Accept: audio/wav` for every container; others send anything. `X-API-Key` works too."""
    import httpx

    body = tts_body("Accept check.", {"container": "mp3", "sample_rate": 22050, "bit_rate": 64000})
    for accept in ("audio/wav", "application/json", "*/*", "text/plain"):
        r = httpx.post(f"{server.base_url}/tts/bytes", json=body, timeout=30,
                       headers={"X-API-Key": server.api_key, "Accept": accept, "Cartesia-Version": "2024-06-10"})
        assert r.status_code == 200, f"Accept {accept}: {r.status_code} {r.text[:300]}"
        parse_mp3(r.content)


def test_generation_config_speed_changes_duration(client):
    text = "Please remember to bring your passport and your boarding pass to the gate."
    fmt = raw_format("pcm_s16le", 16000)

    def duration(**kw) -> float:
        return len(client.tts.generate(model_id=MODEL, transcript=text, voice=VOICE, output_format=fmt, **kw).read()) / 2 / 16000

    normal, fast = duration(), duration(generation_config={"speed": 1.5})
    assert fast < normal * 0.85, f"speed 1.5 gave {fast:.2f} s against {normal:.2f} s at 1.0"


def test_status_routes(server):
    """`GET /` and `GET /status` answer `{"ok": true, "version": ...}` without a key (spec 2.3)."""
    import httpx
    from cartesia import Cartesia

    for path in ("/", "/status"):
        r = httpx.get(f"{server.base_url}{path}", timeout=10)
        assert r.status_code == 200, f"{path}: {r.status_code}"
        body = r.json()
        assert body.get("ok") is True and isinstance(body.get("version"), str), f"{path}: {body}"
    status = Cartesia(api_key="anything", base_url=server.base_url, max_retries=0).get_status()
    assert status.ok is True
