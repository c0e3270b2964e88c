"""clustering: group window embeddings by voice, and smooth per-frame labels over time (for diarize)."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["cluster", "unit", "viterbi"]

MAX_WINDOWS = 1500  # more windows would make the affinity matrix (n^2 floats) and its eigenvectors costly
PRUNING = np.linspace(0.02, 0.3, 15)  # shares of each row's strongest affinities kept, tried in turn
MIN_NEIGHBOURS = 5  # each row keeps at least this many: fewer cut a single voice into disconnected pieces
RESTARTS = 5  # k-means runs on the spectral embedding (seeded); the tightest wins


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def cluster(embeddings: np.ndarray, max_clusters: int = 10) -> np.ndarray:
    """Cluster numbers (0, 1, ...) for L2-normalised embeddings, the number of clusters found, not given:
    spectral clustering with the normalised maximum eigengap (NME-SC, Park et al., 2019).

    The affinity is the cosine similarity, each row keeping only its strongest share p (and at
    least MIN_NEIGHBOURS); the
    Laplacian's largest gap among its smallest `max_clusters` + 1 eigenvalues gives the number of
    clusters. p is chosen per recording: the one whose largest gap, relative to the largest
    eigenvalue, is widest for the share of affinities it keeps. The rows of the first eigenvectors
    are then grouped by k-means.

    Past MAX_WINDOWS, an evenly spread subset is clustered and every other embedding joins the
    cluster whose mean it is closest to, so time and memory stay bounded on long recordings.
    """
    n = len(embeddings)
    if n < 3:
        return np.zeros(n, dtype=int)
    chosen = np.unique(np.linspace(0, n - 1, min(n, MAX_WINDOWS)).round().astype(int))
    labels = _spectral(unit(embeddings[chosen]), max_clusters)
    if len(chosen) < n:
        centroids = unit(np.stack([embeddings[chosen][labels == c].mean(axis=0) for c in range(labels.max() + 1)]))
        labels = np.argmax(unit(embeddings) @ centroids.T, axis=1)
    return _renumbered(labels)


def _spectral(x: np.ndarray, max_clusters: int) -> np.ndarray:
    from scipy.cluster.vq import kmeans2
    from scipy.linalg import eigh

    n = len(x)
    affinity = x @ x.T
    np.fill_diagonal(affinity, 0.0)
    strongest = np.argsort(-affinity, axis=1)
    rows = np.arange(n)[:, None]
    last = min(max_clusters, n - 1)
    best = None
    for keep in sorted({min(n - 1, max(MIN_NEIGHBOURS, round(share * n))) for share in PRUNING}):
        pruned = np.zeros_like(affinity)
        pruned[rows, strongest[:, :keep]] = affinity[rows, strongest[:, :keep]]
        pruned = np.maximum((pruned + pruned.T) / 2, 0.0)
        laplacian = np.diag(pruned.sum(axis=1)) - pruned
        values, vectors = eigh(laplacian, subset_by_index=[0, last])
        largest = eigh(laplacian, eigvals_only=True, subset_by_index=[n - 1, n - 1])[0]
        gaps = np.diff(values)
        ratio = (keep / n) / max(gaps.max() / max(largest, 1e-12), 1e-12)
        if best is None or ratio < best[0]:
            best = (ratio, int(np.argmax(gaps)) + 1, vectors)
    _, k, vectors = best
    if k == 1:
        return np.zeros(n, dtype=int)
    points = unit(vectors[:, :k])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "one of the clusters is empty": that run simply found fewer
        runs = [kmeans2(points, k, minit="++", seed=seed) for seed in range(RESTARTS)]
    centres, labels = min(runs, key=lambda run: float(np.sum((points - run[0][run[1]]) ** 2)))
    return labels


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
