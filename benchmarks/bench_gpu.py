"""The GPU path in one prepared run (minutes): features, training with and without bfloat16, identify, DDP.

Run it through the device tool on a machine with a CUDA GPU; on a CPU-only machine it runs a
reduced version of every step (smaller batches, fewer steps, DDP over gloo) so the script itself
is checked wherever it lands.

  features   the MFCC frontend over batches of real 3-s dsp20 windows: seconds of audio per
             second of compute ("x real time"; the target on a GPU is 10,000x or more)
  train      cnn and tdnn training steps (forward, cross-entropy, backward, Adam) on real windows,
             in float32 and under bfloat16 autocast (what `speakerid train` uses on a GPU): chunks/s
  identify   `Identifier.identify` of whole dsp20 takes with a cnn: chunks/s and x real time
  ddp        `speakerid.training.train` in 2 processes (one epoch on 3 speakers): over NCCL with
             both processes on the one GPU, or over gloo on the CPU; passes when both ranks finish
             and rank 0 wrote the run

    python benchmarks/bench_gpu.py                 # the full run on a GPU, the reduced one on a CPU
    python benchmarks/bench_gpu.py --reduced       # the reduced run anywhere
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
SAMPLES = 48000  # 3 s at 16 kHz


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device, repeat: int) -> float:
    """Median seconds of `run()` after one warm-up call."""
    run()
    synchronize(device)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def real_windows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n real 3-s int16 windows from dsp20 and their speaker labels (cycled when n exceeds the data)."""
    from speakerid.audio import load_pcm16

    waves, labels = [], []
    for label, folder in enumerate(sorted(p for p in DSP20.iterdir() if p.is_dir())):
        samples = load_pcm16(folder / "take01.flac")[0]
        for start in range(0, len(samples) - SAMPLES, SAMPLES):
            waves.append(samples[start : start + SAMPLES])
            labels.append(label)
    index = np.arange(n) % len(waves)
    return torch.from_numpy(np.stack(waves)[index]), torch.tensor(labels)[index]


def bench_features(device: torch.device, batch: int, repeat: int) -> list[str]:
    from speakerid.features import FeatureConfig, build_frontend

    waves, _ = real_windows(batch)
    waves = waves.to(device)
    frontend = build_frontend(FeatureConfig()).to(device)
    with torch.inference_mode():
        seconds = timed(lambda: frontend(waves), device, repeat)
    audio = batch * SAMPLES / 16000
    return [f"| features | MFCC, batch {batch} | {audio / seconds:,.0f}x real time | {batch / seconds:,.0f} chunks/s |"]


def bench_train(device: torch.device, batch: int, steps: int, repeat: int) -> list[str]:
    from speakerid.features import FeatureConfig
    from speakerid.models import build_model

    waves, labels = real_windows(batch)
    waves, labels = waves.to(device), labels.to(device)
    rows = []
    for family in ("cnn", "tdnn"):
        per_precision = {}
        for precision in ("float32", "bfloat16"):
            torch.manual_seed(0)
            model = build_model(family, 20, FeatureConfig()).to(device).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            loss_fn = torch.nn.CrossEntropyLoss()
            autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")

            def run():
                for _ in range(steps):
                    optimizer.zero_grad(set_to_none=True)
                    with autocast:
                        loss = loss_fn(model(waves).float(), labels)
                    loss.backward()
                    optimizer.step()

            per_precision[precision] = batch * steps / timed(run, device, repeat)
        rows.append(f"| train {family} | batch {batch}, float32 / bfloat16 autocast | {per_precision['float32']:,.0f} / "
                    f"{per_precision['bfloat16']:,.0f} chunks/s | bfloat16 {per_precision['bfloat16'] / per_precision['float32']:.2f}x |")
    return rows


def untrained_run(family: str, dest: Path) -> Path:
    """A run directory holding a freshly built model: identify's cost does not depend on the weights."""
    from speakerid import rundir
    from speakerid.corpus import write_json
    from speakerid.features import FeatureConfig
    from speakerid.models import build_model

    torch.manual_seed(0)
    model = build_model(family, 20, FeatureConfig())
    dest.mkdir(parents=True)
    write_json(dest / rundir.CONFIG_FILE, {"format": rundir.FORMAT, "model": model.config(), "chunking": {
        "sample_rate": 16000, "chunk_seconds": 3.0, "hop_seconds": 3.0, "tail": "drop"}})
    write_json(dest / rundir.LABELS_FILE, [f"speaker{i}" for i in range(20)])
    rundir.save_weights(model, dest / rundir.WEIGHTS_FILE)
    return dest


def bench_identify_run(device: torch.device, files: int, batch: int, repeat: int, work: Path) -> list[str]:
    from speakerid.audio import load_pcm16
    from speakerid.identify import Identifier

    identifier = Identifier.load(untrained_run("cnn", work / "identify-run"), device=str(device), batch_size=batch)
    recordings = [load_pcm16(p)[0] for p in sorted(DSP20.glob("*/take02.flac"))[:files]]
    chunks = sum(len(r) // SAMPLES for r in recordings)
    audio = sum(len(r) for r in recordings) / 16000
    seconds = timed(lambda: [identifier.identify(r) for r in recordings], device, repeat)
    return [f"| identify | cnn, {files} whole takes, batch {batch} | {audio / seconds:,.0f}x real time | {chunks / seconds:,.0f} chunks/s |"]


def ddp_worker(rank: int, world: int, port: int, device: str, corpus: str, out: str, result: str) -> None:
    """One rank of `speakerid.training.train` (what torchrun would start), both on GPU 0 when there is one."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0" if device == "cuda" else str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from speakerid.training import TrainConfig, train

    started = time.perf_counter()
    trained = train(corpus, out, TrainConfig(model="cnn", epochs=1, patience=0, batch_size=16, device=device), progress=False)
    Path(f"{result}.{rank}").write_text(f"{trained.epochs_run} {time.perf_counter() - started:.1f}")


def bench_ddp(device: torch.device, work: Path) -> list[str]:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from speakerid.corpus import PrepareConfig, prepare

    data = work / "ddp-data"
    for folder in sorted(p for p in DSP20.iterdir() if p.is_dir())[:3]:
        (data / folder.name).mkdir(parents=True)
        for take in sorted(folder.glob("*.flac")):
            (data / folder.name / take.name).symlink_to(take)
    prepare(data, work / "ddp-corpus", PrepareConfig(chunk_seconds=3), progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if device.type == "cuda" else "gloo"
    result = str(work / "ddp-result")
    try:
        mp.spawn(ddp_worker, args=(2, port, device.type, str(work / "ddp-corpus"), str(work / "ddp-run"), result), nprocs=2)
    except Exception as err:  # a rank failed: report its first line (NCCL may refuse two ranks on one GPU)
        line = str(err).strip().splitlines()
        return [f"| ddp | 2 processes over {backend} on {device} | FAILED | {line[-1] if line else type(err).__name__} |"]
    finished = [Path(f"{result}.{rank}").read_text().split() for rank in range(2)]
    ok = all(f[0] == "1" for f in finished) and (work / "ddp-run" / "model.safetensors").is_file()
    seconds = max(float(f[1]) for f in finished)
    return [f"| ddp | 2 processes over {backend} on {device}, 1 epoch cnn | {'passed' if ok else 'FAILED'} | {seconds:.1f} s |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="the reduced run (automatic without a GPU)")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out: features,train,identify,ddp")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reduced = args.reduced or device.type == "cpu"
    skip = set(filter(None, args.skip.split(",")))
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "no GPU"
    print(f"machine: {os.cpu_count()} cores, {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{'reduced' if reduced else 'full'} run on {device}", flush=True)
    size = (lambda full, small: small if reduced else full)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        steps = [
            ("features", lambda: bench_features(device, size(1024, 64), size(10, 3))),
            ("train", lambda: bench_train(device, size(128, 16), size(20, 2), 3)),
            ("identify", lambda: bench_identify_run(device, size(20, 2), size(256, 32), 3, work)),
            ("ddp", lambda: bench_ddp(device, work)),
        ]
        for step, run in steps:
            if step in skip:
                continue
            started = time.perf_counter()
            new = run()
            print("\n".join(new) + f"   ({time.perf_counter() - started:.0f} s)", flush=True)
            rows += new
    print(f"\n| step | what | throughput | note |\n|---|---|---:|---|\n" + "\n".join(rows))
    sys.exit(1 if any("FAILED" in r for r in rows) else 0)


if __name__ == "__main__":
    main()
