"""TLS on the API port, the official JavaScript SDK over wss://, and a browser.

A second `chorus serve` runs with a certificate made at test time (openssl, from Debian: a CA and a leaf for
127.0.0.1), an API key and one CORS origin: the test backend's. Then:

- the JavaScript SDK 4.2 (npm) in Node streams a context over wss:// (the only scheme its TTS WebSocket uses), with
  permessage-deflate, and synthesizes with an access token it minted;
- headless Chromium (Debian's `chromium`) loads a page from the backend (another origin). The page gets an access
  token from the backend (which holds the API key), calls Chorus over HTTPS with the SDK (CORS preflight), plays a
  WebSocket stream from Chorus through Web Audio, and checks that an expired token is refused, over REST and at the
  WebSocket handshake. It reports to the backend, and the test judges the report.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apisupport import VOICE, assert_speech, decode_pcm
from conftest import API_KEY, free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"
SDK = JS / "node_modules" / "@cartesia" / "cartesia-js"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: run scripts/setup --dev", pytrace=False)
    return path


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    spki_sha256: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A test CA and a certificate for 127.0.0.1 and localhost signed by it, made now with openssl."""
    d = tmp_path_factory.mktemp("pki")
    openssl = need("openssl")

    def run(*args: str, stdin: bytes | None = None) -> bytes:
        p = subprocess.run([openssl, *args], cwd=d, input=stdin, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        return p.stdout

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.crt", "-days", "2", "-subj", "/CN=Chorus test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key", "-out",
        "tls.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt",
        "-days", "2", "-extfile", "ext.cnf")
    pub = run("x509", "-in", "tls.crt", "-pubkey", "-noout")
    der = run("pkey", "-pubin", "-outform", "der", stdin=pub)
    digest = run("dgst", "-sha256", "-binary", stdin=der)
    return Pki(d / "ca.crt", d / "tls.crt", d / "tls.key", base64.b64encode(digest).decode())


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    page_port = free_port()
    tmp = tmp_path_factory.mktemp("tls-server")
    server = start_server(tmp, API_KEY, ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key), "--cors-origin",
                                         f"http://127.0.0.1:{page_port}", "--capacity", "4"], ca=pki.ca)
    try:
        yield server, page_port
    finally:
        crashed = server.proc.poll()
        stop_server(server)
        assert crashed is None, f"the TLS server died:\n{server.log_tail()}"


def test_https_only_and_the_key_check_applies(tls_server, pki):
    server, _ = tls_server
    r = httpx.get(f"{server.base_url}/status", verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10)
    assert r.status_code == 200 and r.json()["ok"] is True
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/status", timeout=5)
    r = httpx.post(f"{server.base_url}/tts/bytes", json={}, verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10)
    assert r.status_code == 401, r.text


def test_the_javascript_sdk_streams_over_wss(tls_server, pki, tmp_path):
    server, _ = tls_server
    node = need("node")
    if not SDK.is_dir():
        pytest.fail(f"{SDK} is missing: run scripts/setup --dev", pytrace=False)
    out = tmp_path / "js.json"
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(pki.ca)}
    p = subprocess.run([node, str(JS / "wss_stream.cjs"), server.base_url, server.api_key, VOICE, str(out)],
                       cwd=JS, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    result = json.loads(out.read_text())
    assert result["url"].startswith(f"wss://127.0.0.1:{server.port}/tts/websocket"), result["url"]
    assert "permessage-deflate" in result["extensions"], result["extensions"]
    assert result["types"][-1] == "done" and "chunk" in result["types"], result["types"]
    assert result["words"] == "Hello from the JavaScript SDK, streaming over a secure socket.".split(), result["words"]
    assert_speech(decode_pcm(base64.b64decode(result["pcm_b64"]), "pcm_s16le"), 16000, "JS SDK over wss")
    assert result["token_wav_bytes"] > 16000, result["token_wav_bytes"]


class Backend:
    """The page's origin: serves the page and the SDK, mints tokens with the API key, collects the report."""

    def __init__(self, port: int, chorus: str, ca: Path) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.chorus, self.ca = chorus, ca
        self.report: dict | None = None
        self.done = threading.Event()
        self.tokens_minted = 0
        self.expired = self.mint(1)
        self.expired_at = time.monotonic() + 1

        @Request.application
        def app(request: Request) -> Response:
            path = request.path
            if path == "/page.html":
                return Response((JS / "page.html").read_bytes(), mimetype="text/html")
            if path.startswith("/sdk/"):
                f = (SDK / path[len("/sdk/"):]).resolve()
                if SDK.resolve() not in f.parents or not f.is_file():
                    return Response("not found", status=404)
                return Response(f.read_bytes(), mimetype="text/javascript")
            if path == "/token":
                return Response(json.dumps({"token": self.mint(60)}), mimetype="application/json")
            if path == "/expired-token":
                return Response(json.dumps({"token": self.expired}), mimetype="application/json")
            if path == "/result" and request.method == "POST":
                self.report = json.loads(request.get_data())
                self.done.set()
                return Response("{}", mimetype="application/json")
            return Response("not found", status=404)

        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def mint(self, seconds: int) -> str:
        r = httpx.post(f"{self.chorus}/access-token", json={"expires_in": seconds, "grants": {"tts": True}},
                       headers={"Authorization": f"Bearer {API_KEY}"}, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=10)
        assert r.status_code == 200, r.text
        self.tokens_minted += 1
        return r.json()["token"]

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def test_a_browser_page_from_another_origin_plays_a_stream_with_an_access_token(tls_server, pki, tmp_path):
    server, page_port = tls_server
    chromium = need("chromium")
    if not SDK.is_dir():
        pytest.fail(f"{SDK} is missing: run scripts/setup --dev", pytrace=False)
    backend = Backend(page_port, server.base_url, pki.ca)
    profile = tmp_path / "profile"
    log = open(tmp_path / "chromium.log", "wb")  # noqa: SIM115 (closed below)
    proc = None
    try:
        # The expired token must have expired before the page uses it.
        time.sleep(max(0.0, backend.expired_at - time.monotonic() + 0.2))
        query = urllib.parse.urlencode({"chorus": server.base_url, "voice": VOICE})
        proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", f"--user-data-dir={profile}",
             f"--ignore-certificate-errors-spki-list={pki.spki_sha256}", "--autoplay-policy=no-user-gesture-required",
             f"http://127.0.0.1:{page_port}/page.html?{query}"],
            stdout=log, stderr=subprocess.STDOUT)
        assert backend.done.wait(120), f"the page never reported; Chromium:\n{(tmp_path / 'chromium.log').read_text()[-3000:]}"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        backend.close()
    report = backend.report
    assert report is not None and "error" not in report, report
    assert report["steps"] == ["token", "rest", "websocket", "expired"], report
    # REST across origins with the token (preflighted: the SDK sends Authorization and its own headers).
    assert report["restBytes"] > 16000 and report["requestId"], report
    # The WebSocket stream (wss://; a browser cannot set headers on it: the SDK puts the token in the query),
    # scheduled for playback as it arrived.
    assert report["wsUrl"].startswith(f"wss://127.0.0.1:{server.port}/tts/websocket"), report["wsUrl"]
    assert report["wsSamples"] > 16000 and report["wsChunks"] >= 1, report
    assert report["wsRms"] > 0.02, report
    # An expired token is refused: a 401 the page could read (CORS), and no socket.
    assert report["expiredStatus"] == 401 and "expired" in report["expiredMessage"], report
    assert report["expiredWs"] == "refused", report
    assert backend.tokens_minted == 2  # the expired one and the page's: the page never held the key
