"""A WebSocket context through cluster mode: `chorus api` and `chorus worker` as separate processes over a real
nats-server. Continuations, a flush and the end travel to the context's worker on the bus; the client sees the same
protocol as with `chorus serve`."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from apisupport import MODEL, VOICE
from conftest import CHORUS, ROOT, free_port


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never became ready")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("nats-server") is None:
        pytest.fail("nats-server is not installed (scripts/setup --dev installs it)")
    logs: Path = tmp_path_factory.mktemp("cluster")
    nats, mon, api, api_m, worker_m = (free_port() for _ in range(5))
    url = f"nats://127.0.0.1:{nats}"
    procs = []

    def start(name: str, cmd: list[str]) -> None:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))

    try:
        start("nats", ["nats-server", "-a", "127.0.0.1", "-p", str(nats), "-m", str(mon)])
        wait_ready(f"http://127.0.0.1:{mon}/healthz")
        start("worker", [str(CHORUS), "worker", "--nats", url, "--model", VOICE, "--worker-id", "ws-test",
                         "--metrics-listen", f"127.0.0.1:{worker_m}"])
        start("api", [str(CHORUS), "api", "--nats", url, "--listen", f"127.0.0.1:{api}",
                      "--metrics-listen", f"127.0.0.1:{api_m}"])
        wait_ready(f"http://127.0.0.1:{worker_m}/ready")
        wait_ready(f"http://127.0.0.1:{api}/status")
        time.sleep(1.0)  # the API hears the worker's heartbeat
        yield f"ws://127.0.0.1:{api}/tts/websocket"
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()


def test_continue_flush_and_done_over_the_bus(cluster: str) -> None:
    fmt = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050}
    base = {"model_id": MODEL, "voice": VOICE, "output_format": fmt, "context_id": "c1", "add_timestamps": True}
    with connect(cluster) as ws:
        ws.send(json.dumps({**base, "transcript": "Hello there, this is ", "continue": True}))
        ws.send(json.dumps({**base, "transcript": "a test over the bus. ", "continue": True}))
        ws.send(json.dumps({**base, "transcript": "", "continue": True, "flush": True}))
        ws.send(json.dumps({**base, "transcript": "And after the flush, more words.", "continue": False}))
        words: list[str] = []
        flush_done: list[int] = []
        chunk_flush_ids: list[int] = []
        audio = 0
        while True:
            m = json.loads(ws.recv(timeout=30))
            assert m.get("context_id") == "c1", m
            if m["type"] == "chunk":
                audio += len(base64.b64decode(m["data"]))
                chunk_flush_ids.append(m["flush_id"])
            elif m["type"] == "timestamps":
                words += m["word_timestamps"]["words"]
            elif m["type"] == "flush_done":
                flush_done.append(m["flush_id"])
            elif m["type"] == "done":
                break
            else:
                raise AssertionError(f"unexpected message {m}")
    # Word timestamps name the tokens as written, punctuation attached (use_normalized_timestamps is not set).
    assert words == ["Hello", "there,", "this", "is", "a", "test", "over", "the", "bus.", "And", "after", "the",
                     "flush,", "more", "words."]
    assert flush_done == [1]
    assert chunk_flush_ids == sorted(chunk_flush_ids) and set(chunk_flush_ids) == {1, 2}
    assert 2.5 < audio / 44100 < 9.0, f"{audio / 44100:.2f} s of audio"
