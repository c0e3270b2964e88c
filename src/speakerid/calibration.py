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

__all__ = ["CalibrationResult", "calibrate", "gather_trials", "Trials", "fit_scoring", "cross_validation_trials", "open_set_curve", "operating_point", "det_curve", "eer",
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
    nobody enrolled and, after them, simulated strangers: the enrolled recordings scored with
    their own speaker's column left out (`excluded` (U, S) marks it), a stranger as the other
    speakers see it. Trials are whole recordings and clips of them, of known lengths.
    `from_enrollment`: the enrolled trials are the registry's own enrollment recordings held out
    by cross-validation (from the sessions an adapted encoder trained on), not new recordings.
    """

    @classmethod
    def simulating_strangers(cls, encoders: list[str], speakers: list[str], enrolled: np.ndarray, truth: np.ndarray,
                             seconds: np.ndarray, from_enrollment: bool = False, strangers: np.ndarray | None = None,
                             stranger_seconds: np.ndarray | None = None) -> "Trials":
        """Trials whose strangers are the real `strangers` (if any) and the enrolled trials without
        their own speaker.

        A few real strangers are a small sample of voices: which ten a split of so125 held moved the
        share of strangers rejected at the balanced threshold from 93.9 % to 71.1 %. Every enrolled
        speaker is a stranger to the others, so the simulated ones add as many voices as are
        enrolled, among them voices recorded where other enrolled ones were (docs/benchmarks.md,
        "Which strangers calibrate").
        """
        excluded = np.zeros(enrolled.shape[:2], dtype=bool)
        excluded[np.arange(len(truth)), truth] = True
        if strangers is None or len(strangers) == 0:
            return cls(encoders, speakers, enrolled, truth, enrolled, seconds, seconds, excluded, from_enrollment)
        return cls(encoders, speakers, enrolled, truth, np.concatenate([strangers, enrolled]), seconds,
                   np.concatenate([stranger_seconds, seconds]),
                   np.concatenate([np.zeros(strangers.shape[:2], dtype=bool), excluded]), from_enrollment)

    encoders: list[str]
    speakers: list[str]
    enrolled: np.ndarray
    truth: np.ndarray
    strangers: np.ndarray
    enrolled_seconds: np.ndarray  # (T,) length of each enrolled trial's audio
    stranger_seconds: np.ndarray  # (U,)
    excluded: np.ndarray | None = None
    from_enrollment: bool = False

    @property
    def simulated(self) -> int:
        """How many of the stranger trials are enrolled trials without their own speaker."""
        return 0 if self.excluded is None else int(self.excluded.any(axis=1).sum())

    def own(self) -> np.ndarray:
        """(T, S) True where an enrolled trial meets its own speaker."""
        own = np.zeros(self.enrolled.shape[:2], dtype=bool)
        own[np.arange(len(self.truth)), self.truth] = True
        return own

    def stranger_columns(self) -> np.ndarray:
        """(U, S) True where a stranger trial is scored."""
        return np.ones(self.strangers.shape[:2], dtype=bool) if self.excluded is None else ~self.excluded

    def real_strangers(self) -> np.ndarray:
        """(U,) True for the trials of real strangers, False for enrolled trials standing in for one."""
        return np.ones(len(self.strangers), dtype=bool) if self.excluded is None else ~self.excluded.any(axis=1)

    def nontarget(self) -> np.ndarray:
        """(N, E) cosine scores of every recording against every speaker that is not its own (each
        once: a simulated stranger's scores are its enrolled trial's)."""
        return np.concatenate([self.enrolled[~self.own()], self.strangers[self.real_strangers()].reshape(-1, len(self.encoders))])


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
# Weight of the best speaker's lead over the second in the identification score: fixed, not fitted.
# When calibration chose it per registry on a grid (0, 0.5, 1, 2) by the balanced accuracy on its
# trials, the weights' figures there differed by a point or less, within what ten strangers can
# tell, and the choice mostly moved the threshold: 2 was chosen on most splits and let in the most
# test strangers; a fixed 1 was the best, or within 0.2 point of it, on average over four splits
# for GE2E alone, the adapted encoder alone and both fused (docs/benchmarks.md, "The lead's weight: fixed at 1").
LEAD_WEIGHT = 1.0
SLOPE_GRID = np.round(np.linspace(0.0, 0.2, 41), 3)  # threshold rise per unit of log(seconds)
DURATION_EDGES = (1.25, 2.5, 5.0, 10.0, 20.0)  # seconds: the report groups trials by length between these
MIN_GROUP_TRIALS = 20  # enrolled and stranger trials a reported group needs, else it joins its neighbour


def duration_groups(enrolled_seconds: np.ndarray, stranger_seconds: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(typical length, enrolled mask, stranger mask) of each group of trials of similar length,
    shortest first; neighbouring groups merge until each holds MIN_GROUP_TRIALS of both kinds."""
    bins_e = np.searchsorted(DURATION_EDGES, enrolled_seconds)
    bins_u = np.searchsorted(DURATION_EDGES, stranger_seconds)
    groups = [[b] for b in range(len(DURATION_EDGES) + 1) if (bins_e == b).any() or (bins_u == b).any()]
    small = lambda g: min(np.isin(bins_e, g).sum(), np.isin(bins_u, g).sum()) < MIN_GROUP_TRIALS
    while len(groups) > 1 and any(small(g) for g in groups):
        i = next(k for k, g in enumerate(groups) if small(g))
        j = i + 1 if i + 1 < len(groups) else i - 1  # join the next longer group (the last joins the one before)
        groups[min(i, j)] = groups[min(i, j)] + groups[max(i, j)]
        del groups[max(i, j)]
    out = []
    for g in groups:
        mask_e, mask_u = np.isin(bins_e, g), np.isin(bins_u, g)
        out.append((float(np.median(np.concatenate([enrolled_seconds[mask_e], stranger_seconds[mask_u]]))), mask_e, mask_u))
    return out


def _length_line(fit, seconds: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> list[tuple[float, float]]:
    """Threshold points over the trials' lengths: threshold(d) = t0 + slope * log(d / typical length),
    with the slope on SLOPE_GRID that serves `fit` best. `fit(shift)` takes each trial's shift of
    the threshold (trials in `seconds` order) and returns (how good, t0). Stored as its ends over the
    lengths measured on both sides (`positive`: enrolled or target trials' lengths, `negative`:
    strangers' or non-targets'): decisions interpolate between them in log(seconds) and stay flat
    beyond, where one side was never measured."""
    low, high = max(positive.min(), negative.min()), min(positive.max(), negative.max())
    if low >= high:  # the two sides' lengths do not overlap: one threshold for every length
        low = high = float(np.exp(np.log(seconds).mean()))
    typical = float(np.exp(np.log(np.clip(seconds, low, high)).mean()))
    slopes = SLOPE_GRID if high > 1.5 * low else np.array([0.0])
    shifts = np.log(np.clip(seconds, low, high) / typical)
    best = max(((*fit(slope * shifts), -slope) for slope in slopes), key=lambda r: (r[0], r[2]))
    _, t0, slope = best[0], best[1], -best[2]
    line = lambda d: round(float(t0 + slope * np.log(d / typical)), 6)
    return [(round(low, 3), line(low)), (round(high, 3), line(high))] if slope else [(round(typical, 3), line(typical))]


def _fusion_weights(trials: Trials, nontarget: np.ndarray) -> tuple[list[float], str]:
    """The encoders' weights and how they were chosen.

    For two encoders scored on new recordings of the enrolled speakers, the base encoder's weight
    on WEIGHT_GRID with the lowest pairwise EER of the fused scores, ties going to the weight
    nearer 0.5. The pairwise EER scores every trial against every reference, hundreds of times
    the trials the open-set decision rests on, so a handful of calibration strangers cannot swing
    it: choosing the weight by the open-set accuracy itself gave all the weight to the adapted
    encoder on dsp20's three calibration strangers, and let in 23 % of the test strangers.

    When the enrolled trials are the registry's own enrollment recordings (`from_enrollment`),
    the weights are equal: those recordings come from the sessions the adapted encoder trained
    on, so they flatter it (on dsp20 its calibration EER was 0.8 % against 2.7 % on new takes)
    and a weight fitted there gave it 0.85 and doubled the fused EER on new recordings
    (docs/benchmarks.md, "The fusion weight").
    """
    from speakerid.scoring import Fusion

    if len(trials.encoders) == 1:
        return [1.0], "one encoder"
    if trials.from_enrollment:
        return [1 / len(trials.encoders)] * len(trials.encoders), "equal: the enrolled side is the enrollment audio"
    own = trials.own()
    best = None
    for w in WEIGHT_GRID:
        fusion = Fusion.fit(trials.encoders, [w, 1 - w], nontarget)
        rate, _ = eer(fusion.fuse(trials.enrolled)[own], fusion.fuse(nontarget))
        key = (-rate, -abs(w - 0.5))
        if best is None or key > best[0]:
            best = (key, float(w))
    return [best[1], 1 - best[1]], "pairwise EER on new recordings of enrolled speakers"


def fit_scoring(trials: Trials, far: float | None = None, source: str = "calibrated",
                gap: float = LEAD_WEIGHT) -> tuple["Scoring", dict]:
    """The fusion weights, statistics and thresholds that serve `trials` best, and what they achieve.

    With two encoders the weight of the base encoder is chosen on a grid (0, 0.05, ..., 1) by the
    pairwise EER of the fused scores, or equal when the enrolled side is the enrollment audio
    itself (`_fusion_weights`). The identification score weighs the best speaker's lead over the
    second by `gap` (`Scoring.gap`; LEAD_WEIGHT, 0 with one speaker). Scores fall as audio gets shorter, so a
    threshold is a line in log(seconds) (`_length_line`), its slope chosen with its level on all
    trials at once: identification at the operating point (`operating_point`), verification at
    the pairwise EER (or the pairwise false-accept rate `far`). When the lead weighs, a second
    identification line is fitted for the best score alone (`Scoring.cluster`: diarization names
    clusters with it). The report breaks the result down by groups of trials of similar length
    (`duration_groups`).
    """
    from speakerid.scoring import Fusion, Scoring

    if len(trials.enrolled) == 0 or len(trials.strangers) == 0:
        raise CorpusError("calibration needs recordings of enrolled speakers and of strangers to score")
    nontarget = trials.nontarget()
    weights, weights_by = _fusion_weights(trials, nontarget)
    fusion = Fusion.fit(trials.encoders, weights, nontarget)
    fused_enrolled = fusion.fuse(trials.enrolled)
    fused_strangers = np.where(trials.stranger_columns(), fusion.fuse(trials.strangers), -np.inf)

    def identified(lead: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(enrolled trials' identification scores, whether their best speaker is right, strangers' scores)
        with lead weight `lead`: `open_set_curve`'s arguments."""
        rule = Scoring(fusion, None, None, source, {}, lead)
        choice, best_enrolled = rule.identification(fused_enrolled)
        return best_enrolled, choice == trials.truth, rule.identification(fused_strangers)[1]

    gap = gap if len(trials.speakers) > 1 else 0.0
    best_enrolled, right, best_stranger = identified(gap)
    own, real = trials.own(), trials.real_strangers()
    n_e = len(trials.truth)
    all_seconds = np.concatenate([trials.enrolled_seconds, trials.stranger_seconds])

    def identify_line(best_enrolled: np.ndarray, right: np.ndarray, best_stranger: np.ndarray) -> list[tuple[float, float]]:
        def fit(shift: np.ndarray) -> tuple[tuple, float]:
            curve = open_set_curve(best_enrolled - shift[:n_e], right, best_stranger - shift[n_e:])
            i = operating_point(*curve, far)
            return (min(curve[1][i], curve[2][i]), curve[1][i] + curve[2][i]), float(curve[0][i])

        # the line's ends lie where real strangers were measured when there are any: the enrolled
        # trials that stand in for strangers add voices, not lengths
        measured = trials.stranger_seconds[real] if real.any() else trials.stranger_seconds
        return _length_line(fit, all_seconds, trials.enrolled_seconds, measured)

    targets = fused_enrolled[own]
    # pairwise non-targets, each once: a simulated stranger's scores are its enrolled trial's
    nontarget_e, nontarget_u = fused_enrolled[~own], fused_strangers[real].ravel()
    target_seconds = trials.enrolled_seconds
    nontarget_seconds = np.concatenate([np.repeat(trials.enrolled_seconds, own.shape[1] - 1),
                                        np.repeat(trials.stranger_seconds[real], own.shape[1])])

    def verify_fit(shift: np.ndarray) -> tuple[tuple, float]:
        t, n = targets - shift[:n_e], np.concatenate([nontarget_e, nontarget_u]) - shift[n_e:]
        if far is None:
            rate, threshold = eer(t, n)
            return (-rate,), threshold
        threshold, _, miss = threshold_at_far(t, n, far)
        return (-miss,), threshold

    identify_points = identify_line(best_enrolled, right, best_stranger)
    # diarization names clusters by the best score alone (Scoring.for_clusters)
    cluster_points = None if gap == 0 else identify_line(*identified(0.0))
    verify_points = _length_line(verify_fit, np.concatenate([target_seconds, nontarget_seconds]), target_seconds,
                                 nontarget_seconds)
    scoring = Scoring(fusion, identify_points, verify_points, source, {}, gap, cluster_points)
    at_e = np.array([scoring.decision("identify", seconds=d).value for d in trials.enrolled_seconds])
    at_u = np.array([scoring.decision("identify", seconds=d).value for d in trials.stranger_seconds])
    named, rejected = right & (best_enrolled >= at_e), best_stranger < at_u
    groups = [{"seconds": round(seconds, 3), "enrolled_trials": int(mask_e.sum()), "stranger_trials": int(mask_u.sum()),
               "identify_threshold": scoring.decision("identify", seconds=seconds).value,
               "verify_threshold": scoring.decision("verify", seconds=seconds).value,
               "named_right": float(named[mask_e].mean()), "strangers_rejected": float(rejected[mask_u].mean())}
              for seconds, mask_e, mask_u in duration_groups(trials.enrolled_seconds, trials.stranger_seconds)]
    equal_rate, equal_threshold = eer(targets, np.concatenate([nontarget_e, nontarget_u]))
    cost, cost_threshold = min_dcf(targets, np.concatenate([nontarget_e, nontarget_u]))
    report = {
        "operating_point": "balanced" if far is None else f"strangers accepted <= {far:g}",
        "named_right": float(named.mean()), "strangers_rejected": float(rejected.mean()), "top1": float(right.mean()),
        "enrolled_trials": n_e, "stranger_trials": int(len(trials.strangers)), "simulated_stranger_trials": trials.simulated,
        "speakers": len(trials.speakers), "by_length": groups,
        "eer": equal_rate, "eer_threshold": equal_threshold, "min_dcf": cost, "min_dcf_threshold": cost_threshold,
        "encoder_eer": {e: eer(trials.enrolled[own][:, k], nontarget[:, k])[0] for k, e in enumerate(trials.encoders)},
        "weights": dict(zip(trials.encoders, fusion.weights)), "weights_by": weights_by, "gap": gap,
        "calibrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    scoring = Scoring(fusion, identify_points, verify_points, source, report, gap, cluster_points)
    return scoring, {**report, "curve": {"targets": targets, "nontargets": np.concatenate([nontarget_e, nontarget_u])}}


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

    def to_dict(self) -> dict:
        return {"registry": self.registry, "data": self.data, "encoders": self.encoders, "enrolled_side": self.enrolled_side,
                "identify_thresholds": self.scoring.identify, "verify_thresholds": self.scoring.verify,
                "cluster_thresholds": self.scoring.cluster,
                "fusion": self.scoring.fusion.to_dict(), **self.report, "plot": self.plot, "stored": self.stored,
                "skipped": [{"speaker": s, "reason": r} for s, r in self.skipped],
                "failed": [{"file": f, "reason": r} for f, r in self.failed]}


def calibrate(registry: str | Path, data_dir: str | Path, model: str | Path | None = None, far: float | None = None,
              out: str | Path | None = None, store: bool = True, device: str = "auto",
              progress: bool = True) -> CalibrationResult:
    """Fit the registry's decisions on the task users run: naming its enrolled speakers, rejecting strangers.

    `data_dir` holds speaker folders. A folder named like an enrolled speaker holds that
    speaker's other recordings (files already enrolled are left out); every other folder is a
    stranger. Without such recordings, the enrolled side comes from the registry's own
    enrollment audio by cross-validation: each recording is scored with its speaker's reference
    rebuilt without it (after `adapt`, only the recordings the adapted encoder never trained on).
    Each enrolled trial also doubles as a stranger by leaving its own speaker out, beside the real
    strangers (or alone, without any).

    Trials are whole recordings and clips of `CLIP_SECONDS` cut from them, so that thresholds can
    follow the length of what is identified. Fits the fusion weights and the thresholds by length
    (`fit_scoring`: identification at the balanced point, or where at most `far` of strangers are
    accepted; verification at the pairwise EER, or at pairwise false-accept rate `far`), stores
    them unless `store` is False, and draws `out` (PNG) when given.
    """
    from speakerid.voices import VoiceRegistry

    if far is not None and not 0 < far < 1:
        raise CorpusError(f"the false-accept rate must lie in (0, 1), got {far}")
    data_dir = Path(data_dir).resolve()
    voices = VoiceRegistry(registry, model, device, create=False)
    try:
        trials, enrolled_side, skipped, failed = gather_trials(voices, data_dir, progress)
        scoring, report = fit_scoring(trials, far)
        curve = report.pop("curve")
        result = CalibrationResult(str(registry), str(data_dir), trials.encoders, enrolled_side, scoring, report, curve,
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


def gather_trials(voices, data_dir: Path, progress: bool = True) -> tuple[Trials, str, list, list]:
    """(trials, where the enrolled side came from, skipped speakers, failed files) for calibrating
    `voices` (a VoiceRegistry) on `data_dir`, as `calibrate` describes."""
    names, _ = voices.reference_matrices()
    if len(names) < 2:
        raise CorpusError(f"{voices.registry.path} has {len(names)} enrolled speaker(s); calibration needs at least 2 "
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
        strangers, stranger_seconds = _score_files(voices, stranger_files, failed, advance, len(names))
        if held_out:
            enrolled_side, skipped = "held-out recordings", []
            rows, truth, seconds = [], [], []
            for speaker, files in sorted(held_out.items()):
                scored, lengths = _score_files(voices, files, failed, advance, len(names))
                rows.append(scored)
                seconds.append(lengths)
                truth += [column[speaker]] * len(scored)
            enrolled, enrolled_seconds = np.concatenate(rows), np.concatenate(seconds)
        else:
            enrolled_side = "cross-validation"
            enrolled, truth, enrolled_seconds, skipped = _registry_trials(voices, names, failed)
    from_enrollment = not held_out
    if len(enrolled) == 0:
        raise CorpusError(f"{data_dir}: no recording of an enrolled speaker could be scored")
    encoders = [e.name for e in voices.encoders]
    truth = np.asarray(truth)
    trials = Trials.simulating_strangers(encoders, names, enrolled, truth, enrolled_seconds, from_enrollment, strangers,
                                         stranger_seconds)
    return trials, enrolled_side, skipped, failed


def _sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


CLIP_SECONDS = (1.5, 3.0, 6.0, 12.0)  # clips cut from trial recordings at least half as long again
CLIPS_PER_LENGTH = 2


def _clips(audio: np.ndarray, label: str) -> list[tuple[np.ndarray, str, float]]:
    """(audio, label, seconds) of the trials a recording gives: itself, and up to CLIPS_PER_LENGTH
    clips of each CLIP_SECONDS length it holds half as long again, spread over it."""
    from speakerid.audio import SAMPLE_RATE

    out = [(audio, label, len(audio) / SAMPLE_RATE)]
    for seconds in CLIP_SECONDS:
        size = round(seconds * SAMPLE_RATE)
        if len(audio) < 1.5 * size:
            continue
        starts = np.linspace(0, len(audio) - size, CLIPS_PER_LENGTH + 2)[1:-1].astype(int)
        out += [(audio[s : s + size], f"{label} [{s / SAMPLE_RATE:.1f} s +{seconds:g} s]", seconds) for s in starts]
    return out


def _score_files(voices, files: list[Path], failed: list, advance, n_speakers: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, speakers, encoders) cosine scores of the files' trials (`_clips`) against every reference, and their lengths."""
    from speakerid.errors import RegistryError

    rows, seconds = [], []
    for path in files:
        try:
            for index, (clip, label, length) in enumerate(_clips(load_audio(path), str(path))):
                try:
                    rows.append(voices.score([clip], [label]).cosines[0])
                    seconds.append(length)
                except AudioError as err:
                    failed.append((label, err.reason))
                    if index == 0:  # the whole recording: its clips hold less of the same audio; reported once
                        break
        except (AudioError, RegistryError) as err:
            failed.append((str(path), getattr(err, "reason", str(err))))
        advance()
    if not rows:
        return np.zeros((0, n_speakers, len(voices.encoders))), np.zeros(0)
    return np.stack(rows), np.array(seconds)


def cross_validation_trials(names: list[str], by_speaker: dict[str, list[int]], stored: list[dict[int, np.ndarray]],
                            held_out: set[int] | None, lengths: dict[int, float], clips=None
                            ) -> tuple[np.ndarray, list[int], np.ndarray, list[tuple[str, str]]]:
    """Enrolled trials from enrolled recordings: each held-out recording (every recording when
    `held_out` is None) is scored, per encoder, against every speaker's reference, its own speaker's
    rebuilt from the speaker's other recordings. `stored` holds each encoder's embeddings (recording
    id -> vector) and `lengths` each recording's seconds; `clips(recording id)`, when given, adds
    trials of its own: (one vector per encoder, seconds) for clips of it.
    Returns (trials (T, S, E), truth, seconds (T,), skipped speakers)."""
    from speakerid.registry import reference

    full = [np.stack([reference(np.stack([vectors[r] for r in by_speaker[name]])) for name in names]) for vectors in stored]
    rows, truth, seconds, skipped = [], [], [], []
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
            probes = [([vectors[trial] for vectors in stored], lengths[trial])] + (clips(trial) if clips else [])
            for probe, length in probes:
                scores = np.stack([full[k] @ probe[k] for k in range(len(stored))], axis=-1)  # (S, E)
                scores[column] = [own[k] @ probe[k] for k in range(len(stored))]
                rows.append(scores)
                truth.append(column)
                seconds.append(length)
    empty = np.zeros((0, len(names), len(stored)))
    return (np.stack(rows) if rows else empty), truth, np.array(seconds), skipped


def _registry_trials(voices, names: list[str], failed: list) -> tuple[np.ndarray, list[int], np.ndarray, list[tuple[str, str]]]:
    """`cross_validation_trials` on a registry's recordings, stored embeddings and clips of its stored
    audio (after `adapt`, only the recordings its adapted encoder held out)."""
    from speakerid.registry import ADAPTED

    registry = voices.registry
    records = registry.encoders()
    adapted = next((r for r in records if r.role == ADAPTED), None)
    held_out = None if adapted is None else set(adapted.config.get("held_out", []))
    by_speaker: dict[str, list[int]] = {}
    lengths: dict[int, float] = {}
    for recording in registry.recordings():
        by_speaker.setdefault(recording["speaker"], []).append(recording["id"])
        lengths[recording["id"]] = recording["seconds"]

    def clips(recording: int) -> list[tuple[list[np.ndarray], float]]:
        found = []
        audio = registry.audio(recording).astype(np.float32) / 32768.0
        for clip, label, length in _clips(audio, f"recording {recording}")[1:]:
            try:
                found.append(([v[0] for v in voices.embed([clip], [label]).values()], length))
            except AudioError as err:
                failed.append((label, err.reason))
        return found

    stored = [registry.embeddings(r.name) for r in records]
    return cross_validation_trials(names, by_speaker, stored, held_out, lengths, clips)
