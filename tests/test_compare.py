"""compare: the chunk x features x model study, on a 3-speaker subset of dsp20 with a budget of seconds."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, held_elsewhere, link_subset
from speakerid.compare import compare, parse_budget, prepare_corpora
from speakerid.compare_cells import Cell, assign_cells, format_duration, plan_workers, worker_env
from speakerid.errors import SpeakerIdError
from speakerid.training import TrainConfig, train

SPEAKERID = str(Path(sys.executable).with_name("speakerid"))
BUDGET = 2 / 60  # two seconds: one or two epochs a cell


def quiet(line: str) -> None:
    pass


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def three_speakers(dsp20, tmp_path_factory) -> Path:
    return link_subset(dsp20, tmp_path_factory.mktemp("compare") / "data", speakers=3)


# ---------------------------------------------------------------- scheduling and parsing, no audio


def test_workers_are_every_gpu_or_the_cpu_and_as_many_as_asked():
    assert plan_workers(None, 0) == ["cpu"]
    assert plan_workers(None, 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert plan_workers(["auto"], 2) == ["cuda:0", "cuda:1"]
    assert plan_workers(["cpu", "cpu"], 0) == ["cpu", "cpu"]
    assert plan_workers(["cuda", "cuda:1"], 2) == ["cuda:0", "cuda:1"]
    with pytest.raises(SpeakerIdError, match="has 2 visible GPUs"):
        plan_workers(["cuda:2"], 2)
    with pytest.raises(SpeakerIdError, match="no usable CUDA GPU"):
        plan_workers(["cuda:0"], 0)
    with pytest.raises(SpeakerIdError, match="not one of auto, cpu"):
        plan_workers(["tpu"], 0)


def test_a_gpu_worker_sees_only_its_own_gpu():
    assert worker_env("cpu") == ({}, "cpu")
    assert worker_env("cuda:3") == ({"CUDA_VISIBLE_DEVICES": "3"}, "cuda:0")
    # When this process already sees a subset of the GPUs, cuda:1 is the second of them.
    assert worker_env("cuda:1", "4,6") == ({"CUDA_VISIBLE_DEVICES": "6"}, "cuda:0")


def test_cells_are_dealt_round_robin():
    cells = [Cell(c, "mfcc", m) for c in (3.0, 5.0) for m in ("cnn", "lstm", "tdnn")]
    shares = assign_cells(cells, 4)
    assert [len(s) for s in shares] == [2, 2, 1, 1]
    assert sorted(c.name for s in shares for c in s) == sorted(c.name for c in cells)
    assert assign_cells(cells, 1) == [cells]
    assert cells[0].name == "3s-mfcc-cnn"


def test_budget_durations():
    assert format_duration(45) == "45 s" and format_duration(90) == "90 s" and format_duration(150) == "2.5 min" and format_duration(1090) == "18 min"
    assert format_duration(5400) == "90 min" and format_duration(9000) == "2.5 h"
    assert parse_budget("5m") == 5
    assert parse_budget("90s") == 1.5
    assert parse_budget("1.5h") == 90
    assert parse_budget("2") == 2
    assert parse_budget("0") == 0  # compare itself refuses it, with the reason
    for bad in ("five", "-1m", "5 days", ""):
        with pytest.raises(SpeakerIdError, match="not a duration"):
            parse_budget(bad)


# ---------------------------------------------------------------- bad input: one line, before any training


@pytest.mark.parametrize("case, match", [
    ("one speaker", "holds one speaker folder"),
    ("chunk longer than every recording", "chunk length 60 s is longer than every recording"),
    ("unknown model", "unknown model 'gru'"),
    ("unknown features", "feature kind 'mfccs' is unknown"),
    ("zero budget", "budget must be more than zero"),
    ("resnet50 on log-mel only", "no cell can be built: an MFCC image needs feature kind 'mfcc'"),
    ("pretrained without resnet50", "pretrained weights are for resnet50 cells"),
])
def test_bad_input_is_refused_before_any_training(case, match, three_speakers, dsp20, tmp_path):
    data = link_subset(dsp20, tmp_path / "one", speakers=1) if case == "one speaker" else three_speakers
    kwargs = {"chunks": [3], "features": ["mfcc"], "models": ["cnn"], "budget_minutes": BUDGET}
    kwargs.update({
        "chunk longer than every recording": {"chunks": [3, 60]},
        "unknown model": {"models": ["cnn", "gru"]},
        "unknown features": {"features": ["mfccs"]},
        "zero budget": {"budget_minutes": 0},
        "resnet50 on log-mel only": {"features": ["logmel"], "models": ["resnet50"]},
        "pretrained without resnet50": {"pretrained": tmp_path / "resnet50.pth"},
    }.get(case, {}))
    with pytest.raises(SpeakerIdError, match=match) as caught:
        compare(data, tmp_path / "study", progress=False, say=quiet, **kwargs)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "study" / "cells").exists()


def test_a_study_has_one_writer(three_speakers, tmp_path):
    """Run again, a study continues where it stopped; run twice at once, both would train the same cells
    into the same folders. The second is refused at once, before it writes anything."""
    study = tmp_path / "study"
    study.mkdir()
    with held_elsewhere(study):
        with pytest.raises(SpeakerIdError, match="another `speakerid compare` is running in"):
            compare(three_speakers, study, chunks=[3], features=["mfcc"], models=["cnn"], budget_minutes=BUDGET,
                    progress=False, say=quiet)
        assert not any(study.iterdir())


# ---------------------------------------------------------------- the split


def test_the_split_by_recording_is_the_same_for_every_chunk_length(tmp_path):
    """so125's sentences last 2-20 s (these three speakers' 2.1-4.6 s): at 4 s most are one padded chunk, in the same split."""
    so125 = DATA / "so125"
    assert so125.is_dir(), f"the shared recordings are missing: expected {so125}"
    data = link_subset(so125, tmp_path / "data", speakers=3, pattern="*.flac")  # the published sentences only
    corpora = prepare_corpora(data, tmp_path / "study", [2.0, 4.0], seed=7, say=quiet)

    def split_of(corpus):
        return {corpus.recording_ids[r]: int(s) for r, s in zip(corpus.chunk_recording, corpus.chunk_split)}

    short, long = corpora[2.0], corpora[4.0]
    assert split_of(short) == split_of(long)
    assert len(split_of(long)) == 36  # every recording kept: none is dropped for being shorter than a chunk
    padded = [r for r in long.recordings.values() if r.samples < long.chunk_samples]
    assert len(padded) > 18
    assert sorted(set(split_of(long).values())) == [0, 1, 2]  # train, validation and test all present
    for speaker in range(3):
        mine = [s for r, s in split_of(long).items() if r.startswith(long.labels[speaker] + "/")]
        assert sorted(mine).count(2) >= 2  # at least two test sentences a speaker


# ---------------------------------------------------------------- a whole study, resumed, on real speech


def test_study_writes_its_report_and_resumes(three_speakers, tmp_path):
    out = tmp_path / "study"
    said: list[str] = []
    grid = {"chunks": [3, 5], "features": ["mfcc"], "models": ["cnn"], "budget_minutes": BUDGET}
    result = compare(three_speakers, out, progress=False, say=said.append, **grid)

    assert [r["cell"] for r in result.rows] == ["3s-mfcc-cnn", "5s-mfcc-cnn"] and not result.failed
    rows = read_csv(out / "results.csv")
    held_out = []
    for row, cell in zip(rows, ("3s-mfcc-cnn", "5s-mfcc-cnn")):
        metrics = json.loads((out / "cells" / cell / "metrics.json").read_text())  # what `evaluate` wrote
        assert row["cell"] == cell and float(row["chunk_accuracy"]) == metrics["chunk_accuracy"]
        assert float(row["recording_accuracy"]) == metrics["recording_accuracy"]
        worst = min(s["recall"] for s in metrics["per_speaker"].values())
        assert float(row["worst_speaker_accuracy"]) == worst
        assert int(row["epochs"]) >= 1 and int(row["parameters"]) > 100_000 and float(row["chunks_per_second"]) > 0
        assert row["stopped_by"] in ("budget", "patience")
        held_out.append(sorted(r["recording"] for r in metrics["per_recording"]))
    assert held_out[0] == held_out[1] and len(held_out[0]) == 3  # both cells tested on the same recordings
    report = (out / "report.md").read_text()
    assert "| 3 s | mfcc | cnn |" in report and "| 5 s | mfcc | cnn |" in report and "Best here" in report
    for figure in ("accuracy_by_chunk.png", "accuracy_by_time.png"):
        assert (out / figure).stat().st_size > 10_000
    assert any("[1/2] 3s-mfcc-cnn on cpu" in line and "1 cell waiting" in line for line in said)
    assert not (out / "cells" / "3s-mfcc-cnn" / "checkpoint.pt").exists()

    # Again: nothing is trained.
    weights = {cell: (out / "cells" / cell / "model.safetensors").stat().st_mtime_ns for cell in ("3s-mfcc-cnn", "5s-mfcc-cnn")}
    said.clear()
    again = compare(three_speakers, out, progress=False, say=said.append, **grid)
    assert "2 finished earlier, 0 to train" in said[0]
    assert [r["cell"] for r in again.rows] == [r["cell"] for r in result.rows]
    assert all((out / "cells" / c / "model.safetensors").stat().st_mtime_ns == t for c, t in weights.items())

    # An interrupted cell (Ctrl-C after its first epoch was checkpointed) is trained again from scratch.
    (out / "cells" / "5s-mfcc-cnn.json").unlink()

    def interrupt(epoch, row, model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(out / "corpora" / "5s", out / "cells" / "5s-mfcc-cnn", TrainConfig(model="cnn", epochs=50, seed=0),
              force=True, progress=False, on_epoch=interrupt)
    said.clear()
    resumed = compare(three_speakers, out, progress=False, say=said.append, **grid)
    assert "1 finished earlier, 1 to train" in said[0]
    assert (out / "cells" / "3s-mfcc-cnn" / "model.safetensors").stat().st_mtime_ns == weights["3s-mfcc-cnn"]
    config = json.loads((out / "cells" / "5s-mfcc-cnn" / "config.json").read_text())
    assert config["result"] is not None and config["train"]["max_minutes"] == BUDGET
    assert read_csv(out / "cells" / "5s-mfcc-cnn" / "metrics.csv")[0]["epoch"] == "1"
    assert len(resumed.rows) == 2

    with pytest.raises(SpeakerIdError, match="another budget minutes"):
        compare(three_speakers, out, progress=False, say=quiet, **{**grid, "budget_minutes": 1})


def test_cli_runs_cells_side_by_side_in_two_cpu_processes(three_speakers, tmp_path):
    out = tmp_path / "study"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([SPEAKERID, "compare", str(three_speakers), "--out", str(out), "--chunks", "3",
                           "--features", "mfcc,logmel", "--models", "cnn", "--budget", "2s", "--devices", "cpu,cpu"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(out / "results.csv")
    assert [r["cell"] for r in rows] == ["3s-mfcc-cnn", "3s-logmel-cnn"]
    assert {r["device"] for r in rows} == {"cpu worker 1", "cpu worker 2"}
    assert all(r["torch_threads"] == str(max(1, (os.cpu_count() or 1) // 2)) for r in rows)
    assert "report: " in done.stdout and "3s-logmel-cnn" in done.stdout

    bad = subprocess.run([SPEAKERID, "compare", str(three_speakers), "--out", str(tmp_path / "other"), "--budget", "0s"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "budget must be more than zero" in bad.stderr
