"""Does a voice's GE2E embedding depend on how loud it was recorded? Resemblyzer's preprocessing against speakerid's.

Resemblyzer raises a recording quieter than -30 dBFS to -30 dBFS and leaves a louder one as it is,
and its network hears mel power, not its log: the same voice recorded 6 dB louder embeds
elsewhere. speakerid's GE2E brings the speech left after Resemblyzer's preprocessing to one level
(`speakerid.encoders.GE2E_SPEECH_DBFS`). Contenders, side by side on the same recordings:

  resemblyzer   Resemblyzer 0.1.4's own `preprocess_wav` and `VoiceEncoder.embed_utterance`
  speakerid     `speakerid.encoders.Ge2eEncoder` (what enroll, identify and calibrate use)

Conditions: every recording as recorded, and every recording at a random level within +-10 dB of
it (seeded). Task: each so125 speaker enrolled with 8 of their 12 sentences (mean embedding),
the other 4 scored against all 125 (three rotations of which 8); dsp20: 3 of 5 takes enrolled,
the other 2 scored (two rotations). Reported: closed-set top-1 and the pairwise EER (own speaker against the others).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_level.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bench_embed import import_resemblyzer
from speakerid.calibration import eer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def evaluate(embeddings: list[np.ndarray], enrolled: int, rotations: int) -> tuple[float, float]:
    """(top-1, EER) averaged over rotations of which recordings each speaker enrolls with."""
    tops, eers = [], []
    for rotation in range(rotations):
        order = [np.roll(np.arange(len(e)), -rotation * (len(e) - enrolled)) for e in embeddings]
        refs = np.stack([e[o[:enrolled]].mean(axis=0) for e, o in zip(embeddings, order)])
        refs /= np.linalg.norm(refs, axis=1, keepdims=True)
        tests = np.concatenate([e[o[enrolled:]] for e, o in zip(embeddings, order)])
        truth = np.concatenate([[k] * (len(e) - enrolled) for k, e in enumerate(embeddings)])
        scores = tests @ refs.T
        own = np.zeros(scores.shape, bool)
        own[np.arange(len(truth)), truth] = True
        tops.append(np.mean(scores.argmax(axis=1) == truth))
        eers.append(eer(scores[own], scores[~own])[0])
    return float(np.mean(tops)), float(np.mean(eers))


def main() -> None:
    from speakerid.audio import load_audio
    from speakerid.encoders import GE2E_SPEECH_DBFS, Ge2eEncoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=float, default=10.0, help="levels drawn within +- this many dB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, torch threads 1; "
          f"speakerid's speech level {GE2E_SPEECH_DBFS:g} dBFS")
    resemblyzer = import_resemblyzer()
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False)
    ours = Ge2eEncoder("cpu")
    contenders = {
        "resemblyzer": lambda audio: theirs.embed_utterance(resemblyzer.preprocess_wav(audio, source_sr=16000)),
        "speakerid": ours.embed,
    }
    rng = np.random.default_rng(args.seed)
    print("\n| data | recordings | contender | top-1 as recorded | EER as recorded | top-1 at random levels | "
          "EER at random levels | seconds |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, enrolled, rotations in (("so125", 8, 3), ("dsp20", 3, 2)):
        folders = [f for f in sorted((DATA / name).iterdir()) if f.is_dir()]
        audio = [[load_audio(p) for p in sorted(f.glob("*.flac"))] for f in folders]
        audio = [a for a in audio if len(a) > enrolled]
        gains = [[np.float32(10 ** (rng.uniform(-args.db, args.db) / 20)) for _ in a] for a in audio]
        for contender, embed in contenders.items():
            started = time.perf_counter()
            figures = []
            for levelled in (False, True):
                embeddings = [np.stack([embed(x * g if levelled else x) for x, g in zip(a, gs)]) for a, gs in zip(audio, gains)]
                figures += evaluate(embeddings, enrolled, rotations)
            print(f"| {name} | {sum(map(len, audio))} | {contender} | {figures[0]:.1%} | {figures[1]:.2%} | {figures[2]:.1%} | "
                  f"{figures[3]:.2%} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
