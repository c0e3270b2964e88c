"""How many torch threads, and which OpenMP wait policy, should the commands use, on idle and on busy cores?

Four workloads, each the public function a command calls, timed after its model has loaded:

- train:     `speakerid.train`, the default cnn, 2 epochs on 6 dsp20 speakers (3-s chunks), per epoch;
- enroll:    `VoiceRegistry.enroll` with GE2E, 12 so125 sentences of one speaker, per file;
- identify-run:      `Identifier.identify` of a trained cnn run, 12 so125 sentences and 2 whole dsp20 takes, per file;
- identify-registry: `VoiceRegistry.identify` with GE2E (2 speakers enrolled), the same 14 files, per file.

Contenders: torch intra-op threads (2 = torch's default here, one per core; or 1) crossed with the
OpenMP wait policy (libgomp's default, which spins a while before sleeping, or PASSIVE). Each
measurement runs in a fresh process (the wait policy is read when torch loads), in turn, so
the contenders of one repeat meet the same machine. "loaded" runs the same while `--load`
processes spin a pure-Python loop at normal priority (one per core by default), as a busy
team's other jobs do; "idle" adds no load of our own.

    python benchmarks/bench_threads.py [--repeat 3] [--load 2] [--only train,enroll] [--conditions idle,loaded]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / ".cache" / "threads"
WORKLOADS = ("train", "enroll", "identify-run", "identify-registry")
CONTENDERS = (  # (label, torch threads, OMP_WAIT_POLICY or None for libgomp's default)
    ("2 threads, default wait (before)", 2, None),
    ("2 threads, passive wait", 2, "PASSIVE"),
    ("1 thread, default wait", 1, None),
    ("1 thread, passive wait", 1, "PASSIVE"),
)


def files() -> list[Path]:
    so125 = sorted(p for p in (DATA / "so125").iterdir() if p.is_dir())
    sentences = sorted(so125[0].glob("*.flac"))
    takes = [sorted(p.glob("*.flac"))[0] for p in sorted(p for p in (DATA / "dsp20").iterdir() if p.is_dir())[:2]]
    return sentences + takes


def setup() -> tuple[Path, Path]:
    """A 6-speaker dsp20 corpus and a cnn run trained on it, made once into the cache."""
    from speakerid.corpus import PrepareConfig, prepare
    from speakerid.training import TrainConfig, train

    corpus, run = CACHE / "corpus", CACHE / "run"
    if not (corpus / "summary.json").is_file():
        data = CACHE / "data"
        for folder in sorted(p for p in (DATA / "dsp20").iterdir() if p.is_dir())[:6]:
            (data / folder.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(folder.glob("*.flac")):
                link = data / folder.name / f.name
                if not link.exists():
                    link.symlink_to(f)
        prepare(data, corpus, PrepareConfig(chunk_seconds=3), progress=False)
    if not (run / "model.safetensors").is_file():
        train(corpus, run, TrainConfig(model="cnn", epochs=1), force=True, progress=False)
    return corpus, run


def child(workload: str, threads: int, corpus: Path, run: Path) -> dict:
    """One measurement, in this (fresh) process."""
    from speakerid.threads import use_threads

    use_threads(threads)
    inputs = files()
    if workload == "train":
        from speakerid.training import TrainConfig, train

        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = train(corpus, Path(tmp) / "run", TrainConfig(model="cnn", epochs=2, patience=0), progress=False)
            seconds = time.perf_counter() - started
        return {"seconds": seconds, "items": result.epochs_run, "unit": "epoch"}
    if workload == "identify-run":
        from speakerid.identify import Identifier

        identifier = Identifier.load(run, device="cpu")
        started = time.perf_counter()
        for f in inputs:
            identifier.identify(f)
        return {"seconds": time.perf_counter() - started, "items": len(inputs), "unit": "file"}
    from speakerid.voices import VoiceRegistry

    with tempfile.TemporaryDirectory() as tmp:
        voices = VoiceRegistry(Path(tmp) / "voices.db", device="cpu")
        voices.encoder  # loads GE2E outside the clock
        sentences = inputs[:12]
        if workload == "enroll":
            started = time.perf_counter()
            voices.enroll("speaker", sentences)
            return {"seconds": time.perf_counter() - started, "items": len(sentences), "unit": "file"}
        voices.enroll("first", sentences[:6])
        voices.enroll("second", sentences[6:])
        started = time.perf_counter()
        for f in inputs:
            voices.identify(f)
        return {"seconds": time.perf_counter() - started, "items": len(inputs), "unit": "file"}


def measure(workload: str, threads: int, policy: str | None, corpus: Path, run: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, __file__, "--child", workload, "--threads", str(threads),
                           "--corpus", str(corpus), "--run", str(run)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{workload} with {threads} threads, {policy}: failed\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_load(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes for the loaded condition")
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--conditions", default="idle,loaded")
    parser.add_argument("--child")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--run", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.corpus, args.run)))
        return

    import torch

    corpus, run = setup()
    workloads = [w for w in args.only.split(",") if w]
    conditions = [c for c in args.conditions.split(",") if c]
    print(f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), no GPU used, "
          f"torch {torch.__version__}, default intra-op threads {torch.get_num_threads()}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, str, str], list[float]] = {}
    for condition in conditions:
        for repeat in range(args.repeat):
            load = start_load(args.load) if condition == "loaded" else []
            try:
                for workload in workloads:
                    for label, threads, policy in CONTENDERS:
                        r = measure(workload, threads, policy, corpus, run)
                        per_item = r["seconds"] / r["items"]
                        results.setdefault((condition, workload, label), []).append(per_item)
                        print(f"  {condition} #{repeat + 1} {workload:18} {label:34} {per_item * 1000:9.1f} ms/{r['unit']}"
                              f"  (load average {os.getloadavg()[0]:.2f})", flush=True)
            finally:
                stop_load(load)

    print(f"\nmedian of {args.repeat}; ratio: time against '1 thread, passive wait' under the same condition")
    print("| condition | workload | contender | per item | range | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for condition in conditions:
        for workload in workloads:
            base = statistics.median(results[(condition, workload, CONTENDERS[-1][0])])
            for label, _, _ in CONTENDERS:
                values = results[(condition, workload, label)]
                median = statistics.median(values)
                unit = "epoch" if workload == "train" else "file"
                print(f"| {condition} | {workload} | {label} | {median * 1000:.0f} ms/{unit} | "
                      f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
