"""Do `speakerid train`'s defaults serve many speakers with a few seconds each, and still dsp20? (issue 12.3)

As a new user would, through the command line (each contender is a set of `prepare` and `train`
flags; "defaults" gives none):

    so125   the 100 enrolled speakers of benchmarks/bench_adapt_recipe.py's split, 8 sentences
            each in a folder; `speakerid prepare` (defaults: per speaker 4 train, 2 validation,
            2 test sentences) and `speakerid train`; then the other 4 sentences of each speaker,
            which the corpus never held, are named with `speakerid identify RUN` (top-1 of 400)
    dsp20   all 20 speakers; `speakerid prepare` and `speakerid train`, then `speakerid evaluate`
            on the test split (one ~41-s take per speaker: chunks and whole recordings)

Training ends where its flags say (epochs, patience): no wall-clock budget. The time column is
prepare + train as the user waits for it (process start included); the machine is shared, so
times are only comparable within one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_train_defaults.py
    OMP_NUM_THREADS=1 python benchmarks/bench_train_defaults.py --only defaults --data so125
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench_adapt_recipe import CACHE as ADAPT_CACHE, DATA, PROTOCOLS, split

CACHE = ADAPT_CACHE.parent / "train-defaults"
SPEAKERID = [sys.executable, "-m", "speakerid"]

# (`prepare` flags, `train` flags) of each contender
CONTENDERS = {
    "defaults": ([], []),
    # the defaults before issue 12: tails dropped; softmax head, whole chunks, no augmentation, 30 epochs, patience 10
    "before": (["--tail", "drop"], ["--head", "softmax", "--crop", "off", "--no-augment", "--epochs", "30", "--patience", "10",
                                    "--lr-schedule", "constant"]),
    # the defaults with the additive angular margin head instead of cross-entropy
    "arcmargin": ([], ["--head", "arcmargin", "--margin-warmup", "10"]),
    # the defaults with the standard augmentation
    "augment": ([], ["--augment"]),
    # the defaults, the corpus holding 7 of the 8 sentences for training (so125 only: no test split to evaluate)
    "7-train": (["--val", "0.125", "--test", "0"], []),
    # the ECAPA-style tdnn instead of the cnn, the defaults otherwise; and with 7 of the 8 sentences training
    "tdnn": ([], ["--model", "tdnn"]),
    "7-train-tdnn": (["--val", "0.125", "--test", "0"], ["--model", "tdnn"]),
}
SO125_ONLY = {"7-train", "7-train-tdnn"}


def cli(*args: str) -> str:
    done = subprocess.run([*SPEAKERID, *args], capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(f"speakerid {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def so125_folder() -> tuple[Path, list[tuple[str, Path]]]:
    """The 100 enrolled speakers' 8 sentences as a folder of links, and the (speaker, file) of their other 4."""
    data = split(PROTOCOLS["so125"])
    folder = CACHE / "so125-data"
    if not folder.exists():
        for speaker, files in data.enrolled.items():
            (folder / speaker).mkdir(parents=True)
            for f in files:
                (folder / speaker / f.name).symlink_to(f)
    held_out = [(speaker, f) for speaker, files in data.tests.items() for f in files]
    return folder, held_out


def run_contender(name: str, flags: tuple[list[str], list[str]], dataset: str) -> dict:
    root = CACHE / dataset / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    started = time.perf_counter()
    if dataset == "so125":
        folder, held_out = so125_folder()
    else:
        folder, held_out = DATA / "dsp20", []
    cli("prepare", str(folder), "--out", str(root / "corpus"), "-q", *flags[0])
    cli("train", str(root / "corpus"), "--out", str(root / "run"), "-q", *flags[1])
    waited = time.perf_counter() - started
    config = json.loads((root / "run" / "config.json").read_text())
    row = {"name": name, "seconds": waited, "result": config["result"]}
    if held_out:
        answers = json.loads(cli("identify", str(root / "run"), *[str(f) for _, f in held_out], "--json", "-k", "1"))
        row["top1"] = sum(a["speaker"] == s for a, (s, _) in zip(answers, held_out)) / len(held_out)
        row["trials"] = len(held_out)
        row["wrong"] = [(Path(f).name, s, a["speaker"]) for a, (s, f) in zip(answers, held_out) if a["speaker"] != s]
    else:
        metrics = json.loads(cli("evaluate", str(root / "run"), "--json", "-q"))
        row["chunk"], row["recording"] = metrics["chunk_accuracy"], metrics["recording_accuracy"]
        row["chunks"], row["recordings"] = metrics["chunks"], metrics["recordings"]
    return row


def flags(name: str) -> str:
    prepare_flags, train_flags = CONTENDERS[name]
    if not prepare_flags and not train_flags:
        return "(defaults)"
    return ", ".join(f"{command} `{' '.join(given)}`" for command, given in (("prepare", prepare_flags), ("train", train_flags))
                     if given)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=["so125", "dsp20"], default=["so125", "dsp20"])
    parser.add_argument("--only", nargs="+", choices=list(CONTENDERS))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores ({platform.machine()}), "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for dataset in args.data:
        rows = []
        for name in args.only or list(CONTENDERS):
            if dataset != "so125" and name in SO125_ONLY:
                continue
            print(f"{dataset}: {name} ...", flush=True)
            rows.append(run_contender(name, CONTENDERS[name], dataset))
        base = rows[0]["seconds"]
        print(f"\n{dataset}\n")
        if dataset == "so125":
            print("| contender | flags | epochs (best) | prepare + train | vs first | identify top-1 (400 held-out sentences) |")
            print("|---|---|---:|---:|---:|---:|")
            for r in rows:
                print(f"| {r['name']} | {flags(r['name'])} | {r['result']['epochs_run']} "
                      f"({r['result']['best_epoch']}) | {r['seconds']:.0f} s | {r['seconds'] / base:.2f}x | {r['top1']:.1%} |")
            for r in rows:
                print(f"\n{r['name']}: wrong {len(r['wrong'])}: " + ", ".join(f"{f} {s}->{a}" for f, s, a in r["wrong"]))
        else:
            print("| contender | flags | epochs (best) | prepare + train | vs first | test chunks | test recordings |")
            print("|---|---|---:|---:|---:|---:|---:|")
            for r in rows:
                print(f"| {r['name']} | {flags(r['name'])} | {r['result']['epochs_run']} "
                      f"({r['result']['best_epoch']}) | {r['seconds']:.0f} s | {r['seconds'] / base:.2f}x | "
                      f"{r['chunk']:.1%} of {r['chunks']} | {r['recording']:.0%} of {r['recordings']} |")


if __name__ == "__main__":
    main()
