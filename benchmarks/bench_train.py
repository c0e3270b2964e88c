"""Time to accuracy, training throughput and identification speed, on real speech (dsp20).

dsp20 is split by recording: per speaker 3 takes train, 1 validates, 1 tests (the prepare
defaults). Each configuration trains under a time budget; after every epoch the test split is
scored outside the training clock, so the table shows the test accuracy reached after each
minute of training. The final figures are those of the checkpoint kept by validation accuracy.

    python benchmarks/bench_train.py                       # the default table
    python benchmarks/bench_train.py --only cnn-3s lstm-3s
    python benchmarks/bench_train.py --speed-only          # throughput and identification speed
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from speakerid.corpus import Corpus, PrepareConfig, prepare
from speakerid.evaluation import evaluate
from speakerid.identify import Identifier, log_probs, recording_scores
from speakerid.models import build_model
from speakerid.training import TrainConfig, train

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
CACHE = HERE / ".cache"

ALL_STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]  # no ImageNet weights offline: all train
# name: (model, chunk seconds, minutes of training, model options)
CONFIGS = {
    "cnn-3s": ("cnn", 3, 5, {}),
    "cnn-5s": ("cnn", 5, 5, {}),
    "cnn-10s": ("cnn", 10, 5, {}),
    "tdnn-3s": ("tdnn", 3, 5, {}),
    "lstm-3s": ("lstm", 3, 5, {}),
    "resnet50-3s": ("resnet50", 3, 15, {"image_size": 224, "trainable": ALL_STAGES}),
    "resnet50-3s-112px": ("resnet50", 3, 15, {"image_size": 112, "trainable": ALL_STAGES}),
}


def corpus_for(seconds: int) -> Corpus:
    out = CACHE / f"dsp20-{seconds}s"
    prepare(DSP20, out, PrepareConfig(chunk_seconds=seconds), progress=False)  # resumes: nothing to do after the first time
    return Corpus.open(out)


def test_accuracy(model, corpus: Corpus) -> tuple[float, float]:
    """(chunk accuracy, recording accuracy) on the test split."""
    model.eval()
    indices = corpus.split_indices("test")
    lp = log_probs(model, np.stack([corpus.chunk_audio(int(i)) for i in indices]))
    truth = corpus.chunk_label[indices]
    recordings = corpus.chunk_recording[indices]
    right = [recording_scores(lp[recordings == r]).argmax() == truth[recordings == r][0] for r in np.unique(recordings)]
    return float((lp.argmax(1) == truth).mean()), float(np.mean(right))


def time_to_accuracy(name: str, patience: int) -> dict:
    model, seconds, minutes, options = CONFIGS[name]
    corpus = corpus_for(seconds)
    curve = []  # (training seconds, chunk acc, recording acc)

    def after_epoch(epoch, row, trained):
        curve.append((row["seconds"], *test_accuracy(trained, corpus)))
        print(f"  {name} epoch {epoch}: {row['seconds']:.0f} s, val {row['val_acc']:.3f}, "
              f"test chunks {curve[-1][1]:.3f}, recordings {curve[-1][2]:.3f}", flush=True)

    out = CACHE / "runs" / name
    config = TrainConfig(model=model, options=options, epochs=1000, max_minutes=minutes, patience=patience, seed=0)
    result = train(corpus, out, config, force=True, progress=False, on_epoch=after_epoch)
    final = evaluate(out, progress=False)
    return {"name": name, "curve": curve, "best_epoch": result.best_epoch, "epochs": result.epochs_run,
            "seconds": result.history[-1]["seconds"], "chunk": final["chunk_accuracy"],
            "recording": final["recording_accuracy"], "chunks": final["chunks"], "recordings": final["recordings"],
            "budget": minutes}


def at_minute(curve: list, minute: int, budget: int) -> str:
    if minute > budget:
        return ""
    done = [c for c in curve if c[0] <= minute * 60]
    return f"{100 * done[-1][1]:.1f} / {100 * done[-1][2]:.0f}" if done else "-"


def throughput(names: list[str], repeat: int) -> list[str]:
    """Training chunks per second (forward, backward, Adam step, batch of 32 read from the cache)."""
    rows = []
    for name in names:
        model_name, seconds, _, options = CONFIGS[name]
        corpus = corpus_for(seconds)
        torch.manual_seed(0)
        model = build_model(model_name, len(corpus.labels), TrainConfig().features, **options)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        train_ids = corpus.split_indices("train")
        steps = 3 if model_name == "resnet50" else 12
        rates = []
        for _ in range(repeat):
            started = time.perf_counter()
            for step in range(steps):
                ids = train_ids[(np.arange(32) + 32 * step) % len(train_ids)]
                waves = torch.from_numpy(np.stack([corpus.chunk_audio(int(i)) for i in ids]))
                loss = torch.nn.functional.cross_entropy(model(waves), torch.from_numpy(corpus.chunk_label[ids]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            rates.append(32 * steps / (time.perf_counter() - started))
        rows.append(f"| {name} | {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M | "
                    f"{statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} |")
    return rows


def loader_workers(repeat: int) -> list[str]:
    """Seconds per cnn-3s epoch through speakerid.train with 0 or 2 DataLoader worker processes."""
    corpus = corpus_for(3)
    rows = []
    for workers in (0, 2):
        out = CACHE / "runs" / f"workers-{workers}"
        config = TrainConfig(model="cnn", epochs=2, seed=0, workers=workers)
        epochs = []
        for _ in range(repeat):
            history = train(corpus, out, config, force=True, progress=False).history
            epochs.append(history[-1]["seconds"] - history[0]["seconds"])  # the second epoch: workers warm
        rows.append(f"| {workers} | {statistics.median(epochs):.2f} s | {min(epochs):.2f}-{max(epochs):.2f} s |")
    return rows


def identification_speed(repeat: int) -> list[str]:
    """x real time for a 60-s file on one core, decoding included, with the cnn run trained above."""
    import soundfile as sf

    run = CACHE / "runs" / "cnn-3s"
    if not (run / "model.safetensors").exists():
        return ["(train cnn-3s first)"]
    takes = sorted(DSP20.glob("*/take05.flac"))[:2]
    audio = np.concatenate([sf.read(t, dtype="int16")[0] for t in takes])[: 60 * 16000]
    path = CACHE / "sixty-seconds.flac"
    sf.write(path, audio, 16000)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        identifier = Identifier.load(run, device="cpu")
        identifier.identify(path)  # warm-up
        times = []
        for _ in range(max(5, repeat)):
            started = time.perf_counter()
            identifier.identify(path)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        rows.append(f"| {threads} | {1000 * median:.0f} ms | {60 / median:.0f}x |")
    torch.set_num_threads(os.cpu_count() or 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), help="configurations to train")
    parser.add_argument("--patience", type=int, default=0, help="early stopping (0: use the whole budget)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the speed measurements")
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {os.cpu_count()} cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)")

    names = args.only or list(CONFIGS)
    if not args.speed_only:
        results = [time_to_accuracy(name, args.patience) for name in names]
        minutes = range(1, max(r["budget"] for r in results) + 1)
        print("\nTest accuracy (chunks % / recordings %) after each minute of training:\n")
        print("| config | " + " | ".join(f"{m} min" for m in minutes) + " |")
        print("|---|" + "---:|" * len(minutes))
        for r in results:
            print(f"| {r['name']} | " + " | ".join(at_minute(r["curve"], m, r["budget"]) for m in minutes) + " |")
        print("\nKept checkpoint (best validation accuracy), scored on the test split:\n")
        print("| config | budget | epochs | best epoch | train time | test chunks | chunk acc | test recordings | recording acc |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['name']} | {r['budget']} min | {r['epochs']} | {r['best_epoch']} | {r['seconds']:.0f} s | "
                  f"{r['chunks']} | {100 * r['chunk']:.1f} % | {r['recordings']} | {100 * r['recording']:.0f} % |")

    print(f"\nTraining throughput, batch 32 (median of {args.repeat}):\n")
    print("| config | parameters | chunks/s | range |")
    print("|---|---:|---:|---:|")
    print("\n".join(throughput(names, args.repeat)))
    print(f"\nOne cnn-3s training epoch (train + validation) by DataLoader workers, median of {args.repeat}:\n")
    print("| workers | epoch | range |")
    print("|---:|---:|---:|")
    print("\n".join(loader_workers(args.repeat)))
    print("\nIdentifying a 60-s FLAC file with cnn-3s (decode + 20 chunks), median of 5:\n")
    print("| torch threads | time | x real time |")
    print("|---:|---:|---:|")
    print("\n".join(identification_speed(args.repeat)))


if __name__ == "__main__":
    main()
