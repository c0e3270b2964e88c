"""What a newcomer meets in the first hour, through the real `speakerid` executable: help, version,
hints that point the right way, exit statuses, files Unix tools read, and training's stop message."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import link_subset

from speakerid.audio import load_audio, write_wav
from speakerid.cli import score_and_threshold

SPEAKERID = str(Path(sys.executable).with_name("speakerid"))


def run(*args, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([SPEAKERID, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == expect, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.parametrize("command, usage", [
    ("prepare", "Usage: speakerid prepare [OPTIONS] DATA_DIR"),
    ("identify", "Usage: speakerid identify [OPTIONS] [RUN] FILE..."),
    ("enroll", "Usage: speakerid enroll [OPTIONS] FILE...|FOLDER"),
    ("speakers rename", "Usage: speakerid speakers rename [OPTIONS] OLD NEW"),
    ("demo", "Usage: speakerid demo [OPTIONS] [WORK]"),
    ("", "Usage: speakerid [OPTIONS] COMMAND [ARGS]..."),
])
def test_help_shows_what_to_type(command, usage):
    done = run(*command.split(), "--help")
    text = " ".join(done.stdout.split())
    assert usage in text
    for placeholder in ("<bool>", "<list[", "{", "}"):
        assert placeholder not in done.stdout, (placeholder, done.stdout)


def test_version():
    from speakerid import __version__

    assert run("--version").stdout.strip() == f"speakerid {__version__}"


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory) -> Path:
    """A cnn stopped by --max-minutes after its first epoch of 50."""
    out = tmp_path_factory.mktemp("usability") / "run"
    done = run("train", small_corpus, "--out", out, "--epochs", "50", "--max-minutes", "0.0001", "--n-mfcc", "20",
               "--model", "cnn")
    assert "stopped after epoch 1 of 50: --max-minutes 0.0001 reached" in done.stdout
    assert re.search(r"training cnn .* (\d+)/\1 ", done.stderr), done.stderr  # the bar ends full, not at 1/50 epochs
    return out


def test_files_end_lines_as_unix_tools_expect(small_corpus, trained):
    for path in [*(small_corpus / name for name in ("chunks.csv", "recordings.csv", "rejected.csv")),
                 trained / "metrics.csv"]:
        data = path.read_bytes()
        assert b"\n" in data and b"\r" not in data, path


def test_exit_status_is_1_when_every_input_failed_and_3_when_some_did(trained, small_corpus, tmp_path):
    good = next(Path(json.loads((small_corpus / "corpus.json").read_text())["data_dir"]).rglob("*.flac"))
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    run("identify", trained, tmp_path / "broken.wav", tmp_path / "missing.wav", expect=1)
    run("identify", trained, tmp_path / "broken.wav", good, expect=3)
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(3 * 16000, dtype=np.float32))
    run("enroll", "--registry", tmp_path / "r.db", "--name", "mute", silent, tmp_path / "broken.wav", expect=1)
    run("enroll", "--registry", tmp_path / "r.db", "--name", "alice", silent, good, expect=3)


def test_hints_point_the_right_way(trained, dsp20, tmp_path):
    data = link_subset(dsp20, tmp_path / "voices", speakers=1, per_speaker=1)
    done = run("train", data, "--out", tmp_path / "run", expect=1)
    assert f"speakerid prepare {data} --out voices-corpus" in done.stderr
    assert f"--out {data}" not in done.stderr  # never into the user's recordings
    recording = next(data.rglob("*.flac"))
    done = run("identify", recording, recording, expect=1)
    assert "is a recording, not a run directory" in done.stderr and "--registry" in done.stderr
    assert "train" not in done.stderr
    done = run("identify", trained, data, expect=1)
    assert f"{data}: is a folder, not an audio file" in done.stderr
    run("enroll", "--registry", tmp_path / "r.db", "--name", "alice", recording)
    done = run("speakers", "remove", "bob", "--registry", tmp_path / "r.db", expect=1)
    assert f"speakerid speakers list --registry {tmp_path / 'r.db'}" in done.stderr
    done = run("enroll", "--registry", tmp_path / "r.db", "--name", "alice", dsp20 / recording.parent.name / "take02.flac")
    assert "alice was enrolled already" in done.stderr


def test_a_score_under_the_threshold_never_prints_equal_to_it(dsp20, tmp_path):
    assert score_and_threshold(0.8695, 0.87) == ("0.8695", "0.8700")
    assert score_and_threshold(0.91234, 0.87) == ("0.912", "0.870")
    takes = sorted(p for p in dsp20.iterdir() if p.is_dir())[:2]
    enroll, other = tmp_path / "enroll.wav", tmp_path / "other.wav"
    write_wav(enroll, load_audio(takes[0] / "take01.flac")[: 10 * 16000])
    write_wav(other, load_audio(takes[1] / "take01.flac")[: 10 * 16000])
    run("enroll", "--registry", tmp_path / "r.db", "--name", "alice", enroll, "-q")
    score = json.loads(run("identify", "--registry", tmp_path / "r.db", other, "--json").stdout)[0]["score"]
    line = run("identify", "--registry", tmp_path / "r.db", other, "--threshold", str(score + 0.0002)).stdout
    shown = re.search(r"closest alice ([\d.]+) < ([\d.]+)", line)
    assert shown and float(shown[1]) < float(shown[2]), line
    line = run("verify", enroll, other, "--threshold", str(score + 0.0002)).stdout
    shown = re.search(r"score ([\d.]+): different speakers \(threshold ([\d.]+)", line)
    assert shown and float(shown[1]) < float(shown[2]), line
