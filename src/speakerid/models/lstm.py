"""A recurrent model over the feature frames: input projection, stacked LSTM, pooling over time."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speakerid.errors import ModelError
from speakerid.features import FeatureConfig
from speakerid.models.base import SpeakerModel, StatsPool, frame_model
from speakerid.models.heads import HeadConfig

__all__ = ["LstmOptions", "build"]

POOLS = ("stats", "last")


@dataclass(frozen=True)
class LstmOptions:
    """Sizes of the projection and the LSTM, its direction, the pooling and the embedding size."""

    projection: int = 128  # 0: the features go into the LSTM unprojected
    hidden: int = 256
    layers: int = 2
    bidirectional: bool = False
    pool: str = "stats"  # "stats": mean and std of the outputs over time; "last": the final hidden state
    embedding_dim: int = 128

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ModelError(f"lstm option pool={self.pool!r} is unknown; use one of {', '.join(POOLS)}")
        if self.projection < 0 or min(self.hidden, self.layers, self.embedding_dim) < 1:
            raise ModelError("lstm options hidden, layers and embedding_dim must be positive, projection at least 0")


class LstmBackbone(nn.Module):
    """Features (B, F, T) -> embedding (B, embedding_dim)."""

    def __init__(self, n_features: int, options: LstmOptions):
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_features)
        if options.projection:
            self.projection: nn.Module = nn.Sequential(nn.Linear(n_features, options.projection), nn.ReLU(inplace=True))
        else:
            self.projection = nn.Identity()
        self.lstm = nn.LSTM(
            options.projection or n_features,
            options.hidden,
            num_layers=options.layers,
            batch_first=True,
            bidirectional=options.bidirectional,
        )
        self.directions = 2 if options.bidirectional else 1
        self.pool = options.pool
        outputs = options.hidden * self.directions
        pooled = 2 * outputs if options.pool == "stats" else outputs
        self.stats_pool = StatsPool()
        self.embedding = nn.Sequential(nn.Linear(pooled, options.embedding_dim), nn.BatchNorm1d(options.embedding_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = self.projection(self.input_norm(features).transpose(1, 2))  # (B, T, D)
        outputs, (hidden, _) = self.lstm(frames)
        if self.pool == "stats":
            pooled = self.stats_pool(outputs.transpose(1, 2))
        else:  # the last layer's final state of each direction
            pooled = hidden[-self.directions :].transpose(0, 1).flatten(1)
        return self.embedding(pooled)


def build(n_classes: int, features: FeatureConfig, head: HeadConfig = HeadConfig(), **options) -> SpeakerModel:
    """The LSTM model; options as in `LstmOptions`."""
    return frame_model("lstm", LstmOptions, LstmBackbone, n_classes, features, head, options)
