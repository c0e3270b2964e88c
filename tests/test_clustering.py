"""Clustering real voices without being told how many there are, and smoothing labels over time."""

from __future__ import annotations

import numpy as np
import pytest

from speakerid import clustering
from speakerid.audio import SAMPLE_RATE, load_audio
from speakerid.clustering import cluster, viterbi
from speakerid.encoders import Ge2eEncoder


@pytest.fixture(scope="module")
def voices(dsp20) -> dict[str, np.ndarray]:
    """GE2E partials (1.6 s every 0.8 s) over 12 s of each of three real dsp20 speakers."""
    ge2e = Ge2eEncoder("cpu")
    speakers = sorted(p for p in dsp20.iterdir() if p.is_dir())[:3]
    out = {}
    for folder in speakers:
        audio = load_audio(folder / "take01.flac")[: 12 * SAMPLE_RATE]
        out[folder.name] = ge2e.embed_units(ge2e.partials(audio, 0.8)[1]).numpy()
    return out


def agreement(labels: np.ndarray, truth: np.ndarray) -> float:
    """The share of items whose cluster's majority speaker is their own."""
    right = sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels))
    return right / len(truth)


def test_finds_how_many_voices_there_are(voices):
    rows = np.concatenate(list(voices.values()))
    truth = np.repeat(np.arange(len(voices)), [len(v) for v in voices.values()])
    order = np.random.default_rng(0).permutation(len(rows))  # the order must not matter
    labels = cluster(rows[order])
    assert labels.max() + 1 == 3 and agreement(labels, truth[order]) >= 0.9
    assert labels[0] == 0  # numbered in order of first appearance
    one = next(iter(voices.values()))
    assert set(cluster(one).tolist()) == {0}
    assert cluster(rows[:2]).tolist() == [0, 0]


def test_long_recordings_cluster_a_subset_and_assign_the_rest(voices, monkeypatch):
    rows = np.concatenate(list(voices.values()))
    truth = np.repeat(np.arange(len(voices)), [len(v) for v in voices.values()])
    monkeypatch.setattr(clustering, "MAX_WINDOWS", len(rows) // 2)
    labels = cluster(rows)
    assert len(labels) == len(rows) and labels.max() + 1 == 3 and agreement(labels, truth) >= 0.9


def test_viterbi_pays_for_each_change():
    scores = np.array([[1.0, 0.0]] * 5 + [[0.4, 0.6]] + [[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    assert viterbi(scores, 0.0).tolist() == [0] * 5 + [1] + [0] * 5 + [1] * 5  # free changes follow every frame
    assert viterbi(scores, 0.5).tolist() == [0] * 11 + [1] * 5  # one frame's 0.2 does not pay for two changes
