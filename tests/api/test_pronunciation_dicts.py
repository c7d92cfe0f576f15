"""Pronunciation dictionaries (spec 2.6) through the SDK: create, use in a request (it changes what is said),
list, get, update, delete; and an IPA alias."""
from __future__ import annotations

import uuid

import pytest
from cartesia import NotFoundError

from apisupport import (
    MODEL,
    VOICE,
    Collected,
    assert_cartesia_error,
    assert_speech,
    decode_pcm,
    parse_wav,
    raw_format,
    transcribe,
)

TEXT = "Chorus is ready to serve you today."
WAV16 = {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000}


def speak(client, text: str, **kw):
    body = client.tts.generate(model_id=MODEL, transcript=text, voice=VOICE, output_format=WAV16, **kw).read()
    wav = parse_wav(body)
    samples = decode_pcm(wav.data, "pcm_s16le")
    assert_speech(samples, 16000, f"{text!r} {kw}")
    return samples


def assert_dict_shape(d) -> None:
    for f in ("id", "created_at", "items", "name", "owner_id", "pinned"):
        try:
            getattr(d, f)
        except AttributeError as e:
            raise AssertionError(f"pronunciation dict lacks the required field {f!r}") from e
    assert isinstance(d.pinned, bool) and isinstance(d.created_at, str) and d.created_at


def items_of(d) -> list[tuple[str, str]]:
    return [(i.text, i.alias) for i in d.items]


def test_dictionary_lifecycle(client, http, whisper):
    name = f"brand names {uuid.uuid4().hex[:6]}"
    d = client.pronunciation_dicts.create(name=name, items=[{"text": "Chorus", "alias": "Cornflakes"}])
    assert_dict_shape(d)
    assert d.name == name and items_of(d) == [("Chorus", "Cornflakes")], d
    try:
        # Using it changes what is said.
        with_dict = speak(client, TEXT, pronunciation_dict_id=d.id)
        without = speak(client, TEXT)
        heard_with, heard_without = transcribe(whisper, with_dict), transcribe(whisper, without)
        assert "corn" in heard_with.lower(), f"with the dictionary Whisper heard {heard_with!r}"
        assert "corn" not in heard_without.lower(), f"without the dictionary Whisper heard {heard_without!r}"

        # List (auto-paging to an empty page), the path without a trailing slash, a cursor past the end.
        ids = [x.id for x in client.pronunciation_dicts.list(limit=1)]
        assert d.id in ids and len(ids) == len(set(ids)), ids
        r = http.get("/pronunciation-dicts")
        assert r.status_code == 200 and d.id in [x["id"] for x in r.json()["data"]], r.text[:300]
        r = http.get("/pronunciation-dicts/", params={"starting_after": ids[-1]})
        assert r.status_code == 200 and r.json()["data"] == [], r.text[:300]

        got = client.pronunciation_dicts.retrieve(d.id)
        assert_dict_shape(got)
        assert (got.id, got.name, items_of(got)) == (d.id, name, [("Chorus", "Cornflakes")])

        # Update: `items` replaces the whole list; a much longer alias makes the sentence much longer.
        long_alias = "the quick brown fox that jumps over the lazy dog"
        updated = client.pronunciation_dicts.update(d.id, items=[{"text": "Chorus", "alias": long_alias}])
        assert items_of(updated) == [("Chorus", long_alias)], updated
        assert items_of(client.pronunciation_dicts.retrieve(d.id)) == [("Chorus", long_alias)]
        longer = speak(client, TEXT, pronunciation_dict_id=d.id)
        assert len(longer) / 16000 > len(with_dict) / 16000 + 1.0, (
            f"with the long alias the sentence lasts {len(longer) / 16000:.2f} s, with 'Cornflakes' "
            f"{len(with_dict) / 16000:.2f} s: the update did not take effect"
        )
        renamed = client.pronunciation_dicts.update(d.id, name=name + " v2")
        assert renamed.name == name + " v2" and items_of(renamed) == [("Chorus", long_alias)], renamed
    finally:
        client.pronunciation_dicts.delete(d.id)
    with pytest.raises(NotFoundError):
        client.pronunciation_dicts.retrieve(d.id)
    r = http.post("/tts/bytes", json={"model_id": MODEL, "transcript": TEXT, "voice": VOICE,
                                      "output_format": raw_format("pcm_s16le", 16000), "pronunciation_dict_id": d.id})
    assert_cartesia_error(r, 404, label="tts with a deleted dictionary")


def phonemes_of(client, text: str, **kw) -> str:
    got = Collected()
    for ev in client.tts.generate_sse(model_id=MODEL, transcript=text, voice=VOICE, add_phoneme_timestamps=True,
                                      output_format=raw_format("pcm_s16le", 16000), **kw):
        got.add(ev)
    assert not got.errors and got.types[-1] == "done", got.types
    assert_speech(got.samples("pcm_s16le"), 16000, f"{text!r} {kw}")
    return "".join(got.phonemes)


def test_ipa_alias(client):
    d = client.pronunciation_dicts.create(name="ipa", items=[{"text": "tomato", "alias": "/təmˈɑːtoʊ/"}])
    try:
        text = "I say tomato, you say tomato."
        speak(client, text, pronunciation_dict_id=d.id)  # the bytes request succeeds with audio
        plain, ipa = phonemes_of(client, text), phonemes_of(client, text, pronunciation_dict_id=d.id)
        assert "ɑ" not in plain, plain
        assert ipa != plain and ipa.count("ɑ") >= 2, (
            f"with the IPA alias the phonemes are {ipa!r}, without {plain!r}: the alias was not spoken"
        )
    finally:
        client.pronunciation_dicts.delete(d.id)
