"""registry: enrolled speakers in SQLite, open-set identification and verification.

A registry is one SQLite file holding the speakers, their enrollment embeddings (with the
SHA-256, name and length of the file each came from), the encoder that made them, and the
decision threshold `calibrate` chose for that encoder. Enrolling a speaker needs no training:
a speaker's reference is the L2-normalised mean of its enrollment embeddings.

The file is opened in WAL mode with a busy timeout, so any number of readers (threads or
processes) work while one writer enrolls; each thread gets its own connection. WAL needs the
file on a local disk (not a network share).

Which threshold decides "unknown" (identify) or "same speaker" (verify), first found wins:
the one passed in ("given"), the registry's calibrated one ("calibrated"), the encoder's
default ("default (uncalibrated)"), else none ("none": identify still ranks the speakers but
cannot tell an enrolled voice from a stranger, and says so with `known=None`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from speakerid.audio import decode_audio, load_audio
from speakerid.corpus import scan
from speakerid.errors import AudioError, RegistryError

if TYPE_CHECKING:
    from speakerid.encoders import Encoder

__all__ = ["Registry", "VoiceRegistry", "EnrollResult", "OpenSetAnswer", "Verification", "verify", "reference", "decision_threshold", "UNKNOWN"]

FORMAT = "speakerid-registry/1"
UNKNOWN = "unknown"  # identify's answer for a voice nobody enrolled; not allowed as a speaker name
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer before giving up

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS speakers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS embeddings (
        id INTEGER PRIMARY KEY,
        speaker_id INTEGER NOT NULL REFERENCES speakers (id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        seconds REAL NOT NULL,
        vector BLOB NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (speaker_id, sha256)
    )""",
)


def reference(vectors: np.ndarray) -> np.ndarray:
    """A speaker's reference: the L2-normalised mean of its (n, dim) enrollment embeddings."""
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


NAME_MAX = 64  # characters
NAME_RULE = (f"a speaker name is 1 to {NAME_MAX} characters with at least one letter or digit, "
             "without '/', '\\', tabs, line breaks or other control characters")


def _check_name(name: str) -> str:
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
        """Create the schema in a new file, or check that an existing file is a speakerid registry."""
        try:
            db = self._db()
        except sqlite3.Error as err:
            raise RegistryError(f"{self.path}: cannot open the registry ({err}); check the path and its permissions") from None
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables:
                row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() if "meta" in tables else None
                if row is None or json.loads(row[0]) != FORMAT:
                    raise RegistryError(f"{self.path} is an SQLite database but not a speakerid registry; give another file")
                return
            db.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        except sqlite3.DatabaseError as err:
            raise RegistryError(f"{self.path} is not a speakerid registry ({err}); give another file") from None
        with self._transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (json.dumps(FORMAT),))

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must not be shared between threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE themselves, so a
            # writer takes the write lock before reading and never needs an upgrade that could deadlock.
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA foreign_keys = ON")
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

    def _meta(self, key: str) -> Any:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @property
    def encoder_spec(self) -> dict | None:
        """The spec of the encoder every embedding here came from (recorded at first enrollment), or None."""
        encoder = self._meta("encoder")
        return None if encoder is None else encoder["spec"]

    @property
    def encoder_name(self) -> str | None:
        """The name of the encoder every embedding here came from, or None."""
        encoder = self._meta("encoder")
        return None if encoder is None else encoder["name"]

    @property
    def threshold(self) -> dict | None:
        """The calibrated threshold and how it was found ({"value", "far", "eer", "min_dcf", "calibrated_at", "data", ...})."""
        return self._meta("threshold")

    def set_threshold(self, info: dict) -> None:
        """Store a calibrated threshold (a dict with at least a finite "value") for the registry's encoder."""
        value = info.get("value") if isinstance(info, dict) else None
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise RegistryError(f"a threshold needs a finite 'value', got {info!r}")
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('threshold', ?)", (json.dumps(info),))

    def bind_encoder(self, encoder: "Encoder") -> None:
        """Record `encoder` as the registry's encoder if it has none; RegistryError if it holds another."""
        with self._transaction() as db:
            self._bind(db, encoder, encoder.dim)

    def _bind(self, db: sqlite3.Connection, encoder: "Encoder", dim: int) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'encoder'").fetchone()
        if row is None:
            recorded = {"name": encoder.name, "spec": encoder.spec, "dim": int(dim)}
            db.execute("INSERT INTO meta (key, value) VALUES ('encoder', ?)", (json.dumps(recorded),))
            return
        recorded = json.loads(row[0])
        if recorded["name"] != encoder.name:
            raise RegistryError(
                f"{self.path} holds embeddings of the encoder {recorded['name']} and cannot mix in {encoder.name} "
                "(their scores do not compare); use the registry's encoder, or another registry file"
            )
        if recorded["dim"] != dim:
            raise RegistryError(f"{self.path} holds {recorded['dim']}-dimensional embeddings, not {dim}-dimensional ones")

    # ------------------------------------------------------------ speakers

    def add(self, name: str, vectors: np.ndarray, sources: list[tuple[str, str, float]], encoder: "Encoder",
            replace: bool = False) -> int:
        """Enroll embeddings for `name` (created if new); returns how many were added.

        `sources` holds (sha256, file name, seconds) for each row of `vectors`. A source already
        enrolled for this speaker is skipped. `replace` first drops the speaker's embeddings.
        `encoder` (anything with `name` and `spec`) must be the registry's encoder; the first
        enrollment records it.
        """
        name = _check_name(name)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise RegistryError(f"nothing to enroll for {name!r}: expected (n, dim) embeddings, got shape {vectors.shape}")
        if len(sources) != len(vectors):
            raise ValueError(f"got {len(sources)} sources for {len(vectors)} embeddings")
        if not np.isfinite(vectors).all():
            raise RegistryError(f"the embeddings for {name!r} contain NaN or infinite values")
        now = _now()
        with self._transaction() as db:
            self._bind(db, encoder, vectors.shape[1])
            row = db.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()
            if row is None:
                speaker_id = db.execute("INSERT INTO speakers (name, created, updated) VALUES (?, ?, ?)",
                                        (name, now, now)).lastrowid
            else:
                speaker_id = row[0]
                if replace:
                    db.execute("DELETE FROM embeddings WHERE speaker_id = ?", (speaker_id,))
            added = 0
            for vector, (sha256, source, seconds) in zip(vectors, sources):
                added += db.execute(
                    "INSERT OR IGNORE INTO embeddings (speaker_id, sha256, source, seconds, vector, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (speaker_id, sha256, source, float(seconds), vector.astype("<f4").tobytes(), now),
                ).rowcount
            if added or replace:
                db.execute("UPDATE speakers SET updated = ? WHERE id = ?", (now, speaker_id))
        return added

    def enrolled_hashes(self, name: str) -> set[str]:
        """SHA-256 of every file enrolled for `name` (empty for a speaker not enrolled)."""
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT e.sha256 FROM embeddings e JOIN speakers s ON s.id = e.speaker_id WHERE s.name = ?",
                              (name,)).fetchall()
        return {row[0] for row in rows}

    def speakers(self) -> list[dict]:
        """Every enrolled speaker, by name: name, embeddings, seconds (of enrolled audio), created, updated."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT s.name, COUNT(e.id), COALESCE(SUM(e.seconds), 0), s.created, s.updated "
                "FROM speakers s LEFT JOIN embeddings e ON e.speaker_id = s.id GROUP BY s.id ORDER BY s.name"
            ).fetchall()
        return [{"name": name, "embeddings": n, "seconds": round(seconds, 3), "created": created, "updated": updated}
                for name, n, seconds, created, updated in rows]

    def rename(self, old: str, new: str) -> None:
        """Give the speaker `old` the name `new`; RegistryError if `old` is not enrolled or `new` is taken."""
        new = _check_name(new)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM speakers WHERE name = ?", (old,)).fetchone() is None:
                raise self._unknown(old)
            if old == new:
                return
            if db.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone() is not None:
                raise RegistryError(f"{new!r} is already enrolled in {self.path}; remove it first or choose another name")
            db.execute("UPDATE speakers SET name = ?, updated = ? WHERE name = ?", (new, _now(), old))

    def remove(self, name: str) -> None:
        """Forget the speaker `name` and its embeddings; RegistryError if it is not enrolled."""
        with self._transaction() as db:
            if db.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount == 0:
                raise self._unknown(name)

    def _unknown(self, name: str) -> RegistryError:
        return RegistryError(f"no speaker {name!r} in {self.path}; `speakerid speakers list --registry {self.path}` "
                             "lists the enrolled ones")

    def references(self) -> tuple[list[str], np.ndarray]:
        """Speaker names (sorted) and their references: (n, dim) L2-normalised means of their embeddings."""
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT s.name, e.vector FROM embeddings e JOIN speakers s ON s.id = e.speaker_id "
                              "ORDER BY s.name, e.id").fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        names: list[str] = []
        groups: list[list[np.ndarray]] = []
        for name, blob in rows:
            if not names or names[-1] != name:
                names.append(name)
                groups.append([])
            groups[-1].append(np.frombuffer(blob, dtype="<f4"))
        return names, np.stack([reference(np.stack(group)) for group in groups])


# ---------------------------------------------------------------- answers


@dataclass
class EnrollResult:
    """What enrolling one speaker did: files added, skipped (already enrolled) and failed (with why)."""

    speaker: str
    added: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    embeddings: int = 0  # the speaker's enrollment embeddings afterwards

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "added": self.added, "skipped": self.skipped,
                "failed": [{"file": f, "reason": r} for f, r in self.failed], "embeddings": self.embeddings}


@dataclass
class OpenSetAnswer:
    """Who speaks, among the enrolled speakers, or "unknown".

    `known` is True when the best score reaches the threshold, False when it does not (then
    `speaker` is "unknown"), and None when there is no threshold to decide with (then `speaker`
    is merely the closest enrolled voice).
    """

    speaker: str
    score: float
    known: bool | None
    threshold: float | None
    threshold_source: str  # "given" | "calibrated" | "default (uncalibrated)" | "none"
    ranking: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "score": round(self.score, 6), "known": self.known,
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "ranking": [{"speaker": s, "score": round(v, 6)} for s, v in self.ranking]}


@dataclass
class Verification:
    """Whether two recordings share a speaker: their cosine score against a threshold (`same` is None without one)."""

    score: float
    same: bool | None
    threshold: float | None
    threshold_source: str

    def to_dict(self) -> dict:
        return {"score": round(self.score, 6), "same": self.same, "threshold": self.threshold,
                "threshold_source": self.threshold_source}


def decision_threshold(given: float | None, calibrated: dict | None, encoder: "Encoder") -> tuple[float | None, str]:
    """The threshold that decides and where it came from, by the precedence in the module's docstring."""
    if given is not None:
        return float(given), "given"
    if calibrated is not None:
        return float(calibrated["value"]), "calibrated"
    if encoder.default_threshold is not None:
        return float(encoder.default_threshold), "default (uncalibrated)"
    return None, "none"


def _decide(score: float, given: float | None, calibrated: dict | None,
            encoder: "Encoder") -> tuple[bool | None, float | None, str]:
    """(score reaches the threshold, the threshold, where it came from)."""
    threshold, source = decision_threshold(given, calibrated, encoder)
    return (None if threshold is None else score >= threshold), threshold, source


def _embed_input(encoder: "Encoder", audio: str | Path | np.ndarray) -> np.ndarray:
    if isinstance(audio, np.ndarray):
        return encoder.embed(audio)
    return encoder.embed(load_audio(audio, encoder.sample_rate), str(audio))


# ---------------------------------------------------------------- registry + encoder


class VoiceRegistry:
    """A registry with its encoder: enroll, identify (open set) and verify recordings.

    `model` None uses the encoder the registry recorded, or GE2E for a new registry; a given
    model (a run directory) must be the one the registry recorded. The encoder loads on first
    use, so listing, renaming and removing speakers need none. `create=False` refuses a
    registry file that does not exist yet.
    """

    def __init__(self, path: str | Path, model: str | Path | None = None, device: str = "auto", create: bool = True):
        self.registry = Registry(path, create=create)
        self.model = model
        self.device = device
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()

    @property
    def encoder(self) -> "Encoder":
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            return self._encoder

    def _load_encoder(self) -> "Encoder":
        from speakerid.encoders import encoder_from_spec, load_encoder

        spec, name = self.registry.encoder_spec, self.registry.encoder_name
        if self.model is None:
            return load_encoder(None, self.device) if spec is None else encoder_from_spec(spec, self.device)
        encoder = load_encoder(self.model, self.device)
        if name is not None and encoder.name != name:
            raise RegistryError(f"{self.registry.path} was enrolled with the encoder {name}, not {encoder.name} "
                                f"({self.model}); leave out the model to use the registry's own")
        return encoder

    # ------------------------------------------------------------ enroll

    def enroll(self, name: str, files: list[Path], replace: bool = False) -> EnrollResult:
        """Enroll `name` from audio files; a file that cannot be read or embedded is reported, not fatal.

        Files whose content is already enrolled for this speaker are skipped without embedding.
        `replace` drops the speaker's previous embeddings, once at least one new file embedded.
        """
        return self._enroll(name, [Path(f) for f in files], replace, advance=lambda n=1: None)

    def enroll_folder(self, data_dir: str | Path, replace: bool = False, progress: bool = True) -> list[EnrollResult]:
        """Enroll every speaker folder of `data_dir` (`DATA_DIR/<speaker>/**/<audio>`) under the folder's name.

        Audio files lying directly in `data_dir` belong to no speaker and are left out.
        """
        from speakerid.progress import progress_bar

        sources, rejected = scan(data_dir)
        by_speaker: dict[str, list[Path]] = {}
        for source in sources:
            by_speaker.setdefault(source.speaker, []).append(source.path)
        results = [EnrollResult(Path(r.path).name, failed=[(r.path, r.reason)]) for r in rejected if Path(r.path).is_dir()]
        with progress_bar("enrolling", total=len(sources), enabled=progress) as advance:
            for speaker, files in sorted(by_speaker.items()):
                try:
                    _check_name(speaker)
                except RegistryError as err:
                    results.append(EnrollResult(speaker, failed=[(str(files[0].parent), str(err))]))
                    advance(len(files))
                    continue
                results.append(self._enroll(speaker, files, replace, advance))
        return sorted(results, key=lambda r: r.speaker)

    def enroll_audio(self, name: str, audio: np.ndarray, source_name: str, sha256: str,
                     replace: bool = False) -> EnrollResult:
        """Enroll `name` from decoded audio (an upload): float32 mono at the encoder's rate, with its file's SHA-256."""
        name = _check_name(name)
        result = EnrollResult(name)
        if not replace and sha256 in self.registry.enrolled_hashes(name):
            result.skipped.append(source_name)
        else:
            try:
                vector = self.encoder.embed(audio, source_name)
            except AudioError as err:
                result.failed.append((source_name, err.reason))
            else:
                seconds = len(audio) / self.encoder.sample_rate
                result.added = self.registry.add(name, vector[None], [(sha256, source_name, seconds)], self.encoder, replace)
        result.embeddings = self._count(name)
        return result

    def _enroll(self, name: str, files: list[Path], replace: bool, advance) -> EnrollResult:
        name = _check_name(name)
        result = EnrollResult(name)
        done = set() if replace else self.registry.enrolled_hashes(name)
        vectors, sources = [], []
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as err:
                result.failed.append((str(path), "no such file" if isinstance(err, FileNotFoundError) else f"cannot read ({err.strerror})"))
                advance()
                continue
            sha256 = hashlib.sha256(data).hexdigest()
            if sha256 in done:
                result.skipped.append(str(path))
                advance()
                continue
            try:
                audio = decode_audio(data, self.encoder.sample_rate, name=str(path))
                vectors.append(self.encoder.embed(audio, str(path)))
            except AudioError as err:
                result.failed.append((str(path), err.reason))
            else:
                done.add(sha256)
                sources.append((sha256, path.name, len(audio) / self.encoder.sample_rate))
            advance()
        if vectors:
            result.added = self.registry.add(name, np.stack(vectors), sources, self.encoder, replace)
        result.embeddings = self._count(name)
        return result

    def _count(self, name: str) -> int:
        return next((s["embeddings"] for s in self.registry.speakers() if s["name"] == name), 0)

    # ------------------------------------------------------------ identify and verify

    def identify(self, audio: str | Path | np.ndarray, top_k: int = 3, threshold: float | None = None) -> OpenSetAnswer:
        """The enrolled speaker whose reference is closest (cosine) to a recording, or "unknown" under the threshold.

        `audio` is a file, or float32 mono samples at the encoder's rate. A long recording is
        scored per chunk and aggregated: the encoder averages its chunks' embeddings into one
        (L2-normalised) embedding, and that embedding is scored against every reference.
        """
        names, references = self.registry.references()
        if not names:
            raise RegistryError(f"{self.registry.path} has no enrolled speakers; enroll some first (speakerid enroll NAME FILES...)")
        scores = references @ _embed_input(self.encoder, audio)
        order = np.argsort(-scores, kind="stable")
        best = float(scores[order[0]])
        known, value, source = _decide(best, threshold, self.registry.threshold, self.encoder)
        return OpenSetAnswer(
            speaker=UNKNOWN if known is False else names[order[0]],
            score=best,
            known=known,
            threshold=value,
            threshold_source=source,
            ranking=[(names[i], float(scores[i])) for i in order[: max(1, top_k)]],
        )

    def verify(self, a: str | Path | np.ndarray, b: str | Path | np.ndarray, threshold: float | None = None) -> Verification:
        """Whether two recordings share a speaker, judged with the registry's encoder and threshold."""
        return _verify(self.encoder, a, b, threshold, self.registry.threshold)

    # ------------------------------------------------------------ passthroughs

    def speakers(self) -> list[dict]:
        return self.registry.speakers()

    def rename(self, old: str, new: str) -> None:
        self.registry.rename(old, new)

    def remove(self, name: str) -> None:
        self.registry.remove(name)

    def close(self) -> None:
        self.registry.close()


def _verify(encoder: "Encoder", a, b, threshold: float | None, calibrated: dict | None) -> Verification:
    score = float(_embed_input(encoder, a) @ _embed_input(encoder, b))
    same, value, source = _decide(score, threshold, calibrated, encoder)
    return Verification(score, same, value, source)


def verify(a: str | Path | np.ndarray, b: str | Path | np.ndarray, model: str | Path | None = None,
           registry: str | Path | None = None, threshold: float | None = None, device: str = "auto") -> Verification:
    """Whether two recordings share a speaker.

    With a registry, its encoder and calibrated threshold are used; without one, `model` (or
    GE2E) and that encoder's default threshold, reported as "default (uncalibrated)".
    """
    if registry is not None:
        voices = VoiceRegistry(registry, model, device, create=False)
        try:
            return voices.verify(a, b, threshold)
        finally:
            voices.close()
    from speakerid.encoders import load_encoder

    return _verify(load_encoder(model, device), a, b, threshold, None)
