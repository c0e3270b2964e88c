"""Where does feature extraction spend its time? The MFCC frontend's settings, and the original recipe's steps.

The frontend computes the MFCC of every 3-s chunk of dsp20 (the corpus bench_train prepares),
in batches of 256 chunks read from the int16 cache, side by side in one run:

  default          n_fft = win_length = 400 (25 ms at 16 kHz), int16 converted block by block
  n_fft 512        the same 400-sample window zero-padded to a 512-point FFT
  float batches    the default settings, each batch converted to float32 before the frontend
  librosa preset   FeatureConfig.librosa(n_mfcc=40): 2048-point FFT in float64 (for parity, not speed)

The original recipe's two steps per chunk, on the first 100 chunks: `librosa.feature.mfcc`
(librosa's numba compilation warmed up first) and a matplotlib `specshow` figure saved as a JPG.

    python benchmarks/bench_features.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speakerid.corpus import Corpus, PrepareConfig, prepare
from speakerid.features import FeatureConfig, build_frontend

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
CORPUS = HERE / ".cache" / "dsp20-3s"
BATCH = 256


def frontend_seconds(config: FeatureConfig, chunks: np.ndarray, to_float: bool) -> float:
    frontend = build_frontend(config)
    started = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(chunks), BATCH):
            batch = torch.from_numpy(chunks[first : first + BATCH])
            frontend(batch.float() / 32768 if to_float else batch)
    return time.perf_counter() - started


def original_step_ms(chunks: np.ndarray) -> dict[str, float]:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    waves = chunks.astype(np.float32) / 32768
    librosa.feature.mfcc(y=waves[0], sr=16000, n_mfcc=40)  # numba compiles on the first call
    started = time.perf_counter()
    mfccs = [librosa.feature.mfcc(y=w, sr=16000, n_mfcc=40) for w in waves]
    mfcc_ms = 1000 * (time.perf_counter() - started) / len(waves)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for k, mfcc in enumerate(mfccs):
            fig = plt.figure(figsize=(3, 3))
            librosa.display.specshow(mfcc)
            plt.axis("off")
            fig.savefig(Path(tmp) / f"{k}.jpg", dpi=100)
            plt.close(fig)
        jpg_ms = 1000 * (time.perf_counter() - started) / len(waves)
    return {"mfcc": mfcc_ms, "jpg": jpg_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {'GPU' if torch.cuda.is_available() else 'no GPU'}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    prepare(DSP20, CORPUS, PrepareConfig(chunk_seconds=3), progress=False)  # resumes: nothing to do after the first time
    corpus = Corpus.open(CORPUS)
    chunks = np.stack([corpus.chunk_audio(i) for i in range(len(corpus.chunk_label))])
    hours = chunks.size / 16000 / 3600

    contenders = {
        "default (n_fft 400)": (FeatureConfig(), False),
        "n_fft 512": (FeatureConfig(n_fft=512), False),
        "float batches": (FeatureConfig(), True),
        "librosa preset (float64)": (FeatureConfig.librosa(n_mfcc=40), False),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, (config, to_float) in contenders.items():
            times[name].append(frontend_seconds(config, chunks, to_float))
    base = statistics.median(times["default (n_fft 400)"])
    print(f"\nMFCC of {len(chunks)} chunks ({hours:.3f} h), batches of {BATCH}, median of {args.repeat}:\n")
    print("| frontend | seconds | s per audio-hour | vs default |")
    print("|---|---:|---:|---:|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {median / hours:.2f} | {median / base:.2f}x |")

    steps = [original_step_ms(chunks[:100]) for _ in range(args.repeat)]
    print(f"\nThe original recipe's steps per 3-s chunk (100 chunks), median of {args.repeat}:\n")
    print("| step | ms per chunk | s per audio-hour |")
    print("|---|---:|---:|")
    for step, label in (("mfcc", "librosa.feature.mfcc"), ("jpg", "specshow + savefig JPG")):
        ms = statistics.median(s[step] for s in steps)
        print(f"| {label} | {ms:.1f} | {ms * 1200 / 1000:.2f} |")


if __name__ == "__main__":
    main()
