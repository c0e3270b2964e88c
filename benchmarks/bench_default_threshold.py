"""Which cosine threshold should GE2E fall back on before a registry is calibrated?

GE2E scores fall with the length of what is compared, so the fallback is measured on ordinary
speech of the lengths users bring, in the two ways the threshold is used:

- identify: a speaker's reference (the L2-normalised mean of its enrollment embeddings) against
  one trial recording. so125: 8 sentences enroll each of 125 speakers, the other 4 are trials
  (about 3.6 s each). dsp20: takes 1-3 enroll each of 20 speakers (whole, ~41 s), takes 4-5 are
  trials, whole or cut into 3-, 5- and 10-s clips.
- verify: one recording against another. so125: every pair of a speaker's 4 trial sentences
  (targets) and as many pairs of two speakers' sentences (non-targets, seeded); dsp20: clips of
  takes 4 and 5, paired the same way.

For each condition: the EER and its threshold, and the miss and false-accept rates at the
candidate thresholds. Embeddings are cached in benchmarks/.cache/threshold.

    python benchmarks/bench_default_threshold.py [--candidates 0.87,0.80,0.77,0.75,0.72,0.70]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from speakerid.audio import load_audio
from speakerid.calibration import eer
from speakerid.encoders import GE2E_DEFAULT_THRESHOLD, Ge2eEncoder
from speakerid.errors import AudioError
from speakerid.registry import reference
from speakerid.threads import use_threads

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / ".cache" / "threshold"
CLIPS = (3.0, 5.0, 10.0)


def embed_all(encoder: Ge2eEncoder, items: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """Embeddings of every clip (key -> audio), cached by `name` and the encoder; clips GE2E cannot embed are left out."""
    cache = CACHE / f"{name}-{encoder.name.replace('/', '_')}.npz"
    if cache.is_file():
        stored = np.load(cache)
        return {k: stored[k] for k in stored.files}
    out = {}
    for key, audio in items.items():
        try:
            out[key] = encoder.embed(audio, key)
        except AudioError:
            pass
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def so125(encoder) -> tuple[dict, dict]:
    """(embeddings by speaker: enrollment list, trial list), for 8 + 4 sentences per speaker."""
    speakers = sorted(p for p in (DATA / "so125").iterdir() if p.is_dir())
    files = {f"{s.name}/{f.name}": f for s in speakers for f in sorted(s.glob("*.flac"))}
    vectors = embed_all(encoder, {k: load_audio(f) for k, f in files.items()} if not (CACHE / "so125.npz").is_file()
                        else {}, "so125")
    enroll, trials = {}, {}
    for s in speakers:
        mine = [vectors[k] for k in sorted(vectors) if k.startswith(s.name + "/")]
        if len(mine) >= 6:
            enroll[s.name], trials[s.name] = mine[:8], mine[8:]
    return enroll, trials


def dsp20(encoder, seconds: float | None) -> tuple[dict, dict]:
    speakers = sorted(p for p in (DATA / "dsp20").iterdir() if p.is_dir())
    enroll_vectors = embed_all(encoder, {} if (CACHE / "dsp20-whole.npz").is_file() else
                               {f"{s.name}/{t.name}": load_audio(t) for s in speakers for t in sorted(s.glob("*.flac"))},
                               "dsp20-whole")
    enroll = {s.name: [enroll_vectors[f"{s.name}/take0{k}.flac"] for k in (1, 2, 3)] for s in speakers}
    if seconds is None:
        return enroll, {s.name: [enroll_vectors[f"{s.name}/take0{k}.flac"] for k in (4, 5)] for s in speakers}
    name = f"dsp20-{seconds:g}s"
    items = {}
    if not (CACHE / f"{name}.npz").is_file():
        size = int(seconds * 16000)
        for s in speakers:
            for k in (4, 5):
                audio = load_audio(s / f"take0{k}.flac")
                for start in range(0, len(audio) - size + 1, size):
                    items[f"{s.name}/take0{k}/{start // 16000:04d}"] = audio[start : start + size]
    vectors = embed_all(encoder, items, name)
    trials = {s.name: [vectors[k] for k in sorted(vectors) if k.startswith(s.name + "/")] for s in speakers}
    return enroll, trials


def identify_scores(enroll: dict, trials: dict) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(enroll)
    refs = np.stack([reference(np.stack(enroll[n])) for n in names])
    target, nontarget = [], []
    for i, n in enumerate(names):
        for v in trials.get(n, []):
            scores = refs @ v
            target.append(scores[i])
            nontarget.extend(np.delete(scores, i))
    return np.array(target), np.array(nontarget)


def verify_scores(trials: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(n for n in trials if len(trials[n]) >= 2)
    target = [a @ b for n in names for a, b in itertools.combinations(trials[n], 2)]
    rng = np.random.default_rng(seed)
    nontarget = []
    for _ in range(max(len(target), 2000)):
        x, y = rng.choice(len(names), 2, replace=False)
        a = trials[names[x]][rng.integers(len(trials[names[x]]))]
        b = trials[names[y]][rng.integers(len(trials[names[y]]))]
        nontarget.append(a @ b)
    return np.array(target), np.array(nontarget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="0.87,0.80,0.77,0.75,0.72,0.70")
    args = parser.parse_args()
    candidates = [float(c) for c in args.candidates.split(",")]
    use_threads(1)
    encoder = Ge2eEncoder("cpu")
    conditions = []
    enroll, trials = so125(encoder)
    conditions.append(("so125 sentences (~3.6 s)", enroll, trials))
    for seconds in (*CLIPS, None):
        enroll, trials = dsp20(encoder, seconds)
        conditions.append((f"dsp20 {'whole takes (~41 s)' if seconds is None else f'{seconds:g}-s clips'}", enroll, trials))

    header = "| use | trials | targets | non-targets | EER | EER threshold | " + " | ".join(
        f"miss / FA at {c:.2f}" for c in candidates) + " |"
    print(f"GE2E ({encoder.name}); fallback threshold now {GE2E_DEFAULT_THRESHOLD}")
    print(header)
    print("|" + "---|" * (6 + len(candidates)))
    ordinary = {}  # the lengths users bring: sentences and 3-10 s clips, not whole 41-s takes
    for use, scorer in (("identify", identify_scores), ("verify", None)):
        for label, enroll, trials in conditions:
            target, nontarget = scorer(enroll, trials) if scorer else verify_scores(trials)
            if "whole" not in label:
                ordinary.setdefault(use, []).append((target, nontarget))
            rate, threshold = eer(target, nontarget)
            cells = [f"{(target < c).mean():.1%} / {(nontarget >= c).mean():.1%}" for c in candidates]
            print(f"| {use} | {label} | {len(target)} | {len(nontarget)} | {rate:.1%} | {threshold:.3f} | "
                  + " | ".join(cells) + " |", flush=True)
    print("\nordinary lengths pooled (so125 sentences, 3-, 5- and 10-s clips); mean half-total error "
          "((miss + false accept) / 2) over the four, at each candidate:")
    for use, pairs in ordinary.items():
        rate, threshold = eer(np.concatenate([t for t, _ in pairs]), np.concatenate([n for _, n in pairs]))
        errors = [np.mean([((t < c).mean() + (n >= c).mean()) / 2 for t, n in pairs]) for c in candidates]
        print(f"- {use}: pooled EER {rate:.1%} at {threshold:.3f}; "
              + ", ".join(f"{c:.2f}: {e:.1%}" for c, e in zip(candidates, errors)))


if __name__ == "__main__":
    main()
