"""Shared fixtures: where the real recordings live, and small real subsets of them."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DSP20 = DATA / "dsp20"
FSDD = DATA / "fsdd"


def _require(path: Path) -> Path:
    assert path.is_dir(), f"the shared recordings are missing: expected {path} (../shared/data beside the repo)"
    return path


@pytest.fixture(scope="session")
def dsp20() -> Path:
    return _require(DSP20)


@pytest.fixture(scope="session")
def fsdd() -> Path:
    return _require(FSDD)


def link_subset(source: Path, dest: Path, speakers: int, per_speaker: int | None = None, pattern: str = "*") -> Path:
    """A data folder of symbolic links to the first `speakers` x `per_speaker` real recordings."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir())[:speakers]:
        (dest / folder.name).mkdir(parents=True)
        for f in sorted(folder.glob(pattern))[:per_speaker]:
            (dest / folder.name / f.name).symlink_to(f)
    return dest
