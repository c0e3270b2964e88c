"""speakerid.trainset: random training crops of real recordings, one length per batch, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader, DistributedSampler

from speakerid.corpus import Corpus
from speakerid.trainset import Batches, ChunkDataset

CROP = (24000, 48000)  # 1.5-3 s


@pytest.fixture(scope="module")
def corpus(small_corpus) -> Corpus:
    return Corpus.open(small_corpus)


def batches(dataset: ChunkDataset, epoch: int, crop=CROP, seed: int = 0) -> list[list]:
    sampler = Batches(DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed), 8, crop, seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_batch_asks_for_one_crop_length_drawn_in_range(corpus):
    dataset = ChunkDataset(corpus, "train")
    first = batches(dataset, epoch=1)
    assert len(first) == -(-len(dataset) // 8)
    lengths = []
    for batch in first:
        assert len({length for _, length in batch}) == 1
        lengths.append(batch[0][1])
    assert all(CROP[0] <= n <= CROP[1] for n in lengths)
    assert len(set(lengths)) > len(lengths) // 2  # lengths vary from batch to batch
    assert batches(dataset, epoch=1) == first  # the same seed and epoch: the same batches
    assert batches(dataset, epoch=2) != first
    assert sorted(p for batch in first for p, _ in batch) == list(range(len(dataset)))  # every chunk once
    plain = batches(dataset, epoch=1, crop=None)
    assert [p for batch in plain for p in batch] == [p for batch in first for p, _ in batch]


def test_a_crop_comes_from_anywhere_inside_its_recording(corpus):
    dataset = ChunkDataset(corpus, "train", seed=4)
    starts = set()
    for position in range(0, len(dataset), 3):
        index = int(dataset.indices[position])
        wave, label = dataset[(position, 30000)]
        wave = wave.numpy()
        assert wave.shape == (30000,) and label == corpus.chunk_label[index]
        whole = corpus.recording_audio(corpus.recording_ids[corpus.chunk_recording[index]])
        candidates = np.flatnonzero(whole[: len(whole) - 29999] == wave[0])
        start = next(int(s) for s in candidates if np.array_equal(whole[s : s + 30000], wave))
        starts.add(start // 16000)
    assert len(starts) > 15  # crops start all over the recordings (~41 s each), not at chunk boundaries
    dataset.epoch = 1
    again = ChunkDataset(corpus, "train", seed=4)
    again.epoch = 1
    assert np.array_equal(dataset[(0, 30000)][0], again[(0, 30000)][0])


def test_a_recording_shorter_than_its_crop_is_padded_or_repeated(corpus):
    index = int(corpus.split_indices("train")[0])
    whole = corpus.recording_audio(corpus.recording_ids[corpus.chunk_recording[index]])
    longer = len(whole) + 16000
    padded = ChunkDataset(corpus, "train", short="pad")[(0, longer)][0].numpy()
    repeated = ChunkDataset(corpus, "train", short="repeat")[(0, longer)][0].numpy()
    assert np.array_equal(padded[: len(whole)], whole) and not padded[len(whole) :].any()
    assert np.array_equal(repeated[: len(whole)], whole) and np.array_equal(repeated[len(whole) :], whole[:16000])


def test_a_loader_stacks_cropped_batches(corpus):
    dataset = ChunkDataset(corpus, "train")
    sampler = Batches(DistributedSampler(dataset, num_replicas=1, rank=0, seed=0), 8, CROP, 0)
    sampler.set_epoch(1)
    waves, labels = next(iter(DataLoader(dataset, batch_sampler=sampler)))
    assert waves.shape[0] == 8 and CROP[0] <= waves.shape[1] <= CROP[1] and labels.shape == (8,)
