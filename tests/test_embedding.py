"""embed_files: the threaded, batched pipeline gives the embeddings of the encoders themselves, in order, with failures reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_run
from speakerid.audio import SAMPLE_RATE, load_audio
from speakerid.embedding import embed_files
from speakerid.encoders import Ge2eEncoder, RunEncoder, at_speech_level
from speakerid.models import build_model
from speakerid.features import FeatureConfig


@pytest.fixture(scope="module")
def ge2e() -> Ge2eEncoder:
    return Ge2eEncoder("cpu")


@pytest.fixture(scope="module")
def files(dsp20) -> list[Path]:
    """Real recordings of different lengths: whole ~41-s takes and short read sentences."""
    so125 = dsp20.parent / "so125"
    return sorted(dsp20.glob("*/take01.flac"))[:3] + sorted(so125.glob("*/*.flac"))[:5]


def test_pipeline_equals_resemblyzer(files, ge2e, resemblyzer):
    """Resemblyzer's embedding of its own preprocessed audio, brought to speakerid's speech level."""
    reference = resemblyzer.VoiceEncoder("cpu", verbose=False)
    results = list(embed_files(ge2e, files[:4], workers=2))
    for path, result in zip(files, results):
        expected = reference.embed_utterance(at_speech_level(resemblyzer.preprocess_wav(path)))
        np.testing.assert_allclose(result.vector, expected, atol=1e-5)


def test_pipeline_equals_embed_many_and_keeps_the_order(files, ge2e, tmp_path):
    missing, foreign = tmp_path / "gone.wav", tmp_path / "notes.wav"
    foreign.write_text("not audio")
    paths = files[:2] + [missing] + files[2:5] + [foreign] + files[5:]
    results = list(embed_files(ge2e, paths, workers=3))
    assert [r.path for r in results] == paths
    assert results[2].failed == [(str(missing), "no such file")] and results[2].vector is None
    assert "not a readable audio file" in results[6].failed[0][1] and results[6].sha256 is not None
    good = [r for r in results if not r.failed]
    expected = ge2e.embed_many([load_audio(p) for p in files])
    np.testing.assert_allclose(np.stack([r.vector for r in good]), expected, atol=1e-6)
    assert [r.names for r in good] == [[str(p)] for p in files]
    assert all(abs(r.seconds - len(load_audio(r.path)) / SAMPLE_RATE) < 1e-9 for r in good)


def test_one_worker_and_tiny_batches_give_the_same(files, ge2e):
    small = Ge2eEncoder("cpu", batch_size=3)  # pieces split across batches
    one = np.stack([r.vector for r in embed_files(small, files, workers=1)])
    many = np.stack([r.vector for r in embed_files(ge2e, files, workers=4)])
    np.testing.assert_allclose(one, many, atol=1e-6)


def test_clips_and_silence_are_reported_per_piece(files, ge2e, tmp_path):
    import soundfile as sf

    speech = load_audio(files[0])[: 5 * SAMPLE_RATE]
    mixed = tmp_path / "speech-then-silence.wav"
    sf.write(mixed, np.concatenate([speech, np.zeros(4 * SAMPLE_RATE, dtype=np.float32)]), SAMPLE_RATE)
    result = next(embed_files(ge2e, [mixed], clip_seconds=2.0))
    assert len(result.names) + len(result.failed) == 4  # 9 s: clips at 0, 2, 4, 6 s; the last 1 s left out
    assert result.failed and all("speech" in why for _, why in result.failed)  # the silent clips
    expected = ge2e.embed_many([speech[: 2 * SAMPLE_RATE], speech[2 * SAMPLE_RATE : 4 * SAMPLE_RATE]])
    np.testing.assert_allclose(result.vectors[:2], expected, atol=1e-6)
    assert result.vector is None  # several pieces: no single whole-recording vector


def test_skip_is_asked_with_the_file_hash(files, ge2e):
    import hashlib

    first = hashlib.sha256(files[0].read_bytes()).hexdigest()
    results = list(embed_files(ge2e, files[:2], skip=lambda index, sha256: sha256 == first))
    assert results[0].skipped and results[0].vectors is None and results[0].sha256 == first
    assert not results[1].skipped and results[1].vector is not None


def test_an_encoder_without_stages_embeds_file_by_file(files, tmp_path):
    torch.manual_seed(0)
    run = write_run(build_model("cnn", 4, FeatureConfig()), tmp_path / "run")
    encoder = RunEncoder.from_dir(run, "cpu")
    results = list(embed_files(encoder, files[:4], workers=2))
    np.testing.assert_allclose(np.stack([r.vector for r in results]),
                               encoder.embed_many([load_audio(p) for p in files[:4]]), atol=1e-6)


def test_an_abandoned_pipeline_stops(files, ge2e):
    results = embed_files(ge2e, files * 3, workers=2)
    assert next(results).vector is not None
    results.close()  # the pool shuts down without embedding the rest
