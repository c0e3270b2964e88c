"""How fast is GE2E embedding of many files, against Resemblyzer's own `embed_utterance`?

Contenders, side by side in one process on the same files (file -> embedding, decoding included):

  resemblyzer, 1 thread      `preprocess_wav(path)` then `VoiceEncoder.embed_utterance`, file by file,
                             with one torch thread (the team's rule on a shared machine)
  resemblyzer, N threads     the same with torch's default threads (all cores)
  speakerid embed, 1 thread  `Ge2eEncoder.embed(load_audio(path))`, file by file
  speakerid embed_files      `speakerid.embedding.embed_files`: decoding in threads overlapped with
                             LSTM batches of partials from several files, one torch thread per batch,
                             as many batches at once as cores (what `enroll` and `calibrate` use)

Reported: wall seconds, CPU seconds (all threads), audio-hours embedded per wall minute, the
ratio to Resemblyzer, and the largest difference of any embedding from Resemblyzer's (for speakerid,
from Resemblyzer's on the same audio: its preprocessed audio brought to speakerid's speech level).
Data: ../shared/data/dsp20 (whole ~41-s takes) and so125 (read sentences of 2-20 s).

    OMP_NUM_THREADS=1 python benchmarks/bench_embed.py            # 3 repeats, medians
    python benchmarks/bench_embed.py --batch-sizes                 # partials per LSTM batch, one thread
    python benchmarks/bench_embed.py --skip threads                # without the multi-threaded Resemblyzer run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CORES = os.cpu_count() or 1


def import_resemblyzer():
    """Resemblyzer's package; its `webrtcvad` import needs pkg_resources, so a stand-in wraps the same C extension."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from webrtcvad_stand_in import webrtcvad_stand_in

    stand_in = webrtcvad_stand_in()
    sys.modules.setdefault("webrtcvad", stand_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import resemblyzer
    return resemblyzer


def timed(run, threads: int) -> tuple[float, float, np.ndarray]:
    torch.set_num_threads(threads)
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = run()
    return time.perf_counter() - wall, time.process_time() - cpu, vectors


def bench(name: str, files: list[Path], repeat: int, skip: set[str]) -> list[str]:
    from speakerid.audio import load_audio
    from speakerid.embedding import embed_files
    from speakerid.encoders import Ge2eEncoder, at_speech_level

    resemblyzer = import_resemblyzer()
    reference = resemblyzer.VoiceEncoder("cpu", verbose=False)
    encoder = Ge2eEncoder("cpu")
    hours = sum(len(load_audio(f)) for f in files) / 16000 / 3600

    def theirs():
        return np.stack([reference.embed_utterance(resemblyzer.preprocess_wav(f)) for f in files])

    contenders = {
        "resemblyzer, 1 thread": (theirs, 1),
        f"resemblyzer, {CORES} threads": (theirs, CORES),
        "speakerid embed, 1 thread": (lambda: np.stack([encoder.embed(load_audio(f), str(f)) for f in files]), 1),
        f"speakerid embed_files, {CORES} workers": (lambda: np.stack([r.vector for r in embed_files(encoder, files)]), 1),
    }
    contenders = {c: v for c, v in contenders.items() if not any(word in c for word in skip)}
    theirs()  # warm up (librosa's first calls, allocator)
    runs: dict[str, list[tuple[float, float]]] = {c: [] for c in contenders}
    vectors: dict[str, np.ndarray] = {}
    for r in range(repeat):
        for contender, (run, threads) in contenders.items():
            wall, cpu, vectors[contender] = timed(run, threads)
            runs[contender].append((wall, cpu))
            print(f"  {name} run {r + 1}/{repeat} {contender}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    base = statistics.median(w for w, _ in runs["resemblyzer, 1 thread"])
    # speakerid's GE2E hears Resemblyzer's preprocessed audio brought to one speech level: the same
    # network on the same audio gives the same embedding
    truth = {"resemblyzer": vectors["resemblyzer, 1 thread"],
             "speakerid": np.stack([reference.embed_utterance(at_speech_level(resemblyzer.preprocess_wav(f))) for f in files])}
    rows = []
    for contender, results in runs.items():
        wall = statistics.median(w for w, _ in results)
        cpu = statistics.median(c for _, c in results)
        diff = np.abs(vectors[contender] - truth[contender.split(",")[0].split()[0]]).max()
        rows.append(f"| {name} | {contender} | {len(files)} | {hours:.3f} | {wall:.2f} | {cpu:.2f} | "
                    f"{hours * 60 / wall:.2f} | {base / wall:.2f}x | {diff:.1e} |")
    return rows


def batch_sizes(files: list[Path]) -> None:
    """LSTM time per partial for batch sizes, one thread."""
    from speakerid.audio import load_audio
    from speakerid.encoders import Ge2eEncoder

    torch.set_num_threads(1)
    encoder = Ge2eEncoder("cpu")
    units = torch.cat([encoder.units(load_audio(f)) for f in files])
    print(f"{len(units)} partials of {tuple(units.shape[1:])}; ms per partial (median of 3):")
    for size in (8, 16, 24, 32, 48, 64, 128, 256):
        encoder.batch_size = size
        times = []
        for _ in range(3):
            started = time.perf_counter()
            encoder.embed_units(units)
            times.append(time.perf_counter() - started)
        print(f"  batch {size:4d}: {1000 * statistics.median(times) / len(units):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsp20", type=int, default=40, help="dsp20 takes to embed")
    parser.add_argument("--so125", type=int, default=240, help="so125 sentences to embed")
    parser.add_argument("--batch-sizes", action="store_true", help="only time the LSTM per batch size")
    parser.add_argument("--skip", default="", help="leave out contenders whose label holds one of these words, e.g. 'threads'"
                        " (torch's multi-threaded runs collapse on a busy machine)")
    args = parser.parse_args()
    dsp20 = sorted((DATA / "dsp20").glob("*/*.flac"))[: args.dsp20]
    so125 = sorted((DATA / "so125").glob("*/*.flac"))[: args.so125]
    if args.batch_sizes:
        return batch_sizes(dsp20[:10])
    print(f"machine: {CORES} cores, no GPU used, torch {torch.__version__}; medians of {args.repeat} runs")
    skip = set(filter(None, args.skip.split(",")))
    rows = bench("dsp20", dsp20, args.repeat, skip) + bench("so125", so125, args.repeat, skip)
    print("\n| data | contender | files | audio h | wall s | CPU s | audio-h per min | speed vs resemblyzer 1 thread | max abs diff from resemblyzer |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
