"""Exceptions a user can cause. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class SpeakerIdError(Exception):
    """Base class: something the user can fix (a path, a file, an option)."""


class AudioError(SpeakerIdError):
    """A file that cannot be used as audio: unreadable, empty, corrupt, too short."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CorpusError(SpeakerIdError):
    """A data folder or prepared corpus that cannot be used as asked."""


class RunError(SpeakerIdError):
    """A run directory (trained model) that is missing, incomplete or foreign."""


class RegistryError(SpeakerIdError):
    """A speaker registry that cannot do what was asked (unknown speaker, encoder mismatch, ...)."""


class SpeakerNameError(RegistryError):
    """A speaker name that breaks the naming rule (see `speakerid.registry`)."""


class ModelError(SpeakerIdError):
    """A model that cannot be built or loaded as asked (unknown name, weights that do not fit)."""
