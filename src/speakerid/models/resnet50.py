"""The original report's transfer-learning recipe: ResNet-50 over MFCC pictures, partly frozen.

The trunk uses torchvision's parameter names (`conv1`, `layer1.0.downsample.0`, ...), so a
torchvision ImageNet state-dict file loads into it with `load_pretrained`. The default freeze
policy assumes those weights: frozen stages left at their random initialisation, with BatchNorm
statistics that never adapt, blow activations up. Without ImageNet weights, train every stage
(`trainable=STAGES`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from speakerid.errors import ModelError
from speakerid.features import FeatureConfig, MfccImage
from speakerid.models.base import SpeakerModel, options_dict, parse_options
from speakerid.models.heads import HeadConfig, build_head

__all__ = ["ResNet50Options", "ResNet50", "STAGES", "build", "load_pretrained", "freeze_policy"]

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "head")
POOLS = ("avg", "flatten")
LAYERS = (3, 4, 6, 3)
HEAD_WIDTH = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResNet50Options:
    """Picture size, head pooling, dropout and the stages that train (all others are frozen)."""

    image_size: int = 300
    pool: str = "avg"  # "avg": global average pooling; "flatten": every position of the last feature map
    dropout: float = 0.5
    trainable: tuple[str, ...] = ("stem", "layer1", "head")

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ModelError(f"resnet50 option pool={self.pool!r} is unknown; use one of {', '.join(POOLS)}")
        stages = ", ".join(STAGES)
        if isinstance(self.trainable, str):
            raise ModelError(f"resnet50 option trainable must be a list of stage names from {stages}")
        unknown = sorted(set(self.trainable) - set(STAGES))
        if unknown:
            raise ModelError(f"resnet50 option trainable names unknown stages {unknown}; use names from {stages}")
        if self.image_size < 32:
            raise ModelError(f"resnet50 option image_size={self.image_size} must be at least 32")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"resnet50 option dropout={self.dropout} must lie in [0, 1)")


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand, plus a shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50(nn.Module):
    """ImageNet-normalised pictures (B, 3, S, S) -> embedding (B, 512): ResNet-50 trunk, then the report's head.

    Stages not in `trainable` have requires_grad False and keep their BatchNorms in eval mode.
    """

    def __init__(self, options: ResNet50Options):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for index, blocks in enumerate(LAYERS):
            width = 64 * 2**index
            layer = [Bottleneck(in_channels, width, stride=1 if index == 0 else 2)]
            in_channels = width * Bottleneck.expansion
            layer += [Bottleneck(in_channels, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        if options.pool == "avg":
            pool: nn.Module = nn.AdaptiveAvgPool2d(1)
            pooled = in_channels
        else:
            side = options.image_size
            for _ in range(5):  # conv1, maxpool and the first blocks of layer2-4 each halve the side, rounding up
                side = (side + 1) // 2
            pool = nn.Identity()
            pooled = in_channels * side * side
        self.head = nn.Sequential(
            pool,
            nn.Flatten(),
            nn.Linear(pooled, HEAD_WIDTH),
            nn.ReLU(inplace=True),
            nn.Dropout(options.dropout),
            nn.Linear(HEAD_WIDTH, HEAD_WIDTH),
            nn.ReLU(inplace=True),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # torchvision's initialisation
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.frozen = [stage for stage in STAGES if stage not in options.trainable]
        for stage in self.frozen:
            for module in self.stage_modules(stage):
                module.requires_grad_(False)
        self.train()

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """The modules that make up one of STAGES."""
        if stage == "stem":
            return [self.conv1, self.bn1]
        return [getattr(self, stage)]

    def train(self, mode: bool = True) -> ResNet50:
        """Sets train/eval mode, but frozen stages' BatchNorms always stay in eval mode."""
        super().train(mode)
        for stage in self.frozen:
            for module in self.stage_modules(stage):
                for sub in module.modules():
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                        sub.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(x)


class ImageNetNormalize(nn.Module):
    """Pictures in [0, 1] -> the per-channel standardisation ImageNet models were trained on."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def freeze_policy(options: dict, pretrained: bool) -> dict:
    """The options with the stages that train: as given, else the recipe's (stem, layer1, head) on
    ImageNet weights, and every stage without them (frozen random stages would only scramble the input)."""
    if "trainable" in options or pretrained:
        return options
    return {**options, "trainable": list(STAGES)}


def build(n_classes: int, features: FeatureConfig, head: HeadConfig = HeadConfig(), **options) -> SpeakerModel:
    """The ResNet-50 transfer-learning model; options as in `ResNet50Options`.

    The final classifier layer always trains: it is new for every set of speakers. The softmax
    head is the report's (dropout, then a linear layer).
    """
    opts = parse_options("resnet50", ResNet50Options, options)
    backbone = ResNet50(opts)
    return SpeakerModel(
        name="resnet50",
        n_classes=n_classes,
        features=features,
        options=options_dict(opts),
        frontend=nn.Sequential(MfccImage(features, size=opts.image_size), ImageNetNormalize()),
        backbone=backbone,
        classifier=(nn.Sequential(nn.Dropout(opts.dropout), nn.Linear(HEAD_WIDTH, n_classes)) if head.kind == "softmax"
                    else build_head(head, HEAD_WIDTH, n_classes)),
        embedding_dim=HEAD_WIDTH,
        head=head,
    )


def load_pretrained(model: SpeakerModel, path: str | Path) -> None:
    """Load ImageNet weights into a resnet50 model's trunk from a local torchvision state-dict file.

    The file's `fc.*` (the ImageNet classifier) is ignored; the head and classifier keep their values.
    """
    if not isinstance(model.backbone, ResNet50):
        raise ModelError(f"pretrained ResNet-50 weights fit only a 'resnet50' model, not {model.name!r}")
    path = Path(path)
    hint = "pass a torchvision ResNet-50 state-dict file such as resnet50-11ad3fa6.pth"
    if not path.is_file():
        raise ModelError(f"{path}: no such file; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load signals a foreign file with many types (KeyError, UnpicklingError, ...)
        raise ModelError(f"{path}: not a torch state-dict file ({err.__class__.__name__}); {hint}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: does not hold a state dict of tensors; {hint}")

    tensors = itertools.chain(model.backbone.named_parameters(), model.backbone.named_buffers())
    trunk = {key: value for key, value in tensors if not key.startswith("head.")}
    given = {key: value for key, value in state.items() if not key.startswith("fc.")}
    # torchvision's older files predate BatchNorm's num_batches_tracked counter
    missing = [key for key in trunk if key not in given and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in given if key not in trunk]
    mismatched = [
        f"{key} {tuple(given[key].shape)} != {tuple(value.shape)}"
        for key, value in trunk.items()
        if key in given and given[key].shape != value.shape
    ]
    problems = [
        f"{label} {_listing(items)}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
        if items
    ]
    if problems:
        raise ModelError(f"{path}: weights do not fit ResNet-50: {'; '.join(problems)}; {hint}")
    with torch.no_grad():
        for key, value in trunk.items():
            if key in given:
                value.copy_(given[key])


def _listing(items: list[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
