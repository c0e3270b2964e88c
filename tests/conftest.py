"""Shared fixtures: where the real recordings live, and small real subsets of them."""

from __future__ import annotations

import fcntl
import importlib
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DSP20 = DATA / "dsp20"
FSDD = DATA / "fsdd"
SO125 = DATA / "so125"


def _require(path: Path) -> Path:
    assert path.is_dir(), f"the shared recordings are missing: expected {path} (../shared/data beside the repo)"
    return path


@pytest.fixture(scope="session")
def dsp20() -> Path:
    return _require(DSP20)


@pytest.fixture(scope="session")
def fsdd() -> Path:
    return _require(FSDD)


@pytest.fixture(scope="session")
def so125() -> Path:
    return _require(SO125)


@contextmanager
def held_elsewhere(folder: Path) -> Iterator[None]:
    """The lock a prepare or compare running in another process holds on its folder (speakerid.locks)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def link_subset(source: Path, dest: Path, speakers: int, per_speaker: int | None = None, pattern: str = "*") -> Path:
    """A data folder of symbolic links to the first `speakers` x `per_speaker` real recordings."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir())[:speakers]:
        (dest / folder.name).mkdir(parents=True)
        for f in sorted(folder.glob(pattern))[:per_speaker]:
            (dest / folder.name / f.name).symlink_to(f)
    return dest


@pytest.fixture(scope="session")
def small_corpus(dsp20, tmp_path_factory) -> Path:
    """4 real speakers x 5 recordings of dsp20, prepared in 3-s chunks (3 train, 1 validation, 1 test recording each)."""
    from speakerid.corpus import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("small")
    data = link_subset(dsp20, root / "data", speakers=4)
    prepare(data, root / "corpus", PrepareConfig(chunk_seconds=3), progress=False)
    return root / "corpus"


@pytest.fixture(scope="session")
def resemblyzer():
    """Resemblyzer's own implementation, as the reference, importable through a stand-in
    `webrtcvad` (see webrtcvad_stand_in.py) set only while it imports."""
    from webrtcvad_stand_in import webrtcvad_stand_in

    stand_in = webrtcvad_stand_in()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "webrtcvad", stand_in)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # resemblyzer imports scipy.ndimage.morphology
            yield importlib.import_module("resemblyzer")


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a background thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def fixed_threshold(voices, value: float) -> dict:
    """A registry scoring with one threshold for every length of audio (a stand-in for `calibrate`)."""
    from speakerid.scoring import Fusion, Scoring

    encoders = [e.name for e in voices.encoders]
    return Scoring(Fusion.single(encoders[0]), [(10.0, value)], [(10.0, value)], "calibrated", {}).to_dict()

def write_run(model, dest: Path, labels: list[str] | None = None, chunk_seconds: float = 3.0) -> Path:
    """A run directory holding `model` as it is (untrained is fine), as `speakerid train` lays one out."""
    from speakerid import rundir
    from speakerid.corpus import write_json

    dest.mkdir(parents=True)
    write_json(dest / rundir.CONFIG_FILE, {
        "format": rundir.FORMAT, "model": model.config(),
        "chunking": {"sample_rate": model.features.sample_rate, "chunk_seconds": chunk_seconds,
                     "hop_seconds": chunk_seconds, "tail": "drop"},
    })
    write_json(dest / rundir.LABELS_FILE, labels or [f"speaker{i}" for i in range(model.n_classes)])
    rundir.save_weights(model, dest / rundir.WEIGHTS_FILE)
    return dest
