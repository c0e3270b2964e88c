"""Enrollment without retraining: the pretrained GE2E encoder against trained-model encoders (dsp20).

Per speaker, the 3 training takes of the dsp20 3-s corpus (the prepare split) are enrolled and
the other 2 takes are trials, whole and cut into 3-s chunks. Encoders:

  ge2e          the pretrained GE2E encoder shipped in resemblyzer (never saw dsp20)
  cnn-20        the embedding layer of a cnn trained (3 minutes) on the 20 speakers' training
                takes; it never saw the trial takes
  cnn-14        a cnn trained the same way on 14 speakers only: the other 6 are speakers it never
                heard, which is what enrolling a new speaker means

Top-1: every trial against all 20 references. EER on held-out speakers: trials of the 6
speakers cnn-14 never saw, against those 6 references (target vs non-target scores).

    python benchmarks/bench_enroll.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from speakerid.calibration import eer
from speakerid.corpus import Corpus, PrepareConfig, prepare
from speakerid.encoders import load_encoder
from speakerid.registry import reference
from speakerid.training import TrainConfig, train

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
CACHE = HERE / ".cache"
HELD_OUT = 6
MINUTES = 3.0  # training budget of each cnn the bench has to train itself


def corpus_of(speakers: list[str], name: str) -> Corpus:
    data = CACHE / f"{name}-data"
    if not data.exists():
        data.mkdir(parents=True)
        for s in speakers:
            (data / s).symlink_to(DSP20 / s)
    prepare(data, CACHE / name, PrepareConfig(chunk_seconds=3), progress=False)
    return Corpus.open(CACHE / name)


def trained_run(corpus: Corpus, name: str) -> Path:
    out = CACHE / "runs" / name
    if not (out / "model.safetensors").exists():  # trained once, then reused
        print(f"training {name} for {MINUTES:g} minutes ...", flush=True)
        train(corpus, out, TrainConfig(model="cnn", epochs=1000, max_minutes=MINUTES, patience=0), force=True, progress=False)
    return out


def split_takes(corpus: Corpus) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Enrollment (training takes) and trial (validation + test takes) recordings per speaker."""
    enroll, trials = {}, {}
    for r in np.unique(corpus.chunk_recording):
        rid = corpus.recording_ids[r]
        split = corpus.chunk_split[corpus.chunk_recording == r][0]
        (enroll if split == 0 else trials).setdefault(rid.split("/")[0], []).append(rid)
    return enroll, trials


def measure(encoder, corpus: Corpus, enroll: dict, trials: dict, held_out: list[str]) -> dict:
    audio = lambda rid: corpus.recording_audio(rid).astype(np.float32) / 32768
    started = time.perf_counter()
    speakers = sorted(enroll)
    refs = np.stack([reference(np.stack([encoder.embed(audio(r)) for r in enroll[s]])) for s in speakers])
    whole, chunks = [], []  # (speaker index, embedding)
    for s in speakers:
        for rid in trials[s]:
            wave = audio(rid)
            whole.append((speakers.index(s), encoder.embed(wave)))
            for start in range(0, len(wave) - 48000 + 1, 48000):
                chunks.append((speakers.index(s), encoder.embed(wave[start : start + 48000])))
    seconds = time.perf_counter() - started
    out = {"seconds": seconds}
    for name, items in (("whole", whole), ("3s", chunks)):
        truth = np.array([t for t, _ in items])
        scores = np.stack([e for _, e in items]) @ refs.T
        out[f"top1_{name}"] = float((scores.argmax(1) == truth).mean())
        out[f"n_{name}"] = len(items)
        keep = [speakers.index(s) for s in held_out]
        mine = np.isin(truth, keep)
        sub = scores[mine][:, keep]
        target = sub[np.arange(len(sub)), [keep.index(t) for t in truth[mine]]]
        nontarget = sub[~np.eye(len(keep), dtype=bool)[[keep.index(t) for t in truth[mine]]]]
        out[f"eer_{name}"] = eer(target, nontarget)[0]
    return out


def main() -> None:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {os.cpu_count()} cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    speakers = sorted(p.name for p in DSP20.iterdir() if p.is_dir())
    full = corpus_of(speakers, "dsp20-3s-all")
    seen, held_out = speakers[:-HELD_OUT], speakers[-HELD_OUT:]
    runs = {"cnn-20": trained_run(full, "enroll-cnn-20"),
            "cnn-14": trained_run(corpus_of(seen, "dsp20-3s-14"), "enroll-cnn-14")}
    enroll, trials = split_takes(full)
    rows = []
    for name, model in (("ge2e", None), ("cnn-20", runs["cnn-20"]), ("cnn-14", runs["cnn-14"])):
        r = measure(load_encoder(model, "cpu"), full, enroll, trials, held_out)
        held = "never heard" if name != "cnn-20" else "heard in training"
        rows.append(f"| {name} | {100 * r['top1_whole']:.1f} % ({r['n_whole']}) | {100 * r['top1_3s']:.1f} % ({r['n_3s']}) | "
                    f"{100 * r['eer_whole']:.1f} % | {100 * r['eer_3s']:.1f} % | {held} | {r['seconds']:.0f} s |")
        print(rows[-1], flush=True)
    print(f"\nEnroll 3 takes per speaker, trials = the other 2 takes; held-out EER over {HELD_OUT} speakers:\n")
    print("| encoder | top-1 whole takes | top-1 3-s chunks | EER held-out, whole | EER held-out, 3 s | the 6 speakers were | embed time |")
    print("|---|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
