"""What the fit loop reads: a split's chunks as int16 windows, or random crops of their recordings, in batches.

Every random choice (window jitter, crop position, crop length) is drawn from a generator seeded
by (seed, epoch, chunk or batch number), so an epoch reads the same audio whether or not the run
was interrupted before it, and whichever DataLoader worker reads it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from speakerid.corpus import Corpus

__all__ = ["ChunkDataset", "Batches", "SHORT_POLICIES"]

SHORT_POLICIES = ("pad", "repeat")  # what a training crop longer than its recording becomes


class ChunkDataset(Dataset):
    """The chunks of one split as (int16 waveform, label) pairs, read from the corpus cache.

    An item is asked for by chunk index (the chunk's window, shifted by up to `jitter` of a chunk
    inside its recording), or by `(chunk index, crop samples)` (see `Batches`): a window of that
    many samples from anywhere inside the chunk's recording, so a recording is read in proportion
    to its length. A recording shorter than a crop is padded or repeated as `short` says.
    """

    def __init__(self, corpus: Corpus, split: str, jitter: float = 0.0, seed: int = 0, short: str = "pad"):
        self.corpus = corpus
        self.indices = corpus.split_indices(split)
        self.max_shift = int(jitter * corpus.chunk_samples)
        self.seed = seed
        self.short = short
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, crop = item if isinstance(item, tuple) else (item, None)
        index = int(self.indices[position])
        if crop is not None:
            wave = self.corpus.crop_audio(index, crop, np.random.default_rng([self.seed, self.epoch, index]), self.short)
        else:
            shift = 0
            if self.max_shift:
                rng = np.random.default_rng([self.seed, self.epoch, index])
                shift = int(rng.integers(-self.max_shift, self.max_shift + 1))
            wave = self.corpus.chunk_audio(index, shift)
        return torch.from_numpy(wave), int(self.corpus.chunk_label[index])


class Batches(Sampler):
    """The sampler's order cut into batches. With `crop` (shortest, longest in samples) each batch asks
    for crops of one length, drawn per batch, so a batch stays one tensor while lengths vary."""

    def __init__(self, sampler: DistributedSampler, batch_size: int, crop: tuple[int, int] | None = None, seed: int = 0):
        self.sampler = sampler
        self.batch_size = batch_size
        self.crop = crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        order = list(self.sampler)
        for number, first in enumerate(range(0, len(order), self.batch_size)):
            batch = order[first : first + self.batch_size]
            if self.crop is None:
                yield batch
                continue
            # the same length on every process at the same step: their steps take the same time
            length = int(np.random.default_rng([self.seed, self.epoch, number]).integers(self.crop[0], self.crop[1] + 1))
            yield [(position, length) for position in batch]
