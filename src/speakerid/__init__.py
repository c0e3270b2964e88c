"""speakerid: tell who is speaking in a recording.

The public API is re-exported here and imported lazily, so that `import speakerid`
(and `speakerid --help`) stays fast: torch and friends load on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "SpeakerIdError": "speakerid.errors",
    "AudioError": "speakerid.errors",
    "CorpusError": "speakerid.errors",
    "RunError": "speakerid.errors",
    "RegistryError": "speakerid.errors",
    "ModelError": "speakerid.errors",
    "load_audio": "speakerid.audio",
    "decode_audio": "speakerid.audio",
    "synthesize": "speakerid.synth",
    "prepare": "speakerid.corpus",
    "PrepareConfig": "speakerid.corpus",
    "Corpus": "speakerid.corpus",
    "FeatureConfig": "speakerid.features",
    "build_frontend": "speakerid.features",
    "build_model": "speakerid.models",
    "model_names": "speakerid.models",
    "train": "speakerid.training",
    "TrainConfig": "speakerid.training",
    "evaluate": "speakerid.evaluation",
    "compare": "speakerid.compare",
    "Identifier": "speakerid.identify",
    "load_run": "speakerid.rundir",
    "load_encoder": "speakerid.encoders",
    "Registry": "speakerid.registry",
    "VoiceRegistry": "speakerid.voices",
    "verify": "speakerid.voices",
    "adapt": "speakerid.adapt",
    "calibrate": "speakerid.calibration",
    "create_app": "speakerid.server",
    "serve": "speakerid.server",
    "demo": "speakerid.demo",
    "diarize": "speakerid.diarize",
    "speech_regions": "speakerid.vad",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'speakerid' has no attribute {name!r}")


def __dir__():
    return __all__
