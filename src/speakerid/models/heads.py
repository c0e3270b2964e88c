"""The last layer of a speaker model: embedding -> speaker logits.

- `softmax`: a linear layer trained with plain cross-entropy (the closed-set classifier).
- `arcmargin`: additive angular margin softmax (ArcFace/AAM, as in WeSpeaker's recipes): the
  logits are `scale * cos(angle between the embedding and each speaker's weight vector)`, and in
  training the true speaker's angle is widened by `margin` first. That asks each speaker's
  embeddings to gather tightly around its direction, which is what makes cosine scores between
  embeddings of voices never trained on meaningful. At inference the logits are the plain scaled
  cosines, so `identify` still ranks speakers by a softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speakerid.errors import ModelError

__all__ = ["HeadConfig", "ArcMarginHead", "build_head", "HEADS"]

HEADS = ("softmax", "arcmargin")


@dataclass(frozen=True)
class HeadConfig:
    """Which head, and for `arcmargin` its scale and (final) margin in radians."""

    kind: str = "softmax"
    scale: float = 32.0
    margin: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in HEADS:
            raise ModelError(f"head {self.kind!r} is unknown; use one of {', '.join(HEADS)}")
        if not 0 < self.scale < math.inf:
            raise ModelError(f"head scale must be a positive number, not {self.scale}")
        if not 0 <= self.margin < math.pi / 2:
            raise ModelError(f"head margin must lie in [0, pi/2) radians, not {self.margin}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; a softmax head has no scale or margin."""
        if self.kind == "softmax":
            return {"kind": "softmax"}
        return {"kind": self.kind, "scale": self.scale, "margin": self.margin}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> HeadConfig:
        """What `to_dict` wrote; None (a run made before heads existed) is the softmax head."""
        if values is None:
            return cls()
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ModelError(f"head settings hold unknown keys {unknown}; remove them or update speakerid")
        return cls(**values)


class ArcMarginHead(nn.Module):
    """Embeddings (B, D) -> scale * cos(theta) (B, n_classes); with labels, the true class gets cos(theta + margin).

    `margin` is an attribute the training loop ramps from 0 (see `speakerid.training`); it is not a weight.
    """

    def __init__(self, embedding_dim: int, n_classes: int, scale: float, margin: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        if labels is None or self.margin == 0:
            return self.scale * cosine
        m = self.margin
        sine = (1.0 - cosine.square()).clamp_min(0.0).sqrt()
        widened = cosine * math.cos(m) - sine * math.sin(m)  # cos(theta + m)
        # past theta = pi - m, cos(theta + m) would rise again: continue downwards instead (ArcFace's fallback)
        widened = torch.where(cosine > math.cos(math.pi - m), widened, cosine - m * math.sin(math.pi - m))
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(target, widened, cosine)

    def extra_repr(self) -> str:
        return f"classes={self.weight.shape[0]}, dim={self.weight.shape[1]}, scale={self.scale}, margin={self.margin}"


def build_head(head: HeadConfig, embedding_dim: int, n_classes: int) -> nn.Module:
    """The head module: one linear layer for softmax, `ArcMarginHead` for arcmargin."""
    if head.kind == "arcmargin":
        return ArcMarginHead(embedding_dim, n_classes, head.scale, head.margin)
    return nn.Linear(embedding_dim, n_classes)
