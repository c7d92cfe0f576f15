"""Ogg Opus and FLAC outputs (OpenAI `response_format`, and the Cartesia `/tts/bytes` containers Chorus adds),
decoded by independent decoders (Debian's ffmpeg, its own Opus decoder; sox for FLAC) and understood by Whisper."""
from __future__ import annotations

import shutil
import subprocess

import jiwer
import numpy as np
import pytest

from apisupport import MODEL, VOICE, assert_speech, transcribe, wer_words

TEXT = "Please remember to bring your passport and your boarding pass to the gate."


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run scripts/setup --dev", pytrace=False)
    return path


def ffmpeg_16k(blob: bytes, fmt: str) -> tuple[np.ndarray, str]:
    """Decodes with ffmpeg to 16 kHz mono; returns the samples and ffmpeg's description of the input stream."""
    proc = subprocess.run([tool("ffmpeg"), "-hide_banner", "-nostdin", "-f", fmt, "-i", "pipe:0", "-f", "s16le",
                           "-ac", "1", "-ar", "16000", "pipe:1"], input=blob, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    info = next((ln for ln in proc.stderr.decode(errors="replace").splitlines() if "Audio:" in ln), "")
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0, info


def sox_16k(blob: bytes) -> np.ndarray:
    proc = subprocess.run([tool("sox"), "-t", "flac", "-", "-t", "raw", "-e", "signed", "-b", "16", "-c", "1",
                           "-r", "16000", "-"], input=blob, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0


def assert_understood(whisper, samples: np.ndarray, label: str) -> None:
    assert_speech(samples, 16000, label)
    heard = transcribe(whisper, samples)
    error = jiwer.wer(wer_words(TEXT), wer_words(heard))
    assert error <= 0.2, f"{label}: Whisper heard {heard!r} (WER {error:.2f})"


def test_openai_opus_is_ogg_opus_that_ffmpeg_decodes_and_whisper_understands(openai_client, whisper):
    blob = openai_client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="opus").read()
    assert blob[:4] == b"OggS" and blob[28:36] == b"OpusHead", blob[:40]
    samples, info = ffmpeg_16k(blob, "ogg")
    assert "opus" in info and "mono" in info, info
    duration = len(samples) / 16000
    assert 2.5 < duration < 8, duration
    assert_understood(whisper, samples, "openai opus")


def test_openai_flac_decodes_with_sox_and_ffmpeg_and_whisper_understands(openai_client, whisper):
    blob = openai_client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="flac").read()
    assert blob[:4] == b"fLaC"
    by_sox = sox_16k(blob)
    by_ffmpeg, info = ffmpeg_16k(blob, "flac")
    assert "flac" in info and "24000 Hz" in info, info
    assert abs(len(by_sox) - len(by_ffmpeg)) < 160, (len(by_sox), len(by_ffmpeg))
    assert_understood(whisper, by_sox, "openai flac")


@pytest.mark.parametrize(("container", "rate", "fmt"), [("opus", 48000, "ogg"), ("opus", 22050, "ogg"),
                                                         ("flac", 44100, "flac")])
def test_cartesia_bytes_opus_and_flac(http, container, rate, fmt):
    body = {"model_id": MODEL, "transcript": "Hello from a compressed stream.", "voice": VOICE,
            "output_format": {"container": container, "sample_rate": rate}}
    r = http.post("/tts/bytes", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ("audio/ogg" if container == "opus" else "audio/flac")
    samples, info = ffmpeg_16k(r.content, fmt)
    assert container in info, info
    assert_speech(samples, 16000, f"{container} {rate}")


def test_raw_only_routes_refuse_opus(http):
    body = {"model_id": MODEL, "transcript": "Hi.", "voice": VOICE,
            "output_format": {"container": "opus", "sample_rate": 24000}}
    r = http.post("/tts/sse", json=body)
    assert r.status_code == 400 and "raw" in r.json()["message"], r.text
