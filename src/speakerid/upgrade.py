"""upgrade-registry: bring a registry of an earlier speakerid (format 1, embeddings only) to the current format.

Format 1 kept each enrolled file's SHA-256, name and embedding, not its audio. The upgrade finds
the enrolled files again by content under the folders it is given, and writes a current registry
holding their audio and the embeddings format 1 recorded. It never half-upgrades: recordings it
cannot find stop it (unless told to leave them out), and the old file is kept beside the new one
(`voices.db.v1`). Format 1's threshold was calibrated on pairwise trials; calibrate again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
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
    backup: str
    speakers: int
    recordings: int
    missing: list[tuple[str, str]] = field(default_factory=list)  # (speaker, file name) left out
    removed: list[str] = field(default_factory=list)  # speakers left with no recording


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


def upgrade_registry(path: str | Path, data_dirs: list[str | Path], drop_missing: bool = False,
                     progress: bool = True) -> UpgradeResult:
    """Upgrade the format-1 registry at `path` in place, finding its enrolled files under `data_dirs`."""
    from speakerid.audio import is_audio_file, load_audio, to_int16
    from speakerid.progress import progress_bar
    from speakerid.registry import Enrollment, Registry

    path = Path(path)
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
