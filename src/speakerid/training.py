"""train: fit a speaker model on a prepared corpus (CPU, one GPU, or several with DDP under torchrun).

One loop serves the closed-set classifier (`train`) and the speaker encoder that `adapt` learns:
they differ in data and in options (head, crops, augmentation, schedules), not in loop. Every
random choice of an epoch (order, window jitter, crops, augmentation, dropout) is seeded by
(seed, epoch, step), and the schedules are functions of the step, so a run resumed from its last
checkpoint ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from speakerid import rundir
from speakerid.augment import AugmentConfig, Augmentation, step_generator
from speakerid.corpus import Corpus, write_csv
from speakerid.ddp import any_process, autocast_for, barrier, init_distributed, reduce_sums
from speakerid.errors import ModelError, RunError
from speakerid.features import FeatureConfig
from speakerid.models import HeadConfig, SpeakerModel, build_model, load_pretrained
from speakerid.trainset import SHORT_POLICIES, Batches, ChunkDataset

METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. `options` are the model family's own (see `speakerid.models`)."""

    model: str = "tdnn"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    options: dict = field(default_factory=dict)
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    patience: int = 20  # epochs without a better validation accuracy before stopping; 0: never stop early
    jitter: float = 0.5  # without crops: shift each training chunk by up to this fraction of a chunk, inside its recording
    max_minutes: float | None = None  # stop after the epoch in which this much training time has passed
    workers: int | None = None  # DataLoader processes; default 0 on CPU (the model uses the cores), 4 on CUDA
    device: str = "auto"  # "auto": CUDA when present, else CPU
    pretrained: str | None = None  # resnet50: a local torchvision-format ImageNet state dict to start from
    head: str = "softmax"  # "softmax" (cross-entropy) | "arcmargin" (additive angular margin, see models.heads)
    scale: float = 32.0  # arcmargin: logits are scale * cosine
    margin: float = 0.2  # arcmargin: the final margin (radians)
    margin_warmup: float = 0.0  # arcmargin: epochs over which the margin rises linearly from 0
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays to 0 at the last epoch)
    warmup_epochs: float = 0.0  # epochs over which the learning rate rises linearly from 0
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    crop: tuple[float, float] | str | None = "chunk"  # random crops of a length drawn per batch, anywhere in a recording:
    # (shortest, longest) seconds, "chunk" (from half the corpus's chunk to a whole one), or None (whole chunks)
    crop_short: str = "repeat"  # a recording shorter than its crop: "repeat" it or "pad" with silence
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        rules = [("epochs", self.epochs, self.epochs >= 1, "at least 1"),
                 ("batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
                 ("lr", self.lr, 0 < self.lr < math.inf, "a positive number"),
                 ("patience", self.patience, self.patience >= 0, "0 (never stop early) or more"),
                 ("jitter", self.jitter, 0 <= self.jitter <= 1, "in [0, 1], a fraction of a chunk"),
                 ("max_minutes", self.max_minutes, self.max_minutes is None or 0 < self.max_minutes < math.inf,
                  "a positive number"),
                 ("workers", self.workers, self.workers is None or self.workers >= 0, "0 or more"),
                 ("margin_warmup", self.margin_warmup, 0 <= self.margin_warmup < math.inf, "0 or more epochs"),
                 ("lr_schedule", self.lr_schedule, self.lr_schedule in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
                 ("warmup_epochs", self.warmup_epochs, 0 <= self.warmup_epochs < math.inf, "0 or more epochs"),
                 ("weight_decay", self.weight_decay, 0 <= self.weight_decay < math.inf, "0 or more"),
                 ("crop", self.crop, self.crop is None or self.crop == "chunk" or (
                     not isinstance(self.crop, str) and len(self.crop) == 2 and 0 < self.crop[0] <= self.crop[1] < math.inf),
                  "a range of seconds [shortest, longest] or 'chunk'"),
                 ("crop_short", self.crop_short, self.crop_short in SHORT_POLICIES, f"one of {', '.join(SHORT_POLICIES)}")]
        for name, value, ok, rule in rules:
            if not ok:
                raise RunError(f"training {name} must be {rule}, not {value}")
        try:
            self.head_config
        except ModelError as err:
            raise RunError(f"training {err}") from None

    @property
    def head_config(self) -> HeadConfig:
        return HeadConfig(self.head, self.scale, self.margin)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (as a run's config.json holds them)."""
        values = asdict(self)
        values["features"] = self.features.to_dict()
        values["augment"] = self.augment.to_dict()
        values["crop"] = self.crop if self.crop is None or isinstance(self.crop, str) else list(self.crop)
        return values


@dataclass
class TrainResult:
    run: Path
    best_epoch: int
    best_val_acc: float | None
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False  # by `patience`
    stopped_by_time: bool = False  # by `max_minutes`


def train(
    corpus: str | Path | Corpus,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict, SpeakerModel], None] | None = None,
) -> TrainResult:
    """Train `config.model` on the corpus's train split, choosing the best epoch on its validation split.

    Writes a run directory at `out` (see `speakerid.rundir`). `resume` continues from the last
    checkpoint there (`config.epochs` may be raised; nothing else may change). `on_epoch(epoch,
    metrics, model)` runs on rank 0 after each epoch, outside the training clock.
    """
    config = config or TrainConfig()
    corpus = corpus if isinstance(corpus, Corpus) else Corpus.open(corpus)
    out = Path(out)
    rank, world, local_rank = init_distributed()
    device = rundir.resolve_device(config.device, local_rank)
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))

    torch.manual_seed(config.seed)
    model = build_model(config.model, len(corpus.labels), config.features, config.head_config, **config.options)
    if config.pretrained and not resume:
        load_pretrained(model, config.pretrained)
    run_config = _run_config(corpus, config, world, model)  # everything that can fail on the settings has run
    if rank == 0:
        _claim_run_dir(out, run_config, resume, force)
        rundir.write_json(out / rundir.LABELS_FILE, corpus.labels)
    barrier()
    state = rundir.load_checkpoint(out / rundir.CHECKPOINT_FILE) if resume else None
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay)
    history: list[dict] = []
    best = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf}
    bad_epochs, seconds, start_epoch = 0, 0.0, 1
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
        seconds, start_epoch = state["seconds"], state["epoch"] + 1
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model

    train_set = ChunkDataset(corpus, "train", config.jitter, config.seed, config.crop_short)
    if len(train_set) == 0:
        raise RunError(f"{corpus.path} has no training chunks; prepare it with recordings long enough for one chunk")
    val_set = ChunkDataset(corpus, "validation")
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    batches = Batches(sampler, config.batch_size, crop_samples(config.crop, corpus.config.chunk_seconds, corpus.sample_rate),
                      config.seed)
    workers = config.workers if config.workers is not None else (4 if device.type == "cuda" else 0)
    loader = DataLoader(train_set, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda")
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, sampler=list(range(rank, len(val_set), world)),
                            num_workers=workers, pin_memory=device.type == "cuda")
    autocast = autocast_for(device)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    augmentation = Augmentation(config.augment, corpus.sample_rate)
    steps_per_epoch = len(loader)
    stopped_early = stopped_by_time = False

    from speakerid.progress import progress_bar

    remaining = max(0, config.epochs - start_epoch + 1)
    with progress_bar(f"training {config.model}", total=remaining * len(loader), enabled=progress and rank == 0) as advance:
        for epoch in range(start_epoch, config.epochs + 1):
            began = time.perf_counter()
            torch.manual_seed(config.seed * 1_000_003 + epoch)
            batches.set_epoch(epoch)
            train_set.epoch = epoch
            net.train()
            sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, count
            for step, (waves, labels) in enumerate(loader):
                _follow_schedules(config, optimizer, model, (epoch - 1) * steps_per_epoch + step, steps_per_epoch)
                waves, labels = waves.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                masks = None
                if config.augment.active:
                    generator = step_generator(config.seed, epoch, step, rank)
                    waves = augmentation.waves(waves, generator)
                    if augmentation.on_features:
                        masks = functools.partial(augmentation.features, generator=generator)
                with autocast:
                    logits = net(waves, labels, masks)
                loss = loss_fn(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                (loss / len(labels)).backward()
                optimizer.step()
                sums += torch.stack([loss.detach().double(), (logits.argmax(1) == labels).sum().double(),
                                     torch.tensor(float(len(labels)), dtype=torch.float64, device=device)])
                advance()
            train_loss, train_acc = reduce_sums(sums)
            val_loss, val_acc = _evaluate(model, val_loader, device, autocast, loss_fn)
            seconds += time.perf_counter() - began
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                   "val_loss": val_loss, "val_acc": val_acc, "seconds": round(seconds, 3)}
            history.append(row)

            improved = val_acc is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"])
            if improved:
                best = {"epoch": epoch, "val_acc": -1.0 if val_acc is None else val_acc,
                        "val_loss": math.inf if val_loss is None else val_loss}
                bad_epochs = 0
            else:
                bad_epochs += 1
            if rank == 0:
                if improved:
                    rundir.save_weights(model, out / rundir.WEIGHTS_FILE)
                rundir.save_checkpoint({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "history": history, "best": best, "bad_epochs": bad_epochs, "seconds": seconds},
                                       out / rundir.CHECKPOINT_FILE)
                write_csv(out / rundir.METRICS_FILE, METRIC_FIELDS, history)
                if progress:
                    _print_epoch(row, config.epochs, improved)
                if on_epoch is not None:
                    on_epoch(epoch, row, model)
            if val_acc is not None and config.patience and bad_epochs >= config.patience:
                stopped_early = True  # every process sees the same reduced accuracy, so all stop together
                break
            if any_process(config.max_minutes is not None and seconds >= config.max_minutes * 60):
                stopped_by_time = epoch < config.epochs
                break

    if rank == 0:
        run_config["result"] = {"best_epoch": best["epoch"],
                                "best_val_acc": None if best["val_acc"] < 0 else best["val_acc"],
                                "epochs_run": len(history), "stopped_early": stopped_early,
                                "stopped_by_time": stopped_by_time, "train_seconds": round(seconds, 3)}
        rundir.write_json(out / rundir.CONFIG_FILE, run_config)
        from speakerid.plots import plot_curves

        plot_curves(history, out / rundir.CURVES_FILE)
    barrier()
    if world > 1:
        dist.destroy_process_group()
    return TrainResult(out, best["epoch"], None if best["val_acc"] < 0 else best["val_acc"], len(history), history,
                       stopped_early, stopped_by_time)


def crop_samples(crop: tuple[float, float] | str | None, chunk_seconds: float, sample_rate: int) -> tuple[int, int] | None:
    """A TrainConfig's `crop` as (shortest, longest) samples: "chunk" is half a chunk to a whole one."""
    seconds = (chunk_seconds / 2, chunk_seconds) if crop == "chunk" else crop
    return None if seconds is None else tuple(round(s * sample_rate) for s in seconds)


def _follow_schedules(config: TrainConfig, optimizer: torch.optim.Optimizer, model: SpeakerModel, step: int,
                      steps_per_epoch: int) -> None:
    """Set the learning rate and the margin for global step `step` (counted from 0)."""
    factor = 1.0
    if config.warmup_epochs > 0:
        factor = min(1.0, (step + 1) / (config.warmup_epochs * steps_per_epoch))
    if config.lr_schedule == "cosine":
        factor *= 0.5 * (1.0 + math.cos(math.pi * step / (config.epochs * steps_per_epoch)))
    for group in optimizer.param_groups:
        group["lr"] = config.lr * factor
    if config.head == "arcmargin":
        ramp = 1.0 if config.margin_warmup == 0 else min(1.0, step / (config.margin_warmup * steps_per_epoch))
        model.classifier.margin = config.margin * ramp


def _run_config(corpus: Corpus, config: TrainConfig, world: int, model: SpeakerModel) -> dict[str, Any]:
    return {
        "format": rundir.FORMAT,
        "model": model.config(),
        "chunking": {"sample_rate": corpus.sample_rate, "chunk_seconds": corpus.config.chunk_seconds,
                     "hop_seconds": corpus.config.hop_seconds, "tail": corpus.config.tail},
        "corpus": str(corpus.path.resolve()),
        "train": config.to_dict(),
        "world_size": world,
        "torch": torch.__version__,
    }


def _claim_run_dir(out: Path, run_config: dict, resume: bool, force: bool) -> None:
    """Create the run directory, check it can be resumed, or refuse to touch it."""
    if resume:
        previous = rundir.read_json(out / rundir.CONFIG_FILE, "run configuration")
        if not (out / rundir.CHECKPOINT_FILE).is_file():
            raise RunError(f"{out} has no {rundir.CHECKPOINT_FILE} to resume from; train again without --resume")
        ignore = ("epochs", "max_minutes", "workers", "device", "pretrained")
        same = lambda c: {**c, "train": {k: v for k, v in c["train"].items() if k not in ignore}, "result": None}
        if same(previous) != same(run_config):
            raise RunError(f"{out} was trained with other settings; --resume may only change --epochs (or start a new --out)")
        rundir.write_json(out / rundir.CONFIG_FILE, {**run_config, "result": None})
        return
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / rundir.CONFIG_FILE).is_file():
            raise RunError(f"{out} is not empty and is not a speakerid run; choose another --out")
        if not force:
            raise RunError(f"{out} holds a run already; pass --resume to continue it, --force to start it over, or choose another --out")
        foreign = sorted(p.name for p in out.iterdir() if p.name.removesuffix(".tmp") not in rundir.RUN_FILES)
        if foreign:
            raise RunError(f"{out} holds files speakerid did not write ({', '.join(foreign[:3])}); not deleting them")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(out / rundir.CONFIG_FILE, {**run_config, "result": None})


def _evaluate(model: SpeakerModel, loader: DataLoader, device: torch.device, autocast, loss_fn) -> tuple[float | None, float | None]:
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad():
        for waves, labels in loader:
            waves, labels = waves.to(device), labels.to(device)
            with autocast:
                logits = model(waves).float()
            sums += torch.stack([loss_fn(logits, labels).double(), (logits.argmax(1) == labels).sum().double(),
                                 torch.tensor(float(len(labels)), dtype=torch.float64, device=device)])
    loss, acc = reduce_sums(sums)
    return loss, acc




def _print_epoch(row: dict, epochs: int, improved: bool) -> None:
    from rich.console import Console

    fmt = lambda v: "  -  " if v is None else f"{v:.3f}"
    Console(stderr=True).print(
        f"epoch {row['epoch']:>3}/{epochs}  train loss {fmt(row['train_loss'])} acc {fmt(row['train_acc'])}  "
        f"val loss {fmt(row['val_loss'])} acc {fmt(row['val_acc'])}  {row['seconds']:.0f} s" + ("  *best" if improved else "")
    )
