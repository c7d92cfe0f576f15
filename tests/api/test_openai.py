"""The OpenAI speech endpoint (`POST /v1/audio/speech`) through the official OpenAI Python SDK."""
from __future__ import annotations

import openai
import pytest

from apisupport import (
    assert_duration_close,
    assert_speech,
    decode_pcm,
    parse_mp3,
    parse_wav,
)

TEXT = "Could you send me the report before the meeting on Friday afternoon?"


@pytest.fixture(scope="module")
def wav_duration(openai_client) -> float:
    body = openai_client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav").read()
    wav = parse_wav(body)
    assert wav.format_tag in (1, 3) and wav.channels == 1, wav
    samples = decode_pcm(wav.data, "pcm_s16le" if wav.format_tag == 1 else "pcm_f32le")
    assert_speech(samples, wav.sample_rate, "openai wav")
    duration = len(samples) / wav.sample_rate
    assert 1.5 < duration < 12, duration
    return duration


def test_wav(wav_duration):
    assert wav_duration > 0


def test_mp3_is_the_default(openai_client, wav_duration):
    for kw in ({}, {"response_format": "mp3"}):
        body = openai_client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, **kw).read()
        info = parse_mp3(body)
        assert_duration_close(info.duration, wav_duration, f"openai mp3 {kw}", low=0.75, high=1.35)


def test_pcm_is_24khz_s16(openai_client, wav_duration):
    """OpenAI's `pcm` is raw 24 kHz signed 16-bit little-endian mono."""
    body = openai_client.audio.speech.create(model="tts-1-hd", voice="nova", input=TEXT, response_format="pcm").read()
    assert body[:4] != b"RIFF", "pcm must be headerless"
    samples = decode_pcm(body, "pcm_s16le")
    assert_speech(samples, 24000, "openai pcm")
    assert_duration_close(len(samples) / 24000, wav_duration, "openai pcm at 24 kHz")


def test_streaming_response(openai_client, wav_duration):
    chunks = []
    with openai_client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format="pcm"
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes(4096):
            chunks.append(chunk)
    body = b"".join(chunks)
    samples = decode_pcm(body[: len(body) // 2 * 2], "pcm_s16le")
    assert_speech(samples, 24000, "openai streamed pcm")
    assert_duration_close(len(samples) / 24000, wav_duration, "openai streamed pcm")


def test_speed(openai_client, wav_duration):
    body = openai_client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="pcm",
                                             speed=1.5).read()
    duration = len(body) / 2 / 24000
    assert duration < wav_duration * 0.85, f"speed 1.5: {duration:.2f} s against {wav_duration:.2f} s"


def assert_openai_error(exc: openai.APIStatusError) -> None:
    body = exc.response.json()
    assert isinstance(body.get("error"), dict), f"not an OpenAI error body: {body}"
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    assert "code" in err and "param" in err, f"OpenAI errors carry code and param (may be null): {err}"


def test_bad_model_is_an_openai_error(openai_client):
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as info:
        openai_client.audio.speech.create(model="no-such-model", voice="alloy", input=TEXT)
    assert_openai_error(info.value)


def test_bad_format_and_empty_input_are_openai_errors(openai_client):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="ogg_vorbis")
    assert_openai_error(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.speech.create(model="tts-1", voice="alloy", input="")
    assert_openai_error(info.value)


def test_wrong_key_is_an_openai_401(server):
    c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="wrong-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as info:
        c.audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    assert_openai_error(info.value)


def test_bad_bodies_are_openai_errors(server, still_serving):
    import httpx

    url = f"{server.base_url}/v1/audio/speech"
    auth = {"Authorization": f"Bearer {server.api_key}"}
    cases = [
        (b'{"model": "tts-1", "input": ', (400,)),  # malformed JSON
        (b'{"model": "tts-1", "voice": "alloy", "input": 5}', (400, 422)),  # wrong type
        (b'{"model": "tts-1", "voice": "alloy"}', (400, 422)),  # input missing
    ]
    for content, statuses in cases:
        r = httpx.post(url, content=content, headers={**auth, "Content-Type": "application/json"}, timeout=30)
        assert r.status_code in statuses, f"{content!r}: {r.status_code} {r.text[:300]}"
        body = r.json()
        assert isinstance(body.get("error"), dict) and body["error"].get("message"), f"{content!r}: {body}"
    r = httpx.post(url, json={"model": "tts-1", "voice": "alloy", "input": "Hi."}, timeout=30)
    assert r.status_code == 401 and isinstance(r.json().get("error"), dict), f"no key: {r.status_code} {r.text[:300]}"
    still_serving()
