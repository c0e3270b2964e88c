"""train -> evaluate -> identify through the real `speakerid` executable, on a small real subset of dsp20."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speakerid

SPEAKERID = str(Path(sys.executable).with_name("speakerid"))


def run(*args, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([SPEAKERID, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == expect, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "run"
    done = run("train", small_corpus, "--out", out, "--model", "cnn", "--features", "mfcc", "--n-mfcc", "30",
               "--epochs", "5", "-q")
    assert "best validation accuracy" in done.stdout
    return out


def test_evaluate_writes_the_report(trained):
    done = run("evaluate", trained, "-q")
    assert "chunk" in done.stdout and "recording" in done.stdout
    for name in ("report.md", "metrics.json", "confusion.png", "curves.png"):
        assert (trained / name).stat().st_size > 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["chunks"] == 4 * 13 and metrics["recordings"] == 4
    assert metrics["chunk_accuracy"] >= 0.75
    assert set(metrics["per_speaker"]) == set(json.loads((trained / "labels.json").read_text()))
    assert "| chunk | 52 |" in (trained / "report.md").read_text()


def test_identify_agrees_with_evaluate_on_the_test_recordings(trained, small_corpus):
    metrics = json.loads((trained / "metrics.json").read_text()) if (trained / "metrics.json").exists() else None
    if metrics is None:
        run("evaluate", trained, "-q")
        metrics = json.loads((trained / "metrics.json").read_text())
    data_dir = Path(json.loads((small_corpus / "corpus.json").read_text())["data_dir"])
    files = [data_dir / r["recording"] for r in metrics["per_recording"]]
    answers = json.loads(run("identify", trained, *files, "--json", "--top-k", "4").stdout)
    assert len(answers) == len(files)
    for answer, expected in zip(answers, metrics["per_recording"]):
        assert answer["speaker"] == expected["predicted"]
        assert answer["probability"] == pytest.approx(expected["probability"], abs=1e-4)
        assert answer["chunks"] == expected["chunks"]
        assert sum(r["probability"] for r in answer["ranking"]) == pytest.approx(1.0, abs=1e-4)


def test_identify_any_length_and_report_unreadable_files(trained, small_corpus, tmp_path):
    data_dir = Path(json.loads((small_corpus / "corpus.json").read_text())["data_dir"])
    speaker = sorted(p for p in data_dir.iterdir())[0]
    audio, rate = sf.read(sorted(speaker.iterdir())[0], dtype="int16")
    sf.write(tmp_path / "short.wav", audio[16000 * 5 : 16000 * 6], rate)  # one second: shorter than a chunk
    long = np.concatenate([audio, audio, audio])
    sf.write(tmp_path / "long.flac", long, rate)  # two minutes
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    done = run("identify", trained, tmp_path / "short.wav", tmp_path / "broken.wav", tmp_path / "long.flac", expect=3)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "short.wav"))
    assert f"{tmp_path / 'long.flac'}: {speaker.name}" in lines[1]
    assert "broken.wav: not a readable audio file" in done.stderr and "Traceback" not in done.stderr

    answers = json.loads(run("identify", trained, tmp_path / "broken.wav", tmp_path / "long.flac", "--json", expect=3).stdout)
    assert "error" in answers[0] and answers[1]["speaker"] == speaker.name and answers[1]["chunks"] == len(long) // 48000


def test_python_api_matches_the_cli(trained, small_corpus):
    identifier = speakerid.Identifier.load(trained)
    data_dir = Path(json.loads((small_corpus / "corpus.json").read_text())["data_dir"])
    path = sorted(sorted(data_dir.iterdir())[1].iterdir())[-1]
    from_file = identifier.identify(path, top_k=2)
    samples = speakerid.load_audio(path)
    from_array = identifier.identify(samples, top_k=2)
    assert from_file.speaker == from_array.speaker
    assert from_file.probability == pytest.approx(from_array.probability, abs=1e-5)


@pytest.mark.parametrize("args, expect, words", [
    (["verify", "only-one.wav"], 2, "Missing argument"),  # usage errors: exit 2, no traceback
    (["train", "CORPUS", "--out", "OUT", "--epochs", "abc"], 2, "Invalid value for '--epochs'"),
    (["train", "CORPUS", "--out", "OUT", "--epochs", "0"], 1, "error: training epochs must be at least 1"),
    (["train", "CORPUS", "--out", "OUT", "--batch-size", "0"], 1, "error: training batch_size must be at least 1"),
    (["train", "CORPUS", "--out", "OUT", "--device", "gpu0"], 1, "error: device 'gpu0' is not one of"),
    (["train", "CORPUS", "--out", "OUT", "--model", "resnet50", "--pretrained", "MISSING"], 1, "error:"),
    (["train", "CORPUS", "--out", "OUT", "--crop", "3-1.5"], 1, "error: training crop must be a range of seconds"),
    (["train", "CORPUS", "--out", "OUT", "--crop", "long"], 1, "error: --crop wants MIN-MAX seconds"),
    (["train", "CORPUS", "--out", "OUT", "--head", "cosface"], 1, "error: training head 'cosface' is unknown"),
    (["train", "CORPUS", "--out", "OUT", "--aug", "echo=0.5"], 1, "error: augmentation settings hold unknown keys ['echo']"),
    (["train", "CORPUS", "--out", "OUT", "--aug", "noise=2"], 1, "error: augmentation noise is a probability"),
])
def test_bad_training_requests_get_one_line_and_leave_nothing(small_corpus, tmp_path, args, expect, words):
    out = tmp_path / "run"
    args = [{"CORPUS": small_corpus, "OUT": out, "MISSING": tmp_path / "no.pth"}.get(a, a) for a in args]
    done = run(*args, expect=expect)
    assert words in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()  # a refused run leaves no folder that would block the next try


def test_identify_refuses_registry_options_without_a_registry(trained, small_corpus):
    done = run("identify", trained, "x.wav", "--threshold", "0.5", expect=1)
    assert "--model and --threshold go with --registry" in done.stderr


def test_resnet50_resumes_with_the_freeze_policy_it_started_with(small_corpus, tmp_path):
    out = tmp_path / "resnet"
    common = ["train", small_corpus, "--out", out, "--model", "resnet50", "--option", "image_size=32", "-q"]
    run(*common, "--epochs", "1")
    run(*common, "--epochs", "2", "--resume")
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 2


def test_margin_head_crops_and_augmentation_from_the_command_line(small_corpus, tmp_path):
    out = tmp_path / "margin"
    run("train", small_corpus, "--out", out, "--epochs", "1", "--head", "arcmargin", "--margin", "0.3", "--crop", "1.5-2.5",
        "--crop-short", "repeat", "--augment", "--aug", "reverb=0.8", "--aug", "noise_snr=[0,10]", "--lr-schedule", "cosine",
        "--weight-decay", "0.01", "-q")
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["head"] == {"kind": "arcmargin", "scale": 32.0, "margin": 0.3}
    settings = config["train"]
    assert settings["crop"] == [1.5, 2.5] and settings["crop_short"] == "repeat" and settings["lr_schedule"] == "cosine"
    assert settings["augment"]["reverb"] == 0.8 and settings["augment"]["noise_snr"] == [0, 10]
    assert settings["augment"]["babble"] > 0  # the rest of the standard set stays on
    assert json.loads(run("evaluate", out, "--json", "-q").stdout)["chunks"] > 0
