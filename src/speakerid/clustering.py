"""clustering: group window embeddings by voice, and smooth per-frame labels over time (for diarize)."""

from __future__ import annotations

import numpy as np

__all__ = ["cluster", "unit", "viterbi"]

MAX_LINKAGE_WINDOWS = 3000  # pairwise distances of more windows would cost too much memory (n^2 / 2 floats)


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def cluster(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster numbers (0, 1, ...) for L2-normalised embeddings: agglomerative, average linkage on cosine
    distance, cut where the closest clusters are `threshold` apart; the number of clusters follows.

    Past MAX_LINKAGE_WINDOWS, an evenly spread subset is clustered and every other embedding joins
    the cluster whose mean it is closest to, so memory stays bounded on long recordings.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    chosen = np.unique(np.linspace(0, n - 1, min(n, MAX_LINKAGE_WINDOWS)).round().astype(int))
    tree = linkage(unit(embeddings[chosen]), method="average", metric="cosine")
    labels = fcluster(tree, t=threshold, criterion="distance") - 1
    if len(chosen) < n:
        centroids = unit(np.stack([embeddings[chosen][labels == c].mean(axis=0) for c in range(labels.max() + 1)]))
        labels = np.argmax(unit(embeddings) @ centroids.T, axis=1)
    return _renumbered(labels)


def _renumbered(labels: np.ndarray) -> np.ndarray:
    """Cluster numbers in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse]


def viterbi(scores: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The label sequence maximising the summed frame scores (T, k) minus `switch_penalty` per change of label."""
    frames, k = scores.shape
    if frames == 0 or k == 0:
        return np.zeros(frames, dtype=int)
    best = scores[0].copy()
    back = np.zeros((frames, k), dtype=np.int32)
    for t in range(1, frames):
        leader = int(np.argmax(best))
        stay = best
        switch = best[leader] - switch_penalty
        back[t] = np.where(stay >= switch, np.arange(k), leader)
        best = np.maximum(stay, switch) + scores[t]
    path = np.empty(frames, dtype=int)
    path[-1] = int(np.argmax(best))
    for t in range(frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
