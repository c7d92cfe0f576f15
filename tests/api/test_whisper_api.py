"""Intelligibility through the API: Whisper (tiny.en, from a PyPI package, offline) understands a `/tts/bytes`
request rendered as 16 kHz WAV."""
from __future__ import annotations

import jiwer

from apisupport import MODEL, VOICE, assert_speech, decode_pcm, parse_wav, transcribe, wer_words

TEXT = "Please remember to bring your passport and your boarding pass to the gate."


def test_whisper_understands_the_api(client, whisper):
    body = client.tts.generate(model_id=MODEL, transcript=TEXT, voice=VOICE,
                               output_format={"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000}).read()
    wav = parse_wav(body)
    assert wav.sample_rate == 16000 and wav.bits == 16
    samples = decode_pcm(wav.data, "pcm_s16le")
    assert_speech(samples, 16000, "16 kHz wav")
    heard = transcribe(whisper, samples)
    error = jiwer.wer(wer_words(TEXT), wer_words(heard))
    assert error <= 0.2, f"said {TEXT!r}, Whisper heard {heard!r} (WER {error:.2f})"
