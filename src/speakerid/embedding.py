"""Embedding many files at the encoder's speed: decoding in threads, overlapped with batched embedding.

`embed_files` reads, hashes and decodes files in a thread pool while the network embeds what is
already decoded. For an encoder with two stages (`units(audio, name)` per recording, then
`embed_units(batch)` over units of any recordings, as `Ge2eEncoder` has), the units of several
files share each network batch and up to `cores // torch threads` batches run at once; any other
encoder embeds each file with `embed_many` in the pool. A file that cannot be read, decoded or
embedded is reported in its result and the others go on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speakerid.audio import decode_audio, read_file
from speakerid.encoders import Encoder, _mean_embeddings
from speakerid.errors import AudioError

__all__ = ["FileEmbedding", "embed_files", "embed_stored"]

LOOKAHEAD_PER_WORKER = 4  # files decoded ahead of the one next yielded, per worker thread


@dataclass
class FileEmbedding:
    """What `embed_files` made of one file.

    `vectors` holds one L2-normalised row per embedded piece (the whole recording, or each clip
    with `clip_seconds`), named in `names`; `failed` lists (name, reason) of the pieces (or the
    file) that could not be used. `skipped` is True when `skip(index, sha256)` said so: nothing embedded.
    `audio` holds the decoded recording when `embed_files` was asked to keep it.
    """

    path: Path
    sha256: str | None = None
    seconds: float = 0.0
    skipped: bool = False
    names: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio: np.ndarray | None = None

    @property
    def vector(self) -> np.ndarray | None:
        """The embedding of the whole recording (without clip_seconds), or None when it failed or was skipped."""
        return None if self.vectors is None or len(self.vectors) != 1 else self.vectors[0]


@dataclass
class _Staged:
    """A decoded file waiting for its units' embeddings."""

    result: FileEmbedding
    units: list[torch.Tensor]  # one (k, ...) tensor per piece
    rows: list[list[torch.Tensor]]  # the embedded rows of each piece, in order, as batches return
    missing: int  # unit rows still to embed
    index: int = -1  # the file's position in `paths`


def embed_files(encoder: Encoder, paths: Sequence[str | Path], clip_seconds: float | None = None,
                skip: Callable[[int, str], bool] | None = None, workers: int | None = None,
                keep_audio: bool = False) -> Iterator[FileEmbedding]:
    """Embed audio files with `encoder`; yields one `FileEmbedding` per path, in the order given.

    `clip_seconds` embeds consecutive clips of that length instead of the whole recording (a
    shorter end is left out; a recording shorter than one clip is one clip). `skip` is called (from a worker thread) with each file's
    position in `paths` and SHA-256; when it returns True the file is yielded as skipped without being decoded.
    `workers` is the number of threads (default: all cores). Embeddings equal `encoder.embed`'s
    to float rounding. `keep_audio` hands each file's decoded audio over in its result.
    """
    paths = [Path(p) for p in paths]
    workers = max(1, workers or os.cpu_count() or 1)
    staged_encoder = hasattr(encoder, "units") and hasattr(encoder, "embed_units")
    device = getattr(encoder, "device", torch.device("cpu"))
    # Each network batch uses torch's threads; run as many at once as the cores allow (one on a GPU).
    max_batches = 1 if device.type != "cpu" else max(1, workers // torch.get_num_threads())
    batch_size = getattr(encoder, "batch_size", 32)

    def prepare(index: int, path: Path) -> _Staged | FileEmbedding:
        result = FileEmbedding(path)
        try:
            data = read_file(path)
        except AudioError as err:
            result.failed.append((str(path), err.reason))
            return result
        result.sha256 = hashlib.sha256(data).hexdigest()
        if skip is not None and skip(index, result.sha256):
            result.skipped = True
            return result
        try:
            audio = decode_audio(data, encoder.sample_rate, name=str(path))
        except AudioError as err:
            result.failed.append((str(path), err.reason))
            return result
        result.seconds = len(audio) / encoder.sample_rate
        if keep_audio:
            result.audio = audio
        pieces = _pieces(audio, str(path), clip_seconds, encoder.sample_rate)
        units, vectors = [], []
        for name, piece in pieces:
            try:
                if staged_encoder:
                    units.append(encoder.units(piece, name))
                else:
                    vectors.append(encoder.embed(piece, name))
            except AudioError as err:
                result.failed.append((name, err.reason))
                continue
            result.names.append(name)
        if not staged_encoder or not units:
            result.vectors = np.stack(vectors) if vectors else np.zeros((0, encoder.dim), dtype=np.float32)
            return result
        return _Staged(result, units, [[] for _ in units], sum(len(u) for u in units))

    def embed(batch: list[tuple[_Staged, int, torch.Tensor]]) -> tuple[list[tuple[_Staged, int, torch.Tensor]], torch.Tensor]:
        return batch, encoder.embed_units(torch.cat([units for _, _, units in batch]))

    with ThreadPoolExecutor(workers, thread_name_prefix="speakerid-embed") as pool:
        decoding: dict[Future, int] = {}
        embedding: set[Future] = set()
        ready: dict[int, FileEmbedding] = {}
        queue: list[tuple[_Staged, int, torch.Tensor]] = []  # (file, piece, unit rows) not yet in a batch
        queued_rows = 0
        submitted = yielded = 0
        try:
            while yielded < len(paths):
                while submitted < len(paths) and submitted < yielded + LOOKAHEAD_PER_WORKER * workers:
                    decoding[pool.submit(prepare, submitted, paths[submitted])] = submitted
                    submitted += 1
                while ready.get(yielded) is not None:
                    yield ready.pop(yielded)
                    yielded += 1
                if yielded == len(paths):
                    break
                # Batches of full size; a partial one only when no decoding could still fill it.
                while queue and len(embedding) < max_batches and (queued_rows >= batch_size or not decoding):
                    batch, queue, taken = _take(queue, batch_size)
                    queued_rows -= taken
                    embedding.add(pool.submit(embed, batch))
                done, _ = wait(set(decoding) | embedding, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in embedding:
                        embedding.discard(future)
                        batch, rows = future.result()
                        offset = 0
                        for staged, piece, units in batch:
                            staged.rows[piece].append(rows[offset : offset + len(units)])
                            offset += len(units)
                            staged.missing -= len(units)
                            if staged.missing == 0:
                                ready[staged.index] = _finish(staged)
                        continue
                    index = decoding.pop(future)
                    outcome = future.result()
                    if isinstance(outcome, FileEmbedding):
                        ready[index] = outcome
                        continue
                    outcome.index = index
                    for piece, units in enumerate(outcome.units):
                        queue.append((outcome, piece, units))
                        queued_rows += len(units)
        finally:
            for future in decoding:
                future.cancel()


def _take(queue: list, size: int) -> tuple[list, list, int]:
    """Up to `size` unit rows from the front of the queue, splitting a piece across batches when needed."""
    batch, taken = [], 0
    while queue and taken < size:
        staged, piece, units = queue[0]
        room = size - taken
        if len(units) <= room:
            batch.append(queue.pop(0))
            taken += len(units)
        else:
            batch.append((staged, piece, units[:room]))
            queue[0] = (staged, piece, units[room:])
            taken += room
    return batch, queue, taken


def _finish(staged: _Staged) -> FileEmbedding:
    """The file's result: each piece's embedding is the L2-normalised mean of its units' embeddings."""
    rows = [torch.cat(piece_rows) for piece_rows in staged.rows]
    owners = [piece for piece, r in enumerate(rows) for _ in range(len(r))]
    staged.result.vectors = _mean_embeddings(torch.cat(rows), owners, len(rows))
    return staged.result


def _pieces(audio: np.ndarray, name: str, clip_seconds: float | None, sample_rate: int) -> list[tuple[str, np.ndarray]]:
    """The whole recording, or its consecutive clips named "<name> [<start> s]"."""
    if clip_seconds is None:
        return [(name, audio)]
    size = max(1, round(clip_seconds * sample_rate))
    return [(f"{name} [{start / sample_rate:g} s]", audio[start : start + size])
            for start in range(0, max(1, len(audio) - size + 1), size)]


def embed_stored(store, encoder, recordings: list[dict], progress: bool, batch: int = 32) -> dict[int, np.ndarray]:
    """Every recording's embedding by `encoder`, from a Registry's stored audio (`recordings`: its `recordings()`)."""
    from speakerid.progress import progress_bar

    vectors: dict[int, np.ndarray] = {}
    with progress_bar("embedding enrolled audio", total=len(recordings), enabled=progress) as advance:
        for first in range(0, len(recordings), batch):
            group = recordings[first : first + batch]
            audios = [store.audio(r["id"]).astype(np.float32) / 32768.0 for r in group]
            embedded = encoder.embed_many(audios, [f"{r['speaker']}/{r['source']}" for r in group])
            vectors.update({r["id"]: v for r, v in zip(group, embedded)})
            advance(len(group))
    return vectors
