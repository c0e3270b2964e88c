"""profile: what a run's training speakers look like in its embedding space, so that a closed-set
answer can say when its recording is unlike all of them.

A run's profile (`profile.json` in the run directory, plain JSON) holds:
- each training speaker's centroid: the L2-normalised mean of the L2-normalised embeddings of up
  to CHUNKS_PER_SPEAKER of its training chunks (seeded);
- thresholds: for a query of n chunks, the cosine similarity to the closest centroid that 95 %
  of the validation recordings' n-chunk stretches reach (n = 1, 2, 4, ..., while there are at
  least MIN_STRETCHES of them). Similarity grows with length for every voice, so a longer query
  is held to the threshold of its own length.

On dsp20 (docs/benchmarks.md, "Non-speech and strangers") this similarity separates the run's
speakers from voices it never heard as well as the answer's probability does on the same corpus
(AUROC 0.94-1.0), and far better on another corpus (0.95-1.0 against 0.67-0.80), where the
probability stays confident.

The profile is made on first use from the run's corpus (as `config.json` records it) and kept
beside the weights; a run whose corpus is gone has none, and its answers say `out_of_set: null`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from speakerid.corpus import Corpus
from speakerid.errors import CorpusError
from speakerid.rundir import PROFILE_FILE, WEIGHTS_FILE, Run

__all__ = ["Profile", "load_profile", "build_profile", "embed_windows", "mean_embedding"]

CHUNKS_PER_SPEAKER = 64
MIN_STRETCHES = 10
PERCENTILE = 5  # a known speaker's recording falls under its length's threshold 5 % of the time
FORMAT = "speakerid-profile/1"


@dataclass
class Profile:
    centroids: np.ndarray  # (n_classes, dim), rows L2-normalised
    thresholds: dict[int, float]  # chunks in a query -> similarity under which it is unlike the training speakers

    def similarity(self, embedding: np.ndarray) -> float:
        """Cosine similarity of an L2-normalised embedding to the closest training speaker."""
        return float((self.centroids @ embedding).max())

    def threshold(self, chunks: int) -> float:
        return self.thresholds[max(n for n in self.thresholds if n <= max(1, chunks))]


def embed_windows(run: Run, windows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """L2-normalised embeddings (N, dim) of int16 windows (N, T)."""
    from speakerid.identify import scores_and_embeddings

    return scores_and_embeddings(run.model, windows, batch_size)[1]


def mean_embedding(embeddings: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of (N, dim) embeddings: a recording's embedding from its chunks'."""
    mean = embeddings.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def build_profile(run: Run, corpus: Corpus, batch_size: int = 64) -> Profile | None:
    """The profile of `run` from its corpus; None without held-out recordings to set thresholds on."""
    rng = np.random.default_rng(0)
    train = corpus.split_indices("train")
    centroids = []
    for label in range(len(run.labels)):
        own = train[corpus.chunk_label[train] == label]
        if len(own) == 0:
            return None
        picked = np.sort(rng.choice(own, min(len(own), CHUNKS_PER_SPEAKER), replace=False))
        centroids.append(mean_embedding(embed_windows(run, np.stack([corpus.chunk_audio(int(i), fill=run.short_fill) for i in picked]), batch_size)))
    centroids = np.stack(centroids)
    held_out = corpus.split_indices("validation")
    if len(held_out) == 0:
        held_out = corpus.split_indices("test")
    by_recording: dict[int, list[int]] = {}
    for i in held_out:
        by_recording.setdefault(int(corpus.chunk_recording[i]), []).append(int(i))
    embedded = [embed_windows(run, np.stack([corpus.chunk_audio(i, fill=run.short_fill)
                                       for i in sorted(chunks, key=lambda c: corpus.chunk_start[c])]),
                              batch_size) for chunks in by_recording.values()]
    thresholds: dict[int, float] = {}
    n = 1
    while True:
        similarities = [float((centroids @ mean_embedding(e[k : k + n])).max())
                        for e in embedded for k in range(0, len(e) - n + 1, n)]
        if len(similarities) < MIN_STRETCHES and thresholds:
            break
        if not similarities:
            return None
        thresholds[n] = float(np.percentile(similarities, PERCENTILE))
        n *= 2
    return Profile(centroids, thresholds)


def _stamp(run: Run) -> dict:
    stat = (run.path / WEIGHTS_FILE).stat()
    return {"weights_size": stat.st_size, "weights_mtime_ns": stat.st_mtime_ns}


def load_profile(run: Run) -> Profile | None:
    """The run's profile: read from the run directory, or made from its corpus (and kept) when missing or
    older than the weights; None when the corpus is not there to make it from."""
    path = run.path / PROFILE_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("format") == FORMAT and stored.get("stamp") == _stamp(run):
            return Profile(np.asarray(stored["centroids"], dtype=np.float32),
                           {int(n): float(t) for n, t in stored["thresholds"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing or damaged: made again below
    try:
        corpus = Corpus.open(run.config["corpus"])
    except (CorpusError, KeyError, TypeError):
        return None
    if corpus.labels != run.labels or abs(corpus.config.chunk_seconds - run.chunk_seconds) > 1e-9:
        return None
    profile = build_profile(run, corpus)
    if profile is not None:
        data = {"format": FORMAT, "stamp": _stamp(run), "corpus": str(corpus.path),
                "thresholds": {str(n): round(t, 6) for n, t in profile.thresholds.items()},
                "centroids": np.round(profile.centroids, 6).tolist()}
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a read-only run directory: made again next time
            tmp.unlink(missing_ok=True)
    return profile
