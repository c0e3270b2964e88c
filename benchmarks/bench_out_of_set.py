"""How can a closed-set answer tell that its input is unlike every speaker the run was trained on?

A cnn is trained (fixed epoch budget, seed 0) on 14 dsp20 speakers (3 takes train, 1 validates,
1 tests each). Queries: the 14 known speakers' test takes, and voices the run never heard: all
takes of the other 6 dsp20 speakers, and so125 sentences (another corpus, children included).
Each is scored whole and cut into 3-, 5- and 10-s clips (those in which the voice detector
hears speech: identify refuses the others). Rules compared (higher = more like a
training speaker):

- probability: the answer's own probability (softmax of the mean chunk log-probability);
- margin:      the first probability minus the second;
- similarity:  cosine between the query's embedding (L2-normalised mean of its chunks'
               normalised embeddings) and the closest training speaker's centroid (the same
               mean over that speaker's training chunks).

Each rule's threshold is set on the known speakers' *validation* takes (the level 95 % of them
reach); the table gives the AUROC (known test queries against unknown ones) and, at that
threshold, the share of known test queries flagged and of unknown queries caught.

    python benchmarks/bench_out_of_set.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from speakerid.audio import load_audio, to_int16
from speakerid.corpus import Corpus, PrepareConfig, prepare
from speakerid.errors import AudioError
from speakerid.identify import chunk_windows, log_probs, recording_scores, require_speech
from speakerid.threads import use_threads
from speakerid.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / ".cache" / "out_of_set"
KNOWN = 14
LENGTHS = (3.0, 5.0, 10.0, None)


def setup(epochs: int) -> tuple[Corpus, Path, list[Path]]:
    speakers = sorted(p for p in (DATA / "dsp20").iterdir() if p.is_dir())
    data = CACHE / "data"
    for folder in speakers[:KNOWN]:
        (data / folder.name).mkdir(parents=True, exist_ok=True)
        for take in sorted(folder.glob("*.flac")):
            if not (data / folder.name / take.name).exists():
                (data / folder.name / take.name).symlink_to(take)
    if not (CACHE / "corpus" / "summary.json").is_file():
        prepare(data, CACHE / "corpus", PrepareConfig(chunk_seconds=3), progress=False)
    run = CACHE / f"run-{epochs}"
    if not (run / "config.json").is_file() or "result" not in (run / "config.json").read_text():
        train(CACHE / "corpus", run, TrainConfig(model="cnn", epochs=epochs, patience=0, seed=0), force=True, progress=False)
    return Corpus.open(CACHE / "corpus"), run, speakers[KNOWN:]


def embed(model, windows: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        e = torch.cat([model.embed(torch.from_numpy(windows[i : i + 64])).float() for i in range(0, len(windows), 64)])
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e.numpy()


def scores(model, centroids: np.ndarray, samples: np.ndarray, chunking) -> dict[str, float]:
    windows = chunk_windows(samples, chunking)
    p = np.sort(recording_scores(log_probs(model, windows)))[::-1]
    mean = embed(model, windows).mean(axis=0)
    mean /= max(np.linalg.norm(mean), 1e-12)
    return {"probability": p[0], "margin": p[0] - p[1], "similarity": float((centroids @ mean).max())}


def accepted(clip: np.ndarray) -> bool:
    """Whether identify answers for this clip (it holds speech)."""
    try:
        require_speech(clip, 16000, "clip", 0.0)
    except AudioError:
        return False
    return True


def clips(audio: np.ndarray, seconds: float | None) -> list[np.ndarray]:
    """The recording whole or cut into clips, keeping those identify answers for (holding speech)."""
    if seconds is None:
        return [audio]
    size = int(seconds * 16000)
    return [p for p in (audio[s : s + size] for s in range(0, len(audio) - size + 1, size)) if accepted(p)]


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(a known query scores above an unknown one), ties half."""
    k, u = np.asarray(known)[:, None], np.asarray(unknown)[None, :]
    return float((k > u).mean() + 0.5 * (k == u).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    use_threads(int(os.environ.get("THREADS", "1")))
    corpus, run_dir, strangers = setup(args.epochs)
    from speakerid.rundir import load_run

    run = load_run(run_dir, "cpu")
    model, chunking = run.model, run.chunking
    train_idx = corpus.split_indices("train")
    embeddings = embed(model, np.stack([corpus.chunk_audio(int(i)) for i in train_idx]))
    labels = corpus.chunk_label[train_idx]
    centroids = np.stack([embeddings[labels == c].mean(axis=0) for c in range(len(corpus.labels))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    def split_queries(split: str) -> list[np.ndarray]:
        ids = {corpus.recording_ids[r] for r in corpus.chunk_recording[corpus.split_indices(split)]}
        return [corpus.recording_audio(r) for r in sorted(ids)]

    so125 = sorted(p for p in (DATA / "so125").iterdir() if p.is_dir())[::5]  # 25 speakers, 2 sentences each
    sources = {
        "validation": split_queries("validation"),
        "known test": split_queries("test"),
        "6 dsp20 strangers": [to_int16(load_audio(t)) for s in strangers for t in sorted(s.glob("*.flac"))[:2]],
        "so125 strangers": [to_int16(load_audio(f)) for s in so125 for f in sorted(s.glob("*.flac"))[:2]],
    }
    rules = ("probability", "margin", "similarity")
    print(f"cnn, {args.epochs} epochs on {KNOWN} dsp20 speakers; best epoch {run.config['result']['best_epoch']}")
    print("| length | rule | threshold (95 % of validation) | AUROC vs dsp20 strangers | AUROC vs so125 | "
          "known flagged | dsp20 strangers caught | so125 caught |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for seconds in LENGTHS:
        table = {name: [scores(model, centroids, c, chunking) for a in audios for c in clips(a, seconds)]
                 for name, audios in sources.items()}
        for rule in rules:
            values = {name: np.array([s[rule] for s in rows]) for name, rows in table.items() if rows}
            threshold = np.percentile(values["validation"], 5)
            known = values["known test"]
            cells = [f"{auroc(known, values[n]):.3f}" if n in values else "-" for n in ("6 dsp20 strangers", "so125 strangers")]
            caught = [f"{(values[n] < threshold).mean():.0%}" if n in values else "-" for n in ("6 dsp20 strangers", "so125 strangers")]
            print(f"| {'whole' if seconds is None else f'{seconds:g} s'} | {rule} | {threshold:.3f} | {' | '.join(cells)} | "
                  f"{(known < threshold).mean():.0%} ({len(known)}) | {' | '.join(caught)} |", flush=True)
    accuracy_by_length(model, chunking, corpus)


def accuracy_by_length(model, chunking, corpus: Corpus) -> None:
    """How often the closed-set answer is right on the known speakers' test takes cut into clips of each length."""
    ids = sorted({corpus.recording_ids[r] for r in corpus.chunk_recording[corpus.split_indices("test")]})
    print("\n| clip | clips | right | mean probability when wrong |")
    print("|---:|---:|---:|---:|")
    for seconds in (0.3, 0.5, 1.0, 2.0, 3.0, 5.0):
        right, wrong_p = [], []
        for recording in ids:
            truth = corpus.labels.index(corpus.recordings[recording].speaker)
            for clip in clips(corpus.recording_audio(recording), seconds):
                p = recording_scores(log_probs(model, chunk_windows(clip, chunking)))
                right.append(p.argmax() == truth)
                if p.argmax() != truth:
                    wrong_p.append(p.max())
        print(f"| {seconds:g} s | {len(right)} | {np.mean(right):.0%} | {np.mean(wrong_p) if wrong_p else float('nan'):.2f} |")


if __name__ == "__main__":
    main()
