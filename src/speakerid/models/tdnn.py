"""An ECAPA-style TDNN-lite over the feature frames (B, F, T): dilated 1D convolutions with SE blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speakerid.errors import ModelError
from speakerid.features import FeatureConfig
from speakerid.models.base import SpeakerModel, StatsPool, frame_model
from speakerid.models.heads import HeadConfig

__all__ = ["TdnnOptions", "build"]

SE_BOTTLENECK = 128
ATTENTION_BOTTLENECK = 128


@dataclass(frozen=True)
class TdnnOptions:
    """Channel width, one residual SE block per dilation, the pooling and the embedding size."""

    channels: int = 256
    dilations: tuple[int, ...] = (2, 3, 4)
    attention: bool = True  # attentive statistics pooling; False: plain mean and std
    embedding_dim: int = 192

    def __post_init__(self) -> None:
        valid = isinstance(self.dilations, tuple) and all(isinstance(d, int) and d > 0 for d in self.dilations)
        if not valid or not self.dilations:
            raise ModelError(f"tdnn option dilations={self.dilations!r} must be a list of positive integers")
        if self.channels < 1 or self.embedding_dim < 1:
            raise ModelError("tdnn options channels and embedding_dim must be positive integers")


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """A 1D convolution that keeps the frame count, then batch norm and ReLU."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation, padding=padding, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(inplace=True),
    )


class SqueezeExcite(nn.Module):
    """Rescales each channel by a gate computed from the channel means over time."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.Linear(channels, SE_BOTTLENECK), nn.ReLU(inplace=True), nn.Linear(SE_BOTTLENECK, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=-1)).unsqueeze(-1)


class SeTdnnBlock(nn.Module):
    """1x1 conv, dilated 3-tap conv, 1x1 conv, squeeze-excite, plus the input."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, 1),
            conv_bn_relu(channels, channels, 3, dilation),
            conv_bn_relu(channels, channels, 1),
            SqueezeExcite(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AttentiveStatsPool(nn.Module):
    """Mean and standard deviation over time, each frame weighted per channel by learned attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(channels, ATTENTION_BOTTLENECK, 1), nn.Tanh(), nn.Conv1d(ATTENTION_BOTTLENECK, channels, 1)
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.attention(frames), dim=-1)
        mean = (weights * frames).sum(dim=-1)
        var = (weights * frames.square()).sum(dim=-1) - mean.square()
        return torch.cat([mean, var.clamp(min=1e-5).sqrt()], dim=-1)


class TdnnBackbone(nn.Module):
    """Features (B, F, T) -> embedding (B, embedding_dim)."""

    def __init__(self, n_features: int, options: TdnnOptions):
        super().__init__()
        width = options.channels
        aggregated = width * len(options.dilations)
        self.input_norm = nn.BatchNorm1d(n_features)
        self.input = conv_bn_relu(n_features, width, 5)
        self.blocks = nn.ModuleList(SeTdnnBlock(width, d) for d in options.dilations)
        self.aggregate = conv_bn_relu(aggregated, aggregated, 1)  # multi-layer feature aggregation
        self.pool = AttentiveStatsPool(aggregated) if options.attention else StatsPool()
        self.embedding = nn.Sequential(
            nn.BatchNorm1d(2 * aggregated),
            nn.Linear(2 * aggregated, options.embedding_dim),
            nn.BatchNorm1d(options.embedding_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.input(self.input_norm(features))
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return self.embedding(self.pool(self.aggregate(torch.cat(outputs, dim=1))))


def build(n_classes: int, features: FeatureConfig, head: HeadConfig = HeadConfig(), **options) -> SpeakerModel:
    """The ECAPA-style TDNN-lite; options as in `TdnnOptions`."""
    return frame_model("tdnn", TdnnOptions, TdnnBackbone, n_classes, features, head, options)
