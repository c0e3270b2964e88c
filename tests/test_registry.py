"""registry: the SQLite store (across threads and processes), and open-set identification and
verification of real dsp20 speakers with the GE2E encoder."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from speakerid.audio import load_audio, write_wav
from speakerid.calibration import calibrate
from speakerid.errors import RegistryError
from speakerid.registry import UNKNOWN, Registry, VoiceRegistry, verify

# The registry stores which encoder made its embeddings by name and spec only; the store's own
# tests enroll hand-made vectors under these two identities.
ENCODER_A = SimpleNamespace(name="test/a", spec={"kind": "test", "id": "a"}, dim=3)
ENCODER_B = SimpleNamespace(name="test/b", spec={"kind": "test", "id": "b"}, dim=3)


def sources(*names: str) -> list[tuple[str, str, float]]:
    return [(hashlib.sha256(n.encode()).hexdigest(), n, 1.5) for n in names]


def run_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- the store


def test_reference_is_the_normalised_mean_not_the_sum(tmp_path):
    registry = Registry(tmp_path / "r.db")
    vectors = np.array([[3, 0, 0], [0, 1, 0], [0, 0, 0.5]], dtype=np.float32)
    assert registry.add("alice", vectors, sources("a", "b", "c"), ENCODER_A) == 3
    names, references = registry.references()
    # mean (1, 1/3, 1/6) has norm sqrt(41)/6
    assert names == ["alice"]
    assert references[0] == pytest.approx(np.array([6, 2, 1]) / np.sqrt(41), abs=1e-6)
    assert np.linalg.norm(references[0]) == pytest.approx(1.0)
    assert np.linalg.norm(vectors.sum(axis=0)) == pytest.approx(np.sqrt(10.25))  # what a sum would have been


def test_enroll_list_rename_remove_and_reenroll(tmp_path):
    registry = Registry(tmp_path / "r.db")
    assert registry.add("alice", np.eye(3)[:2], sources("a1", "a2"), ENCODER_A) == 2
    assert registry.add("bob", np.eye(3)[2:], sources("b1"), ENCODER_A) == 1
    listed = registry.speakers()
    assert [(s["name"], s["embeddings"], s["seconds"]) for s in listed] == [("alice", 2, 3.0), ("bob", 1, 1.5)]
    created = listed[0]["created"]

    # a source already enrolled for alice is skipped; the new one is added
    assert registry.add("alice", np.eye(3)[[0, 2]], sources("a1", "a3"), ENCODER_A) == 1
    assert registry.enrolled_hashes("alice") == {h for h, _, _ in sources("a1", "a2", "a3")}
    # the same file may belong to another speaker's enrollment
    assert registry.add("bob", np.eye(3)[:1], sources("a1"), ENCODER_A) == 1

    registry.rename("alice", "carol")
    assert [s["name"] for s in registry.speakers()] == ["bob", "carol"]
    with pytest.raises(RegistryError, match="'bob' is already enrolled"):
        registry.rename("carol", "bob")
    with pytest.raises(RegistryError, match="no speaker 'alice'"):
        registry.rename("alice", "dave")
    with pytest.raises(RegistryError, match="answer for voices nobody enrolled"):
        registry.rename("carol", "Unknown")

    # re-enroll: replace drops carol's three embeddings for the one given
    assert registry.add("carol", np.array([[0, 1, 0]]), sources("c1"), ENCODER_A, replace=True) == 1
    carol = next(s for s in registry.speakers() if s["name"] == "carol")
    assert carol["embeddings"] == 1 and carol["created"] == created
    names, references = registry.references()
    assert names == ["bob", "carol"] and references[1] == pytest.approx([0, 1, 0])

    registry.remove("bob")
    with pytest.raises(RegistryError, match="no speaker 'bob'"):
        registry.remove("bob")
    assert [s["name"] for s in registry.speakers()] == ["carol"]
    # embeddings go with their speaker (foreign keys cascade)
    assert sqlite3.connect(tmp_path / "r.db").execute("SELECT COUNT(*) FROM embeddings").fetchone() == (1,)


def test_names_and_embeddings_are_checked(tmp_path):
    registry = Registry(tmp_path / "r.db")
    with pytest.raises(RegistryError, match="answer for voices nobody enrolled"):
        registry.add(UNKNOWN, np.eye(3)[:1], sources("x"), ENCODER_A)
    with pytest.raises(RegistryError, match="must not be empty"):
        registry.add("  ", np.eye(3)[:1], sources("x"), ENCODER_A)
    with pytest.raises(RegistryError, match="NaN"):
        registry.add("alice", np.full((1, 3), np.nan), sources("x"), ENCODER_A)
    with pytest.raises(RegistryError, match="nothing to enroll"):
        registry.add("alice", np.zeros((0, 3)), [], ENCODER_A)
    assert registry.speakers() == [] and registry.encoder_spec is None


def test_mixing_encoders_is_refused(tmp_path):
    registry = Registry(tmp_path / "r.db")
    registry.add("alice", np.eye(3)[:1], sources("a"), ENCODER_A)
    with pytest.raises(RegistryError, match="encoder test/a and cannot mix in test/b"):
        registry.add("bob", np.eye(3)[1:2], sources("b"), ENCODER_B)
    with pytest.raises(RegistryError, match="encoder test/a and cannot mix in test/b"):
        registry.bind_encoder(ENCODER_B)
    with pytest.raises(RegistryError, match="3-dimensional"):
        registry.add("bob", np.ones((1, 4)), sources("b"), ENCODER_A)
    assert [s["name"] for s in registry.speakers()] == ["alice"]
    assert registry.encoder_spec == ENCODER_A.spec


def test_opening_what_is_not_a_registry(tmp_path):
    with pytest.raises(RegistryError, match="no such registry"):
        Registry(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    with pytest.raises(RegistryError, match="not a speakerid registry"):
        Registry(tmp_path / "notes.txt")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    with pytest.raises(RegistryError, match="SQLite database but not a speakerid registry"):
        Registry(tmp_path / "other.db")
    assert [row[0] for row in other.execute("SELECT name FROM sqlite_master")] == ["t"]  # left untouched
    with pytest.raises(RegistryError, match="is a folder"):
        Registry(tmp_path)


WRITER = """
import sys, hashlib, numpy as np
from types import SimpleNamespace
from speakerid.registry import Registry
encoder = SimpleNamespace(name="test/a", spec={"kind": "test", "id": "a"}, dim=3)
registry = Registry(sys.argv[1])
prefix, count = sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
for i in range(count):
    name = f"{prefix}{i:03d}"
    registry.add(name, rng.normal(size=(2, 3)), [(hashlib.sha256(f"{name}/{k}".encode()).hexdigest(), f"{k}.wav", 2.0)
                                                  for k in range(2)], encoder)
if prefix == "p":
    registry.set_threshold({"value": 0.61, "far": 0.01})
print("done", count)
"""


def test_a_registry_written_by_one_process_is_read_by_another(tmp_path):
    writer = run_python(WRITER, str(tmp_path / "r.db"), "p", "3")
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    registry = Registry(tmp_path / "r.db", create=False)
    assert [(s["name"], s["embeddings"]) for s in registry.speakers()] == [("p000", 2), ("p001", 2), ("p002", 2)]
    rng = np.random.default_rng(0)
    expected = [rng.normal(size=(2, 3)) for _ in range(3)]
    names, references = registry.references()
    for vectors, got in zip(expected, references):
        mean = vectors.mean(axis=0)
        assert got == pytest.approx(mean / np.linalg.norm(mean), abs=1e-6)
    assert registry.threshold == {"value": 0.61, "far": 0.01}
    assert registry.encoder_spec == ENCODER_A.spec and registry.encoder_name == "test/a"
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)


READER = """
import sys, time
import numpy as np
from speakerid.registry import Registry
registry = Registry(sys.argv[1], create=False)
deadline, reads, seen = time.monotonic() + 60, 0, 0
while seen < int(sys.argv[2]) and time.monotonic() < deadline:  # until every writer's speakers are in
    names, references = registry.references()
    assert len(names) == len(references) and np.allclose(np.linalg.norm(references, axis=1), 1, atol=1e-5)
    seen = len(registry.speakers())
    reads += 1
print("done", seen, reads)
"""


def test_readers_and_writers_in_threads_and_processes_never_see_a_locked_database(tmp_path):
    path = tmp_path / "r.db"
    registry = Registry(path)
    registry.add("seed", np.eye(3)[:1], sources("seed"), ENCODER_A)
    # a second process writes 60 speakers and a third reads, while threads here read and write
    other_writer = run_python(WRITER, str(path), "p", "60")
    other_reader = run_python(READER, str(path), str(1 + 60 + 60))
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def read():
        reads = 0
        try:
            while writing.is_set() or reads == 0:
                names, references = registry.references()
                assert len(names) == len(references)
                assert np.allclose(np.linalg.norm(references, axis=1), 1, atol=1e-5)
                reads += 1
        except BaseException as err:  # handed to the test thread
            errors.append(err)

    def write():
        try:
            while not any(s["name"].startswith("p") for s in registry.speakers()):  # the other writer has begun
                time.sleep(0.01)
            rng = np.random.default_rng(1)
            for i in range(60):
                registry.add(f"t{i:03d}", rng.normal(size=(2, 3)), sources(f"t{i}a", f"t{i}b"), ENCODER_A)
        except BaseException as err:
            errors.append(err)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writer = threading.Thread(target=write)
    for thread in readers + [writer]:
        thread.start()
    writer.join(timeout=120)
    out, err = other_writer.communicate(timeout=120)
    writing.clear()
    for thread in readers:
        thread.join(timeout=60)
    reader_out, reader_err = other_reader.communicate(timeout=120)
    assert not errors, errors
    assert other_writer.returncode == 0 and out.strip() == "done 60", err
    assert other_reader.returncode == 0 and reader_out.startswith("done 121 "), reader_err
    names = [s["name"] for s in registry.speakers()]
    assert len(names) == 1 + 60 + 60 and names[0] == "p000" and names[-1] == "t059"


def test_readers_do_not_wait_for_a_writer_in_the_middle_of_a_transaction(tmp_path):
    registry = Registry(tmp_path / "r.db")
    registry.add("alice", np.eye(3)[:1], sources("a"), ENCODER_A)
    writer = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("DELETE FROM embeddings")
    seen: list = []
    reader = threading.Thread(target=lambda: seen.append(registry.references()[0]))
    reader.start()
    reader.join(timeout=10)  # in a rollback journal, the reader would wait out the 30-s busy timeout
    finished_while_writing = not reader.is_alive()
    writer.execute("ROLLBACK")
    reader.join()
    assert finished_while_writing and seen == [["alice"]]


# ---------------------------------------------------------------- open set and verification with GE2E

ENROLLED, HELD_OUT = 8, 4


def link(dest: Path, files: list[Path]) -> Path:
    for f in files:
        (dest / f.parent.name).mkdir(parents=True, exist_ok=True)
        (dest / f.parent.name / f.name).symlink_to(f)
    return dest


@pytest.fixture(scope="module")
def takes(dsp20, tmp_path_factory) -> dict[str, list[Path]]:
    """12 real dsp20 speakers x 5 takes, each cut to 8 s (seconds 2-10), short enough to embed quickly."""
    root = tmp_path_factory.mktemp("takes")
    out = {}
    for folder in sorted(p for p in dsp20.iterdir() if p.is_dir())[: ENROLLED + HELD_OUT]:
        (root / folder.name).mkdir()
        out[folder.name] = []
        for take in sorted(folder.glob("*.flac")):
            write_wav(root / folder.name / f"{take.stem}.wav", load_audio(take)[2 * 16000 : 10 * 16000])
            out[folder.name].append(root / folder.name / f"{take.stem}.wav")
    return out


@pytest.fixture(scope="module")
def open_set(takes, tmp_path_factory):
    """8 speakers enrolled from 3 takes each, after `calibrate` set the threshold on those 8 speakers' takes."""
    root = tmp_path_factory.mktemp("open_set")
    speakers = sorted(takes)
    enrolled, held_out = speakers[:ENROLLED], speakers[ENROLLED:]
    calibration = calibrate(root / "voices.db", link(root / "calibration", [f for s in enrolled for f in takes[s]]),
                            progress=False)
    voices = VoiceRegistry(root / "voices.db")
    results = voices.enroll_folder(link(root / "enroll", [f for s in enrolled for f in takes[s][:3]]), progress=False)
    yield SimpleNamespace(voices=voices, path=root / "voices.db", calibration=calibration, results=results,
                          enrolled=enrolled, held_out=held_out)
    voices.close()


def test_enroll_folder_enrolls_every_speaker_folder(open_set):
    assert [(r.speaker, r.added, r.embeddings, r.failed) for r in open_set.results] == [
        (s, 3, 3, []) for s in open_set.enrolled
    ]
    assert [(s["name"], s["embeddings"], s["seconds"]) for s in open_set.voices.speakers()] == [
        (s, 3, 24.0) for s in open_set.enrolled
    ]
    assert open_set.voices.registry.encoder_name.startswith("ge2e/")
    # enrolling the same folder again skips every file without embedding it
    again = open_set.voices.enroll_folder(Path(open_set.path).parent / "enroll", progress=False)
    assert [(r.added, len(r.skipped)) for r in again] == [(0, 3)] * ENROLLED


def test_identify_names_enrolled_speakers_from_their_other_takes(open_set, takes):
    answers = [(s, open_set.voices.identify(f, top_k=3)) for s in open_set.enrolled for f in takes[s][3:]]
    top1 = np.mean([a.ranking[0][0] == s for s, a in answers])
    accepted = np.mean([a.speaker == s and a.known for s, a in answers])
    print(f"\nGE2E, 8-s takes: top-1 {top1:.1%}, accepted {accepted:.1%} of {len(answers)} at threshold "
          f"{open_set.calibration.threshold:.3f} (EER {open_set.calibration.eer:.1%})")
    assert top1 >= 15 / 16
    assert accepted >= 14 / 16
    for _, answer in answers:
        assert answer.threshold == pytest.approx(open_set.calibration.threshold)
        assert answer.threshold_source == "calibrated"
        assert len(answer.ranking) == 3 and answer.score == answer.ranking[0][1]
        assert [v for _, v in answer.ranking] == sorted((v for _, v in answer.ranking), reverse=True)
        json.dumps(answer.to_dict())


def test_voices_nobody_enrolled_come_back_unknown(open_set, takes):
    answers = [open_set.voices.identify(f) for s in open_set.held_out for f in takes[s][:3]]
    rejected = np.mean([a.speaker == UNKNOWN and a.known is False for a in answers])
    print(f"\nGE2E, 8-s takes: {rejected:.1%} of {len(answers)} strangers' takes answered unknown")
    assert rejected >= 10 / 12
    # the ranking still names the closest enrolled voices
    assert all(a.ranking[0][0] in open_set.enrolled for a in answers)


def test_threshold_precedence(open_set, takes, tmp_path, monkeypatch):
    stranger = takes[open_set.held_out[0]][0]
    given = open_set.voices.identify(stranger, threshold=-1.0)
    assert (given.known, given.threshold_source, given.speaker) == (True, "given", given.ranking[0][0])
    assert open_set.voices.identify(stranger, threshold=1.01).speaker == UNKNOWN

    # an uncalibrated registry falls back on the encoder's default, and says so
    fresh = VoiceRegistry(tmp_path / "fresh.db")
    audio = load_audio(takes[open_set.enrolled[0]][0])
    result = fresh.enroll_audio("alice", audio, "alice.wav", hashlib.sha256(audio.tobytes()).hexdigest())
    assert (result.added, result.embeddings) == (1, 1)
    default = fresh.identify(takes[open_set.enrolled[0]][4])
    assert default.threshold_source == "default (uncalibrated)"
    assert default.threshold == fresh.encoder.default_threshold
    # with no threshold at all it still ranks, but cannot tell an enrolled voice from a stranger
    monkeypatch.setattr(fresh.encoder, "default_threshold", None)
    undecided = fresh.identify(stranger)
    assert (undecided.speaker, undecided.known, undecided.threshold, undecided.threshold_source) == (
        "alice", None, None, "none")
    fresh.close()


def test_verify_pairs(open_set, takes):
    a, b = open_set.enrolled[:2]
    same = open_set.voices.verify(takes[a][3], takes[a][4])
    different = open_set.voices.verify(takes[a][3], takes[b][3])
    assert same.same is True and different.same is False
    assert same.score > different.score and same.threshold_source == "calibrated"
    json.dumps(same.to_dict())
    # the module-level function: with the registry, its calibrated threshold; without, the encoder's default
    with_registry = verify(takes[a][3], takes[a][4], registry=open_set.path)
    assert with_registry.score == pytest.approx(same.score, abs=1e-5) and with_registry.threshold_source == "calibrated"
    alone = verify(load_audio(takes[a][3]), load_audio(takes[b][3]))
    assert alone.score == pytest.approx(different.score, abs=1e-5)
    assert alone.threshold_source == "default (uncalibrated)"


def test_enroll_reports_bad_files_and_skips_enrolled_ones(open_set, takes, tmp_path):
    voices = VoiceRegistry(tmp_path / "r.db")
    good = takes[open_set.enrolled[0]]
    (tmp_path / "notes.wav").write_text("not audio")
    write_wav(tmp_path / "blip.wav", np.zeros(1600, dtype=np.float32))
    result = voices.enroll("alice", [good[0], tmp_path / "missing.wav", tmp_path / "notes.wav", tmp_path / "blip.wav"])
    assert (result.added, result.embeddings, result.skipped) == (1, 1, [])
    reasons = dict(result.failed)
    assert reasons[str(tmp_path / "missing.wav")] == "no such file"
    assert "not a readable audio file" in reasons[str(tmp_path / "notes.wav")]
    assert "0.10 s long" in reasons[str(tmp_path / "blip.wav")]

    again = voices.enroll("alice", [good[0], good[1]])
    assert (again.added, again.skipped, again.embeddings) == (1, [str(good[0])], 2)
    replaced = voices.enroll("alice", [good[2]], replace=True)
    assert (replaced.added, replaced.embeddings) == (1, 1)
    # a file that fails does not wipe the speaker when replacing
    assert voices.enroll("alice", [tmp_path / "notes.wav"], replace=True).embeddings == 1
    voices.close()


def test_registries_refuse_an_encoder_they_were_not_enrolled_with(open_set, tmp_path):
    registry = Registry(tmp_path / "r.db")
    registry.add("alice", np.eye(3)[:1], sources("a"), ENCODER_A)
    ge2e = open_set.voices.encoder
    with pytest.raises(RegistryError, match=f"encoder test/a and cannot mix in {ge2e.name}"):
        registry.add("bob", np.ones((1, ge2e.dim)), sources("b"), ge2e)
    with pytest.raises(RegistryError, match="no enrolled speakers"):
        VoiceRegistry(tmp_path / "empty.db").identify(np.zeros(16000, dtype=np.float32))


def test_enroll_folder_reports_folders_it_cannot_enroll(takes, tmp_path):
    data = tmp_path / "data"
    (data / "empty").mkdir(parents=True)
    (data / "Unknown").mkdir()
    (data / "Unknown" / "take01.wav").symlink_to(next(iter(takes.values()))[0])
    voices = VoiceRegistry(tmp_path / "r.db")
    results = voices.enroll_folder(data, progress=False)
    assert [(r.speaker, r.added, [reason for _, reason in r.failed]) for r in results] == [
        ("Unknown", 0, ["'Unknown' is the answer for voices nobody enrolled and cannot be a speaker's name; choose another"]),
        ("empty", 0, ["speaker folder holds no audio files"]),
    ]
    assert voices.speakers() == []
    voices.close()
