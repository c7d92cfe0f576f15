"""Helpers shared by the API compatibility tests: decoding what the server sends (WAV, raw PCM, G.711, MP3, SSE,
WebSocket frames), judging it (speech-like, plausible duration, timestamps) and checking error bodies.

Everything here is written from the wire formats (cartesia-spec section 2), not from the server's code.
"""
from __future__ import annotations

import base64
import json
import re
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from websockets.sync.client import connect

VOICE = "en_US-joe-medium"
MODEL = "sonic-3"

BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1, "pcm_alaw": 1}
# WAVE format tag and bits per sample a reader expects for each encoding.
WAV_FORMAT = {"pcm_s16le": (1, 16), "pcm_f32le": (3, 32), "pcm_alaw": (6, 8), "pcm_mulaw": (7, 8)}


def raw_format(encoding: str = "pcm_s16le", sample_rate: int = 22050) -> dict[str, Any]:
    return {"container": "raw", "encoding": encoding, "sample_rate": sample_rate}


def tts_body(transcript: str, output_format: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A complete `/tts/bytes` (or `/tts/sse`) JSON body, as the SDK sends it."""
    body = {
        "model_id": MODEL,
        "transcript": transcript,
        "voice": VOICE,
        "output_format": output_format or raw_format(),
    }
    body.update(extra)
    return body


# ---------------------------------------------------------------------------------------------------------------
# Audio decoding


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes to int16-scale samples (the reference g711.c decoder)."""
    u = (~codes.astype(np.int32)) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84)


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 A-law bytes to int16-scale samples (the reference g711.c decoder)."""
    a = codes.astype(np.int32) ^ 0x55
    mantissa = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t)


def decode_pcm(data: bytes, encoding: str) -> np.ndarray:
    """Raw samples in `encoding` to float32 in [-1, 1]."""
    width = BYTES_PER_SAMPLE[encoding]
    assert len(data) % width == 0, f"{len(data)} bytes is not a whole number of {encoding} samples"
    if encoding == "pcm_s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if encoding == "pcm_f32le":
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    codes = np.frombuffer(data, dtype=np.uint8)
    ints = mulaw_decode(codes) if encoding == "pcm_mulaw" else alaw_decode(codes)
    return ints.astype(np.float32) / 32768.0


@dataclass
class Wav:
    format_tag: int
    channels: int
    sample_rate: int
    byte_rate: int
    block_align: int
    bits: int
    data_size_field: int
    data: bytes


def parse_wav(blob: bytes) -> Wav:
    """Parses a (possibly streamed) RIFF/WAVE file. The data chunk runs to the end of the body when its size is a
    streaming placeholder (0 or about 0xFFFFFFFF)."""
    assert len(blob) >= 44, f"a WAV needs at least a 44-byte header, got {len(blob)} bytes"
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE", f"not a RIFF/WAVE header: {blob[:16]!r}"
    pos, fmt = 12, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            assert size >= 16, f"fmt chunk of {size} bytes"
            fmt = struct.unpack("<HHIIHH", blob[body : body + 16])
            tag = fmt[0]
            if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                tag = struct.unpack("<H", blob[body + 24 : body + 26])[0]
                fmt = (tag, *fmt[1:])
            pos = body + size + (size & 1)
        elif cid == b"data":
            assert fmt is not None, "data chunk before the fmt chunk"
            rest = blob[body:]
            placeholder = size == 0 or size >= 0x7FFF0000
            if placeholder:
                data = rest
            else:
                assert size <= len(rest), f"data chunk says {size} bytes but only {len(rest)} follow"
                assert len(rest) - size <= 1, f"{len(rest) - size} stray bytes after the data chunk"
                data = rest[:size]
            return Wav(*fmt, data_size_field=size, data=data)
        else:
            pos = body + size + (size & 1)
    raise AssertionError("no data chunk in the WAV")


MP3_BITRATES = {
    1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],  # MPEG-1 layer III
    2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],  # MPEG-2 / 2.5 layer III
}
MP3_RATES = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}


@dataclass
class Mp3Info:
    frames: int
    sample_rate: int
    bitrates: list[int]
    duration: float
    audio_bytes: int


def parse_mp3(blob: bytes) -> Mp3Info:
    """Walks an MP3 stream frame by frame (every frame must start with a valid layer III sync header and the
    frames must tile the body), returning the frame count, sample rate, bit rates and duration."""
    pos = 0
    if blob[:3] == b"ID3":
        size = 0
        for b in blob[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos = 10 + size
    start = pos
    frames, rates, bitrates, samples = 0, set(), [], 0
    while pos + 4 <= len(blob):
        if blob[pos : pos + 3] == b"TAG" and len(blob) - pos == 128:
            break  # ID3v1 trailer
        h = struct.unpack(">I", blob[pos : pos + 4])[0]
        assert (h >> 21) & 0x7FF == 0x7FF, f"no MP3 frame sync at byte {pos} (frame {frames}): {blob[pos:pos + 4]!r}"
        version = (h >> 19) & 3
        layer = (h >> 17) & 3
        assert version != 1 and layer == 1, f"frame {frames} is not MPEG layer III (version {version}, layer {layer})"
        br_idx, sr_idx, padding = (h >> 12) & 0xF, (h >> 10) & 3, (h >> 9) & 1
        assert 0 < br_idx < 15 and sr_idx < 3, f"bad bit rate / sample rate index in frame {frames}"
        bitrate = MP3_BITRATES[1 if version == 3 else 2][br_idx] * 1000
        rate = MP3_RATES[version][sr_idx]
        per_frame = 1152 if version == 3 else 576
        length = (144 if version == 3 else 72) * bitrate // rate + padding
        frames += 1
        rates.add(rate)
        bitrates.append(bitrate)
        samples += per_frame
        pos += length
    assert pos == len(blob) or blob[pos : pos + 3] == b"TAG", (
        f"MP3 ends with a truncated frame: {len(blob) - pos} bytes short/over at byte {pos} of {len(blob)}"
    )
    assert frames > 0, "no MP3 frames"
    assert len(rates) == 1, f"MP3 frames disagree on the sample rate: {rates}"
    rate = rates.pop()
    return Mp3Info(frames, rate, bitrates, samples / rate, min(pos, len(blob)) - start)


# ---------------------------------------------------------------------------------------------------------------
# Judging audio


def frame_rms(samples: np.ndarray, rate: int, ms: int = 20) -> np.ndarray:
    n = max(1, rate * ms // 1000)
    usable = len(samples) // n * n
    frames = samples[:usable].reshape(-1, n).astype(np.float64)
    return np.sqrt((frames**2).mean(axis=1))


def assert_speech(samples: np.ndarray, rate: int, label: str = "") -> None:
    """The samples sound like speech: finite, in range, clearly audible, with near-silent pauses and no DC offset.
    A mis-decoded stream (wrong encoding, G.711 law, endianness or width) fails the silence or range checks."""
    assert len(samples) > rate // 4, f"{label}: only {len(samples)} samples"
    assert np.all(np.isfinite(samples)), f"{label}: NaN or infinite samples"
    peak = float(np.abs(samples).max())
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    frames = frame_rms(samples, rate)
    quietest = float(frames.min())
    loud = float(np.percentile(frames, 90))
    mean = float(samples.mean())
    assert peak <= 1.5, f"{label}: peak {peak:.3f} is out of range (mis-decoded?)"
    assert rms > 0.01 and peak > 0.1, f"{label}: audio is (nearly) silent: rms {rms:.4f}, peak {peak:.4f}"
    assert loud > 0.03, f"{label}: no loud frames (90th percentile frame rms {loud:.4f})"
    assert quietest < 0.005, f"{label}: no near-silent 20 ms frame (quietest rms {quietest:.4f}): mis-decoded?"
    assert abs(mean) < 0.02, f"{label}: DC offset {mean:.4f} (mis-decoded?)"


def assert_duration_close(actual: float, expected: float, label: str = "", low: float = 0.75, high: float = 1.3) -> None:
    assert expected * low <= actual <= expected * high, (
        f"{label}: {actual:.2f} s of audio, expected about {expected:.2f} s ({low}-{high}x): wrong sample rate or "
        f"truncated/padded audio?"
    )


# ---------------------------------------------------------------------------------------------------------------
# Words and timestamps

PUNCT = ".,!?;:\"'()[]{}…“”‘’—–-"


def norm_word(word: str) -> str:
    """A word as written, minus the punctuation around it ("today?" -> "today"; "$12.50" stays "$12.50")."""
    return word.strip(PUNCT)


def text_words(text: str) -> list[str]:
    return [w for w in (norm_word(t) for t in text.split()) if w]


def stamp_words(words: Iterable[str]) -> list[str]:
    return [w for w in (norm_word(t) for t in words) if w]


def assert_monotonic_words(words: list[str], starts: list[float], ends: list[float], duration: float, label: str = "",
                           end_tolerance: float = 0.3) -> None:
    """Word timestamps: parallel arrays, each word's start <= end, words in time order, the last word ending within
    `end_tolerance` of the end of the audio."""
    assert len(words) == len(starts) == len(ends), f"{label}: {len(words)} words, {len(starts)} starts, {len(ends)} ends"
    assert words, f"{label}: no word timestamps"
    eps = 1e-3
    for i, (s, e) in enumerate(zip(starts, ends)):
        assert 0 <= s <= e + eps, f"{label}: word {i} {words[i]!r} starts at {s} and ends at {e}"
        if i:
            assert s >= starts[i - 1] - eps and s >= ends[i - 1] - 0.05, (
                f"{label}: word {i} {words[i]!r} starts at {s:.3f}, before word {i - 1} {words[i - 1]!r} "
                f"({starts[i - 1]:.3f}-{ends[i - 1]:.3f})"
            )
    assert ends[-1] <= duration + 0.05, f"{label}: last word ends at {ends[-1]:.3f} s, after the audio ({duration:.3f} s)"
    assert ends[-1] >= duration - end_tolerance, (
        f"{label}: last word ends at {ends[-1]:.3f} s but the audio lasts {duration:.3f} s"
    )


# ---------------------------------------------------------------------------------------------------------------
# Streams


@dataclass
class Collected:
    """Everything one SSE stream or WebSocket context produced."""

    events: list[Any] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    words: list[str] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    phonemes: list[str] = field(default_factory=list)
    p_starts: list[float] = field(default_factory=list)
    p_ends: list[float] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)

    def add(self, ev: Any) -> None:
        """Adds an event: an SDK model or a plain dict."""
        get = (lambda k, d=None: ev.get(k, d)) if isinstance(ev, dict) else (lambda k, d=None: getattr(ev, k, d))
        kind = get("type")
        self.events.append(ev)
        self.types.append(kind)
        if kind == "chunk":
            data = get("data")
            assert isinstance(data, str), f"chunk without base64 data: {ev}"
            self.audio += base64.b64decode(data)
        elif kind == "timestamps":
            wt = get("word_timestamps")
            assert wt is not None, f"timestamps event without word_timestamps: {ev}"
            wget = (lambda k: wt[k]) if isinstance(wt, dict) else (lambda k: getattr(wt, k))
            self.words += list(wget("words"))
            self.starts += [float(x) for x in wget("start")]
            self.ends += [float(x) for x in wget("end")]
        elif kind == "phoneme_timestamps":
            pt = get("phoneme_timestamps")
            assert pt is not None, f"phoneme_timestamps event without phoneme_timestamps: {ev}"
            pget = (lambda k: pt[k]) if isinstance(pt, dict) else (lambda k: getattr(pt, k))
            self.phonemes += list(pget("phonemes"))
            self.p_starts += [float(x) for x in pget("start")]
            self.p_ends += [float(x) for x in pget("end")]
        elif kind == "error":
            self.errors.append(ev)

    def samples(self, encoding: str) -> np.ndarray:
        return decode_pcm(bytes(self.audio), encoding)

    def duration(self, encoding: str, rate: int) -> float:
        return len(self.audio) / BYTES_PER_SAMPLE[encoding] / rate


def as_dict(ev: Any) -> dict[str, Any]:
    if isinstance(ev, dict):
        return ev
    return ev.to_dict() if hasattr(ev, "to_dict") else dict(ev.__dict__)


# ---------------------------------------------------------------------------------------------------------------
# WebSocket


class RawSocket:
    """A raw WebSocket to /tts/websocket with the SDK's headers; messages are JSON dicts, with arrival times."""

    def __init__(self, server, **kw: Any) -> None:
        self.ws = connect(f"{server.ws_base_url}/tts/websocket", additional_headers=server.auth,
                          user_agent_header="cartesia-python/4.2.0", **kw)

    def send(self, msg: dict[str, Any] | str | bytes) -> None:
        self.ws.send(json.dumps(msg) if isinstance(msg, dict) else msg)

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None if nothing arrives within `timeout`."""
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        assert isinstance(raw, str), f"server sent a binary frame: {raw[:50]!r}"
        msg = json.loads(raw)
        assert isinstance(msg, dict), msg
        msg["_t"] = time.monotonic()
        return msg

    def until_done(self, context_ids: set[str], timeout: float = 30) -> dict[str, Collected]:
        """Reads until every context in `context_ids` has sent `done` or `error`."""
        out = {c: Collected() for c in context_ids}
        open_ = set(context_ids)
        deadline = time.monotonic() + timeout
        while open_:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            assert msg is not None, f"timed out waiting for {open_}; got so far {[o.types for o in out.values()]}"
            ctx = msg.get("context_id")
            assert ctx in out, f"message for an unknown context: {msg}"
            out[ctx].add(msg)
            if msg["type"] in ("done", "error"):
                open_.discard(ctx)
        return out

    def close(self) -> None:
        self.ws.close()


def gen(context_id: str, transcript: str, cont: bool = False, **kw: Any) -> dict[str, Any]:
    """A generation request exactly as the SDK's `WebSocketContext.send` builds it (raw s16 at 22050 Hz)."""
    msg = {"context_id": context_id, "model_id": MODEL, "transcript": transcript, "voice": VOICE,
           "output_format": raw_format("pcm_s16le", 22050), "continue": cont}
    msg.update(kw)
    return msg


# ---------------------------------------------------------------------------------------------------------------
# Errors

ERROR_FIELDS = ("error_code", "title", "message", "request_id")


def assert_cartesia_error(response: Any, status: int, error_code: str | None = None, label: str = "") -> dict[str, Any]:
    """An httpx response carries the Cartesia error JSON (spec 2.1) with `status`."""
    text = response.text if hasattr(response, "text") else ""
    where = f"{label}: {response.request.method} {response.request.url.path}" if hasattr(response, "request") else label
    assert response.status_code == status, f"{where}: status {response.status_code}, expected {status}; body {text[:400]!r}"
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError) as e:
        raise AssertionError(f"{where}: error body is not JSON: {text[:400]!r}") from e
    assert isinstance(body, dict), f"{where}: error body is not an object: {body!r}"
    missing = [k for k in ERROR_FIELDS if k not in body]
    assert not missing, f"{where}: error body lacks {missing}: {body}"
    assert isinstance(body["title"], str) and body["title"], f"{where}: empty title: {body}"
    assert isinstance(body["message"], str) and body["message"], f"{where}: empty message: {body}"
    assert body["error_code"] is None or isinstance(body["error_code"], str), f"{where}: bad error_code: {body}"
    rid = body["request_id"]
    assert isinstance(rid, str) and rid, f"{where}: empty request_id: {body}"
    try:
        uuid.UUID(rid)
    except ValueError as e:
        raise AssertionError(f"{where}: request_id {rid!r} is not a UUID (spec 2.1)") from e
    if error_code is not None:
        assert body["error_code"] == error_code, f"{where}: error_code {body['error_code']!r}, expected {error_code!r}: {body}"
    return body


def assert_error_event(ev: dict[str, Any], status: int | None = None, context_id: str | None = None,
                       error_code: str | None = None, label: str = "") -> None:
    """A WebSocket/SSE `error` event (spec 2.1): type, done, status_code, title, message, request_id."""
    assert ev.get("type") == "error", f"{label}: expected an error event, got {ev}"
    assert ev.get("done") is True, f"{label}: error event without done: true: {ev}"
    assert isinstance(ev.get("status_code"), int), f"{label}: error event without an int status_code: {ev}"
    for k in ("title", "message", "request_id"):
        assert isinstance(ev.get(k), str) and ev[k], f"{label}: error event without {k}: {ev}"
    if status is not None:
        assert ev["status_code"] == status, f"{label}: status_code {ev['status_code']}, expected {status}: {ev}"
    if context_id is not None:
        assert ev.get("context_id") == context_id, f"{label}: error event for context {ev.get('context_id')!r}, " \
                                                   f"expected {context_id!r}: {ev}"
    if error_code is not None:
        assert ev.get("error_code") == error_code, f"{label}: error_code {ev.get('error_code')!r}, expected {error_code!r}"


# ---------------------------------------------------------------------------------------------------------------
# Metrics

_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {name: value summed over label sets, and name{labels}: value of that series}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m and not line.startswith("#"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            if m.group(2):
                out[m.group(1) + m.group(2)] = float(m.group(3))
    return out


def poll(predicate, timeout: float, interval: float = 0.05):
    """Calls `predicate` until it returns a truthy value or `timeout` passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------------------
# Speech recognition (Whisper tiny.en, as tests/test_intelligibility.py loads it)


def transcribe(model: Any, samples_16k: np.ndarray) -> str:
    segments, _ = model.transcribe(samples_16k.astype(np.float32), language="en", beam_size=1, vad_filter=False)
    return " ".join(s.text for s in segments).strip()


def wer_words(text: str) -> str:
    text = text.lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text).split())
