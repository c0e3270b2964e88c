"""One writer per output folder.

`prepare` and `compare` resume into their output folder when run again, so a second run started
while the first still writes would write beside it: two prepares appending to one corpus
interleaved their audio under each other's offsets, silently (docs/benchmarks.md, "Two
trainings of the recipe, joined"). Each holds its folder while it writes; another is refused.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from speakerid.errors import SpeakerIdError

__all__ = ["sole_writer"]


@contextmanager
def sole_writer(folder: Path, refusal: SpeakerIdError) -> Iterator[None]:
    """Hold the existing `folder` (an exclusive lock on it) for this process, or raise `refusal` at
    once when another process holds it. The lock goes with the process, however it ends."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refusal from None
        yield
    finally:
        os.close(handle)
