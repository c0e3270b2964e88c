"""calibrate: fit how a registry's scores become decisions, on the task users run, and the metrics behind it.

Pairwise metrics. A score compares a recording with a speaker's reference; a trial is accepted
when its score is at or above the threshold. Target trials compare a speaker with itself,
non-target trials with someone else. Over all candidate thresholds:

    miss rate (FRR)          share of target scores below the threshold
    false-accept rate (FAR)  share of non-target scores at or above the threshold

Candidate thresholds lie halfway between neighbouring distinct scores (and at the lowest score,
and just above the highest), so every threshold reported sits in the middle of a gap between
scores rather than on one of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speakerid.audio import load_audio
from speakerid.corpus import scan
from speakerid.errors import AudioError, CorpusError

if TYPE_CHECKING:
    from speakerid.scoring import Scoring

__all__ = ["CalibrationResult", "calibrate", "Trials", "fit_scoring", "cross_validation_trials", "open_set_curve", "operating_point", "det_curve", "eer",
           "threshold_at_far", "min_dcf"]


# ---------------------------------------------------------------- metrics


def det_curve(target_scores, nontarget_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, false-accept rates, miss rates): every distinct operating point, thresholds ascending."""
    target = _scores(target_scores, "target")
    nontarget = _scores(nontarget_scores, "non-target")
    distinct = np.unique(np.concatenate([target, nontarget]))
    thresholds = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2, [np.nextafter(distinct[-1], np.inf)]])
    frr = np.searchsorted(np.sort(target), thresholds, side="left") / len(target)
    far = 1.0 - np.searchsorted(np.sort(nontarget), thresholds, side="left") / len(nontarget)
    return thresholds, far, frr


def eer(target_scores, nontarget_scores) -> tuple[float, float]:
    """(equal error rate, its threshold): where miss and false-accept rates meet.

    When no operating point has them equal, the rate and the threshold are interpolated linearly
    between the two operating points on either side of the crossing.
    """
    thresholds, far, frr = det_curve(target_scores, nontarget_scores)
    gap = frr - far  # strictly increasing with the threshold, from -1 to +1
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(frr[i]), float(thresholds[i])
    share = -gap[i - 1] / (gap[i] - gap[i - 1])
    rate = frr[i - 1] + share * (frr[i] - frr[i - 1])
    return float(rate), float(thresholds[i - 1] + share * (thresholds[i] - thresholds[i - 1]))


def threshold_at_far(target_scores, nontarget_scores, far: float) -> tuple[float, float, float]:
    """(threshold, false-accept rate, miss rate) of the best operating point whose false-accept rate is at most `far`.

    Best: it misses the fewest targets, and of the thresholds that miss as few, it is the highest
    (the one with the fewest false accepts), so no other threshold is better on both counts.
    """
    if not 0 <= far <= 1:
        raise ValueError(f"the false-accept rate must lie in [0, 1], got {far}")
    thresholds, rates, misses = det_curve(target_scores, nontarget_scores)
    n_nontarget = len(np.atleast_1d(nontarget_scores))
    # Compare counts, not rates, so that far=0.01 over 300 trials allows exactly 3 false accepts.
    allowed = np.round(rates * n_nontarget) <= far * n_nontarget + 1e-9
    fewest_misses = misses[allowed].min()
    i = int(np.flatnonzero(misses == fewest_misses)[-1])
    return float(thresholds[i]), float(rates[i]), float(misses[i])


def min_dcf(target_scores, nontarget_scores, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> tuple[float, float]:
    """(minimum normalised detection cost, its threshold).

    DCF = c_miss * p_target * FRR + c_fa * (1 - p_target) * FAR, divided by the cost of the better
    of accepting everything and rejecting everything, so 1.0 means "no better than that".
    """
    if not 0 < p_target < 1:
        raise ValueError(f"the target prior must lie in (0, 1), got {p_target}")
    thresholds, far, frr = det_curve(target_scores, nontarget_scores)
    cost = (c_miss * p_target * frr + c_fa * (1 - p_target) * far) / min(c_miss * p_target, c_fa * (1 - p_target))
    i = int(np.argmin(cost))
    return float(cost[i]), float(thresholds[i])


def _scores(values, what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float64).ravel()
    if len(scores) == 0:
        raise ValueError(f"no {what} scores")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what} scores contain NaN or infinite values")
    return scores


# ---------------------------------------------------------------- open-set identification


@dataclass
class Trials:
    """Recordings scored against every enrolled speaker by every encoder, for fitting decisions.

    `enrolled` (T, S, E): recordings of enrolled speakers that built no reference of theirs,
    with `truth` (T,) the column of their speaker; `strangers` (U, S, E): recordings of voices
    nobody enrolled. When there are none, `simulated` strangers are enrolled recordings scored
    with their own speaker's column left out (`excluded` (U, S) marks it): a stranger as the
    other speakers see it.
    """

    encoders: list[str]
    speakers: list[str]
    enrolled: np.ndarray
    truth: np.ndarray
    strangers: np.ndarray
    excluded: np.ndarray | None = None

    @property
    def simulated(self) -> bool:
        return self.excluded is not None

    def own(self) -> np.ndarray:
        """(T, S) True where an enrolled trial meets its own speaker."""
        own = np.zeros(self.enrolled.shape[:2], dtype=bool)
        own[np.arange(len(self.truth)), self.truth] = True
        return own

    def stranger_columns(self) -> np.ndarray:
        """(U, S) True where a stranger trial is scored."""
        return np.ones(self.strangers.shape[:2], dtype=bool) if self.excluded is None else ~self.excluded

    def nontarget(self) -> np.ndarray:
        """(N, E) cosine scores of every recording against every speaker that is not its own."""
        return np.concatenate([self.enrolled[~self.own()], self.strangers[self.stranger_columns()]])


def open_set_curve(best_enrolled: np.ndarray, right: np.ndarray, best_stranger: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, share of enrolled recordings named right, share of strangers rejected), thresholds ascending.

    An enrolled recording is named right when its best-scoring speaker is its own and the score
    reaches the threshold; a stranger is rejected when its best score stays under it.
    """
    distinct = np.unique(np.concatenate([best_enrolled, best_stranger]))
    thresholds = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2, [np.nextafter(distinct[-1], np.inf)]])
    right_scores = np.sort(best_enrolled[right])
    named = (len(right_scores) - np.searchsorted(right_scores, thresholds, side="left")) / max(1, len(best_enrolled))
    rejected = np.searchsorted(np.sort(best_stranger), thresholds, side="left") / max(1, len(best_stranger))
    return thresholds, named, rejected


def operating_point(thresholds: np.ndarray, named: np.ndarray, rejected: np.ndarray, far: float | None) -> int:
    """Index of the chosen threshold: with `far`, the lowest one that lets at most that share of
    strangers in (it names the most enrolled voices); without, the balanced point, where the worse
    of the two shares (named right, strangers rejected) is best."""
    if far is not None:
        return int(np.argmax(1 - rejected <= far + 1e-9))
    worse, total = np.minimum(named, rejected), named + rejected
    candidates = np.flatnonzero(worse == worse.max())
    return int(candidates[np.argmax(total[candidates])])


WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


def fit_scoring(trials: Trials, far: float | None = None, source: str = "calibrated") -> tuple["Scoring", dict]:
    """The fusion weights, statistics and thresholds that serve `trials` best, and what they achieve.

    With two encoders the weight of the base encoder is chosen on a grid (0, 0.05, ..., 1) by the
    balanced open-set accuracy it reaches; the identification threshold then sits at the
    operating point (`operating_point`), the verification threshold at the pairwise EER (or at
    the pairwise false-accept rate `far`).
    """
    from speakerid.scoring import Fusion, Scoring

    if len(trials.enrolled) == 0 or len(trials.strangers) == 0:
        raise CorpusError("calibration needs recordings of enrolled speakers and of strangers to score")
    nontarget = trials.nontarget()
    grid = WEIGHT_GRID if len(trials.encoders) > 1 else np.array([1.0])
    best = None
    for w in grid:
        weights = [w, 1 - w] if len(trials.encoders) > 1 else [1.0]
        fusion = Fusion.fit(trials.encoders, weights, nontarget)
        fused_enrolled = fusion.fuse(trials.enrolled)
        fused_strangers = np.where(trials.stranger_columns(), fusion.fuse(trials.strangers), -np.inf)
        best_enrolled = fused_enrolled.max(axis=1)
        right = fused_enrolled.argmax(axis=1) == trials.truth
        curve = open_set_curve(best_enrolled, right, fused_strangers.max(axis=1))
        i = operating_point(*curve, None)
        key = (min(curve[1][i], curve[2][i]), curve[1][i] + curve[2][i], -abs(w - 0.5))
        if best is None or key > best[0]:
            best = (key, fusion, fused_enrolled, fused_strangers, right, curve)
    _, fusion, fused_enrolled, fused_strangers, right, (thresholds, named, rejected) = best
    i = operating_point(thresholds, named, rejected, far)
    own = trials.own()
    targets = fused_enrolled[own]
    nontargets = np.concatenate([fused_enrolled[~own], fused_strangers[trials.stranger_columns()]])
    equal_rate, equal_threshold = eer(targets, nontargets)
    verify_threshold = equal_threshold if far is None else threshold_at_far(targets, nontargets, far)[0]
    cost, cost_threshold = min_dcf(targets, nontargets)
    report = {
        "operating_point": "balanced" if far is None else f"strangers accepted <= {far:g}",
        "named_right": float(named[i]), "strangers_rejected": float(rejected[i]), "top1": float(right.mean()),
        "enrolled_trials": int(len(trials.truth)), "stranger_trials": int(len(trials.strangers)),
        "strangers_simulated": trials.simulated, "speakers": len(trials.speakers),
        "eer": equal_rate, "eer_threshold": equal_threshold, "min_dcf": cost, "min_dcf_threshold": cost_threshold,
        "encoder_eer": {e: eer(trials.enrolled[own][:, k], nontarget[:, k])[0] for k, e in enumerate(trials.encoders)},
        "weights": dict(zip(trials.encoders, fusion.weights)),
        "calibrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    scoring = Scoring(fusion, float(thresholds[i]), float(verify_threshold), source, report)
    curve = {"thresholds": thresholds, "named_right": named, "strangers_rejected": rejected, "chosen": i,
             "targets": targets, "nontargets": nontargets}
    return scoring, {**report, "curve": curve}


# ---------------------------------------------------------------- calibrate


@dataclass
class CalibrationResult:
    """What `calibrate` measured and the scoring it fitted (stored in the registry unless told not to)."""

    registry: str
    data: str
    encoders: list[str]
    enrolled_side: str  # "held-out recordings" (folders named like enrolled speakers) or "cross-validation"
    scoring: "Scoring"
    report: dict
    curve: dict
    skipped: list[tuple[str, str]] = field(default_factory=list)  # speakers left out of the trials, and why
    failed: list[tuple[str, str]] = field(default_factory=list)  # files that could not be used, and why
    plot: str | None = None
    stored: bool = False

    @property
    def threshold(self) -> float:
        return self.scoring.identify

    def to_dict(self) -> dict:
        return {"registry": self.registry, "data": self.data, "encoders": self.encoders, "enrolled_side": self.enrolled_side,
                "identify_threshold": self.scoring.identify, "verify_threshold": self.scoring.verify,
                "fusion": self.scoring.fusion.to_dict(), **self.report, "plot": self.plot, "stored": self.stored,
                "skipped": [{"speaker": s, "reason": r} for s, r in self.skipped],
                "failed": [{"file": f, "reason": r} for f, r in self.failed]}


def calibrate(registry: str | Path, data_dir: str | Path, model: str | Path | None = None, far: float | None = None,
              trial_seconds: float | None = None, out: str | Path | None = None, store: bool = True,
              device: str = "auto", progress: bool = True) -> CalibrationResult:
    """Fit the registry's decisions on the task users run: naming its enrolled speakers, rejecting strangers.

    `data_dir` holds speaker folders. A folder named like an enrolled speaker holds that
    speaker's other recordings (files already enrolled are left out); every other folder is a
    stranger. Without such recordings, the enrolled side comes from the registry's own
    enrollment audio by cross-validation: each recording is scored with its speaker's reference
    rebuilt without it (after `adapt`, only the recordings the adapted encoder never trained on).
    Without strangers, each enrolled trial doubles as a stranger by leaving its own speaker out.

    Trials are whole recordings, or clips of `trial_seconds` (calibrate on what you will
    identify: scores fall with duration). Fits the fusion weights, the identification threshold
    at the balanced point (or where at most `far` of strangers are accepted) and the verification
    threshold at the pairwise EER (or at pairwise false-accept rate `far`), stores them unless
    `store` is False, and draws `out` (PNG) when given.
    """
    from speakerid.voices import VoiceRegistry

    if far is not None and not 0 < far < 1:
        raise CorpusError(f"the false-accept rate must lie in (0, 1), got {far}")
    if trial_seconds is not None and trial_seconds <= 0:
        raise CorpusError(f"trial length must be positive, got {trial_seconds} s")
    data_dir = Path(data_dir).resolve()
    voices = VoiceRegistry(registry, model, device, create=False)
    try:
        names, _ = voices.reference_matrices()
        if len(names) < 2:
            raise CorpusError(f"{registry} has {len(names)} enrolled speaker(s); calibration needs at least 2 "
                              "(speakerid enroll) and a folder of strangers")
        sources, rejected = scan(data_dir)
        failed = [(r.path, r.reason) for r in rejected]
        column = {name: i for i, name in enumerate(names)}
        own_files: dict[str, list[Path]] = {}
        stranger_files: list[Path] = []
        for source in sources:
            if source.speaker in column:
                own_files.setdefault(source.speaker, []).append(source.path)
            else:
                stranger_files.append(source.path)
        # A file already enrolled for its speaker is no held-out recording of it.
        held_out = {speaker: [f for f in files if _sha256(f) not in voices.registry.enrolled_hashes(speaker)]
                    for speaker, files in own_files.items()}
        held_out = {speaker: files for speaker, files in held_out.items() if files}
        from speakerid.progress import progress_bar

        with progress_bar("calibrating", total=len(stranger_files) + sum(map(len, held_out.values())),
                          enabled=progress) as advance:
            strangers = _score_files(voices, stranger_files, trial_seconds, failed, advance, len(names))
            if held_out:
                enrolled_side, skipped = "held-out recordings", []
                enrolled, truth = [], []
                for speaker, files in sorted(held_out.items()):
                    scored = _score_files(voices, files, trial_seconds, failed, advance, len(names))
                    enrolled.append(scored)
                    truth += [column[speaker]] * len(scored)
                enrolled = np.concatenate(enrolled)
            else:
                enrolled_side = "cross-validation"
                enrolled, truth, skipped = _registry_trials(voices, names, trial_seconds, failed)
        encoders = [e.name for e in voices.encoders]
        if len(enrolled) == 0:
            raise CorpusError(f"{data_dir}: no recording of an enrolled speaker could be scored")
        truth = np.asarray(truth)
        if len(strangers):
            trials = Trials(encoders, names, enrolled, truth, strangers)
        else:
            excluded = np.zeros(enrolled.shape[:2], dtype=bool)
            excluded[np.arange(len(truth)), truth] = True
            trials = Trials(encoders, names, enrolled, truth, enrolled, excluded)
        scoring, report = fit_scoring(trials, far)
        curve = report.pop("curve")
        result = CalibrationResult(str(registry), str(data_dir), encoders, enrolled_side, scoring, report, curve,
                                   skipped, failed)
        if out is not None:
            from speakerid.plots import plot_calibration

            result.plot = str(plot_calibration(result, out))
        if store:
            voices.registry.set_scoring(scoring.to_dict())
            result.stored = True
    finally:
        voices.close()
    return result


def _sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _clips(audio: np.ndarray, seconds: float | None, label: str) -> tuple[list[np.ndarray], list[str]]:
    """A recording whole, or cut into clips of `seconds` (the tail shorter than a clip dropped;
    a recording shorter than one clip is one clip)."""
    if seconds is None:
        return [audio], [label]
    from speakerid.audio import SAMPLE_RATE

    size = round(seconds * SAMPLE_RATE)
    starts = range(0, max(1, len(audio) - size + 1), size)
    return [audio[s : s + size] for s in starts], [f"{label} [{s / SAMPLE_RATE:g} s]" for s in starts]


def _score_files(voices, files: list[Path], seconds: float | None, failed: list, advance, n_speakers: int) -> np.ndarray:
    """(n, speakers, encoders) cosine scores of the files' recordings (or clips) against every reference."""
    from speakerid.errors import RegistryError

    rows = []
    for path in files:
        try:
            clips, labels = _clips(load_audio(path), seconds, str(path))
            for clip, label in zip(clips, labels):
                try:
                    rows.append(voices.score([clip], [label]).cosines[0])
                except AudioError as err:
                    failed.append((label, err.reason))
        except (AudioError, RegistryError) as err:
            failed.append((str(path), getattr(err, "reason", str(err))))
        advance()
    return np.stack(rows) if rows else np.zeros((0, n_speakers, len(voices.encoders)))


def cross_validation_trials(names: list[str], by_speaker: dict[str, list[int]], stored: list[dict[int, np.ndarray]],
                            held_out: set[int] | None, probes=None) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Enrolled trials from enrolled recordings: each held-out recording (every recording when
    `held_out` is None) is scored, per encoder, against every speaker's reference, its own speaker's
    rebuilt from the speaker's other recordings. `stored` holds each encoder's embeddings (recording
    id -> vector); `probes(recording id)`, when given, replaces the stored embeddings of a trial by
    probes of its own (its clips), each a list of one vector per encoder. Returns (trials (T, S, E), truth, skipped speakers)."""
    from speakerid.registry import reference

    full = [np.stack([reference(np.stack([vectors[r] for r in by_speaker[name]])) for name in names]) for vectors in stored]
    rows, truth, skipped = [], [], []
    for column, name in enumerate(names):
        recordings = by_speaker.get(name, [])
        trials = [r for r in recordings if held_out is None or r in held_out]
        if len(recordings) < 2 or not trials:
            skipped.append((name, "one enrolled recording: nothing to hold out" if len(recordings) < 2
                            else "the adapted encoder trained on all of its recordings"))
            continue
        for trial in trials:
            others = [r for r in recordings if r != trial]
            own = [reference(np.stack([vectors[r] for r in others])) for vectors in stored]
            for probe in (probes(trial) if probes else [[vectors[trial] for vectors in stored]]):
                scores = np.stack([full[k] @ probe[k] for k in range(len(stored))], axis=-1)  # (S, E)
                scores[column] = [own[k] @ probe[k] for k in range(len(stored))]
                rows.append(scores)
                truth.append(column)
    empty = np.zeros((0, len(names), len(stored)))
    return (np.stack(rows) if rows else empty), truth, skipped


def _registry_trials(voices, names: list[str], seconds: float | None, failed: list
                     ) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """`cross_validation_trials` on a registry's recordings and stored embeddings (after `adapt`, only
    the recordings its adapted encoder held out); with `seconds`, the trials are clips of the stored audio."""
    from speakerid.registry import ADAPTED

    registry = voices.registry
    records = registry.encoders()
    adapted = next((r for r in records if r.role == ADAPTED), None)
    held_out = None if adapted is None else set(adapted.config.get("held_out", []))
    by_speaker: dict[str, list[int]] = {}
    for recording in registry.recordings():
        by_speaker.setdefault(recording["speaker"], []).append(recording["id"])

    def clips(recording: int) -> list[np.ndarray]:
        found = []
        audio = registry.audio(recording).astype(np.float32) / 32768.0
        for clip, label in zip(*_clips(audio, seconds, f"recording {recording}")):
            try:
                found.append([v[0] for v in voices.embed([clip], [label]).values()])
            except AudioError as err:
                failed.append((label, err.reason))
        return found

    stored = [registry.embeddings(r.name) for r in records]
    return cross_validation_trials(names, by_speaker, stored, held_out, clips if seconds else None)
