"""Speaker names: one rule, checked by the registry wherever a name is enrolled or given; names
stored before the rule keep working; the service and the page can remove any name."""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import live_server

from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.errors import RegistryError, SpeakerNameError
from speakerid.registry import NAME_MAX, Enrollment, Registry
from speakerid.server import create_app

ENCODER = SimpleNamespace(name="test/a", spec={"kind": "test"}, dim=3)

GOOD = ["alice", "15307110189", "Zoë O'Brien-Smith", "张伟", "Dr. J. (Jim) Smith, Jr.", "50% off? #1 & co",
        "नमस्ते", "می‌خواهم", "x" * NAME_MAX]
BAD = {  # name: what the refusal says (the character as Python writes it, or the broken part of the rule)
    "a/b": r"'/'",
    "../../etc": r"'/'",
    "back\\slash": r"'\\'",
    "tab\there": r"'\t'",
    "line\nbreak": r"'\n'",
    "nul\x00": r"'\x00'",
    "x" * 5000: "5000 characters long",
    "...": "no letter or digit",
    "-- --": "no letter or digit",
    "   ": "must not be empty",
    "UNKNOWN": "answer for voices nobody enrolled",
    "rtl\u202eoverride": r"'\u202e'",
}


def one(name: str) -> tuple[list[Enrollment]]:
    return ([Enrollment(hashlib.sha256(name.encode()).hexdigest(), "f.wav", np.zeros(1600, np.int16), {"test/a": np.eye(3)[0]})],)


def test_names_people_have_are_enrolled(tmp_path):
    registry = Registry(tmp_path / "r.db")
    for name in GOOD:
        registry.add(name, *one(name), ENCODER)
    registry.add("  padded  ", *one("padded"), ENCODER)  # surrounding spaces are dropped, as before
    assert sorted(s["name"] for s in registry.speakers()) == sorted(GOOD + ["padded"])


@pytest.mark.parametrize("name, says", list(BAD.items()), ids=range(len(BAD)))
def test_names_that_break_the_rule_are_refused_with_it(tmp_path, name, says):
    registry = Registry(tmp_path / "r.db")
    with pytest.raises(SpeakerNameError, match=re.escape(says)) as refused:
        registry.add(name, *one(name), ENCODER)
    assert len(str(refused.value)) < 300 and "\n" not in str(refused.value)  # one line, however long the name
    if "answer for voices" not in str(refused.value):
        assert f"1 to {NAME_MAX} characters" in str(refused.value)  # the rule itself, so the fix is clear
    registry.add("alice", *one("alice"), ENCODER)
    with pytest.raises(SpeakerNameError):
        registry.rename("alice", name)
    assert [s["name"] for s in registry.speakers()] == ["alice"]


def test_a_name_stored_before_the_rule_still_works(tmp_path):
    registry = Registry(tmp_path / "r.db")
    registry.add("placeholder", *one("p"), ENCODER)
    with sqlite3.connect(tmp_path / "r.db") as db:  # as an older speakerid wrote it
        db.execute("UPDATE speakers SET name = ? WHERE name = 'placeholder'", ("a/b\tc",))
    assert registry.references()[2] == ["a/b\tc"]
    registry.rename("a/b\tc", "abc")  # renamed away from, to a valid name
    registry.rename("abc", "abc")
    with sqlite3.connect(tmp_path / "r.db") as db:
        db.execute("UPDATE speakers SET name = ? WHERE name = 'abc'", ("../x",))
    registry.remove("../x")
    assert registry.speakers() == []
    with pytest.raises(RegistryError, match=r"`speakerid speakers list --registry .*r\.db` lists"):
        registry.remove("../x")


def wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(audio), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_the_service_refuses_bad_names_and_removes_any_name(dsp20, tmp_path):
    take = load_audio(sorted(p for p in dsp20.iterdir() if p.is_dir())[0] / "take01.flac")
    clip = {"files": ("clip.wav", wav(take[2 * SAMPLE_RATE : 8 * SAMPLE_RATE]))}
    with live_server(create_app(tmp_path / "voices.db")) as url, httpx.Client(base_url=url, timeout=120) as client:
        for name in ("a/b", "tab\there", "x" * 5000, "..."):
            response = client.post("/enroll", data={"name": name}, files=clip)
            assert response.status_code == 422 and response.json()["error"] == "invalid name", response.text
        for name in ("50% off? #1 & co", "Zoë O'Brien-Smith"):
            assert client.post("/enroll", data={"name": name}, files=clip).status_code == 200
        with sqlite3.connect(tmp_path / "voices.db") as db:  # a name an older speakerid let in
            db.execute("UPDATE speakers SET name = 'a/b' WHERE name = ?", ("Zoë O'Brien-Smith",))
        for name in ("50% off? #1 & co", "a/b"):  # percent-encoded as the page's encodeURIComponent does
            response = client.delete("/speakers/" + quote(name, safe=""))
            assert response.status_code == 200 and response.json() == {"removed": name}, response.text
        assert client.get("/speakers").json()["speakers"] == []
        assert "/speakers/{name}" in client.get("/openapi.json").json()["paths"]
