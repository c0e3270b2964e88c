"""Speech screening for `prepare`: where the voice detector hears speech in each recording, and
how much of each chunk that covers.

A silent or noise-only recording would otherwise become training chunks labelled with a
speaker. The regions of a recording are kept in the corpus journal (recordings.csv, column
`speech`, "start-end" seconds separated by spaces), so that a resumed prepare does not run the
detector again and a user can read them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["detect", "encode", "decode", "seconds", "covered"]


def detect(samples: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """Speech regions (seconds) of int16 mono samples, by `speakerid.vad`."""
    from speakerid.vad import speech_regions

    return speech_regions(samples.astype(np.float32) / 32768, sample_rate)


def encode(regions: list[tuple[float, float]]) -> str:
    return " ".join(f"{start:g}-{end:g}" for start, end in regions)


def decode(text: str) -> list[tuple[float, float]]:
    """Regions from their journal form; ValueError for text that is not."""
    regions = []
    for part in text.split():
        start, sep, end = part.partition("-")
        if not sep:
            raise ValueError(f"not a speech region: {part!r}")
        regions.append((float(start), float(end)))
    return regions


def seconds(regions: list[tuple[float, float]]) -> float:
    return float(sum(end - start for start, end in regions))


def covered(regions: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end) that lie in speech regions."""
    return float(sum(max(0.0, min(end, b) - max(start, a)) for a, b in regions))
