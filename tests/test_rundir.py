"""Damaged, foreign or incomplete run directories give one clear error, never a traceback or code execution."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from speakerid.errors import RunError
from speakerid.identify import Identifier
from speakerid.rundir import load_run
from speakerid.training import TrainConfig, train


@pytest.fixture(scope="module")
def run(small_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rundir") / "run"
    train(small_corpus, out, TrainConfig(model="cnn", epochs=1), progress=False)
    return out


def damaged(run: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    change(copy)
    return copy


def test_a_good_run_loads(run):
    loaded = load_run(run)
    assert loaded.model.name == "cnn" and len(loaded.labels) == 4 and not loaded.model.training


@pytest.mark.parametrize("change, message", [
    (lambda d: shutil.rmtree(d), "no such run directory"),
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "not readable run configuration"),
    (lambda d: (d / "config.json").write_text(json.dumps({"format": "something else"})), "not a speakerid run"),
    (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]), "truncated or foreign"),
    (lambda d: (d / "model.safetensors").write_bytes(b"PK\x03\x04 a zip file, say"), "truncated or foreign"),
    (lambda d: save_file({"weight": torch.zeros(3)}, str(d / "model.safetensors")), "does not fit the model"),
    (lambda d: (d / "labels.json").write_text(json.dumps(["just one"])), "speaker names"),
])
def test_damaged_runs_are_refused_clearly(run, tmp_path, change, message):
    with pytest.raises(RunError, match=message):
        Identifier.load(damaged(run, tmp_path, change))


def test_a_pickle_in_place_of_the_checkpoint_is_not_executed(small_corpus, run, tmp_path):
    copy = damaged(run, tmp_path, lambda d: None)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"epoch": 1, "model": Exploit()}, copy / "checkpoint.pt")
    with pytest.raises(RunError, match="not a readable checkpoint"):
        train(small_corpus, copy, TrainConfig(model="cnn", epochs=2), resume=True, progress=False)
    assert not marker.exists()


def test_the_cli_prints_one_line_for_a_broken_run(run, tmp_path):
    broken = damaged(run, tmp_path, lambda d: (d / "model.safetensors").write_bytes(b"garbage"))
    speakerid = Path(sys.executable).with_name("speakerid")
    done = subprocess.run([str(speakerid), "identify", str(broken), str(run / "config.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error:") and "truncated or foreign" in done.stderr
    assert "Traceback" not in done.stderr
