"""Voice activity on real speech: regions where a real sentence was placed, none in noise or silence, parity
with the TorchScript model the silero-vad wheel ships, block-wise runs, quiet and 8-kHz audio."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from speakerid import vad
from speakerid.audio import SAMPLE_RATE, load_audio, to_int16
from speakerid.meetings import trim_silence
from speakerid.vad import FRAME, FRAME_SECONDS, VadConfig, VoiceDetector, regions_from_probabilities, speech_regions, speech_seconds


@pytest.fixture(scope="module")
def detector() -> VoiceDetector:
    return VoiceDetector()


@pytest.fixture(scope="module")
def placed(so125) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Two real so125 sentences trimmed of silence, placed at known times in faint noise."""
    first, second = (trim_silence(load_audio(path)) for path in sorted(so125.glob("so0005/*.flac"))[:2])
    audio = (np.random.default_rng(0).standard_normal(14 * SAMPLE_RATE) * 1e-3).astype(np.float32)
    truth = []
    for start, word in ((1.0, first), (8.0, second)):
        at = int(start * SAMPLE_RATE)
        audio[at : at + len(word)] += word
        truth.append((start, start + len(word) / SAMPLE_RATE))
    return audio, truth


def test_regions_cover_the_speech_and_nothing_else(placed):
    audio, truth = placed
    regions = speech_regions(audio)
    assert len(regions) == 2, regions
    for (start, end), (true_start, true_end) in zip(regions, truth):
        # the reference keeps a sentence's soft onset (10 dB over its noise floor), which Silero hears up to ~0.45 s late
        assert abs(start - true_start) < 0.5 and abs(end - true_end) < 0.4, (regions, truth)
    assert speech_seconds(audio) == pytest.approx(sum(e - s for s, e in regions))


def test_no_speech_in_noise_silence_or_nothing(detector):
    noise = (np.random.default_rng(1).standard_normal(5 * SAMPLE_RATE) * 0.05).astype(np.float32)
    assert detector.regions(noise) == []
    assert detector.regions(np.zeros(3 * SAMPLE_RATE, dtype=np.float32)) == []
    assert detector.regions(np.zeros(0, dtype=np.float32)) == []
    assert speech_seconds(noise) == 0.0


def test_quiet_and_8khz_audio_still_found(placed, fsdd):
    audio, truth = placed
    quiet = speech_regions(audio * np.float32(10 ** (-30 / 20)))
    assert len(quiet) == 2 and abs(quiet[0][0] - truth[0][0]) < 0.25
    digit = load_audio(sorted(fsdd.glob("*/*.wav"))[0], 8000)  # a spoken digit at its own 8 kHz
    padded = np.concatenate([np.zeros(8000, np.float32), digit, np.zeros(8000, np.float32)])
    regions = speech_regions(padded, sample_rate=8000)
    assert len(regions) == 1 and 0.7 < regions[0][0] < 1.2


def test_matches_the_shipped_torchscript_model(detector, dsp20):
    """The network rebuilt from the wheel's safetensors against the wheel's TorchScript model. The two files
    hold differently trained weights (correlated, not equal), so the check is agreement, not equality."""
    location = Path(list(importlib.util.find_spec("silero_vad").submodule_search_locations)[0])
    jit = torch.jit.load(str(location / "data" / "silero_vad.jit")).eval()
    audio = load_audio(sorted(dsp20.glob("*/take03.flac"))[1])[: 20 * SAMPLE_RATE]
    ours = detector.probabilities(audio)
    with torch.no_grad():
        theirs = np.array([jit(torch.from_numpy(audio[i : i + FRAME]), SAMPLE_RATE).item() for i in range(0, len(audio), FRAME)])
    audio_gain = vad.level_gain_db(audio)
    assert audio_gain < 1.0  # the recording is loud enough to need no gain, so both hear the same samples
    assert len(ours) == len(theirs)
    assert np.mean((ours >= 0.5) == (theirs >= 0.5)) > 0.97
    assert np.mean(np.abs(ours - theirs)) < 0.05


def test_blocks_give_the_same_probabilities(detector, placed, monkeypatch):
    audio, _ = placed
    whole = detector.probabilities(audio)
    monkeypatch.setattr(vad, "BLOCK_FRAMES", 7)
    assert np.abs(detector.probabilities(audio) - whole).max() < 1e-5
    assert len(whole) == -(-len(audio) // FRAME)
    pcm = to_int16(audio)  # int16 samples are converted a block at a time, never whole
    assert np.abs(detector.probabilities(pcm) - detector.probabilities(pcm.astype(np.float32) / 32768)).max() < 1e-5


def test_regions_from_probabilities_rules():
    config = VadConfig(threshold=0.5, neg_threshold=0.3, min_speech=0.1, min_silence=0.1, pad=0.0)
    frames = lambda seconds: round(seconds / FRAME_SECONDS)
    probs = np.concatenate([np.zeros(frames(1)), np.full(frames(1), 0.9), np.full(frames(0.05), 0.1),  # a short dip: kept
                            np.full(frames(1), 0.9), np.full(frames(0.5), 0.4),  # between the thresholds: still speech
                            np.zeros(frames(1)), np.full(2, 0.9), np.zeros(frames(1))])  # 64 ms of speech: dropped
    regions = regions_from_probabilities(probs, len(probs) * FRAME_SECONDS, config)
    assert len(regions) == 1
    assert regions[0][0] == pytest.approx(1.0, abs=0.04) and regions[0][1] == pytest.approx(3.55, abs=0.05)
    padded = regions_from_probabilities(probs, len(probs) * FRAME_SECONDS, VadConfig(0.5, 0.3, 0.1, 0.1, pad=0.2))
    assert padded[0][0] == pytest.approx(regions[0][0] - 0.2, abs=0.01)
    with pytest.raises(ValueError):
        VadConfig(threshold=0.3, neg_threshold=0.5)
