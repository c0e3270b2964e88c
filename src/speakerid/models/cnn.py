"""A compact 2D residual CNN over the feature image (B, 1, F, T), built for speed on a few CPU cores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speakerid.errors import ModelError
from speakerid.features import FeatureConfig
from speakerid.models.base import SpeakerModel, StatsPool, frame_model
from speakerid.models.heads import HeadConfig

__all__ = ["CnnOptions", "build"]


@dataclass(frozen=True)
class CnnOptions:
    """Widths of the residual stages, blocks per stage and the embedding size."""

    channels: tuple[int, ...] = (16, 32, 64, 128)  # the stem and every stage after the first halve F and T
    blocks: int = 1
    embedding_dim: int = 128

    def __post_init__(self) -> None:
        valid = isinstance(self.channels, tuple) and all(isinstance(c, int) and c > 0 for c in self.channels)
        if not valid or not self.channels:
            raise ModelError(f"cnn option channels={self.channels!r} must be a list of positive integers")
        if self.blocks < 1 or self.embedding_dim < 1:
            raise ModelError("cnn options blocks and embedding_dim must be positive integers")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut; the first one carries the stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CnnBackbone(nn.Module):
    """Features (B, F, T) -> embedding (B, embedding_dim): strided stem, residual stages, statistics pooling."""

    def __init__(self, n_features: int, options: CnnOptions):
        super().__init__()
        channels = options.channels
        self.input_norm = nn.BatchNorm1d(n_features)
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        blocks = []
        in_channels = channels[0]
        for stage, out_channels in enumerate(channels):
            for index in range(options.blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(ResidualBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.stages = nn.Sequential(*blocks)
        rows = n_features
        for _ in channels:  # the stem and the len(channels) - 1 strided stages
            rows = (rows + 1) // 2
        self.pool = StatsPool()
        self.embedding = nn.Sequential(
            nn.Linear(2 * channels[-1] * rows, options.embedding_dim), nn.BatchNorm1d(options.embedding_dim)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.stages(self.stem(self.input_norm(features).unsqueeze(1)))  # (B, C, F', T')
        return self.embedding(self.pool(maps.flatten(1, 2)))


def build(n_classes: int, features: FeatureConfig, head: HeadConfig = HeadConfig(), **options) -> SpeakerModel:
    """The compact residual CNN; options as in `CnnOptions`."""
    return frame_model("cnn", CnnOptions, CnnBackbone, n_classes, features, head, options)
