"""Voices the encoder never heard: GE2E alone, the adapted encoder alone, and both fused, on the open-set task.

The product path, on real speech: `enroll` the enrolled speakers, `adapt`, `calibrate` on
calibration strangers (the enrolled side by cross-validation on the recordings adapt held out),
then identify held-out recordings of the enrolled speakers and recordings of test strangers.

  so125   speakers sorted by name, seeded split: 100 enrolled (8 sentences enroll, the other 4 are
          test trials), 10 calibration strangers, 15 test strangers (all 12 sentences each)
  dsp20   14 enrolled (takes 1-3 enroll; takes 4-5, cut into 5-s clips, are test trials),
          3 calibration strangers and 3 test strangers (every take, 5-s clips)

The three contenders score the same trials from the same registry: each is calibrated (weights,
thresholds by length at the balanced point) on the same calibration trials, those `calibrate`
gathers (`speakerid.calibration.gather_trials`), with its own encoders only.
Reported: closed-set top-1 among the enrolled, open-set accuracy at the calibrated threshold
(enrolled trials named right / test strangers rejected), pairwise EER on the test trials, the
smaller share where the calibrated threshold line, moved up or down on the test itself, balances
the two (an oracle: what a perfect choice of level would reach); the
time `adapt` took, where the errors fall (speakers, sentence length, voice pitch), and the pairwise
EER of the fused scores for each GE2E weight, on the calibration trials and on the test trials.

    python benchmarks/bench_enroll.py                 # both data sets
    python benchmarks/bench_enroll.py --data so125 --minutes 5
    python benchmarks/bench_enroll.py --data so125 --seed 1 --cache benchmarks/.cache/enroll-s1   # another split
    python benchmarks/bench_enroll.py --data so125 --model tdnn      # adapt another backbone
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CACHE = HERE / ".cache" / "enroll"
LEAD_GRID = (0.0, 0.5, 1.0, 2.0)  # lead weights compared side by side (calibration.LEAD_WEIGHT is the product's)


def link(dest: Path, files: list[Path]) -> Path:
    for f in files:
        (dest / f.parent.name).mkdir(parents=True, exist_ok=True)
        (dest / f.parent.name / f.name).symlink_to(f)
    return dest


def split(name: str, seed: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]], list[str], list[str]]:
    """(enrollment files, test files per enrolled speaker, calibration strangers, test strangers)."""
    root = DATA / name
    speakers = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    n_enrolled, n_cal = (100, 10) if name == "so125" else (14, 3)
    enrolled, cal, test = sorted(order[:n_enrolled]), order[n_enrolled : n_enrolled + n_cal], order[n_enrolled + n_cal :]
    enroll, trials = {}, {}
    for speaker in enrolled:
        files = sorted((root / speaker).glob("*.flac"))
        if name == "so125":
            files = [files[i] for i in np.random.default_rng([seed, zlib.crc32(speaker.encode())]).permutation(len(files))]
            enroll[speaker], trials[speaker] = sorted(files[:8]), sorted(files[8:])
        else:
            enroll[speaker], trials[speaker] = files[:3], files[3:]
    return enroll, trials, sorted(cal), sorted(test)


def clips_of(path: Path, seconds: float | None) -> list[np.ndarray]:
    from speakerid.audio import load_audio

    audio = load_audio(path)
    if seconds is None:
        return [audio]
    size = int(seconds * 16000)
    return [audio[s : s + size] for s in range(0, max(1, len(audio) - size + 1), size)]


def pitch(audio: np.ndarray) -> float:
    """Median fundamental frequency (Hz) of the voiced frames, by autocorrelation: a proxy for children's voices."""
    frame, hop = 640, 320
    f0 = []
    for start in range(0, len(audio) - frame, hop):
        x = audio[start : start + frame] - audio[start : start + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.01:
            continue
        r = np.correlate(x, x, "full")[frame - 1 :]
        lo, hi = 16000 // 500, 16000 // 70  # 70-500 Hz
        lag = lo + int(np.argmax(r[lo:hi]))
        if r[lag] > 0.4 * r[0]:
            f0.append(16000 / lag)
    return float(np.median(f0)) if f0 else float("nan")


def run(name: str, seed: int, minutes: float | None, epochs: int | None, model: str | None, options: dict | None,
        cache: Path = CACHE, augment: dict | None = None) -> None:
    from speakerid.adapt import adapt
    from speakerid.augment import AugmentConfig
    from speakerid.calibration import (LEAD_WEIGHT, Trials, eer, fit_scoring, gather_trials, open_set_curve,
                                       operating_point)
    from speakerid.voices import VoiceRegistry

    enroll, trials, cal, test = split(name, seed)
    seconds = None if name == "so125" else 5.0
    work = cache / name
    shutil.rmtree(work, ignore_errors=True)
    data = link(work / "enroll", [f for files in enroll.values() for f in files])
    voices = VoiceRegistry(work / "voices.db")
    began = time.perf_counter()
    voices.enroll_folder(data, progress=False)
    enroll_seconds = time.perf_counter() - began
    voices.close()
    began = time.perf_counter()
    adapted = adapt(work / "voices.db", minutes=minutes, epochs=epochs, seed=seed, progress=False,
                    recipe={k: v for k, v in (("model", model), ("options", options),
                                              ("augment", None if augment is None else AugmentConfig.from_dict(augment)))
                            if v is not None})
    adapt_seconds = time.perf_counter() - began

    voices = VoiceRegistry(work / "voices.db", create=False)
    encoders = [e.name for e in voices.encoders]
    names, _ = voices.reference_matrices()
    column = {n: i for i, n in enumerate(names)}

    def score(files: list[Path]) -> tuple[np.ndarray, list[tuple[Path, np.ndarray]]]:
        rows, kept = [], []
        for f in files:
            for clip in clips_of(f, seconds):
                rows.append(voices.score([clip]).cosines[0])
                kept.append((f, clip))
        return np.stack(rows), kept

    # calibration trials, exactly as `calibrate` builds them (cross-validation on adapt's held-out
    # recordings, whole and in clips; the calibration strangers, whole and in clips)
    strangers_dir = link(work / "strangers", [f for s in cal for f in sorted((DATA / name / s).glob("*.flac"))])
    calibration_trials, _, _, _ = gather_trials(voices, strangers_dir, progress=False)
    test_files = [(s, f) for s, files in trials.items() for f in files]
    test_enrolled, test_kept = score([f for _, f in test_files])
    test_truth = np.array([column[f.parent.name] for f, _ in test_kept])
    test_strangers, stranger_kept = score([f for s in test for f in sorted((DATA / name / s).glob("*.flac"))])
    enrolled_seconds = np.array([len(c) / 16000 for _, c in test_kept])
    stranger_seconds = np.array([len(c) / 16000 for _, c in stranger_kept])

    contenders = {"GE2E alone, no lead": ([0], 0.0), "GE2E alone": ([0], LEAD_WEIGHT), "adapted alone": ([1], LEAD_WEIGHT),
                  "fused, no lead": ([0, 1], 0.0), "fused": ([0, 1], LEAD_WEIGHT)}
    print(f"\n{name}: {len(names)} enrolled speakers, {len(cal)} calibration and {len(test)} test strangers; "
          f"{len(test_truth)} enrolled and {len(test_strangers)} stranger test trials"
          f"{'' if seconds is None else f' ({seconds:g}-s clips)'}")
    print(f"enroll {enroll_seconds:.0f} s; adapt {adapt_seconds:.0f} s ({model or 'the recipe'}'s model{'' if options is None else f' {json.dumps(options)}'}{'' if augment is None else f', augment {json.dumps(augment)}'}, {adapted.epochs} epochs, "
          f"{adapted.train_seconds:.0f} s of training, {adapted.recordings} recordings re-embedded)")
    def measure(keep: list[int], lead: float) -> dict:
        """The contender scoring with encoders `keep` and lead weight `lead`, calibrated on the
        calibration trials as `calibrate` does, then judged on the test trials."""
        t = calibration_trials
        calibration = Trials([encoders[k] for k in keep], names, t.enrolled[..., keep], t.truth, t.strangers[..., keep],
                             t.enrolled_seconds, t.stranger_seconds, t.excluded, t.from_enrollment)
        scoring, _ = fit_scoring(calibration, gap=lead)
        fused_enrolled = scoring.fusion.fuse(test_enrolled[..., keep])
        fused_strangers = scoring.fusion.fuse(test_strangers[..., keep])
        best, evidence = scoring.identification(fused_enrolled)
        right = best == test_truth
        at = lambda seconds: np.array([scoring.decision("identify", seconds=d).value for d in seconds])
        named = right & (evidence >= at(enrolled_seconds))
        stranger_evidence = scoring.identification(fused_strangers)[1]
        rejected = stranger_evidence < at(stranger_seconds)
        # the calibrated threshold line moved up or down to where the test itself is balanced
        curve = open_set_curve(evidence - at(enrolled_seconds), right, stranger_evidence - at(stranger_seconds))
        i = operating_point(*curve, None)
        own = np.zeros(fused_enrolled.shape, bool)
        own[np.arange(len(test_truth)), test_truth] = True
        rate, _ = eer(fused_enrolled[own], np.concatenate([fused_enrolled[~own], fused_strangers.ravel()]))
        return {"scoring": scoring, "right": right, "named": named, "rejected": rejected, "eer": rate,
                "oracle": min(curve[1][i], curve[2][i]), "closest": fused_strangers.argmax(axis=1)}

    print("\n| contender | weights | lead weight | closed-set top-1 | enrolled named right | strangers rejected | EER "
          "| balanced at the best level (oracle) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    answers = {}
    for label, (keep, lead) in contenders.items():
        m = measure(keep, lead)
        weights = " + ".join(f"{w:.2f}" for w in m["scoring"].fusion.weights)
        print(f"| {label} | {weights} | {m['scoring'].gap:g} | {m['right'].mean():.1%} | {m['named'].mean():.1%} "
              f"| {m['rejected'].mean():.1%} | {m['eer']:.2%} | {m['oracle']:.1%} |")
        answers[label] = (m["named"], m["rejected"], m["closest"])

    # the lead's weight: the worse of the two shares at the calibrated threshold, and the oracle
    print("\nlead weight: the worse of named right and rejected at the calibrated threshold (the oracle in brackets)")
    print("\n| encoders | " + " | ".join(f"lead {lead:g}" for lead in LEAD_GRID) + " |")
    print("|---|" + "---:|" * len(LEAD_GRID))
    for label, keep in (("GE2E alone", [0]), ("adapted alone", [1]), ("fused", [0, 1])):
        cells = []
        for lead in LEAD_GRID:
            m = measure(keep, lead)
            cells.append(f"{min(m['named'].mean(), m['rejected'].mean()):.1%} ({m['oracle']:.1%})")
        print(f"| {label} | " + " | ".join(cells) + " |")

    # the fusion weight: what the calibration trials say against what the test trials say
    from speakerid.scoring import Fusion

    t = calibration_trials
    own_c, nontarget_c = t.own(), t.nontarget()
    print("\nfusion weight of the base encoder (GE2E): pairwise EER of the fused scores on the calibration trials "
          "(enrollment audio held out by adapt, strangers) and on the test trials")
    print("\n| GE2E weight | calibration EER | test EER |")
    print("|---:|---:|---:|")
    for w in np.round(np.linspace(0, 1, 11), 1):
        fusion = Fusion.fit(encoders, [w, 1 - w], nontarget_c)
        calibration_eer, _ = eer(fusion.fuse(t.enrolled)[own_c], fusion.fuse(nontarget_c))
        te = fusion.fuse(test_enrolled)
        own = np.zeros(te.shape, bool)
        own[np.arange(len(test_truth)), test_truth] = True
        test_eer, _ = eer(te[own], np.concatenate([te[~own], fusion.fuse(test_strangers).ravel()]))
        print(f"| {w:.1f} | {calibration_eer:.2%} | {test_eer:.2%} |")

    # where the fused system errs
    named, rejected, closest = answers["fused"]
    missed = [(f, clip) for (f, clip), ok in zip(test_kept, named) if not ok]
    print(f"\nfused errors: {len(missed)} of {len(named)} enrolled trials not named right, "
          f"{int((~rejected).sum())} of {len(rejected)} stranger trials let in")
    short = enrolled_seconds < np.median(enrolled_seconds)
    if short.any():
        print(f"  by length: {1 - named[short].mean():.1%} missed among trials under the median "
              f"{np.median(enrolled_seconds):.1f} s, {1 - named[~short].mean():.1%} from it up")
    by_speaker_missed: dict[str, int] = {}
    for f, _ in missed:
        by_speaker_missed[f.parent.name] = by_speaker_missed.get(f.parent.name, 0) + 1
    worst = sorted(by_speaker_missed.items(), key=lambda kv: -kv[1])[:5]
    print(f"  by speaker: {len(by_speaker_missed)} speakers share the misses; most: "
          + ", ".join(f"{s} {n}" for s, n in worst))
    pitches = {s: pitch(np.concatenate([clips_of(f, None)[0] for f in files])) for s, files in trials.items()}
    high = {s for s, p in pitches.items() if p >= 250}
    is_high = np.array([f.parent.name in high for f, _ in test_kept])
    if is_high.any() and (~is_high).any():
        print(f"  by voice: {1 - named[is_high].mean():.1%} missed for the {len(high)} speakers with a median pitch "
              f"of 250 Hz or more (children's range), {1 - named[~is_high].mean():.1%} for the "
              f"{len(pitches) - len(high)} others")
    let_in = [(f.parent.name, names[c]) for (f, _), ok, c in zip(stranger_kept, rejected, closest) if not ok]
    if let_in:
        counts = Counter(let_in).most_common()
        print("  strangers let in (stranger -> taken for, trials): " + ", ".join(f"{a}->{b} {n}" for (a, b), n in counts))
    voices.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["so125", "dsp20", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None, help="adapt's training budget (default: its recipe's)")
    parser.add_argument("--epochs", type=int, default=None, help="adapt's epochs (default: its recipe's)")
    parser.add_argument("--model", default=None, help="adapt's model family (default: its recipe's)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="work folder (two runs at once need two)")
    parser.add_argument("--options", type=json.loads, default=None, help="adapt's model options, JSON (default: its recipe's)")
    parser.add_argument("--augment", type=json.loads, default=None,
                        help="adapt's augmentation, JSON of speakerid.augment.AugmentConfig fields (default: its recipe's)")
    args = parser.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} CPU cores, {'CUDA' if torch.cuda.is_available() else 'no GPU'}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    for name in (["so125", "dsp20"] if args.data == "both" else [args.data]):
        run(name, args.seed, args.minutes, args.epochs, args.model, args.options, args.cache, args.augment)


if __name__ == "__main__":
    main()
