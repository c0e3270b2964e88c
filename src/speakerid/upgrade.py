"""upgrade-registry: bring a registry of an earlier speakerid to the current one.

Two things can be out of date. A registry of format 1 (speakerid 0.1) kept each enrolled file's
SHA-256, name and embedding, not its audio: the upgrade finds the enrolled files again by content
under the folders it is given and writes a current registry holding their audio. It never
half-upgrades: recordings it cannot find stop it (unless told to leave them out), and the old file
is kept beside the new one (`voices.db.v1`). And a registry enrolled with an earlier GE2E
(`speakerid.encoders.ge2e_name`: the level its speech is heard at changed) is re-embedded from its
stored audio in one transaction. Either way the threshold was fitted on the old scores: calibrate
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from speakerid.errors import AudioError, RegistryError

__all__ = ["upgrade_registry", "UpgradeResult"]

V1 = "speakerid-registry/1"


@dataclass
class UpgradeResult:
    registry: str
    backup: str | None  # where the format-1 file was kept (None: it was not one)
    speakers: int  # taken over from format 1
    recordings: int
    missing: list[tuple[str, str]] = field(default_factory=list)  # (speaker, file name) left out
    removed: list[str] = field(default_factory=list)  # speakers left with no recording
    reembedded: int = 0  # recordings embedded again by the current GE2E
    encoder: str | None = None  # the base encoder they were embedded with, when they were


def _read_v1(path: Path) -> tuple[dict, list[tuple]]:
    """(encoder record, rows of (speaker, created, updated, sha256, source, vector)) of a format-1 registry."""
    if not path.is_file():
        raise RegistryError(f"{path}: no such registry")
    try:
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything written is in the main file from here on
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if found is None or json.loads(found[0]) != V1:
                raise RegistryError(f"{path} is not a registry of speakerid's format 1; nothing to upgrade")
            encoder = db.execute("SELECT value FROM meta WHERE key = 'encoder'").fetchone()
            rows = db.execute("SELECT s.name, s.created, s.updated, e.sha256, e.source, e.vector FROM embeddings e "
                              "JOIN speakers s ON s.id = e.speaker_id ORDER BY s.name, e.id").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise RegistryError(f"{path} is not a readable registry ({err})") from None
    if encoder is None:
        raise RegistryError(f"{path} has no speakers to upgrade; start a new registry instead")
    return json.loads(encoder[0]), rows


def upgrade_registry(path: str | Path, data_dirs: Sequence[str | Path] = (), drop_missing: bool = False,
                     progress: bool = True) -> UpgradeResult:
    """Upgrade the registry at `path` in place: a format-1 registry from its enrolled files (found under
    `data_dirs`), then a registry enrolled with an earlier GE2E by re-embedding its stored audio."""
    path = Path(path)
    if _format(path) == V1:
        if not data_dirs:
            raise RegistryError(f"{path} was made by speakerid 0.1 and holds no audio; give the folders that hold the files "
                                "its speakers were enrolled from: speakerid upgrade-registry REGISTRY DATA_DIR")
        result = _upgrade_v1(path, data_dirs, drop_missing, progress)
    else:
        result = UpgradeResult(str(path), None, 0, 0)
    result.reembedded, result.encoder = _reembed(path, progress)
    if result.backup is None and not result.reembedded:
        raise RegistryError(f"{path} is up to date; nothing to upgrade")
    return result


def _format(path: Path) -> str | None:
    """The format a registry file says it has (None: no format recorded)."""
    if not path.is_file():
        raise RegistryError(f"{path}: no such registry")
    try:
        db = sqlite3.connect(path)
        try:
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise RegistryError(f"{path} is not a readable registry ({err})") from None
    return None if found is None else json.loads(found[0])


def _reembed(path: Path, progress: bool) -> tuple[int, str | None]:
    """(recordings re-embedded, the encoder's name): a registry whose base encoder is an earlier GE2E gets
    every recording embedded again from its stored audio by the current one; any other, nothing."""
    from speakerid.embedding import embed_stored
    from speakerid.encoders import load_encoder
    from speakerid.registry import Registry

    registry = Registry(path, create=False)
    try:
        records = registry.encoders()
        if not records or records[0].spec.get("kind") != "ge2e":
            return 0, None
        encoder = load_encoder(None)
        if encoder.name == records[0].name:
            return 0, None
        vectors = embed_stored(registry, encoder, registry.recordings(), progress)
        if registry.replace_base(encoder.name, encoder.spec, encoder.dim, vectors):
            raise RegistryError(f"{path}: speakers were enrolled while it was being re-embedded; run the upgrade again")
        return len(vectors), encoder.name
    finally:
        registry.close()


def _upgrade_v1(path: Path, data_dirs: Sequence[str | Path], drop_missing: bool, progress: bool) -> UpgradeResult:
    """Upgrade the format-1 registry at `path` in place, finding its enrolled files under `data_dirs`."""
    from speakerid.audio import is_audio_file, load_audio, to_int16
    from speakerid.progress import progress_bar
    from speakerid.registry import Enrollment, Registry

    backup = path.with_name(path.name + ".v1")
    if backup.exists():
        raise RegistryError(f"{backup} exists already; move it away first (the upgrade keeps the old registry there)")
    encoder, rows = _read_v1(path)
    wanted = {sha256 for *_, sha256, _, _ in rows}
    files: dict[str, Path] = {}
    candidates = [p for d in data_dirs for p in sorted(Path(d).rglob("*")) if p.is_file() and is_audio_file(p)]
    with progress_bar("finding enrolled files", total=len(candidates), enabled=progress) as advance:
        for candidate in candidates:
            try:
                digest = hashlib.sha256(candidate.read_bytes()).hexdigest()
            except OSError:
                digest = ""
            if digest in wanted:
                files.setdefault(digest, candidate)
            advance()
    missing = [(speaker, source) for speaker, _, _, sha256, source, _ in rows if sha256 not in files]
    if missing and not drop_missing:
        shown = ", ".join(f"{s}/{f}" for s, f in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise RegistryError(f"{len(missing)} enrolled file(s) of {path} were not found under "
                            f"{', '.join(map(str, data_dirs))} ({shown}); give the folders that hold them, or pass "
                            "--drop-missing to upgrade without them")

    staging = path.with_name(path.name + ".upgrading")
    for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
        leftover.unlink(missing_ok=True)
    base = SimpleNamespace(name=encoder["name"], spec=encoder["spec"], dim=encoder["dim"])
    new = Registry(staging)
    by_speaker: dict[str, list[Enrollment]] = {}
    try:
        for speaker, _, _, sha256, source, vector in rows:
            if sha256 not in files:
                continue
            try:
                audio = to_int16(load_audio(files[sha256]))
            except AudioError as err:
                raise RegistryError(f"{files[sha256]} matched an enrolled file but does not decode ({err.reason})") from None
            by_speaker.setdefault(speaker, []).append(
                Enrollment(sha256, source, audio, {base.name: np.frombuffer(vector, dtype="<f4")}))
        for speaker, items in by_speaker.items():
            new.add(speaker, items, base)
    finally:
        new.close()
    os.replace(path, backup)
    for suffix in ("-wal", "-shm"):  # empty after the checkpoint; they go with the file they belong to
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{backup}{suffix}")
    os.replace(staging, path)
    speakers = sorted({speaker for speaker, *_ in rows})
    return UpgradeResult(str(path), str(backup), len(by_speaker), sum(map(len, by_speaker.values())), missing,
                         [s for s in speakers if s not in by_speaker])
