"""Which voice-activity detector: Silero's network (speakerid.vad) against webrtcvad, on meetings with known speech.

Meetings are mixed from so125 by `speakerid.meetings` (seeded, never stored), then played in four
conditions: as mixed (faint -60 dBFS noise floor), noisy (white noise at -36 dBFS, about 10 dB
under the speech), quiet (the whole meeting 30 dB lower) and noise alone (no speech at all).
webrtcvad hears the same level-raised audio and makes regions with the same rules. Each detector's regions are compared with the reference speech (the union of the turns) on a
10-ms grid: missed speech and false alarm as shares of the reference speech, and for noise
alone, seconds of false alarm per minute. "0.2-s pauses cut": the same probabilities made into regions that end
after 0.2 s without speech, where `diarize` cuts its turns (its embedded regions use the default 0.3 s). The shipped TorchScript model is run too (when
loadable) only to check that the rebuilt network agrees with it.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_vad.py --meetings 6
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from speakerid import vad
from speakerid.diarize import DiarizeConfig
from speakerid.meetings import build_meeting, plan_meetings
from speakerid.vad import FRAME, FRAME_SECONDS, VadConfig, VoiceDetector, level_gain_db, regions_from_probabilities

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "so125"
STEP = 0.01


def grid(regions, seconds: float) -> np.ndarray:
    flags = np.zeros(int(np.ceil(seconds / STEP)), dtype=bool)
    for start, end in regions:
        flags[int(round(start / STEP)) : int(round(end / STEP))] = True
    return flags


def webrtc_regions(audio: np.ndarray, mode: int, config: VadConfig) -> list[tuple[float, float]]:
    """webrtcvad's 30-ms decisions, made regions with the same minimum speech, minimum silence and padding."""
    import _webrtcvad

    vad = _webrtcvad.create()
    _webrtcvad.init(vad)
    _webrtcvad.set_mode(vad, mode)
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    window = 480
    flags = [_webrtcvad.process(vad, 16000, pcm[i : i + window].tobytes(), window) for i in range(0, len(pcm) - window + 1, window)]
    regions, start = [], None
    for i, speech in enumerate(flags + [False]):
        if speech and start is None:
            start = i
        elif not speech and start is not None:
            regions.append([start * 0.03, i * 0.03])
            start = None
    merged = []
    for region in regions:
        if merged and region[0] - merged[-1][1] < config.min_silence:
            merged[-1][1] = region[1]
        else:
            merged.append(region)
    seconds = len(audio) / 16000
    return [(max(0, a - config.pad), min(seconds, b + config.pad)) for a, b in merged if b - a >= config.min_speech]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, no GPU used; torch threads 1")

    detector = VoiceDetector()
    config = detector.config

    def probabilities_as_is(audio):
        gain, vad.MAX_GAIN_DB = vad.MAX_GAIN_DB, 0.0  # the network on the audio as it is
        try:
            return detector.probabilities(audio)
        finally:
            vad.MAX_GAIN_DB = gain

    jit = None
    try:
        import importlib.util

        location = Path(list(importlib.util.find_spec("silero_vad").submodule_search_locations)[0])
        jit = torch.jit.load(str(location / "data" / "silero_vad.jit")).eval()
    except Exception as err:  # the comparison is optional
        print(f"(no TorchScript comparison: {type(err).__name__})")

    _, plans = plan_meetings(DATA, args.meetings, seed=args.seed)
    meetings = [build_meeting(p) for p in plans]
    rng = np.random.default_rng(0)
    conditions = {
        "as mixed": lambda a: a,
        "noisy (-36 dBFS noise)": lambda a: a + (rng.standard_normal(len(a)) * 10 ** (-36 / 20)).astype(np.float32),
        "quiet (-30 dB)": lambda a: a * np.float32(10 ** (-30 / 20)),
        "noise alone (-36 dBFS)": lambda a: (rng.standard_normal(len(a)) * 10 ** (-36 / 20)).astype(np.float32),
    }
    silero_defaults = VadConfig(threshold=0.5, neg_threshold=0.35, min_silence=0.1, pad=0.03)
    turn_cut = VadConfig(min_silence=DiarizeConfig().turn_pause)  # where diarize cuts its turns
    raised = lambda a: a * np.float32(10 ** (level_gain_db(a) / 20))  # the level speakerid.vad brings audio to
    contenders = {
        "silero (speakerid.vad)": lambda a: detector.regions(a),
        "silero, 0.2-s pauses cut": lambda a: regions_from_probabilities(detector.probabilities(a), len(a) / 16000, turn_cut),
        "silero, Silero's rules": lambda a: regions_from_probabilities(detector.probabilities(a), len(a) / 16000, silero_defaults),
        "silero, no level gain": lambda a: regions_from_probabilities(probabilities_as_is(a), len(a) / 16000, config),
        "webrtcvad mode 1": lambda a: webrtc_regions(raised(a), 1, config),
        "webrtcvad mode 3": lambda a: webrtc_regions(raised(a), 3, config),
    }
    total = sum(m.seconds for m in meetings)
    print(f"{len(meetings)} meetings, {total / 60:.1f} min, speech {sum(grid([(t.start, t.end) for t in m.turns], m.seconds).sum() for m in meetings) * STEP / 60:.1f} min")
    print(f"\n{'condition':26s} {'detector':24s} {'missed':>8s} {'false alarm':>12s} {'seconds':>8s}")
    for condition, change in conditions.items():
        audios = [change(m.audio.copy()) for m in meetings]
        for name, regions_of in contenders.items():
            missed = false = speech = 0.0
            started = time.perf_counter()
            hypotheses = [regions_of(a) for a in audios]
            elapsed = time.perf_counter() - started
            for meeting, audio, regions in zip(meetings, audios, hypotheses):
                truth = np.zeros(0, bool) if condition.startswith("noise alone") else grid([(t.start, t.end) for t in meeting.turns], meeting.seconds)
                hyp = grid(regions, meeting.seconds)
                truth = np.pad(truth, (0, len(hyp) - len(truth)))
                missed += (truth & ~hyp).sum()
                false += (~truth & hyp).sum()
                speech += truth.sum()
            if speech:
                print(f"{condition:26s} {name:24s} {missed / speech:8.1%} {false / speech:12.1%} {elapsed:8.2f}")
            else:
                print(f"{condition:26s} {name:24s} {'-':>8s} {false * STEP / total * 60:9.2f} s/min {elapsed:8.2f}")
    if jit is not None:
        diffs, disagree, frames = [], 0, 0
        for meeting in meetings[:2]:
            audio = meeting.audio[: len(meeting.audio) // FRAME * FRAME]
            ours = detector.probabilities(audio)
            jit.reset_states()
            with torch.no_grad():
                theirs = np.array([jit(torch.from_numpy(audio[i : i + FRAME]), 16000).item() for i in range(0, len(audio), FRAME)])
            diffs.append(np.abs(ours - theirs))
            disagree += ((ours >= 0.5) != (theirs >= 0.5)).sum()
            frames += len(ours)
        d = np.concatenate(diffs)
        print(f"\nrebuilt network vs the wheel's TorchScript model on {frames} frames ({frames * FRAME_SECONDS / 60:.1f} min): "
              f"mean |p - p_jit| {d.mean():.3f}, max {d.max():.3f}, decisions at 0.5 differ on {disagree / frames:.2%} of frames")


if __name__ == "__main__":
    main()
