"""Voices (spec 2.5): list with cursor pagination, get, and the life of a preset voice (create with a speed, use,
rename, delete)."""
from __future__ import annotations

import uuid

import pytest
from cartesia import NotFoundError

from apisupport import MODEL, VOICE, assert_cartesia_error, assert_speech, decode_pcm, raw_format

REQUIRED_VOICE_FIELDS = ("id", "access", "created_at", "description", "is_owner", "language", "locales", "name",
                         "tagline", "visibility")


def assert_voice_shape(v) -> None:
    for f in REQUIRED_VOICE_FIELDS:
        try:
            getattr(v, f)
        except AttributeError as e:
            raise AssertionError(f"voice {getattr(v, 'id', '?')} lacks the required field {f!r}") from e
    assert v.access in ("private", "public") and v.visibility in ("owner", "all"), (v.access, v.visibility)
    assert isinstance(v.locales, list) and v.locales, f"voice {v.id}: locales {v.locales!r}"


def test_list_and_get(client, http):
    page = client.voices.list()
    ids = [v.id for v in page.data]
    assert VOICE in ids, ids
    for v in page.data:
        assert_voice_shape(v)
    # The SDK's auto-paging walks `starting_after` until a page comes back empty.
    all_ids = [v.id for v in client.voices.list(limit=1)]
    assert VOICE in all_ids and len(all_ids) == len(set(all_ids)), all_ids
    # Past the end: an empty page.
    r = http.get("/voices", params={"starting_after": all_ids[-1]})
    assert r.status_code == 200 and r.json()["data"] == [], f"a cursor past the end must give data: [], got {r.text[:300]}"
    assert "has_more" in r.json(), r.json()
    voice = client.voices.get(VOICE)
    assert voice.id == VOICE
    assert_voice_shape(voice)
    assert voice.language == "en", voice.language


def test_get_unknown_voice_is_404(client, http):
    with pytest.raises(NotFoundError):
        client.voices.get("no-such-voice")
    assert_cartesia_error(http.get("/voices/no-such-voice"), 404)


def duration_with(client, voice: str, text: str) -> float:
    audio = client.tts.generate(model_id=MODEL, transcript=text, voice=voice,
                                output_format=raw_format("pcm_s16le", 16000)).read()
    assert_speech(decode_pcm(audio, "pcm_s16le"), 16000, f"voice {voice}")
    return len(audio) / 2 / 16000


def test_preset_voice_lifecycle(client, http):
    name = f"Fast Joe {uuid.uuid4().hex[:6]}"
    r = http.post("/voices", json={"name": name, "base_voice_id": VOICE, "speed": 1.3, "description": "test preset"})
    assert r.status_code in (200, 201), f"POST /voices: {r.status_code} {r.text[:300]}"
    created = r.json()
    vid = created["id"]
    assert vid and vid != VOICE and created["name"] == name, created
    try:
        got = client.voices.get(vid)
        assert got.name == name
        assert_voice_shape(got)
        assert vid in [v.id for v in client.voices.list(limit=1)], "the new voice is not listed"

        text = "The museum opens at nine in the morning and closes at six in the evening."
        base, fast = duration_with(client, VOICE, text), duration_with(client, vid, text)
        assert fast < base * 0.88, f"the speed 1.3 preset lasts {fast:.2f} s, the base voice {base:.2f} s"

        renamed = client.voices.update(vid, name=name + " renamed")
        assert renamed.name == name + " renamed"
        assert client.voices.get(vid).name == name + " renamed"
    finally:
        client.voices.delete(vid)
    with pytest.raises(NotFoundError):
        client.voices.get(vid)
    r = http.post("/tts/bytes", json={"model_id": MODEL, "transcript": "Gone.", "voice": vid,
                                      "output_format": raw_format("pcm_s16le", 16000)})
    assert_cartesia_error(r, 404, label="tts with a deleted voice")
    assert_cartesia_error(http.delete(f"/voices/{vid}"), 404, label="second delete")
