"""How many CPU threads torch computes with, and how its idle threads wait: one policy for every command.

Two settings, measured on idle and on loaded cores (docs/benchmarks.md, "Threads"):

- `OMP_WAIT_POLICY=PASSIVE`: an OpenMP thread that has no work sleeps at once instead of
  spinning for a while. Spinning threads take the cores from the threads (of this process or of
  others) that still compute. It is read once, when torch's OpenMP runtime loads, so it is set
  in the environment before torch is imported (`quiet_openmp`), unless the user set it.
- the number of intra-op threads (`use_threads`), from each command's `--threads` option.
"""

from __future__ import annotations

import os

from speakerid.errors import SpeakerIdError

WAIT_POLICY = "PASSIVE"
# identify, enroll, verify, calibrate, serve (per request), prepare's voice detector: one thread never
# collapsed under load (torch's default was 8-26x slower there) and was the fastest or close otherwise
INFERENCE_THREADS = 1
# train, evaluate, demo, export-images: torch's default (one per core), waiting passively: the fastest
# steady choice on quiet cores, and 1.7x one thread under load
TRAIN_THREADS: int | None = None


def quiet_openmp() -> None:
    """Make OpenMP threads sleep rather than spin while they wait (before torch loads; a user's own setting wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def use_threads(threads: int | None) -> None:
    """Compute with `threads` torch intra-op threads; None leaves torch's default (one per core, or OMP_NUM_THREADS)."""
    if threads is None:
        return
    if threads < 1:
        raise SpeakerIdError(f"--threads must be 1 or more, got {threads}")
    import torch

    torch.set_num_threads(threads)
