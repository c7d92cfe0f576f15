"""Drives LiveKit Agents' Cartesia plugin (`livekit-plugins-cartesia` from PyPI, in `.venv-agents`) against a
Chorus server: `cartesia.TTS(base_url=...).stream()` as an agent session uses it, with the plugin's own sentence
tokenizer, aligned transcript (word timestamps matched against the sent text), pooled WebSocket and interruption
(closing the stream).

Usage: livekit_driver.py BASE_URL API_KEY VOICE OUT_DIR. Writes OUT_DIR/result.json and each turn's audio as raw
s16le 24 kHz (OUT_DIR/turn-N.pcm). Run by tests/api/test_agents.py, which judges the result.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from livekit.agents import utils
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import cartesia

RATE = 16000


async def turn(tts: cartesia.TTS, text: str, stop_after_bytes: int | None = None) -> dict:
    stream = tts.stream()
    stream.push_text(text)
    stream.end_input()
    audio = bytearray()
    timed: list[dict] = []
    interrupted = None
    async for ev in stream:
        audio.extend(bytes(ev.frame.data))
        for t in ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, []) or []:
            timed.append({"text": str(t), "start": t.start_time, "end": t.end_time})
        if stop_after_bytes is not None and len(audio) >= stop_after_bytes and interrupted is None:
            # The user barged in: the agent closes the stream.
            interrupted = len(audio)
            await stream.aclose()
            break
    return {"audio": audio, "timed": timed, "interrupted_at_bytes": interrupted,
            "connection_reused": getattr(stream, "_connection_reused", None)}


async def main(base_url: str, api_key: str, voice: str, out: Path) -> None:
    result: dict = {"turns": []}
    async with utils.http_context.open():
        tts = cartesia.TTS(api_key=api_key, base_url=base_url, model="sonic-3", voice=voice, sample_rate=RATE,
                           language="en")
        turns = [
            await turn(tts, "Hello there, how are you today? I would like to book a table for two people."),
            await turn(tts, "Certainly! Which day would suit you, and at what time?"),
        ]
        long = ("Our restaurant opens at noon and closes at eleven in the evening, every day of the week except "
                "Mondays, when the kitchen is closed for cleaning and the staff take a well earned rest. ") * 3
        started = time.monotonic()
        turns.append(await turn(tts, long, stop_after_bytes=RATE * 2))  # about one second of audio, then stop
        result["interrupt_seconds"] = time.monotonic() - started
        turns.append(await turn(tts, "Of course. We look forward to seeing you tonight."))
        await tts.aclose()
    for i, t in enumerate(turns):
        (out / f"turn-{i}.pcm").write_bytes(bytes(t.pop("audio")))
        result["turns"].append(t)
    result["sample_rate"] = RATE
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    base, key, voice, out = sys.argv[1:5]
    asyncio.run(main(base, key, voice, Path(out)))
