"""Speaker-identification networks, looked up by name.

Every model is frontend (features) -> backbone -> embedding -> head (softmax or angular margin,
see `heads`), wrapped in one `SpeakerModel`; `model.config()` is plain JSON and `model_from_config` rebuilds the model from it.
Initial weights come from torch's global RNG: `torch.manual_seed` makes builds repeatable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from speakerid.errors import ModelError
from speakerid.features import FeatureConfig
from speakerid.models import cnn, lstm, resnet50, tdnn
from speakerid.models.base import SpeakerModel
from speakerid.models.heads import HeadConfig
from speakerid.models.resnet50 import load_pretrained

__all__ = ["SpeakerModel", "HeadConfig", "build_model", "model_names", "model_from_config", "load_pretrained"]

_BUILDERS: dict[str, Callable[..., SpeakerModel]] = {
    "cnn": cnn.build,
    "tdnn": tdnn.build,
    "lstm": lstm.build,
    "resnet50": resnet50.build,
}
CONFIG_KEYS = ("name", "n_classes", "features", "options")


def model_names() -> list[str]:
    """Names `build_model` knows."""
    return list(_BUILDERS)


def build_model(name: str, n_classes: int, features: FeatureConfig, head: HeadConfig | None = None,
                **options: Any) -> SpeakerModel:
    """A freshly initialised model of family `name` with `n_classes` outputs; options are the family's.

    `head` defaults to the softmax classifier."""
    if name not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(_BUILDERS)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ModelError(f"a model needs a positive number of classes (speakers), not {n_classes!r}")
    return _BUILDERS[name](n_classes, features, head or HeadConfig(), **options)


def model_from_config(config: dict[str, Any]) -> SpeakerModel:
    """Rebuild the (untrained) model that `SpeakerModel.config()` describes."""
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ModelError(f"model config lacks {', '.join(missing)}; it must hold {', '.join(CONFIG_KEYS)}")
    features = FeatureConfig.from_dict(config["features"])
    head = HeadConfig.from_dict(config.get("head"))  # runs made before heads existed have none: softmax
    return build_model(config["name"], config["n_classes"], features, head, **config["options"])
