"""der: turns, RTTM files, and the diarization error rate (DER) and named error of a hypothesis.

Scoring follows NIST's md-eval, as pyannote.metrics does (the tests check that both agree):
time is cut wherever a turn starts or ends; in each piece, with R reference and H hypothesis
speakers active and C of them paired (a reference speaker with the hypothesis label mapped to
it),

    missed speech  max(0, R - H)      false alarm  max(0, H - R)      confusion  min(R, H) - C

each weighted by the piece's duration and summed; DER = (missed + false alarm + confusion) /
(reference speech, R summed over time). Overlapped speech counts: two people talking at once
is two seconds of reference speech per second. A `collar` of c seconds leaves out c seconds on
each side of every reference turn's start and end (NIST's "0.25-s collar"; pyannote.metrics
calls the same thing collar=0.5, the width of the whole band).

DER pairs labels by the mapping that maximises the time they share (one to one), so anonymous
labels are fine. The named error keeps names: a hypothesis label that is an enrolled name
counts only where that very speaker speaks; only anonymous labels (`unknown-1`, ...) are paired
with the reference speakers nobody enrolled, again by the best one-to-one mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from speakerid.errors import SpeakerIdError

__all__ = ["Turn", "DerResult", "diarization_error", "named_error", "read_rttm", "write_rttm", "rttm_lines", "UNKNOWN_PREFIX"]

UNKNOWN_PREFIX = "unknown-"


@dataclass(frozen=True)
class Turn:
    """One speaker speaking from `start` to `end` seconds; `score` is how sure the labeller was (if it says)."""

    start: float
    end: float
    speaker: str
    score: float | None = None


@dataclass
class DerResult:
    """Seconds of each error and of reference speech, with the rates and the label mapping used."""

    reference: float
    missed: float
    false_alarm: float
    confusion: float
    mapping: dict[str, str] = field(default_factory=dict)  # hypothesis label -> reference speaker
    collar: float = 0.0

    @property
    def error(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.reference if self.reference else float("nan")

    def rates(self) -> dict[str, float]:
        share = (lambda s: s / self.reference) if self.reference else (lambda s: float("nan"))
        return {"error": self.error, "missed": share(self.missed), "false_alarm": share(self.false_alarm),
                "confusion": share(self.confusion)}

    def __add__(self, other: "DerResult") -> "DerResult":
        return DerResult(self.reference + other.reference, self.missed + other.missed, self.false_alarm + other.false_alarm,
                         self.confusion + other.confusion, {}, self.collar)

    def to_dict(self) -> dict:
        return {**{k: round(v, 6) for k, v in self.rates().items()}, "reference_seconds": round(self.reference, 3),
                "missed_seconds": round(self.missed, 3), "false_alarm_seconds": round(self.false_alarm, 3),
                "confusion_seconds": round(self.confusion, 3), "collar": self.collar, "mapping": self.mapping}


def _pieces(reference: list[Turn], hypothesis: list[Turn], collar: float):
    """Piece durations (evaluated ones only) and who is active in each: (durations, ref labels, ref active, hyp labels, hyp active)."""
    edges = {t for turn in reference + hypothesis for t in (turn.start, turn.end)}
    if collar > 0:
        edges |= {t + d for turn in reference for t in (turn.start, turn.end) for d in (-collar, collar)}
    edges = np.array(sorted(edges), dtype=np.float64)
    if len(edges) < 2:
        return np.zeros(0), [], np.zeros((0, 0), bool), [], np.zeros((0, 0), bool)
    durations = np.diff(edges)

    def active(turns: list[Turn]) -> tuple[list[str], np.ndarray]:
        labels = sorted({t.speaker for t in turns})
        index = {label: i for i, label in enumerate(labels)}
        flags = np.zeros((len(durations), len(labels)), dtype=bool)
        for turn in turns:
            first, last = np.searchsorted(edges, [turn.start, turn.end])
            flags[first:last, index[turn.speaker]] = True
        return labels, flags

    ref_labels, ref_active = active(reference)
    hyp_labels, hyp_active = active(hypothesis)
    keep = durations > 0
    if collar > 0:
        mids = (edges[:-1] + edges[1:]) / 2
        bounds = np.array(sorted({t for turn in reference for t in (turn.start, turn.end)}))
        nearest = np.min(np.abs(mids[:, None] - bounds[None, :]), axis=1) if len(bounds) else np.full(len(mids), np.inf)
        keep &= nearest >= collar
    return durations[keep], ref_labels, ref_active[keep], hyp_labels, hyp_active[keep]


def _score(durations, ref_labels, ref_active, hyp_labels, hyp_active, mapping: dict[str, str], collar: float) -> DerResult:
    n_ref, n_hyp = ref_active.sum(axis=1), hyp_active.sum(axis=1)
    correct = np.zeros(len(durations))
    for hyp, ref in mapping.items():
        correct += hyp_active[:, hyp_labels.index(hyp)] & ref_active[:, ref_labels.index(ref)]
    return DerResult(
        reference=float(durations @ n_ref),
        missed=float(durations @ np.maximum(0, n_ref - n_hyp)),
        false_alarm=float(durations @ np.maximum(0, n_hyp - n_ref)),
        confusion=float(durations @ (np.minimum(n_ref, n_hyp) - correct)),
        mapping=dict(sorted(mapping.items())), collar=collar,
    )


def _best_mapping(durations, ref_labels, ref_active, hyp_labels, hyp_active, hyps: list[str], refs: list[str]) -> dict[str, str]:
    """The one-to-one pairing of `hyps` with `refs` that maximises the time each pair is active together."""
    from scipy.optimize import linear_sum_assignment

    if not hyps or not refs:
        return {}
    h = hyp_active[:, [hyp_labels.index(x) for x in hyps]].astype(np.float64)
    r = ref_active[:, [ref_labels.index(x) for x in refs]].astype(np.float64)
    shared = (h * durations[:, None]).T @ r
    rows, cols = linear_sum_assignment(-shared)
    return {hyps[i]: refs[j] for i, j in zip(rows, cols) if shared[i, j] > 0}


def diarization_error(reference: list[Turn], hypothesis: list[Turn], collar: float = 0.0) -> DerResult:
    """DER of `hypothesis` against `reference` (turns of one recording), labels paired by the best mapping."""
    pieces = _pieces(list(reference), list(hypothesis), collar)
    mapping = _best_mapping(*pieces, hyps=pieces[3], refs=pieces[1])
    return _score(*pieces, mapping, collar)


def named_error(reference: list[Turn], hypothesis: list[Turn], enrolled: Iterable[str] | None = None,
                collar: float = 0.0) -> DerResult:
    """The error when names must be right: enrolled names count as given; `unknown-N` labels are paired
    (best mapping) with the reference speakers nobody enrolled: those not in `enrolled` (by default,
    those no hypothesis label names)."""
    pieces = _pieces(list(reference), list(hypothesis), collar)
    _, ref_labels, _, hyp_labels, _ = pieces
    named = {label: label for label in hyp_labels if not label.startswith(UNKNOWN_PREFIX) and label in ref_labels}
    anonymous = [label for label in hyp_labels if label.startswith(UNKNOWN_PREFIX)]
    known = set(hyp_labels if enrolled is None else enrolled)
    strangers = [label for label in ref_labels if label not in known]
    mapping = {**named, **_best_mapping(*pieces, hyps=anonymous, refs=strangers)}
    return _score(*pieces, mapping, collar)


# ---------------------------------------------------------------- RTTM


def rttm_lines(turns: Iterable[Turn], file_id: str) -> list[str]:
    """RTTM SPEAKER lines: `SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>`."""
    return [f"SPEAKER {file_id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker.replace(' ', '_')} <NA> <NA>"
            for t in sorted(turns, key=lambda t: (t.start, t.end, t.speaker))]


def write_rttm(path: str | Path, recordings: dict[str, list[Turn]]) -> Path:
    """Write the turns of each recording (file id -> turns) into one RTTM file."""
    path = Path(path)
    lines = [line for file_id, turns in recordings.items() for line in rttm_lines(turns, file_id)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_rttm(path: str | Path) -> dict[str, list[Turn]]:
    """The SPEAKER turns of an RTTM file, by file id; SpeakerIdError naming the line of a malformed one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpeakerIdError(f"{path}: cannot read it as an RTTM file ({getattr(err, 'strerror', None) or err})") from None
    recordings: dict[str, list[Turn]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(";") or fields[0] != "SPEAKER":
            continue
        try:
            start, duration = float(fields[3]), float(fields[4])
            speaker = fields[7]
            if not (np.isfinite(start) and np.isfinite(duration)) or duration < 0 or start < 0:
                raise ValueError
        except (IndexError, ValueError):
            raise SpeakerIdError(f"{path}, line {number}: not an RTTM SPEAKER line "
                                 "(SPEAKER <file> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>)") from None
        if duration > 0:
            recordings.setdefault(fields[1], []).append(Turn(start, start + duration, speaker))
    return recordings
