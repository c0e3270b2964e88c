"""Running the cells of a `compare` study: on which devices, in which processes, and what each cell records.

A cell is `speakerid.train` (the budget replaces the number of epochs) then `speakerid.evaluate`
on the test split. Its results file, written last, marks it finished; an unfinished cell is
trained again from scratch. With one device cells run here, one after another; with several,
one process per device, each given its share of the cells and of the CPU cores.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty
from typing import Callable

import torch

from speakerid import rundir
from speakerid.corpus import write_json
from speakerid.errors import RunError
from speakerid.evaluation import evaluate, read_history
from speakerid.models import model_from_config
from speakerid.progress import progress_bar
from speakerid.training import TrainConfig, train

CELLS_DIR = "cells"
EPOCH_CAP = 100_000  # the time budget (or patience), not an epoch count, ends a cell


@dataclass(frozen=True)
class Cell:
    """One configuration of the study."""

    chunk_seconds: float
    features: str
    model: str

    @property
    def chunk(self) -> str:
        return f"{self.chunk_seconds:g}s"

    @property
    def name(self) -> str:
        return f"{self.chunk}-{self.features}-{self.model}"


@dataclass(frozen=True)
class Settings:
    """What every worker needs to run a cell (plain values: it crosses process boundaries)."""

    out: Path
    corpora: dict[str, str]  # chunk name -> corpus path
    budget_minutes: float
    seed: int
    pretrained: str | None


def plan_workers(devices: list[str] | None, gpu_count: int) -> list[str]:
    """The device of each worker: one per entry of `devices`; by default every GPU, or the CPU when there is none.

    "cpu" may repeat (several CPU processes); "cuda" means "cuda:0".
    """
    if not devices or list(devices) == ["auto"]:
        return [f"cuda:{i}" for i in range(gpu_count)] or ["cpu"]
    planned = []
    for name in devices:
        name = name.strip()
        match = re.fullmatch(r"cuda(?::(\d+))?", name)
        if name == "cpu":
            planned.append("cpu")
        elif match:
            index = int(match.group(1) or 0)
            if index >= gpu_count:
                have = f"{gpu_count} visible GPU{'s' if gpu_count != 1 else ''}" if gpu_count else "no usable CUDA GPU"
                raise RunError(f"device {name!r} was asked for, but this machine has {have}")
            planned.append(f"cuda:{index}")
        else:
            raise RunError(f"device {name!r} is not one of auto, cpu, cuda or cuda:N")
    return planned


def worker_env(device: str, visible: str | None = None) -> tuple[dict[str, str], str]:
    """(environment, device name inside the worker): a GPU worker sees only its own GPU, as cuda:0.

    `visible` is this process's CUDA_VISIBLE_DEVICES, if any: cuda:N is its N-th entry.
    """
    if not device.startswith("cuda:"):
        return {}, device
    index = int(device.split(":", 1)[1])
    ids = [i.strip() for i in visible.split(",")] if visible else []
    return {"CUDA_VISIBLE_DEVICES": ids[index] if index < len(ids) else str(index)}, "cuda:0"


def assign_cells(cells: list[Cell], workers: int) -> list[list[Cell]]:
    """Deal the cells round-robin to the workers (every cell has the same budget, so shares take about as long)."""
    return [cells[i::workers] for i in range(workers)]


def model_options(model: str, pretrained: str | None) -> dict:
    """The model family's options for a cell: resnet50's freeze policy, as `speakerid train` applies it."""
    if model == "resnet50":
        from speakerid.models.resnet50 import freeze_policy

        return freeze_policy({}, pretrained is not None)
    return {}


def schedule(cells: list[Cell], settings: Settings, workers: list[str], progress: bool, handle) -> None:
    """Run the cells: in this process on one device, or in one process per device, side by side."""
    if len(workers) == 1:
        _run_cells(cells, settings, workers[0], progress, handle)
        return
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked; spawn is also what torchrun does
    events = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(workers))
    processes = []
    for i, (device, share) in enumerate(zip(workers, assign_cells(cells, len(workers)))):
        shown = f"{device} worker {i + 1}" if workers.count(device) > 1 else device
        if share:
            process = context.Process(target=_worker_main, args=(device, shown, share, settings, threads, events))
            process.start()
            processes.append((process, shown, share))
    unfinished = {cell.name for cell in cells}
    try:
        while True:
            try:
                event = events.get(timeout=1.0)
            except Empty:
                if any(p.is_alive() for p, _, _ in processes):
                    continue
                try:
                    event = events.get(timeout=1.0)  # the last words of a process that just ended
                except Empty:
                    break
            handle(event)
            if event[0] in ("done", "failed"):
                unfinished.discard(event[1])
        for process, device, share in processes:
            for cell in share:
                if cell.name in unfinished:
                    handle(("failed", cell.name, f"the worker on {device} ended (exit code {process.exitcode}) "
                                                 "before this cell finished"))
    finally:
        for process, _, _ in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _worker_main(device: str, shown: str, cells: list[Cell], settings: Settings, threads: int, events) -> None:
    """A worker process: its own device and share of the cores; reports through `events`."""
    env, local = worker_env(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    os.environ.update(env)  # before CUDA initialises (torch initialises it lazily, on first use)
    torch.set_num_threads(threads)
    try:
        _run_cells(cells, settings, local, False, events.put, shown=shown)
    except KeyboardInterrupt:  # the parent got it too and reports; a worker's traceback would only add noise
        pass


def _run_cells(cells: list[Cell], settings: Settings, device: str, progress: bool, emit, shown: str | None = None) -> None:
    for cell in cells:
        emit(("start", cell.name, shown or device))
        try:
            row = _run_cell(cell, settings, device, progress)
        except Exception as err:  # one cell's failure (out of memory, a bug) must not lose the rest of the study
            message = str(err).strip().splitlines()
            emit(("failed", cell.name, f"{type(err).__name__}: {message[0]}" if message else type(err).__name__))
            continue
        row["device"] = shown or device
        write_json(settings.out / CELLS_DIR / f"{cell.name}.json", row)
        (settings.out / CELLS_DIR / cell.name / rundir.CHECKPOINT_FILE).unlink(missing_ok=True)  # finished: never resumed
        emit(("done", cell.name, row))


def _run_cell(cell: Cell, settings: Settings, device: str, progress: bool) -> dict:
    """Train the cell from scratch unless its run finished earlier, then evaluate it on the test split."""
    began = time.perf_counter()
    run = settings.out / CELLS_DIR / cell.name
    corpus = settings.corpora[cell.chunk]
    if not _trained(run):
        defaults = TrainConfig(crop=None)  # a cell trains on whole chunks of its length: what the study compares
        config = replace(defaults, model=cell.model, features=replace(defaults.features, kind=cell.features),
                         options=model_options(cell.model, settings.pretrained), epochs=EPOCH_CAP, seed=settings.seed,
                         max_minutes=settings.budget_minutes, device=device,
                         pretrained=settings.pretrained if cell.model == "resnet50" else None)
        budget = round(settings.budget_minutes * 60)
        with progress_bar(f"{cell.name}: seconds of training", total=budget, enabled=progress) as advance:
            clock = {"seconds": 0.0}

            def on_epoch(epoch: int, metrics: dict, model) -> None:
                advance(min(metrics["seconds"], budget) - min(clock["seconds"], budget))
                clock["seconds"] = metrics["seconds"]

            train(corpus, run, config, force=True, progress=False, on_epoch=on_epoch)
    metrics = evaluate(run, device=device, progress=False)
    return _row(cell, run, metrics, rundir.read_json(run / rundir.CONFIG_FILE, "run configuration"),
                time.perf_counter() - began)


def _trained(run: Path) -> bool:
    """True when the run directory holds a finished training (its result recorded, its weights saved)."""
    try:
        config = json.loads((run / rundir.CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("result")) and (run / rundir.WEIGHTS_FILE).is_file()


def _row(cell: Cell, run: Path, metrics: dict, config: dict, wall_seconds: float) -> dict:
    """The cell's line of results.csv (plus its validation curve for the figure)."""
    result = config["result"]
    summary = json.loads((Path(config["corpus"]) / "summary.json").read_text(encoding="utf-8"))
    train_chunks = summary["chunks"]["train"]
    tested = {name: s for name, s in metrics["per_speaker"].items() if s["chunks"]}
    worst = min(tested, key=lambda name: (tested[name]["recall"], name))
    seconds = result["train_seconds"]
    stopped = "patience" if result["stopped_early"] else "epochs" if result["epochs_run"] >= EPOCH_CAP else "budget"
    return {
        "cell": cell.name, "chunk_seconds": cell.chunk_seconds, "features": cell.features, "model": cell.model,
        "chunk_accuracy": metrics["chunk_accuracy"], "recording_accuracy": metrics["recording_accuracy"],
        "macro_f1": metrics["macro_f1"], "worst_speaker": worst, "worst_speaker_accuracy": tested[worst]["recall"],
        "test_chunks": metrics["chunks"], "test_recordings": metrics["recordings"],
        "epochs": result["epochs_run"], "best_epoch": result["best_epoch"], "stopped_by": stopped,
        "train_seconds": seconds, "train_chunks": train_chunks,
        "chunks_per_second": round(train_chunks * result["epochs_run"] / seconds, 1) if seconds else None,
        "parameters": sum(p.numel() for p in model_from_config(config["model"]).parameters()),
        "wall_seconds": round(wall_seconds, 1), "load_average": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(), "run": str(run),
        "curve": [[row["seconds"], row["val_acc"]] for row in read_history(run / rundir.METRICS_FILE)],
    }


def read_row(out: Path, cell: Cell) -> dict:
    """A finished cell's results."""
    return json.loads((out / CELLS_DIR / f"{cell.name}.json").read_text(encoding="utf-8"))


class Tracker:
    """Prints which cell runs, how many remain and about how long they will take; collects failures."""

    def __init__(self, total: int, workers: int, budget_seconds: float, say: Callable[[str], None]):
        self.total, self.workers, self.budget_seconds, self.say = total, workers, budget_seconds, say
        self.started: dict[str, float] = {}
        self.walls: dict[str, float] = {}
        self.failed: dict[str, str] = {}

    def handle(self, event: tuple) -> None:
        kind, name = event[0], event[1]
        if kind == "start":
            self.started[name] = time.perf_counter()
            waiting = self.total - len(self.started)
            self.say(f"[{len(self.started)}/{self.total}] {name} on {event[2]}: training; {waiting} cell"
                     f"{'' if waiting == 1 else 's'} waiting, about {format_duration(self.eta(waiting))} left in all")
            return
        self.walls[name] = time.perf_counter() - self.started.get(name, time.perf_counter())
        left = self.total - len(self.walls)
        if kind == "failed":
            self.failed[name] = event[2]
            self.say(f"failed {name}: {event[2]} ({left} to go)")
            return
        row = event[2]
        self.say(f"done {name}: chunks {row['chunk_accuracy']:.1%}, recordings {row['recording_accuracy']:.1%}, "
                 f"{row['epochs']} epoch{'' if row['epochs'] == 1 else 's'} in {row['train_seconds']:.0f} s ({left} to go)")

    def eta(self, waiting: int) -> float:
        """Seconds until the last cell ends: what the running cells have left, then the waiting ones, shared out."""
        per_cell = sum(self.walls.values()) / len(self.walls) if self.walls else self.budget_seconds
        now = time.perf_counter()
        running = [now - began for name, began in self.started.items() if name not in self.walls]
        rest = max((max(0.0, per_cell - elapsed) for elapsed in running), default=0.0)
        return rest + math.ceil(waiting / self.workers) * per_cell


def format_duration(seconds: float) -> str:
    """Seconds as a short duration: "45 s", "1.5 min", "12 min", "1.5 h"."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 100 * 60:
        return f"{round(seconds / 60, 1 if seconds < 600 else None):g} min"
    return f"{round(seconds / 3600, 1):g} h"
