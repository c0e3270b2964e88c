"""registry: the SQLite store of enrolled speakers, their enrollment audio and embeddings.

A registry is one SQLite file holding:

    speakers     name, created, updated, and the generation of its last change
    recordings   each enrolled recording's audio (16 kHz mono, lossless FLAC) with the SHA-256,
                 name and length of the file it came from: the evidence, so that a better
                 encoder can always embed everyone again
    encoders     the base encoder (GE2E or a trained run, recorded at first enrollment) and, after
                 `speakerid adapt`, an adapted encoder whose weights (safetensors) and settings
                 (JSON) live in the row itself
    embeddings   one vector per recording and encoder
    refs         each speaker's reference per encoder: the L2-normalised mean of its embeddings,
                 kept up to date in the transaction that changes them
    meta         the format, a generation counter, and how scores become decisions (`scoring`)

Every write bumps the generation, so a reader (another thread, process or the service) sees
that something changed with one cheap query and reloads only what changed.

The file is opened in WAL mode with a busy timeout, so any number of readers work while one
writer enrolls; each thread gets its own connection. WAL needs a local disk (not a network share).
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import soundfile as sf

from speakerid.audio import SAMPLE_RATE
from speakerid.errors import RegistryError

if TYPE_CHECKING:
    from speakerid.encoders import Encoder

__all__ = ["Registry", "Enrollment", "EncoderRecord", "reference", "check_name", "UNKNOWN", "FORMAT"]

FORMAT = "speakerid-registry/2"
OLD_FORMATS = ("speakerid-registry/1",)
UNKNOWN = "unknown"  # identify's answer for a voice nobody enrolled; not allowed as a speaker name
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer before giving up
BASE, ADAPTED = "base", "adapted"

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE speakers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        generation INTEGER NOT NULL
    )""",
    """CREATE TABLE recordings (
        id INTEGER PRIMARY KEY,
        speaker_id INTEGER NOT NULL REFERENCES speakers (id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        seconds REAL NOT NULL,
        audio BLOB NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (speaker_id, sha256)
    )""",
    """CREATE TABLE encoders (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('base', 'adapted')),
        spec TEXT NOT NULL,
        dim INTEGER NOT NULL,
        weights BLOB,
        config TEXT,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE embeddings (
        recording_id INTEGER NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        encoder_id INTEGER NOT NULL REFERENCES encoders (id) ON DELETE CASCADE,
        vector BLOB NOT NULL,
        PRIMARY KEY (recording_id, encoder_id)
    )""",
    """CREATE TABLE refs (
        speaker_id INTEGER NOT NULL REFERENCES speakers (id) ON DELETE CASCADE,
        encoder_id INTEGER NOT NULL REFERENCES encoders (id) ON DELETE CASCADE,
        vector BLOB NOT NULL,
        PRIMARY KEY (speaker_id, encoder_id)
    )""",
    "CREATE INDEX speakers_by_generation ON speakers (generation)",
)


def reference(vectors: np.ndarray) -> np.ndarray:
    """A speaker's reference: the L2-normalised mean of its (n, dim) enrollment embeddings."""
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)


NAME_MAX = 64  # characters
NAME_RULE = (f"a speaker name is 1 to {NAME_MAX} characters with at least one letter or digit, "
             "without '/', '\\', tabs, line breaks or other control characters")


def check_name(name: str) -> str:
    """The name to enroll under (surrounding spaces dropped), or SpeakerNameError saying which part of NAME_RULE it breaks.

    Only names being enrolled or renamed to are checked: a name stored before the rule still
    identifies, lists, renames and removes as it is.
    """
    import unicodedata

    from speakerid.errors import SpeakerNameError

    name = name.strip() if isinstance(name, str) else ""
    shown = repr(name if len(name) <= 40 else name[:40] + "...")
    if not name:
        raise SpeakerNameError(f"a speaker name must not be empty; {NAME_RULE}")
    if len(name) > NAME_MAX:
        raise SpeakerNameError(f"the speaker name {shown} is {len(name)} characters long; {NAME_RULE}")
    bad = [c for c in name if c in "/\\" or unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp")
           or (unicodedata.category(c) == "Cf" and c not in "\u200c\u200d")]  # joiners belong in some scripts
    if bad:
        raise SpeakerNameError(f"the speaker name {shown} holds {', '.join(dict.fromkeys(map(repr, bad)))}; {NAME_RULE}")
    if not any(c.isalnum() for c in name):
        raise SpeakerNameError(f"the speaker name {shown} has no letter or digit; {NAME_RULE}")
    if name.lower() == UNKNOWN:
        raise SpeakerNameError(f"{name!r} is the answer for voices nobody enrolled and cannot be a speaker's name; choose another")
    return name


def encode_audio(samples: np.ndarray) -> bytes:
    """int16 mono samples at 16 kHz as FLAC bytes (lossless, about half the size)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.int16), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_stored(blob: bytes, what: str) -> np.ndarray:
    """The int16 samples of a stored recording; RegistryError when the stored audio is damaged."""
    try:
        samples, rate = sf.read(io.BytesIO(blob), dtype="int16")
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise RegistryError(f"the stored audio of {what} is damaged ({err}); remove the speaker and enroll it again") from None
    if rate != SAMPLE_RATE or samples.ndim != 1:
        raise RegistryError(f"the stored audio of {what} is not 16-kHz mono; remove the speaker and enroll it again")
    return samples


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


@dataclass
class Enrollment:
    """One recording to enroll: its file's SHA-256 and name, its 16-kHz int16 audio, and its
    embedding by every encoder of the registry (encoder name -> (dim,) vector)."""

    sha256: str
    source: str
    audio: np.ndarray
    vectors: dict[str, np.ndarray]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class EncoderRecord:
    """An encoder as the registry records it. `weights` and `config` are set for an adapted one."""

    id: int
    name: str
    role: str
    spec: dict
    dim: int
    config: dict | None
    created: str


class Registry:
    """The SQLite store of enrolled speakers; safe for concurrent readers and a writer, threads or processes."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if self.path.is_dir():
            raise RegistryError(f"{self.path} is a folder; give a registry file, such as {self.path / 'speakers.db'}")
        if not self.path.exists():
            if not create:
                raise RegistryError(f"{self.path}: no such registry; enroll speakers into it first (speakerid enroll) or check the path")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        """Create the schema in a new file, or check that an existing file is a current speakerid registry."""
        try:
            db = self._db()
        except sqlite3.DatabaseError as err:
            if "not a database" in str(err):
                raise RegistryError(f"{self.path} is not a speakerid registry ({err}); give another file") from None
            raise RegistryError(f"{self.path}: cannot open the registry ({err}); check the path and its permissions") from None
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables:
                row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() if "meta" in tables else None
                found = None if row is None else json.loads(row[0])
                if found in OLD_FORMATS:
                    raise RegistryError(
                        f"{self.path} was made by an earlier speakerid ({found}) that kept no enrollment audio; "
                        f"upgrade it with `speakerid upgrade-registry {self.path} DATA_DIR` (DATA_DIR: where its "
                        "enrolled files still are), or enroll the speakers again into a new registry"
                    )
                if found != FORMAT:
                    raise RegistryError(f"{self.path} is an SQLite database but not a speakerid registry; give another file")
                return
            db.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        except sqlite3.DatabaseError as err:
            raise RegistryError(f"{self.path} is not a speakerid registry ({err}); give another file") from None
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:  # another process may have won
                for statement in SCHEMA:
                    db.execute(statement)
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                               [("format", json.dumps(FORMAT)), ("generation", "0")])

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must not be shared between threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE themselves, so a
            # writer takes the write lock before reading and never needs an upgrade that could deadlock.
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA foreign_keys = ON")
            # In WAL mode NORMAL keeps every commit safe from a crash of the process (only a power cut
            # can lose the last commits) and spares an fsync per enrollment.
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise RegistryError(f"{self.path} stayed locked by another writer for {BUSY_TIMEOUT_S:g} s; try again") from None
            raise RegistryError(f"{self.path}: {err}") from None
        except sqlite3.DatabaseError as err:
            raise RegistryError(f"{self.path}: {err}") from None

    @contextmanager
    def _change(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """A write transaction that bumps the generation; yields (connection, the new generation)."""
        with self._transaction() as db:
            generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            yield db, generation

    def close(self) -> None:
        """Close every thread's connection; call once no thread uses the registry any more."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ settings

    def generation(self) -> int:
        """A counter every change raises: equal numbers mean nothing changed in between."""
        return int(self._db().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def _meta(self, key: str) -> Any:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @property
    def scoring(self) -> dict | None:
        """How scores become decisions (fusion, thresholds, where they came from): see `speakerid.scoring`."""
        return self._meta("scoring")

    def set_scoring(self, info: dict) -> None:
        """Store the scoring that `calibrate` (or `adapt`) fitted for the registry's current encoders."""
        if [e.name for e in self.encoders()] != list(info.get("encoders", [])):
            raise RegistryError(f"{self.path}: its encoders changed while calibrating; calibrate again")
        with self._change() as (db, _):
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('scoring', ?)", (json.dumps(info),))

    def encoders(self) -> list[EncoderRecord]:
        """The registry's encoders, the base one first (empty before the first enrollment)."""
        rows = self._db().execute("SELECT id, name, role, spec, dim, config, created FROM encoders "
                                  "ORDER BY role = 'adapted', id").fetchall()
        return [EncoderRecord(i, name, role, json.loads(spec), dim, None if config is None else json.loads(config), created)
                for i, name, role, spec, dim, config, created in rows]

    def encoder_weights(self, name: str) -> bytes:
        """The safetensors bytes of an adapted encoder."""
        row = self._db().execute("SELECT weights FROM encoders WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] is None:
            raise RegistryError(f"{self.path} holds no weights for the encoder {name}")
        return bytes(row[0])

    @property
    def encoder_name(self) -> str | None:
        """The name of the base encoder (the one every enrollment was first embedded with), or None."""
        found = self.encoders()
        return found[0].name if found else None

    @property
    def encoder_spec(self) -> dict | None:
        found = self.encoders()
        return found[0].spec if found else None

    def bind_encoder(self, encoder: "Encoder") -> None:
        """Record `encoder` as the base encoder if there is none; RegistryError if the registry holds another."""
        with self._transaction() as db:
            self._bind(db, encoder)

    def _bind(self, db: sqlite3.Connection, encoder: "Encoder") -> None:
        row = db.execute("SELECT name, dim FROM encoders WHERE role = 'base'").fetchone()
        if row is None:
            db.execute("INSERT INTO encoders (name, role, spec, dim, created) VALUES (?, 'base', ?, ?, ?)",
                       (encoder.name, json.dumps(encoder.spec), int(encoder.dim), _now()))
        elif row[0] != encoder.name:
            raise RegistryError(
                f"{self.path} holds embeddings of the encoder {row[0]} and cannot mix in {encoder.name} "
                "(their scores do not compare); use the registry's encoder, or another registry file"
            )

    # ------------------------------------------------------------ speakers

    def add(self, name: str, items: Sequence[Enrollment], base: "Encoder", replace: bool = False) -> int:
        """Enroll recordings for `name` (created if new); returns how many were added.

        Each item carries an embedding by every encoder of the registry (`base` recorded as the
        base encoder at the first enrollment). A recording already enrolled for this speaker is
        skipped. `replace` first drops the speaker's recordings.
        """
        name = check_name(name)
        if not items:
            raise RegistryError(f"nothing to enroll for {name!r}")
        now = _now()
        with self._change() as (db, generation):
            self._bind(db, base)
            encoders = {n: (i, dim) for i, n, dim in db.execute("SELECT id, name, dim FROM encoders")}
            for item in items:
                if set(item.vectors) != set(encoders):
                    raise RegistryError(f"{self.path}: its encoders changed while enrolling ({', '.join(sorted(encoders))}); "
                                        "enroll again")
                for encoder, vector in item.vectors.items():
                    if np.shape(vector) != (encoders[encoder][1],):
                        raise RegistryError(f"{self.path} holds {encoders[encoder][1]}-dimensional embeddings of {encoder}, "
                                            f"not {np.shape(vector)}")
                    if not np.isfinite(vector).all():
                        raise RegistryError(f"the embeddings for {name!r} contain NaN or infinite values")
            row = db.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()
            if row is None:
                speaker_id = db.execute("INSERT INTO speakers (name, created, updated, generation) VALUES (?, ?, ?, ?)",
                                        (name, now, now, generation)).lastrowid
            else:
                speaker_id = row[0]
                if replace:
                    db.execute("DELETE FROM recordings WHERE speaker_id = ?", (speaker_id,))
            added = 0
            for item in items:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO recordings (speaker_id, sha256, source, seconds, audio, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (speaker_id, item.sha256, item.source, item.seconds, encode_audio(item.audio), now))
                if cursor.rowcount:
                    added += 1
                    db.executemany("INSERT INTO embeddings (recording_id, encoder_id, vector) VALUES (?, ?, ?)",
                                   [(cursor.lastrowid, encoders[e][0], _blob(v)) for e, v in item.vectors.items()])
            if added or replace:
                db.execute("UPDATE speakers SET updated = ?, generation = ? WHERE id = ?", (now, generation, speaker_id))
                self._refresh_references(db, speaker_id)
        return added

    def _refresh_references(self, db: sqlite3.Connection, speaker_id: int) -> None:
        """Recompute a speaker's reference for every encoder from its embeddings."""
        db.execute("DELETE FROM refs WHERE speaker_id = ?", (speaker_id,))
        rows = db.execute("SELECT e.encoder_id, e.vector FROM embeddings e JOIN recordings r ON r.id = e.recording_id "
                          "WHERE r.speaker_id = ? ORDER BY e.encoder_id, r.id", (speaker_id,)).fetchall()
        by_encoder: dict[int, list[np.ndarray]] = {}
        for encoder_id, blob in rows:
            by_encoder.setdefault(encoder_id, []).append(_vector(blob))
        db.executemany("INSERT INTO refs (speaker_id, encoder_id, vector) VALUES (?, ?, ?)",
                       [(speaker_id, e, _blob(reference(np.stack(v)))) for e, v in by_encoder.items()])

    def enrolled_hashes(self, name: str) -> set[str]:
        """SHA-256 of every file enrolled for `name` (empty for a speaker not enrolled)."""
        rows = self._db().execute("SELECT r.sha256 FROM recordings r JOIN speakers s ON s.id = r.speaker_id WHERE s.name = ?",
                                  (name,)).fetchall()
        return {row[0] for row in rows}

    def recording_count(self, name: str) -> int:
        """How many recordings `name` has enrolled (0 for a speaker not enrolled)."""
        row = self._db().execute("SELECT COUNT(*) FROM recordings r JOIN speakers s ON s.id = r.speaker_id "
                                 "WHERE s.name = ?", (name,)).fetchone()
        return int(row[0])

    def speakers(self) -> list[dict]:
        """Every enrolled speaker, by name: name, recordings, seconds (of enrolled audio), created, updated."""
        rows = self._db().execute(
            "SELECT s.name, COUNT(r.id), COALESCE(SUM(r.seconds), 0), s.created, s.updated "
            "FROM speakers s LEFT JOIN recordings r ON r.speaker_id = s.id GROUP BY s.id ORDER BY s.name"
        ).fetchall()
        return [{"name": name, "recordings": n, "seconds": round(seconds, 3), "created": created, "updated": updated}
                for name, n, seconds, created, updated in rows]

    def rename(self, old: str, new: str) -> None:
        """Give the speaker `old` the name `new`; RegistryError if `old` is not enrolled or `new` is taken."""
        new = check_name(new)
        with self._change() as (db, generation):
            if db.execute("SELECT 1 FROM speakers WHERE name = ?", (old,)).fetchone() is None:
                raise self._unknown(old)
            if old == new:
                return
            if db.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone() is not None:
                raise RegistryError(f"{new!r} is already enrolled in {self.path}; remove it first or choose another name")
            db.execute("UPDATE speakers SET name = ?, updated = ?, generation = ? WHERE name = ?", (new, _now(), generation, old))

    def remove(self, name: str) -> None:
        """Forget the speaker `name`, its recordings and embeddings; RegistryError if it is not enrolled."""
        with self._change() as (db, _):
            if db.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount == 0:
                raise self._unknown(name)

    def _unknown(self, name: str) -> RegistryError:
        return RegistryError(f"no speaker {name!r} in {self.path}; `speakerid speakers list --registry {self.path}` "
                             "lists the enrolled ones")

    # ------------------------------------------------------------ references and audio

    def references(self, since: int = -1) -> tuple[int, list[int], list[str], dict[str, np.ndarray], int]:
        """(generation, ids, names, {encoder name: (n, dim) references}, speaker count), read in one
        transaction: the speakers changed after generation `since` (all of them by default), by id.
        A speaker lacking a reference by some encoder (caught between adapt's steps) is left out."""
        with self._transaction(write=False) as db:
            generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            count = int(db.execute("SELECT COUNT(*) FROM speakers").fetchone()[0])
            encoders = db.execute("SELECT id, name, dim FROM encoders ORDER BY role = 'adapted', id").fetchall()
            columns = {}
            for encoder_id, name, dim in encoders:
                # Everyone: one scan in id order. Only what changed: through the generation index.
                speakers = "speakers s" if since < 0 else "speakers s INDEXED BY speakers_by_generation"
                rows = db.execute(f"SELECT s.id, s.name, f.vector FROM {speakers} JOIN refs f ON f.speaker_id = s.id "
                                  "WHERE f.encoder_id = ? AND s.generation > ? ORDER BY s.id", (encoder_id, since)).fetchall()
                ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
                vectors = np.frombuffer(bytearray(b"".join(row[2] for row in rows)), dtype="<f4").reshape(len(rows), dim)
                columns[name] = (ids, [row[1] for row in rows], vectors)
        if not columns:
            return generation, [], [], {}, count
        common = set.intersection(*(set(ids.tolist()) for ids, _, _ in columns.values()))
        first_ids, first_names, _ = next(iter(columns.values()))
        keep = [i for i, speaker in enumerate(first_ids.tolist()) if speaker in common]
        matrices = {}
        for name, (ids, _, vectors) in columns.items():
            mask = np.isin(ids, list(common)) if len(common) != len(ids) else slice(None)
            matrices[name] = vectors[mask]
        return generation, first_ids[keep].tolist(), [first_names[i] for i in keep], matrices, count

    def speaker_ids(self) -> set[int]:
        return {row[0] for row in self._db().execute("SELECT id FROM speakers")}

    def recordings(self) -> list[dict]:
        """Every enrolled recording, without its audio: id, speaker, sha256, source, seconds."""
        rows = self._db().execute("SELECT r.id, s.name, r.sha256, r.source, r.seconds FROM recordings r "
                                  "JOIN speakers s ON s.id = r.speaker_id ORDER BY s.name, r.id").fetchall()
        return [{"id": i, "speaker": s, "sha256": h, "source": src, "seconds": sec} for i, s, h, src, sec in rows]

    def audio(self, recording_id: int) -> np.ndarray:
        """A stored recording's int16 samples at 16 kHz."""
        row = self._db().execute("SELECT r.audio, s.name, r.source FROM recordings r JOIN speakers s ON s.id = r.speaker_id "
                                 "WHERE r.id = ?", (recording_id,)).fetchone()
        if row is None:
            raise RegistryError(f"{self.path} has no recording {recording_id} (removed meanwhile?)")
        return decode_stored(row[0], f"{row[1]}'s {row[2]}")

    def embeddings(self, encoder: str) -> dict[int, np.ndarray]:
        """Every recording's embedding by `encoder`: recording id -> vector."""
        rows = self._db().execute("SELECT e.recording_id, e.vector FROM embeddings e JOIN encoders c ON c.id = e.encoder_id "
                                  "WHERE c.name = ?", (encoder,)).fetchall()
        return {i: _vector(blob) for i, blob in rows}

    def replace_base(self, name: str, spec: dict, dim: int, vectors: dict[int, np.ndarray]) -> list[int]:
        """Make `name` the base encoder, in one transaction: every recording's embedding (`vectors`:
        recording id -> vector, the new encoder's), the speakers' references; the scoring goes, as it
        was fitted on the old encoder's scores. Recordings enrolled meanwhile (not in `vectors`) are
        returned, and the change is refused."""
        with self._change() as (db, generation):
            missing = [row[0] for row in db.execute("SELECT id FROM recordings") if row[0] not in vectors]
            if missing:
                return missing
            encoder_id = db.execute("SELECT id FROM encoders WHERE role = 'base'").fetchone()[0]
            db.execute("UPDATE encoders SET name = ?, spec = ?, dim = ? WHERE id = ?", (name, json.dumps(spec), int(dim), encoder_id))
            db.executemany("UPDATE embeddings SET vector = ? WHERE recording_id = ? AND encoder_id = ?",
                           [(_blob(v), recording, encoder_id) for recording, v in vectors.items()])
            for (speaker_id,) in db.execute("SELECT id FROM speakers").fetchall():
                self._refresh_references(db, speaker_id)
            db.execute("UPDATE speakers SET generation = ?", (generation,))
            db.execute("DELETE FROM meta WHERE key = 'scoring'")
        return []

    def install_adapted(self, name: str, spec: dict, dim: int, weights: bytes, config: dict,
                        vectors: dict[int, np.ndarray], scoring: dict) -> list[int]:
        """Make an adapted encoder the registry's second encoder, in one transaction: its weights and
        settings, the embedding of every recording (`vectors`: recording id -> vector), the speakers'
        references, and its provisional `scoring`. A previous adapted encoder and its embeddings go.
        Recordings enrolled meanwhile (not in `vectors`) are returned, and the change is refused."""
        with self._change() as (db, generation):
            missing = [row[0] for row in db.execute("SELECT id FROM recordings") if row[0] not in vectors]
            if missing:
                return missing
            db.execute("DELETE FROM encoders WHERE role = 'adapted'")
            encoder_id = db.execute(
                "INSERT INTO encoders (name, role, spec, dim, weights, config, created) VALUES (?, 'adapted', ?, ?, ?, ?, ?)",
                (name, json.dumps(spec), int(dim), weights, json.dumps(config), _now())).lastrowid
            db.executemany("INSERT INTO embeddings (recording_id, encoder_id, vector) VALUES (?, ?, ?)",
                           [(recording, encoder_id, _blob(v)) for recording, v in vectors.items()])
            speakers = [row[0] for row in db.execute("SELECT id FROM speakers")]
            for speaker_id in speakers:
                self._refresh_references(db, speaker_id)
            db.execute("UPDATE speakers SET generation = ?", (generation,))
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('scoring', ?)", (json.dumps(scoring),))
        return []
