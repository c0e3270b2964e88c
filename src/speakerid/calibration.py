"""calibrate: choose the decision threshold on the user's own recordings, and the metrics behind it.

A score is a cosine between a recording's embedding and a speaker's reference; a trial is
accepted when its score is at or above the threshold. Target trials compare a speaker with
itself, non-target trials with someone else. Over all candidate thresholds:

    miss rate (FRR)          share of target scores below the threshold
    false-accept rate (FAR)  share of non-target scores at or above the threshold

Candidate thresholds lie halfway between neighbouring distinct scores (and at the lowest score,
and just above the highest), so every threshold reported sits in the middle of a gap between
scores rather than on one of them.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from speakerid.audio import load_audio
from speakerid.corpus import scan
from speakerid.errors import AudioError, CorpusError

__all__ = ["CalibrationResult", "calibrate", "enrollment_split", "det_curve", "eer", "threshold_at_far", "min_dcf"]


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


# ---------------------------------------------------------------- calibrate


@dataclass
class CalibrationResult:
    """What `calibrate` measured, and the threshold it chose (the one at the asked false-accept rate)."""

    registry: str
    data: str
    encoder: str
    threshold: float
    far: float  # asked
    far_measured: float  # at `threshold`, on these trials
    frr: float  # miss rate at `threshold`
    eer: float
    eer_threshold: float
    min_dcf: float
    min_dcf_threshold: float
    p_target: float
    trial_seconds: float | None
    speakers: list[str]
    enrollment: dict[str, list[str]]  # recordings that built each speaker's temporary reference
    trials: dict[str, list[str]]  # recordings scored against every reference
    target_scores: np.ndarray
    nontarget_scores: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)  # speakers left out, and why
    failed: list[tuple[str, str]] = field(default_factory=list)  # files that could not be used, and why
    calibrated_at: str = ""
    plot: str | None = None
    stored: bool = False

    def threshold_info(self) -> dict:
        """The registry's record of this calibration."""
        return {
            "value": self.threshold, "far": self.far, "far_measured": self.far_measured, "frr": self.frr,
            "eer": self.eer, "eer_threshold": self.eer_threshold, "min_dcf": self.min_dcf,
            "min_dcf_threshold": self.min_dcf_threshold, "p_target": self.p_target,
            "target_trials": len(self.target_scores), "nontarget_trials": len(self.nontarget_scores),
            "speakers": len(self.speakers), "trial_seconds": self.trial_seconds, "encoder": self.encoder,
            "calibrated_at": self.calibrated_at, "data": self.data,
        }

    def to_dict(self) -> dict:
        skip = {"target_scores", "nontarget_scores", "skipped", "failed"}
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["target_trials"], out["nontarget_trials"] = len(self.target_scores), len(self.nontarget_scores)
        out["skipped"] = [{"speaker": s, "reason": r} for s, r in self.skipped]
        out["failed"] = [{"file": f, "reason": r} for f, r in self.failed]
        return out


def calibrate(registry: str | Path, data_dir: str | Path, model: str | Path | None = None, enroll_per_speaker: int = 3,
              trial_seconds: float | None = None, far: float = 0.01, p_target: float = 0.01, seed: int = 0,
              out: str | Path | None = None, store: bool = True, device: str = "auto",
              progress: bool = True) -> CalibrationResult:
    """Measure how the registry's encoder separates the speakers of `data_dir`, and store the threshold at `far`.

    Each speaker folder's recordings are split (seeded, by recording) into `enroll_per_speaker`
    recordings that build a temporary reference (never written to the registry; at most all but
    one recording) and trials: whole recordings, or clips of `trial_seconds` cut from them (the
    tail shorter than a clip is dropped; a recording shorter than one clip is one trial). Every
    trial is scored against every reference: its own speaker's is a target trial, the others
    non-target trials. Speakers with fewer than 2 recordings are skipped and reported.

    The chosen threshold is `threshold_at_far(targets, non-targets, far)`: false accepts are
    counted per comparison, and identification compares a stranger with every enrolled speaker,
    so with N speakers a stranger passes more often than `far` (at most N times as often).
    Scores depend on recording length: calibrate on recordings (or `trial_seconds` clips) as long
    as those that will be identified.

    With `store`, the threshold goes into the registry (which records the encoder if it is new);
    without it, nothing is written, and a registry file that does not exist is not created.
    `out` names the DET plot to draw.
    """
    from speakerid.registry import VoiceRegistry

    if int(enroll_per_speaker) != enroll_per_speaker or enroll_per_speaker < 1:
        raise CorpusError(f"enroll_per_speaker must be a whole number of recordings, at least 1; got {enroll_per_speaker}")
    if trial_seconds is not None and trial_seconds <= 0:
        raise CorpusError(f"trial length must be positive, got {trial_seconds} s")
    if not 0 < far < 1:
        raise CorpusError(f"the false-accept rate must lie in (0, 1), got {far}")
    if not 0 < p_target < 1:
        raise CorpusError(f"the target prior must lie in (0, 1), got {p_target}")
    data_dir = Path(data_dir).resolve()
    enrollment, trials, skipped = enrollment_split(data_dir, int(enroll_per_speaker), seed)
    if len(enrollment) < 2:
        raise CorpusError(f"{data_dir}: calibration needs at least 2 speakers with 2 or more recordings each; "
                          f"found {len(enrollment)}")

    # Without `store`, a registry file that does not exist is not created: GE2E (or `model`) is used.
    voices = VoiceRegistry(registry, model, device) if store or Path(registry).exists() else None
    try:
        if voices is None:
            from speakerid.encoders import load_encoder

            encoder = load_encoder(model, device)
        else:
            encoder = voices.encoder
        result = _measure(encoder, str(registry), data_dir, enrollment, trials, skipped, trial_seconds, far, p_target,
                          progress)
        if out is not None:
            result.plot = str(_plot(result, out))
        if store:
            voices.registry.bind_encoder(encoder)
            voices.registry.set_threshold(result.threshold_info())
            result.stored = True
    finally:
        if voices is not None:
            voices.close()
    return result


def _measure(encoder, registry: str, data_dir: Path, enrollment: dict, trials: dict, skipped: list, trial_seconds: float | None,
             far: float, p_target: float, progress: bool) -> CalibrationResult:
    """Embed enrollment and trial recordings, score every trial against every reference, compute the metrics."""
    from speakerid.progress import progress_bar
    from speakerid.registry import reference

    failed: list[tuple[str, str]] = []
    names, references, trial_vectors, trial_owner = [], [], [], []
    total = sum(map(len, enrollment.values())) + sum(map(len, trials.values()))
    with progress_bar("calibrating", total=total, enabled=progress) as advance:
        for speaker in sorted(enrollment):
            vectors = []
            for path in enrollment[speaker]:
                vectors += _embed(encoder, path, None, failed)
                advance()
            if not vectors:
                skipped.append((speaker, "no enrollment recording could be used"))
                continue
            names.append(speaker)
            references.append(reference(np.stack(vectors)))
        for speaker in sorted(trials):
            for path in trials[speaker]:
                clips = _embed(encoder, path, trial_seconds, failed)
                trial_vectors += clips
                trial_owner += [speaker] * len(clips)
                advance()
    if len(names) < 2 or not trial_vectors:
        raise CorpusError(f"{data_dir}: calibration needs at least 2 speakers with 2 or more usable recordings each; "
                          f"found {len(names)} usable speaker(s)")
    scores = np.stack(trial_vectors) @ np.stack(references).T  # (trials, speakers)
    is_target = np.array(trial_owner)[:, None] == np.array(names)[None, :]
    targets, nontargets = scores[is_target], scores[~is_target]
    if len(targets) == 0:
        raise CorpusError(f"{data_dir}: no speaker had both an enrollment and a trial recording that could be used")

    threshold, far_measured, frr = threshold_at_far(targets, nontargets, far)
    equal_rate, equal_threshold = eer(targets, nontargets)
    cost, cost_threshold = min_dcf(targets, nontargets, p_target)
    return CalibrationResult(
        registry=registry, data=str(data_dir), encoder=encoder.name, threshold=threshold, far=far,
        far_measured=far_measured, frr=frr, eer=equal_rate, eer_threshold=equal_threshold, min_dcf=cost,
        min_dcf_threshold=cost_threshold, p_target=p_target, trial_seconds=trial_seconds, speakers=names,
        enrollment={s: [_relative(p, data_dir) for p in enrollment[s]] for s in names},
        trials={s: [_relative(p, data_dir) for p in trials[s]] for s in sorted(trials)},
        target_scores=targets, nontarget_scores=nontargets, skipped=sorted(skipped), failed=failed,
        calibrated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _plot(result: CalibrationResult, out: str | Path) -> Path:
    from speakerid.plots import plot_det

    _, far, frr = det_curve(result.target_scores, result.nontarget_scores)
    marks = {
        f"EER {result.eer:.2%} (threshold {result.eer_threshold:.3f})": (result.eer, result.eer),
        f"FAR ≤ {result.far:g} (threshold {result.threshold:.3f})": (result.far_measured, result.frr),
    }
    title = (f"{result.encoder} on {Path(result.data).name}: "
             f"{len(result.target_scores)} target, {len(result.nontarget_scores)} non-target trials")
    return plot_det(far, frr, out, marks, title)


def enrollment_split(data_dir: str | Path, enroll_per_speaker: int = 3,
                     seed: int = 0) -> tuple[dict[str, list[Path]], dict[str, list[Path]], list[tuple[str, str]]]:
    """(enrollment, trials, skipped): each speaker's recordings split by recording, as `calibrate` splits them.

    The split is seeded and stable per speaker (adding a speaker does not move the others'
    recordings); `enroll_per_speaker` recordings enroll, at most all but one. Speakers with a
    single recording are skipped, with the reason.
    """
    sources, _ = scan(data_dir)
    by_speaker: dict[str, list] = {}
    for source in sources:
        by_speaker.setdefault(source.speaker, []).append(source)
    enrollment, trials, skipped = {}, {}, []
    for speaker, found in sorted(by_speaker.items()):
        if len(found) < 2:
            skipped.append((speaker, "one recording; calibration needs one to enroll and one to test"))
            continue
        ordered = sorted(found, key=lambda s: s.recording)
        rng = np.random.default_rng([seed, zlib.crc32(speaker.encode("utf-8"))])
        ordered = [ordered[i] for i in rng.permutation(len(ordered))]
        n_enroll = min(enroll_per_speaker, len(ordered) - 1)
        enrollment[speaker] = [s.path for s in ordered[:n_enroll]]
        trials[speaker] = [s.path for s in ordered[n_enroll:]]
    return enrollment, trials, skipped


def _embed(encoder, path: Path, clip_seconds: float | None, failed: list) -> list[np.ndarray]:
    """Embeddings of a recording, whole or one per clip; what cannot be used is added to `failed`."""
    try:
        audio = load_audio(path, encoder.sample_rate)
    except AudioError as err:
        failed.append((str(path), err.reason))
        return []
    if clip_seconds is None:
        clips = {str(path): audio}
    else:
        size = round(clip_seconds * encoder.sample_rate)
        starts = range(0, max(1, len(audio) - size + 1), size)
        clips = {f"{path} [{start / encoder.sample_rate:g} s]": audio[start : start + size] for start in starts}
    vectors = []
    for name, clip in clips.items():
        try:
            vectors.append(encoder.embed(clip, name))
        except AudioError as err:
            failed.append((name, err.reason))
    return vectors


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
