"""upgrade-registry: a registry of speakerid 0.1 (format 1, embeddings only) is refused with the way out,
and upgraded in place from the files it was enrolled from, or not at all; a registry enrolled with an
earlier GE2E is refused with the way out, and re-embedded from its stored audio."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import fixed_threshold
from speakerid.audio import load_audio, to_int16, write_wav
from speakerid.encoders import Ge2eEncoder
from speakerid.errors import RegistryError
from speakerid.registry import Registry
from speakerid.upgrade import upgrade_registry
from speakerid.voices import VoiceRegistry

# The schema speakerid 0.1 wrote (src/speakerid/registry.py at 9e6eed9).
V1_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE speakers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, updated TEXT NOT NULL)",
    """CREATE TABLE embeddings (id INTEGER PRIMARY KEY, speaker_id INTEGER NOT NULL REFERENCES speakers (id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL, source TEXT NOT NULL, seconds REAL NOT NULL, vector BLOB NOT NULL, created TEXT NOT NULL,
        UNIQUE (speaker_id, sha256))""",
)
NOW = "2026-01-01T00:00:00+00:00"


@pytest.fixture()
def v1(dsp20, tmp_path):
    """A format-1 registry of 2 speakers x 2 real recordings (5-s clips), and the folder they came from."""
    data = tmp_path / "data"
    db = sqlite3.connect(tmp_path / "old.db")
    for statement in V1_SCHEMA:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('format', ?)", (json.dumps("speakerid-registry/1"),))
    db.execute("INSERT INTO meta VALUES ('encoder', ?)", (json.dumps({"name": "ge2e/resemblyzer-0.1.4",
                                                                       "spec": {"kind": "ge2e"}, "dim": 4}),))
    db.execute("INSERT INTO meta VALUES ('threshold', ?)", (json.dumps({"value": 0.8}),))
    rng = np.random.default_rng(0)
    vectors = {}
    for speaker_id, folder in enumerate(sorted(p for p in dsp20.iterdir() if p.is_dir())[:2], start=1):
        db.execute("INSERT INTO speakers VALUES (?, ?, ?, ?)", (speaker_id, folder.name, NOW, NOW))
        (data / folder.name).mkdir(parents=True)
        for take in sorted(folder.glob("*.flac"))[:2]:
            clip = data / folder.name / f"{take.stem}.wav"
            write_wav(clip, load_audio(take)[: 5 * 16000])
            vector = rng.normal(size=4).astype("<f4")
            vectors[(folder.name, clip.name)] = vector
            db.execute("INSERT INTO embeddings (speaker_id, sha256, source, seconds, vector, created) VALUES (?, ?, ?, 5, ?, ?)",
                       (speaker_id, hashlib.sha256(clip.read_bytes()).hexdigest(), clip.name, vector.tobytes(), NOW))
    db.commit()
    db.close()
    return tmp_path / "old.db", data, vectors


def test_a_format_1_registry_is_refused_with_the_way_out(v1):
    path, _, _ = v1
    with pytest.raises(RegistryError, match=r"earlier speakerid .* upgrade it with `speakerid upgrade-registry"):
        Registry(path)


def test_upgrade_stores_the_audio_and_keeps_the_old_file(v1, tmp_path):
    path, data, vectors = v1
    before = path.read_bytes()
    result = upgrade_registry(path, [data], progress=False)
    assert (result.speakers, result.recordings, result.missing, result.removed) == (2, 4, [], [])
    assert Path(result.backup).read_bytes() == before  # the old registry, untouched
    registry = Registry(path)
    stored = registry.recordings()
    assert len(stored) == 4
    # format 1's GE2E heard recordings at another level: its embeddings are made again from the audio
    ge2e = Ge2eEncoder("cpu")
    assert (result.reembedded, result.encoder) == (4, ge2e.name) and registry.encoder_name == ge2e.name
    embeddings = registry.embeddings(ge2e.name)
    for record in stored:
        clip = data / record["speaker"] / record["source"]
        assert np.array_equal(registry.audio(record["id"]), to_int16(load_audio(clip)))
        np.testing.assert_allclose(embeddings[record["id"]], ge2e.embed(load_audio(clip)), atol=1e-4)  # audio kept as int16
    assert registry.scoring is None  # pairwise thresholds of format 1 do not carry over: calibrate again


def test_upgrade_never_half_upgrades(v1):
    path, data, _ = v1
    lost = sorted(data.rglob("*.wav"))[0]
    lost.unlink()
    before = path.read_bytes()
    with pytest.raises(RegistryError, match=r"1 enrolled file\(s\) .* were not found .* --drop-missing"):
        upgrade_registry(path, [data], progress=False)
    assert path.read_bytes() == before and not path.with_name(path.name + ".v1").exists()
    result = upgrade_registry(path, [data], drop_missing=True, progress=False)
    assert (result.recordings, result.missing) == (3, [(lost.parent.name, lost.name)])


def test_the_command_reports_what_it_left_out(v1):
    path, data, _ = v1
    sorted(data.rglob("*.wav"))[0].unlink()
    command = [sys.executable, "-m", "speakerid", "upgrade-registry", str(path), str(data), "-q"]
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "--drop-missing" in refused.stderr
    done = subprocess.run(command + ["--drop-missing"], capture_output=True, text=True)
    assert done.returncode == 3 and "left out (not found)" in done.stderr and "upgraded" in done.stdout


def test_a_registry_of_an_earlier_ge2e_is_refused_then_re_embedded_from_its_audio(dsp20, tmp_path):
    """As enrolled before GE2E heard speech at one level: the same registry with its base encoder under
    the earlier name, its embeddings those of that preprocessing (stand-ins: shuffled), and a scoring."""
    path = tmp_path / "voices.db"
    voices = VoiceRegistry(path)
    folders = sorted(p for p in dsp20.iterdir() if p.is_dir())[:2]
    for folder in folders:
        clips = []
        for take in sorted(folder.glob("*.flac"))[:2]:
            clips.append(tmp_path / folder.name / f"{take.stem}.wav")
            clips[-1].parent.mkdir(exist_ok=True)
            write_wav(clips[-1], load_audio(take)[: 5 * 16000])
        voices.enroll(folder.name, clips)
    voices.registry.set_scoring(fixed_threshold(voices, 0.8))
    current = voices.registry.embeddings(voices.encoder.name)
    voices.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE encoders SET name = 'ge2e/resemblyzer-0.1.4' WHERE role = 'base'")
    rows = db.execute("SELECT recording_id, vector FROM embeddings").fetchall()
    db.executemany("UPDATE embeddings SET vector = ? WHERE recording_id = ?", [(v, r) for (r, _), (_, v) in zip(rows, rows[1:] + rows[:1])])
    db.commit()
    db.close()

    with pytest.raises(RegistryError, match=r"enrolled with ge2e/resemblyzer-0\.1\.4, .* `speakerid upgrade-registry .*`, then calibrate again"):
        VoiceRegistry(path, create=False).encoders
    command = [sys.executable, "-m", "speakerid", "upgrade-registry", str(path), "-q"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "re-embedded 4 recordings" in done.stdout and "Calibrate again" in done.stdout
    upgraded = VoiceRegistry(path, create=False)
    assert upgraded.registry.scoring is None  # fitted on the earlier scores
    again = upgraded.registry.embeddings(upgraded.encoder.name)
    assert again.keys() == current.keys() and all(np.allclose(again[r], current[r], atol=1e-6) for r in current)
    assert upgraded.identify(sorted(folders[1].glob("*.flac"))[4]).ranking[0][0] == folders[1].name
    upgraded.close()
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 1 and "up to date" in refused.stderr
