"""registry: the SQLite store (across threads and processes): speakers, enrollment audio, encoders,
embeddings and references, the generation counter, and the refusal of what is not a current registry."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from speakerid.errors import RegistryError
from speakerid.registry import UNKNOWN, Enrollment, Registry

# The store records which encoder made its embeddings by name and spec only; its tests enroll
# hand-made vectors under these identities, with a little real-looking audio as the evidence.
ENCODER_A = SimpleNamespace(name="test/a", spec={"kind": "test", "id": "a"}, dim=3)
ENCODER_B = SimpleNamespace(name="test/b", spec={"kind": "test", "id": "b"}, dim=3)


def items(vectors, *names: str, encoder: str = "test/a") -> list[Enrollment]:
    rng = np.random.default_rng(len(names))
    return [Enrollment(hashlib.sha256(n.encode()).hexdigest(), n, rng.integers(-3000, 3000, 24000).astype(np.int16),
                       {encoder: np.asarray(v, dtype=np.float32)}) for n, v in zip(names, vectors)]


def references(registry: Registry) -> tuple[list[str], np.ndarray]:
    """Names and base-encoder references of every speaker, by name."""
    _, _, names, matrices, _ = registry.references()
    order = np.argsort(names)
    return [names[i] for i in order], matrices["test/a"][order]


def run_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_reference_is_the_normalised_mean_not_the_sum(tmp_path):
    registry = Registry(tmp_path / "r.db")
    vectors = np.array([[3, 0, 0], [0, 1, 0], [0, 0, 0.5]], dtype=np.float32)
    assert registry.add("alice", items(vectors, "a", "b", "c"), ENCODER_A) == 3
    names, refs = references(registry)
    # mean (1, 1/3, 1/6) has norm sqrt(41)/6
    assert names == ["alice"]
    assert refs[0] == pytest.approx(np.array([6, 2, 1]) / np.sqrt(41), abs=1e-6)
    assert np.linalg.norm(vectors.sum(axis=0)) == pytest.approx(np.sqrt(10.25))  # what a sum would have been


def test_the_registry_keeps_the_enrollment_audio_losslessly(tmp_path):
    registry = Registry(tmp_path / "r.db")
    enrolled = items(np.eye(3)[:2], "a1", "a2")
    registry.add("alice", enrolled, ENCODER_A)
    stored = registry.recordings()
    assert [(r["speaker"], r["source"], r["seconds"]) for r in stored] == [("alice", "a1", 1.5), ("alice", "a2", 1.5)]
    for record, item in zip(stored, enrolled):
        assert np.array_equal(registry.audio(record["id"]), item.audio)
    embeddings = registry.embeddings("test/a")
    assert sorted(embeddings) == [r["id"] for r in stored]
    assert np.stack([embeddings[r["id"]] for r in stored]) == pytest.approx(np.eye(3)[:2])
    # FLAC: smaller than the raw samples
    size = sqlite3.connect(tmp_path / "r.db").execute("SELECT SUM(LENGTH(audio)) FROM recordings").fetchone()[0]
    assert size < 2 * 2 * 24000


def test_enroll_list_rename_remove_and_reenroll(tmp_path):
    registry = Registry(tmp_path / "r.db")
    assert registry.add("alice", items(np.eye(3)[:2], "a1", "a2"), ENCODER_A) == 2
    assert registry.add("bob", items(np.eye(3)[2:], "b1"), ENCODER_A) == 1
    listed = registry.speakers()
    assert [(s["name"], s["recordings"], s["seconds"]) for s in listed] == [("alice", 2, 3.0), ("bob", 1, 1.5)]
    created = listed[0]["created"]

    # a source already enrolled for alice is skipped; the new one is added
    assert registry.add("alice", items(np.eye(3)[[0, 2]], "a1", "a3"), ENCODER_A) == 1
    assert registry.enrolled_hashes("alice") == {hashlib.sha256(n.encode()).hexdigest() for n in ("a1", "a2", "a3")}
    assert registry.recording_count("alice") == 3 and registry.recording_count("nobody") == 0
    # the same file may belong to another speaker's enrollment
    assert registry.add("bob", items(np.eye(3)[:1], "a1"), ENCODER_A) == 1

    registry.rename("alice", "carol")
    assert [s["name"] for s in registry.speakers()] == ["bob", "carol"]
    with pytest.raises(RegistryError, match="'bob' is already enrolled"):
        registry.rename("carol", "bob")
    with pytest.raises(RegistryError, match="no speaker 'alice'"):
        registry.rename("alice", "dave")
    with pytest.raises(RegistryError, match="answer for voices nobody enrolled"):
        registry.rename("carol", "Unknown")

    # re-enroll: replace drops carol's three recordings for the one given
    assert registry.add("carol", items([[0, 1, 0]], "c1"), ENCODER_A, replace=True) == 1
    carol = next(s for s in registry.speakers() if s["name"] == "carol")
    assert carol["recordings"] == 1 and carol["created"] == created
    names, refs = references(registry)
    assert names == ["bob", "carol"] and refs[1] == pytest.approx([0, 1, 0])

    registry.remove("bob")
    with pytest.raises(RegistryError, match="no speaker 'bob'"):
        registry.remove("bob")
    assert [s["name"] for s in registry.speakers()] == ["carol"]
    # recordings, their audio and embeddings go with their speaker (foreign keys cascade)
    db = sqlite3.connect(tmp_path / "r.db")
    assert [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("recordings", "embeddings", "refs")] == [1, 1, 1]


def test_names_and_embeddings_are_checked(tmp_path):
    registry = Registry(tmp_path / "r.db")
    with pytest.raises(RegistryError, match="answer for voices nobody enrolled"):
        registry.add(UNKNOWN, items(np.eye(3)[:1], "x"), ENCODER_A)
    with pytest.raises(RegistryError, match="must not be empty"):
        registry.add("  ", items(np.eye(3)[:1], "x"), ENCODER_A)
    with pytest.raises(RegistryError, match="NaN"):
        registry.add("alice", items(np.full((1, 3), np.nan), "x"), ENCODER_A)
    with pytest.raises(RegistryError, match="nothing to enroll"):
        registry.add("alice", [], ENCODER_A)
    with pytest.raises(RegistryError, match="3-dimensional"):
        registry.add("alice", items(np.ones((1, 4)), "x"), ENCODER_A)
    assert registry.speakers() == []


def test_mixing_encoders_is_refused(tmp_path):
    registry = Registry(tmp_path / "r.db")
    registry.add("alice", items(np.eye(3)[:1], "a"), ENCODER_A)
    with pytest.raises(RegistryError, match="encoder test/a and cannot mix in test/b"):
        registry.add("bob", items(np.eye(3)[1:2], "b", encoder="test/b"), ENCODER_B)
    with pytest.raises(RegistryError, match="encoder test/a and cannot mix in test/b"):
        registry.bind_encoder(ENCODER_B)
    with pytest.raises(RegistryError, match="encoders changed while enrolling"):
        registry.add("bob", items(np.eye(3)[1:2], "b", encoder="test/b"), ENCODER_A)
    assert [s["name"] for s in registry.speakers()] == ["alice"]
    assert registry.encoder_spec == ENCODER_A.spec and [e.name for e in registry.encoders()] == ["test/a"]


def test_every_change_raises_the_generation_and_readers_get_only_what_changed(tmp_path):
    registry = Registry(tmp_path / "r.db")
    start = registry.generation()
    registry.add("alice", items(np.eye(3)[:1], "a"), ENCODER_A)
    registry.add("bob", items(np.eye(3)[1:2], "b"), ENCODER_A)
    after_enroll = registry.generation()
    assert after_enroll == start + 2
    generation, _, names, matrices, count = registry.references(after_enroll - 1)
    assert generation == after_enroll and count == 2 and names == ["bob"] and matrices["test/a"][0] == pytest.approx([0, 1, 0])
    registry.rename("alice", "carol")
    generation, _, names, _, count = registry.references(after_enroll)
    assert names == ["carol"] and generation == after_enroll + 1
    registry.remove("bob")
    generation, ids, names, matrices, count = registry.references(generation)
    assert (ids, names, matrices["test/a"].shape, count) == ([], [], (0, 3), 1)
    assert registry.generation() == after_enroll + 2


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
from speakerid.registry import Enrollment, Registry
encoder = SimpleNamespace(name="test/a", spec={"kind": "test", "id": "a"}, dim=3)
registry = Registry(sys.argv[1])
prefix, count = sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
for i in range(count):
    name = f"{prefix}{i:03d}"
    registry.add(name, [Enrollment(hashlib.sha256(f"{name}/{k}".encode()).hexdigest(), f"{k}.wav",
                                   np.zeros(3200, np.int16), {"test/a": v}) for k, v in enumerate(rng.normal(size=(2, 3)))],
                 encoder)
if prefix == "p":
    registry.set_scoring({"encoders": ["test/a"], "identify": 0.61})
print("done", count)
"""


def test_a_registry_written_by_one_process_is_read_by_another(tmp_path):
    writer = run_python(WRITER, str(tmp_path / "r.db"), "p", "3")
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    registry = Registry(tmp_path / "r.db", create=False)
    assert [(s["name"], s["recordings"]) for s in registry.speakers()] == [("p000", 2), ("p001", 2), ("p002", 2)]
    rng = np.random.default_rng(0)
    expected = [rng.normal(size=(2, 3)) for _ in range(3)]
    for vectors, got in zip(expected, references(registry)[1]):
        mean = vectors.mean(axis=0)
        assert got == pytest.approx(mean / np.linalg.norm(mean), abs=1e-6)
    assert registry.scoring == {"encoders": ["test/a"], "identify": 0.61}
    assert registry.encoder_spec == ENCODER_A.spec and registry.encoder_name == "test/a"
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)


READER = """
import sys, time
import numpy as np
from speakerid.registry import Registry
registry = Registry(sys.argv[1], create=False)
deadline, reads, seen = time.monotonic() + 60, 0, 0
while seen < int(sys.argv[2]) and time.monotonic() < deadline:  # until every writer's speakers are in
    _, ids, _, matrices, count = registry.references()
    assert len(ids) == count and np.allclose(np.linalg.norm(matrices["test/a"], axis=1), 1, atol=1e-5)
    seen = len(registry.speakers())
    reads += 1
print("done", seen, reads)
"""


def test_readers_and_writers_in_threads_and_processes_never_see_a_locked_database(tmp_path):
    path = tmp_path / "r.db"
    registry = Registry(path)
    registry.add("seed", items(np.eye(3)[:1], "seed"), ENCODER_A)
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
                _, ids, _, matrices, count = registry.references()
                assert len(ids) == count
                assert np.allclose(np.linalg.norm(matrices["test/a"], axis=1), 1, atol=1e-5)
                reads += 1
        except BaseException as err:  # handed to the test thread
            errors.append(err)

    def write():
        try:
            while not any(s["name"].startswith("p") for s in registry.speakers()):  # the other writer has begun
                time.sleep(0.01)
            rng = np.random.default_rng(1)
            for i in range(60):
                registry.add(f"t{i:03d}", items(rng.normal(size=(2, 3)), f"t{i}a", f"t{i}b"), ENCODER_A)
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
    registry.add("alice", items(np.eye(3)[:1], "a"), ENCODER_A)
    writer = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("DELETE FROM refs")
    seen: list = []
    reader = threading.Thread(target=lambda: seen.append(references(registry)[0]))
    reader.start()
    reader.join(timeout=10)  # in a rollback journal, the reader would wait out the 30-s busy timeout
    finished_while_writing = not reader.is_alive()
    writer.execute("ROLLBACK")
    reader.join()
    assert finished_while_writing and seen == [["alice"]]
