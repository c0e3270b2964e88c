"""ONNX (onnxruntime) against PyTorch on the CPU, for every model family: which scores chunks faster?

Each family's default model (3 speakers; resnet50 on 300x300 pictures, every stage) is exported
with `speakerid.deploy.export_onnx`; then PyTorch (`model(waves)` under no_grad, as identify runs
it) and onnxruntime (`OnnxModel`) score the same batch of real 3-s dsp20 windows, side by side,
alternating, with 1 thread each and with all cores. Reported: chunks per second (median of
--repeat timings of one batch) and onnxruntime's speed relative to PyTorch.

    python benchmarks/bench_onnx.py                  # batch 32, 5 repeats
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

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
CORES = os.cpu_count() or 1
FAMILIES = {"cnn": {}, "tdnn": {}, "lstm": {}, "resnet50": {"trainable": ["stem", "layer1", "layer2", "layer3", "layer4", "head"]}}


def windows(n: int) -> torch.Tensor:
    from speakerid.audio import load_pcm16

    out = []
    for path in sorted(DSP20.glob("*/take03.flac")):
        samples = load_pcm16(path)[0]
        out += [samples[s : s + 48000] for s in range(0, len(samples) - 48000, 48000)]
    return torch.from_numpy(np.stack(out[:n]))


def median_seconds(run, repeat: int) -> float:
    run()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()

    from speakerid.deploy import OnnxModel, export_onnx
    from speakerid.features import FeatureConfig
    from speakerid.models import build_model

    import onnxruntime

    waves = windows(args.batch)
    print(f"machine: {CORES} cores, no GPU, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"batch of {len(waves)} real 3-s windows; medians of {args.repeat}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            torch.manual_seed(0)
            model = build_model(family, 3, FeatureConfig(), **FAMILIES[family]).eval()
            started = time.perf_counter()
            path = export_onnx(model, Path(tmp) / f"{family}.onnx")
            export_seconds = time.perf_counter() - started
            for threads in sorted({1, CORES}):
                torch.set_num_threads(threads)
                engine = OnnxModel(path, threads)
                with torch.no_grad():
                    pytorch = median_seconds(lambda: model(waves), args.repeat)
                onnx = median_seconds(lambda: engine(waves), args.repeat)
                diff = float((engine(waves) - model(waves).detach()).abs().max())
                print(f"  {family} {threads} thread(s): torch {pytorch:.3f} s, onnx {onnx:.3f} s", flush=True)
                rows.append(f"| {family} | {threads} | {len(waves) / pytorch:.1f} | {len(waves) / onnx:.1f} | "
                            f"{pytorch / onnx:.2f}x | {diff:.1e} | {export_seconds:.1f} |")
    print("\n| model | threads | PyTorch chunks/s | onnxruntime chunks/s | onnx speed vs torch | max abs diff | export s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
