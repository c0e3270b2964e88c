"""A run directory: what `train` writes and everything else loads.

    config.json        model (name, classes, features, options), chunking, training settings, best epoch
    labels.json        speaker names in label order
    model.safetensors  the best weights (by validation accuracy)
    checkpoint.pt      the last epoch's model and optimizer state, for --resume (tensors only)
    metrics.csv        one row per epoch
    curves.png         training curves
    report.md, metrics.json, confusion.png   what `evaluate` wrote
    model.onnx         the ONNX export, when `export-onnx` or `--engine onnx` made one
    profile.json       the training speakers' centroids in the embedding space, made by the first
                       `identify` (speakerid.profile)

Loading reads JSON and tensors only: a run file never executes code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speakerid.corpus import PrepareConfig, write_json
from speakerid.errors import ModelError, RunError
from speakerid.models import SpeakerModel, model_from_config

FORMAT = "speakerid-run/1"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
# written by `evaluate`
REPORT_FILE = "report.md"
EVALUATION_FILE = "metrics.json"
CONFUSION_FILE = "confusion.png"
ONNX_FILE = "model.onnx"  # written by `export-onnx` (default) and `--engine onnx`
PROFILE_FILE = "profile.json"  # written by the first `identify`
RUN_FILES = (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE, CHECKPOINT_FILE, METRICS_FILE, CURVES_FILE,
             REPORT_FILE, EVALUATION_FILE, CONFUSION_FILE, ONNX_FILE, PROFILE_FILE)


@dataclass
class Run:
    """A trained model with what it needs to be used: labels and the chunking it was trained on."""

    path: Path
    config: dict[str, Any]
    labels: list[str]
    model: SpeakerModel

    @property
    def sample_rate(self) -> int:
        return self.config["chunking"]["sample_rate"]

    @property
    def chunk_seconds(self) -> float:
        return self.config["chunking"]["chunk_seconds"]

    @property
    def short_fill(self) -> str:
        """How a recording shorter than a chunk fills one for this model: "repeat" when it trained
        on crops that repeated short recordings (what it learnt short speech looks like), else "pad"."""
        train = self.config.get("train", {})
        return "repeat" if train.get("crop") and train.get("crop_short") == "repeat" else "pad"

    @property
    def shortest_crop(self) -> float | None:
        """Seconds of the shortest crop the model trained on (None: it trained on whole chunks)."""
        from speakerid.training import crop_samples

        crop = self.config.get("train", {}).get("crop")
        return None if not crop else crop_samples(crop, self.chunk_seconds, self.sample_rate)[0] / self.sample_rate

    @property
    def chunking(self) -> PrepareConfig:
        """How new recordings are cut for this model: as its corpus was (a clip shorter than a chunk: `short_fill`)."""
        c = self.config["chunking"]
        return PrepareConfig(chunk_seconds=c["chunk_seconds"], hop_seconds=c["hop_seconds"], tail=c["tail"],
                             short="pad", sample_rate=c["sample_rate"])


def save_weights(model: SpeakerModel, path: Path) -> None:
    """The model's state dict as safetensors, written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "model": model.name})
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}; it is not a speakerid run directory (or training never started)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RunError(f"{path} is not readable {what} ({err}); the run directory is damaged") from None


def resolve_device(name: str | torch.device, index: int = 0) -> torch.device:
    """"auto" (CUDA GPU `index` when there is one, else the CPU), "cpu", "cuda" or "cuda:N"; a clear error otherwise."""
    if name == "auto":
        return torch.device(f"cuda:{index}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise RunError(f"device {name!r} is not one of auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise RunError(f"device {name!r} is not one of auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {name!r} was asked for, but this machine has no usable CUDA GPU")
    return device


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a run directory's best model, in eval mode, on `device` ("auto": a GPU when there is one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_file():
        raise RunError(f"{path} is a file, not a run directory (the folder `speakerid train --out` wrote)")
    if not path.exists():
        raise RunError(f"{path}: no such run directory; check the path, or train one with `speakerid train CORPUS --out {path}`")
    config = read_json(path / CONFIG_FILE, "run configuration")
    labels = read_json(path / LABELS_FILE, "speaker labels")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise RunError(f"{path} has no {WEIGHTS_FILE}: training has not finished an epoch; continue it with `speakerid train --resume`")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunError(f"{weights} is not readable safetensors ({err}); the file is truncated or foreign") from None
    return build_run(path, config, labels, state, device)


def build_run(path: Path, config: Any, labels: Any, state: dict[str, torch.Tensor], device: str | torch.device = "cpu") -> Run:
    """A run from its configuration, labels and weights (read from a run directory, or from a registry)."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise RunError(f"{path / CONFIG_FILE} is not a speakerid run configuration (format {FORMAT!r} expected)")
    try:
        model = model_from_config(config["model"])
    except (ModelError, KeyError, TypeError) as err:
        raise RunError(f"{path / CONFIG_FILE} describes no model speakerid can build ({err})") from None
    if not isinstance(labels, list) or len(labels) != model.n_classes:
        raise RunError(f"{path / LABELS_FILE} does not hold {model.n_classes} speaker names")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0:2]
        raise RunError(f"{path / WEIGHTS_FILE} does not fit the model in {CONFIG_FILE} ({' '.join(first)})") from None
    model.to(resolve_device(device)).eval()
    return Run(path, config, labels, model)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The resume state (tensors and plain values only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a torn or foreign file
        raise RunError(f"{path} is not a readable checkpoint ({type(err).__name__}); it may be truncated") from None


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
