"""Who spoke when: speakerid's diarization against the sliding-window baseline, on meetings of real speech.

Meetings are mixed from so125 by `speakerid.meetings` (seeded, never stored): each has 3 enrolled
speakers, speaking sentences they did not enroll with, and 1 stranger; pauses of 0.2-1.2 s, 15 % of
turns overlapping the one before, levels differing by up to +-6 dB per speaker. One registry holds
every meeting's enrolled speakers (5 sentences each; with `--adapt`, adapted to them), and its
thresholds are calibrated (`speakerid.calibration.calibrate`, balanced point) on so125 speakers
in no meeting, with their sentences joined four by four (about 14 s), as long as the speech a
voice has in a meeting.

Baseline (Resemblyzer's diarization demo): 1.6-s GE2E windows every 0.4 s over the whole recording,
each labelled with its best enrolled speaker, or "unknown-1" under the same threshold; windows the
encoder finds no speech in stay unlabelled; each 0.1-s frame takes the label of the window centred
nearest to it.

`--dev` runs on other meetings (other speakers, another seed): the ones the settings were chosen on.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_diarize.py --meetings 12
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from speakerid.der import UNKNOWN_PREFIX, DerResult, Turn, diarization_error, named_error
from speakerid.diarize import DiarizeConfig, diarize_audio, scores_of
from speakerid.audio import load_audio, write_wav
from speakerid.meetings import build_meeting, plan_meetings, trim_silence

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "so125"
CACHE = ROOT / "benchmarks" / ".cache"
JOINED = 4  # sentences per calibration recording (about 14 s)


def registry_for(enrollment: dict[str, list[Path]], calibration: list[str], tag: str, adapted: bool):
    """A registry with the enrolled speakers (adapted to them with `adapt` when `adapted`) and its
    thresholds calibrated on the `calibration` speakers (cached)."""
    from speakerid.adapt import adapt
    from speakerid.calibration import calibrate
    from speakerid.voices import VoiceRegistry

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"diarize-{tag}{'-adapted' if adapted else ''}.db"
    voices = VoiceRegistry(path)
    if {s["name"] for s in voices.speakers()} != set(enrollment):
        for speaker, files in sorted(enrollment.items()):
            voices.enroll(speaker, files)
    if adapted and len(voices.encoders) == 1:
        adapt(path, progress=False)
    if voices.scoring.identify is None or voices.scoring.source != "calibrated":
        # Names are decided on all of a voice's speech in a meeting (tens of seconds), so the threshold is
        # calibrated on recordings of that length: each calibration speaker's sentences joined in threes.
        folder = CACHE / f"calibration-{tag}"
        for speaker in calibration:
            sentences = sorted((DATA / speaker).glob("*.flac"))
            for part in range(len(sentences) // JOINED):
                out = folder / speaker / f"joined{part}.wav"
                if not out.exists():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    joined = [trim_silence(load_audio(f)) for f in sentences[part * JOINED : (part + 1) * JOINED]]
                    write_wav(out, np.concatenate(joined))
        calibrate(path, folder, progress=False)
    return VoiceRegistry(path)


def baseline(voices, audio: np.ndarray, window: float = 1.6, step: float = 0.4, frame: float = 0.1) -> list[Turn]:
    """Resemblyzer's demo: every window labelled on its own at the threshold, no VAD, no clustering."""
    from speakerid.errors import AudioError

    rate = voices.encoder.sample_rate
    starts = np.arange(0, max(len(audio) / rate - window, 0) + 1e-9, step)
    windows = [audio[round(s * rate) : round((s + window) * rate)] for s in starts]
    kept, parts = [], []
    for first in range(0, len(windows), 128):
        try:
            parts.append(voices.embed(windows[first : first + 128]))
            kept += range(first, min(first + 128, len(windows)))
        except AudioError:  # a window without speech (to GE2E's detector) in the batch: one by one
            for i in range(first, min(first + 128, len(windows))):
                try:
                    parts.append(voices.embed([windows[i]]))
                    kept.append(i)
                except AudioError:
                    pass
    if not kept:
        return []
    scored = scores_of(voices, [np.concatenate([p[e.name] for p in parts]) for e in voices.encoders])
    centres = starts[kept] + window / 2
    fused = scored.scoring.fusion.fuse(scored.cosines)
    best = np.argmax(fused, axis=1)
    top = fused[np.arange(len(best)), best]
    known = [scored.decision(window).accepts(float(t)) for t in top]
    labels = [scored.names[b] if k is not False else f"{UNKNOWN_PREFIX}1" for b, k in zip(best, known)]
    turns: list[Turn] = []
    for t in np.arange(0, len(audio) / rate, frame):
        if not len(centres):
            break
        i = int(np.argmin(np.abs(centres - t - frame / 2)))
        if abs(centres[i] - t - frame / 2) > window / 2:
            continue  # no window with speech covers this frame
        if turns and turns[-1].speaker == labels[i] and abs(turns[-1].end - t) < 1e-6:
            turns[-1] = Turn(turns[-1].start, round(t + frame, 3), labels[i])
        else:
            turns.append(Turn(round(t, 3), round(t + frame, 3), labels[i]))
    return turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev", action="store_true", help="the dev meetings the settings were chosen on")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--adapt", action="store_true", help="adapt the registry to its enrolled voices first (speakerid adapt)")
    parser.add_argument("--set", action="append", default=[], help="a DiarizeConfig field, as NAME=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, no GPU used; torch threads 1")

    enrollment, plans = plan_meetings(DATA, args.meetings, seed=args.seed)
    test_speakers = {s for p in plans for s, _ in p.utterances}
    dev_enrollment, dev_plans = plan_meetings(DATA, 6, seed=args.seed + 100, exclude=test_speakers)
    dev_speakers = {s for p in dev_plans for s, _ in p.utterances}
    calibration = sorted(p.name for p in DATA.iterdir() if p.is_dir() and p.name not in test_speakers | dev_speakers)
    if args.dev:
        enrollment, plans = dev_enrollment, dev_plans
    voices = registry_for(enrollment, calibration, f"{'dev' if args.dev else 'test'}-{args.seed}-{args.meetings}", args.adapt)
    config = DiarizeConfig(**{k: type(getattr(DiarizeConfig(), k))(v) for k, v in (s.split("=") for s in args.set)})
    scoring = voices.scoring
    print(f"registry: {len(voices.speakers())} enrolled speakers, encoders {' + '.join(scoring.fusion.encoders)}; "
          f"identify thresholds {scoring.identify} calibrated on {len(calibration)} other speakers' sentences "
          f"(EER {scoring.details['eer']:.1%}); {config}")

    systems = {"speakerid": lambda a: diarize_audio(voices, a, config=config).turns}
    if not args.no_baseline:
        systems["baseline"] = lambda a: baseline(voices, a)
    totals = {name: {"der": DerResult(0, 0, 0, 0), "der25": DerResult(0, 0, 0, 0), "named": DerResult(0, 0, 0, 0),
                     "named25": DerResult(0, 0, 0, 0), "seconds": 0.0, "speakers": []} for name in systems}
    audio_seconds = overlap = 0.0
    enrolled = set(enrollment)
    for plan in plans:
        meeting = build_meeting(plan)
        audio_seconds += meeting.seconds
        overlap += meeting.overlap_seconds
        for name, system in systems.items():
            started = time.perf_counter()
            turns = system(meeting.audio)
            totals[name]["seconds"] += time.perf_counter() - started
            t = totals[name]
            t["der"] += diarization_error(meeting.turns, turns)
            t["der25"] += diarization_error(meeting.turns, turns, collar=0.25)
            named = named_error(meeting.turns, turns, enrolled)
            t["named"] += named
            t["named25"] += named_error(meeting.turns, turns, enrolled, collar=0.25)
            t["speakers"].append(len({x.speaker for x in turns}))
            print(f"  {plan.name} {name:10s} DER {t['der'].error:6.1%} (this {diarization_error(meeting.turns, turns).error:6.1%}) "
                  f"named {named.error:6.1%}  labels {sorted({x.speaker for x in turns})}", flush=True)
    print(f"\n{len(plans)} meetings, {audio_seconds / 60:.1f} min, {overlap / audio_seconds:.1%} of the time two speak at once")
    header = f"{'system':10s} {'DER':>6s} {'missed':>7s} {'false al.':>9s} {'confusion':>9s} {'DER c.25':>8s} {'named':>6s} {'named c.25':>10s} {'speakers':>8s} {'x real time':>11s}"
    print(header)
    for name, t in totals.items():
        rates = t["der"].rates()
        print(f"{name:10s} {t['der'].error:6.1%} {rates['missed']:7.1%} {rates['false_alarm']:9.1%} {rates['confusion']:9.1%} "
              f"{t['der25'].error:8.1%} {t['named'].error:6.1%} {t['named25'].error:10.1%} {np.mean(t['speakers']):8.1f} "
              f"{audio_seconds / t['seconds']:11.0f}")
    if len(totals) == 2:
        ours, base = totals["speakerid"], totals["baseline"]
        print(f"ratios baseline/speakerid: DER {base['der'].error / ours['der'].error:.1f}x, named error "
              f"{base['named'].error / ours['named'].error:.1f}x, speed {base['seconds'] / ours['seconds']:.2f}x")


if __name__ == "__main__":
    main()
