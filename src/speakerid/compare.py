"""compare: which chunk length, features and model suit a data folder, measured on it.

Every cell of the grid chunk length x features x model is trained by `speakerid.train` under the
same wall-clock budget and seed and scored by `speakerid.evaluate` on the same held-out recordings.
A study folder holds:

    study.json                 what was asked (data folder, budget, seed, pretrained weights)
    corpora/<chunk>s/          one corpus per chunk length (`speakerid.prepare`; identical split)
    cells/<chunk>s-<features>-<model>/        the cell's run directory (train + evaluate)
    cells/<chunk>s-<features>-<model>.json    the cell's results; written last, it marks the cell finished
    results.csv, report.md, accuracy_by_chunk.png, accuracy_by_time.png

Running the same study again skips finished cells and restarts unfinished ones from scratch.
With several devices (every visible GPU by default) cells run side by side, one process per device.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from speakerid.compare_cells import (CELLS_DIR, Cell, Settings, Tracker, format_duration, model_options, plan_workers,
                                     read_row, schedule)
from speakerid.compare_report import write_report
from speakerid.corpus import SPLITS, Corpus, PrepareConfig, prepare, scan, write_json
from speakerid.errors import CorpusError, ModelError, SpeakerIdError
from speakerid.features import FeatureConfig
from speakerid.locks import sole_writer
from speakerid.models import build_model, model_names
from speakerid.training import TrainConfig

FORMAT = "speakerid-study/1"
STUDY_FILE = "study.json"
CORPORA_DIR = "corpora"

DEFAULT_CHUNKS = (3.0, 5.0, 10.0)
DEFAULT_FEATURES = ("mfcc", "logmel", "spectrogram")
DEFAULT_MODELS = ("cnn", "lstm", "tdnn")


@dataclass
class CompareResult:
    out: Path
    rows: list[dict]  # one per finished cell of the grid, in grid order
    failed: dict[str, str] = field(default_factory=dict)  # cell name -> why
    skipped: dict[str, str] = field(default_factory=dict)  # cell name -> why it cannot be built
    report: Path | None = None


def parse_budget(text: str) -> float:
    """Minutes in a duration such as "90s", "5m", "1.5h" or "5" (minutes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*", str(text))
    if not match:
        raise SpeakerIdError(f"budget {text!r} is not a duration; write it like 90s, 5m or 1h")
    value, unit = float(match.group(1)), match.group(2) or "m"
    return value * {"s": 1 / 60, "sec": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0}[unit]


def grid(chunks, features, models) -> list[Cell]:
    """Every cell, chunk length first, then features, then model."""
    return [Cell(float(c), f, m) for c in chunks for f in features for m in models]


# ---------------------------------------------------------------- the study


def compare(
    data_dir: str | Path,
    out: str | Path,
    chunks: tuple[float, ...] | list[float] = DEFAULT_CHUNKS,
    features: tuple[str, ...] | list[str] = DEFAULT_FEATURES,
    models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    budget_minutes: float = 5.0,
    *,
    seed: int = 0,
    pretrained: str | Path | None = None,
    devices: list[str] | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> CompareResult:
    """Train and score every chunk x features x model cell of `data_dir` under one budget; write a report in `out`.

    Each cell is `speakerid.train` with its defaults, except that the budget (`budget_minutes` of
    training time; patience may stop a cell sooner) replaces the number of epochs, followed by
    `speakerid.evaluate` on the test split. Settings are checked, and the corpora prepared,
    before any training. Returns the rows of results.csv.
    """
    data_dir, out = Path(data_dir), Path(out)
    chunks = sorted({_seconds(c) for c in chunks})
    features, models = list(dict.fromkeys(features)), list(dict.fromkeys(models))
    if not chunks or not features or not models:
        raise SpeakerIdError("give at least one chunk length, one kind of features and one model")
    for kind in features:
        FeatureConfig(kind=kind)  # an unknown name raises a one-line ModelError
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise ModelError(f"unknown model {unknown[0]!r}; choose from {', '.join(model_names())}")
    if isinstance(budget_minutes, bool) or not isinstance(budget_minutes, (int, float)) \
            or not (math.isfinite(budget_minutes) and budget_minutes > 0):
        raise SpeakerIdError(f"the training budget must be more than zero, not {budget_minutes!r}; e.g. --budget 5m")
    if pretrained is not None:
        if "resnet50" not in models:
            raise SpeakerIdError("pretrained weights are for resnet50 cells; add resnet50 to the models or leave them out")
        if not Path(pretrained).is_file():
            raise ModelError(f"{pretrained}: no such file; pass a torchvision ResNet-50 state-dict file")
        pretrained = str(Path(pretrained).resolve())
    workers = plan_workers(devices, torch.cuda.device_count())
    cells = grid(chunks, features, models)
    skipped = _incompatible(cells, pretrained)
    if len(skipped) == len(cells):
        raise ModelError(f"no cell can be built: {next(iter(skipped.values()))}")

    sources, _ = scan(data_dir)
    speakers = sorted({s.speaker for s in sources})
    if len(speakers) < 2:
        raise CorpusError(f"{data_dir} holds one speaker folder ({speakers[0]}); a comparison needs recordings of "
                          "two or more speakers, one folder each")
    if out.exists() and not out.is_dir():
        raise SpeakerIdError(f"{out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with sole_writer(out, SpeakerIdError(f"another `speakerid compare` is running in {out}; wait for it to finish")):
        _claim_study(out, {"format": FORMAT, "data_dir": str(data_dir.resolve()), "budget_minutes": budget_minutes,
                           "seed": seed, "pretrained": pretrained})
        corpora = prepare_corpora(data_dir, out, chunks, seed, progress=progress, say=say)
        settings = Settings(out, {f"{c:g}s": str(corpus.path) for c, corpus in corpora.items()}, budget_minutes, seed,
                             pretrained)

        todo = [c for c in cells if c.name not in skipped and not (out / CELLS_DIR / f"{c.name}.json").is_file()]
        runnable = len(cells) - len(skipped)
        say(f"{runnable} cells ({_count(chunks, 'chunk length')} x {_count(features, 'features')} x {_count(models, 'model')}"
            + (f", {len(skipped)} that cannot be built skipped" if skipped else "") + f"): {runnable - len(todo)} finished "
            f"earlier, {len(todo)} to train for up to {format_duration(budget_minutes * 60)} each on {', '.join(workers)}")
        for name, why in skipped.items():
            say(f"skipped {name}: {why}")
        tracker = Tracker(len(todo), len(workers), budget_minutes * 60, say)
        if todo:
            schedule(todo, settings, workers, progress, tracker.handle)

        rows = [read_row(out, c) for c in cells if (out / CELLS_DIR / f"{c.name}.json").is_file()]
        report = write_report(out, rows, corpora, skipped, tracker.failed, budget_minutes=budget_minutes, seed=seed,
                              workers=workers)
        return CompareResult(out, rows, tracker.failed, skipped, report)


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 or noun.endswith('s') else 's'}"


def _seconds(value) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise CorpusError(f"chunk length {value!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise CorpusError(f"chunk length must be a positive number of seconds, got {value!r}")
    return seconds


def _incompatible(cells: list[Cell], pretrained: str | None) -> dict[str, str]:
    """Cells whose model cannot read their features (resnet50 draws MFCC pictures only), by building each pair once."""
    why_not: dict[tuple[str, str], str | None] = {}
    for cell in cells:
        pair = (cell.features, cell.model)
        if pair not in why_not:
            try:
                build_model(cell.model, 2, replace(TrainConfig().features, kind=cell.features),
                            **model_options(cell.model, pretrained))
                why_not[pair] = None
            except ModelError as err:
                why_not[pair] = str(err)
    return {c.name: why_not[(c.features, c.model)] for c in cells if why_not[(c.features, c.model)]}


def _claim_study(out: Path, asked: dict) -> None:
    """Make the study folder `out` ours, or continue one asked with the same settings; refuse anything else."""
    if any(out.iterdir()):
        if not (out / STUDY_FILE).is_file():
            raise SpeakerIdError(f"{out} is not empty and holds no speakerid study; choose a new or empty --out")
        try:
            previous = json.loads((out / STUDY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SpeakerIdError(f"{out / STUDY_FILE} is not readable ({err}); choose a new --out") from None
        differs = [key for key in asked if previous.get(key) != asked[key]]
        if differs:
            names = ", ".join(k.replace("_", " ") for k in differs)
            raise SpeakerIdError(f"{out} holds a study with another {names}; use the same settings to continue it, "
                                 "or choose another --out")
    write_json(out / STUDY_FILE, asked)


def prepare_corpora(data_dir: Path, out: Path, chunks: list[float], seed: int, progress: bool = False,
                    say: Callable[[str], None] = print) -> dict[float, Corpus]:
    """One corpus per chunk length under `out/corpora`, every one split the same way; a finished corpus is reused.

    Recordings shorter than a chunk become one zero-padded chunk (never dropped), so every corpus
    holds the same recordings, and `split_recordings` (seeded by speaker, blind to chunk length)
    puts each in the same split.
    """
    corpora: dict[float, Corpus] = {}
    for seconds in chunks:
        path = out / CORPORA_DIR / f"{seconds:g}s"
        if not (path / "summary.json").is_file():
            say(f"preparing {seconds:g}-s chunks of {data_dir} in {path}")
            config = replace(PrepareConfig(), chunk_seconds=seconds, seed=seed, short="pad")
            prepare(data_dir, path, config, progress=progress)
        corpora[seconds] = corpus = Corpus.open(path)
        if len(corpora) == 1:
            _check_first(corpus, data_dir, chunks)
    _check_same_split(corpora, out)
    return corpora


def _check_first(corpus: Corpus, data_dir: Path, chunks: list[float]) -> None:
    if len(corpus.labels) < 2:
        raise CorpusError(f"{data_dir} has readable recordings of {len(corpus.labels)} speaker(s) only; a comparison "
                          f"needs two or more (see {corpus.path / 'rejected.csv'})")
    longest = max(r.samples for r in corpus.recordings.values()) / corpus.sample_rate
    too_long = [c for c in chunks if c > longest]
    if too_long:
        raise CorpusError(f"chunk length {too_long[0]:g} s is longer than every recording in {data_dir} (the longest "
                          f"lasts {longest:.1f} s); choose chunk lengths up to {longest:.1f} s")
    if len(corpus.split_indices("test")) == 0:
        raise CorpusError(f"no speaker in {data_dir} has a recording to hold out for testing; each speaker needs "
                          "two or more recordings")


def _check_same_split(corpora: dict[float, Corpus], out: Path) -> None:
    splits = {seconds: _split_of(corpus) for seconds, corpus in corpora.items()}
    first_seconds, first = next(iter(splits.items()))
    for seconds, split in splits.items():
        if split != first:
            differ = sorted(set(split.items()) ^ set(first.items()))
            raise CorpusError(f"the {first_seconds:g}-s and {seconds:g}-s corpora in {out / CORPORA_DIR} do not hold "
                              f"the same recordings in the same splits (e.g. {differ[0][0]}): the data folder changed "
                              "while the study was prepared; start the study in a new --out")


def _split_of(corpus: Corpus) -> dict[str, str]:
    """recording -> split, from the chunk table."""
    return {corpus.recording_ids[r]: SPLITS[s] for r, s in zip(corpus.chunk_recording, corpus.chunk_split)}


