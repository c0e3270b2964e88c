"""Exports of a corpus as files: a WAV per chunk (as the corpus cut them) and MFCC images.

Neither is a step of training; they exist for other tools. Both write
OUT/<split>/<speaker>/<recording>_<k>.<ext>, skip files already written (an interrupted export
resumes) and refuse to touch a folder holding files they would not write.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speakerid.audio import write_wav
from speakerid.corpus import SPLITS, Corpus
from speakerid.errors import CorpusError
from speakerid.progress import progress_bar

if TYPE_CHECKING:
    from speakerid.features import FeatureConfig

IMAGE_FORMATS = ("jpg", "png")


def export_chunks(corpus: Corpus, out: str | Path, split: str | None = None, progress: bool = True) -> int:
    """Write every chunk (of one split, or all) as a 16-bit WAV file; returns how many were written."""
    todo = _plan(corpus, Path(out), "wav", split)
    with progress_bar("writing chunks", total=len(todo), enabled=progress) as advance:
        for index, path in todo:
            _atomic(path, lambda tmp: write_wav(tmp, corpus.chunk_audio(index), corpus.sample_rate))
            advance()
    return len(todo)


def export_images(corpus: Corpus, out: str | Path, features: FeatureConfig | None = None, size: int = 300,
                  image_format: str = "jpg", split: str | None = None, batch_size: int = 32,
                  workers: int | None = None, progress: bool = True) -> int:
    """Write each chunk's MFCC picture (size x size RGB), exactly what the resnet50 model sees.

    Pictures are made in batches and encoded (JPEG quality 95, or lossless PNG) in `workers`
    threads (default: all cores), each batch with one torch thread; torch's thread count is
    restored afterwards. Returns how many files were written.
    """
    import torch

    from speakerid.features import FeatureConfig, MfccImage

    if size < 1:
        raise CorpusError(f"image size must be at least 1 pixel, got {size}")
    if image_format not in IMAGE_FORMATS:
        raise CorpusError(f"image format must be 'jpg' or 'png', got {image_format!r}")
    todo = _plan(corpus, Path(out), image_format, split)
    to_image = MfccImage(features or FeatureConfig(), size=size)
    batches = [todo[first : first + batch_size] for first in range(0, len(todo), batch_size)]
    workers = max(1, workers or os.cpu_count() or 1)
    threads = torch.get_num_threads()
    # Batches run side by side, one per core: torch's own threads would only fight over the cores.
    torch.set_num_threads(1)
    try:
        with progress_bar("writing images", total=len(todo), enabled=progress) as advance, \
                ThreadPoolExecutor(workers, thread_name_prefix="speakerid-images") as pool:
            for written in pool.map(lambda batch: _write_images(corpus, to_image, batch, image_format), batches):
                advance(written)
    finally:
        torch.set_num_threads(threads)
    return len(todo)


def _write_images(corpus: Corpus, to_image, batch: list[tuple[int, Path]], image_format: str) -> int:
    """Make one batch's pictures and write them; the encoders release the GIL, so batches overlap."""
    import torch
    from PIL import Image

    with torch.inference_mode():
        waves = torch.from_numpy(np.stack([corpus.chunk_audio(i) for i, _ in batch]))
        # Scaled and rounded in the (B, 3, H, W) layout, then turned to (B, H, W, 3) as uint8: the same
        # values as rounding after the transpose, in a third of the time.
        pixels = to_image(waves).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    for (_, path), picture in zip(batch, pixels):
        _atomic(path, lambda tmp: _save_image(Image.fromarray(picture), tmp, image_format))
    return len(batch)


def _save_image(image, path: Path, image_format: str) -> None:
    if image_format == "jpg":
        image.save(path, format="JPEG", quality=95)
    else:
        image.save(path, format="PNG", compress_level=1)  # fast; a little larger than the default level


def _plan(corpus: Corpus, out: Path, ext: str, split: str | None) -> list[tuple[int, Path]]:
    """(chunk index, file) for every chunk still to write; refuses a folder holding other files."""
    indices = corpus.split_indices(split) if split else np.arange(len(corpus.chunk_label))
    stems = _file_stems(corpus.recording_ids)
    wanted: list[tuple[int, Path]] = []
    position: dict[int, int] = {}
    for index in indices:
        r = int(corpus.chunk_recording[index])
        k = position[r] = position.get(r, -1) + 1
        speaker, stem = stems[r]
        wanted.append((int(index), out / SPLITS[corpus.chunk_split[index]] / speaker / f"{stem}_{k:04d}.{ext}"))
    if out.exists():
        expected = {path for _, path in wanted}
        foreign = [p for p in out.rglob("*") if p.is_file() and p not in expected and not p.name.endswith(".tmp")]
        if foreign:
            raise CorpusError(f"{out} holds files this export would not write (e.g. {foreign[0]}); choose an empty or new folder")
    return [(i, p) for i, p in wanted if not p.exists()]


def _file_stems(recording_ids: list[str]) -> list[tuple[str, str]]:
    """(speaker, file stem) per recording: its path without the extension, sub-folders joined by "__";
    recordings of one speaker that would share a stem (take.wav, take.flac) keep their extension."""
    split = [(speaker, Path(rest)) for speaker, _, rest in (rid.partition("/") for rid in recording_ids)]
    bare = [(speaker, path.with_suffix("").as_posix().replace("/", "__")) for speaker, path in split]
    shared = {key for key, n in Counter(bare).items() if n > 1}
    return [(speaker, path.as_posix().replace("/", "__") if key in shared else key[1])
            for (speaker, path), key in zip(split, bare)]


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
