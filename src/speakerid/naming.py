"""naming: who each voice of a diarized recording is (step 5 of `speakerid.diarize`).

Clusters of windows become labels: the best enrolled speaker when its score on all of the
cluster's speech reaches the registry's identification threshold for that much audio, else
`unknown-N`; enrolled voices that clustering merged into another voice are taken back out, and a
stranger with too little speech joins the closest voice. The settings are `DiarizeConfig`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from speakerid.clustering import unit
from speakerid.der import UNKNOWN_PREFIX

if TYPE_CHECKING:
    from speakerid.diarize import DiarizeConfig, WindowScores

__all__ = ["name_clusters", "split_enrolled", "covered"]


def name_clusters(scored: WindowScores, clusters: np.ndarray, spans: list[tuple[float, float]],
                   config: DiarizeConfig) -> tuple[np.ndarray, dict[str, dict]]:
    """A label per window (enrolled name or unknown-N), and per label: enrolled, score, closest enrolled speaker."""
    sizes = np.bincount(clusters)
    big = [c for c in range(len(sizes)) if sizes[c] >= config.min_cluster_windows] or [int(np.argmax(sizes))]
    centroids = unit(np.stack([scored.embeddings[clusters == c].mean(axis=0) for c in big]))
    # windows of tiny clusters join the closest big one
    clusters = np.where(np.isin(clusters, big), clusters, np.array(big)[np.argmax(unit(scored.embeddings) @ centroids.T, axis=1)])
    names: dict[int, str | None] = {}
    best: dict[int, tuple[str | None, float | None]] = {}
    for c in big:
        rows = np.flatnonzero(clusters == c)
        if not scored.names:
            names[c], best[c] = None, (None, None)
            continue
        group = scored.group_scores(rows)
        choice, evidence = scored.scoring.identification(group)
        top, score = int(choice[0]), float(evidence[0])
        best[c] = (scored.names[top], score)
        # the name is decided on all of the cluster's speech, at the threshold for that much audio
        accepted = scored.decision(covered([spans[i] for i in rows])).accepts(score)
        names[c] = scored.names[top] if accepted is not False else None
    if scored.names:
        split_enrolled(scored, clusters, big, names, best, spans, config.split_seconds)
    # a stranger with too little speech to stand on its own is a piece of the closest voice
    smallest = min(config.min_stranger_seconds, config.min_stranger_share * covered(spans))
    mean = lambda c: unit(scored.embeddings[clusters == c].mean(axis=0))
    for c in [c for c in big if names[c] is None]:
        others = [o for o in big if o != c]
        if others and covered([spans[i] for i in np.flatnonzero(clusters == c)]) < smallest:
            closest = max(others, key=lambda o: float(mean(c) @ mean(o)))
            clusters[clusters == c] = closest
            big.remove(c)
    labels = np.empty(len(clusters), dtype=object)
    info: dict[str, dict] = {}
    strangers = 0
    for c in sorted(big, key=lambda c: int(np.argmax(clusters == c))):  # in order of first appearance
        label = names[c]
        if label is None:
            strangers += 1
            label = f"{UNKNOWN_PREFIX}{strangers}"
        closest, score = best[c]
        entry = info.setdefault(label, {"enrolled": names[c] is not None, "score": None, "closest": closest})
        if score is not None:
            entry["score"] = round(max(score, entry["score"] if entry["score"] is not None else -1.0), 4)
        labels[clusters == c] = label
    return labels, info


def split_enrolled(scored: WindowScores, clusters: np.ndarray, big: list[int], names: dict, best: dict,
                    spans: list[tuple[float, float]], seconds: float) -> None:
    """Enrolled voices that clustering merged into another voice, taken back out (in place): the windows of a
    cluster whose closest enrolled speaker is not the cluster's name become a cluster of that speaker when
    they cover at least `seconds` and, together, reach its threshold for all of the cluster's speech (they
    were picked from all of it for being closest to that speaker, which flatters them: a find within that
    much audio). In short calls a voice has few windows and clustering merges it into a neighbour;
    enrollment still knows it."""
    fresh = int(clusters.max()) + 1
    for c in list(big):
        rows = np.flatnonzero(clusters == c)
        closest = np.argmax(scored.scoring.fusion.fuse(scored.cosines[rows]), axis=1)
        own = scored.names.index(names[c]) if names[c] is not None else -1
        bar = scored.decision(covered([spans[i] for i in rows]))
        for speaker in np.unique(closest):
            part = rows[closest == speaker]
            if speaker == own or len(part) == len(rows):
                continue
            length = covered([spans[i] for i in part])
            score = float(scored.group_scores(part)[speaker])
            if length >= seconds and bar.accepts(score):
                clusters[part] = fresh
                names[fresh], best[fresh] = scored.names[speaker], (scored.names[speaker], score)
                big.append(fresh)
                fresh += 1


def covered(spans: list[tuple[float, float]]) -> float:
    """Seconds of audio the spans cover together (overlapping windows counted once)."""
    total, reach = 0.0, -np.inf
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total
