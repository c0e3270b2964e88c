"""scoring: the one place where encoders' cosine scores become a score and a decision.

A registry scores with one encoder (the pretrained GE2E, or a trained run) or, after
`speakerid adapt`, with two: the base encoder and one adapted to the enrolled voices. Each
encoder gives a cosine score per enrolled speaker; the **fused** score is

    z_e    = (cosine_e - mean_e) / std_e          each encoder's score, normalised by the mean and
                                                  standard deviation of its non-target scores
    fused  = mean_b + std_b * (sum_e w_e z_e - c) / d

with weights w_e summing to 1, and (c, d) the mean and deviation of sum_e w_e z_e over non-target
trials, so that fused scores live on the base encoder's cosine scale: strangers score as they
would with the base encoder alone. With one encoder the fused score is its cosine, unchanged.
The statistics and weights are fitted by `calibrate` (or, provisionally, by `adapt`).

Thresholds depend on how long the scored audio is (`Scoring.decision(..., seconds)`): calibration
measures them on trials of several lengths. Which threshold decides, first found wins: the one passed in ("given"); the registry's
calibrated one ("calibrated"); the provisional one `adapt` measured without strangers
("adapt (uncalibrated)"); the base encoder's default ("default (uncalibrated)"); else none
("none": identify still ranks the speakers but cannot tell an enrolled voice from a stranger).
Identification (is this voice one of the N enrolled?) and verification (do two recordings share a
speaker?) have thresholds of their own: a stranger is compared with every enrolled speaker and
keeps the best score, so identification needs a higher bar than one pairwise comparison. The
identification score also weighs how far the best speaker leads the second (`Scoring.gap`,
calibration.LEAD_WEIGHT): a stranger often sits between two enrolled voices. Diarization names its
clusters without that lead (`Scoring.for_clusters`): in a meeting, a cluster's second-best speaker
is often another participant whose words leaked into it, so the lead means less than calibration measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

__all__ = ["Fusion", "Scoring", "Decision", "scoring_for", "interpolate"]

GIVEN, CALIBRATED, ADAPT, DEFAULT, NONE = "given", "calibrated", "adapt (uncalibrated)", "default (uncalibrated)", "none"


@dataclass(frozen=True)
class Fusion:
    """How the encoders' cosine scores combine into one score on the base encoder's scale."""

    encoders: tuple[str, ...]
    weights: tuple[float, ...]
    means: tuple[float, ...]  # of each encoder's non-target scores
    stds: tuple[float, ...]
    offset: float = 0.0  # mean of the weighted z-scores over non-target trials
    scale: float = 1.0  # and their standard deviation

    @classmethod
    def single(cls, encoder: str) -> "Fusion":
        """One encoder: the fused score is its cosine."""
        return cls((encoder,), (1.0,), (0.0,), (1.0,))

    @classmethod
    def fit(cls, encoders: Sequence[str], weights: Sequence[float], nontarget: np.ndarray) -> "Fusion":
        """The fusion with `weights` whose statistics come from non-target scores (n, n_encoders)."""
        nontarget = np.asarray(nontarget, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        if len(encoders) == 1:
            return cls.single(encoders[0])
        means, stds = nontarget.mean(axis=0), np.maximum(nontarget.std(axis=0), 1e-6)
        combined = ((nontarget - means) / stds) @ weights
        return cls(tuple(encoders), tuple(map(float, weights)), tuple(map(float, means)), tuple(map(float, stds)),
                   float(combined.mean()), float(max(combined.std(), 1e-6)))

    def fuse(self, scores: np.ndarray) -> np.ndarray:
        """Fused scores from cosine scores (..., n_encoders), encoders in `self.encoders` order."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(self.encoders) == 1:
            return scores[..., 0]
        z = (scores - np.asarray(self.means)) / np.asarray(self.stds)
        combined = (z @ np.asarray(self.weights) - self.offset) / self.scale
        return self.means[0] + self.stds[0] * combined

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "Fusion":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class Decision:
    """A threshold and where it came from (`value` None: nothing to decide with)."""

    value: float | None
    source: str

    def accepts(self, score: float) -> bool | None:
        return None if self.value is None else bool(score >= self.value)


Points = list[tuple[float, float]]  # (seconds, threshold), by length


def interpolate(points: Points, seconds: float) -> float:
    """The threshold for audio `seconds` long: linear in log(seconds) between the points, flat beyond them."""
    lengths = np.log([max(p[0], 1e-3) for p in points])
    return float(np.interp(np.log(max(seconds, 1e-3)), lengths, [p[1] for p in points]))


@dataclass(frozen=True)
class Scoring:
    """A registry's fusion and its thresholds, as `calibrate` or `adapt` stored them.

    Thresholds are (seconds, threshold) points measured on trials of those lengths: a decision
    about audio of another length interpolates between them (scores fall as audio gets shorter).
    """

    fusion: Fusion
    identify: Points | None
    verify: Points | None
    source: str  # CALIBRATED or ADAPT
    details: dict  # what the thresholds were measured on (for reports and /health)
    gap: float = 0.0  # weight of the lead over the second-best speaker in the identification score
    cluster: Points | None = None  # identification thresholds for the best score alone (no lead), when gap > 0

    def to_dict(self) -> dict:
        return {"encoders": list(self.fusion.encoders), "fusion": self.fusion.to_dict(),
                "identify": self.identify and [list(p) for p in self.identify],
                "verify": self.verify and [list(p) for p in self.verify], "gap": self.gap,
                "cluster": self.cluster and [list(p) for p in self.cluster], "source": self.source,
                "details": self.details}

    @classmethod
    def from_dict(cls, values: dict) -> "Scoring":
        points = lambda v: None if v is None else [tuple(p) for p in v]
        return cls(Fusion.from_dict(values["fusion"]), points(values.get("identify")), points(values.get("verify")),
                   values["source"], values.get("details", {}), values.get("gap", 0.0), points(values.get("cluster")))

    def for_clusters(self) -> "Scoring":
        """The scoring diarization names a cluster of windows with: the best fused score alone, at
        the thresholds calibrate fitted for it (`cluster`). A cluster's lead over the second-best
        speaker is not what calibration measured on whole recordings: the second best is often
        another participant of the meeting whose words leaked into the cluster (docs/benchmarks.md,
        "Diarization"). A scoring stored before these thresholds existed is used as it is."""
        if self.gap == 0 or self.cluster is None:
            return self
        return replace(self, identify=self.cluster, gap=0.0, cluster=None)

    def identification(self, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(best speaker, identification score) per row of fused scores (n, speakers).

        The identification score is the best fused score plus `gap` times its lead over the
        second best: a voice that two enrolled speakers match about equally well is less likely
        to be either of them (a stranger between them) than one that matches one clearly.
        """
        fused = np.atleast_2d(fused)
        best = fused.argmax(axis=1)
        top = fused[np.arange(len(fused)), best]
        if self.gap == 0 or fused.shape[1] < 2:
            return best, top
        second = np.partition(fused, -2, axis=1)[:, -2]
        lead = np.where(np.isfinite(second), top - second, 0.0)  # one scored speaker only: no lead to weigh
        return best, top + self.gap * lead

    def decision(self, task: str, given: float | None = None, default: float | None = None,
                 seconds: float = 10.0) -> Decision:
        """The threshold for `task` ("identify" or "verify") about audio `seconds` long, by the
        precedence in the module's docstring."""
        if given is not None:
            return Decision(float(given), GIVEN)
        points = self.identify if task == "identify" else self.verify
        if points:
            return Decision(interpolate(points, seconds), self.source)
        if default is not None and len(self.fusion.encoders) == 1:
            return Decision(float(default), DEFAULT)
        return Decision(None, NONE)


def scoring_for(stored: dict | None, encoders: Sequence[str]) -> Scoring:
    """The registry's stored scoring when it was fitted for exactly these encoders; else a plain
    single-encoder scoring (or, for two encoders never fitted, equal weights without statistics)."""
    if stored is not None and list(stored.get("encoders", [])) == list(encoders):
        return Scoring.from_dict(stored)
    if len(encoders) == 1:
        return Scoring(Fusion.single(encoders[0]), None, None, NONE, {})
    # Two encoders that nobody fitted yet (should not happen: adapt stores a provisional scoring).
    return Scoring(Fusion(tuple(encoders), tuple(1 / len(encoders) for _ in encoders), (0.0,) * len(encoders),
                          (1.0,) * len(encoders)), None, None, NONE, {})
