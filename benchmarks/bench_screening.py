"""What does prepare's speech screening cost, and what does it find on real recordings?

`speakerid.prepare` of dsp20 (20 speakers x 5 takes, 68 min) into 3-s chunks, side by side:
without the voice detector, with it (the default: recordings with little speech reported), and
with it dropping chunks less than 20 % speech. Decoding (and screening) threads: 2, torch
threads 1 (the CLI's defaults on this machine). Median of --repeat runs, each into a fresh folder.

    python benchmarks/bench_screening.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from speakerid.corpus import PrepareConfig, prepare
from speakerid.threads import use_threads

ROOT = Path(__file__).resolve().parents[1]
DSP20 = ROOT.parent / "shared" / "data" / "dsp20"
CONTENDERS = {
    "no screening (--no-speech-check)": PrepareConfig(speech_check=False),
    "screening (default)": PrepareConfig(),
    "screening, --chunk-speech 0.2": PrepareConfig(min_chunk_speech=0.2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    use_threads(1)
    print(f"machine: {os.cpu_count()} cores ({platform.machine()}), load average {os.getloadavg()[0]:.2f}")
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    summaries = {}
    for _ in range(args.repeat):
        for name, config in CONTENDERS.items():
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                result = prepare(DSP20, Path(tmp) / "corpus", config, workers=2, progress=False)
                times[name].append(time.perf_counter() - started)
                summaries[name] = result.summary
    base = statistics.median(times[next(iter(CONTENDERS))])
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| prepare of dsp20 | seconds | range | vs no screening | speech min | recordings < 1 s speech | chunks kept | chunks dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in CONTENDERS:
        s = summaries[name]
        median = statistics.median(times[name])
        speech = "-" if s["speech_minutes"] is None else f"{s['speech_minutes']:.1f} of {s['minutes']:.1f}"
        print(f"| {name} | {median:.1f} | {min(times[name]):.1f}-{max(times[name]):.1f} | {median / base:.1f}x | {speech} | "
              f"{len(s['little_speech'])} | {sum(s['chunks'].values())} | {s['chunks_without_speech']} |")


if __name__ == "__main__":
    main()
