"""Who spoke when: speakerid's diarization against the sliding-window baseline, on meetings of real speech.

Meetings are mixed from so125 by `speakerid.meetings` (seeded, never stored): each has 3 enrolled
speakers, speaking sentences they did not enroll with, and 1 stranger; pauses of 0.2-1.2 s, 15 % of
turns overlapping the one before, levels differing by up to +-6 dB per speaker.

The contenders run what a user runs. `speakerid`: enroll every meeting's enrolled speakers in one
registry (5 sentences each), `adapt` it to them, `calibrate` it on the sentences of so125 speakers in
no meeting (strangers), then `diarize`. `ge2e only`: the same without `adapt` (the pretrained encoder
alone). `baseline` (Resemblyzer's diarization demo) with the GE2E-only registry: 1.6-s GE2E windows
every 0.4 s over the whole recording, each labelled with its best enrolled speaker, or "unknown-1"
under the registry's threshold for 1.6 s; windows the encoder finds no speech in stay unlabelled;
each 0.1-s frame takes the label of the window centred nearest to it.

`--dev` runs on other meetings (other speakers, another seed): the ones the settings were chosen on.
`--utterances N` keeps each speaker's first N utterances: short meetings and calls (about 30 s for 2).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_diarize.py --meetings 12
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import platform
import time
from pathlib import Path

import numpy as np
import torch

from speakerid.der import UNKNOWN_PREFIX, DerResult, Turn, diarization_error, named_error
from speakerid.diarize import DiarizeConfig, diarize_audio, scores_of
from speakerid.meetings import MeetingPlan, build_meeting, plan_meetings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "so125"
CACHE = ROOT / "benchmarks" / ".cache"
SYSTEMS = ("speakerid", "ge2e only", "baseline")


def registry_for(enrollment: dict[str, list[Path]], calibration: list[str], tag: str, adapted: bool):
    """A registry with the enrolled speakers (adapted to them with `adapt` when `adapted`; cached in
    benchmarks/.cache), calibrated on the `calibration` speakers' sentences by this run's code."""
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
    voices.close()
    folder = CACHE / f"calibration-{tag}"  # the strangers' sentences, as a folder of speaker folders
    shutil.rmtree(folder, ignore_errors=True)  # exactly these strangers, never a meeting's speaker
    for speaker in calibration:
        (folder / speaker).mkdir(parents=True, exist_ok=True)
        for sentence in sorted((DATA / speaker).glob("*.flac")):
            (folder / speaker / sentence.name).symlink_to(sentence)
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
    best, top = scored.scoring.identification(scored.scoring.fusion.fuse(scored.cosines))
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


def shortened(plan: MeetingPlan, utterances: int) -> MeetingPlan:
    """The meeting with each speaker's first `utterances` utterances only, in the same order."""
    spoken: dict[str, int] = {}
    kept = []
    for speaker, path in plan.utterances:
        spoken[speaker] = spoken.get(speaker, 0) + 1
        if spoken[speaker] <= utterances:
            kept.append((speaker, path))
    return dataclasses.replace(plan, utterances=kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev", action="store_true", help="the dev meetings the settings were chosen on")
    parser.add_argument("--strangers", type=int, default=1, help="strangers per meeting (the dev meetings only)")
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="the contenders to run")
    parser.add_argument("--repeat", type=int, default=1, help="time each contender this many times (median)")
    parser.add_argument("--set", action="append", default=[], help="a DiarizeConfig field, as NAME=VALUE")
    parser.add_argument("--utterances", type=int, default=None, help="keep each speaker's first N utterances (short meetings)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, no GPU used; torch threads 1; "
          f"load average {os.getloadavg()[0]:.1f}")

    enrollment, plans = plan_meetings(DATA, args.meetings, seed=args.seed)
    test_speakers = {s for p in plans for s, _ in p.utterances}
    dev_enrollment, dev_plans = plan_meetings(DATA, 6, strangers=args.strangers, seed=args.seed + 100, exclude=test_speakers)
    dev_speakers = {s for p in dev_plans for s, _ in p.utterances}
    calibration = sorted(p.name for p in DATA.iterdir() if p.is_dir() and p.name not in test_speakers | dev_speakers)
    if args.dev:
        enrollment, plans = dev_enrollment, dev_plans
    if args.utterances is not None:
        plans = [shortened(p, args.utterances) for p in plans]
    if args.strangers != 1 and not args.dev:
        parser.error("--strangers changes the dev meetings only: the test meetings have one stranger each")
    tag = f"{'dev' if args.dev else 'test'}-{args.seed}-{args.meetings}" + (f"-{args.strangers}" if args.strangers != 1 else "")
    registries = {}
    if "speakerid" in args.only:
        registries["speakerid"] = registry_for(enrollment, calibration, tag, adapted=True)
    if {"ge2e only", "baseline"} & set(args.only):
        registries["ge2e only"] = registry_for(enrollment, calibration, tag, adapted=False)
    config = DiarizeConfig(**{k: type(getattr(DiarizeConfig(), k))(v) for k, v in (s.split("=") for s in args.set)})
    for name, voices in registries.items():
        scoring = voices.scoring
        print(f"{name}: {len(voices.speakers())} enrolled speakers, encoders {' + '.join(scoring.fusion.encoders)} "
              f"(weights {', '.join(f'{w:.2f}' for w in scoring.fusion.weights)}); identify thresholds {scoring.identify} "
              f"calibrated on {len(calibration)} other speakers' sentences (EER {scoring.details['eer']:.1%})")
    print(config)

    systems = {name: (lambda a, v=voices: diarize_audio(v, a, config=config).turns)
               for name, voices in registries.items() if name in args.only}
    if "baseline" in args.only:
        systems["baseline"] = lambda a: baseline(registries["ge2e only"], a)
    totals = {name: {"der": DerResult(0, 0, 0, 0), "der25": DerResult(0, 0, 0, 0), "named": DerResult(0, 0, 0, 0),
                     "named25": DerResult(0, 0, 0, 0), "seconds": [0.0] * args.repeat, "speakers": []} for name in systems}
    audio_seconds = overlap = 0.0
    enrolled = set(enrollment)
    for plan in plans:
        meeting = build_meeting(plan)
        audio_seconds += meeting.seconds
        overlap += meeting.overlap_seconds
        for name, system in systems.items():
            t = totals[name]
            for run in range(args.repeat):
                started = time.perf_counter()
                turns = system(meeting.audio)
                t["seconds"][run] += time.perf_counter() - started
            t["der"] += diarization_error(meeting.turns, turns)
            t["der25"] += diarization_error(meeting.turns, turns, collar=0.25)
            named = named_error(meeting.turns, turns, enrolled)
            t["named"] += named
            t["named25"] += named_error(meeting.turns, turns, enrolled, collar=0.25)
            t["speakers"].append(len({x.speaker for x in turns}))
            print(f"  {plan.name} {name:10s} DER {diarization_error(meeting.turns, turns).error:6.1%} "
                  f"named {named.error:6.1%}  labels {sorted({x.speaker for x in turns})}", flush=True)
    print(f"\n{len(plans)} meetings, {audio_seconds / 60:.1f} min, {overlap / audio_seconds:.1%} of the time two speak at once; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'system':10s} {'DER':>6s} {'missed':>7s} {'false al.':>9s} {'confusion':>9s} {'DER c.25':>8s} {'named':>6s} "
          f"{'named c.25':>10s} {'speakers':>8s} {'x real time':>11s}")
    for name, t in totals.items():
        rates = t["der"].rates()
        print(f"{name:10s} {t['der'].error:6.1%} {rates['missed']:7.1%} {rates['false_alarm']:9.1%} {rates['confusion']:9.1%} "
              f"{t['der25'].error:8.1%} {t['named'].error:6.1%} {t['named25'].error:10.1%} {np.mean(t['speakers']):8.1f} "
              f"{audio_seconds / np.median(t['seconds']):11.0f}")
    if "baseline" in totals:
        base = totals["baseline"]
        for name, ours in totals.items():
            if name != "baseline":
                print(f"baseline / {name}: DER {base['der'].error / ours['der'].error:.1f}x, named error "
                      f"{base['named'].error / ours['named'].error:.1f}x, time {np.median(base['seconds']) / np.median(ours['seconds']):.2f}x")


if __name__ == "__main__":
    main()
