"""Bad input on every route: the Cartesia error JSON (`error_code`, `title`, `message`, `request_id`) with the right
status (spec 2.1), WebSocket error events, authentication, and a client that hangs up mid-stream. After each, the
server keeps serving."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from cartesia import AuthenticationError, BadRequestError, Cartesia, NotFoundError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apisupport import (

    MODEL,
    VOICE,
    assert_cartesia_error,
    assert_error_event,
    assert_speech,
    RawSocket,
    gen,
    poll,
    raw_format,
    tts_body,
)

CANCELLED = 'chorus_worker_jobs_total{outcome="cancelled"}'

TTS_ROUTES = ["/tts/bytes", "/tts/sse"]
OK_FMT = raw_format("pcm_s16le", 16000)


def post_raw(http: httpx.Client, path: str, content: bytes | str, method: str = "POST") -> httpx.Response:
    return http.request(method, path, content=content, headers={"Content-Type": "application/json"})


# ---------------------------------------------------------------------------------------------------------------
# Malformed JSON (400) and wrong types (422)


JSON_ROUTES = [
    ("POST", "/tts/bytes"),
    ("POST", "/tts/sse"),
    ("POST", "/voices"),
    ("PATCH", f"/voices/{VOICE}"),
    ("POST", "/pronunciation-dicts/"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_malformed_json_is_400(http, still_serving, method, path):
    assert_cartesia_error(post_raw(http, path, b'{"model_id": "sonic-3", "transcript": ', method), 400,
                          label="truncated JSON")
    assert_cartesia_error(post_raw(http, path, b"this is not json", method), 400, label="not JSON")
    still_serving()


WRONG_TYPES = [
    ("POST", "/tts/bytes", {**tts_body("Hi.", OK_FMT), "model_id": 5}),
    ("POST", "/tts/bytes", {**tts_body("Hi.", OK_FMT), "transcript": ["not", "a", "string"]}),
    ("POST", "/tts/bytes", {**tts_body("Hi.", OK_FMT), "output_format": {"container": "raw", "encoding": "pcm_s16le",
                                                                        "sample_rate": "fast"}}),
    ("POST", "/tts/bytes", {"transcript": "Hi.", "voice": VOICE, "output_format": OK_FMT}),  # model_id missing
    ("POST", "/tts/sse", {**tts_body("Hi.", OK_FMT), "add_timestamps": "yes please"}),
    ("POST", "/tts/sse", {**tts_body("Hi.", OK_FMT), "voice": 42}),
    ("POST", "/voices", {"name": 5, "base_voice_id": VOICE}),
    ("PATCH", f"/voices/{VOICE}", {"name": 5}),
    ("POST", "/pronunciation-dicts/", {"name": "x", "items": [{"text": 1, "alias": 2}]}),
    ("POST", "/pronunciation-dicts/", {"name": ["x"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRONG_TYPES, ids=[f"{m} {p} {i}" for i, (m, p, _) in
                                                                        enumerate(WRONG_TYPES)])
def test_wrong_types_are_422(http, still_serving, method, path, body):
    assert_cartesia_error(http.request(method, path, json=body), 422, label=json.dumps(body)[:120])
    still_serving()


def test_wrong_types_on_dictionary_patch(client, http):
    d = client.pronunciation_dicts.create(name="patch target", items=[])
    try:
        assert_cartesia_error(post_raw(http, f"/pronunciation-dicts/{d.id}", b"{oops", "PATCH"), 400)
        assert_cartesia_error(http.patch(f"/pronunciation-dicts/{d.id}", json={"items": "not a list"}), 422)
    finally:
        client.pronunciation_dicts.delete(d.id)


# ---------------------------------------------------------------------------------------------------------------
# Unknown things


@pytest.mark.parametrize("path", TTS_ROUTES)
def test_unknown_voice_is_404(http, still_serving, path):
    assert_cartesia_error(http.post(path, json=tts_body("Hi.", OK_FMT, voice="no-such-voice")), 404)
    assert_cartesia_error(http.post(path, json=tts_body("Hi.", OK_FMT, voice={"id": "no-such-voice"})), 404)
    still_serving()


@pytest.mark.parametrize("path", TTS_ROUTES)
def test_unknown_model_is_400_model_not_found(http, still_serving, path):
    assert_cartesia_error(http.post(path, json=tts_body("Hi.", OK_FMT, model_id="sonic-99")), 400, "model_not_found")
    still_serving()


@pytest.mark.parametrize("path", TTS_ROUTES)
def test_unknown_dictionary_is_404(http, still_serving, path):
    assert_cartesia_error(http.post(path, json=tts_body("Hi.", OK_FMT, pronunciation_dict_id="no-such-dict")), 404)
    still_serving()


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/voices/no-such-voice"), ("PATCH", "/voices/no-such-voice"), ("DELETE", "/voices/no-such-voice"),
    ("GET", "/pronunciation-dicts/no-such-dict"), ("PATCH", "/pronunciation-dicts/no-such-dict"),
    ("DELETE", "/pronunciation-dicts/no-such-dict"),
])
def test_unknown_resources_are_404(http, method, path):
    kw = {"json": {"name": "x"}} if method == "PATCH" else {}
    assert_cartesia_error(http.request(method, path, **kw), 404)


def test_unknown_model_through_the_sdk(client):
    with pytest.raises(BadRequestError) as info:
        client.tts.generate(model_id="sonic-99", transcript="Hi.", voice=VOICE, output_format=OK_FMT)
    assert info.value.body.get("error_code") == "model_not_found", info.value.body
    with pytest.raises(NotFoundError):
        client.tts.generate(model_id=MODEL, transcript="Hi.", voice="no-such-voice", output_format=OK_FMT)


# ---------------------------------------------------------------------------------------------------------------
# Unsupported formats, too long text


BAD_FORMATS = [
    ("/tts/bytes", {"container": "raw", "encoding": "pcm_s24le", "sample_rate": 16000}),
    ("/tts/bytes", {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 11025}),
    ("/tts/bytes", {"container": "ogg", "encoding": "pcm_s16le", "sample_rate": 16000}),
    ("/tts/bytes", {"container": "mp3", "sample_rate": 44100, "bit_rate": 12345}),
    ("/tts/sse", {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000}),
    ("/tts/sse", {"container": "mp3", "sample_rate": 44100, "bit_rate": 128000}),
    ("/tts/sse", {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 11025}),
]


@pytest.mark.parametrize(("path", "fmt"), BAD_FORMATS, ids=[f"{p} {json.dumps(f)}" for p, f in BAD_FORMATS])
def test_unsupported_format_is_400(http, path, fmt):
    r = http.post(path, json=tts_body("Hi.", fmt))
    assert_cartesia_error(r, 400, label=json.dumps(fmt))


@pytest.mark.parametrize("path", TTS_ROUTES)
def test_100kb_transcript_is_400_text_too_long(http, still_serving, path):
    text = ("All work and no play makes Jack a dull boy. " * 2400)[:100_000]
    assert_cartesia_error(http.post(path, json=tts_body(text, OK_FMT)), 400, "text_too_long")
    still_serving()


@pytest.mark.parametrize("path", TTS_ROUTES)
def test_empty_transcript_is_400(http, path):
    assert_cartesia_error(http.post(path, json=tts_body("", OK_FMT)), 400)


# ---------------------------------------------------------------------------------------------------------------
# Authentication


AUTH_ROUTES = [
    ("POST", "/tts/bytes", tts_body("Hi.", OK_FMT)),
    ("POST", "/tts/sse", tts_body("Hi.", OK_FMT)),
    ("GET", "/voices", None),
    ("GET", f"/voices/{VOICE}", None),
    ("GET", "/pronunciation-dicts/", None),
    ("POST", "/pronunciation-dicts/", {"name": "x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), AUTH_ROUTES, ids=[f"{m} {p}" for m, p, _ in AUTH_ROUTES])
def test_missing_or_wrong_key_is_401(server, method, path, body):
    url = f"{server.base_url}{path}"
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": "wrong-key"}, {"Authorization": "Basic x"}):
        r = httpx.request(method, url, json=body, headers={"Cartesia-Version": "2026-08-14", **headers}, timeout=30)
        assert_cartesia_error(r, 401, label=f"headers {headers}")


def test_wrong_key_through_the_sdk(server):
    bad = Cartesia(api_key="wrong-key", base_url=server.base_url, max_retries=0)
    with pytest.raises(AuthenticationError):
        bad.tts.generate(model_id=MODEL, transcript="Hi.", voice=VOICE, output_format=OK_FMT)
    with pytest.raises(AuthenticationError):
        bad.voices.list()


def test_websocket_handshake_auth(server):
    url = f"{server.ws_base_url}/tts/websocket"
    for headers, query in (({}, ""), ({"Authorization": "Bearer wrong-key"}, ""), ({}, "?api_key=wrong-key")):
        with pytest.raises(InvalidStatus) as info:
            connect(url + query, additional_headers=headers, open_timeout=10).close()
        assert info.value.response.status_code == 401, (headers, query, info.value.response.status_code)
    # Browsers put the key in the query.
    for query in (f"?api_key={server.api_key}", f"?access_token={server.api_key}&cartesia_version=2026-08-14"):
        ws = connect(url + query, open_timeout=10)
        try:
            ws.send(json.dumps(gen("q", "Query key.")))
            types = []
            while not types or types[-1] not in ("done", "error"):
                types.append(json.loads(ws.recv(timeout=30))["type"])
            assert types[-1] == "done", (query, types)
        finally:
            ws.close()


# ---------------------------------------------------------------------------------------------------------------
# WebSocket: bad frames give an error event; the connection stays usable


def expect_error(sock: RawSocket, label: str, **kw) -> dict:
    msg = sock.recv(10)
    assert msg is not None, f"{label}: no error event within 10 s"
    assert_error_event(msg, label=label, **kw)
    return msg


def assert_socket_usable(sock: RawSocket, cid: str) -> None:
    sock.send(gen(cid, "The connection still works.", add_timestamps=True))
    got = sock.until_done({cid})[cid]
    assert not got.errors and got.types[-1] == "done", got.types
    assert_speech(got.samples("pcm_s16le"), 22050, "after bad frames")


def test_websocket_garbage_frames(server):
    sock = RawSocket(server)
    try:
        sock.send(b"\x00\x01\x02binary garbage")
        expect_error(sock, "binary frame")
        sock.send("this is not json {")
        expect_error(sock, "garbage text frame")
        sock.send("[1, 2, 3]")
        expect_error(sock, "JSON array")
        sock.send(json.dumps({"context_id": "typed", "model_id": MODEL, "transcript": 7, "voice": VOICE,
                              "output_format": raw_format("pcm_s16le", 22050)}))
        expect_error(sock, "transcript of the wrong type", context_id="typed")
        assert_socket_usable(sock, "after-garbage")
    finally:
        sock.close()


def test_websocket_bad_requests_fail_their_context_only(server):
    sock = RawSocket(server)
    try:
        sock.send(gen("bad-voice", "Hi.", voice="no-such-voice"))
        expect_error(sock, "unknown voice", context_id="bad-voice", status=404)
        sock.send(gen("bad-model", "Hi.", model_id="sonic-99"))
        expect_error(sock, "unknown model", context_id="bad-model", status=400, error_code="model_not_found")
        sock.send(gen("bad-format", "Hi.", output_format={"container": "wav", "encoding": "pcm_s16le",
                                                         "sample_rate": 16000}))
        expect_error(sock, "wav on the websocket", context_id="bad-format", status=400)
        sock.send(gen("bad-dict", "Hi.", pronunciation_dict_id="no-such-dict"))
        expect_error(sock, "unknown dictionary", context_id="bad-dict", status=404)
        sock.send(gen("too-long", "word " * 20_000))
        expect_error(sock, "100 kB transcript", context_id="too-long", status=400, error_code="text_too_long")
        assert_socket_usable(sock, "after-bad-requests")
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------------------------
# A client that hangs up mid-stream


def test_client_disconnect_cancels_the_job(server, still_serving):
    text = " ".join(["The museum opens at nine in the morning and closes at six in the evening."] * 40)
    before = server.metrics()
    assert before.get("inferno_worker_load", 0) == 0, f"load before the test: {before}"
    body = tts_body(text, {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 44100})
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", f"{server.base_url}/tts/bytes", json=body, headers=server.auth) as r:
            assert r.status_code == 200, r.read()[:300]
            # Keep the iterator: a dropped `iter_raw()` generator closes the response, and the client would be gone
            # already.
            chunks = r.iter_raw()
            first = next(chunks)
            assert first, "no first chunk"
            during = server.metrics()
            assert during.get("inferno_worker_load", 0) >= 1, f"no load while streaming: {during}"
        # Leaving the block closes the connection with most of the audio unread.
    t0 = time.monotonic()

    def settled():
        m = server.metrics()
        ok = m.get("inferno_worker_load", 1) == 0 and m.get(CANCELLED, 0) > before.get(
            CANCELLED, 0)
        return m if ok else None

    after = poll(settled, timeout=2.5)
    assert after, (
        f"2.5 s after the client hung up: load {server.metrics().get('inferno_worker_load')}, cancelled "
        f"{server.metrics().get(CANCELLED)} (was {before.get(CANCELLED)})"
    )
    assert time.monotonic() - t0 < 2.5
    still_serving()
