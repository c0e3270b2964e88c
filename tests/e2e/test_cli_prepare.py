"""The preparation commands through the real `speakerid` executable, on a small real subset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import link_subset

from speakerid.corpus import Corpus

SPEAKERID = str(Path(sys.executable).with_name("speakerid"))


def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([SPEAKERID, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == expect, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def corpus(dsp20, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    data = link_subset(dsp20, root / "data", speakers=3, per_speaker=5)
    done = run("prepare", data, "--out", root / "corpus", "--chunk", "5", "-q")
    assert "train" in done.stdout and "15 recordings" in done.stdout
    return root / "corpus"


def test_help_is_fast_to_import():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "speakerid", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "prepare" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not {"torch", "librosa", "matplotlib", "fastapi", "soundfile"} & imported


def test_plot_mfcc_draws_one_panel_per_speaker(corpus, tmp_path):
    run("plot-mfcc", corpus, "--out", tmp_path / "mfcc.png", "--n-mfcc", "20")
    with Image.open(tmp_path / "mfcc.png") as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
    done = run("plot-mfcc", corpus, "--out", tmp_path / "mfcc.png", expect=1)
    assert "exists" in done.stderr and "Traceback" not in done.stderr


def test_export_chunks_writes_each_chunk_and_resumes(corpus, tmp_path):
    c = Corpus.open(corpus)
    out = tmp_path / "chunks"
    done = run("export-chunks", corpus, "--out", out, "-q")
    files = sorted(out.rglob("*.wav"))
    assert len(files) == len(c.chunk_label) and f"wrote {len(files)}" in done.stdout
    assert {f.relative_to(out).parts[0] for f in files} == {"train", "validation", "test"}
    first = out / "train" / c.labels[0]
    sample = sorted(first.glob("*_0001.wav"))[0]  # the second chunk of that recording
    audio, rate = sf.read(sample, dtype="int16")
    recording = f"{c.labels[0]}/{sample.name.rsplit('_', 1)[0]}.flac"
    index = [i for i in range(len(c.chunk_label)) if c.recording_ids[c.chunk_recording[i]] == recording][1]
    assert rate == 16000
    np.testing.assert_array_equal(audio, c.chunk_audio(index))

    sample.unlink()  # as if interrupted before this file
    assert "wrote 1 chunk" in run("export-chunks", corpus, "--out", out, "-q").stdout
    (out / "mine.txt").write_text("user data")
    done = run("export-chunks", corpus, "--out", out, "-q", expect=1)
    assert "would not write" in done.stderr and (out / "mine.txt").exists()


def test_recordings_sharing_a_name_export_to_distinct_files(dsp20, tmp_path):
    speaker = sorted(p for p in dsp20.iterdir() if p.is_dir())[0]
    audio, rate = sf.read(speaker / "take01.flac", dtype="int16")
    for clip, name in ((audio[: 7 * rate], "take.wav"), (audio[7 * rate : 14 * rate], "take.flac"),
                        (audio[14 * rate : 21 * rate], "other.wav")):
        (tmp_path / "data" / "alice").mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "data" / "alice" / name, clip, rate)
    run("prepare", tmp_path / "data", "--out", tmp_path / "corpus", "--val", "0", "--test", "0", "-q")
    done = run("export-chunks", tmp_path / "corpus", "--out", tmp_path / "chunks", "-q")
    names = sorted(f.name for f in (tmp_path / "chunks").rglob("*.wav"))
    assert names == ["other_0000.wav", "other_0001.wav", "take.flac_0000.wav", "take.flac_0001.wav",
                     "take.wav_0000.wav", "take.wav_0001.wav"] and "wrote 6" in done.stdout


def test_export_images_writes_rgb_pictures(corpus, tmp_path):
    run("export-images", corpus, "--out", tmp_path / "img", "--split", "test", "--format", "jpg", "-q")
    files = sorted((tmp_path / "img").rglob("*.jpg"))
    assert len(files) == len(Corpus.open(corpus).split_indices("test"))
    with Image.open(files[0]) as image:
        assert image.size == (300, 300) and image.mode == "RGB"
        assert np.asarray(image).std() > 10  # a picture, not a blank


def test_prepare_reports_rejected_files_in_its_exit_status(dsp20, tmp_path):
    data = link_subset(dsp20, tmp_path / "data", speakers=2, per_speaker=2)
    broken = next(data.iterdir()) / "broken.flac"
    broken.write_bytes(b"fLaC but not really")
    done = run("prepare", data, "--out", tmp_path / "corpus", "-q", expect=3)
    assert f"rejected: {broken}" in done.stderr and "Traceback" not in done.stderr
    assert "broken.flac" in (tmp_path / "corpus" / "rejected.csv").read_text()
    done = run("prepare", tmp_path / "missing", "--out", tmp_path / "c2", expect=1)
    assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
