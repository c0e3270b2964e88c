"""The wrapper every model family shares: frontend -> backbone -> embedding -> classifier."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from speakerid.errors import ModelError
from speakerid.features import FeatureConfig, build_frontend
from speakerid.models.heads import ArcMarginHead, HeadConfig, build_head

__all__ = ["SpeakerModel", "StatsPool", "options_dict", "parse_options", "warm_start_batch_norm"]

OptionsT = TypeVar("OptionsT")
BATCH_NORM_MOMENTUM = 0.1  # torch's default, used once the warm start is over


class SpeakerModel(nn.Module):
    """A speaker-identification network from raw waves (B, T) to speaker logits (B, n_classes).

    `frontend` turns waves into features, `backbone` turns features into one embedding
    per wave (B, embedding_dim), `classifier` (the head, see `speakerid.models.heads`) turns
    embeddings into logits. Every BatchNorm warm-starts its running statistics (see
    `warm_start_batch_norm`).
    """

    def __init__(
        self,
        name: str,
        n_classes: int,
        features: FeatureConfig,
        options: dict[str, Any],
        frontend: nn.Module,
        backbone: nn.Module,
        classifier: nn.Module,
        embedding_dim: int,
        head: HeadConfig = HeadConfig(),
    ):
        super().__init__()
        self.name = name
        self.head = head
        self.n_classes = n_classes
        self.features = features
        self.options = options
        self.embedding_dim = embedding_dim
        self.frontend = frontend
        self.backbone = backbone
        self.classifier = classifier
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                module.register_forward_pre_hook(warm_start_batch_norm)

    def forward(self, wave: torch.Tensor, labels: torch.Tensor | None = None,
                feature_augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Speaker logits (B, n_classes) for waves (B, T), int16 or float.

        Training passes `labels` (a margin head widens the true speaker's angle with them) and
        may pass `feature_augment`, applied to the features before the backbone (SpecAugment).
        """
        embeddings = self.embed(wave, feature_augment)
        if labels is not None and isinstance(self.classifier, ArcMarginHead):
            return self.classifier(embeddings, labels)
        return self.classifier(embeddings)

    def embed(self, wave: torch.Tensor, feature_augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The embedding layer's output (B, embedding_dim) for waves (B, T)."""
        features = self.frontend(wave)
        if feature_augment is not None:
            features = feature_augment(features)
        return self.backbone(features)

    def logits_and_embedding(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Speaker logits and the embedding layer's output for waves (B, T), from one pass."""
        embedding = self.embed(wave)
        return self.classifier(embedding), embedding

    def config(self) -> dict[str, Any]:
        """Plain JSON-ready description; `model_from_config` rebuilds the same architecture from it."""
        return {
            "name": self.name,
            "n_classes": self.n_classes,
            "features": self.features.to_dict(),
            "options": copy.deepcopy(self.options),
            "head": self.head.to_dict(),
        }


def warm_start_batch_norm(module: nn.modules.batchnorm._BatchNorm, inputs: tuple) -> None:
    """Running statistics: the plain mean of the first 10 training batches, then the usual exponential average.

    With a fixed momentum of 0.1, 0.9**n of the initial (0, 1) statistics remain after n batches: a
    model evaluated after a dozen steps answered one speaker for everything, though it had learned.
    The count lives in the state dict (num_batches_tracked), so a resumed run continues alike.
    """
    if module.training:
        module.momentum = max(BATCH_NORM_MOMENTUM, 1.0 / (int(module.num_batches_tracked) + 1))


def parse_options(model_name: str, options_class: type[OptionsT], given: dict[str, Any]) -> OptionsT:
    """Build a family's options dataclass from keyword options, naming any option it does not have.

    Lists become tuples, so options read back from JSON equal the ones written.
    """
    known = [field.name for field in dataclasses.fields(options_class)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ModelError(
            f"model {model_name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(known)}"
        )
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in given.items()}
    return options_class(**values)


def options_dict(options: Any) -> dict[str, Any]:
    """A family's options dataclass as a JSON-ready dict (tuples become lists)."""
    values = dataclasses.asdict(options)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def frame_model(name: str, options_class: type, backbone_class: type, n_classes: int, features: FeatureConfig,
                head: HeadConfig, options: dict[str, Any]) -> SpeakerModel:
    """A model over frame features: the frontend, `backbone_class(n_features, options)` ending in the
    embedding, and the head on the embedding (the cnn, tdnn and lstm families)."""
    opts = parse_options(name, options_class, options)
    return SpeakerModel(
        name=name,
        n_classes=n_classes,
        features=features,
        options=options_dict(opts),
        frontend=build_frontend(features),
        backbone=backbone_class(features.n_features, opts),
        classifier=build_head(head, opts.embedding_dim, n_classes),
        embedding_dim=opts.embedding_dim,
        head=head,
    )


class StatsPool(nn.Module):
    """Mean and standard deviation over time: (B, C, T) -> (B, 2C)."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        mean = frames.mean(dim=-1)
        # the floor keeps the gradient of sqrt finite on constant (e.g. silent) inputs
        std = frames.var(dim=-1, unbiased=False).clamp(min=1e-5).sqrt()
        return torch.cat([mean, std], dim=-1)
