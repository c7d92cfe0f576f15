"""Drives Pipecat's `CartesiaTTSService` (pipecat-ai from PyPI, in its own venv: `.venv-agents`) against a Chorus
server, as a voice agent would: LLM text streamed into a minimal pipeline (the TTS service and a sink that records
every frame), the service's own sentence aggregation, word timestamps, interruption and reuse of its socket.

Usage: pipecat_driver.py URL API_KEY VOICE OUT_DIR. Writes OUT_DIR/result.json and the audio of each turn as raw
s16le 24 kHz (OUT_DIR/turn-N.pcm). Run by tests/api/test_agents.py, which judges the result.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from pipecat.frames.frames import (
    AggregatedTextProgressFrame,
    EndFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.workers.runner import WorkerRunner

RATE = 16000


class Sink(FrameProcessor):
    """Records the TTS service's output, turn by turn."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[bytearray] = [bytearray()]
        self.words: list[list[str]] = [[]]
        self.progress: list[list[dict]] = [[]]
        self.stopped = asyncio.Event()
        self.first_audio = asyncio.Event()
        self.last_audio_at = 0.0

    def next_turn(self) -> None:
        self.audio.append(bytearray())
        self.words.append([])
        self.progress.append([])
        self.stopped.clear()
        self.first_audio.clear()

    async def process_frame(self, frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio[-1].extend(frame.audio)
            self.last_audio_at = time.monotonic()
            self.first_audio.set()
        elif isinstance(frame, TTSTextFrame):
            self.words[-1].append(frame.text)
        elif isinstance(frame, AggregatedTextProgressFrame):
            self.progress[-1].append({"text": frame.text, "accumulated": frame.accumulated_text,
                                      "remaining": frame.remaining_text})
        elif isinstance(frame, TTSStoppedFrame):
            self.stopped.set()
        await self.push_frame(frame, direction)


async def llm_turn(worker: PipelineWorker, tokens: list[str]) -> None:
    """What an LLM service pushes for one response: its text tokens between the response markers."""
    await worker.queue_frames([LLMFullResponseStartFrame(), *[LLMTextFrame(t) for t in tokens],
                               LLMFullResponseEndFrame()])


async def settle(sink: Sink, quiet: float, limit: float) -> None:
    """Waits until no audio has come for `quiet` seconds (words are pushed as their audio plays)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and time.monotonic() - sink.last_audio_at < quiet:
        await asyncio.sleep(0.05)


async def main(url: str, api_key: str, voice: str, out: Path) -> None:
    tts = CartesiaTTSService(api_key=api_key, url=url, sample_rate=RATE,
                             settings=CartesiaTTSService.Settings(voice=voice, model="sonic-3"))
    sink = Sink()
    worker = PipelineWorker(Pipeline([tts, sink]), params=PipelineParams(audio_out_sample_rate=RATE),
                            idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    run = asyncio.create_task(runner.run(worker))
    result: dict = {"turns": []}

    # Turn 1: two sentences in one LLM chunk. The service splits and trims them, so they reach the server back to
    # back with no space between ("...today?" then "I would...").
    await llm_turn(worker, ["Hello there, how are you today? I would like to book a table for two people."])
    await asyncio.wait_for(sink.stopped.wait(), 60)
    await settle(sink, 1.5, 30)
    socket_before = id(tts._websocket)

    # Turn 2: a long answer, interrupted once audio flows (the user barged in).
    sink.next_turn()
    long = ("Our restaurant opens at noon and closes at eleven in the evening, every day of the week except "
            "Mondays, when the kitchen is closed for cleaning and the staff take their well earned rest. ")
    await llm_turn(worker, [long * 3])
    await asyncio.wait_for(sink.first_audio.wait(), 60)
    await asyncio.sleep(0.5)
    await worker.queue_frame(InterruptionFrame())
    interrupted_at = time.monotonic()
    interrupted_bytes = len(sink.audio[-1])
    await asyncio.sleep(2.0)
    after = len(sink.audio[-1]) - interrupted_bytes

    # Turn 3: the next answer on the same socket.
    sink.next_turn()
    await llm_turn(worker, ["Of course.", " We look forward to seeing you tonight."])
    await asyncio.wait_for(sink.stopped.wait(), 60)
    await settle(sink, 1.5, 30)
    socket_after = id(tts._websocket)
    socket_open = tts._websocket is not None and tts._websocket.state.name == "OPEN"

    await worker.queue_frame(EndFrame())
    await asyncio.wait_for(run, 30)

    for i, (audio, words, progress) in enumerate(zip(sink.audio, sink.words, sink.progress)):
        (out / f"turn-{i}.pcm").write_bytes(bytes(audio))
        result["turns"].append({"audio_bytes": len(audio), "words": words, "progress": progress})
    result["interruption"] = {"bytes_before": interrupted_bytes, "bytes_after_2s": after,
                              "long_audio_bytes_if_complete": None, "at": interrupted_at}
    result["socket_reused"] = socket_before == socket_after and socket_open
    result["sample_rate"] = RATE
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    url, key, voice, out = sys.argv[1:5]
    asyncio.run(main(url, key, voice, Path(out)))
